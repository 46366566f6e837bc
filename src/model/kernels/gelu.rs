//! Exact GELU, `x Φ(x)`, with its backward pass.
//!
//! Why: flex evaluates `erf` one element at a time through libm on one thread, and
//! burn's backward evaluates it again. Here `erf` is Abramowitz & Stegun 7.1.26
//! (absolute error below 1.5e-7), the approximation PyTorch's vectorised CPU kernels
//! use, as a branch-free polynomial the compiler vectorises; the lower tail is taken
//! from the complementary form, avoiding the cancellation in `1 + erf`. Under
//! autodiff the slope is computed in the same pass and kept in place of the input,
//! so the backward pass is one multiplication.

use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops};
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::activation;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::buffers::{contiguous, filled, in_place, owned, with_shape, CHUNK};
use super::dispatch::{plain, record, split, tracked, Cpu};
use super::simd::{exp, multiversion};

/// Exact GELU, `x Φ(x)`; under autodiff its slope is computed alongside and kept in
/// place of the input.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let forward = |x: &FlexTensor, slope: bool| {
        let x = contiguous(x);
        let src: &[f32] = x.storage();
        let shape = x.layout().shape().clone();
        let mut s = Vec::new();
        let fill = |y: &mut [MaybeUninit<f32>]| {
            if slope {
                // SAFETY: the chunks of `s` pair one to one with equal chunks of `y`
                // and `src`, and `gelu_slope_rows` writes every element of each chunk
                // of `s` (and of `y`).
                s = unsafe {
                    filled(src.len(), |s| {
                        y.par_chunks_mut(CHUNK)
                            .zip(s.par_chunks_mut(CHUNK))
                            .zip(src.par_chunks(CHUNK))
                            .for_each(|((y, s), x)| gelu_slope_rows(x, y, s))
                    })
                };
            } else {
                y.par_chunks_mut(CHUNK)
                    .zip(src.par_chunks(CHUNK))
                    .for_each(|(y, x)| gelu_rows(x, y))
            }
        };
        // SAFETY: in both branches of `fill` the chunks of `y` pair one to one with
        // equal chunks of `src`, and each row kernel writes every element of its chunk
        // of `y`.
        let y = unsafe { filled(src.len(), fill) };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_support::{close, same_grad, values, Ad};
    use burn::tensor::Distribution;

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
    fn normal_distribution_is_accurate() {
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
    fn fused_gelu_matches_burn_with_gradients() {
        let dev = Default::default();
        let x =
            Tensor::<Ad, 2>::random([37, 70], Distribution::Normal(0.0, 3.0), &dev).require_grad();
        let w = Tensor::<Ad, 2>::random([37, 70], Distribution::Normal(0.0, 1.0), &dev);
        let (y_fused, y_ref) = (gelu(x.clone()), activation::gelu(x.clone()));
        let g_fused = (y_fused.clone() * w.clone()).sum().backward();
        let g_ref = (y_ref.clone() * w.clone()).sum().backward();
        close(values(y_fused), values(y_ref), 1e-6);
        same_grad(&x, &g_fused, &g_ref, 1e-6);
    }
}
