//! Reliability under hostile input and kill -9: generated bad inputs (field mutations,
//! truncations, bit flips of the real fixtures and shipped recipes) must each end in
//! exit 0 or exit 1 with one `error:` line naming the file, never a panic or abort;
//! a run killed at any moment and resumed must log exactly what an uninterrupted run
//! logs, every tag; checkpoints prove their integrity; one process owns a run folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sinkscope::log::reader::{read_events, LoggedValue};

use crate::common::root;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sinkscope"));
    c.current_dir(root()).env("RUST_LOG", "warn");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run sinkscope")
}

/// How a bad input ended: refused (exit 1, one error line naming `file`) or accepted
/// (exit 0, the damage was harmless). Anything else fails the test.
#[derive(Debug, PartialEq)]
enum Ending {
    Refused,
    Accepted,
}

fn ending(out: &Output, file: &str, what: &str) -> Ending {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked")
            && !stderr.contains("internal error")
            && !stderr.contains("RUST_BACKTRACE"),
        "{what}: {stderr}"
    );
    match out.status.code() {
        Some(0) => Ending::Accepted,
        Some(1) => {
            let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
            assert_eq!(errors.len(), 1, "{what}: one error line expected: {stderr}");
            assert!(
                errors[0].contains(file),
                "{what}: the error should name {file}: {stderr}"
            );
            Ending::Refused
        }
        other => panic!("{what}: exit {other:?} (killed by a signal?): {stderr}"),
    }
}

fn refused(out: &Output, file: &str, what: &str) {
    assert_eq!(
        ending(out, file, what),
        Ending::Refused,
        "{what} was accepted"
    );
}

/// Bad values for recipe fields, applied with --set to every shipped recipe: each
/// must be refused, naming the recipe file and the field.
#[test]
fn recipe_field_mutations_are_refused_naming_file_and_field() {
    let bad: &[(&str, &str)] = &[
        ("train.min_lr", "nan"),
        ("train.lr", "-1.0"),
        ("train.lr", "inf"),
        ("train.beta1", "2.0"),
        ("train.beta2", "-0.5"),
        ("train.eps", "-1.0"),
        ("train.weight_decay", "nan"),
        ("train.grad_clip", "-1.0"),
        ("train.halt_after", "0"),
        ("train.steps", "0"),
        ("train.batch_size", "4611686018427387904"),
        ("model.vocab_size", "4611686018427387904"),
        ("model.d_model", "1000000000"),
        ("model.n_layers", "1099511627776"),
        ("model.norm_eps", "nan"),
        ("model.norm_eps", "1e308"),
        ("model.position.base", "inf"),
        ("model.position.base", "1e308"),
        (
            "model.position.scaling",
            "{ type = \"dynamic\", factor = 2.0, original_max = 0 }",
        ),
        (
            "model.position.scaling",
            "{ type = \"linear\", factor = -2.0 }",
        ),
        ("hooks.probes", "1000000000"),
        ("data.seq_len", "1"),
    ];
    let recipes: Vec<PathBuf> = std::fs::read_dir(root().join("recipes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    assert!(recipes.len() >= 4);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let mut tried = 0;
    for recipe in &recipes {
        let name = recipe.file_name().unwrap().to_string_lossy().to_string();
        for (field, value) in bad {
            let set = format!("{field}={value}");
            let what = format!("{name} --set {set}");
            let o = run(&[
                "train",
                &recipe.display().to_string(),
                "--set",
                &set,
                "--out",
                &out,
            ]);
            refused(&o, &name, &what);
            let line = String::from_utf8_lossy(&o.stderr).to_string();
            let leaf = field.rsplit('.').next().unwrap();
            assert!(
                line.contains(leaf) || line.contains("model") || line.contains("train."),
                "{what}: field not named: {line}"
            );
            tried += 1;
        }
    }
    assert_eq!(tried, recipes.len() * bad.len());
    // Nothing was trained.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    eprintln!("recipe field mutations refused: {tried}");
}

/// Sweeps that would train nothing, or write outside --out.
#[test]
fn empty_sweeps_and_escaping_run_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let quick = std::fs::read_to_string(root().join("recipes/quick.toml")).unwrap();
    let cases = [
        "\n[sweep.axes]\n\"train.lr\" = []\n",
        "\n[[sweep.extra]]\nname = \"../escaped\"\nset = { \"train.lr\" = 0.01 }\n",
        "\n[[sweep.extra]]\nname = \"/tmp/abs\"\nset = { \"train.lr\" = 0.01 }\n",
        "\n[[sweep.extra]]\nname = \"..\"\nset = { \"train.lr\" = 0.01 }\n",
        "\n[sweep.axes]\n\"data.train\" = [\"..\"]\n",
    ];
    for (i, tail) in cases.iter().enumerate() {
        let p = dir.path().join(format!("sweep{i}.toml"));
        std::fs::write(&p, format!("{quick}{tail}")).unwrap();
        let out = dir.path().join("out");
        let o = run(&[
            "train",
            &p.display().to_string(),
            "--out",
            &out.display().to_string(),
        ]);
        refused(&o, &format!("sweep{i}.toml"), tail);
        assert!(!out.exists(), "{tail}: something was written");
        assert!(!dir.path().join("escaped").exists());
    }
}

/// Truncations and bit flips of every shipped recipe never panic the loader; what is
/// refused names the file.
#[test]
fn damaged_recipe_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut tried = 0;
    let mut refused_n = 0;
    for entry in std::fs::read_dir(root().join("recipes")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let mut variants: Vec<Vec<u8>> = (1..24)
            .map(|k| bytes[..bytes.len() * k / 24].to_vec())
            .collect();
        for k in 0..40 {
            let mut b = bytes.clone();
            let at = (k * 7919) % b.len();
            b[at] ^= 1 << (k % 8);
            variants.push(b);
        }
        for v in variants {
            let p = dir.path().join("r.toml");
            std::fs::write(&p, &v).unwrap();
            let loaded = std::panic::catch_unwind(|| sinkscope::train::Recipe::load(&p, &[]));
            let loaded = loaded.expect("Recipe::load panicked");
            if let Err(e) = loaded {
                let e = e.to_string();
                assert!(e.contains("r.toml") && e.lines().count() == 1, "{e}");
                refused_n += 1;
            }
            tried += 1;
        }
    }
    eprintln!("damaged recipe files: {tried} tried, {refused_n} refused, the rest still valid");
    assert!(refused_n > tried / 2);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Every numeric field of the fixtures' config.json set to values no model has, each
/// field removed, and the file truncated: `analyze` refuses (naming a file of the
/// model folder) or, where the field is unused, still works — never a panic.
#[test]
fn config_json_mutations_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut tried = 0;
    let mut refused_n = 0;
    let bad_numbers = [
        serde_json::json!(-1),
        serde_json::json!(0),
        serde_json::json!(1e308),
        serde_json::json!(1u64 << 40),
        serde_json::json!(-2.5),
    ];
    for family in [
        "llama",
        "gpt2",
        "bert",
        "phi",
        "llama-rope-dynamic",
        "llama3-rope",
    ] {
        let fixture = root().join("tests/fixtures/hf").join(family);
        let model = dir.path().join(family);
        copy_dir(&fixture, &model);
        let cfg_path = model.join("config.json");
        let text = std::fs::read_to_string(fixture.join("config.json")).unwrap();
        let cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut variants: Vec<(String, String)> = Vec::new();
        let mut numeric = Vec::new();
        fn walk(v: &serde_json::Value, path: String, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        walk(v, format!("{path}/{k}"), out)
                    }
                }
                serde_json::Value::Number(_) => out.push(path),
                _ => {}
            }
        }
        walk(&cfg, String::new(), &mut numeric);
        for field in &numeric {
            for bad in &bad_numbers {
                let mut c = cfg.clone();
                *c.pointer_mut(field).unwrap() = bad.clone();
                variants.push((format!("{family}{field}={bad}"), c.to_string()));
            }
            let (parent, key) = field.rsplit_once('/').unwrap();
            let mut c = cfg.clone();
            let obj = if parent.is_empty() {
                c.as_object_mut()
            } else {
                c.pointer_mut(parent).unwrap().as_object_mut()
            };
            obj.unwrap().remove(key);
            variants.push((format!("{family} without {field}"), c.to_string()));
        }
        for k in 1..8 {
            variants.push((
                format!("{family} config cut at {k}/8"),
                text[..text.len() * k / 8].to_string(),
            ));
        }
        for (what, body) in variants {
            std::fs::write(&cfg_path, body).unwrap();
            let o = run(&[
                "analyze",
                &model.display().to_string(),
                "--text",
                "hello world",
            ]);
            if ending(&o, &model.display().to_string(), &what) == Ending::Refused {
                refused_n += 1;
            }
            tried += 1;
        }
    }
    eprintln!("config.json mutations: {tried} tried, {refused_n} refused, none panicked");
    assert!(refused_n > tried / 2, "{refused_n} of {tried}");
}

/// The mutations the issue names are refused, naming the field.
#[test]
fn config_json_values_out_of_range_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    copy_dir(&root().join("tests/fixtures/hf/llama"), &model);
    let text = std::fs::read_to_string(model.join("config.json")).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (pointer, value, needle) in [
        ("/rms_norm_eps", serde_json::json!(1e308), "norm_eps"),
        (
            "/rope_parameters/rope_theta",
            serde_json::json!(1e308),
            "base",
        ),
        ("/num_hidden_layers", serde_json::json!(1u64 << 40), "GB"),
        ("/vocab_size", serde_json::json!(1u64 << 62), "model"),
    ] {
        let mut c = cfg.clone();
        *c.pointer_mut(pointer).unwrap() = value;
        std::fs::write(model.join("config.json"), c.to_string()).unwrap();
        let o = run(&["analyze", &model.display().to_string(), "--text", "hi"]);
        refused(&o, "config.json", pointer);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(needle) || e.contains("EB"), "{pointer}: {e}");
    }
    let mut c = cfg.clone();
    c["rope_parameters"] =
        serde_json::json!({"rope_type": "linear", "factor": -2.0, "rope_theta": 10000.0});
    std::fs::write(model.join("config.json"), c.to_string()).unwrap();
    let o = run(&["analyze", &model.display().to_string(), "--text", "hi"]);
    refused(&o, "config.json", "negative linear factor");
}

/// Truncations and bit flips across the GGUF fixtures' header, metadata and tensor
/// table (and some data): refused naming the file, or harmless.
#[test]
fn gguf_truncations_and_bit_flips_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut tried = 0;
    let mut refused_n = 0;
    for name in ["llama.gguf", "qwen2.gguf"] {
        let bytes = std::fs::read(root().join("tests/fixtures/gguf").join(name)).unwrap();
        let path = dir.path().join(name);
        let shown = path.display().to_string();
        let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
        for k in 0..40 {
            let cut = bytes.len() * k / 40;
            variants.push((format!("{name} cut at {cut}"), bytes[..cut].to_vec()));
        }
        // Flips dense in the first 8 KiB (header, metadata, tensor table), sparse after.
        for k in 0..160usize {
            let at = if k < 120 {
                (k * 67) % 8192.min(bytes.len())
            } else {
                (k * 104_729) % bytes.len()
            };
            let mut b = bytes.clone();
            b[at] ^= 1 << (k % 8);
            variants.push((format!("{name} bit {} of byte {at}", k % 8), b));
        }
        for (what, b) in variants {
            std::fs::write(&path, &b).unwrap();
            let o = run(&["analyze", &shown, "--text", "hello world"]);
            if ending(&o, &shown, &what) == Ending::Refused {
                refused_n += 1;
            }
            tried += 1;
        }
    }
    eprintln!("GGUF damage: {tried} tried, {refused_n} refused, none panicked");
    assert!(refused_n >= 80, "{refused_n} of {tried}");
}

/// tokenizer.json damage `tokenizers` accepts but panics on later, plus truncations.
#[test]
fn tokenizer_json_damage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    copy_dir(&root().join("tests/fixtures/hf/bert"), &model);
    let tok_path = model.join("tokenizer.json");
    let text = std::fs::read_to_string(&tok_path).unwrap();
    let tok: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut variants: Vec<(String, String)> = Vec::new();
    for special in ["[CLS]", "[SEP]"] {
        let mut t = tok.clone();
        t["post_processor"]["special_tokens"]
            .as_object_mut()
            .unwrap()
            .remove(special);
        variants.push((format!("template without {special}"), t.to_string()));
        let mut t = tok.clone();
        t["post_processor"]["special_tokens"][special]["ids"] = serde_json::json!([100000]);
        variants.push((
            format!("{special} id outside the vocabulary"),
            t.to_string(),
        ));
    }
    for junk in ["AAAAAAAAAAAAAAA=", "", "////"] {
        let mut t = tok.clone();
        t["normalizer"] = serde_json::json!({"type": "Precompiled", "precompiled_charsmap": junk});
        variants.push((format!("Precompiled charsmap {junk:?}"), t.to_string()));
    }
    for k in 1..10 {
        variants.push((
            format!("cut at {k}/10"),
            text[..text.len() * k / 10].to_string(),
        ));
    }
    let n = variants.len();
    for (what, body) in variants {
        std::fs::write(&tok_path, body).unwrap();
        let o = run(&[
            "analyze",
            &model.display().to_string(),
            "--text",
            "hello world",
        ]);
        refused(&o, "tokenizer.json", &what);
    }
    eprintln!("tokenizer.json damage: {n} tried, all refused");
}

fn npy(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

/// .npy headers numpy itself rejects, and truncations of a good file.
#[test]
fn npy_headers_numpy_rejects_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maps.npy");
    let shown = path.display().to_string();
    // A valid [1, 1, 3, 3] causal attention map.
    let rows: [[f32; 3]; 3] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]];
    let data: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let good = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 3, 3), }";
    std::fs::write(&path, npy(good, &data)).unwrap();
    assert_eq!(
        ending(&run(&["metrics", &shown]), &shown, "good"),
        Ending::Accepted
    );
    let shapes = [
        "(1 1 3 3)",
        "(1, 1, 3, 3,,,)",
        "(1,, 1, 3, 3)",
        "(9)",
        "(,)",
        "(1, 1, 3, 3",
        "1, 1, 3, 3",
        "(1, 1, -3, 3)",
        "(1, 1, 3.0, 3)",
        "(1, 1, 3, 4)",
    ];
    let mut variants: Vec<String> = shapes
        .iter()
        .map(|s| format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {s}, }}"))
        .collect();
    variants.extend(
        [
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 3, 3), } junk",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 3, 3), }}",
            "{'descr': '<f4' 'fortran_order': False, 'shape': (1, 1, 3, 3)}",
            "{'descr': '<f4', , 'fortran_order': False, 'shape': (1, 1, 3, 3)}",
            "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1, 1, 3, 3)}",
            "{'descr': '<c8', 'fortran_order': False, 'shape': (1, 1, 3, 3)}",
            "{'descr': '<f4', 'fortran_order': False}",
            "['descr', '<f4']",
        ]
        .map(String::from),
    );
    let mut tried = 0;
    for h in &variants {
        std::fs::write(&path, npy(h, &data)).unwrap();
        refused(&run(&["metrics", &shown]), &shown, h);
        tried += 1;
    }
    let good_bytes = npy(good, &data);
    for cut in (0..good_bytes.len() - 1).step_by(5) {
        std::fs::write(&path, &good_bytes[..cut]).unwrap();
        refused(&run(&["metrics", &shown]), &shown, &format!("cut at {cut}"));
        tried += 1;
    }
    eprintln!(".npy damage: {tried} tried, all refused");
}

/// `sinkscope … | head -1`: the reader goes away, the command ends quietly.
#[test]
fn a_closed_pipe_ends_quietly() {
    use std::io::{BufRead, BufReader};
    let mut child = bin()
        .args(["spectra", "tests/fixtures/hf/llama"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // stdout is dropped here: the pipe is closed with most of the table unread.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!first.is_empty());
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------- runs and resume

/// The quick recipe shrunk to a second: evaluations (every hook, Fisher included)
/// and checkpoints every 4 steps.
const TINY: &[&str] = &[
    "--set",
    "train.steps=24",
    "--set",
    "train.checkpoint_every=4",
    "--set",
    "train.eval_every=4",
    "--set",
    "train.log_every=1",
    "--set",
    "train.batch_size=4",
    "--set",
    "data.seq_len=32",
    "--set",
    "model.d_model=32",
    "--set",
    "model.d_ff=64",
    "--set",
    "hooks.probes=2",
    "--set",
    "train.eval_batches=1",
    "--set",
    "hooks.schedule=every:4",
];

fn train_cmd(out: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["train", "recipes/quick.toml", "--out"])
        .arg(out)
        .args(TINY)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn train_ok(out: &Path, extra: &[&str]) -> String {
    let o = train_cmd(out, extra).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{stderr}");
    stderr
}

/// Every logged value except timings, as (tag, step) → values in order: scalars
/// (TensorBoard and metrics.jsonl), histograms, images, texts.
fn logged(run: &Path) -> BTreeMap<(String, i64), Vec<String>> {
    let mut out: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    for e in read_events(run.join("tb")).unwrap() {
        let Some(tag) = e.value.tag().map(str::to_string) else {
            continue;
        };
        // Throughput and TensorBoard's HParams records (their start and end times are
        // wall-clock seconds) differ between any two runs.
        if tag.contains("tokens_per_sec") || tag.starts_with("_hparams_/") {
            continue;
        }
        let v = match &e.value {
            LoggedValue::FileVersion(_) => continue,
            other => format!("{other:?}"),
        };
        // TensorBoard draws the newest custom-scalars layout; a resumed run writes it
        // again at its first evaluation. The final layout must be the same.
        if tag == "custom_scalars__config__" {
            out.insert((tag, -1), vec![v]);
            continue;
        }
        out.entry((tag, e.step)).or_default().push(v);
    }
    for line in std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
    {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(s) = v.get_mut("scalars").and_then(|s| s.as_object_mut()) {
            s.remove("train/tokens_per_sec");
        }
        let step = v["step"].as_i64().unwrap_or(-1);
        out.entry(("metrics.jsonl".into(), step))
            .or_default()
            .push(v.to_string());
    }
    out
}

/// [`logged`] without the recipe text: a run stopped by `train.halt_after` logged
/// that setting in its recipe at step 0.
fn logged_but_recipe(run: &Path) -> BTreeMap<(String, i64), Vec<String>> {
    let mut m = logged(run);
    m.retain(|(tag, _), _| tag != "recipe");
    m
}

fn checkpoint_files(run: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let root = run.join("checkpoints");
    for step in std::fs::read_dir(&root).unwrap() {
        let step = step.unwrap().path();
        for f in std::fs::read_dir(&step).unwrap() {
            let f = f.unwrap().path();
            out.insert(
                f.strip_prefix(&root).unwrap().display().to_string(),
                std::fs::read(&f).unwrap(),
            );
        }
    }
    out
}

/// kill -9 at spread-out moments of a run, then --resume: every logged value and
/// every checkpoint byte equals the uninterrupted run's.
#[test]
fn kill_9_at_any_moment_then_resume_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let t0 = std::time::Instant::now();
    train_ok(&whole, &[]);
    let full_time = t0.elapsed();
    let expected = logged(&whole);
    let expected_ckpt = checkpoint_files(&whole);
    assert!(expected.keys().any(|(t, _)| t.starts_with("fisher/")));
    // Same seed, same bytes: a second run's checkpoints equal the first's.
    let again = dir.path().join("again");
    train_ok(&again, &[]);
    assert!(
        checkpoint_files(&again) == expected_ckpt,
        "checkpoints differ between identical runs"
    );

    let trials = 6;
    let mut matched = 0;
    let mut killed_mid_run = 0;
    for trial in 0..trials {
        let out = dir.path().join(format!("killed{trial}"));
        let mut child = train_cmd(&out, &[]).spawn().unwrap();
        // Moments spread over the run's length (start-up included).
        let at = full_time.mul_f64((trial as f64 + 0.5) / trials as f64);
        std::thread::sleep(at);
        let finished = child.try_wait().unwrap().is_some();
        // SAFETY-free: kill(2) through the standard library sends SIGKILL.
        let _ = child.kill();
        let _ = child.wait();
        if !finished {
            killed_mid_run += 1;
        }
        train_ok(&out, &["--resume"]);
        let got = logged(&out);
        let same_ckpt = checkpoint_files(&out) == expected_ckpt;
        if got == expected && same_ckpt {
            matched += 1;
        } else {
            let diff: Vec<_> = expected
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(*v))
                .map(|(k, _)| k.clone())
                .take(5)
                .collect();
            let extra: Vec<_> = got
                .keys()
                .filter(|k| !expected.contains_key(*k))
                .take(5)
                .collect();
            panic!("trial {trial} (kill at {at:?}): differs at {diff:?}, extra {extra:?}; checkpoints equal: {same_ckpt}");
        }
    }
    eprintln!(
        "kill -9 trials: {trials} ({killed_mid_run} killed mid-run), {matched} matched the uninterrupted run exactly"
    );
    assert_eq!(matched, trials);
}

/// A zeroed page, a truncated file, an empty folder in the newest checkpoint: resume
/// falls back to the newest intact one, says what was wrong, and ends as the
/// uninterrupted run does.
#[test]
fn damaged_newest_checkpoint_falls_back_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    train_ok(&whole, &[]);
    let expected = logged_but_recipe(&whole);
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 4] = [
        ("zeroed page", |c| {
            let p = c.join("optimizer.mpk");
            let mut b = std::fs::read(&p).unwrap();
            b[4096..8192].fill(0);
            std::fs::write(&p, b).unwrap();
        }),
        ("truncated weights", |c| {
            let p = c.join("model.safetensors");
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() / 2]).unwrap();
        }),
        ("empty folder", |c| {
            for f in std::fs::read_dir(c).unwrap() {
                std::fs::remove_file(f.unwrap().path()).unwrap();
            }
        }),
        ("flipped sidecar byte", |c| {
            let p = c.join("checkpoint.json");
            let mut b = std::fs::read(&p).unwrap();
            b[100] ^= 4;
            std::fs::write(&p, b).unwrap();
        }),
    ];
    for (what, damage) in damages {
        let out = dir.path().join(what.replace(' ', "-"));
        train_ok(&out, &["--set", "train.halt_after=14"]);
        damage(&out.join("checkpoints/step-00000012"));
        let stderr = train_ok(&out, &["--resume"]);
        assert!(
            stderr.contains("step-00000012") && stderr.contains("step-00000008"),
            "{what}: {stderr}"
        );
        assert!(
            logged_but_recipe(&out) == expected,
            "{what}: logs differ from the uninterrupted run"
        );
    }
}

/// A second process on a folder in use exits 1 naming the folder and the holder.
#[test]
fn a_run_folder_has_one_owner() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    let lock = sinkscope::train::lock::RunLock::acquire(&out).unwrap();
    let o = train_cmd(&out, &[]).output().unwrap();
    refused(&o, &out.display().to_string(), "second owner");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
    assert!(!out.join("checkpoints").exists());
    drop(lock);
    // The lock goes with its holder, kill -9 included.
    let mut child = train_cmd(&out, &["--set", "train.steps=100000"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    sinkscope::train::lock::RunLock::acquire(&out).expect("lock released by kill -9");
}

/// Resume with a changed recipe: refused listing the fields, unless allowed; an
/// allowed change is recorded with its step.
#[test]
fn changed_recipes_on_resume_need_allow_change() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    train_ok(&out, &["--set", "train.halt_after=10"]);
    let changed = ["--resume", "--set", "train.lr=0.001", "--set", "seed=7"];
    let o = train_cmd(&out, &changed).output().unwrap();
    refused(&o, &out.display().to_string(), "changed lr and seed");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("train.lr") && e.contains("seed"), "{e}");
    let mut partly = changed.to_vec();
    partly.extend(["--allow-change", "train.lr"]);
    let o = train_cmd(&out, &partly).output().unwrap();
    refused(&o, &out.display().to_string(), "seed not allowed");
    let mut allowed = changed.to_vec();
    allowed.extend(["--allow-change", "train.lr,seed"]);
    train_ok(&out, &allowed);
    let history = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(history.trim()).unwrap();
    assert_eq!(line["step"], 8);
    let fields: Vec<&str> = line["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["seed", "train.lr"]);
    // The checkpoints now carry the new recipe.
    let meta =
        std::fs::read_to_string(out.join("checkpoints/step-00000024/checkpoint.json")).unwrap();
    assert!(meta.contains("\"lr\": 0.001"), "{meta}");
}

/// A damaged record in the middle of an event file and a damaged metrics.jsonl line:
/// resume skips them, names the step, and keeps every intact record after them.
#[test]
fn damaged_log_records_mid_file_are_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    train_ok(&out, &["--set", "train.halt_after=14"]);
    let tb = std::fs::read_dir(out.join("tb"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut b = std::fs::read(&tb).unwrap();
    let mid = b.len() / 3;
    b[mid] ^= 0x10;
    std::fs::write(&tb, &b).unwrap();
    let metrics = out.join("metrics.jsonl");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let half = lines[1].len() / 2;
    lines[1].truncate(half);
    std::fs::write(&metrics, lines.join("\n") + "\n").unwrap();
    let stderr = train_ok(&out, &["--resume"]);
    assert!(stderr.contains("damaged record"), "{stderr}");
    assert!(
        stderr.contains("skipped a damaged line (step 4)"),
        "{stderr}"
    );
    // Every value kept equals the uninterrupted run's; only the damaged record's
    // values are missing, and everything logged after it is there.
    let whole = dir.path().join("whole");
    train_ok(&whole, &[]);
    let (expected, got) = (logged_but_recipe(&whole), logged_but_recipe(&out));
    assert!(got.iter().all(|(k, v)| expected.get(k) == Some(v)));
    let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    // One damaged event record holds one step's values (an evaluation's scalars are
    // one event), plus the damaged metrics.jsonl line.
    let steps: std::collections::BTreeSet<i64> = missing
        .iter()
        .filter(|(t, _)| t != "metrics.jsonl")
        .map(|(_, s)| *s)
        .collect();
    assert!(!missing.is_empty() && steps.len() == 1, "{steps:?}");
    assert!(got.keys().any(|(_, step)| *step == 24));
    assert_eq!(
        missing.iter().filter(|(t, _)| t == "metrics.jsonl").count(),
        1
    );
}
