//! One transformer block: attention and MLP joined to the residual stream in one of
//! the four layouts of [`BlockKind`].

use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;

use crate::model::attention::{Attention, AttentionContext};
use crate::model::config::{BlockKind, ModelConfig};
use crate::model::init::Init;
use crate::model::mlp::Mlp;
use crate::model::norm::Norm;

/// A block. `mlp_norm` is absent only in the shared-norm parallel layout (Phi-2).
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Norm before attention (pre/parallel) or after the attention residual (post).
    pub attn_norm: Norm<B>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// Norm before the MLP (pre/parallel) or after the MLP residual (post).
    pub mlp_norm: Option<Norm<B>>,
    /// Feed-forward network.
    pub mlp: Mlp<B>,
    dropout: Dropout,
    #[module(skip)]
    kind: BlockKind,
}

impl<B: Backend> Block<B> {
    /// Fresh block; `out_std` scales the two projections back into the residual stream.
    pub fn init(cfg: &ModelConfig, std: f64, out_std: f64, init: &mut Init<B>) -> Self {
        let norm = |init: &mut Init<B>| Norm::new(cfg.norm, cfg.d_model, cfg.norm_eps, init);
        Self {
            attn_norm: norm(init),
            attn: Attention::init(cfg, std, out_std, init),
            mlp_norm: (cfg.block != BlockKind::ParallelShared).then(|| norm(init)),
            mlp: Mlp::init(cfg, std, out_std, init),
            dropout: DropoutConfig::new(cfg.dropout).init(),
            kind: cfg.block,
        }
    }

    /// `[B, T, d] → [B, T, d]`, plus the attention probabilities if `keep_probs`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        ctx: &AttentionContext<B>,
        score_bias: Option<Tensor<B, 4>>,
        keep_probs: bool,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 4>>) {
        let mlp_norm = |h: Tensor<B, 3>| match &self.mlp_norm {
            Some(n) => n.forward(h),
            None => h,
        };
        match self.kind {
            BlockKind::Pre => {
                let (a, probs) = self.attn.forward(
                    self.attn_norm.forward(x.clone()),
                    ctx,
                    score_bias,
                    keep_probs,
                );
                let h = x + self.dropout.forward(a);
                let m = self.mlp.forward(mlp_norm(h.clone()));
                (h + self.dropout.forward(m), probs)
            }
            BlockKind::Post => {
                let (a, probs) = self.attn.forward(x.clone(), ctx, score_bias, keep_probs);
                let h = self.attn_norm.forward(x + self.dropout.forward(a));
                let m = self.mlp.forward(h.clone());
                (mlp_norm(h + self.dropout.forward(m)), probs)
            }
            BlockKind::Parallel => {
                let (a, probs) = self.attn.forward(
                    self.attn_norm.forward(x.clone()),
                    ctx,
                    score_bias,
                    keep_probs,
                );
                let m = self.mlp.forward(mlp_norm(x.clone()));
                (x + self.dropout.forward(a) + self.dropout.forward(m), probs)
            }
            BlockKind::ParallelShared => {
                let h = self.attn_norm.forward(x.clone());
                let (a, probs) = self.attn.forward(h.clone(), ctx, score_bias, keep_probs);
                let m = self.mlp.forward(h);
                (x + self.dropout.forward(a) + self.dropout.forward(m), probs)
            }
        }
    }
}
