//! The forward pass hands out exact attention maps and residuals.

use burn::backend::Flex;
use burn::prelude::*;
use sinkscope::model::position::alibi;
use sinkscope::model::{
    Arch, Batch, ForwardOptions, KeyAblation, ModelConfig, PositionKind, SoftmaxKind, Taps,
    Transformer,
};

use crate::common::tiny_model;

type B = Flex;

fn ids(batch: usize, t: usize) -> Tensor<B, 2, Int> {
    let v: Vec<i64> = (0..batch * t)
        .map(|i| ((i * 37 + 11) % 250) as i64)
        .collect();
    Tensor::from_data(TensorData::new(v, [batch, t]), &Default::default())
}

fn sharp(cfg: &ModelConfig) -> Transformer<B> {
    // Larger weights than the training init so attention is far from uniform.
    let m = Transformer::<B>::init(cfg, 3, &Default::default());
    let scale = |l: nn::Linear<B>| nn::Linear {
        weight: l.weight.map(|w| w * 20.0),
        bias: l.bias,
    };
    let mut m = m;
    m.blocks = m
        .blocks
        .into_iter()
        .map(|mut b| {
            b.attn.q = scale(b.attn.q);
            b.attn.k = scale(b.attn.k);
            b
        })
        .collect();
    m
}

fn host(t: Tensor<B, 4>) -> (Vec<f32>, [usize; 4]) {
    let d = t.dims();
    (t.into_data().to_vec::<f32>().unwrap(), d)
}

/// Recomputes layer 0's attention from q and k in plain f64 arithmetic.
fn recompute_layer0(m: &Transformer<B>, x: Tensor<B, 3>, causal: bool) -> Vec<f64> {
    let cfg = &m.config;
    let [b, t, _] = x.dims();
    let (h, kv, dh) = (cfg.n_heads, cfg.kv_heads(), cfg.head_dim());
    let block = &m.blocks[0];
    let normed = block.attn_norm.as_ref().unwrap().forward(x);
    let heads = |y: Tensor<B, 3>, n: usize| y.reshape([b, t, n, dh]).swap_dims(1, 2);
    let mut q = heads(block.attn.q.forward(normed.clone()), h);
    let mut k = heads(block.attn.k.forward(normed), kv);
    let pos = m.position.context(cfg, t, &Default::default());
    if let Some(rot) = &pos.rotary {
        q = rot.apply(q);
        k = rot.apply(k);
    }
    let (q, _) = host(q);
    let (k, _) = host(k);
    let slopes = alibi::slopes(h);
    let scale = 1.0 / (dh as f64).sqrt();
    let mut out = vec![0.0; b * h * t * t];
    for bi in 0..b {
        for hi in 0..h {
            let ki = hi / (h / kv);
            for i in 0..t {
                let mut row = vec![f64::NEG_INFINITY; t];
                for (j, r) in row.iter_mut().enumerate() {
                    if causal && j > i {
                        continue;
                    }
                    let mut s = 0.0;
                    for d in 0..dh {
                        s += q[((bi * h + hi) * t + i) * dh + d] as f64
                            * k[((bi * kv + ki) * t + j) * dh + d] as f64;
                    }
                    *r = s * scale;
                    if cfg.position.kind == PositionKind::Alibi {
                        *r -= slopes[hi] * i.abs_diff(j) as f64;
                    }
                }
                let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = row.iter().map(|r| (r - max).exp()).sum();
                for j in 0..t {
                    out[((bi * h + hi) * t + i) * t + j] = (row[j] - max).exp() / z;
                }
            }
        }
    }
    out
}

fn check_capture(cfg: ModelConfig) {
    let m = sharp(&cfg);
    let (b, t) = (2, 12);
    let out = m.forward(
        &Batch {
            ids: ids(b, t),
            padding: None,
        },
        &ForwardOptions::capture(Taps::PROBS | Taps::RESIDUALS),
    );
    let out = out.captured;
    assert_eq!(out.probs.len(), cfg.n_layers);
    assert_eq!(out.residuals.len(), cfg.n_layers + 1);
    let causal = cfg.arch == Arch::Decoder;
    let (maps, dims) = host(out.probs[0].clone());
    assert_eq!(dims, [b, cfg.n_heads, t, t]);
    let expected = recompute_layer0(&m, out.residuals[0].clone(), causal);
    let mut max_diff = 0f64;
    for (g, e) in maps.iter().zip(&expected) {
        max_diff = max_diff.max((*g as f64 - e).abs());
    }
    assert!(
        max_diff < 1e-5,
        "{cfg:?}: captured vs recomputed differ by {max_diff}"
    );
    // Far from uniform, so the comparison means something.
    assert!(maps.iter().cloned().fold(0f32, f32::max) > 0.9);
    for layer in &out.probs {
        let (maps, _) = host(layer.clone());
        for (r, row) in maps.chunks(t).enumerate() {
            let i = r % t;
            let sum: f64 = row.iter().map(|&x| x as f64).sum();
            assert!((sum - 1.0).abs() < 1e-5, "row sum {sum}");
            if causal {
                assert!(
                    row[i + 1..].iter().all(|&x| x == 0.0),
                    "causal row {i} leaks: {row:?}"
                );
            }
        }
    }
}

#[test]
fn captured_attention_equals_recomputation_for_every_encoding() {
    for kind in [
        PositionKind::Rope,
        PositionKind::NtkRope,
        PositionKind::Alibi,
        PositionKind::Learned,
        PositionKind::Sinusoidal,
        PositionKind::None,
    ] {
        check_capture(tiny_model(kind));
    }
    let mut gqa = tiny_model(PositionKind::Rope);
    gqa.n_kv_heads = Some(2);
    gqa.position.fraction = 0.5;
    check_capture(gqa);
    let mut enc = tiny_model(PositionKind::Learned);
    enc.arch = Arch::Encoder;
    check_capture(enc);
    let mut enc_alibi = tiny_model(PositionKind::Alibi);
    enc_alibi.arch = Arch::Encoder;
    check_capture(enc_alibi);
}

#[test]
fn nothing_is_kept_unless_asked() {
    let m = sharp(&tiny_model(PositionKind::Rope));
    let out = m.forward(
        &Batch {
            ids: ids(1, 8),
            padding: None,
        },
        &ForwardOptions::default(),
    );
    let c = &out.captured;
    assert!(c.probs.is_empty() && c.residuals.is_empty() && c.final_hidden.is_none());
    assert!(c.scores.is_empty() && c.values.is_empty() && c.head_outputs.is_empty());
    assert_eq!(out.logits.dims(), [1, 8, 259]);
}

#[test]
fn padding_ablation_and_quiet_softmax() {
    let dev = Default::default();
    let mut enc = tiny_model(PositionKind::Learned);
    enc.arch = Arch::Encoder;
    let m = sharp(&enc);
    let pad = Tensor::<B, 2, Bool>::from_data(
        TensorData::new(vec![false, false, false, false, true, true], [1, 6]),
        &dev,
    );
    let out = m.forward(
        &Batch {
            ids: ids(1, 6),
            padding: Some(pad),
        },
        &ForwardOptions::capture(Taps::PROBS),
    );
    let (maps, _) = host(out.captured.probs[1].clone());
    for row in maps.chunks(6) {
        assert_eq!(&row[4..], &[0.0, 0.0]);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    let m = sharp(&tiny_model(PositionKind::Rope));
    let ablation = KeyAblation {
        positions: vec![0, 2],
        layers: Some(vec![1]),
        heads: Some(vec![3]),
    };
    let out = m.forward(
        &Batch {
            ids: ids(1, 6),
            padding: None,
        },
        &ForwardOptions {
            taps: Taps::PROBS,
            ablation: Some(ablation),
        },
    );
    let (l0, _) = host(out.captured.probs[0].clone());
    let (l1, _) = host(out.captured.probs[1].clone());
    assert!(l0[3 * 36 + 6] > 0.0, "layer 0 untouched");
    for i in 1..6 {
        let row = &l1[3 * 36 + i * 6..3 * 36 + i * 6 + 6];
        assert_eq!((row[0], row[2]), (0.0, 0.0), "row {i}: {row:?}");
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // Query 0 sees only key 0: its row is left alone rather than emptied.
    assert_eq!(l1[3 * 36], 1.0);
    assert!(l1[2 * 36 + 6] > 0.0, "other heads untouched");

    let mut quiet = tiny_model(PositionKind::Rope);
    quiet.softmax = SoftmaxKind::Quiet;
    let m = sharp(&quiet);
    let out = m.forward(
        &Batch {
            ids: ids(1, 6),
            padding: None,
        },
        &ForwardOptions::capture(Taps::PROBS),
    );
    let (maps, _) = host(out.captured.probs[0].clone());
    for row in maps.chunks(6) {
        let s: f32 = row.iter().sum();
        assert!(s < 1.0 && s > 0.0, "quiet softmax row sums to {s}");
    }
}
