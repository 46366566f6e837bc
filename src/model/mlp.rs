//! The feed-forward sublayer: plain (`down(act(up x))`) or gated
//! (`down(act(gate x) ⊙ up x)`).

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation;

use crate::model::config::{MlpKind, ModelConfig};
use crate::model::init::Init;
use crate::model::kernels;

/// Feed-forward network of one block.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `[d, d_ff]`.
    pub up: Linear<B>,
    /// `[d, d_ff]`, gated kinds only.
    pub gate: Option<Linear<B>>,
    /// `[d_ff, d]`.
    pub down: Linear<B>,
    /// Activation and gating.
    #[module(skip)]
    pub kind: MlpKind,
}

/// Applies the activation of `kind` (the gate's, for gated kinds).
pub fn activate<B: Backend, const D: usize>(kind: MlpKind, x: Tensor<B, D>) -> Tensor<B, D> {
    match kind {
        MlpKind::Gelu | MlpKind::Geglu => kernels::gelu(x),
        MlpKind::GeluTanh | MlpKind::GegluTanh => activation::gelu_approximate(x),
        MlpKind::Relu => activation::relu(x),
        MlpKind::Swiglu => activation::silu(x),
    }
}

impl<B: Backend> Mlp<B> {
    /// Fresh MLP; `out_std` for the projection back into the residual stream.
    pub fn init(cfg: &ModelConfig, std: f64, out_std: f64, init: &mut Init<'_, B>) -> Self {
        Self {
            up: init.linear(cfg.d_model, cfg.d_ff, cfg.mlp_bias, std),
            gate: cfg
                .mlp
                .is_gated()
                .then(|| init.linear(cfg.d_model, cfg.d_ff, cfg.mlp_bias, std)),
            down: init.linear(cfg.d_ff, cfg.d_model, cfg.mlp_bias, out_std),
            kind: cfg.mlp,
        }
    }

    /// `[B, T, d] → [B, T, d]`, computed on `[B·T, d]` so each projection (and its
    /// weight gradient) is one 2-D product rather than one per sequence.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, d] = x.dims();
        let x = x.reshape([b * t, d]);
        let hidden = match &self.gate {
            Some(gate) => {
                activate(self.kind, kernels::linear(x.clone(), gate)) * kernels::linear(x, &self.up)
            }
            None => activate(self.kind, kernels::linear(x, &self.up)),
        };
        let y = kernels::linear(hidden, &self.down);
        let width = y.dims()[1];
        y.reshape([b, t, width])
    }
}
