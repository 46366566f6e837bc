//! Multi-head self-attention with an explicit softmax, so the probabilities can be
//! handed out. burn's `MultiHeadAttention` returns weights only after dropout and has
//! no place for rotary embeddings or an additive (ALiBi) bias, hence this module.

use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation;

use crate::model::config::{ModelConfig, SoftmaxKind};
use crate::model::init::Init;
use crate::model::position::Rotary;

/// Self-attention with grouped-query support (`n_kv_heads` dividing `n_heads`;
/// query head h reads key/value head h / (n_heads / n_kv_heads), as Hugging Face's
/// `repeat_kv`).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `[d, H·Dh]`.
    pub q: Linear<B>,
    /// `[d, Hkv·Dh]`.
    pub k: Linear<B>,
    /// `[d, Hkv·Dh]`.
    pub v: Linear<B>,
    /// `[H·Dh, d]`.
    pub o: Linear<B>,
    dropout: Dropout,
    #[module(skip)]
    n_heads: usize,
    #[module(skip)]
    n_kv_heads: usize,
    #[module(skip)]
    head_dim: usize,
    #[module(skip)]
    scale: f64,
    #[module(skip)]
    softmax: SoftmaxKind,
}

impl<B: Backend> Attention<B> {
    /// Fresh attention; `out_std` for the output projection.
    pub fn init(cfg: &ModelConfig, std: f64, out_std: f64, init: &mut Init<B>) -> Self {
        let (h, kv, dh) = (cfg.n_heads, cfg.kv_heads(), cfg.head_dim());
        Self {
            q: init.linear(cfg.d_model, h * dh, cfg.qkv_bias, std),
            k: init.linear(cfg.d_model, kv * dh, cfg.qkv_bias, std),
            v: init.linear(cfg.d_model, kv * dh, cfg.qkv_bias, std),
            o: init.linear(h * dh, cfg.d_model, cfg.out_bias, out_std),
            dropout: DropoutConfig::new(cfg.dropout).init(),
            n_heads: h,
            n_kv_heads: kv,
            head_dim: dh,
            scale: cfg.attn_scale.unwrap_or(1.0 / (dh as f64).sqrt()),
            softmax: cfg.softmax,
        }
    }

    fn heads(&self, x: Tensor<B, 3>, n: usize) -> Tensor<B, 4> {
        let [b, t, _] = x.dims();
        x.reshape([b, t, n, self.head_dim]).swap_dims(1, 2)
    }

    fn repeat_kv(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let groups = self.n_heads / self.n_kv_heads;
        if groups == 1 {
            return x;
        }
        let [b, kv, t, dh] = x.dims();
        x.unsqueeze_dim::<5>(2)
            .expand([b, kv, groups, t, dh])
            .reshape([b, kv * groups, t, dh])
    }

    /// `x` `[B, T, d]` → (`[B, T, d]`, probabilities `[B, H, T, T]` if `keep_probs`).
    /// `score_bias` (broadcast to `[B, H, T, T]`) carries the causal and padding
    /// masks as −∞ and any ALiBi or ablation bias.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rotary: Option<&Rotary<B>>,
        score_bias: Option<Tensor<B, 4>>,
        keep_probs: bool,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 4>>) {
        let [b, t, _] = x.dims();
        let mut q = self.heads(self.q.forward(x.clone()), self.n_heads);
        let mut k = self.heads(self.k.forward(x.clone()), self.n_kv_heads);
        let v = self.heads(self.v.forward(x), self.n_kv_heads);
        if let Some(rot) = rotary {
            q = rot.apply(q);
            k = rot.apply(k);
        }
        let k = self.repeat_kv(k);
        let v = self.repeat_kv(v);
        let mut scores = q.matmul(k.swap_dims(2, 3)) * self.scale;
        if let Some(bias) = score_bias {
            scores = scores + bias;
        }
        let probs = match self.softmax {
            SoftmaxKind::Standard => activation::softmax(scores, 3),
            SoftmaxKind::Quiet => activation::quiet_softmax(scores, 3),
        };
        let kept = keep_probs.then(|| probs.clone());
        let out = self
            .dropout
            .forward(probs)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, t, self.n_heads * self.head_dim]);
        (self.o.forward(out), kept)
    }
}
