//! Fused CPU kernels, with their own backward passes, for the hot spots of training
//! on the flex backend: exact GELU, the attention softmax, the norms' normalisation,
//! rotary embeddings, the token loss, the head permutations around attention, the
//! matrix products (`matmul.rs`) and the AdamW update (`adamw.rs`); `memory.rs` keeps
//! freed activations in the process for the next step.
//!
//! Why: flex evaluates `erf` and `exp` one element at a time on one thread (libm),
//! copies N-dimensional strided views element by element, and burn's autodiff builds
//! softmax, log-softmax and the norms out of five to seven primitive operations each
//! way, every one a pass over memory into a freshly zeroed buffer. Together that was
//! most of a training step's wall time on two cores. Here each is one pass forward
//! and one backward, split across rayon's threads, writing in place where the input
//! is no longer needed, with `exp` and `erf` as branch-free polynomials the compiler
//! vectorises (AVX-512 or AVX2+FMA chosen at run time, no `target-cpu` needed).
//!
//! `erf` is Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), the
//! approximation PyTorch's vectorised CPU kernels use; GELU's lower tail is taken from
//! the complementary form, avoiding the cancellation in `1 + erf`. `exp` is Cephes'
//! `expf` polynomial (about 1 ulp), flushed to 0 below −87 (masked scores are −∞).
//! Row reductions sum in a fixed order, so results do not depend on the thread count.
//!
//! Dispatch is by type at run time so the model stays generic over `Backend`: on
//! `Flex` and `Autodiff<Flex>` with `f32` tensors these kernels run; on any other
//! backend (CUDA, …) the callers' burn operations do, with the same mathematics.

use std::any::Any;
use std::mem::MaybeUninit;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::activation;
use burn::tensor::backend::BackendTypes;
use burn::tensor::{DType, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

mod matmul;
mod memory;

pub use adamw::{adamw, adamw_fuses, AdamWStep};
pub use matmul::{linear, matmul};
pub use memory::retain_freed_memory;

type Ad = Autodiff<Flex>;
type AdTensor = <Ad as BackendTypes>::FloatTensorPrimitive;

// ---------------------------------------------------------------------------
// Dispatch: which backend a tensor lives on, decided by type at run time.
// ---------------------------------------------------------------------------

/// Moves `x` into a `U` when `T` and `U` are the same type.
fn cast<T: 'static, U: 'static>(x: T) -> Result<U, T> {
    let mut slot = Some(x);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>() {
        Some(u) => Ok(u.take().expect("just filled")),
        None => Err(slot.expect("untouched")),
    }
}

/// A tensor of one of the two backends the kernels serve, taken apart.
enum Cpu<B: Backend, const D: usize> {
    Plain(FlexTensor),
    Tracked(AdTensor),
    Other(Tensor<B, D>),
}

fn split<B: Backend, const D: usize>(x: Tensor<B, D>) -> Cpu<B, D> {
    if x.dtype() != DType::F32 {
        return Cpu::Other(x);
    }
    let x = match cast::<_, Tensor<Flex, D>>(x) {
        Ok(t) => return Cpu::Plain(t.into_primitive().tensor()),
        Err(x) => x,
    };
    match cast::<_, Tensor<Ad, D>>(x) {
        Ok(t) => Cpu::Tracked(t.into_primitive().tensor()),
        Err(x) => Cpu::Other(x),
    }
}

fn plain<B: Backend, const D: usize>(t: FlexTensor) -> Tensor<B, D> {
    cast(Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(t)))
        .unwrap_or_else(|_| unreachable!("only called when B is Flex"))
}

fn tracked<B: Backend, const D: usize>(t: AdTensor) -> Tensor<B, D> {
    cast(Tensor::<Ad, D>::from_primitive(TensorPrimitive::Float(t)))
        .unwrap_or_else(|_| unreachable!("only called when B is Autodiff<Flex>"))
}

/// A one-input operation on both CPU backends: `forward` computes the output and the
/// state its backward needs; the autodiff node is registered only when tracked.
fn unary_op<B, O, const D: usize>(
    x: Tensor<B, D>,
    op: O,
    forward: impl FnOnce(FlexTensor) -> (FlexTensor, O::State),
    other: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D>
where
    B: Backend,
    O: Backward<Flex, 1>,
{
    match split(x) {
        Cpu::Plain(x) => plain(forward(x).0),
        Cpu::Tracked(x) => {
            let node = x.node.clone();
            let (y, state) = forward(x.primitive);
            let out = match op
                .prepare::<NoCheckpointing>([node])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(state, y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            };
            tracked(out)
        }
        Cpu::Other(x) => other(x),
    }
}

/// `y`, computed by `op` from `parents`, registered with the autodiff graph (with the
/// state its backward needs when some parent is tracked).
fn record<O, const N: usize>(
    op: O,
    parents: [&AdTensor; N],
    state: O::State,
    y: FlexTensor,
) -> AdTensor
where
    O: Backward<Flex, N>,
{
    match op
        .prepare::<NoCheckpointing>(parents.map(|p| p.node.clone()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

// ---------------------------------------------------------------------------
// Buffers.
// ---------------------------------------------------------------------------

/// `t` contiguous from offset 0 (a copy only if it is a strided view).
fn contiguous(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

/// `t` as a contiguous buffer owned by the caller alone, to overwrite in place (a
/// copy only when it is shared or strided).
fn owned(t: FlexTensor) -> FlexTensor {
    let mut c = t.to_contiguous();
    // `to_contiguous` shares the buffer when no copy is needed: drop the original
    // handle so `c` can be the only one.
    drop(t);
    if c.try_storage_mut::<f32>().is_none() {
        let copy = c.storage::<f32>().to_vec();
        c = with_shape(c.layout().shape().clone(), copy);
    }
    c
}

fn in_place(t: &mut FlexTensor) -> &mut [f32] {
    t.try_storage_mut().expect("owned() made it unique")
}

fn with_shape(shape: impl Into<burn::tensor::Shape>, values: Vec<f32>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// A vector of `n` elements, each written once by `fill`, without zeroing first.
fn filled(n: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: every caller's `fill` writes all `n` elements (element-wise or
    // row-wise kernels over the whole slice).
    unsafe { v.set_len(n) };
    v
}

fn last_dim(t: &FlexTensor) -> usize {
    let shape = t.layout().shape();
    shape[shape.num_dims() - 1].max(1)
}

// ---------------------------------------------------------------------------
// Vectorised scalar functions and row kernels.
// ---------------------------------------------------------------------------

/// Declares `fn $name(args)` compiled three times (AVX-512, AVX2+FMA, baseline) and
/// picks the widest the CPU supports, so the loops in `$body` vectorise without
/// `target-cpu`.
macro_rules! multiversion {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v4($($arg: $ty),*) {
                    imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v3($($arg: $ty),*) {
                    imp($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the features were detected on this CPU.
                    return unsafe { v4($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the features were detected on this CPU.
                    return unsafe { v3($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

mod adamw;

/// Elements per rayon task for element-wise kernels (64 KiB of f32).
const CHUNK: usize = 1 << 14;

/// Rows per rayon task for row kernels: at least `CHUNK` elements.
fn rows_per_task(row_len: usize) -> usize {
    CHUNK.div_ceil(row_len.max(1))
}

/// Width of the partial sums in row reductions: lanes the compiler keeps in vector
/// registers, added in a fixed order.
const LANES: usize = 16;

#[inline(always)]
fn lane_sum(acc: [f32; LANES]) -> f32 {
    acc.iter().sum()
}

#[inline(always)]
fn row_max(x: &[f32]) -> f32 {
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut c = x.chunks_exact(LANES);
    for c in &mut c {
        for (m, &v) in max.iter_mut().zip(c) {
            *m = m.max(v);
        }
    }
    let m = max.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    c.remainder().iter().fold(m, |m, &v| m.max(v))
}

/// Σ f(x_i, y_i) over a row, in `LANES` partial sums.
#[inline(always)]
fn row_sum2(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (xc, yc) in xc.zip(yc) {
        for ((a, &x), &y) in acc.iter_mut().zip(xc).zip(yc) {
            *a += f(x, y);
        }
    }
    xr.iter()
        .zip(yr)
        .fold(lane_sum(acc), |a, (&x, &y)| a + f(x, y))
}

/// `e^x` for x ≤ 88 (Cephes `expf`); 0 below −87, including −∞.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let shifted = xc * LOG2E + ROUND;
    let k = shifted - ROUND;
    // The integer k read from the mantissa bits of `shifted` (a float-to-int `as`
    // cast would saturate, which does not vectorise).
    let ki = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = xc - k * LN2_HI - k * LN2_LO;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 5e-1)
        * (r * r)
        + r
        + 1.0;
    let scale = f32::from_bits(((ki + 127) << 23) as u32);
    if x < -87.0 {
        0.0
    } else {
        p * scale
    }
}

/// Φ(x) and φ(x) (standard normal distribution and density) for GELU.
#[inline(always)]
fn normal_cdf_pdf(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let e = exp(-(z * z));
    // erfc(|x|/√2) / 2 = Φ(−|x|).
    let tail = 0.5 * (t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))))) * e;
    let cdf = if x < 0.0 { tail } else { 1.0 - tail };
    (cdf, INV_SQRT_2PI * e)
}

multiversion! {
    /// `y = x Φ(x)`.
    fn gelu_rows(x: &[f32], y: &mut [MaybeUninit<f32>]) {
        for (y, &x) in y.iter_mut().zip(x) {
            y.write(x * normal_cdf_pdf(x).0);
        }
    }
}

multiversion! {
    /// `y = x Φ(x)` and its slope `Φ(x) + x φ(x)`, kept for the backward pass (so
    /// it multiplies instead of evaluating `erf` again).
    fn gelu_slope_rows(x: &[f32], y: &mut [MaybeUninit<f32>], slope: &mut [MaybeUninit<f32>]) {
        for ((y, slope), &x) in y.iter_mut().zip(slope).zip(x) {
            let (cdf, pdf) = normal_cdf_pdf(x);
            y.write(x * cdf);
            slope.write(cdf + x * pdf);
        }
    }
}

multiversion! {
    /// `g ← g · s`.
    fn scale_rows(s: &[f32], g: &mut [f32]) {
        for (g, &s) in g.iter_mut().zip(s) {
            *g *= s;
        }
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

multiversion! {
    /// Rotary embedding of rows of `x` (`[rows, row_len]`, row r at position
    /// `(first_row + r) % positions`): `y_i = x_i cos_i + x_{i+δ} sin_i`, over `runs`
    /// `(start, len, δ)` of features sharing the partner offset δ; the tables are
    /// `[positions, row_len]`.
    fn rotate_rows(
        x: &[f32],
        cos: &[f32],
        sin: &[f32],
        runs: &[(usize, usize, isize)],
        row_len: usize,
        first_row: usize,
        y: &mut [MaybeUninit<f32>],
    ) {
        let positions = cos.len() / row_len;
        for (r, (x, y)) in x.chunks_exact(row_len).zip(y.chunks_exact_mut(row_len)).enumerate() {
            let t = (first_row + r) % positions;
            let (c, s) = (&cos[t * row_len..][..row_len], &sin[t * row_len..][..row_len]);
            for &(start, len, delta) in runs {
                let partner = (start as isize + delta) as usize;
                let (xs, xp) = (&x[start..start + len], &x[partner..partner + len]);
                let (cs, ss) = (&c[start..start + len], &s[start..start + len]);
                for ((((y, &a), &b), &c), &s) in
                    y[start..start + len].iter_mut().zip(xs).zip(xp).zip(cs).zip(ss)
                {
                    y.write(a * c + b * s);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// GELU.
// ---------------------------------------------------------------------------

/// Backward of [`gelu`]; the state is GELU's slope at the input.
#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    /// The slope of GELU at the input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let slope = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let mut g = owned(g);
            in_place(&mut g)
                .par_chunks_mut(CHUNK)
                .zip(slope.storage::<f32>().par_chunks(CHUNK))
                .for_each(|(g, s)| scale_rows(s, g));
            g
        });
    }
}

/// Exact GELU, `x Φ(x)`; under autodiff its slope is computed alongside and kept in
/// place of the input.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let forward = |x: &FlexTensor, slope: bool| {
        let x = contiguous(x);
        let src: &[f32] = x.storage();
        let shape = x.layout().shape().clone();
        let mut s = Vec::new();
        let y = filled(src.len(), |y| {
            if slope {
                s = filled(src.len(), |s| {
                    y.par_chunks_mut(CHUNK)
                        .zip(s.par_chunks_mut(CHUNK))
                        .zip(src.par_chunks(CHUNK))
                        .for_each(|((y, s), x)| gelu_slope_rows(x, y, s))
                });
            } else {
                y.par_chunks_mut(CHUNK)
                    .zip(src.par_chunks(CHUNK))
                    .for_each(|(y, x)| gelu_rows(x, y))
            }
        });
        let slope = slope.then(|| with_shape(shape.clone(), s));
        (with_shape(shape, y), slope)
    };
    match split(x) {
        Cpu::Plain(x) => plain(forward(&x, false).0),
        Cpu::Tracked(x) => {
            let (y, slope) = forward(&x.primitive, true);
            let slope = slope.expect("asked for");
            tracked(record(GeluBackward, [&x], slope, y))
        }
        Cpu::Other(x) => activation::gelu(x),
    }
}

// ---------------------------------------------------------------------------
// Attention softmax.
// ---------------------------------------------------------------------------

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

fn composite_softmax<B: Backend>(scores: Tensor<B, 4>, bias: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
    let scores = match bias {
        Some(b) => scores + b,
        None => scores,
    };
    activation::softmax(scores, 3)
}

// ---------------------------------------------------------------------------
// Norms.
// ---------------------------------------------------------------------------

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
            let y = filled(src.len(), |y| {
                y.par_chunks_mut(rows * len)
                    .zip(rstd.par_chunks_mut(rows))
                    .zip(src.par_chunks(rows * len))
                    .for_each(|((y, r), x)| normalize_rows(x, len, centre, eps as f32, y, r))
            });
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

/// What the backward of [`norm`] needs: the input, per-row mean and rstd, the
/// weight, whether rows were centred and whether there is a shift.
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
    let rows = rows_per_task(len);
    let mut stats = vec![(0f32, 0f32); src.len() / len];
    let y = filled(src.len(), |y| {
        y.par_chunks_mut(rows * len)
            .zip(stats.par_chunks_mut(rows))
            .zip(src.par_chunks(rows * len))
            .for_each(|((y, st), x)| norm_affine_rows(x, wv, bv, centre, eps, y, st))
    });
    let y = with_shape(x.layout().shape().clone(), y);
    let state = NormState {
        x,
        stats: Arc::new(stats),
        w,
        centre,
    };
    (y, state)
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
        (x, w) => {
            let back = |t: Cpu<B, D>| match t {
                Cpu::Plain(t) => plain(t),
                Cpu::Tracked(t) => tracked(t),
                Cpu::Other(t) => t,
            };
            let back1 = |t: Cpu<B, 1>| match t {
                Cpu::Plain(t) => plain(t),
                Cpu::Tracked(t) => tracked(t),
                Cpu::Other(t) => t,
            };
            return other(back(x), back1(w), bias);
        }
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

// ---------------------------------------------------------------------------
// Token loss.
// ---------------------------------------------------------------------------

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
            let dx = filled(xv.len(), |dx| {
                dx.par_chunks_mut(rows * v)
                    .zip(xv.par_chunks(rows * v))
                    .zip(lse.par_chunks(rows).zip(targets.par_chunks(rows)))
                    .zip(gv.par_chunks(rows))
                    .for_each(|(((dx, x), (l, t)), g)| nll_grad_rows(x, l, t, g, v, dx))
            });
            with_shape(x.layout().shape().clone(), dx)
        });
    }
}

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
            let out = match NllBackward
                .prepare::<NoCheckpointing>([x.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish((xc, Arc::new(lse), Arc::new(ids)), nll),
                OpsKind::UnTracked(prep) => prep.finish(nll),
            };
            tracked(out)
        }
        Cpu::Other(_) => unreachable!("returned above"),
    }
}

// ---------------------------------------------------------------------------
// Rotary embeddings.
// ---------------------------------------------------------------------------

/// Host tables of a rotation in the projections' layout (see
/// [`crate::model::position::RowRotation`]): `y_i = x_i cos_i + x_{partner_i} sin_i`
/// over a row of `n·Dh` features, tables `[T, n·Dh]`, the sign of the rotation in
/// `sin`.
#[derive(Debug)]
pub struct RotationTables {
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// `sin` read at each feature's partner: the backward pass's table.
    sin_back: Vec<f32>,
    /// Runs `(start, len, δ)` of features whose partner is δ columns away.
    runs: Vec<(usize, usize, isize)>,
    row_len: usize,
}

impl RotationTables {
    /// Tables from `cos` and signed `sin` (`[T, row]`) and each column's partner
    /// column (`partner[partner[i]] == i`; pass-through columns are their own
    /// partner, with `sin` 0).
    pub fn new(cos: Vec<f32>, sin: Vec<f32>, partner: &[usize]) -> Self {
        let row_len = partner.len();
        let sin_back = (0..sin.len())
            .map(|k| sin[k - k % row_len + partner[k % row_len]])
            .collect();
        let mut runs: Vec<(usize, usize, isize)> = Vec::new();
        for (i, &p) in partner.iter().enumerate() {
            let delta = p as isize - i as isize;
            match runs.last_mut() {
                Some((start, len, d)) if *d == delta && *start + *len == i => *len += 1,
                _ => runs.push((i, 1, delta)),
            }
        }
        Self {
            cos,
            sin,
            sin_back,
            runs,
            row_len,
        }
    }
}

/// Backward of [`rotate`]: the same rotation with the partner's table.
#[derive(Debug)]
struct RotateBackward;

impl Backward<Flex, 1> for RotateBackward {
    type State = Arc<RotationTables>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let tables = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            rotate_flex(&g, &tables, &tables.sin_back)
        });
    }
}

fn rotate_flex(x: &FlexTensor, tables: &RotationTables, sin: &[f32]) -> FlexTensor {
    let x = contiguous(x);
    let src: &[f32] = x.storage();
    let len = tables.row_len;
    let rows = rows_per_task(len);
    let y = filled(src.len(), |y| {
        y.par_chunks_mut(rows * len)
            .zip(src.par_chunks(rows * len))
            .enumerate()
            .for_each(|(i, (y, x))| {
                rotate_rows(x, &tables.cos, sin, &tables.runs, len, i * rows, y)
            })
    });
    with_shape(x.layout().shape().clone(), y)
}

/// Rotates `x` `[B·T, n·Dh]` by `tables`; `other` computes the same on other backends.
pub fn rotate<B: Backend>(
    x: Tensor<B, 2>,
    tables: &Arc<RotationTables>,
    other: impl FnOnce(Tensor<B, 2>) -> Tensor<B, 2>,
) -> Tensor<B, 2> {
    unary_op(
        x,
        RotateBackward,
        |x| {
            let y = rotate_flex(&x, tables, &tables.sin);
            (y, tables.clone())
        },
        other,
    )
}

// ---------------------------------------------------------------------------
// Permutations.
// ---------------------------------------------------------------------------

/// Contiguous copy of the strided view `(shape, strides)` (elements) of `src` from
/// `offset`. Dimensions that form one run are merged first; whole rows are copied
/// when the last dimension is unit-stride, and a transposition (the unit-stride source
/// dimension elsewhere) goes in cache-sized tiles, so a permutation costs about a
/// `memcpy` rather than an index computation per element.
fn copy_strided(src: &[f32], offset: usize, shape: &[usize], strides: &[isize]) -> Vec<f32> {
    // Merge dimensions i, i+1 whose strides make one run; drop size-1 dimensions.
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
    let total: usize = shape.iter().product();
    let nd = dims.len();
    if nd == 0 {
        return if total == 1 {
            vec![src[offset]]
        } else {
            Vec::new()
        };
    }
    /// Calls `body(source offset)` for every index of `dims` in row-major order.
    fn outer(dims: &[usize], st: &[isize], base: isize, body: &mut impl FnMut(isize)) {
        match dims.split_first() {
            None => body(base),
            Some((&n, rest)) => {
                for i in 0..n {
                    outer(rest, &st[1..], base + i as isize * st[0], body);
                }
            }
        }
    }
    let last = nd - 1;
    let mut out = Vec::with_capacity(total);
    if st[last] == 1 {
        let run = dims[last];
        outer(&dims[..last], &st[..last], offset as isize, &mut |b| {
            out.extend_from_slice(&src[b as usize..b as usize + run]);
        });
        return out;
    }
    let dst = out.spare_capacity_mut();
    match st[..last].iter().rposition(|&s| s == 1) {
        Some(u) => {
            // Transposition: tiles over dimension u (unit-stride in the source) and
            // the last one (contiguous in the output), the rest walked around them.
            let out_st: Vec<usize> = (0..nd).map(|d| dims[d + 1..].iter().product()).collect();
            let others: Vec<usize> = (0..last).filter(|&d| d != u).collect();
            let o_dims: Vec<usize> = others.iter().map(|&d| dims[d]).collect();
            let o_src: Vec<isize> = others.iter().map(|&d| st[d]).collect();
            let o_out: Vec<isize> = others.iter().map(|&d| out_st[d] as isize).collect();
            let (rows, cols, rs, cs, ro) = (dims[u], dims[last], st[u], st[last], out_st[u]);
            const TILE: usize = 32;
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
                        // SAFETY: the tiles covered every (other, u, last) index once,
                        // i.e. every element of the output.
                        unsafe { out.set_len(total) };
                        return out;
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
        None => {
            let (inner, inner_st) = (dims[last], st[last]);
            let mut k = 0;
            outer(&dims[..last], &st[..last], offset as isize, &mut |b| {
                for j in 0..inner {
                    dst[k].write(src[(b + j as isize * inner_st) as usize]);
                    k += 1;
                }
            });
            // SAFETY: the walk wrote elements 0..total in order.
            unsafe { out.set_len(total) };
            out
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    pub(super) type Grads = <Ad as burn::tensor::backend::AutodiffBackend>::Gradients;

    pub(super) fn close(a: Vec<f32>, b: Vec<f32>, tol: f32) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    pub(super) fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    /// `p`'s gradient under the fused graph (`g`) against the reference one (`want`).
    pub(super) fn same_grad<const D: usize>(p: &Tensor<Ad, D>, g: &Grads, want: &Grads, tol: f32) {
        close(
            values(p.grad(g).unwrap()),
            values(p.grad(want).unwrap()),
            tol,
        );
    }

    /// LayerNorm (`centre`) or RMSNorm without affine, from burn's operations.
    fn reference_normalize(x: Tensor<Ad, 3>, centre: bool) -> Tensor<Ad, 3> {
        let x = if centre { x.clone() - x.mean_dim(2) } else { x };
        x.clone() / (x.square().mean_dim(2) + 1e-5).sqrt()
    }

    /// Φ(z) in f64 by Simpson's rule on the density, for the test only.
    fn reference_cdf(z: f64) -> f64 {
        let (a, n) = (-12.0, 20_000);
        let h = (z - a) / n as f64;
        let f = |t: f64| (-t * t / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let mut s = f(a) + f(z);
        for i in 1..n {
            s += f(a + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0
    }

    #[test]
    fn exp_and_normal_distribution_are_accurate() {
        for i in -1740..=1760 {
            let x = i as f32 * 0.05;
            let want = (x as f64).exp();
            assert!(((exp(x) as f64 - want) / want).abs() < 3e-7, "exp({x})");
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        for i in -80..=80 {
            let x = i as f32 * 0.1;
            let z = x as f64;
            let (cdf, pdf) = normal_cdf_pdf(x);
            let want = reference_cdf(z);
            assert!((cdf as f64 - want).abs() < 2e-7, "Φ({z})");
            if (-3.0..0.0).contains(&z) {
                // No cancellation in the lower tail.
                assert!(((cdf as f64 - want) / want).abs() < 1e-4, "Φ({z})");
            }
            let density = (-z * z / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!((pdf as f64 - density).abs() < 1e-7);
        }
    }

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

    #[test]
    fn fused_norms_and_token_loss_match_burn_with_gradients() {
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

    #[test]
    fn fused_gelu_and_softmax_match_burn_with_gradients() {
        let dev = Default::default();
        let x =
            Tensor::<Ad, 2>::random([37, 70], Distribution::Normal(0.0, 3.0), &dev).require_grad();
        let w = Tensor::<Ad, 2>::random([37, 70], Distribution::Normal(0.0, 1.0), &dev);
        let (y_fused, y_ref) = (gelu(x.clone()), activation::gelu(x.clone()));
        let g_fused = (y_fused.clone() * w.clone()).sum().backward();
        let g_ref = (y_ref.clone() * w.clone()).sum().backward();
        close(values(y_fused), values(y_ref), 1e-6);
        same_grad(&x, &g_fused, &g_ref, 1e-6);

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
