//! TensorBoard as people use it: HParams records for every run and sweep, a
//! custom-scalars layout whose charts are per-metric with layers as lines, a tag
//! count within budget, and logs without terminal escape codes off a terminal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use burn::backend::{Autodiff, Flex};
use sinkscope::cli::train::TrainArgs;
use sinkscope::hooks::HookRunner;
use sinkscope::log::hparams::{status, HParamsData, HParamsPluginData, Kind};
use sinkscope::log::layout::series_of;
use sinkscope::log::{read_events, Layout, LoggedValue};
use sinkscope::model::PositionKind;
use sinkscope::train::recipe::Recipe;
use sinkscope::train::train;

use crate::common::{root, tiny_model, tiny_recipe};

type B = Autodiff<Flex>;

fn run(r: &Recipe, dir: &Path) {
    let dev = Default::default();
    let mut runner = HookRunner::<B>::new(&r.hooks, r, dir, &dev).unwrap();
    train::<B>(r, dir, false, &dev, &mut runner).unwrap();
}

/// What one run's TensorBoard folder holds, by kind.
#[derive(Default)]
struct Logged {
    /// Scalar tag → steps.
    scalars: BTreeMap<String, Vec<i64>>,
    /// HParams records with their steps.
    hparams: Vec<(i64, HParamsPluginData)>,
    layouts: Vec<Layout>,
}

fn logged(tb: &Path) -> Logged {
    let mut out = Logged::default();
    for e in read_events(tb).unwrap() {
        match e.value {
            LoggedValue::Scalar { tag, .. } => out.scalars.entry(tag).or_default().push(e.step),
            LoggedValue::HParams { data, .. } => out.hparams.push((e.step, data)),
            LoggedValue::Layout { layout, .. } => out.layouts.push(layout),
            _ => {}
        }
    }
    out
}

impl Logged {
    /// The hyperparameters of the session start (exactly one).
    fn session_hparams(&self) -> BTreeMap<String, Kind> {
        let starts: Vec<_> = self
            .hparams
            .iter()
            .filter_map(|(_, d)| match &d.data {
                Some(HParamsData::SessionStartInfo(s)) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(starts.len(), 1, "one session start per run");
        starts[0]
            .hparams
            .iter()
            .map(|(k, v)| (k.clone(), v.kind.clone().unwrap()))
            .collect()
    }

    /// `(step, status)` of every session end.
    fn session_ends(&self) -> Vec<(i64, i32)> {
        self.hparams
            .iter()
            .filter_map(|(step, d)| match &d.data {
                Some(HParamsData::SessionEndInfo(e)) => Some((*step, e.status)),
                _ => None,
            })
            .collect()
    }

    fn experiment(&self) -> &sinkscope::log::hparams::Experiment {
        let mut exps = self.hparams.iter().filter_map(|(_, d)| match &d.data {
            Some(HParamsData::Experiment(e)) => Some(e),
            _ => None,
        });
        let e = exps.next().expect("an experiment record");
        assert!(exps.next().is_none(), "one experiment record per run");
        e
    }
}

fn string(s: &str) -> Kind {
    Kind::String(s.into())
}

#[test]
fn a_run_writes_hparams_and_a_per_layer_layout_that_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = tiny_recipe(tiny_model(PositionKind::Rope), 4);
    r.hooks.probes = 2;
    r.train.log_every = 1;
    run(&r, dir.path());
    let l = logged(&dir.path().join("tb"));

    let hp = l.session_hparams();
    assert_eq!(hp["model.position.kind"], string("rope"));
    assert_eq!(hp["model.arch"], string("decoder"));
    assert_eq!(hp["model.n_layers"], Kind::Number(2.0));
    assert_eq!(hp["train.steps"], Kind::Number(4.0));
    assert_eq!(hp["seed"], Kind::Number(7.0));
    assert_eq!(l.session_ends(), [(4, status::SUCCESS)]);
    let metrics: Vec<&str> = l
        .experiment()
        .metric_infos
        .iter()
        .map(|m| m.name.as_ref().unwrap().tag.as_str())
        .collect();
    // Every metric column is a scalar the run logged, up to its last step.
    for m in &metrics {
        assert_eq!(l.scalars[*m].last(), Some(&4), "{m}");
    }
    assert!(metrics.contains(&"frame/type") && metrics.contains(&"train/heldout_loss"));

    // The layout is written with the first evaluation and once more when the Fisher
    // trace first has a value (step 1); the sink rate over all layers is one
    // chart, and every logged scalar is drawn by a chart of the last layout.
    assert_eq!(l.layouts.len(), 2);
    let layout = l.layouts.last().unwrap();
    let titles: Vec<&str> = layout.category.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(titles.first(), Some(&"sinks"));
    assert_eq!(titles.last(), Some(&"train"));
    let patterns: BTreeSet<&str> = layout
        .category
        .iter()
        .flat_map(|c| &c.chart)
        .flat_map(|c| c.patterns())
        .map(String::as_str)
        .collect();
    assert!(patterns.contains(r"^sink/rate/layer_\d+$"));
    assert!(l.scalars.contains_key("sink/rate/layer_00"));
    assert!(l.scalars.contains_key("sink/rate/layer_01"));
    for tag in l.scalars.keys() {
        assert!(
            patterns.contains(series_of(tag).1.as_str()) || tag.starts_with("train/"),
            "{tag} is in no chart"
        );
    }
    let sinks = &layout.category[0];
    assert!(!sinks.closed && layout.category[1].closed);

    // `frame/type` codes the verdict metrics.jsonl names.
    let codes: Vec<f32> = read_events(dir.path().join("tb"))
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.value {
            LoggedValue::Scalar { tag, value } if tag == "frame/type" => Some(value),
            _ => None,
        })
        .collect();
    let verdicts: Vec<f32> = std::fs::read_to_string(dir.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            match v["frame"]["frame_type"].as_str().unwrap() {
                "none" => 0.0,
                "centralized" => 1.0,
                "distributed" => 2.0,
                "bidirectional" => 3.0,
                other => panic!("unknown frame type {other}"),
            }
        })
        .collect();
    assert_eq!(codes, verdicts);

    // /std and per-head scalars are opt-in in TensorBoard, and stay in metrics.jsonl.
    assert!(!l
        .scalars
        .keys()
        .any(|t| t.ends_with("/std") || t.contains("/head_")));
    let jsonl = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert!(jsonl.contains("sink/rate/layer_00/std") && jsonl.contains("/head_03"));
}

/// A recipe for a tiny decoder; `extra` is TOML appended to it.
fn tiny_recipe_file(dir: &Path, extra: &str) -> PathBuf {
    let data = root().join("datasets/kjv");
    let text = format!(
        r#"name = "pe"
seed = 3
[model]
d_model = 32
n_layers = 2
n_heads = 2
d_ff = 64
max_seq_len = 32
[data]
train = "{}"
heldout = "{}"
seq_len = 32
[train]
steps = 3
batch_size = 4
warmup_steps = 1
eval_every = 0
checkpoint_every = 0
[hooks]
run = ["sinks"]
probes = 2
{extra}"#,
        data.join("train.txt.gz").display(),
        data.join("heldout.txt.gz").display()
    );
    let path = dir.join("pe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn sweep_recipe(dir: &Path) -> PathBuf {
    tiny_recipe_file(
        dir,
        "[sweep.axes]\n\"model.position.kind\" = [\"rope\", \"alibi\"]\n",
    )
}

fn train_cli_result(recipe: &Path, out: &Path, only: &[&str], set: &[&str]) -> anyhow::Result<()> {
    sinkscope::cli::train::run(&TrainArgs {
        recipe: recipe.to_path_buf(),
        out: Some(out.to_path_buf()),
        resume: false,
        allow_change: Vec::new(),
        set: set.iter().map(|s| s.to_string()).collect(),
        only: only.iter().map(|s| s.to_string()).collect(),
    })
}

fn train_cli(recipe: &Path, out: &Path, only: &[&str]) {
    train_cli_result(recipe, out, only, &[]).unwrap();
}

#[test]
fn a_failed_run_is_marked_failed_after_its_last_step() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe_file(dir.path(), "");
    let out = dir.path().join("run");
    // A learning rate that blows the weights up within a few steps.
    let blow_up = [
        "train.lr=1e9",
        "train.min_lr=1e9",
        "train.grad_clip=0.0",
        "train.steps=30",
    ];
    assert!(train_cli_result(&recipe, &out, &[], &blow_up).is_err());
    let l = logged(&out.join("tb"));
    let ends = l.session_ends();
    assert_eq!(ends.len(), 1, "{ends:?}");
    let (step, end_status) = ends[0];
    assert_eq!(end_status, status::FAILURE);
    assert!(
        step >= 2,
        "the failure is logged after the steps that ran: {step}"
    );
}

#[test]
fn a_sweep_of_two_runs_gives_two_sessions_whose_position_encodings_differ() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = sweep_recipe(dir.path());
    let out = dir.path().join("runs");
    train_cli(&recipe, &out, &[]);

    let mut kinds = Vec::new();
    for run in ["rope", "alibi"] {
        let l = logged(&out.join(run).join("tb"));
        let hp = l.session_hparams();
        kinds.push(hp["model.position.kind"].clone());
        assert_eq!(hp["seed"], Kind::Number(3.0));
        assert_eq!(l.session_ends(), [(3, status::SUCCESS)], "{run}");
        let pe = l
            .experiment()
            .hparam_infos
            .iter()
            .find(|h| h.name == "model.position.kind")
            .unwrap();
        assert!(pe.differs, "{run}");
    }
    assert_eq!(kinds, [string("rope"), string("alibi")]);

    // A run trained alone with --only still names the sweep's values, so its
    // session joins the others in one HParams table.
    let alone = dir.path().join("alone");
    train_cli(&recipe, &alone, &["alibi"]);
    assert!(!alone.join("rope").exists());
    let l = logged(&alone.join("alibi").join("tb"));
    let pe = l
        .experiment()
        .hparam_infos
        .iter()
        .find(|h| h.name == "model.position.kind")
        .unwrap();
    let domain = format!("{:?}", pe.domain);
    assert!(
        domain.contains("rope") && domain.contains("alibi"),
        "{domain}"
    );
}

/// Scalar tags TensorBoard may get from the default hooks of an `n_layers`-layer
/// model: the stated budget of `docs/HOOKS.md` (measured: 126·L + 22).
fn budget(n_layers: usize) -> usize {
    128 * n_layers + 32
}

fn scalar_tags(recipe: &Path, set: &[&str]) -> usize {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    let mut runs = Recipe::load(recipe, &set).unwrap();
    let r = runs.remove(0).recipe;
    let dir = tempfile::tempdir().unwrap();
    run(&r, dir.path());
    logged(&dir.path().join("tb")).scalars.len()
}

#[test]
fn tag_counts_stay_within_budget_for_the_quick_recipe_and_30_layers() {
    let quick = root().join("recipes/quick.toml");
    let short = ["train.steps=1", "hooks.probes=2"];
    let opt_in = ["hooks.std=true", "hooks.per_head=true"];
    for layers in [2usize, 30] {
        let n = format!("model.n_layers={layers}");
        let mut set = short.to_vec();
        set.push(&n);
        let tags = scalar_tags(&quick, &set);
        assert!(
            tags <= budget(layers),
            "{layers} layers: {tags} tags > {}",
            budget(layers)
        );
        // The weight spectra, graph, topology… of every layer are there.
        assert!(tags >= 100 * layers, "{layers} layers: only {tags} tags");
        // With the /std companions and per-head scalars back it is far over.
        set.extend(opt_in);
        let all = scalar_tags(&quick, &set);
        assert!(
            all > budget(layers) + 50 * layers,
            "{layers} layers: {all} tags with std and per_head"
        );
    }
}

#[test]
fn a_log_written_to_a_file_has_no_escape_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    let status = Command::new(env!("CARGO_BIN_EXE_sinkscope"))
        .args([
            "train",
            "recipes/quick.toml",
            "--set",
            "train.steps=20",
            "--set",
            "hooks.enabled=false",
            "--out",
        ])
        .arg(dir.path().join("run"))
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains('\x1b'), "escape codes in {text:?}");
    assert!(!text.contains('\r'), "a redrawn bar in {text:?}");
    // The progress bar's fallback: plain lines, the last at 100 %.
    assert!(text.contains("INFO step 2/20 (10%) loss"), "{text}");
    assert!(text.contains("step 20/20 (100%)"), "{text}");
}

#[test]
fn analyze_out_records_the_model_as_a_hyperparameter() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_sinkscope"))
        .args([
            "analyze",
            "tests/fixtures/hf/llama",
            "--text",
            "In the beginning",
            "--out",
        ])
        .arg(&out)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let l = logged(&out.join("tb"));
    let hp = l.session_hparams();
    assert_eq!(hp["model"], string("tests/fixtures/hf/llama"));
    assert!(matches!(&hp["model.position.kind"], Kind::String(_)));
    assert_eq!(l.session_ends(), [(0, status::SUCCESS)]);
    let layout = &l.layouts[0];
    assert_eq!(layout.category[0].title, "sinks");
    assert!(layout.category.iter().all(|c| c.title != "train"));
}
