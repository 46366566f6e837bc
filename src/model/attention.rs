//! Multi-head self-attention with an explicit softmax, so the scores, probabilities,
//! values and per-head outputs can be handed out ([`LayerTaps`]). burn's
//! `MultiHeadAttention` returns weights only after dropout and has no place for rotary
//! embeddings or an additive (ALiBi) bias, hence this module.

use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation;

use crate::model::config::{ModelConfig, NormKind, QkNorm, SoftmaxKind};
use crate::model::init::Init;
use crate::model::kernels;
use crate::model::norm::Norm;
use crate::model::position::{Rotary, RowRotation};
use crate::model::taps::LayerTaps;

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
    /// RMSNorm of the queries (per head `[Dh]`, or whole `[H·Dh]`), before the rotation.
    pub q_norm: Option<Norm<B>>,
    /// RMSNorm of the keys (per head `[Dh]`, or whole `[Hkv·Dh]`), before the rotation.
    pub k_norm: Option<Norm<B>>,
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
    #[module(skip)]
    softcap: Option<f64>,
}

/// What every layer's attention shares within one forward pass, built once: the
/// rotation in the projections' layout, with the score scale folded into q's tables.
#[derive(Clone, Debug)]
pub struct AttentionContext<B: Backend> {
    /// Rotation of q (score scale folded in) and of k.
    rotation: Option<(RowRotation<B>, RowRotation<B>)>,
}

impl<B: Backend> AttentionContext<B> {
    /// The context for sequences of the rotary tables' length.
    pub fn new(cfg: &ModelConfig, rotary: Option<&Rotary<B>>, device: &B::Device) -> Self {
        let (h, kv, dh) = (cfg.n_heads, cfg.kv_heads(), cfg.head_dim());
        let scale = cfg.attention_scale();
        Self {
            rotation: rotary.map(|r| (r.rows(h, dh, scale, device), r.rows(kv, dh, 1.0, device))),
        }
    }
}

/// `scores + bias` (bias broadcast to the scores), reshaped so that the bias is one
/// row shared by every outer index: the CPU backend has a SIMD path for that, while a
/// general broadcast walks the elements one by one.
fn add_bias<B: Backend>(scores: Tensor<B, 4>, bias: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, t, s] = scores.dims();
    match bias.dims() {
        [1, 1, bt, bs] if (bt, bs) == (t, s) => {
            (scores.reshape([b * h, t * s]) + bias.reshape([1, t * s])).reshape([b, h, t, s])
        }
        [1, bh, bt, bs] if (bh, bt, bs) == (h, t, s) => {
            (scores.reshape([b, h * t * s]) + bias.reshape([1, h * t * s])).reshape([b, h, t, s])
        }
        _ => scores + bias,
    }
}

impl<B: Backend> Attention<B> {
    /// Fresh attention; `out_std` for the output projection.
    pub fn init(cfg: &ModelConfig, std: f64, out_std: f64, init: &mut Init<'_, B>) -> Self {
        let (h, kv, dh) = (cfg.n_heads, cfg.kv_heads(), cfg.head_dim());
        let qk_norm = |heads: usize, init: &mut Init<'_, B>| {
            let width = match cfg.qk_norm {
                QkNorm::None => return None,
                QkNorm::PerHead => dh,
                QkNorm::Full => heads * dh,
            };
            Some(Norm::new(NormKind::Rms, width, cfg.norm_eps, init))
        };
        Self {
            q_norm: qk_norm(h, init),
            k_norm: qk_norm(kv, init),
            q: init.linear(cfg.d_model, h * dh, cfg.qkv_bias, std),
            k: init.linear(cfg.d_model, kv * dh, cfg.qkv_bias, std),
            v: init.linear(cfg.d_model, kv * dh, cfg.qkv_bias, std),
            o: init.linear(h * dh, cfg.d_model, cfg.out_bias, out_std),
            dropout: DropoutConfig::new(cfg.dropout).init(),
            n_heads: h,
            n_kv_heads: kv,
            head_dim: dh,
            scale: cfg.attention_scale(),
            softmax: cfg.softmax,
            softcap: cfg.attn_softcap,
        }
    }

    /// `x` `[B, T, d]` → `[B, T, d]`, filling `taps` with what it asks for.
    /// `score_bias` (broadcast to `[B, H, T, T]`) carries the causal and padding
    /// masks as −∞ and any ALiBi or ablation bias.
    ///
    /// Projections run on `[B·T, d]` (one 2-D product each, so the weight gradient is
    /// one product too, not one per sequence summed). Grouped-query heads are
    /// broadcast in the products (`[B, Hkv, G, …]` against `[B, Hkv, 1, …]`) rather
    /// than copied.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        ctx: &AttentionContext<B>,
        score_bias: Option<Tensor<B, 4>>,
        taps: &mut LayerTaps<B>,
    ) -> Tensor<B, 3> {
        let want = taps.wants();
        let [b, t, d] = x.dims();
        let (h, kv, dh) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let g = h / kv;
        let x = x.reshape([b * t, d]);
        let mut q = kernels::linear(x.clone(), &self.q);
        let mut k = kernels::linear(x.clone(), &self.k);
        let v = kernels::linear(x, &self.v);
        // Norms over the last axis: a head's features (reshaped to rows) or the projection.
        let normed = |y: Tensor<B, 2>, norm: &Option<Norm<B>>| match norm {
            Some(n) => {
                let [rows, width] = y.dims();
                let w = n.weight.val().dims()[0];
                n.forward(y.reshape([rows * width / w, w]))
                    .reshape([rows, width])
            }
            None => y,
        };
        q = normed(q, &self.q_norm);
        k = normed(k, &self.k_norm);
        // The score scale: folded into q's rotation tables, else into the product.
        let scale = match &ctx.rotation {
            Some((rq, rk)) => {
                q = rq.apply(q);
                k = rk.apply(k);
                1.0
            }
            None => self.scale,
        };
        // Heads moved into the per-head layouts the products read, keys transposed.
        let q = kernels::permute(q.reshape([b, t, kv, g, dh]), [0, 2, 3, 1, 4]);
        let kt =
            kernels::permute(k.reshape([b, t, kv, dh]), [0, 2, 3, 1]).reshape([b, kv, 1, dh, t]);
        let v =
            kernels::permute(v.reshape([b, t, kv, dh]), [0, 2, 1, 3]).reshape([b, kv, 1, t, dh]);
        if want.values {
            taps.values = Some(v.clone().reshape([b, kv, t, dh]));
        }
        let mut scores = kernels::matmul(q, kt, scale).reshape([b, h, t, t]);
        if let Some(cap) = self.softcap {
            scores = (scores / cap).tanh() * cap;
        }
        if want.scores {
            taps.scores = Some(scores.clone());
        }
        let probs = match self.softmax {
            SoftmaxKind::Standard => kernels::softmax(scores, score_bias),
            SoftmaxKind::Quiet => {
                let scores = match score_bias {
                    Some(bias) => add_bias(scores, bias),
                    None => scores,
                };
                activation::quiet_softmax(scores, 3)
            }
        };
        if want.probs {
            taps.probs = Some(probs.clone());
        }
        let probs = self.dropout.forward(probs).reshape([b, kv, g, t, t]);
        let out = kernels::matmul(probs, v, 1.0).reshape([b, h, t, dh]);
        if want.head_outputs {
            taps.head_outputs = Some(out.clone());
        }
        let out = kernels::permute(out, [0, 2, 1, 3]).reshape([b * t, h * dh]);
        let y = kernels::linear(out, &self.o);
        let width = y.dims()[1];
        y.reshape([b, t, width])
    }
}
