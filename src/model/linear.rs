//! Construction of the linear layers every part of the model uses: weights
//! N(0, std²), biases zero (GPT-2's scheme), layout `[d_in, d_out]` as burn's `Linear`.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::Distribution;

/// A fresh `Linear` `d_in → d_out`.
pub fn linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    bias: bool,
    std: f64,
    device: &B::Device,
) -> Linear<B> {
    Linear {
        weight: Param::from_tensor(Tensor::random(
            [d_in, d_out],
            Distribution::Normal(0.0, std),
            device,
        )),
        bias: bias.then(|| Param::from_tensor(Tensor::zeros([d_out], device))),
    }
}
