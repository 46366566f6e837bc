//! `analyze` end to end on a Hugging Face fixture (its `--dump` reproduces transformers'
//! numbers), on a checkpoint, and on bad input; the ablation experiment on a padded key
//! (nothing changes) and on a model with a strong first-token sink (loss rises).

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::Param;
use burn::prelude::*;
use safetensors::{Dtype, SafeTensors};
use sinkscope::eval::{ablate, capture, lm_batch, Subject};
use sinkscope::hooks::HookRunner;
use sinkscope::model::{Arch, Batch, ForwardOptions, KeyAblation, PositionKind, Taps, Transformer};
use sinkscope::train::train;

use crate::common::{root, sinkscope, tiny_model, tiny_recipe};

fn f32s(view: &safetensors::tensor::TensorView<'_>) -> Vec<f32> {
    view.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn analyze_dump_matches_transformers_and_logs_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let expected_bytes =
        std::fs::read(root().join("tests/fixtures/hf/llama/expected.safetensors")).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&expected_bytes).unwrap();
    let text = meta.metadata().as_ref().unwrap()["text"].clone();
    let expected = SafeTensors::deserialize(&expected_bytes).unwrap();
    let dump = dir.path().join("dump.safetensors");
    let out = dir.path().join("out");
    let (code, stdout, stderr) = sinkscope(&[
        "analyze",
        "tests/fixtures/hf/llama",
        "--text",
        &text,
        "--text",
        "Let there be light.",
        "--dump",
        dump.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--fisher",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("frame type:") && stdout.contains("\"<s>\"") && stdout.contains("Fisher"),
        "{stdout}"
    );

    let bytes = std::fs::read(&dump).unwrap();
    let got = SafeTensors::deserialize(&bytes).unwrap();
    let ids = got.tensor("input_ids").unwrap();
    assert_eq!(ids.dtype(), Dtype::I64);
    assert_eq!(ids.data(), expected.tensor("input_ids").unwrap().data());
    for name in ["attentions", "hidden_states"] {
        let (g, e) = (got.tensor(name).unwrap(), expected.tensor(name).unwrap());
        assert_eq!(g.shape(), e.shape(), "{name}");
        let diff = f32s(&g)
            .iter()
            .zip(f32s(&e))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "{name}: max abs diff {diff}");
    }

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("analysis.json")).unwrap()).unwrap();
    assert_eq!(json["texts"].as_array().unwrap().len(), 2);
    assert_eq!(json["evaluation"]["reports"].as_array().unwrap().len(), 2);
    assert!(json["evaluation"]["fisher"].as_array().unwrap().len() == 2);
    let events = sinkscope::log::read_events(out.join("tb")).unwrap();
    assert!(events.iter().any(|e| matches!(&e.value, sinkscope::log::LoggedValue::Scalar { tag, .. } if tag == "sink/rate/layer_01")));
}

#[test]
fn analyze_and_ablate_reject_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("latin1.txt");
    std::fs::write(&bad, b"caf\xe9\n").unwrap();
    let (code, _, err) = sinkscope(&[
        "analyze",
        "tests/fixtures/hf/gpt2",
        "--text-file",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("latin1.txt") && err.contains("UTF-8"), "{err}");
    let (code, _, err) = sinkscope(&["ablate", "/nonexistent/model", "--positions", "0"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/model"), "{err}");
    let (code, _, err) = sinkscope(&["ablate", "tests/fixtures/hf/gpt2", "--layers", "7"]);
    assert_eq!(code, 1);
    assert!(err.contains("layer 7"), "{err}");
}

#[test]
fn ablating_a_padded_key_changes_nothing() {
    // Padding makes position 5 a key no query attends to; masking it must leave every
    // real token's output and attention bit for bit as they were.
    let dev = Default::default();
    let mut cfg = tiny_model(PositionKind::Learned);
    cfg.arch = Arch::Encoder;
    let m = Transformer::<Flex>::init(&cfg, 5, &dev);
    let ids = Tensor::<Flex, 2, Int>::from_data(
        TensorData::new(vec![3i64, 9, 27, 81, 7, 0], [1, 6]),
        &dev,
    );
    let pad = Tensor::<Flex, 2, Bool>::from_data(
        TensorData::new(vec![false, false, false, false, false, true], [1, 6]),
        &dev,
    );
    let batch = Batch {
        ids,
        padding: Some(pad),
    };
    let run = |ablation: Option<KeyAblation>| {
        let out = m.forward(
            &batch,
            &ForwardOptions {
                taps: Taps::PROBS,
                ablation,
            },
        );
        let logits = out
            .logits
            .narrow(1, 0, 5)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let att: Vec<f32> = out
            .captured
            .probs
            .into_iter()
            .flat_map(|a| a.into_data().to_vec::<f32>().unwrap())
            .collect();
        (logits, att)
    };
    let before = run(None);
    let after = run(Some(KeyAblation {
        positions: vec![5],
        layers: None,
        heads: None,
    }));
    assert_eq!(before, after);
    // Masking a real key does change things (the comparison above can fail).
    assert_ne!(
        before,
        run(Some(KeyAblation {
            positions: vec![1],
            layers: None,
            heads: None
        }))
    );
}

/// A one-layer decoder whose every head sends almost all attention to the BOS token at
/// position 0, whose value is zero: the "dormant head" sink. Other tokens carry large
/// values, so masking the sink floods each position with them.
fn sink_model() -> Transformer<Flex> {
    let dev = Default::default();
    let mut cfg = tiny_model(PositionKind::None);
    cfg.n_layers = 1;
    cfg.n_heads = 1;
    cfg.qkv_bias = true;
    cfg.vocab_size = 16;
    let mut m = Transformer::<Flex>::init(&cfg, 9, &dev);
    let d = cfg.d_model;
    // Token 0 (BOS) lies along +e0 − e1, every other token is orthogonal to it.
    let mut emb = m.embed.weight.val().into_data().to_vec::<f32>().unwrap();
    for (tok, row) in emb.chunks_mut(d).enumerate() {
        if tok == 0 {
            row.iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = [1.0, -1.0].get(i).copied().unwrap_or(0.0));
        } else {
            row[0] = 0.0;
            row[1] = 0.0;
        }
    }
    m.embed.weight = Param::from_tensor(Tensor::from_data(TensorData::new(emb, [16, d]), &dev));
    let mut wk = vec![0f32; d * d];
    wk[0] = 40.0; // k_0 = 40·x_0 (x after the norm): large only for BOS
    let mut qb = vec![0f32; d];
    qb[0] = 1.0; // every query asks for k_0
    let mut wv = vec![0f32; d * d];
    for i in 2..d {
        wv[i * d + i] = 30.0; // values live outside BOS's plane: v_BOS = 0
    }
    let attn = &mut m.blocks[0].attn;
    attn.k.weight = Param::from_tensor(Tensor::from_data(TensorData::new(wk, [d, d]), &dev));
    attn.q.weight = Param::from_tensor(Tensor::zeros([d, d], &dev));
    attn.q.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(qb, [d]),
        &dev,
    )));
    attn.v.weight = Param::from_tensor(Tensor::from_data(TensorData::new(wv, [d, d]), &dev));
    m
}

#[test]
fn ablating_a_strong_first_token_sink_raises_loss() {
    let dev = Default::default();
    let m = sink_model();
    let seqs: Vec<Vec<u32>> = (0..4u32)
        .map(|s| {
            std::iter::once(0)
                .chain((1..12).map(|i| 1 + (i * 7 + s * 3) % 15))
                .collect()
        })
        .collect();
    // It is a sink: nearly all attention goes to position 0.
    let probe = capture(&m, &seqs, 0, false, &dev).unwrap();
    let report = sinkscope::analysis::analyze(&probe[0].maps, None, None, &Default::default());
    assert!(
        report.layers[0].sink.first_token_mass > 0.9,
        "{}",
        report.layers[0].sink.first_token_mass
    );
    // Targets: what the model itself predicts, so its loss is as low as it gets.
    let batches: Vec<_> = seqs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut b = lm_batch(s, i, true, None, 16, 0).unwrap();
            let ids: Vec<i64> = s.iter().map(|&x| x as i64).collect();
            let logits = m
                .forward(
                    &Batch {
                        ids: Tensor::from_data(TensorData::new(ids, [1, s.len()]), &dev),
                        padding: None,
                    },
                    &ForwardOptions::default(),
                )
                .logits
                .argmax(2)
                .into_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .unwrap();
            b.targets = logits.iter().map(|&x| x as u32).collect();
            b
        })
        .collect();
    let r = ablate(&m, true, &batches, &[0], None, None, &dev).unwrap();
    assert!(
        r.overall.delta_loss.unwrap() > 0.5,
        "loss {:?} → {:?}",
        r.overall.loss,
        r.overall.loss_ablated
    );
    assert!(r.overall.kl.unwrap() > 0.01, "KL {:?}", r.overall.kl);
    assert!(
        r.overall.entropy_shift[0] > 0.5,
        "entropy shift {:?}",
        r.overall.entropy_shift
    );
}

#[test]
fn ablate_and_analyze_load_a_checkpoint() {
    let dev = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let mut r = tiny_recipe(tiny_model(PositionKind::Rope), 4);
    r.hooks.enabled = false;
    let mut hooks = HookRunner::<Autodiff<Flex>>::new(&r.hooks, &r, dir.path(), &dev).unwrap();
    train::<Autodiff<Flex>>(&r, dir.path(), false, &dev, &mut hooks).unwrap();
    let subject = Subject::<Flex>::load(dir.path().to_str().unwrap(), &dev).unwrap();
    // Without texts, a checkpoint is run on its own probe windows (held-out text).
    assert_eq!(subject.probe_texts.len(), r.hooks.probes);
    assert!(subject
        .probe_texts
        .iter()
        .all(|t| t.len() == r.data.seq_len - 1));
    let enc = subject.encode("In the beginning").unwrap();
    assert_eq!(enc.tokens[0], "<bos>");
    assert_eq!(enc.ids.len(), 17);
    let b = lm_batch(&enc.ids, 0, true, None, 259, 0).unwrap();
    let report = ablate(
        &subject.model,
        subject.head,
        &[b],
        &[0],
        Some(vec![1]),
        Some(vec![0, 2]),
        &dev,
    )
    .unwrap();
    assert_eq!(report.per_layer.len(), 1);
    assert!(report.overall.kl.unwrap() > 0.0);
    let (code, stdout, err) = sinkscope(&[
        "analyze",
        dir.path().to_str().unwrap(),
        "--text",
        "And God said",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("sinkscope") && stdout.contains("\"<bos>\""),
        "{stdout}"
    );
    assert!(Path::new(&dir.path().join("checkpoints")).is_dir());
    let (code, stdout, err) = sinkscope(&["ablate", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let probes = format!("over {} texts", r.hooks.probes);
    assert!(stdout.contains(&probes), "{stdout}");
}
