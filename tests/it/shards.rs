//! Data at scale: `tokenize` → token shards → training; gradient accumulation equals
//! one large batch; a shard is never read with another tokenizer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::backend::{Autodiff, Flex};
use sinkscope::model::{PositionKind, Transformer};
use sinkscope::train::recipe::DeviceKind;
use sinkscope::train::shards::{ShardMeta, TokenDtype, TokenStream};
use sinkscope::train::tokenize::{tokenize, TokenizeJob};
use sinkscope::train::{train, train_on_devices, StepInfo, TrainEvents};

use crate::common::{root, tiny_model, tiny_recipe};

type B = Autodiff<Flex>;

#[derive(Default)]
struct Losses(BTreeMap<usize, f64>);

impl TrainEvents<B> for Losses {
    fn on_step(&mut self, info: &StepInfo, _model: &Transformer<B>) -> sinkscope::Result<()> {
        self.0.insert(info.step, info.loss);
        Ok(())
    }
}

fn tokenizer(name: &str) -> PathBuf {
    root()
        .join("tests/fixtures/hf")
        .join(name)
        .join("tokenizer.json")
}

/// A JSONL corpus of `n` KJV paragraphs (gzipped) and one plain-text document.
fn corpus(dir: &Path, n: usize) -> (Vec<PathBuf>, Vec<String>) {
    let text =
        sinkscope::train::data::read_corpus(&root().join("datasets/kjv/train.txt.gz"), "text")
            .unwrap();
    let docs: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .map(str::to_string)
        .collect();
    let jsonl: String = docs
        .iter()
        .map(|d| serde_json::json!({ "text": d }).to_string() + "\n")
        .collect();
    let gz = dir.join("docs.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, jsonl.as_bytes()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let txt = dir.join("last.txt");
    let last = text[text.len() - 20_000..].to_string();
    std::fs::write(&txt, &last).unwrap();
    let mut all = docs;
    all.push(last);
    (vec![gz, txt], all)
}

/// Shards of 100 KJV paragraphs tokenized with fixture `tokenizer` under `dir`.
pub(crate) fn tiny_shards(dir: &Path, tokenizer_name: &str) -> PathBuf {
    let (inputs, _) = corpus(dir, 100);
    let out = dir.join(format!("shards-{tokenizer_name}"));
    let job = TokenizeJob {
        inputs,
        tokenizer: tokenizer(tokenizer_name),
        out: out.clone(),
        heldout_every: 5,
        text_field: "text".into(),
    };
    tokenize(&job, &|_| {}).unwrap();
    out
}

#[test]
fn tokenized_shards_hold_every_document_in_order_with_separators() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, docs) = corpus(dir.path(), 400);
    let out = dir.path().join("shards");
    let job = TokenizeJob {
        inputs,
        tokenizer: tokenizer("gpt2"),
        out: out.clone(),
        heldout_every: 10,
        text_field: "text".into(),
    };
    let done = tokenize(&job, &|_| {}).unwrap();
    let meta = ShardMeta::read(&out).unwrap();
    assert_eq!(meta, done.meta);

    // The expectation, computed document by document with the tokenizers crate.
    let t = tokenizers::Tokenizer::from_file(tokenizer("gpt2")).unwrap();
    let eot = t.token_to_id("<|endoftext|>").unwrap();
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for (i, d) in docs.iter().enumerate() {
        let ids = t.encode(d.as_str(), false).unwrap().get_ids().to_vec();
        let dest = if i % 10 == 9 { &mut held } else { &mut train };
        dest.extend(ids);
        dest.push(eot);
    }
    assert_eq!(meta.train_documents, 361);
    assert_eq!(meta.heldout_documents, 40);
    assert_eq!(meta.train_tokens as usize, train.len());
    assert_eq!(meta.heldout_tokens as usize, held.len());
    assert_eq!(meta.dtype, TokenDtype::U16);
    assert_eq!(meta.vocab_size, t.get_vocab_size(true));
    assert_eq!(meta.separator_token.as_deref(), Some("<|endoftext|>"));
    let stream = TokenStream::map(&out.join("train.bin"), meta.dtype).unwrap();
    assert_eq!(stream.window(0, stream.len()), train);
    let stream = TokenStream::map(&out.join("heldout.bin"), meta.dtype).unwrap();
    assert_eq!(stream.window(0, stream.len()), held);

    // A truncated shard no longer matches its description.
    let bin = out.join("train.bin");
    let len = std::fs::metadata(&bin).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&bin)
        .unwrap()
        .set_len(len - 2)
        .unwrap();
    let e = ShardMeta::read(&out).unwrap_err().to_string();
    assert!(e.contains("train.bin") && e.contains("truncated"), "{e}");
}

#[test]
fn training_from_shards_learns_and_resumes_with_identical_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, _) = corpus(dir.path(), 600);
    let out = dir.path().join("shards");
    let job = TokenizeJob {
        inputs,
        tokenizer: tokenizer("llama"),
        out: out.clone(),
        heldout_every: 10,
        text_field: "text".into(),
    };
    tokenize(&job, &|_| {}).unwrap();
    let mut model = tiny_model(PositionKind::Rope);
    model.vocab_size = 0; // follows the tokenizer
    let mut recipe = tiny_recipe(model, 40);
    recipe.data.shards = Some(out.clone());
    recipe.train.checkpoint_every = 20;
    let dev = Default::default();
    let vocab = sinkscope::train::trainer::resolve_model(&recipe)
        .unwrap()
        .vocab_size;
    assert_eq!(vocab, 256, "the model's vocabulary follows the tokenizer");

    let whole_dir = tempfile::tempdir().unwrap();
    let mut whole = Losses::default();
    let o = train::<B>(&recipe, whole_dir.path(), false, &dev, &mut whole).unwrap();
    // Untrained ≈ ln 256 = 5.55 on held-out shards.
    let (first, held) = (whole.0[&1], o.heldout_loss.unwrap());
    assert!(
        first > 5.3 && held < first - 0.5,
        "loss {first} → held-out {held}"
    );

    let run = tempfile::tempdir().unwrap();
    let mut killed = recipe.clone();
    killed.train.halt_after = Some(30);
    train::<B>(&killed, run.path(), false, &dev, &mut Losses::default()).unwrap();
    let mut resumed = Losses::default();
    train::<B>(&recipe, run.path(), true, &dev, &mut resumed).unwrap();
    for (step, loss) in &resumed.0 {
        assert_eq!(loss.to_bits(), whole.0[step].to_bits(), "step {step}");
    }
    assert_eq!(resumed.0.keys().next(), Some(&21));
}

#[test]
fn a_shard_is_refused_with_another_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_shards(dir.path(), "gpt2");
    let mut recipe = tiny_recipe(tiny_model(PositionKind::Rope), 2);
    recipe.model.vocab_size = 0;
    recipe.data.shards = Some(out);
    recipe.data.tokenizer = Some(tokenizer("qwen2"));
    let e = sinkscope::train::trainer::resolve_model(&recipe)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("meta.json") && e.contains("gpt2") && e.contains("qwen2"),
        "{e}"
    );
}

/// One batch of 8, four accumulated micro-batches of 2, and two devices with two
/// accumulated micro-batches of 2 each (data parallelism: two threads on two CPU
/// "devices" of burn-flex, gradients moved to the first and summed) take the same steps.
#[test]
fn accumulated_and_data_parallel_steps_equal_one_large_batch() {
    let dev: burn::tensor::Device<B> = Default::default();
    for encoder in [false, true] {
        let mut model = tiny_model(PositionKind::Learned);
        if encoder {
            model.arch = sinkscope::model::Arch::Encoder;
        }
        let mut one = tiny_recipe(model, 4);
        one.train.batch_size = 8;
        one.train.grad_clip = 0.5; // clipping sees the accumulated gradient
        let mut four = one.clone();
        four.train.batch_size = 2;
        four.train.accumulate = 4;
        let mut two_by_two = four.clone();
        two_by_two.train.accumulate = 2;
        two_by_two.devices = vec![DeviceKind::Cpu, DeviceKind::Cpu];
        let (mut a, mut b, mut c) = (Losses::default(), Losses::default(), Losses::default());
        let (da, db, dc) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        train::<B>(&one, da.path(), false, &dev, &mut a).unwrap();
        train::<B>(&four, db.path(), false, &dev, &mut b).unwrap();
        let two = [dev, dev];
        train_on_devices::<B>(&two_by_two, dc.path(), false, &two, &mut c).unwrap();
        // A two-device recipe given one device is refused, naming both counts.
        let e = train::<B>(&two_by_two, dc.path(), false, &dev, &mut c)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("devices") && e.contains("2 device(s)") && e.contains("given 1"),
            "{e}"
        );
        assert_eq!(a.0.len(), 4);
        for (step, la) in &a.0 {
            for (how, lb) in [("accumulated", b.0[step]), ("two devices", c.0[step])] {
                assert!(
                    (la - lb).abs() < 2e-5 * la.abs(),
                    "{how}, step {step}: {la} vs {lb}"
                );
            }
        }
        // The weights after four steps agree too.
        let load = |d: &Path| {
            let last = sinkscope::train::checkpoint::list(d)
                .unwrap()
                .pop()
                .unwrap()
                .1;
            let (m, _) = sinkscope::train::checkpoint::load_model::<Flex>(&last, &dev).unwrap();
            sinkscope::eval::weight_matrices(&m)
                .unwrap()
                .into_iter()
                .flat_map(|w| w.data)
                .collect::<Vec<f32>>()
        };
        let wa = load(da.path());
        for (how, dir) in [("accumulated", &db), ("two devices", &dc)] {
            let worst = wa
                .iter()
                .zip(&load(dir.path()))
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 1e-5,
                "encoder {encoder}, {how}: weights differ by {worst}"
            );
        }
    }
}

#[test]
fn tokenize_command_reports_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"fine\"}\nnot json\n").unwrap();
    let missing = dir.path().join("missing.txt");
    for (input, tok, expect) in [
        (&bad, tokenizer("gpt2"), "line 2"),
        (&missing, tokenizer("gpt2"), "missing.txt"),
        (&bad, dir.path().join("nope.json"), "nope.json"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sinkscope"))
            .args(["tokenize"])
            .arg(input)
            .arg("--tokenizer")
            .arg(&tok)
            .arg("--out")
            .arg(dir.path().join("out"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(expect), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!dir.path().join("out/meta.json").exists());
    }
}
