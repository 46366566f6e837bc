//! The attention softmax, `softmax(scores + bias)` over the last dimension, with its
//! backward pass.
//!
//! Why: burn's autodiff builds softmax out of several primitive operations each way,
//! every one a pass over memory into a freshly zeroed buffer, and flex evaluates
//! `exp` one element at a time. Here the bias is added, the row maximum taken, the
//! exponentials summed and the row scaled in one pass over the scores, in place; the
//! backward pass is one more, reading the output kept as the state.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops};
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::activation;
use burn::tensor::DType;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::buffers::{contiguous, in_place, last_dim, owned, rows_per_task};
use super::dispatch::{split, unary_op, Cpu};
use super::simd::{exp, lane_sum, multiversion, row_max, row_sum2, LANES};

/// `softmax(scores + bias)` over the last dimension.
///
/// The bias (masks, ALiBi, ablation) is a constant broadcast to the scores; the fused
/// path reads it directly when it repeats whole trailing blocks of the scores
/// (`[1, 1, T, S]`, `[1, H, T, S]` or the full shape), the usual cases, and
/// materialises any other broadcast (a padding row `[B, 1, 1, S]`) to the full shape
/// first, so one path serves every mask and results do not depend on its shape. A
/// bias that needs a gradient goes through burn's operations.
pub fn softmax<B: Backend>(scores: Tensor<B, 4>, bias: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
    if scores.dtype() != DType::F32 {
        return composite_softmax(scores, bias);
    }
    let dims = scores.dims();
    let bias = match bias {
        None => None,
        Some(b) if b.is_require_grad() => return composite_softmax(scores, Some(b)),
        Some(b) => {
            let [bb, bh, bt, bs] = b.dims();
            let repeats = [bt, bs] == [dims[2], dims[3]]
                && (bb == 1 || (bb == dims[0] && bh == dims[1]))
                && (bh == 1 || bh == dims[1]);
            let b = if repeats { b } else { b.expand(dims) };
            match split::<B, 4>(b) {
                Cpu::Plain(b) => Some(contiguous(&b)),
                Cpu::Tracked(b) => Some(contiguous(&b.primitive)),
                Cpu::Other(b) => return composite_softmax(scores, Some(b)),
            }
        }
    };
    unary_op(
        scores,
        SoftmaxBackward,
        |s| {
            let mut s = owned(s);
            let len = last_dim(&s);
            let rows = rows_per_task(len);
            let b: &[f32] = bias.as_ref().map(|b| b.storage()).unwrap_or(&[]);
            in_place(&mut s)
                .par_chunks_mut(rows * len)
                .enumerate()
                .for_each(|(i, s)| softmax_rows(s, b, len, i * rows));
            (s.clone(), s)
        },
        |s| composite_softmax(s, None),
    )
}

/// `softmax(scores + bias)` in burn's operations, for other backends and a bias
/// that needs a gradient.
fn composite_softmax<B: Backend>(scores: Tensor<B, 4>, bias: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
    let scores = match bias {
        Some(b) => scores + b,
        None => scores,
    };
    activation::softmax(scores, 3)
}

/// Backward of [`softmax`]; the state is the output.
#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let p = ops.state;
        let len = last_dim(&p);
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let mut g = owned(g);
            let rows = rows_per_task(len) * len;
            in_place(&mut g)
                .par_chunks_mut(rows)
                .zip(p.storage::<f32>().par_chunks(rows))
                .for_each(|(g, p)| softmax_grad_rows(p, g, len));
            g
        });
    }
}

multiversion! {
    /// Each row of `s` ← softmax(row + the matching row of `bias`, which repeats
    /// every `bias.len()` elements); `first_row` is the index of `s`'s first row.
    fn softmax_rows(s: &mut [f32], bias: &[f32], row_len: usize, first_row: usize) {
        let bias_rows = bias.len() / row_len;
        for (r, s) in s.chunks_exact_mut(row_len).enumerate() {
            if bias_rows > 0 {
                let b = &bias[((first_row + r) % bias_rows) * row_len..][..row_len];
                for (s, &b) in s.iter_mut().zip(b) {
                    *s += b;
                }
            }
            let max = row_max(s);
            let mut acc = [0f32; LANES];
            let mut c = s.chunks_exact_mut(LANES);
            for c in &mut c {
                for (a, v) in acc.iter_mut().zip(c) {
                    *v = exp(*v - max);
                    *a += *v;
                }
            }
            let mut total = lane_sum(acc);
            for v in c.into_remainder() {
                *v = exp(*v - max);
                total += *v;
            }
            let inv = 1.0 / total;
            for v in s.iter_mut() {
                *v *= inv;
            }
        }
    }
}

multiversion! {
    /// `g ← p ⊙ (g − Σ g⊙p)` row by row: the softmax backward.
    fn softmax_grad_rows(p: &[f32], g: &mut [f32], row_len: usize) {
        for (p, g) in p.chunks_exact(row_len).zip(g.chunks_exact_mut(row_len)) {
            let dot = row_sum2(p, g, |p, g| p * g);
            for (g, &p) in g.iter_mut().zip(p) {
                *g = p * (*g - dot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_support::{close, same_grad, values, Ad};
    use burn::tensor::Distribution;

    #[test]
    fn fused_softmax_matches_burn_with_gradients() {
        let dev = Default::default();
        let s = Tensor::<Ad, 4>::random([2, 3, 5, 21], Distribution::Normal(0.0, 2.0), &dev)
            .require_grad();
        let mask: Vec<f32> = (0..5 * 21)
            .map(|k| {
                if k % 21 > k / 21 + 10 {
                    f32::NEG_INFINITY
                } else {
                    0.1 * (k % 7) as f32
                }
            })
            .collect();
        let bias = Tensor::<Ad, 4>::from_data(TensorData::new(mask, [1, 1, 5, 21]), &dev);
        let w = Tensor::<Ad, 4>::random([2, 3, 5, 21], Distribution::Normal(0.0, 1.0), &dev);
        let p_fused = softmax(s.clone(), Some(bias.clone()));
        let p_ref = activation::softmax(s.clone() + bias, 3);
        let g_fused = (p_fused.clone() * w.clone()).sum().backward();
        let g_ref = (p_ref.clone() * w).sum().backward();
        let pf = values(p_fused);
        close(pf.clone(), values(p_ref), 1e-6);
        assert!(pf
            .iter()
            .enumerate()
            .all(|(i, &v)| (i % 21 <= (i / 21) % 5 + 10) || v == 0.0));
        same_grad(&s, &g_fused, &g_ref, 1e-6);
        // The inference backend takes the same path, with any broadcast of the bias: a
        // padding row [B, 1, 1, S] gives what the same mask at full shape gives, bit for bit.
        let s = Tensor::<Flex, 4>::random([2, 2, 3, 40], Distribution::Normal(0.0, 1.0), &dev);
        close(
            values(softmax(s.clone(), None)),
            values(activation::softmax(s.clone(), 3)),
            1e-6,
        );
        let pad: Vec<f32> = (0..80)
            .map(|k| {
                if k % 40 >= 30 + k / 40 {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let row = Tensor::<Flex, 4>::from_data(TensorData::new(pad, [2, 1, 1, 40]), &dev);
        let full = row.clone().expand([2, 2, 3, 40]);
        let by_row = values(softmax(s.clone(), Some(row.clone())));
        assert_eq!(by_row, values(softmax(s.clone(), Some(full))));
        close(by_row, values(activation::softmax(s + row, 3)), 1e-6);
    }
}
