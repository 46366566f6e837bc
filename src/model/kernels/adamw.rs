//! One AdamW update per parameter tensor in one pass over memory.
//!
//! Why: burn's AdamW builds the update from about a dozen tensor operations per
//! parameter (moment updates, bias corrections, square root, division, decay), each
//! a pass into a fresh buffer; on two cores that was twice PyTorch's fused step.
//! Here the moments are updated in place and the parameter written once.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::DType;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::buffers::{contiguous, in_place, owned, with_shape, CHUNK};
use super::dispatch::{cast, plain};
use super::simd::multiversion;

/// The constants of one AdamW step (Loshchilov & Hutter): decoupled decay, bias
/// corrections for step `time` (1 at the first update).
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay β₁.
    pub beta1: f32,
    /// Second-moment decay β₂.
    pub beta2: f32,
    /// Added to √v̂.
    pub eps: f32,
    /// Decoupled weight decay λ (the parameter shrinks by `lr · λ`).
    pub weight_decay: f32,
    /// Number of this update, from 1.
    pub time: i32,
}

multiversion! {
    /// The update over one slice of the parameter, its moments and its gradient.
    fn adamw_slice(
        p: &mut [f32],
        m: &mut [f32],
        v: &mut [f32],
        g: &[f32],
        s: &AdamWStep,
        c1: f32,
        c2: f32,
        decay: f32,
    ) {
        for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
            *m = s.beta1 * *m + (1.0 - s.beta1) * g;
            *v = s.beta2 * *v + (1.0 - s.beta2) * (g * g);
            let step = (*m * c1) / ((*v * c2).sqrt() + s.eps);
            *p = *p * decay - s.lr * step;
        }
    }
}

/// Whether [`adamw`] runs fused for `x` (an f32 tensor on the CPU backend).
pub fn adamw_fuses<B: Backend, const D: usize>(x: &Tensor<B, D>) -> bool {
    x.dtype() == DType::F32 && std::any::TypeId::of::<B>() == std::any::TypeId::of::<Flex>()
}

/// `(parameter, m, v)` after one AdamW step from `moments` (zero when `None`, the
/// first step). Call only where [`adamw_fuses`] holds.
pub fn adamw<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
    s: &AdamWStep,
) -> (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>) {
    let flex = |t: Tensor<B, D>| -> FlexTensor {
        cast::<_, Tensor<Flex, D>>(t)
            .unwrap_or_else(|_| panic!("adamw: the caller checks adamw_fuses"))
            .into_primitive()
            .tensor()
    };
    let shape = param.shape();
    let mut p = owned(flex(param));
    let g = contiguous(&flex(grad));
    let (mut m, mut v) = match moments {
        Some((m, v)) => (owned(flex(m)), owned(flex(v))),
        None => {
            let zeros = || with_shape(shape.clone(), vec![0f32; shape.num_elements()]);
            (zeros(), zeros())
        }
    };
    let c1 = 1.0 / (1.0 - s.beta1.powi(s.time));
    let c2 = 1.0 / (1.0 - s.beta2.powi(s.time));
    let decay = 1.0 - s.lr * s.weight_decay;
    in_place(&mut p)
        .par_chunks_mut(CHUNK)
        .zip(in_place(&mut m).par_chunks_mut(CHUNK))
        .zip(in_place(&mut v).par_chunks_mut(CHUNK))
        .zip(g.storage::<f32>().par_chunks(CHUNK))
        .for_each(|(((p, m), v), g)| adamw_slice(p, m, v, g, s, c1, c2, decay));
    (plain(p), plain(m), plain(v))
}
