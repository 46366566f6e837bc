//! Capture by taps: each tap hands out what its definition says (checked against a
//! recomputation from the weights on the host), only the taps asked for are kept, the
//! logits do not depend on what is captured, and the value-norm ratio reaches the
//! evaluation's scalars with the value of an independent computation.

use burn::backend::Flex;
use burn::prelude::*;
use sinkscope::analysis::AnalysisConfig;
use sinkscope::eval::{analyze_streaming, capture, evaluate, EvalPlan};
use sinkscope::model::{
    Batch, ForwardOptions, LayerTaps, ModelConfig, PositionKind, Taps, Transformer,
};

use sinkscope::import::load;

use crate::common::tiny_model;
use crate::import::{fixture, host, max_abs_diff, read_expected};

type B = Flex;

fn batch(b: usize, t: usize) -> Batch<B> {
    let v: Vec<i64> = (0..b * t).map(|i| ((i * 37 + 11) % 250) as i64).collect();
    Batch {
        ids: Tensor::from_data(TensorData::new(v, [b, t]), &Default::default()),
        padding: None,
    }
}

/// A grouped-query decoder (4 query heads over 2 key/value heads) with rotary positions
/// and soft-capped scores, so every branch of the attention is on the way.
fn gqa() -> ModelConfig {
    let mut cfg = tiny_model(PositionKind::Rope);
    cfg.n_kv_heads = Some(2);
    cfg.attn_softcap = Some(30.0);
    cfg
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - y).abs())
        .fold(0.0, f64::max)
}

const ALL: Taps = Taps {
    scores: true,
    probs: true,
    values: true,
    head_outputs: true,
    residuals: true,
};

#[test]
fn every_tap_is_what_it_says() {
    let cfg = gqa();
    let m = Transformer::<B>::init(&cfg, 5, &Default::default());
    let (b, t) = (2, 9);
    let (h, kv, dh) = (cfg.n_heads, cfg.kv_heads(), cfg.head_dim());
    let out = m.forward(&batch(b, t), &ForwardOptions::capture(ALL));
    let c = &out.captured;
    let l = cfg.n_layers;
    assert_eq!(
        (
            c.scores.len(),
            c.probs.len(),
            c.values.len(),
            c.head_outputs.len()
        ),
        (l, l, l, l)
    );
    assert_eq!(c.residuals.len(), l + 1);
    for layer in 0..l {
        assert_eq!(c.scores[layer].dims(), [b, h, t, t]);
        assert_eq!(c.values[layer].dims(), [b, kv, t, dh]);
        assert_eq!(c.head_outputs[layer].dims(), [b, h, t, dh]);
        // values = v_proj(attn_norm(residual in)), heads first
        let block = &m.blocks[layer];
        let x = block
            .attn_norm
            .as_ref()
            .unwrap()
            .forward(c.residuals[layer].clone());
        let v = block
            .attn
            .v
            .forward(x)
            .reshape([b, t, kv, dh])
            .swap_dims(1, 2);
        let want: Vec<f64> = host(v).into_iter().map(f64::from).collect();
        assert!(max_diff(&host(c.values[layer].clone()), &want) < 1e-6);

        // probs = causal softmax of the scores, row by row, in f64
        let (scores, probs) = (host(c.scores[layer].clone()), host(c.probs[layer].clone()));
        let mut want = vec![0.0f64; probs.len()];
        for (r, (row, out)) in scores.chunks(t).zip(want.chunks_mut(t)).enumerate() {
            let i = r % t;
            let max = row[..=i].iter().fold(f32::MIN, |m, &x| m.max(x)) as f64;
            let z: f64 = row[..=i].iter().map(|&s| (s as f64 - max).exp()).sum();
            for j in 0..=i {
                out[j] = (row[j] as f64 - max).exp() / z;
            }
        }
        assert!(max_diff(&probs, &want) < 1e-5, "layer {layer}");
        // soft-capped: |score| < 30
        assert!(scores.iter().all(|s| s.abs() < 30.0));

        // head outputs = probs · values of the head's key/value head
        let values = host(c.values[layer].clone());
        let mut want = vec![0.0f64; b * h * t * dh];
        for bi in 0..b {
            for hi in 0..h {
                let g = hi / (h / kv);
                for i in 0..t {
                    for j in 0..t {
                        let p = probs[((bi * h + hi) * t + i) * t + j] as f64;
                        for d in 0..dh {
                            want[((bi * h + hi) * t + i) * dh + d] +=
                                p * values[((bi * kv + g) * t + j) * dh + d] as f64;
                        }
                    }
                }
            }
        }
        assert!(max_diff(&host(c.head_outputs[layer].clone()), &want) < 1e-5);
    }
}

#[test]
fn only_the_taps_asked_for_are_kept_and_logits_do_not_change() {
    let cfg = gqa();
    let m = Transformer::<B>::init(&cfg, 5, &Default::default());
    let input = batch(1, 7);
    let all = m.forward(&input, &ForwardOptions::capture(ALL));
    let plain = m.forward(&input, &ForwardOptions::default());
    assert_eq!(host(plain.logits.clone()), host(all.logits.clone()));
    for one in [
        Taps::SCORES,
        Taps::PROBS,
        Taps::VALUES,
        Taps::HEAD_OUTPUTS,
        Taps::RESIDUALS,
    ] {
        let out = m.forward(&input, &ForwardOptions::capture(one));
        let c = &out.captured;
        let counts = [
            c.scores.len(),
            c.probs.len(),
            c.values.len(),
            c.head_outputs.len(),
            c.residuals.len(),
        ];
        let n = |on: bool, per_run: usize| if on { per_run } else { 0 };
        let l = cfg.n_layers;
        let want = [
            n(one.scores, l),
            n(one.probs, l),
            n(one.values, l),
            n(one.head_outputs, l),
            n(one.residuals, l + 1),
        ];
        assert_eq!(counts, want, "{one:?}");
        assert_eq!(c.final_hidden.is_some(), one.residuals);
        assert_eq!(
            host(out.logits.clone()),
            host(plain.logits.clone()),
            "{one:?}"
        );
        if one.values {
            assert_eq!(
                host(c.values[1].clone()),
                host(all.captured.values[1].clone())
            );
        }
    }

    // Streaming: a visit per layer with exactly the taps asked for, none without any.
    let mut seen = Vec::new();
    let mut visit = |layer: usize, taps: LayerTaps<B>| {
        seen.push((
            layer,
            taps.wants(),
            taps.scores.is_some(),
            taps.probs.is_some(),
            taps.values.is_some(),
            taps.head_outputs.is_some(),
        ))
    };
    let want = Taps::PROBS | Taps::VALUES;
    let out = m
        .forward_visit(&input, &ForwardOptions::capture(want), &mut visit)
        .unwrap();
    assert!(out.captured.probs.is_empty() && out.captured.values.is_empty());
    assert_eq!(
        seen,
        [
            (0, want, false, true, true, false),
            (1, want, false, true, true, false)
        ]
    );
    seen.clear();
    let mut visit =
        |layer: usize, _: LayerTaps<B>| seen.push((layer, Taps::NONE, false, false, false, false));
    m.forward_visit(
        &input,
        &ForwardOptions::capture(Taps::RESIDUALS),
        &mut visit,
    )
    .unwrap();
    assert!(seen.is_empty());
}

/// ‖v_s‖ / mean_{j≠s} ‖v_j‖ per query head (s = its most attended key, by column sum),
/// averaged over heads: written from the definition in docs/METRICS.md, on the raw
/// tensors of a forward pass.
fn value_norm_ratio_by_hand(
    probs: &[f32],
    values: &[f32],
    h: usize,
    kv: usize,
    t: usize,
    dh: usize,
) -> f64 {
    let mut total = 0.0;
    for head in 0..h {
        let map = &probs[head * t * t..(head + 1) * t * t];
        let col = |j: usize| (0..t).map(|i| map[i * t + j] as f64).sum::<f64>();
        let sink = (0..t).fold(0, |best, j| if col(j) > col(best) { j } else { best });
        let g = head * kv / h;
        let norm = |j: usize| {
            let v = &values[(g * t + j) * dh..(g * t + j + 1) * dh];
            v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
        };
        let others = (0..t).filter(|&j| j != sink).map(norm).sum::<f64>() / (t - 1) as f64;
        total += norm(sink) / others;
    }
    total / h as f64
}

#[test]
fn value_norm_ratio_reaches_the_scalars_through_both_evaluation_paths() {
    let cfg = gqa();
    let dev = Default::default();
    let m = Transformer::<B>::init(&cfg, 5, &dev);
    let seqs: Vec<Vec<u32>> = vec![
        (0..12).map(|i| (i * 7 + 3) % 250).collect(),
        (0..8).map(|i| (i * 11 + 1) % 250).collect(),
    ];
    let (h, kv, dh) = (cfg.n_heads, cfg.kv_heads(), cfg.head_dim());
    let probe = capture(&m, &seqs, 0, false, &dev).unwrap();
    let values = probe[0].values.as_ref().unwrap();
    assert_eq!(
        (values.layers(), values.kv_heads(), values.seq_len()),
        (2, kv, 12)
    );
    let plan = EvalPlan::default();
    let ev = evaluate(None, &probe, &[], None, &plan).unwrap();
    for (s, seq) in seqs.iter().enumerate() {
        // the same sequence alone, unpadded, through the bare forward pass
        let t = seq.len();
        let ids: Vec<i64> = seq.iter().map(|&x| x as i64).collect();
        let one = Batch {
            ids: Tensor::from_data(TensorData::new(ids, [1, t]), &dev),
            padding: None,
        };
        let c = m
            .forward(&one, &ForwardOptions::capture(Taps::PROBS | Taps::VALUES))
            .captured;
        for layer in 0..cfg.n_layers {
            let want = value_norm_ratio_by_hand(
                &host(c.probs[layer].clone()),
                &host(c.values[layer].clone()),
                h,
                kv,
                t,
                dh,
            );
            let got = ev.reports[s].layers[layer].sink.value_norm_ratio.unwrap();
            assert!(
                (got - want).abs() < 1e-4 * want,
                "seq {s} layer {layer}: {got} vs {want}"
            );
        }
    }
    let scalars = ev.scalars();
    let tagged: Vec<&(String, f64)> = scalars
        .iter()
        .filter(|(t, _)| t.starts_with("sink/value_norm_ratio/layer_"))
        .collect();
    // mean and /std per layer
    assert_eq!(tagged.len(), 2 * cfg.n_layers, "{tagged:?}");
    let mean0 = (ev.reports[0].layers[0].sink.value_norm_ratio.unwrap()
        + ev.reports[1].layers[0].sink.value_norm_ratio.unwrap())
        / 2.0;
    let (_, logged) = tagged
        .iter()
        .find(|(t, _)| t == "sink/value_norm_ratio/layer_00")
        .unwrap();
    assert!((logged - mean0).abs() < 1e-12);

    // `analyze`'s layer-by-layer path reports the same ratios
    let streamed = analyze_streaming(
        &m,
        &seqs,
        0,
        2,
        false,
        &AnalysisConfig::default(),
        &dev,
        &mut |_| Ok(()),
    )
    .unwrap();
    for (st, r) in streamed.iter().zip(&ev.reports) {
        for (a, b) in st.report.layers.iter().zip(&r.layers) {
            assert_eq!(a.sink.value_norm_ratio, b.sink.value_norm_ratio);
        }
    }
}

/// The Llama fixture (GQA, 4 query heads over 2 key/value heads): the `values` tap
/// against transformers' `v_proj` outputs, and the ratio sinkscope reports against the
/// one computed by hand from transformers' own attentions and value vectors.
#[test]
fn values_and_their_ratio_match_transformers() {
    let dev = Default::default();
    let dir = fixture("hf/llama");
    let (want, meta) = read_expected(&dir.join("expected.safetensors"));
    let m = load::<B>(dir.to_str().unwrap(), &dev).unwrap();
    let (h, kv, dh) = (m.config.n_heads, m.config.kv_heads(), m.config.head_dim());
    for prefix in ["", "second."] {
        let enc = m.encode(&meta[&format!("{prefix}text")]).unwrap();
        let t = enc.ids.len();
        let ids: Vec<i64> = enc.ids.iter().map(|&x| x as i64).collect();
        let one = Batch {
            ids: Tensor::from_data(TensorData::new(ids, [1, t]), &dev),
            padding: None,
        };
        let c = m
            .model
            .forward(&one, &ForwardOptions::capture(Taps::VALUES))
            .captured;
        let got: Vec<f32> = c.values.into_iter().flat_map(host).collect();
        let values = &want[&format!("{prefix}values")];
        assert_eq!(values.shape, [m.config.n_layers, kv, t, dh]);
        let d = max_abs_diff("values", &got, &values.values);
        assert!(d < 1e-4, "{prefix}values differ by {d}");

        let probe = capture(&m.model, std::slice::from_ref(&enc.ids), 0, false, &dev).unwrap();
        let ev = evaluate(None, &probe, &[], None, &EvalPlan::default()).unwrap();
        let attentions = &want[&format!("{prefix}attentions")].values;
        for layer in 0..m.config.n_layers {
            let by_hand = value_norm_ratio_by_hand(
                &attentions[layer * h * t * t..(layer + 1) * h * t * t],
                &values.values[layer * kv * t * dh..(layer + 1) * kv * t * dh],
                h,
                kv,
                t,
                dh,
            );
            let got = ev.reports[0].layers[layer].sink.value_norm_ratio.unwrap();
            assert!(
                (got - by_hand).abs() < 1e-4 * by_hand,
                "{prefix}layer {layer}: {got} vs {by_hand}"
            );
        }
    }
}
