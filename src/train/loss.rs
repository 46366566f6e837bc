//! The language-model loss shared by training, evaluation, ablation and Fisher
//! information: weighted mean token negative log-likelihood.

use burn::prelude::*;

use crate::model::kernels;
use crate::train::data::HostBatch;

/// Device tensors of a [`HostBatch`].
#[derive(Debug)]
pub struct DeviceBatch<B: Backend> {
    /// `[B, T]` input ids.
    pub inputs: Tensor<B, 2, Int>,
    /// `[B, T]` target ids.
    pub targets: Tensor<B, 2, Int>,
    /// `[B, T]` loss weights.
    pub weights: Tensor<B, 2>,
}

impl<B: Backend> DeviceBatch<B> {
    /// Uploads a host batch.
    pub fn new(h: &HostBatch, device: &B::Device) -> Self {
        let shape = [h.batch, h.seq_len];
        let ints = |v: &[u32]| {
            Tensor::from_data(
                TensorData::new(v.iter().map(|&x| x as i64).collect::<Vec<_>>(), shape),
                device,
            )
        };
        Self {
            inputs: ints(&h.inputs),
            targets: ints(&h.targets),
            weights: Tensor::from_data(TensorData::new(h.weights.clone(), shape), device),
        }
    }
}

/// Per-token negative log-likelihood `[B, T]` of `targets` under `logits` `[B, T, V]`
/// (`−log_softmax(logits)[target]`, fused on the CPU backend: see
/// [`kernels::token_nll`]).
pub fn token_nll<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    kernels::token_nll(logits, targets)
}

/// Σ w·nll / Σ w: next-token loss for decoders, masked-token loss for encoders.
pub fn lm_loss<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    weights: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let nll = token_nll(logits, targets);
    (nll * weights.clone()).sum() / weights.sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn loss_by_hand() {
        let dev = Default::default();
        // Two positions, vocabulary 2. Logits (0, 0) → nll ln 2; (ln 3, 0) with target 0 → ln(4/3).
        let logits = Tensor::<Flex, 3>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 3f32.ln(), 0.0], [1, 2, 2]),
            &dev,
        );
        let targets =
            Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![1i64, 0], [1, 2]), &dev);
        let w = Tensor::<Flex, 2>::from_data(TensorData::new(vec![1.0f32, 1.0], [1, 2]), &dev);
        let l: f32 = lm_loss(logits.clone(), targets.clone(), w).into_scalar();
        let expected = (2f32.ln() + (4.0f32 / 3.0).ln()) / 2.0;
        assert!((l - expected).abs() < 1e-6);
        let w = Tensor::<Flex, 2>::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 2]), &dev);
        let l: f32 = lm_loss(logits, targets, w).into_scalar();
        assert!((l - (4.0f32 / 3.0).ln()).abs() < 1e-6);
    }
}
