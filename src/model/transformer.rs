//! The transformer: embeddings, blocks, head — and the forward pass that hands out
//! the [`Taps`] it is asked for (attention scores, maps, values, per-head outputs, the
//! residual stream).

use std::borrow::Cow;

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Embedding, Linear};
use burn::prelude::*;

use crate::error::{Error, Result};
use crate::model::attention::AttentionContext;
use crate::model::block::{Block, OnDemand};
use crate::model::config::{LayerSpec, ModelConfig};
use crate::model::init::Init;
use crate::model::kernels;
use crate::model::mlp::activate;
use crate::model::norm::Norm;
use crate::model::position::{layer_context, PositionEmbedding};
use crate::model::taps::{Captured, LayerTaps, Taps};

/// Standard deviation of the from-scratch initialisation (GPT-2's 0.02).
pub const INIT_STD: f64 = 0.02;

/// The masked-LM head transform of BERT/RoBERTa: `norm(act(x W + b))`.
#[derive(Module, Debug)]
pub struct HeadTransform<B: Backend> {
    /// `[d, d]` with bias.
    pub dense: Linear<B>,
    /// LayerNorm.
    pub norm: Norm<B>,
}

/// The one model definition, for training and for every imported family.
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    /// Token embeddings `[V, d]`.
    pub embed: Embedding<B>,
    /// Position encoding parameters (learned table only).
    pub position: PositionEmbedding<B>,
    /// Segment embeddings (BERT family); row 0 is added to every token.
    pub token_type: Option<Embedding<B>>,
    /// Norm applied to the summed embeddings (BERT family).
    pub embed_norm: Option<Norm<B>>,
    /// The blocks (empty when they are read [`on_demand`](Self::on_demand)).
    pub blocks: Vec<Block<B>>,
    /// Norm after the last block (pre-norm families).
    pub final_norm: Option<Norm<B>>,
    /// Masked-LM transform before the output projection (BERT family).
    pub head_transform: Option<HeadTransform<B>>,
    /// Untied output projection `[d, V]`.
    pub lm_head: Option<Linear<B>>,
    /// Output bias of a tied head `[V]`.
    pub lm_bias: Option<Param<Tensor<B, 1>>>,
    dropout: Dropout,
    /// The switches this model was built from.
    #[module(skip)]
    pub config: ModelConfig,
    /// Where the blocks come from when `blocks` is empty: read from storage one at a
    /// time as the forward pass reaches them (imported models analyzed layer by layer).
    /// None: `blocks` holds them, as for training.
    #[module(skip)]
    pub on_demand: Option<OnDemand>,
}

/// Token ids and, for batches of unequal lengths, which positions are padding.
#[derive(Clone, Debug)]
pub struct Batch<B: Backend> {
    /// `[B, T]` token ids.
    pub ids: Tensor<B, 2, Int>,
    /// `[B, T]`, true at padding positions (keys there are masked out).
    pub padding: Option<Tensor<B, 2, Bool>>,
}

/// Mask key positions out of attention: the reference-token ablation experiment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyAblation {
    /// Key positions no query may attend to.
    pub positions: Vec<usize>,
    /// Layers where the mask applies (None: all).
    pub layers: Option<Vec<usize>>,
    /// Heads where the mask applies (None: all).
    pub heads: Option<Vec<usize>>,
}

/// How to run a forward pass besides the input. The default captures nothing and
/// ablates nothing: then nothing extra is kept.
#[derive(Clone, Debug, Default)]
pub struct ForwardOptions {
    /// What to hand out besides the logits.
    pub taps: Taps,
    /// Mask these keys out of attention.
    pub ablation: Option<KeyAblation>,
}

impl ForwardOptions {
    /// Capture `taps`, ablate nothing.
    pub fn capture(taps: Taps) -> Self {
        Self {
            taps,
            ablation: None,
        }
    }
}

/// The result of a forward pass.
#[derive(Clone, Debug)]
pub struct ForwardOutput<B: Backend> {
    /// `[B, T, V]`.
    pub logits: Tensor<B, 3>,
    /// What the taps of [`ForwardOptions`] asked for.
    pub captured: Captured<B>,
}

impl<B: Backend> Transformer<B> {
    /// A freshly initialised model drawn from `seed` (GPT-2's scheme: N(0, 0.02²),
    /// residual projections scaled by 1/√(2L), biases zero, norms identity).
    pub fn init(config: &ModelConfig, seed: u64, device: &B::Device) -> Self {
        Self::build(config, &mut Init::seeded(seed, device))
    }

    /// The same parameters declared lazily, for a loader to fill (import, checkpoints):
    /// no random weights are drawn or kept.
    pub fn skeleton(config: &ModelConfig, device: &B::Device) -> Self {
        Self::build(config, &mut Init::skeleton(device))
    }

    fn build(config: &ModelConfig, init: &mut Init<'_, B>) -> Self {
        let c = config;
        let std = INIT_STD;
        let out_std = std / (2.0 * c.n_layers as f64).sqrt();
        let norm = |init: &mut Init<'_, B>| {
            Norm::with_bias(c.norm, c.d_model, c.norm_eps, c.norm_bias, init)
        };
        Self {
            embed: init.embedding(c.vocab_size, c.d_model, std),
            position: PositionEmbedding::init(c, std, init),
            token_type: (c.type_vocab_size > 0)
                .then(|| init.embedding(c.type_vocab_size, c.d_model, std)),
            embed_norm: c.embed_norm.then(|| norm(init)),
            blocks: (0..c.n_layers)
                .map(|layer| Block::init(c, layer, std, out_std, init))
                .collect(),
            final_norm: c.final_norm.then(|| norm(init)),
            head_transform: c.head_transform.then(|| HeadTransform {
                dense: init.linear(c.d_model, c.d_model, c.head_transform_bias, std),
                norm: norm(init),
            }),
            lm_head: (!c.tie_embeddings)
                .then(|| init.linear(c.d_model, c.vocab_size, c.lm_head_bias, std)),
            lm_bias: (c.tie_embeddings && c.lm_head_bias)
                .then(|| init.constant([c.vocab_size], 0.0)),
            dropout: DropoutConfig::new(c.dropout).init(),
            config: c.clone(),
            on_demand: None,
        }
    }

    /// Block `layer`: the one held in `blocks`, or read now from storage (then dropped by
    /// the caller once the forward pass is past it).
    pub fn block(&self, layer: usize, device: &B::Device) -> Result<Cow<'_, Block<B>>> {
        match &self.on_demand {
            Some(OnDemand(weights)) => Ok(Cow::Owned(Block::read(
                &self.config,
                layer,
                weights.as_ref(),
                device,
            )?)),
            None => self.blocks.get(layer).map(Cow::Borrowed).ok_or_else(|| {
                Error::Internal(format!(
                    "the model holds {} blocks, layer {layer} was asked for",
                    self.blocks.len()
                ))
            }),
        }
    }

    /// The additive score bias of layer `layer`, `[B|1, H|1, T, T]`: −∞ above the
    /// diagonal (causal) and outside the layer's sliding window, −∞ at padded keys, ALiBi
    /// slopes. Layers with equal settings get equal biases (the caller shares them).
    fn score_bias(
        &self,
        batch: &Batch<B>,
        layer: usize,
        alibi: Option<Tensor<B, 3>>,
        t: usize,
    ) -> Option<Tensor<B, 4>> {
        let device = batch.ids.device();
        let mut bias: Option<Tensor<B, 4>> = alibi.map(|a| a.unsqueeze::<4>());
        let mut add = |b: Tensor<B, 4>| {
            bias = Some(match bias.take() {
                Some(x) => x + b,
                None => b,
            })
        };
        let spec = self.config.layer(layer);
        let causal = self.config.is_causal();
        if causal || spec.sliding_window.is_some() {
            let mask: Vec<f32> = (0..t * t)
                .map(|k| {
                    if spec.can_attend(causal, k / t, k % t) {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
                .collect();
            add(Tensor::from_data(
                TensorData::new(mask, [1, 1, t, t]),
                &device,
            ));
        }
        if let Some(pad) = &batch.padding {
            let [b, _] = pad.dims();
            add(Tensor::<B, 2>::zeros([b, t], &device)
                .mask_fill(pad.clone(), f32::NEG_INFINITY)
                .reshape([b, 1, 1, t]));
        }
        bias
    }

    /// Per-layer ablation bias `[1, H, T, T]`: −∞ on the ablated keys, except in rows
    /// where that would leave a query no visible key (those rows are left as they are).
    fn ablation_bias(
        &self,
        ab: &KeyAblation,
        layer: usize,
        t: usize,
        device: &B::Device,
    ) -> Option<Tensor<B, 4>> {
        if ab.layers.as_ref().is_some_and(|ls| !ls.contains(&layer)) {
            return None;
        }
        let h = self.config.n_heads;
        let (spec, causal) = (self.config.layer(layer), self.config.is_causal());
        let ablated: Vec<bool> = (0..t).map(|j| ab.positions.contains(&j)).collect();
        let mut data = vec![0f32; h * t * t];
        for head in 0..h {
            if ab.heads.as_ref().is_some_and(|hs| !hs.contains(&head)) {
                continue;
            }
            for i in 0..t {
                let visible = |j: &usize| spec.can_attend(causal, i, *j);
                if (0..t).filter(visible).all(|j| ablated[j]) {
                    continue;
                }
                for j in (0..t).filter(visible) {
                    if ablated[j] {
                        data[(head * t + i) * t + j] = f32::NEG_INFINITY;
                    }
                }
            }
        }
        Some(Tensor::from_data(
            TensorData::new(data, [1, h, t, t]),
            device,
        ))
    }

    /// Runs the model, capturing what `opts.taps` asks for.
    ///
    /// Panics if the blocks are read [`on_demand`](Self::on_demand) and a read fails
    /// (code that runs such models calls [`try_forward`](Self::try_forward) or
    /// [`forward_visit`](Self::forward_visit), which return the error); a model holding
    /// its blocks cannot fail here.
    pub fn forward(&self, batch: &Batch<B>, opts: &ForwardOptions) -> ForwardOutput<B> {
        self.try_forward(batch, opts)
            .unwrap_or_else(|e| panic!("forward pass: {e}"))
    }

    /// As [`forward`](Self::forward), returning a failed read of a block read on demand.
    pub fn try_forward(&self, batch: &Batch<B>, opts: &ForwardOptions) -> Result<ForwardOutput<B>> {
        let mut layers = Vec::new();
        let mut out = self.forward_visit(batch, opts, &mut |_, taps| layers.push(taps))?;
        for taps in layers {
            out.captured.push(taps);
        }
        Ok(out)
    }

    /// As [`forward`](Self::forward), but each block's attention taps go to `visit` with
    /// the layer index as soon as they exist instead of being collected, so a caller can
    /// analyze and drop them one layer at a time (the per-layer lists of
    /// [`ForwardOutput::captured`] stay empty; the residual stream is collected as
    /// usual). `visit` is called only when an attention tap was asked for. Blocks read
    /// [`on_demand`](Self::on_demand) are read here, one at a time, and dropped as soon
    /// as the pass is past them; a failed read is returned.
    pub fn forward_visit(
        &self,
        batch: &Batch<B>,
        opts: &ForwardOptions,
        visit: &mut dyn FnMut(usize, LayerTaps<B>),
    ) -> Result<ForwardOutput<B>> {
        let device = batch.ids.device();
        let [_, t] = batch.ids.dims();
        let cfg = &self.config;
        // Per-layer attention settings, built once for each distinct layer spec.
        let mut layer_ctx: Vec<(LayerSpec, AttentionContext<B>, Option<Tensor<B, 4>>)> = Vec::new();
        let mut ctx_of = Vec::with_capacity(cfg.n_layers);
        for layer in 0..cfg.n_layers {
            let spec = cfg.layer(layer);
            let k = match layer_ctx.iter().position(|(s, _, _)| *s == spec) {
                Some(k) => k,
                None => {
                    let pos = layer_context(cfg, &spec.position, t, &device);
                    let attn = AttentionContext::new(cfg, pos.rotary.as_ref(), &device);
                    let bias = self.score_bias(batch, layer, pos.score_bias, t);
                    layer_ctx.push((spec, attn, bias));
                    layer_ctx.len() - 1
                }
            };
            ctx_of.push(k);
        }

        let mut x = self.embed.forward(batch.ids.clone());
        if let Some(scale) = cfg.embed_scale {
            // Hugging Face (Gemma) rounds the normaliser to the activation dtype first.
            x = x * (scale as f32) as f64;
        }
        if let Some(abs) = self.position.absolute(cfg, t, &device) {
            x = x + abs.unsqueeze::<3>();
        }
        if let Some(tt) = &self.token_type {
            x = x + tt.weight.val().narrow(0, 0, 1).unsqueeze::<3>();
        }
        if let Some(n) = &self.embed_norm {
            x = n.forward(x);
        }
        x = self.dropout.forward(x);

        let taps = opts.taps;
        let mut captured = Captured::default();
        if taps.residuals {
            captured.residuals.push(x.clone());
        }
        for layer in 0..cfg.n_layers {
            let block = self.block(layer, &device)?;
            let ablation = opts
                .ablation
                .as_ref()
                .and_then(|ab| self.ablation_bias(ab, layer, t, &device));
            let (_, attn_ctx, shared_bias) = &layer_ctx[ctx_of[layer]];
            let bias = match (shared_bias.clone(), ablation) {
                (Some(s), Some(a)) => Some(s + a),
                (s, a) => s.or(a),
            };
            let mut layer_taps = LayerTaps::new(taps);
            x = block.forward(x, attn_ctx, bias, &mut layer_taps);
            drop(block);
            if taps.any_attention() {
                visit(layer, layer_taps);
            }
            if taps.residuals {
                captured.residuals.push(x.clone());
            }
        }
        if let Some(n) = &self.final_norm {
            x = n.forward(x);
        }
        captured.final_hidden = taps.residuals.then(|| x.clone());
        Ok(ForwardOutput {
            logits: self.head(x),
            captured,
        })
    }

    /// Hidden states after the final norm `[B, T, d]` → logits `[B, T, V]`, computed
    /// on `[B·T, d]` so each product (and its weight gradient) is a single 2-D one.
    pub fn head(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, d] = x.dims();
        let mut x = x.reshape([b * t, d]);
        if let Some(ht) = &self.head_transform {
            x = ht
                .norm
                .forward(activate(self.config.mlp, kernels::linear(x, &ht.dense)));
        }
        let logits = match &self.lm_head {
            Some(head) => kernels::linear(x, head),
            None => {
                let logits = kernels::matmul(x, self.embed.weight.val().transpose(), 1.0);
                match &self.lm_bias {
                    Some(b) => logits + b.val().unsqueeze::<2>(),
                    None => logits,
                }
            }
        };
        let logits = match self.config.final_softcap {
            Some(cap) => (logits / cap).tanh() * cap,
            None => logits,
        };
        let v = logits.dims()[1];
        logits.reshape([b, t, v])
    }
}
