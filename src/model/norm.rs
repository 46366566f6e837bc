//! LayerNorm and RMSNorm behind one module with the same parameter names
//! (`weight`, `bias`), so every family maps its norms the same way.
//!
//! Written here rather than using burn's `LayerNorm`/`RmsNorm` so that one type
//! covers both and the arithmetic matches Hugging Face's (biased variance, epsilon
//! inside the square root). Gemma's `(1 + w)` scaling is folded into `weight` at
//! import.

use burn::module::Param;
use burn::prelude::*;

use crate::model::config::NormKind;
use crate::model::init::Init;
use crate::model::kernels;

/// A normalisation over the last dimension.
#[derive(Module, Debug)]
pub struct Norm<B: Backend> {
    /// Scale `[d]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift `[d]` (LayerNorm only).
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Which normalisation.
    #[module(skip)]
    pub kind: NormKind,
    /// Added to the variance (or mean square) before the square root.
    #[module(skip)]
    pub eps: f64,
}

impl<B: Backend> Norm<B> {
    /// Identity-initialised norm of width `d` (a LayerNorm with a bias).
    pub fn new(kind: NormKind, d: usize, eps: f64, init: &mut Init<'_, B>) -> Self {
        Self::with_bias(kind, d, eps, true, init)
    }

    /// Identity-initialised norm of width `d`; a LayerNorm has a bias only if `bias`
    /// (ModernBERT's are bias-free).
    pub fn with_bias(
        kind: NormKind,
        d: usize,
        eps: f64,
        bias: bool,
        init: &mut Init<'_, B>,
    ) -> Self {
        Self {
            weight: init.constant([d], 1.0),
            bias: (bias && kind == NormKind::Layer).then(|| init.constant([d], 0.0)),
            kind,
            eps,
        }
    }

    /// Normalises `x` (`[B, T, d]`, `[B·T, d]`, …) over its last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        kernels::norm(
            x,
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
            self.kind == NormKind::Layer,
            self.eps,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn layer_and_rms_norm_by_hand() {
        let dev = Default::default();
        let x = Tensor::<Flex, 3>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 6.0], [1, 1, 4]),
            &dev,
        );
        // mean 3, deviations (-2,-1,0,3), var 14/4 = 3.5.
        let init = &mut Init::seeded(0, &dev);
        let ln = Norm::<Flex>::new(NormKind::Layer, 4, 1e-12, init).forward(x.clone());
        let got = ln.into_data().to_vec::<f32>().unwrap();
        let s = 3.5f32.sqrt();
        for (g, e) in got.iter().zip([-2.0 / s, -1.0 / s, 0.0, 3.0 / s]) {
            assert!((g - e).abs() < 1e-5);
        }
        // mean square (1 + 4 + 9 + 36)/4 = 12.5.
        let rms = Norm::<Flex>::new(NormKind::Rms, 4, 1e-12, init).forward(x);
        let got = rms.into_data().to_vec::<f32>().unwrap();
        let r = 12.5f32.sqrt();
        for (g, e) in got.iter().zip([1.0 / r, 2.0 / r, 3.0 / r, 6.0 / r]) {
            assert!((g - e).abs() < 1e-5);
        }
    }
}
