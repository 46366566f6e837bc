//! Matrix products on the CPU backend with their own backward passes: the batched
//! products of attention and the linear layers.
//!
//! Why: burn-flex creates every product's output twice (a zeroed byte vector, then
//! an aligned copy of it: a memset, a memcpy and the page faults of two fresh
//! buffers per product, about a tenth of a training step), and its backward of a
//! broadcast operand (grouped-query heads) materialises one product per broadcast
//! copy and sums them. Here gemm writes each output once into a fresh buffer; a
//! constant factor (the score scale) is gemm's β; a linear layer's bias is the
//! product's initial value, which gemm accumulates onto; and gradients of broadcast
//! operands accumulate inside gemm.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::Flex;
use burn::nn::Linear;
use burn::prelude::*;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::buffers::{contiguous, filled, with_shape, CHUNK};
use super::dispatch::{plain, record, split, tracked, Cpu};

/// Work (m·n·k) from which one product is split across threads by gemm itself.
const SPLIT_ONE: usize = 192 * 192 * 192;
/// Total work from which a batch of products is split across threads by product.
const SPLIT_BATCH: usize = 128 * 128 * 128;

/// A batch of matrices `[batch…, rows, cols]` read through strides (no copy of a
/// transposed or permuted view). `batch` holds one element stride per dimension of
/// the product's batch, 0 where this operand is broadcast.
struct Operand<'a> {
    data: &'a [f32],
    start: isize,
    batch: Vec<isize>,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a> Operand<'a> {
    /// `t` seen against a product batch of `rank` dimensions (`t`'s own batch
    /// dimensions right-aligned, numpy style).
    fn of(t: &'a FlexTensor, rank: usize) -> Self {
        let layout = t.layout();
        let shape = layout.shape();
        let strides = layout.strides();
        let nd = shape.num_dims();
        let own = nd - 2;
        let batch = (0..rank)
            .map(|i| match (i + own).checked_sub(rank) {
                Some(j) if shape[j] > 1 => strides[j],
                _ => 0,
            })
            .collect();
        Self {
            data: t.storage(),
            start: layout.start_offset() as isize,
            batch,
            rows: shape[nd - 2],
            cols: shape[nd - 1],
            row_stride: strides[nd - 2],
            col_stride: strides[nd - 1],
        }
    }

    /// The same matrices transposed.
    fn t(mut self) -> Self {
        std::mem::swap(&mut self.rows, &mut self.cols);
        std::mem::swap(&mut self.row_stride, &mut self.col_stride);
        self
    }

    /// Pointer to matrix `coords` of the batch.
    fn at(&self, coords: &[usize]) -> *const f32 {
        let offset = self.start
            + coords
                .iter()
                .zip(&self.batch)
                .map(|(&c, &s)| c as isize * s)
                .sum::<isize>();
        debug_assert!(offset >= 0 && (offset as usize) < self.data.len().max(1));
        // SAFETY: the layout's offsets stay inside its storage.
        unsafe { self.data.as_ptr().offset(offset) }
    }
}

/// Batch dimensions of `t` (all but the last two), left-padded with 1s to `rank`.
fn batch_dims(t: &FlexTensor, rank: usize) -> Vec<usize> {
    let shape = t.layout().shape();
    let own = shape.num_dims() - 2;
    (0..rank)
        .map(|i| (i + own).checked_sub(rank).map_or(1, |j| shape[j]))
        .collect()
}

/// The broadcast batch of `lhs · rhs` (numpy rules over all but the last two
/// dimensions).
fn broadcast_batch(lhs: &FlexTensor, rhs: &FlexTensor) -> Vec<usize> {
    let rank = lhs
        .layout()
        .shape()
        .num_dims()
        .max(rhs.layout().shape().num_dims())
        - 2;
    let (l, r) = (batch_dims(lhs, rank), batch_dims(rhs, rank));
    l.iter()
        .zip(&r)
        .map(|(&a, &b)| {
            assert!(
                a == b || a == 1 || b == 1,
                "matmul: batch dimensions {l:?} and {r:?} do not broadcast"
            );
            a.max(b)
        })
        .collect()
}

/// Coordinates of flat index `f` in `dims` (row-major).
fn coords(mut f: usize, dims: &[usize]) -> Vec<usize> {
    let mut c = vec![0; dims.len()];
    for (c, &d) in c.iter_mut().zip(dims).rev() {
        *c = f % d;
        f /= d;
    }
    c
}

/// `out[o] = init + scale · Σ a[f]·b[f]`, the sum over every index `f` of the batch
/// `full` that lands on output matrix `o` of the batch `out` (whose dimensions equal
/// `full`'s or are 1: a size-1 dimension sums the products along it). `init` is a
/// row added to every output row (a bias), or nothing.
fn products(
    full: &[usize],
    out: &[usize],
    a: &Operand<'_>,
    b: &Operand<'_>,
    scale: f32,
    init: Option<&[f32]>,
) -> Vec<f32> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    debug_assert_eq!(k, b.rows, "inner dimensions");
    let n_out: usize = out.iter().product();
    let n_full: usize = full.iter().product();
    // The products summed into each output matrix, in index order.
    let mut terms: Vec<Vec<Vec<usize>>> = vec![Vec::new(); n_out];
    for f in 0..n_full {
        let c = coords(f, full);
        let o = c
            .iter()
            .zip(out)
            .fold(0, |o, (&c, &d)| o * d + if d == 1 { 0 } else { c });
        terms[o].push(c);
    }
    let per = m.saturating_mul(n).saturating_mul(k);
    let total = per.saturating_mul(n_full);
    let by_product = n_out >= 4 && total >= SPLIT_BATCH;
    let split_inside = per >= SPLIT_ONE && !by_product;
    let inner = if split_inside {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    let one = |dst: &mut [std::mem::MaybeUninit<f32>], terms: &[Vec<usize>]| {
        let dst = dst.as_mut_ptr() as *mut f32;
        if let Some(row) = init {
            for r in 0..m {
                // SAFETY: `dst` holds m·n elements.
                unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), dst.add(r * n), n) };
            }
        }
        for (i, c) in terms.iter().enumerate() {
            let accumulate = init.is_some() || i > 0;
            // SAFETY: the operands' pointers and strides address their matrices
            // inside their storage; `dst` is an m×n row-major buffer, written whole
            // by the first product (gemm reads it only when `accumulate`).
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    dst,
                    1,
                    n as isize,
                    accumulate,
                    a.at(c),
                    a.col_stride,
                    a.row_stride,
                    b.at(c),
                    b.col_stride,
                    b.row_stride,
                    1.0f32,
                    scale,
                    false,
                    false,
                    false,
                    inner,
                )
            };
        }
    };
    // SAFETY: every element of the `n_out` output matrices of m×n is written: with
    // m·n = 0 there is none; with k = 0 each is set to the initial value; otherwise
    // `one` writes each matrix whole, by the bias rows when there is an initial value
    // and by its first product in any case (every output matrix is the sum of at
    // least one product of the batch `full`, whose dimensions `out` equals or
    // collapses to 1).
    unsafe {
        filled(n_out * m * n, |dst| {
            if m * n == 0 {
                return;
            }
            if k == 0 {
                // An empty sum: the initial value alone.
                for row in dst.chunks_mut(n) {
                    for (j, x) in row.iter_mut().enumerate() {
                        x.write(init.map_or(0.0, |b| b[j]));
                    }
                }
                return;
            }
            if n_out > 1 && total >= SPLIT_BATCH && !split_inside {
                dst.par_chunks_mut(m * n)
                    .zip(terms.par_iter())
                    .for_each(|(dst, t)| one(dst, t));
            } else {
                for (dst, t) in dst.chunks_mut(m * n).zip(&terms) {
                    one(dst, t);
                }
            }
        })
    }
}

/// Column sums of the rows of `g` (`[rows, n]`), in a fixed order.
fn column_sums(g: &FlexTensor, n: usize) -> Vec<f32> {
    let g = contiguous(g);
    let v: &[f32] = g.storage();
    let rows = CHUNK.div_ceil(n.max(1));
    let partials: Vec<Vec<f32>> = v
        .par_chunks(rows * n)
        .map(|block| {
            let mut s = vec![0f32; n];
            for row in block.chunks_exact(n) {
                for (a, &x) in s.iter_mut().zip(row) {
                    *a += x;
                }
            }
            s
        })
        .collect();
    let mut sum = vec![0f32; n];
    for p in &partials {
        for (a, &x) in sum.iter_mut().zip(p) {
            *a += x;
        }
    }
    sum
}

/// The shape of `lhs · rhs`: broadcast batch, then rows of `lhs`, columns of `rhs`.
fn product_shape(full: &[usize], lhs: &FlexTensor, rhs: &FlexTensor) -> Vec<usize> {
    let (l, r) = (lhs.layout().shape(), rhs.layout().shape());
    let mut shape = full.to_vec();
    shape.push(l[l.num_dims() - 2]);
    shape.push(r[r.num_dims() - 1]);
    shape
}

/// What the backward of a product needs: both operands (buffers shared, not
/// copied) and the scale. A bias's gradient needs neither: it is dC's column sums.
#[derive(Clone, Debug)]
struct ProductState {
    lhs: FlexTensor,
    rhs: FlexTensor,
    scale: f32,
}

impl ProductState {
    /// Gradients of the operands (and of a bias as the third) that are `wanted`.
    fn grads(&self, g: FlexTensor, wanted: &[bool]) -> Vec<Option<FlexTensor>> {
        let full = broadcast_batch(&self.lhs, &self.rhs);
        let rank = full.len();
        let dy = Operand::of(&g, rank);
        let mut out = Vec::with_capacity(wanted.len());
        // dA = s · dC · Bᵀ, summed over A's broadcast dimensions.
        out.push(wanted[0].then(|| {
            let dims = batch_dims(&self.lhs, rank);
            let v = products(
                &full,
                &dims,
                &dy,
                &Operand::of(&self.rhs, rank).t(),
                self.scale,
                None,
            );
            with_shape(self.lhs.layout().shape().clone(), v)
        }));
        // dB = s · Aᵀ · dC, summed over B's broadcast dimensions.
        out.push(wanted[1].then(|| {
            let dims = batch_dims(&self.rhs, rank);
            let v = products(
                &full,
                &dims,
                &Operand::of(&self.lhs, rank).t(),
                &dy,
                self.scale,
                None,
            );
            with_shape(self.rhs.layout().shape().clone(), v)
        }));
        if wanted.len() > 2 {
            let n = self.rhs.layout().shape()[self.rhs.layout().shape().num_dims() - 1];
            out.push(wanted[2].then(|| with_shape([n], column_sums(&g, n))));
        }
        out
    }
}

/// Backward of [`matmul`] (parents: lhs, rhs) and of [`linear`] with a bias
/// (parents: input, weight, bias).
#[derive(Debug)]
struct ProductBackward;

impl<const N: usize> Backward<Flex, N> for ProductBackward {
    type State = ProductState;

    fn backward(self, ops: Ops<ProductState, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g = grads.consume::<Flex>(&ops.node);
        let wanted: Vec<bool> = ops.parents.iter().map(Option::is_some).collect();
        for (parent, grad) in ops.parents.iter().zip(ops.state.grads(g, &wanted)) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// The product on flex tensors, with the state its backward needs.
fn product_forward(
    lhs: &FlexTensor,
    rhs: &FlexTensor,
    bias: Option<&FlexTensor>,
    scale: f32,
) -> (FlexTensor, ProductState) {
    let full = broadcast_batch(lhs, rhs);
    let rank = full.len();
    let bias = bias.map(contiguous);
    let v = products(
        &full,
        &full,
        &Operand::of(lhs, rank),
        &Operand::of(rhs, rank),
        scale,
        bias.as_ref().map(|b| b.storage::<f32>()),
    );
    let y = with_shape(product_shape(&full, lhs, rhs), v);
    let state = ProductState {
        lhs: lhs.clone(),
        rhs: rhs.clone(),
        scale,
    };
    (y, state)
}

/// `scale · lhs · rhs` over the last two dimensions, the leading ones broadcast as
/// in numpy (`[B, Hkv, G, T, Dh]` against `[B, Hkv, 1, Dh, T]` reads each key head
/// once for its G query heads).
pub fn matmul<B: Backend, const D: usize>(
    lhs: Tensor<B, D>,
    rhs: Tensor<B, D>,
    scale: f64,
) -> Tensor<B, D> {
    let burns = |l: Tensor<B, D>, r: Tensor<B, D>| {
        let y = l.matmul(r);
        if scale == 1.0 {
            y
        } else {
            y * scale
        }
    };
    if lhs.dtype() != rhs.dtype() {
        // Only f32 pairs take the kernel (split checks each side alone).
        return burns(lhs, rhs);
    }
    match (split(lhs), split(rhs)) {
        (Cpu::Plain(l), Cpu::Plain(r)) => plain(product_forward(&l, &r, None, scale as f32).0),
        (Cpu::Tracked(l), Cpu::Tracked(r)) => {
            let (y, state) = product_forward(&l.primitive, &r.primitive, None, scale as f32);
            tracked(record(ProductBackward, [&l, &r], state, y))
        }
        (Cpu::Other(l), Cpu::Other(r)) => burns(l, r),
        _ => unreachable!("both operands live on one backend, with one dtype"),
    }
}

/// `x · weight + bias` of a burn [`Linear`] on `[rows, d_in]`, the bias (if any)
/// added by the product itself.
pub fn linear<B: Backend>(x: Tensor<B, 2>, layer: &Linear<B>) -> Tensor<B, 2> {
    let bias = layer.bias.as_ref().map(|b| b.val());
    let dtype = x.dtype();
    if layer.weight.val().dtype() != dtype || bias.as_ref().is_some_and(|b| b.dtype() != dtype) {
        // Only all-f32 layers take the kernel (split checks each tensor alone).
        return layer.forward(x);
    }
    match (split(x), split::<B, 2>(layer.weight.val())) {
        (Cpu::Plain(x), Cpu::Plain(w)) => {
            let b = bias.map(|b| match split::<B, 1>(b) {
                Cpu::Plain(b) => b,
                _ => unreachable!("one backend"),
            });
            plain(product_forward(&x, &w, b.as_ref(), 1.0).0)
        }
        (Cpu::Tracked(x), Cpu::Tracked(w)) => match bias.map(split::<B, 1>) {
            None => {
                let (y, state) = product_forward(&x.primitive, &w.primitive, None, 1.0);
                tracked(record(ProductBackward, [&x, &w], state, y))
            }
            Some(Cpu::Tracked(b)) => {
                let (y, state) =
                    product_forward(&x.primitive, &w.primitive, Some(&b.primitive), 1.0);
                tracked(record(ProductBackward, [&x, &w, &b], state, y))
            }
            Some(_) => unreachable!("one backend"),
        },
        (Cpu::Other(x), Cpu::Other(_)) => layer.forward(x),
        _ => unreachable!("one backend"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::AutodiffModule;
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    use crate::model::kernels::test_support::{close, same_grad, values, Ad};

    fn random<const D: usize>(shape: [usize; D]) -> Tensor<Ad, D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default()).require_grad()
    }

    /// Our product and burn-flex's (`lhs.matmul(rhs) · scale`), values and both
    /// operands' gradients, with `view` applied to each operand first (a transposed
    /// view is read through its strides).
    fn check<const D: usize>(
        lhs: [usize; D],
        rhs: [usize; D],
        scale: f64,
        view: impl Fn(Tensor<Ad, D>) -> Tensor<Ad, D>,
    ) {
        let (l, r) = (random(lhs), random(rhs));
        let y = matmul(view(l.clone()), view(r.clone()), scale);
        let want = view(l.clone()).matmul(view(r.clone())) * scale;
        assert_eq!(y.dims(), want.dims());
        let w = Tensor::<Ad, D>::random(y.dims(), Distribution::Default, &Default::default());
        let g = (y.clone() * w.clone()).sum().backward();
        let g_want = (want.clone() * w).sum().backward();
        close(values(y), values(want), 1e-4);
        same_grad(&l, &g, &g_want, 1e-4);
        same_grad(&r, &g, &g_want, 1e-4);
    }

    #[test]
    fn products_match_burn_with_gradients() {
        // Plain 2-D, odd sizes (edges of gemm's register tiles).
        check([37, 23], [23, 19], 1.0, |t| t);
        // Transposed views of both operands.
        check([23, 37], [19, 23], 0.5, |t| t.transpose());
        // Grouped-query broadcast: each key head serves 3 query heads, so its
        // gradient sums three products.
        check([2, 3, 4, 5, 6], [2, 3, 1, 6, 7], 0.3, |t| t);
        check([1, 3, 4, 5, 6], [2, 1, 1, 6, 7], 1.0, |t| t);
        // Large enough for the parallel paths: one product split by gemm (and its
        // broadcast gradient accumulated that way), and a batch split by product.
        check([2, 200, 200], [1, 200, 200], 1.0, |t| t);
        check([8, 64, 64], [8, 64, 64], 0.125, |t| t.swap_dims(1, 2));
    }

    #[test]
    fn linear_layers_match_burn_with_gradients() {
        let dev = Default::default();
        for bias in [true, false] {
            let layer = LinearConfig::new(23, 19).with_bias(bias).init::<Ad>(&dev);
            let x = random([37, 23]);
            let y = linear(x.clone(), &layer);
            let want = layer.forward(x.clone());
            let w = Tensor::<Ad, 2>::random(y.dims(), Distribution::Default, &dev);
            let g = (y.clone() * w.clone()).sum().backward();
            let g_want = (want.clone() * w).sum().backward();
            close(values(y), values(want), 1e-4);
            same_grad(&x, &g, &g_want, 1e-4);
            same_grad(&layer.weight.val(), &g, &g_want, 1e-4);
            if let Some(b) = &layer.bias {
                same_grad(&b.val(), &g, &g_want, 1e-4);
            }
            // Without autodiff too.
            let plain = layer.valid();
            let x = x.inner();
            close(
                values(linear(x.clone(), &plain)),
                values(plain.forward(x)),
                1e-4,
            );
        }
    }
}
