//! Reliability, continued: damaged logs read by `report` (each lost record named,
//! the rest kept), a disk that fills up while a run logs (one line naming the file,
//! checkpoints intact, nothing half-written left), junk SentencePiece charsmaps,
//! checkpoints without checksums, and the size estimate of `metrics`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::json;
use sinkscope::log::record::record_at;
use sinkscope::log::{read_events, JsonlWriter, TensorBoardWriter};

use crate::common::root;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sinkscope"));
    c.current_dir(root()).env("RUST_LOG", "warn");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The one `error:` line of a failed command, checked to be the only one and free of
/// panics.
fn one_error_line(o: &Output, what: &str) -> String {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{what}: {e}");
    assert!(
        !e.contains("panicked") && !e.contains("internal error"),
        "{what}: {e}"
    );
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "{what}: one error line expected: {e}");
    lines[0].to_string()
}

/// A run folder holding logs only (a run stopped before its first checkpoint),
/// written with sinkscope's own writers: held-out losses at steps 4, 8, 12 in
/// TensorBoard, evaluations at 0, 4, 8, 12 in metrics.jsonl.
fn logs_only_run(dir: &Path) -> PathBuf {
    let mut tb = TensorBoardWriter::create(dir.join("tb")).unwrap();
    for step in [4u64, 8, 12] {
        tb.add_scalar("train/heldout_loss", 5.0 - step as f64 / 4.0, step)
            .unwrap();
    }
    tb.flush().unwrap();
    // Lines as RunLog writes them: the step first.
    #[derive(serde::Serialize)]
    struct Line {
        step: u64,
        scalars: serde_json::Value,
    }
    let mut m = JsonlWriter::open_append(dir.join("metrics.jsonl")).unwrap();
    for step in [0u64, 4, 8, 12] {
        let scalars = json!({"sink/rate": step as f64 / 100.0});
        m.write(&Line { step, scalars }).unwrap();
    }
    tb.path().to_path_buf()
}

/// `report` on a run whose event file has a damaged record in the middle and whose
/// metrics.jsonl has a torn line: each loss is a warning naming the file and the
/// step, the report notes it, and every intact record after the damage is used.
#[test]
fn report_skips_damaged_log_records_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let events = logs_only_run(&run);
    // A length byte of the step-8 record: the reader must find step 12 again.
    let mut b = std::fs::read(&events).unwrap();
    let step4 = record_at(&b, 0).unwrap().1;
    let step8 = record_at(&b, step4).unwrap().1;
    b[step8 + 2] ^= 0x20;
    std::fs::write(&events, &b).unwrap();
    let metrics = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let torn = &lines[1][..lines[1].len() / 2].to_string();
    lines[1] = torn;
    std::fs::write(&metrics, lines.join("\n") + "\n").unwrap();

    let out = dir.path().join("report");
    let o = bin()
        .args(["report"])
        .arg(&run)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains(&format!(
            "{}:2: skipped a damaged line (step 4)",
            metrics.display()
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "{}: damaged record at byte offset {step8}",
            events.display()
        )) && e.contains("a step from 4 to 12"),
        "{e}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("1 damaged line(s) in metrics.jsonl skipped (line(s) 2, step(s) 4"),
        "{md}"
    );
    assert!(md.contains("damaged TensorBoard record skipped"), "{md}");

    // The records after the damage were used: the held-out loss of step 12, and
    // the evaluations of steps 0, 8 and 12.
    let data = sinkscope::report::collect::collect_run(
        "run",
        &run,
        &sinkscope::report::CollectOptions::default(),
    );
    assert_eq!(data.heldout_loss, Some(2.0));
    let steps: Vec<usize> = data.evals.iter().map(|e| e.step).collect();
    assert_eq!(steps, [0, 8, 12]);
}

/// The tiny training run of these tests: checkpoints and evaluations every 4 steps.
fn train_cmd(out: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["train", "recipes/quick.toml", "--out"]).arg(out);
    for set in [
        "train.steps=24",
        "train.checkpoint_every=4",
        "train.eval_every=4",
        "train.log_every=1",
        "train.batch_size=4",
        "data.seq_len=32",
        "model.d_model=32",
        "model.d_ff=64",
        "hooks.probes=2",
        "train.eval_batches=1",
        "hooks.schedule=every:4",
    ] {
        c.args(["--set", set]);
    }
    c.args(extra).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Every regular file under `dir` with its bytes (links are not followed).
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let kind = std::fs::symlink_metadata(&p).unwrap().file_type();
            if kind.is_dir() {
                stack.push(p);
            } else if kind.is_file() {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The disk fills up while a resumed run writes metrics.jsonl (it is /dev/full,
/// whose writes fail with ENOSPC as a full disk's do): training stops with exit 1
/// and one line saying the disk is full and naming the file; the checkpoints
/// written before are byte for byte intact, and no temporary file or folder, nor a
/// torn event record, is left behind.
#[test]
#[cfg(target_os = "linux")]
fn a_full_disk_while_logging_stops_with_one_line_and_checkpoints_intact() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = train_cmd(&run, &["--set", "train.halt_after=10"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let checkpoints = run.join("checkpoints");
    let before = files_under(&checkpoints);
    assert!(!before.is_empty());
    let metrics = run.join("metrics.jsonl");
    std::fs::remove_file(&metrics).unwrap();
    std::os::unix::fs::symlink("/dev/full", &metrics).unwrap();

    let o = train_cmd(&run, &["--resume"]).output().unwrap();
    let line = one_error_line(&o, "disk full");
    assert!(
        line.contains(&format!("{}: disk full", metrics.display()))
            && line.contains("checkpoints already written are intact"),
        "{line}"
    );
    assert_eq!(files_under(&checkpoints), before, "checkpoints changed");
    for (p, _) in files_under(&run) {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            (name == sinkscope::train::lock::LOCK_FILE || !name.starts_with('.'))
                && !p.display().to_string().contains(".tmp-"),
            "left behind: {}",
            p.display()
        );
    }
    read_events(run.join("tb")).expect("event files hold whole records only");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// The real SentencePiece charsmap of `tests/fixtures/spm/` (rules: ligatures and
/// full-width forms to ASCII, …), decoded.
fn real_charsmap() -> Vec<u8> {
    use base64::Engine;
    let text = std::fs::read_to_string(root().join("tests/fixtures/spm/charsmap.b64")).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap()
}

/// The bert fixture's tokenizer.json with a `Precompiled` normalizer holding
/// `charsmap` in front of its own.
fn with_charsmap(tok: &serde_json::Value, charsmap: &[u8]) -> String {
    use base64::Engine;
    let mut t = tok.clone();
    let b64 = base64::engine::general_purpose::STANDARD.encode(charsmap);
    t["normalizer"] = json!({"type": "Sequence", "normalizers": [
        {"type": "Precompiled", "precompiled_charsmap": b64},
        tok["normalizer"].clone(),
    ]});
    t.to_string()
}

/// A `Precompiled` normalizer: a real SentencePiece charsmap is applied (ﬁ → fi,
/// full-width → ASCII), and generated junk — bit flips spread over the real one, trie
/// sizes past the data, misaligned or empty — ends each `analyze` in exit 0 or in exit
/// 1 with one line naming tokenizer.json and the field, refused by sinkscope's own
/// check (never by the panic containment, which would say "rejected by a dependency").
/// Training's tokenizer loader runs the same check.
#[test]
fn precompiled_charsmaps_are_checked_before_tokenizers_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    copy_dir(&root().join("tests/fixtures/hf/bert"), &model);
    let tok_path = model.join("tokenizer.json");
    let tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tok_path).unwrap()).unwrap();
    let real = real_charsmap();

    std::fs::write(&tok_path, with_charsmap(&tok, &real)).unwrap();
    let t = sinkscope::import::tokenizer::TextTokenizer::from_hf_folder(&model, None).unwrap();
    let ids = |s: &str| t.encode(s).unwrap().ids;
    assert_eq!(ids("\u{fb01}ne \u{ff21}\u{ff11}"), ids("fine A1"));
    assert_ne!(ids("\u{fb01}ne"), ids("\u{fb02}ne"));

    let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
    for k in 0..48usize {
        let mut b = real.clone();
        let at = 4 + (k * 97) % (b.len() - 4);
        b[at] ^= 1 << (k % 8);
        variants.push((format!("bit {} of byte {at}", k % 8), b));
    }
    for size in [u32::MAX, 4000, 1022, 0] {
        let mut b = real.clone();
        b[..4].copy_from_slice(&size.to_le_bytes());
        variants.push((format!("trie size {size}"), b));
    }
    variants.push(("two bytes".into(), vec![1, 2]));
    let (n, mut refused) = (variants.len(), 0);
    for (what, charsmap) in variants {
        std::fs::write(&tok_path, with_charsmap(&tok, &charsmap)).unwrap();
        let o = bin()
            .args(["analyze"])
            .arg(&model)
            .args([
                "--text",
                "\u{fb01}ne \u{ff21}\u{ff11} e\u{301}t\u{e9} and the words",
            ])
            .arg("--out")
            .arg(dir.path().join("out"))
            .stdout(Stdio::null())
            .output()
            .unwrap();
        if o.status.success() {
            continue;
        }
        let line = one_error_line(&o, &what);
        assert!(
            line.contains("tokenizer.json")
                && line.contains("normalizer.normalizers[0].precompiled_charsmap: ")
                && !line.contains("rejected by a dependency"),
            "{what}: {line}"
        );
        refused += 1;
    }
    eprintln!(
        "Precompiled charsmap damage: {n} tried, {refused} refused by the check, the rest harmless"
    );
    assert!(refused >= 5, "{refused} of {n}");

    // The training loader: the same check, naming the file and the field.
    std::fs::write(&tok_path, with_charsmap(&tok, &[0, 0, 0, 0])).unwrap();
    let e = sinkscope::train::vocab::Vocabulary::from_tokenizer_file(&tok_path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&tok_path.display().to_string())
            && e.contains("precompiled_charsmap: trie size 0"),
        "{e}"
    );
}

/// Checkpoints written before checksums existed stay usable, with a warning naming
/// the checkpoint, at resume and when `analyze` loads one; a checkpoint whose
/// checksums disagree with its weights is refused at load, naming the file.
#[test]
fn checkpoints_without_checksums_load_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = train_cmd(&run, &["--set", "train.halt_after=10"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let ckpt = |step: usize| run.join(format!("checkpoints/step-{step:08}"));
    for step in [4, 8] {
        std::fs::remove_file(ckpt(step).join("checksums.json")).unwrap();
    }
    let warning = |step: usize| {
        format!(
            "{}: no checksums.json (written before checkpoints carried checksums)",
            ckpt(step).display()
        )
    };

    let analyze = |what: &Path| {
        bin()
            .arg("analyze")
            .arg(what)
            .args(["--text", "And God said"])
            .stdout(Stdio::null())
            .output()
            .unwrap()
    };
    let o = analyze(&ckpt(4));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&warning(4)), "{}", stderr(&o));

    let o = train_cmd(&run, &["--resume"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&warning(8)), "{}", stderr(&o));

    // The checkpoints the resumed run wrote carry checksums: a flipped weight byte
    // is refused at load.
    let weights = ckpt(24).join("model.safetensors");
    let mut b = std::fs::read(&weights).unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    std::fs::write(&weights, b).unwrap();
    let o = analyze(&ckpt(24));
    let line = one_error_line(&o, "corrupt weights");
    assert!(
        line.contains(&format!("{}: checksum mismatch", weights.display())),
        "{line}"
    );
}
