//! Rotary position embeddings: frequency tables and the rotation of q and k.
//!
//! One implementation serves both pairings (Hugging Face "rotate_half" and GPT-J
//! interleaved), partial rotary, static NTK scaling and Hugging Face's `rope_scaling`
//! rules, so that trained and imported models rotate through the same code.

use std::sync::Arc;

use burn::prelude::*;

use crate::model::config::{PositionConfig, PositionKind, RopePairing, RopeScaling};
use crate::model::kernels::{self, RotationTables};

/// NTK-aware enlarged base: `base · s^(d / (d − 2))` for rotary dimension `d`.
pub fn ntk_base(base: f64, factor: f64, rotary_dim: usize) -> f64 {
    let d = rotary_dim as f64;
    base * factor.powf(d / (d - 2.0))
}

/// Inverse frequencies θ_i = base^(−2i/d), i < d/2, after any scaling rule, for a
/// sequence of `seq_len` positions (dynamic NTK depends on it).
pub fn inverse_frequencies(pos: &PositionConfig, rotary_dim: usize, seq_len: usize) -> Vec<f64> {
    let d = rotary_dim as f64;
    let mut base = pos.base;
    if pos.kind == PositionKind::NtkRope {
        base = ntk_base(base, pos.factor, rotary_dim);
    }
    if let Some(RopeScaling::Dynamic {
        factor,
        original_max,
    }) = pos.scaling
    {
        if seq_len > original_max {
            let ratio = factor * seq_len as f64 / original_max as f64 - (factor - 1.0);
            base *= ratio.powf(d / (d - 2.0));
        }
    }
    let raw = (0..rotary_dim / 2).map(|i| 1.0 / base.powf(2.0 * i as f64 / d));
    match pos.scaling {
        Some(RopeScaling::Linear { factor }) => raw.map(|f| f / factor).collect(),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max,
        }) => {
            let old = original_max as f64;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            raw.map(|f| {
                let wavelen = 2.0 * std::f64::consts::PI / f;
                if wavelen < high_wavelen {
                    f
                } else if wavelen > low_wavelen {
                    f / factor
                } else {
                    let smooth =
                        (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                    (1.0 - smooth) * f / factor + smooth * f
                }
            })
            .collect()
        }
        _ => raw.collect(),
    }
}

/// cos and sin of `position · θ_i`, each `[seq_len, rotary_dim / 2]`, positions
/// counted from `pos.offset`.
pub fn tables(pos: &PositionConfig, rotary_dim: usize, seq_len: usize) -> (Vec<f32>, Vec<f32>) {
    let freqs = inverse_frequencies(pos, rotary_dim, seq_len);
    let half = rotary_dim / 2;
    let mut cos = Vec::with_capacity(seq_len * half);
    let mut sin = Vec::with_capacity(seq_len * half);
    for t in 0..seq_len {
        // Hugging Face forms the angle in f32 (inv_freq · position); do the same so
        // long positions round alike.
        let p = (t + pos.offset) as f32;
        for &f in &freqs {
            let angle = (f as f32 * p) as f64;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}

/// The rotation for one forward pass: tables on the device, shape `[1, 1, T, d_rot/2]`,
/// and on the host (for [`Rotary::rows`]).
#[derive(Clone, Debug)]
pub struct Rotary<B: Backend> {
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
    host_cos: Vec<f32>,
    host_sin: Vec<f32>,
    seq_len: usize,
    rotary_dim: usize,
    pairing: RopePairing,
}

/// The same rotation for the projections' own layout, `[B·T, n·Dh]` (rows in
/// (batch, position) order, heads side by side): `x·C + (x·P)·S`.
///
/// `P` is a fixed `Dh × Dh` matrix sending each rotated feature to its partner with
/// the sign of the rotation (−x₂ to x₁'s place, x₁ to x₂'s), so one mechanism covers
/// both pairings and partial rotary (pass-through features: C = 1, S = 0, P column 0).
/// Every element-wise operation is then a contiguous tensor times one shared row,
/// which backends do fast, instead of strided slices and concatenations of the last
/// dimension. x·P is exact (one ±1 term per output), so the result equals
/// [`Rotary::apply`] up to the optional `scale` folded into C and S.
///
/// On the CPU backend the same arithmetic runs as one fused pass (see
/// [`kernels::rotate`]), reading the partner by index instead of through `P`.
#[derive(Clone, Debug)]
pub struct RowRotation<B: Backend> {
    /// `[1, T·n·Dh]`.
    cos: Tensor<B, 2>,
    /// `[1, T·n·Dh]`.
    sin: Tensor<B, 2>,
    /// `[Dh, Dh]`.
    pair: Tensor<B, 2>,
    head_dim: usize,
    tables: Arc<RotationTables>,
}

impl<B: Backend> RowRotation<B> {
    /// Rotates `x` `[B·T, n·Dh]` (the output of a q or k projection).
    pub fn apply(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        kernels::rotate(x, &self.tables, |x| self.apply_with_tensor_ops(x))
    }

    /// [`RowRotation::apply`] in burn operations, as on backends without the kernel.
    pub fn apply_with_tensor_ops(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [rows, width] = x.dims();
        let row_len = self.cos.dims()[1];
        let seqs = rows * width / row_len;
        let partner = x
            .clone()
            .reshape([rows * width / self.head_dim, self.head_dim])
            .matmul(self.pair.clone())
            .reshape([seqs, row_len]);
        let out = x.reshape([seqs, row_len]) * self.cos.clone() + partner * self.sin.clone();
        out.reshape([rows, width])
    }
}

impl<B: Backend> Rotary<B> {
    /// Builds the tables for `seq_len` positions.
    pub fn new(
        pos: &PositionConfig,
        rotary_dim: usize,
        seq_len: usize,
        device: &B::Device,
    ) -> Self {
        let (cos, sin) = tables(pos, rotary_dim, seq_len);
        let shape = [1, 1, seq_len, rotary_dim / 2];
        Self {
            cos: Tensor::from_data(TensorData::new(cos.clone(), shape), device),
            sin: Tensor::from_data(TensorData::new(sin.clone(), shape), device),
            host_cos: cos,
            host_sin: sin,
            seq_len,
            rotary_dim,
            pairing: pos.pairing,
        }
    }

    /// This rotation for `n_heads` heads of width `head_dim` in the projection layout
    /// (see [`RowRotation`]), with `scale` folded into the tables (the attention score
    /// scale for q, 1 for k).
    pub fn rows(
        &self,
        n_heads: usize,
        head_dim: usize,
        scale: f64,
        device: &B::Device,
    ) -> RowRotation<B> {
        let (r, half) = (self.rotary_dim, self.rotary_dim / 2);
        // Which frequency feature j of a head uses (None: passes through), and the
        // partner whose value, with sign, lands on j.
        let freq = |j: usize| -> Option<usize> {
            (j < r).then(|| match self.pairing {
                RopePairing::Half => j % half,
                RopePairing::Interleaved => j / 2,
            })
        };
        let row = n_heads * head_dim;
        let mut cos = vec![0f32; self.seq_len * row];
        let mut sin = vec![0f32; self.seq_len * row];
        for t in 0..self.seq_len {
            for h in 0..n_heads {
                for j in 0..head_dim {
                    let at = t * row + h * head_dim + j;
                    let (c, s) = match freq(j) {
                        Some(i) => (
                            self.host_cos[t * half + i] as f64,
                            self.host_sin[t * half + i] as f64,
                        ),
                        None => (1.0, 0.0),
                    };
                    cos[at] = (c * scale) as f32;
                    sin[at] = (s * scale) as f32;
                }
            }
        }
        // Feature j's partner within its head and the sign of the rotation there
        // (pass-through features are their own partner, with sin = 0).
        let partner_of = |j: usize| -> (usize, f32) {
            match self.pairing {
                _ if j >= r => (j, 0.0),
                RopePairing::Half if j < half => (j + half, -1.0),
                RopePairing::Half => (j - half, 1.0),
                RopePairing::Interleaved if j.is_multiple_of(2) => (j + 1, -1.0),
                RopePairing::Interleaved => (j - 1, 1.0),
            }
        };
        // pair[i][j]: coefficient of x_i in the partner feature at j.
        let mut pair = vec![0f32; head_dim * head_dim];
        for j in 0..head_dim {
            let (from, sign) = partner_of(j);
            pair[from * head_dim + j] = sign;
        }
        let partner: Vec<usize> = (0..row)
            .map(|i| i - i % head_dim + partner_of(i % head_dim).0)
            .collect();
        let signed: Vec<f32> = (0..self.seq_len * row)
            .map(|k| sin[k] * partner_of(k % row % head_dim).1)
            .collect();
        let tables = Arc::new(RotationTables::new(cos.clone(), signed, &partner));
        RowRotation {
            cos: Tensor::from_data(TensorData::new(cos, [1, self.seq_len * row]), device),
            sin: Tensor::from_data(TensorData::new(sin, [1, self.seq_len * row]), device),
            pair: Tensor::from_data(TensorData::new(pair, [head_dim, head_dim]), device),
            head_dim,
            tables,
        }
    }

    /// Rotates the first `rotary_dim` features of every head of `x` `[B, H, T, Dh]`;
    /// the rest pass through (partial rotary).
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, t, dh] = x.dims();
        let (rot, pass) = if self.rotary_dim < dh {
            (
                x.clone().narrow(3, 0, self.rotary_dim),
                Some(x.narrow(3, self.rotary_dim, dh - self.rotary_dim)),
            )
        } else {
            (x, None)
        };
        let half = self.rotary_dim / 2;
        let (x1, x2) = match self.pairing {
            RopePairing::Half => (rot.clone().narrow(3, 0, half), rot.narrow(3, half, half)),
            RopePairing::Interleaved => {
                let pairs = rot.reshape([b, h, t, half, 2]);
                (
                    pairs.clone().narrow(4, 0, 1).reshape([b, h, t, half]),
                    pairs.narrow(4, 1, 1).reshape([b, h, t, half]),
                )
            }
        };
        let out1 = x1.clone() * self.cos.clone() - x2.clone() * self.sin.clone();
        let out2 = x2 * self.cos.clone() + x1 * self.sin.clone();
        let rotated = match self.pairing {
            RopePairing::Half => Tensor::cat(vec![out1, out2], 3),
            RopePairing::Interleaved => {
                Tensor::stack::<5>(vec![out1, out2], 4).reshape([b, h, t, self.rotary_dim])
            }
        };
        match pass {
            Some(pass) => Tensor::cat(vec![rotated, pass], 3),
            None => rotated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::PositionConfig;
    use burn::backend::Flex;

    type B = Flex;

    fn dot_at(rot: &Rotary<B>, q: &[f32], k: &[f32], i: usize, j: usize, t: usize) -> f32 {
        let dev = Default::default();
        let d = q.len();
        // Place q at position i and k at position j of a length-t sequence.
        let mut qs = vec![0f32; t * d];
        let mut ks = vec![0f32; t * d];
        qs[i * d..(i + 1) * d].copy_from_slice(q);
        ks[j * d..(j + 1) * d].copy_from_slice(k);
        let qt = rot.apply(Tensor::<B, 4>::from_data(
            TensorData::new(qs, [1, 1, t, d]),
            &dev,
        ));
        let kt = rot.apply(Tensor::<B, 4>::from_data(
            TensorData::new(ks, [1, 1, t, d]),
            &dev,
        ));
        let qv = qt.narrow(2, i, 1).into_data().to_vec::<f32>().unwrap();
        let kv = kt.narrow(2, j, 1).into_data().to_vec::<f32>().unwrap();
        qv.iter().zip(&kv).map(|(a, b)| a * b).sum()
    }

    fn check_relative(pos: PositionConfig, d: usize, rotary_dim: usize) {
        let t = 40;
        let rot = Rotary::<B>::new(&pos, rotary_dim, t, &Default::default());
        let q: Vec<f32> = (0..d).map(|x| ((x * 7 % 5) as f32 - 2.0) * 0.3).collect();
        let k: Vec<f32> = (0..d).map(|x| ((x * 3 % 7) as f32 - 3.0) * 0.2).collect();
        for (i, j) in [(3, 1), (10, 10), (5, 9)] {
            let base = dot_at(&rot, &q, &k, i, j, t);
            for s in [1, 7, 25] {
                let shifted = dot_at(&rot, &q, &k, i + s, j + s, t);
                assert!(
                    (base - shifted).abs() < 1e-4,
                    "({i},{j})+{s}: {base} vs {shifted}"
                );
            }
        }
        // Scores do change with the offset (otherwise the test above proves nothing).
        let a = dot_at(&rot, &q, &k, 3, 1, t);
        let b = dot_at(&rot, &q, &k, 3, 2, t);
        assert!((a - b).abs() > 1e-3);
    }

    #[test]
    fn scores_depend_only_on_offset_for_both_pairings_and_partial_rotary() {
        let mut pos = PositionConfig::default();
        check_relative(pos, 16, 16);
        pos.pairing = RopePairing::Interleaved;
        check_relative(pos, 16, 16);
        pos.pairing = RopePairing::Half;
        check_relative(pos, 16, 4);
        pos.kind = PositionKind::NtkRope;
        check_relative(pos, 16, 16);
    }

    #[test]
    fn rotation_preserves_norm_and_leaves_pass_through_dims() {
        let pos = PositionConfig::default();
        let dev = Default::default();
        let rot = Rotary::<B>::new(&pos, 4, 3, &dev);
        let x: Vec<f32> = (0..3 * 8).map(|v| v as f32 * 0.1 - 1.0).collect();
        let y = rot
            .apply(Tensor::<B, 4>::from_data(
                TensorData::new(x.clone(), [1, 1, 3, 8]),
                &dev,
            ))
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for t in 0..3 {
            let n0: f32 = x[t * 8..t * 8 + 4].iter().map(|v| v * v).sum();
            let n1: f32 = y[t * 8..t * 8 + 4].iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-5);
            assert_eq!(&x[t * 8 + 4..t * 8 + 8], &y[t * 8 + 4..t * 8 + 8]);
        }
        // Position 0 is the identity.
        assert_eq!(&x[..4], &y[..4]);
    }

    #[test]
    fn row_rotation_matches_the_per_head_rotation() {
        let dev = Default::default();
        let (b, t, h, dh) = (2, 5, 3, 8);
        for (pairing, rotary_dim) in [
            (RopePairing::Half, 8),
            (RopePairing::Interleaved, 8),
            (RopePairing::Half, 4),
            (RopePairing::Interleaved, 6),
        ] {
            let pos = PositionConfig {
                pairing,
                ..Default::default()
            };
            let rot = Rotary::<B>::new(&pos, rotary_dim, t, &dev);
            let x: Vec<f32> = (0..b * t * h * dh)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.1)
                .collect();
            let rows = Tensor::<B, 2>::from_data(TensorData::new(x, [b * t, h * dh]), &dev);
            let heads = rows.clone().reshape([b, t, h, dh]).swap_dims(1, 2);
            let expected = rot.apply(heads).swap_dims(1, 2).reshape([b * t, h * dh]);
            let row_rot = rot.rows(h, dh, 0.5, &dev);
            let expected = expected * 0.5;
            for got in [
                row_rot.apply(rows.clone()),
                row_rot.apply_with_tensor_ops(rows.clone()),
            ] {
                let diff = (got - expected.clone()).abs().max().into_scalar();
                assert!(diff < 1e-6, "{pairing:?} {rotary_dim}: {diff}");
            }
            // Gradients agree between the kernel and the tensor operations.
            type A = burn::backend::Autodiff<B>;
            let x = Tensor::<A, 2>::from_data(rows.into_data(), &dev).require_grad();
            let w = Tensor::<A, 2>::from_data(expected.into_data(), &dev);
            let row_rot = Rotary::<A>::new(&pos, rotary_dim, t, &dev).rows(h, dh, 0.5, &dev);
            let g1 = (row_rot.apply(x.clone()) * w.clone()).sum().backward();
            let g2 = (row_rot.apply_with_tensor_ops(x.clone()) * w)
                .sum()
                .backward();
            let diff = (x.grad(&g1).unwrap() - x.grad(&g2).unwrap())
                .abs()
                .max()
                .into_scalar();
            assert!(diff < 1e-6, "{pairing:?} {rotary_dim}: gradient {diff}");
        }
    }

    #[test]
    fn ntk_base_follows_the_formula() {
        // d_rot = 64, s = 4: 10000 · 4^(64/62) = 10000 · 2^(128/62).
        let expected = 10_000.0 * 2f64.powf(128.0 / 62.0);
        assert!((ntk_base(10_000.0, 4.0, 64) - expected).abs() < 1e-6);
        let pos = PositionConfig {
            kind: PositionKind::NtkRope,
            factor: 4.0,
            ..Default::default()
        };
        let f = inverse_frequencies(&pos, 64, 10);
        assert!((f[1] - expected.powf(-2.0 / 64.0)).abs() < 1e-15);
        assert_eq!(f[0], 1.0);
    }

    #[test]
    fn hugging_face_scaling_rules() {
        let base = PositionConfig::default();
        let plain = inverse_frequencies(&base, 8, 10);
        let linear = PositionConfig {
            scaling: Some(RopeScaling::Linear { factor: 2.0 }),
            ..base
        };
        let lin = inverse_frequencies(&linear, 8, 10);
        assert!(plain
            .iter()
            .zip(&lin)
            .all(|(p, l)| (p / 2.0 - l).abs() < 1e-15));
        let dynamic = PositionConfig {
            scaling: Some(RopeScaling::Dynamic {
                factor: 2.0,
                original_max: 16,
            }),
            ..base
        };
        // Within the original context nothing changes; past it the base grows by
        // (2·32/16 − 1)^(8/6) = 3^(4/3).
        assert_eq!(inverse_frequencies(&dynamic, 8, 16), plain);
        let grown = inverse_frequencies(&dynamic, 8, 32);
        let new_base = 10_000.0 * 3f64.powf(8.0 / 6.0);
        assert!((grown[1] - new_base.powf(-2.0 / 8.0)).abs() < 1e-12);
        // Llama 3: high frequencies (short wavelengths) kept, low ones divided by factor.
        let llama3 = PositionConfig {
            base: 500_000.0,
            scaling: Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max: 8192,
            }),
            ..base
        };
        let plain = inverse_frequencies(
            &PositionConfig {
                base: 500_000.0,
                ..base
            },
            128,
            10,
        );
        let l3 = inverse_frequencies(&llama3, 128, 10);
        assert_eq!(l3[0], plain[0]);
        assert!((l3[63] - plain[63] / 8.0).abs() < 1e-18);
    }
}
