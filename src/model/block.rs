//! One transformer block: attention and MLP joined to the residual stream in one of
//! the layouts of [`BlockKind`].

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use burn::module::ParamId;
use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, TensorSnapshot, TensorSnapshotError};

use crate::error::{Error, Result};
use crate::model::attention::{Attention, AttentionContext};
use crate::model::config::{BlockKind, ModelConfig};
use crate::model::init::Init;
use crate::model::mlp::Mlp;
use crate::model::norm::Norm;
use crate::model::taps::LayerTaps;

/// A block. `mlp_norm` is absent only in the shared-norm parallel layout (Phi-2),
/// `attn_norm` only where the first block reads normalised embeddings (ModernBERT), the
/// post-norms only outside the sandwich layout (Gemma 2/3).
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Norm before attention (pre/parallel/sandwich), after the attention residual (post),
    /// or on the attention output (post-branch).
    pub attn_norm: Option<Norm<B>>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// Norm before the MLP (pre/parallel/sandwich), after the MLP residual (post), or on
    /// the MLP output (post-branch).
    pub mlp_norm: Option<Norm<B>>,
    /// Feed-forward network.
    pub mlp: Mlp<B>,
    /// Norm on the attention output before the residual add (sandwich).
    pub attn_post_norm: Option<Norm<B>>,
    /// Norm on the MLP output before the residual add (sandwich).
    pub mlp_post_norm: Option<Norm<B>>,
    dropout: Dropout,
    #[module(skip)]
    kind: BlockKind,
}

/// Blocks' weights kept in storage rather than in memory, handed out one block at a time:
/// an imported model analyzed layer by layer reads each block from its checkpoint when
/// the forward pass reaches it (converting bf16/f16/quantized values to f32 for that
/// block only) and drops it after, so a model larger than its f32 copy can be analyzed.
pub trait BlockWeights: Send + Sync + std::fmt::Debug {
    /// Every parameter of block `layer`: its path inside the block (`["attn", "q",
    /// "weight"]`) and its f32 values in the parameter's shape.
    fn read(&self, layer: usize) -> Result<Vec<(Vec<String>, TensorData)>>;
}

/// A model's [`BlockWeights`], shared by its clones (`valid()`, the autodiff wrapper).
#[derive(Clone, Debug)]
pub struct OnDemand(pub Arc<dyn BlockWeights>);

/// `norm(x)`, or `x` where the norm is absent.
fn apply<B: Backend>(norm: &Option<Norm<B>>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    match norm {
        Some(n) => n.forward(x),
        None => x,
    }
}

impl<B: Backend> Block<B> {
    /// Fresh block `layer`; `out_std` scales the two projections back into the residual
    /// stream.
    pub fn init(
        cfg: &ModelConfig,
        layer: usize,
        std: f64,
        out_std: f64,
        init: &mut Init<'_, B>,
    ) -> Self {
        let norm = |init: &mut Init<'_, B>| {
            Norm::with_bias(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.norm_bias, init)
        };
        let sandwich = cfg.block == BlockKind::Sandwich;
        Self {
            attn_norm: (layer > 0 || cfg.first_attn_norm).then(|| norm(init)),
            attn: Attention::init(cfg, std, out_std, init),
            mlp_norm: (cfg.block != BlockKind::ParallelShared).then(|| norm(init)),
            mlp: Mlp::init(cfg, std, out_std, init),
            attn_post_norm: sandwich.then(|| norm(init)),
            mlp_post_norm: sandwich.then(|| norm(init)),
            dropout: DropoutConfig::new(cfg.dropout).init(),
            kind: cfg.block,
        }
    }

    /// Block `layer` of a model for `cfg` on `device`, filled from `weights`: every
    /// parameter must be given, with its shape, and nothing else.
    pub fn read(
        cfg: &ModelConfig,
        layer: usize,
        weights: &dyn BlockWeights,
        device: &B::Device,
    ) -> Result<Self> {
        let mut block = Self::init(cfg, layer, 0.0, 0.0, &mut Init::skeleton(device));
        let snapshots = weights
            .read(layer)?
            .into_iter()
            .map(|(path, data)| {
                let (dtype, shape) = (data.dtype, data.shape.clone());
                // Handed over once, not cloned: burn reads a snapshot once when applying.
                let cell = RefCell::new(Some(data));
                let take = move || {
                    cell.borrow_mut().take().ok_or_else(|| {
                        TensorSnapshotError::DataError("block weight read twice".into())
                    })
                };
                TensorSnapshot::from_closure(
                    Rc::new(take),
                    dtype,
                    shape,
                    path,
                    Vec::new(),
                    ParamId::new(),
                )
            })
            .collect();
        let result = block.apply(snapshots, None, None, false);
        if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
            let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
            let errors: Vec<String> = result.errors.iter().map(ToString::to_string).collect();
            return Err(Error::Internal(format!(
                "block {layer} read from storage: errors {errors:?}, parameters left unfilled \
                 {missing:?}, weights unused {:?}",
                result.unused
            )));
        }
        Ok(block)
    }

    /// `[B, T, d] → [B, T, d]`; the attention fills `taps` with what it asks for.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        ctx: &AttentionContext<B>,
        score_bias: Option<Tensor<B, 4>>,
        taps: &mut LayerTaps<B>,
    ) -> Tensor<B, 3> {
        let attn_norm = |h: Tensor<B, 3>| apply(&self.attn_norm, h);
        let mlp_norm = |h: Tensor<B, 3>| apply(&self.mlp_norm, h);
        match self.kind {
            BlockKind::Pre | BlockKind::Sandwich => {
                let a = self
                    .attn
                    .forward(attn_norm(x.clone()), ctx, score_bias, taps);
                let h = x + self.dropout.forward(apply(&self.attn_post_norm, a));
                let m = self.mlp.forward(mlp_norm(h.clone()));
                let m = apply(&self.mlp_post_norm, m);
                h + self.dropout.forward(m)
            }
            BlockKind::PostBranch => {
                let a = self.attn.forward(x.clone(), ctx, score_bias, taps);
                let h = x + self.dropout.forward(attn_norm(a));
                let m = mlp_norm(self.mlp.forward(h.clone()));
                h + self.dropout.forward(m)
            }
            BlockKind::Post => {
                let a = self.attn.forward(x.clone(), ctx, score_bias, taps);
                let h = attn_norm(x + self.dropout.forward(a));
                let m = self.mlp.forward(h.clone());
                mlp_norm(h + self.dropout.forward(m))
            }
            BlockKind::Parallel => {
                let a = self
                    .attn
                    .forward(attn_norm(x.clone()), ctx, score_bias, taps);
                let m = self.mlp.forward(mlp_norm(x.clone()));
                x + self.dropout.forward(a) + self.dropout.forward(m)
            }
            BlockKind::ParallelShared => {
                let h = attn_norm(x.clone());
                let a = self.attn.forward(h.clone(), ctx, score_bias, taps);
                let m = self.mlp.forward(h);
                x + self.dropout.forward(a) + self.dropout.forward(m)
            }
        }
    }
}
