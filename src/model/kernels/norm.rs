//! The norms' normalisation over the last dimension, with its backward pass:
//! [`normalize`] (LayerNorm's centring and scaling, or RMSNorm's scaling, without
//! affine) and [`norm`] (the same with the weight and optional shift fused in).
//!
//! Why: burn's autodiff builds a norm out of seven to nine primitive operations each
//! way, every one a pass over memory into a freshly zeroed buffer. Here each is one
//! pass forward, recording per-row statistics, and one backward (weight and shift
//! gradients summed per block of rows, blocks added in a fixed order so the result
//! does not depend on the thread count).

use std::mem::MaybeUninit;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops};
use burn::backend::Flex;
use burn::prelude::*;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::buffers::{contiguous, filled, in_place, last_dim, owned, rows_per_task, with_shape};
use super::dispatch::{plain, record, split, tracked, unary_op, Cpu};
use super::simd::{lane_sum, multiversion, row_sum2, LANES};

/// Normalises `x` over its last dimension: `(x − mean)/√(var + eps)` (LayerNorm,
/// biased variance) or, with `centre` false, `x/√(mean(x²) + eps)` (RMSNorm). One
/// pass forward and one backward instead of seven operations each way.
pub fn normalize<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    centre: bool,
    eps: f64,
) -> Tensor<B, D> {
    unary_op(
        x,
        NormalizeBackward,
        |x| {
            let x = contiguous(&x);
            let src: &[f32] = x.storage();
            let len = last_dim(&x);
            let rows = rows_per_task(len);
            let mut rstd = vec![0f32; src.len() / len];
            // SAFETY: `y` and `src` are cut into the same whole rows, and
            // `normalize_rows` writes every element of each row of `y`.
            let y = unsafe {
                filled(src.len(), |y| {
                    y.par_chunks_mut(rows * len)
                        .zip(rstd.par_chunks_mut(rows))
                        .zip(src.par_chunks(rows * len))
                        .for_each(|((y, r), x)| normalize_rows(x, len, centre, eps as f32, y, r))
                })
            };
            let y = with_shape(x.layout().shape().clone(), y);
            (y.clone(), (y, Arc::new(rstd), centre))
        },
        |x| {
            let last = D - 1;
            if centre {
                let mean = x.clone().mean_dim(last);
                let centered = x - mean;
                let var = centered.clone().square().mean_dim(last);
                centered / (var + eps).sqrt()
            } else {
                let ms = x.clone().square().mean_dim(last);
                x / (ms + eps).sqrt()
            }
        },
    )
}

/// Backward of [`normalize`]; the state is the output, `rstd` per row and whether
/// the rows were centred.
#[derive(Debug)]
struct NormalizeBackward;

impl Backward<Flex, 1> for NormalizeBackward {
    type State = (FlexTensor, Arc<Vec<f32>>, bool);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (y, rstd, centre) = ops.state;
        let len = last_dim(&y);
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let mut g = owned(g);
            let rows = rows_per_task(len);
            in_place(&mut g)
                .par_chunks_mut(rows * len)
                .zip(rstd.par_chunks(rows))
                .zip(y.storage::<f32>().par_chunks(rows * len))
                .for_each(|((g, r), y)| normalize_grad_rows(y, r, g, len, centre));
            g
        });
    }
}

/// LayerNorm (`centre`: `(x − mean)/√(var + eps)`, biased variance) or RMSNorm
/// (`x/√(mean(x²) + eps)`) over the last dimension, scaled by `weight` and shifted
/// by `bias`. One pass forward and one backward (weight and shift gradients
/// included) instead of about nine operations each way.
pub fn norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    bias: Option<Tensor<B, 1>>,
    centre: bool,
    eps: f64,
) -> Tensor<B, D> {
    let other = |x: Tensor<B, D>, weight: Tensor<B, 1>, bias: Option<Tensor<B, 1>>| {
        let x = normalize(x, centre, eps) * weight.unsqueeze::<D>();
        match bias {
            Some(b) => x + b.unsqueeze::<D>(),
            None => x,
        }
    };
    let eps = eps as f32;
    let (x, w) = match (split(x), split::<B, 1>(weight)) {
        (Cpu::Plain(x), Cpu::Plain(w)) => {
            let b = bias.map(|b| match split::<B, 1>(b) {
                Cpu::Plain(b) => b,
                _ => unreachable!("same backend"),
            });
            return plain(norm_forward(&x, &w, b.as_ref(), centre, eps).0);
        }
        (Cpu::Tracked(x), Cpu::Tracked(w)) => (x, w),
        (x, w) => return other(x.join(), w.join(), bias),
    };
    match bias.map(split::<B, 1>) {
        None => {
            let (y, state) = norm_forward(&x.primitive, &w.primitive, None, centre, eps);
            tracked(record(NormBackward, [&x, &w], state, y))
        }
        Some(Cpu::Tracked(b)) => {
            let (y, state) =
                norm_forward(&x.primitive, &w.primitive, Some(&b.primitive), centre, eps);
            tracked(record(NormBackward, [&x, &w, &b], state, y))
        }
        Some(_) => unreachable!("same backend"),
    }
}

/// [`norm`]'s forward pass on flex tensors: the output and what its backward needs.
fn norm_forward(
    x: &FlexTensor,
    w: &FlexTensor,
    b: Option<&FlexTensor>,
    centre: bool,
    eps: f32,
) -> (FlexTensor, NormState) {
    let (x, w) = (contiguous(x), contiguous(w));
    let b = b.map(contiguous);
    let (src, wv): (&[f32], &[f32]) = (x.storage(), w.storage());
    let bv: &[f32] = b.as_ref().map(|b| b.storage()).unwrap_or(&[]);
    let len = wv.len();
    assert_eq!(last_dim(&x), len, "norm: weight length vs last dimension");
    let rows = rows_per_task(len);
    let mut stats = vec![(0f32, 0f32); src.len() / len];
    // SAFETY: `y` and `src` are cut into the same whole rows of `len` (the weight's
    // length, asserted to be the last dimension), and `norm_affine_rows` writes every element of
    // each row of `y`.
    let y = unsafe {
        filled(src.len(), |y| {
            y.par_chunks_mut(rows * len)
                .zip(stats.par_chunks_mut(rows))
                .zip(src.par_chunks(rows * len))
                .for_each(|((y, st), x)| norm_affine_rows(x, wv, bv, centre, eps, y, st))
        })
    };
    let y = with_shape(x.layout().shape().clone(), y);
    let state = NormState {
        x,
        stats: Arc::new(stats),
        w,
        centre,
    };
    (y, state)
}

/// What the backward of [`norm`] needs: the input, per-row mean and rstd, the
/// weight and whether rows were centred (whether there is a shift is the number of
/// parents).
#[derive(Clone, Debug)]
struct NormState {
    x: FlexTensor,
    stats: Arc<Vec<(f32, f32)>>,
    w: FlexTensor,
    centre: bool,
}

impl NormState {
    /// Gradients of the input, weight and shift.
    fn grads(&self, g: FlexTensor) -> (FlexTensor, FlexTensor, FlexTensor) {
        let mut g = owned(g);
        let wv: &[f32] = self.w.storage();
        let len = wv.len();
        let rows = rows_per_task(len);
        let partials: Vec<(Vec<f32>, Vec<f32>)> = in_place(&mut g)
            .par_chunks_mut(rows * len)
            .zip(self.stats.par_chunks(rows))
            .zip(self.x.storage::<f32>().par_chunks(rows * len))
            .map(|((g, st), x)| {
                let (mut dw, mut db) = (vec![0f32; len], vec![0f32; len]);
                norm_affine_grad_rows(x, st, wv, self.centre, g, &mut dw, &mut db);
                (dw, db)
            })
            .collect();
        // Blocks summed in order: the same result on any number of threads.
        let (mut dw, mut db) = (vec![0f32; len], vec![0f32; len]);
        for (pw, pb) in &partials {
            for (a, &v) in dw.iter_mut().zip(pw) {
                *a += v;
            }
            for (a, &v) in db.iter_mut().zip(pb) {
                *a += v;
            }
        }
        (g, with_shape([len], dw), with_shape([len], db))
    }
}

/// Backward of [`norm`] (parents: input, weight and, with a shift, the shift).
#[derive(Debug)]
struct NormBackward;

impl<const N: usize> Backward<Flex, N> for NormBackward {
    type State = NormState;

    fn backward(self, ops: Ops<NormState, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g = grads.consume::<Flex>(&ops.node);
        let (dx, dw, db) = ops.state.grads(g);
        for (parent, grad) in ops.parents.iter().zip([dx, dw, db]) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

multiversion! {
    /// Normalises each row of `x` into `y` (`(x − mean)·rstd`, or `x·rstd` without
    /// centring) and records `rstd` = 1/√(variance or mean square + eps) per row.
    fn normalize_rows(
        x: &[f32],
        row_len: usize,
        centre: bool,
        eps: f32,
        y: &mut [MaybeUninit<f32>],
        rstd: &mut [f32],
    ) {
        let n = row_len as f32;
        for ((x, y), rstd) in x.chunks_exact(row_len).zip(y.chunks_exact_mut(row_len)).zip(rstd) {
            let mean = if centre { row_sum2(x, x, |v, _| v) / n } else { 0.0 };
            let var = row_sum2(x, x, |v, _| (v - mean) * (v - mean)) / n;
            let r = 1.0 / (var + eps).sqrt();
            *rstd = r;
            for (y, &v) in y.iter_mut().zip(x) {
                y.write((v - mean) * r);
            }
        }
    }
}

multiversion! {
    /// Backward of [`normalize_rows`]: `g ← rstd (g − mean(g) − y mean(g y))`, without
    /// the `mean(g)` term when not centring.
    fn normalize_grad_rows(y: &[f32], rstd: &[f32], g: &mut [f32], row_len: usize, centre: bool) {
        let n = row_len as f32;
        for ((y, &r), g) in y.chunks_exact(row_len).zip(rstd).zip(g.chunks_exact_mut(row_len)) {
            let mean_g = if centre { row_sum2(g, g, |g, _| g) / n } else { 0.0 };
            let mean_gy = row_sum2(g, y, |g, y| g * y) / n;
            for (g, &y) in g.iter_mut().zip(y) {
                *g = r * (*g - mean_g - y * mean_gy);
            }
        }
    }
}

multiversion! {
    /// `y = (x − mean)·rstd ⊙ w + b` per row (no centring for RMS; `b` empty for no
    /// shift), recording each row's mean and rstd.
    fn norm_affine_rows(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        centre: bool,
        eps: f32,
        y: &mut [MaybeUninit<f32>],
        stats: &mut [(f32, f32)],
    ) {
        let len = w.len();
        let n = len as f32;
        for ((x, y), stats) in x.chunks_exact(len).zip(y.chunks_exact_mut(len)).zip(stats) {
            let mean = if centre { row_sum2(x, x, |v, _| v) / n } else { 0.0 };
            let var = row_sum2(x, x, |v, _| (v - mean) * (v - mean)) / n;
            let r = 1.0 / (var + eps).sqrt();
            *stats = (mean, r);
            if b.is_empty() {
                for ((y, &v), &w) in y.iter_mut().zip(x).zip(w) {
                    y.write((v - mean) * r * w);
                }
            } else {
                for (((y, &v), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
                    y.write((v - mean) * r * w + b);
                }
            }
        }
    }
}

multiversion! {
    /// Backward of [`norm_affine_rows`] over a block of rows: `g` ← dx in place, and
    /// this block's `Σ g x̂` and `Σ g` added into `dw`, `db`.
    fn norm_affine_grad_rows(
        x: &[f32],
        stats: &[(f32, f32)],
        w: &[f32],
        centre: bool,
        g: &mut [f32],
        dw: &mut [f32],
        db: &mut [f32],
    ) {
        let len = w.len();
        let n = len as f32;
        for ((x, &(mean, r)), g) in x.chunks_exact(len).zip(stats).zip(g.chunks_exact_mut(len)) {
            // Sums of ĝ = g⊙w and ĝ⊙x̂ with x̂ = (x − mean)·r.
            let mut acc_g = [0f32; LANES];
            let mut acc_gx = [0f32; LANES];
            let (xc, gc, wc) = (x.chunks_exact(LANES), g.chunks_exact(LANES), w.chunks_exact(LANES));
            let (xr, gr, wr) = (xc.remainder(), gc.remainder(), wc.remainder());
            for ((xc, gc), wc) in xc.zip(gc).zip(wc) {
                for ((((a, c), &x), &g), &w) in acc_g.iter_mut().zip(acc_gx.iter_mut()).zip(xc).zip(gc).zip(wc) {
                    *a += g * w;
                    *c += g * w * ((x - mean) * r);
                }
            }
            let (mut sg, mut sgx) = (lane_sum(acc_g), lane_sum(acc_gx));
            for ((&x, &g), &w) in xr.iter().zip(gr).zip(wr) {
                sg += g * w;
                sgx += g * w * ((x - mean) * r);
            }
            let mean_g = if centre { sg / n } else { 0.0 };
            let mean_gx = sgx / n;
            for ((((g, &x), &w), dw), db) in g.iter_mut().zip(x).zip(w).zip(dw.iter_mut()).zip(db.iter_mut()) {
                let xh = (x - mean) * r;
                *dw += *g * xh;
                *db += *g;
                *g = r * (*g * w - mean_g - xh * mean_gx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_support::{close, same_grad, values, Ad};
    use burn::tensor::Distribution;

    /// LayerNorm (`centre`) or RMSNorm without affine, from burn's operations.
    fn reference_normalize(x: Tensor<Ad, 3>, centre: bool) -> Tensor<Ad, 3> {
        let x = if centre { x.clone() - x.mean_dim(2) } else { x };
        x.clone() / (x.square().mean_dim(2) + 1e-5).sqrt()
    }

    #[test]
    fn fused_norms_match_burn_with_gradients() {
        let dev = Default::default();
        for centre in [true, false] {
            let x = Tensor::<Ad, 3>::random([2, 9, 37], Distribution::Normal(0.5, 2.0), &dev)
                .require_grad();
            let w = Tensor::<Ad, 3>::random([2, 9, 37], Distribution::Normal(0.0, 1.0), &dev);
            let y = normalize(x.clone(), centre, 1e-5);
            let want = reference_normalize(x.clone(), centre);
            let g = (y.clone() * w.clone()).sum().backward();
            let g_want = (want.clone() * w).sum().backward();
            close(values(y), values(want), 1e-5);
            same_grad(&x, &g, &g_want, 1e-4);
        }
        for (centre, shift) in [(true, true), (false, false), (true, false)] {
            let x = Tensor::<Ad, 3>::random([2, 9, 37], Distribution::Normal(0.5, 2.0), &dev)
                .require_grad();
            let wt =
                Tensor::<Ad, 1>::random([37], Distribution::Normal(1.0, 0.5), &dev).require_grad();
            let bs =
                Tensor::<Ad, 1>::random([37], Distribution::Normal(0.0, 0.5), &dev).require_grad();
            let w = Tensor::<Ad, 3>::random([2, 9, 37], Distribution::Normal(0.0, 1.0), &dev);
            let bias = shift.then(|| bs.clone());
            let y = norm(x.clone(), wt.clone(), bias.clone(), centre, 1e-5);
            let mut want = reference_normalize(x.clone(), centre) * wt.clone().unsqueeze::<3>();
            if let Some(b) = bias {
                want = want + b.unsqueeze::<3>();
            }
            let g = (y.clone() * w.clone()).sum().backward();
            let g_want = (want.clone() * w).sum().backward();
            close(values(y), values(want), 1e-5);
            same_grad(&x, &g, &g_want, 1e-4);
            same_grad(&wt, &g, &g_want, 1e-4);
            if shift {
                same_grad(&bs, &g, &g_want, 1e-4);
            }
        }
    }
}
