//! What a forward pass can hand out besides the logits, asked for by type rather than
//! by threading one flag per tensor through every signature: the caller names a set of
//! [`Taps`], each attention layer fills a [`LayerTaps`] with exactly those, and
//! [`Captured`] gathers them for the whole pass. TransformerLens's `HookPoint`s
//! (`hook_attn_scores`, `hook_pattern`, `hook_v`, `hook_z`, `hook_resid_post`) without
//! string names: a tap not asked for is never cloned or kept, so training (which asks
//! for none) pays nothing.

use std::ops::BitOr;

use burn::prelude::*;

/// A set of tensors to capture. Combine with `|`:
/// `Taps::PROBS | Taps::RESIDUALS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Taps {
    /// Attention scores `[B, H, T, T]` before the softmax: `q·k` scaled (and soft-capped
    /// where the model caps), without the masks, position bias or ablation bias
    /// (TransformerLens's `hook_attn_scores` before its mask).
    pub scores: bool,
    /// Attention probabilities `[B, H, T, T]` after masking and softmax, before dropout
    /// (`hook_pattern`).
    pub probs: bool,
    /// Value vectors `[B, Hkv, T, Dh]`, one per key/value head (grouped-query heads
    /// share them), as `v_proj` gives them (`hook_v`; Hugging Face's `value_states`).
    pub values: bool,
    /// Per-head attention outputs `[B, H, T, Dh]` = probabilities · values, before the
    /// output projection (`hook_z`, heads first).
    pub head_outputs: bool,
    /// The residual stream `[B, T, d]` after the embeddings and after each block, and
    /// the hidden state after the final norm (`hook_resid_post`).
    pub residuals: bool,
}

impl Taps {
    /// Capture nothing (what training asks for).
    pub const NONE: Taps = Taps {
        scores: false,
        probs: false,
        values: false,
        head_outputs: false,
        residuals: false,
    };
    /// Only the pre-softmax scores.
    pub const SCORES: Taps = Taps {
        scores: true,
        ..Taps::NONE
    };
    /// Only the attention probabilities.
    pub const PROBS: Taps = Taps {
        probs: true,
        ..Taps::NONE
    };
    /// Only the value vectors.
    pub const VALUES: Taps = Taps {
        values: true,
        ..Taps::NONE
    };
    /// Only the per-head outputs.
    pub const HEAD_OUTPUTS: Taps = Taps {
        head_outputs: true,
        ..Taps::NONE
    };
    /// Only the residual stream.
    pub const RESIDUALS: Taps = Taps {
        residuals: true,
        ..Taps::NONE
    };

    /// Whether an attention layer has anything to hand out.
    pub fn any_attention(self) -> bool {
        self.scores || self.probs || self.values || self.head_outputs
    }
}

impl BitOr for Taps {
    type Output = Taps;
    fn bitor(self, o: Taps) -> Taps {
        Taps {
            scores: self.scores || o.scores,
            probs: self.probs || o.probs,
            values: self.values || o.values,
            head_outputs: self.head_outputs || o.head_outputs,
            residuals: self.residuals || o.residuals,
        }
    }
}

/// What one attention layer handed out: each field is `Some` exactly when its tap was
/// asked for (shapes in [`Taps`]).
#[derive(Clone, Debug)]
pub struct LayerTaps<B: Backend> {
    want: Taps,
    /// Pre-softmax scores `[B, H, T, T]`.
    pub scores: Option<Tensor<B, 4>>,
    /// Attention probabilities `[B, H, T, T]`.
    pub probs: Option<Tensor<B, 4>>,
    /// Value vectors `[B, Hkv, T, Dh]`.
    pub values: Option<Tensor<B, 4>>,
    /// Per-head outputs `[B, H, T, Dh]`.
    pub head_outputs: Option<Tensor<B, 4>>,
}

impl<B: Backend> LayerTaps<B> {
    /// An empty collector for the taps in `want`.
    pub fn new(want: Taps) -> Self {
        Self {
            want,
            scores: None,
            probs: None,
            values: None,
            head_outputs: None,
        }
    }

    /// The taps this collector was made for.
    pub fn wants(&self) -> Taps {
        self.want
    }
}

/// Everything a forward pass captured, by tap. A per-layer list is empty unless its tap
/// was asked for (and when the layers were streamed to a visitor instead), else it
/// holds one tensor per layer.
#[derive(Clone, Debug)]
pub struct Captured<B: Backend> {
    /// Per layer, pre-softmax scores `[B, H, T, T]`.
    pub scores: Vec<Tensor<B, 4>>,
    /// Per layer, attention probabilities `[B, H, T, T]`, after masking and softmax,
    /// before dropout.
    pub probs: Vec<Tensor<B, 4>>,
    /// Per layer, value vectors `[B, Hkv, T, Dh]`.
    pub values: Vec<Tensor<B, 4>>,
    /// Per layer, per-head outputs `[B, H, T, Dh]`.
    pub head_outputs: Vec<Tensor<B, 4>>,
    /// `L + 1` tensors `[B, T, d]`: embeddings output, then each block's output.
    pub residuals: Vec<Tensor<B, 3>>,
    /// `[B, T, d]` after the final norm, what the head reads (with `residuals`).
    pub final_hidden: Option<Tensor<B, 3>>,
}

impl<B: Backend> Default for Captured<B> {
    fn default() -> Self {
        Self {
            scores: Vec::new(),
            probs: Vec::new(),
            values: Vec::new(),
            head_outputs: Vec::new(),
            residuals: Vec::new(),
            final_hidden: None,
        }
    }
}

impl<B: Backend> Captured<B> {
    /// Appends one layer's taps, in layer order.
    pub fn push(&mut self, layer: LayerTaps<B>) {
        self.scores.extend(layer.scores);
        self.probs.extend(layer.probs);
        self.values.extend(layer.values);
        self.head_outputs.extend(layer.head_outputs);
    }
}
