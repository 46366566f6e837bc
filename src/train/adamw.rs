//! AdamW whose update runs as one fused pass per parameter on the CPU backend.
//!
//! Why: burn's AdamW is a dozen tensor operations per parameter; fused it is one
//! pass (see `model::kernels::adamw`). The state is burn's own [`AdamWState`], so
//! checkpoints of either read the same; on other backends (CUDA) burn's AdamW runs.

use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, SimpleOptimizer};
use burn::prelude::*;

use crate::model::kernels::{self, AdamWStep};

/// AdamW (decoupled weight decay, bias-corrected moments, no AMSGrad).
#[derive(Clone)]
pub struct FusedAdamW {
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    /// burn's AdamW with the same constants, for backends without the kernel.
    reference: AdamW,
}

impl std::fmt::Debug for FusedAdamW {
    /// The constants (burn's `AdamW`, kept for other backends, has no `Debug`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedAdamW")
            .field("beta1", &self.beta1)
            .field("beta2", &self.beta2)
            .field("eps", &self.eps)
            .field("weight_decay", &self.weight_decay)
            .finish_non_exhaustive()
    }
}

impl FusedAdamW {
    /// AdamW with these constants.
    pub fn new(beta1: f32, beta2: f32, eps: f32, weight_decay: f32) -> Self {
        let reference = AdamWConfig::new()
            .with_beta_1(beta1)
            .with_beta_2(beta2)
            .with_epsilon(eps)
            .with_weight_decay(weight_decay)
            .build();
        Self {
            beta1,
            beta2,
            eps,
            weight_decay,
            reference,
        }
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        if !kernels::adamw_fuses(&tensor) {
            return SimpleOptimizer::<B>::step(&self.reference, lr, tensor, grad, state);
        }
        let time = state.as_ref().map_or(1, |s| s.momentum.time + 1);
        let moments = state.map(|s| (s.momentum.moment_1, s.momentum.moment_2));
        let step = AdamWStep {
            lr: lr as f32,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            time: time as i32,
        };
        let (tensor, moment_1, moment_2) = kernels::adamw(tensor, grad, moments, &step);
        let momentum = AdaptiveMomentumState {
            time,
            moment_1,
            moment_2,
            max_moment_2: None,
        };
        (tensor, Some(AdamWState { momentum }))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, Optimizer};
    use burn::tensor::Distribution;

    type Ad = Autodiff<Flex>;

    fn loss(layer: &Linear<Ad>, x: &Tensor<Ad, 2>) -> Tensor<Ad, 1> {
        layer.forward(x.clone()).powi_scalar(2).sum()
    }

    /// Five steps of the fused optimiser and of burn's AdamW from the same start
    /// give the same weights (bias corrections, decay and moments included).
    #[test]
    fn fused_adamw_follows_burns_adamw() {
        let dev = Default::default();
        let x = Tensor::<Ad, 2>::random([8, 13], Distribution::Normal(0.0, 1.0), &dev);
        let start = LinearConfig::new(13, 7).init::<Ad>(&dev);
        // Parameters initialise lazily: read both before cloning, so both copies
        // start from the same values.
        let w0: Vec<f32> = start.weight.val().into_data().to_vec().unwrap();
        let _ = start.bias.as_ref().map(|b| b.val());
        let (mut a, mut b) = (start.clone(), start);
        let mut fused =
            burn::optim::adaptor::OptimizerAdaptor::from(FusedAdamW::new(0.9, 0.95, 1e-8, 0.1));
        let mut reference = AdamWConfig::new()
            .with_beta_1(0.9)
            .with_beta_2(0.95)
            .with_epsilon(1e-8)
            .with_weight_decay(0.1)
            .init::<Ad, Linear<Ad>>();
        for step in 0..5 {
            let lr = 0.01 * (step + 1) as f64;
            let ga = GradientsParams::from_grads(loss(&a, &x).backward(), &a);
            a = fused.step(lr, a, ga);
            let gb = GradientsParams::from_grads(loss(&b, &x).backward(), &b);
            b = reference.step(lr, b, gb);
        }
        let (wa, wb): (Vec<f32>, Vec<f32>) = (
            a.weight.val().into_data().to_vec().unwrap(),
            b.weight.val().into_data().to_vec().unwrap(),
        );
        let gap = |u: &[f32], v: &[f32]| {
            u.iter()
                .zip(v)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max)
        };
        assert!(
            gap(&wa, &wb) < 1e-6,
            "fused and reference weights differ by {}",
            gap(&wa, &wb)
        );
        // The five updates moved the weights (this compares something).
        assert!(gap(&wa, &w0) > 1e-2);
    }
}
