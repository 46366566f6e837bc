//! `analyze` over a series of checkpoints: a tiny GPT-NeoX's revisions in a hub-cache
//! layout (`tests/fixtures/series`, written by `make_series_fixtures.py` with
//! transformers) give, at each step, the metrics of transformers' own attentions of that
//! revision; a sinkscope run's checkpoints give the values its hooks logged during
//! training; an interrupted series resumes without duplicates; a corrupt or missing
//! revision is named and skipped with a non-zero exit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use safetensors::SafeTensors;
use sinkscope::analysis::AttentionMaps;
use sinkscope::eval::{evaluate, EvalPlan, SequenceCapture};
use sinkscope::hooks::{registry, HookRunner, HookSchedule};
use sinkscope::log::hparams::{status, HParamsData, Kind};
use sinkscope::log::{read_events, LoggedValue, TensorBoardWriter};
use sinkscope::model::PositionKind;
use sinkscope::train::train;

use crate::common::{root, sinkscope_with, tiny_model, tiny_recipe};

const REPO: &str = "sinkscope-tests/tiny-neox";

fn fixture() -> PathBuf {
    root().join("tests/fixtures/series")
}

fn repo_dir() -> PathBuf {
    fixture().join("hub/models--sinkscope-tests--tiny-neox")
}

/// Runs the binary with the fixture hub cache as `HF_HUB_CACHE`.
fn sinkscope(args: &[&str], cache: &Path) -> (i32, String, String) {
    sinkscope_with(
        args,
        &[
            ("HF_HUB_CACHE", cache.as_os_str()),
            ("NO_COLOR", "1".as_ref()),
        ],
    )
}

/// The evaluation lines of a `metrics.jsonl`: step → scalars, in file order.
fn records(path: &Path) -> Vec<(u64, BTreeMap<String, f64>)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("scalars").is_some() && v.get("skipped").is_none())
        .map(|v| {
            let scalars = v["scalars"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, x)| (k.clone(), x.as_f64().unwrap()))
                .collect();
            (v["step"].as_u64().unwrap(), scalars)
        })
        .collect()
}

fn steps(recs: &[(u64, BTreeMap<String, f64>)]) -> Vec<u64> {
    recs.iter().map(|(s, _)| *s).collect()
}

/// Steps of `tag` in the TensorBoard folder, in file order.
fn tb_steps(dir: &Path, tag: &str) -> Vec<i64> {
    let mut s: Vec<i64> = read_events(dir)
        .unwrap()
        .into_iter()
        .filter(|e| matches!(&e.value, LoggedValue::Scalar { tag: t, .. } if t == tag))
        .map(|e| e.step)
        .collect();
    s.sort();
    s
}

/// Compares the tags both have; returns how many there were.
fn assert_close(what: &str, got: &BTreeMap<String, f64>, want: &BTreeMap<String, f64>) -> usize {
    let mut n = 0;
    for (tag, w) in want {
        if let Some(g) = got.get(tag) {
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{what}: {tag} = {g}, expected {w}"
            );
            n += 1;
        }
    }
    n
}

/// What the analysis of transformers' attentions of `revision` gives, through the same
/// plan `analyze` uses.
fn expected_scalars(revision: &str) -> BTreeMap<String, f64> {
    let bytes = std::fs::read(fixture().join("expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let att = st.tensor(&format!("{revision}.attentions")).unwrap();
    let [l, h, t, _] = att.shape().try_into().unwrap();
    let data: Vec<f32> = att
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let ids: Vec<u32> = st
        .tensor("input_ids")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect();
    let mut plan = EvalPlan::default();
    for hook in registry() {
        hook.plan(&mut plan);
    }
    plan.weights = false;
    let probe = [SequenceCapture {
        tokens: ids,
        maps: AttentionMaps::new(l, h, t, data).unwrap(),
        values: None,
        hidden: None,
        final_hidden: None,
        null_mass: None,
    }];
    evaluate(None, &probe, &[], None, &plan)
        .unwrap()
        .scalars()
        .into_iter()
        .collect()
}

fn text() -> String {
    let bytes = std::fs::read(fixture().join("expected.safetensors")).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    meta.metadata().as_ref().unwrap()["text"].clone()
}

#[test]
fn cached_revisions_match_transformers_in_step_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let text = text();
    let cache = fixture().join("hub");
    let (code, stdout, err) = sinkscope(
        &[
            "analyze",
            REPO,
            "--revisions",
            "all",
            "--text",
            &text,
            "--out",
            out.to_str().unwrap(),
        ],
        &cache,
    );
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("series of 3 revisions"), "{stdout}");
    let recs = records(&out.join("metrics.jsonl"));
    // numeric order: step100 after step20; main (no step) is not a revision
    assert_eq!(steps(&recs), [0, 20, 100]);
    let mut masses = Vec::new();
    for ((_, got), name) in recs.iter().zip(["step0", "step20", "step100"]) {
        let want = expected_scalars(name);
        let n = assert_close(name, got, &want);
        assert!(n >= 40, "{name}: only {n} tags in common");
        masses.push(got["sink/first_token_mass/layer_01"]);
    }
    // the revisions differ (the .bin one included): training moved the attention
    assert!(
        masses[0] != masses[1] && masses[1] != masses[2],
        "{masses:?}"
    );
    let tb = out.join("tb");
    assert_eq!(
        tb_steps(&tb, "sink/first_token_mass/layer_00"),
        [0, 20, 100]
    );
    let probes: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("probes.json")).unwrap()).unwrap();
    assert_eq!(probes["texts"][0], text.as_str());
    // the series' HParams session names the revision range
    let texts: Vec<String> = read_events(&tb)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.value {
            LoggedValue::Text { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("step0 … step100 (3)")),
        "{texts:?}"
    );
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for e in read_events(&tb).unwrap() {
        if let LoggedValue::HParams { data, .. } = e.value {
            match data.data {
                Some(HParamsData::SessionStartInfo(s)) => starts.push(s.hparams),
                Some(HParamsData::SessionEndInfo(x)) => ends.push((e.step, x.status)),
                _ => {}
            }
        }
    }
    assert_eq!(starts.len(), 1);
    let hp = |k: &str| starts[0][k].kind.clone().unwrap();
    assert_eq!(hp("revisions.first"), Kind::String("step0".into()));
    assert_eq!(hp("revisions.last_step"), Kind::Number(100.0));
    assert_eq!(hp("model"), Kind::String(REPO.into()));
    assert_eq!(ends, [(100, status::SUCCESS)]);
}

#[test]
fn a_runs_checkpoints_as_a_series_equal_its_training_logs() {
    let dev = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut r = tiny_recipe(tiny_model(PositionKind::Rope), 6);
    r.train.checkpoint_every = 2;
    r.hooks.schedule = HookSchedule::Every(2);
    r.hooks.probes = 3;
    let mut hooks = HookRunner::<Autodiff<Flex>>::new(&r.hooks, &r, &run, &dev).unwrap();
    train::<Autodiff<Flex>>(&r, &run, false, &dev, &mut hooks).unwrap();
    let logged = records(&run.join("metrics.jsonl"));

    let out = dir.path().join("series");
    let (code, stdout, err) = sinkscope(
        &[
            "analyze",
            run.to_str().unwrap(),
            "--revisions",
            "all",
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("series of 3 revisions"), "{stdout}");
    let series = records(&out.join("metrics.jsonl"));
    assert_eq!(steps(&series), [2, 4, 6]);
    for (step, got) in &series {
        let (_, want) = logged.iter().find(|(s, _)| s == step).unwrap();
        let n = assert_close(&format!("step {step}"), got, want);
        assert!(n >= 40, "step {step}: only {n} tags in common");
    }
    // the probes are the run's own windows, as ids
    let probes: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("probes.json")).unwrap()).unwrap();
    assert_eq!(probes["input_ids"].as_array().unwrap().len(), 3);
    assert_eq!(probes["tokens"][0][0], "<bos>");
}

#[test]
fn an_interrupted_series_resumes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let cache = fixture().join("hub");
    let text = text();
    let (code, _, err) = sinkscope(
        &[
            "analyze",
            REPO,
            "--revisions",
            "step0,step20",
            "--text",
            &text,
            "--out",
            o,
        ],
        &cache,
    );
    assert_eq!(code, 0, "{err}");
    let first = records(&out.join("metrics.jsonl"));
    assert_eq!(steps(&first), [0, 20]);
    // Killed while logging step100: its TensorBoard events written, its JSON line torn.
    let mut tb = TensorBoardWriter::create(out.join("tb")).unwrap();
    tb.add_scalar("sink/first_token_mass/layer_00", 0.987_654, 100)
        .unwrap();
    tb.flush().unwrap();
    drop(tb);
    let metrics = out.join("metrics.jsonl");
    let mut torn = std::fs::read(&metrics).unwrap();
    torn.extend_from_slice(b"{\"step\":100,\"frame\":{\"fra");
    std::fs::write(&metrics, torn).unwrap();

    // Other texts in the same folder are refused; none given means the recorded ones.
    let (code, _, err) = sinkscope(
        &[
            "analyze",
            REPO,
            "--revisions",
            "all",
            "--text",
            "Other.",
            "--out",
            o,
        ],
        &cache,
    );
    assert_eq!(code, 1);
    assert!(err.contains("probes.json"), "{err}");
    let (code, stdout, err) =
        sinkscope(&["analyze", REPO, "--revisions", "all", "--out", o], &cache);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("2 already recorded, 1 to analyze"),
        "{stdout}"
    );
    let all = records(&metrics);
    assert_eq!(steps(&all), [0, 20, 100]);
    assert_eq!(all[..2], first[..]);
    assert_close("step100", &all[2].1, &expected_scalars("step100"));
    for tag in ["sink/first_token_mass/layer_00", "sink/rate/layer_01"] {
        assert_eq!(tb_steps(&out.join("tb"), tag), [0, 20, 100], "{tag}");
    }
    let torn_value = read_events(out.join("tb"))
        .unwrap()
        .into_iter()
        .any(|e| matches!(e.value, LoggedValue::Scalar { value, .. } if value == 0.987_654));
    assert!(!torn_value, "the killed run's event survived");

    // Complete: a rerun analyzes nothing and changes nothing.
    let before = std::fs::read(&metrics).unwrap();
    let (code, stdout, err) =
        sinkscope(&["analyze", REPO, "--revisions", "all", "--out", o], &cache);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("3 already recorded, 0 to analyze"),
        "{stdout}"
    );
    assert_eq!(std::fs::read(&metrics).unwrap(), before);
}

/// Copies `from` (following the cache's symlinks) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn corrupt_and_missing_revisions_are_named_and_skipped() {
    // A Trainer-style folder: checkpoint-<step>/ subfolders.
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("trainer-output");
    let snapshots = repo_dir().join("snapshots");
    for name in ["step0", "step20", "step100"] {
        let commit = std::fs::read_to_string(repo_dir().join("refs").join(name)).unwrap();
        let step = name.trim_start_matches("step");
        copy_dir(
            &snapshots.join(commit.trim()),
            &folder.join(format!("checkpoint-{step}")),
        );
    }
    let bin = folder.join("checkpoint-20/pytorch_model.bin");
    let bytes = std::fs::read(&bin).unwrap();
    std::fs::write(&bin, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("out");
    let (code, stdout, err) = sinkscope(
        &[
            "analyze",
            folder.to_str().unwrap(),
            "--revisions",
            "0,20,50,100",
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, 1, "{stdout}\n{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("skipped revision"))
        .collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("checkpoint-20") && lines[0].contains("pytorch_model.bin"),
        "{err}"
    );
    assert!(
        lines[1].contains("50") && lines[1].contains("no such revision"),
        "{err}"
    );
    assert!(err.contains("2 of 4 revisions skipped"), "{err}");
    assert_eq!(steps(&records(&out.join("metrics.jsonl"))), [0, 100]);
}
