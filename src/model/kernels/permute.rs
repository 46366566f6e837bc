//! Permutations of a tensor's dimensions, materialised: the moves of attention heads
//! between the projections' `[B, T, H, Dh]` and the per-head layouts, with the
//! backward pass (the inverse permutation).
//!
//! Why: flex copies N-dimensional strided views element by element, and the
//! gradient of a mere view reaches a reshape as such a view. Here the copy is made
//! once, by whole rows where the last dimension stays in place and in cache-sized
//! tiles where it moves.

use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops};
use burn::backend::Flex;
use burn::prelude::*;
use burn_flex::FlexTensor;

use super::buffers::{filled, with_shape};
use super::dispatch::unary_op;

/// `x.permute(axes)` as a contiguous tensor, the copy made once (and the gradient
/// copied back) by a tiled copy. Used to move attention heads between the
/// projections' `[B, T, H, Dh]` and the per-head layouts: flex copies N-dimensional
/// strided views element by element, and the gradient of a mere view reaches a
/// reshape as such a view. Other backends get the view.
pub fn permute<B: Backend, const D: usize>(x: Tensor<B, D>, axes: [usize; D]) -> Tensor<B, D> {
    unary_op(
        x,
        PermuteBackward,
        |x| {
            let mut inverse = vec![0; D];
            for (i, &a) in axes.iter().enumerate() {
                inverse[a] = i;
            }
            (permute_flex(&x, &axes), inverse)
        },
        |x| x.permute(axes),
    )
}

/// Backward of [`permute`]: the gradient permuted back.
#[derive(Debug)]
struct PermuteBackward;

impl Backward<Flex, 1> for PermuteBackward {
    type State = Vec<usize>;

    fn backward(self, ops: Ops<Vec<usize>, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let inverse = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| permute_flex(&g, &inverse));
    }
}

/// `x.permute(axes)` materialised in row-major order.
fn permute_flex(x: &FlexTensor, axes: &[usize]) -> FlexTensor {
    let view = x.permute(axes);
    let layout = view.layout();
    let shape = layout.shape().clone();
    let values = copy_strided(
        x.storage(),
        layout.start_offset(),
        &shape.to_vec(),
        layout.strides(),
    );
    with_shape(shape, values)
}

/// Contiguous copy of the strided view `(shape, strides)` (elements) of `src` from
/// `offset`. Dimensions that form one run are merged first; whole rows are copied
/// when the last dimension is unit-stride, and a transposition (the unit-stride source
/// dimension elsewhere) goes in cache-sized tiles, so a permutation costs about a
/// `memcpy` rather than an index computation per element.
fn copy_strided(src: &[f32], offset: usize, shape: &[usize], strides: &[isize]) -> Vec<f32> {
    let (dims, st) = merge_runs(shape, strides);
    let total: usize = shape.iter().product();
    let nd = dims.len();
    if nd == 0 {
        return if total == 1 {
            vec![src[offset]]
        } else {
            Vec::new()
        };
    }
    let last = nd - 1;
    if st[last] == 1 {
        let run = dims[last];
        let mut out = Vec::with_capacity(total);
        for_each_offset(&dims[..last], &st[..last], offset as isize, &mut |b| {
            out.extend_from_slice(&src[b as usize..b as usize + run]);
        });
        return out;
    }
    let fill = |dst: &mut [MaybeUninit<f32>]| match st[..last].iter().rposition(|&s| s == 1) {
        Some(u) => copy_tiled(src, offset, &dims, &st, u, dst),
        None => {
            let (inner, inner_st) = (dims[last], st[last]);
            let mut k = 0;
            for_each_offset(&dims[..last], &st[..last], offset as isize, &mut |b| {
                for j in 0..inner {
                    dst[k].write(src[(b + j as isize * inner_st) as usize]);
                    k += 1;
                }
            });
        }
    };
    // SAFETY: the merged `dims` hold `total` elements; `copy_tiled` writes every one
    // (see there), and the walk of the other branch writes elements 0..total in
    // order.
    unsafe { filled(total, fill) }
}

/// `(dims, strides)` with size-1 dimensions dropped and each pair of neighbours whose
/// strides make one run merged into one dimension.
fn merge_runs(shape: &[usize], strides: &[isize]) -> (Vec<usize>, Vec<isize>) {
    let (mut dims, mut st) = (Vec::new(), Vec::<isize>::new());
    for (&n, &s) in shape.iter().zip(strides) {
        if n == 1 {
            continue;
        }
        match (dims.last_mut(), st.last_mut()) {
            (Some(d), Some(last)) if *last == s * n as isize => {
                *d *= n;
                *last = s;
            }
            _ => {
                dims.push(n);
                st.push(s);
            }
        }
    }
    (dims, st)
}

/// Calls `body(source offset)` for every index of `dims` in row-major order.
fn for_each_offset(dims: &[usize], st: &[isize], base: isize, body: &mut impl FnMut(isize)) {
    match dims.split_first() {
        None => body(base),
        Some((&n, rest)) => {
            for i in 0..n {
                for_each_offset(rest, &st[1..], base + i as isize * st[0], body);
            }
        }
    }
}

/// The transposition case of [`copy_strided`]: writes every element of `dst` (the
/// row-major output of the merged `dims`), in tiles over dimension `u` (unit-stride
/// in the source) and the last one (contiguous in the output), the other dimensions
/// walked around them: each (other, u, last) index once.
fn copy_tiled(
    src: &[f32],
    offset: usize,
    dims: &[usize],
    st: &[isize],
    u: usize,
    dst: &mut [MaybeUninit<f32>],
) {
    const TILE: usize = 32;
    let (nd, last) = (dims.len(), dims.len() - 1);
    let out_st: Vec<usize> = (0..nd).map(|d| dims[d + 1..].iter().product()).collect();
    let others: Vec<usize> = (0..last).filter(|&d| d != u).collect();
    let o_dims: Vec<usize> = others.iter().map(|&d| dims[d]).collect();
    let o_src: Vec<isize> = others.iter().map(|&d| st[d]).collect();
    let o_out: Vec<isize> = others.iter().map(|&d| out_st[d] as isize).collect();
    let (rows, cols, rs, cs, ro) = (dims[u], dims[last], st[u], st[last], out_st[u]);
    let mut idx = vec![0usize; o_dims.len()];
    loop {
        let s0 = offset as isize
            + idx
                .iter()
                .zip(&o_src)
                .map(|(&i, &s)| i as isize * s)
                .sum::<isize>();
        let d0: isize = idx.iter().zip(&o_out).map(|(&i, &s)| i as isize * s).sum();
        for r0 in (0..rows).step_by(TILE) {
            for c0 in (0..cols).step_by(TILE) {
                for c in c0..(c0 + TILE).min(cols) {
                    let (sb, db) = (s0 + c as isize * cs, d0 as usize + c);
                    for r in r0..(r0 + TILE).min(rows) {
                        dst[db + r * ro].write(src[(sb + r as isize * rs) as usize]);
                    }
                }
            }
        }
        // Advance the index over the other dimensions.
        let mut d = o_dims.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < o_dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_support::{close, Ad};
    use burn::tensor::Distribution;

    #[test]
    fn permutes_match_views_with_gradients() {
        let dev = Default::default();
        let x = Tensor::<Ad, 4>::random([2, 5, 3, 4], Distribution::Normal(0.0, 1.0), &dev)
            .require_grad();
        for axes in [
            [0, 2, 1, 3],
            [0, 2, 3, 1],
            [3, 1, 0, 2],
            [0, 1, 2, 3],
            [1, 0, 3, 2],
        ] {
            // A strided input too: the view of a permuted tensor. Each graph gets its
            // own input (a backward pass consumes the nodes it walks).
            for swapped in [false, true] {
                let input = || match swapped {
                    false => x.clone(),
                    true => x.clone().swap_dims(1, 2),
                };
                let y = permute(input(), axes);
                let want = input().permute(axes);
                assert_eq!(y.dims(), want.dims());
                let w = Tensor::<Ad, 4>::random(y.dims(), Distribution::Normal(0.0, 1.0), &dev);
                close(
                    y.clone().into_data().to_vec().unwrap(),
                    want.clone().into_data().to_vec().unwrap(),
                    0.0,
                );
                let g = (y * w.clone()).sum().backward();
                let g_want = (want * w).sum().backward();
                close(
                    x.grad(&g).unwrap().into_data().to_vec().unwrap(),
                    x.grad(&g_want).unwrap().into_data().to_vec().unwrap(),
                    0.0,
                );
            }
        }
        let big = Tensor::<Flex, 4>::random([3, 70, 5, 40], Distribution::Default, &dev);
        for axes in [[0, 2, 3, 1], [0, 2, 1, 3], [2, 3, 0, 1]] {
            close(
                permute(big.clone(), axes).into_data().to_vec().unwrap(),
                big.clone().permute(axes).into_data().to_vec().unwrap(),
                0.0,
            );
        }
    }
}
