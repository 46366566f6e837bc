//! The token loss: per-token negative log-likelihood of the targets under the
//! logits, with its backward pass.
//!
//! Why: burn's autodiff builds log-softmax out of several primitive operations each
//! way, every one a pass over the `[B, T, V]` logits into a freshly zeroed buffer,
//! and then gathers one entry per row. Here the forward pass computes one
//! log-sum-exp per row and reads the target's logit; the backward pass writes
//! `softmax − onehot` in one pass from the logits kept as the state.

use std::mem::MaybeUninit;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops};
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::activation;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::buffers::{contiguous, filled, last_dim, rows_per_task, with_shape};
use super::dispatch::{plain, record, split, tracked, Cpu};
use super::simd::{exp, multiversion, row_max, row_sum2};

/// Per-token negative log-likelihood `[B, T]` of `targets` under `logits` `[B, T, V]`
/// (log-softmax and the target's entry in one pass; one pass back).
pub fn token_nll<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let [b, t, v] = logits.dims();
    let generic = |logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>| {
        activation::log_softmax(logits, 2)
            .gather(2, targets.unsqueeze_dim::<3>(2))
            .reshape([b, t])
            .neg()
    };
    let logits = match split(logits) {
        Cpu::Other(logits) => return generic(logits, targets),
        Cpu::Plain(x) => Cpu::<B, 3>::Plain(x),
        Cpu::Tracked(x) => Cpu::Tracked(x),
    };
    let ids: Vec<usize> = targets
        .into_data()
        .convert::<i64>()
        .iter::<i64>()
        .map(|x| {
            assert!(
                (0..v as i64).contains(&x),
                "target {x} outside the vocabulary"
            );
            x as usize
        })
        .collect();
    let forward = |x: &FlexTensor| {
        let x = contiguous(x);
        let src: &[f32] = x.storage();
        let rows = rows_per_task(v);
        let mut lse = vec![0f32; b * t];
        lse.par_chunks_mut(rows)
            .zip(src.par_chunks(rows * v))
            .for_each(|(l, x)| logsumexp_rows(x, v, l));
        let nll: Vec<f32> = lse
            .iter()
            .zip(&ids)
            .enumerate()
            .map(|(r, (&l, &id))| l - src[r * v + id])
            .collect();
        (x, with_shape([b, t], nll), lse)
    };
    match logits {
        Cpu::Plain(x) => plain(forward(&x).1),
        Cpu::Tracked(x) => {
            let (xc, nll, lse) = forward(&x.primitive);
            let state = (xc, Arc::new(lse), Arc::new(ids));
            tracked(record(NllBackward, [&x], state, nll))
        }
        Cpu::Other(_) => unreachable!("returned above"),
    }
}

/// Backward of [`token_nll`]; the state is the logits, their log-sum-exp per row and
/// the targets.
#[derive(Debug)]
struct NllBackward;

impl Backward<Flex, 1> for NllBackward {
    type State = (FlexTensor, Arc<Vec<f32>>, Arc<Vec<usize>>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, lse, targets) = ops.state;
        let v = last_dim(&x);
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let g = contiguous(&g);
            let (xv, gv): (&[f32], &[f32]) = (x.storage(), g.storage());
            let rows = rows_per_task(v);
            // SAFETY: `dx` and the logits are cut into the same whole rows, with one
            // log-sum-exp, target and incoming gradient per row, and `nll_grad_rows`
            // writes every element of each row of `dx`.
            let dx = unsafe {
                filled(xv.len(), |dx| {
                    dx.par_chunks_mut(rows * v)
                        .zip(xv.par_chunks(rows * v))
                        .zip(lse.par_chunks(rows).zip(targets.par_chunks(rows)))
                        .zip(gv.par_chunks(rows))
                        .for_each(|(((dx, x), (l, t)), g)| nll_grad_rows(x, l, t, g, v, dx))
                })
            };
            with_shape(x.layout().shape().clone(), dx)
        });
    }
}

multiversion! {
    /// Per row: log-sum-exp of `x` into `lse`.
    fn logsumexp_rows(x: &[f32], row_len: usize, lse: &mut [f32]) {
        for (x, lse) in x.chunks_exact(row_len).zip(lse) {
            let m = row_max(x);
            *lse = m + row_sum2(x, x, |v, _| exp(v - m)).ln();
        }
    }
}

multiversion! {
    /// Backward of the token loss: `dx = g (softmax(x) − onehot(target))` per row.
    fn nll_grad_rows(
        x: &[f32],
        lse: &[f32],
        targets: &[usize],
        g: &[f32],
        row_len: usize,
        dx: &mut [MaybeUninit<f32>],
    ) {
        for ((((x, &lse), &t), &g), dx) in x
            .chunks_exact(row_len)
            .zip(lse)
            .zip(targets)
            .zip(g)
            .zip(dx.chunks_exact_mut(row_len))
        {
            for (dx, &v) in dx.iter_mut().zip(x) {
                dx.write(g * exp(v - lse));
            }
            dx[t].write(g * (exp(x[t] - lse) - 1.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_support::{close, same_grad, values, Ad};
    use burn::tensor::Distribution;

    #[test]
    fn fused_token_loss_matches_burn_with_gradients() {
        let dev = Default::default();
        let logits = Tensor::<Ad, 3>::random([3, 7, 259], Distribution::Normal(0.0, 3.0), &dev)
            .require_grad();
        let ids: Vec<i64> = (0..21).map(|i| (i * 97 % 259) as i64).collect();
        let targets = Tensor::<Ad, 2, Int>::from_data(TensorData::new(ids, [3, 7]), &dev);
        let w = Tensor::<Ad, 2>::random([3, 7], Distribution::Normal(0.0, 1.0), &dev);
        let nll = token_nll(logits.clone(), targets.clone());
        let want = activation::log_softmax(logits.clone(), 2)
            .gather(2, targets.unsqueeze_dim::<3>(2))
            .reshape([3, 7])
            .neg();
        let g = (nll.clone() * w.clone()).sum().backward();
        let g_want = (want.clone() * w).sum().backward();
        close(values(nll), values(want), 1e-6);
        same_grad(&logits, &g, &g_want, 1e-6);
    }
}
