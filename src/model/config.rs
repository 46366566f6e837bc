//! The one description of a transformer that sinkscope builds.
//!
//! Training recipes and every imported family (Llama, Qwen2/3, Mistral, Gemma 1/2/3,
//! Phi-2/3, SmolLM3, OLMo 2, GPT-NeoX/Pythia, GPT-2, BERT, XLM-RoBERTa, ModernBERT)
//! resolve to this struct: a family is a table of switches here plus a table of tensor
//! names in `import`, never a copy of the model code. Settings that differ between layers
//! (local/global windows, rotary bases, NoPE layers) are [`LayerOverride`]s.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Whether queries see only the past (decoder, causal LM) or the whole sequence
/// (encoder, masked LM). The paper's centralized/distributed frames are decoder
/// phenomena; the bidirectional frame needs an encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// Causal self-attention, next-token loss.
    #[default]
    Decoder,
    /// Bidirectional self-attention, masked-token loss.
    Encoder,
}

/// Normalisation layer. RMSNorm has no bias and no mean subtraction (Llama family);
/// LayerNorm has both (GPT-2, BERT, Pythia, Phi-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NormKind {
    /// `(x - mean) / sqrt(var + eps) * w + b`.
    #[default]
    Layer,
    /// `x / sqrt(mean(x²) + eps) * w`.
    Rms,
}

/// Where the norms sit and how the two sublayers join the residual stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BlockKind {
    /// `x += attn(norm1(x)); x += mlp(norm2(x))` (GPT-2, Llama).
    #[default]
    Pre,
    /// `x = norm1(x + attn(x)); x = norm2(x + mlp(x))` (BERT, original Transformer).
    Post,
    /// `x += attn(norm1(x)) + mlp(norm2(x))` (GPT-NeoX/Pythia `use_parallel_residual`).
    Parallel,
    /// `h = norm1(x); x += attn(h) + mlp(h)` (Phi-2, GPT-J: one shared norm).
    ParallelShared,
    /// `x += post1(attn(norm1(x))); x += post2(mlp(norm2(x)))` (Gemma 2/3: norms on both
    /// sides of each sublayer).
    Sandwich,
    /// `x += norm1(attn(x)); x += norm2(mlp(x))` (OLMo 2: norms on the sublayer outputs
    /// only, before they join the residual stream).
    PostBranch,
}

/// Feed-forward network: activation, and whether it is gated
/// (`act(x W_gate) * (x W_up)`, SwiGLU/GeGLU) or plain (`act(x W_up)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MlpKind {
    /// Plain MLP with exact (erf) GELU (BERT, Pythia).
    #[default]
    Gelu,
    /// Plain MLP with tanh-approximated GELU, "gelu_new" (GPT-2, Phi-2).
    GeluTanh,
    /// Plain MLP with ReLU.
    Relu,
    /// Gated MLP with SiLU (Llama, Mistral, Qwen2).
    Swiglu,
    /// Gated MLP with exact GELU.
    Geglu,
    /// Gated MLP with tanh-approximated GELU (Gemma).
    GegluTanh,
}

impl MlpKind {
    /// Gated MLPs carry a third projection (`gate`).
    pub fn is_gated(self) -> bool {
        matches!(self, Self::Swiglu | Self::Geglu | Self::GegluTanh)
    }
}

/// Attention normaliser. `quiet` is "softmax plus one" (Miller 2023):
/// `exp(x_i) / (1 + Σ_j exp(x_j))`, letting a head attend to nothing instead of a sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SoftmaxKind {
    /// Rows sum to 1.
    #[default]
    Standard,
    /// Rows sum to less than 1; the remainder is "attention to nothing".
    Quiet,
}

/// The position encoding: the one component the paper's experiments swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PositionKind {
    /// NoPE: position only through the causal mask.
    None,
    /// Learned absolute position embeddings added to the token embeddings.
    Learned,
    /// Fixed sinusoidal absolute embeddings (Vaswani et al. 2017).
    Sinusoidal,
    /// Rotary embeddings on q and k (Su et al. 2021).
    #[default]
    Rope,
    /// Rotary embeddings with an NTK-aware enlarged base:
    /// `base' = base · s^(d_rot / (d_rot − 2))`, `s = factor`.
    NtkRope,
    /// Linear biases on the attention scores (Press et al. 2022).
    Alibi,
}

/// How rotary embeddings pair the dimensions they rotate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RopePairing {
    /// Dimension i rotates with i + d_rot/2 ("rotate_half": Llama, NeoX, Phi, Gemma, Qwen2).
    #[default]
    Half,
    /// Dimension 2i rotates with 2i + 1 (GPT-J, burn's `RotaryEncoding`).
    Interleaved,
}

/// Context-extension rules of Hugging Face `rope_scaling`, applied to the rotary
/// frequencies. `ntk-rope` covers the static NTK-aware case.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RopeScaling {
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        /// Interpolation factor.
        factor: f64,
    },
    /// Dynamic NTK: when the sequence exceeds `original_max`, the base grows as
    /// `base · (factor·T/original_max − (factor − 1))^(d/(d−2))`.
    Dynamic {
        /// Scaling factor.
        factor: f64,
        /// Context length the model was trained with.
        original_max: usize,
    },
    /// Llama 3.1 frequency-dependent scaling.
    Llama3 {
        /// Scaling factor for low frequencies.
        factor: f64,
        /// Wavelength boundary (as a fraction of `original_max`) for low frequencies.
        low_freq_factor: f64,
        /// Wavelength boundary for high frequencies.
        high_freq_factor: f64,
        /// Context length the model was trained with.
        original_max: usize,
    },
}

/// Where q and k are normalised (RMSNorm, before any rotation), if anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum QkNorm {
    /// No normalisation of q and k.
    #[default]
    None,
    /// Over each head's `head_dim` features, one weight shared by the heads (Qwen3, Gemma 3).
    PerHead,
    /// Over the whole projection `H·Dh` (OLMo 2).
    Full,
}

/// Position encoding settings. Flat, so a sweep can switch `kind` alone and keep
/// the other fields; fields that a kind does not use are ignored by it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PositionConfig {
    /// Which encoding.
    pub kind: PositionKind,
    /// Rotary base θ (rope, ntk-rope).
    pub base: f64,
    /// Share of each head's dimensions that rotate (partial rotary: Phi-2 0.4, Pythia 0.25).
    pub fraction: f64,
    /// Dimension pairing of the rotation.
    pub pairing: RopePairing,
    /// NTK scale factor s (ntk-rope).
    pub factor: f64,
    /// Extra Hugging Face `rope_scaling` rule (rope).
    pub scaling: Option<RopeScaling>,
    /// First position index (XLM-RoBERTa counts from padding_idx + 1 = 2).
    pub offset: usize,
}

impl Default for PositionConfig {
    fn default() -> Self {
        Self {
            kind: PositionKind::Rope,
            base: 10_000.0,
            fraction: 1.0,
            pairing: RopePairing::Half,
            factor: 4.0,
            scaling: None,
            offset: 0,
        }
    }
}

impl PositionConfig {
    /// Whether q and k are rotated.
    pub fn is_rotary(&self) -> bool {
        matches!(self.kind, PositionKind::Rope | PositionKind::NtkRope)
    }

    /// Whether a table of absolute embeddings is added to the tokens.
    pub fn is_absolute(&self) -> bool {
        matches!(self.kind, PositionKind::Learned | PositionKind::Sinusoidal)
    }
}

/// Settings that differ from the model's on some layers: interleaved local/global
/// attention (Gemma 2/3, ModernBERT), two rotary bases (Gemma 3, ModernBERT), NoPE layers
/// among RoPE ones (SmolLM3). A layer takes the model's settings, then those of every
/// override that selects it, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LayerOverride {
    /// Layers selected by index.
    pub layers: Vec<usize>,
    /// Also every `every`-th layer from `first` on (`first`, `first + every`, …).
    pub every: Option<usize>,
    /// The first layer `every` selects.
    pub first: usize,
    /// The position encoding of these layers (rotary with its own base, ALiBi or none;
    /// absolute tables belong to the whole model).
    pub position: Option<PositionConfig>,
    /// A sliding window on these layers (see [`ModelConfig::sliding_window`]).
    pub sliding_window: Option<usize>,
}

impl LayerOverride {
    /// Whether this override applies to layer `i`.
    pub fn selects(&self, i: usize) -> bool {
        self.layers.contains(&i)
            || self
                .every
                .is_some_and(|e| i >= self.first && (i - self.first).is_multiple_of(e.max(1)))
    }
}

/// What one layer's attention uses after the overrides: its position encoding and window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerSpec {
    /// The layer's position encoding.
    pub position: PositionConfig,
    /// The layer's sliding window.
    pub sliding_window: Option<usize>,
}

impl LayerSpec {
    /// Whether query `i` may attend to key `j` (before padding) under the causal mask of a
    /// decoder (`causal`) and this layer's window.
    pub fn can_attend(&self, causal: bool, i: usize, j: usize) -> bool {
        let window = self.sliding_window;
        if causal {
            j <= i && window.is_none_or(|w| i - j < w)
        } else {
            window.is_none_or(|w| i.abs_diff(j) <= w / 2)
        }
    }
}

/// A transformer, fully described by data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Decoder (causal) or encoder (bidirectional).
    pub arch: Arch,
    /// Vocabulary size (0 in a recipe: taken from the tokenizer).
    pub vocab_size: usize,
    /// Residual stream width d.
    pub d_model: usize,
    /// Number of blocks L.
    pub n_layers: usize,
    /// Query heads H.
    pub n_heads: usize,
    /// Key/value heads for grouped-query attention (None: = n_heads). Must divide n_heads.
    pub n_kv_heads: Option<usize>,
    /// Per-head width (None: d_model / n_heads; Gemma sets it apart).
    pub head_dim: Option<usize>,
    /// Hidden width of the MLP.
    pub d_ff: usize,
    /// Longest sequence (size of the learned position table; rotary tables grow as needed).
    pub max_seq_len: usize,
    /// Position encoding.
    pub position: PositionConfig,
    /// Norm type.
    pub norm: NormKind,
    /// Norm epsilon.
    pub norm_eps: f64,
    /// Block layout.
    pub block: BlockKind,
    /// MLP type.
    pub mlp: MlpKind,
    /// Bias on the q, k, v projections.
    pub qkv_bias: bool,
    /// Bias on the attention output projection.
    pub out_bias: bool,
    /// Biases in the MLP.
    pub mlp_bias: bool,
    /// Bias on the LM head.
    pub lm_head_bias: bool,
    /// LM head shares the token embedding matrix.
    pub tie_embeddings: bool,
    /// Attention normaliser.
    pub softmax: SoftmaxKind,
    /// Score scale (None: 1/√head_dim).
    pub attn_scale: Option<f64>,
    /// Token embeddings multiplied by this (Gemma: √d).
    pub embed_scale: Option<f64>,
    /// A norm right after the embeddings (BERT).
    pub embed_norm: bool,
    /// Token-type (segment) embeddings; 0 for none (BERT: 2, RoBERTa: 1).
    pub type_vocab_size: usize,
    /// A norm after the last block (pre-norm models).
    pub final_norm: bool,
    /// Masked-LM head transform `norm(act(x W))` before the output projection (BERT, RoBERTa).
    pub head_transform: bool,
    /// Dropout on attention probabilities and residual branches (training only).
    pub dropout: f64,
    /// Sliding window. Decoders (Mistral, Gemma): query i sees keys i − w < j ≤ i;
    /// encoders (ModernBERT's `local_attention`): keys with |i − j| ≤ w / 2. None: all keys.
    pub sliding_window: Option<usize>,
    /// Normalisation of q and k before the rotation (Qwen3, Gemma 3, OLMo 2).
    pub qk_norm: QkNorm,
    /// Attention-logit soft-capping `c · tanh(s / c)` of the scaled scores, before the
    /// mask and softmax (Gemma 2).
    pub attn_softcap: Option<f64>,
    /// Final-logit soft-capping `c · tanh(z / c)` (Gemma 2).
    pub final_softcap: Option<f64>,
    /// Whether the first block normalises its attention input (ModernBERT's layer 0 does
    /// not: its embeddings are already normalised).
    pub first_attn_norm: bool,
    /// Whether LayerNorms carry a bias (ModernBERT's `norm_bias` is false).
    pub norm_bias: bool,
    /// Whether the head transform's dense layer has a bias (ModernBERT's
    /// `classifier_bias` is false).
    pub head_transform_bias: bool,
    /// Per-layer settings (position encoding, window) that differ from the model's.
    pub layers: Vec<LayerOverride>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            arch: Arch::Decoder,
            vocab_size: 0,
            d_model: 128,
            n_layers: 4,
            n_heads: 4,
            n_kv_heads: None,
            head_dim: None,
            d_ff: 512,
            max_seq_len: 128,
            position: PositionConfig::default(),
            norm: NormKind::Layer,
            norm_eps: 1e-5,
            block: BlockKind::Pre,
            mlp: MlpKind::Gelu,
            qkv_bias: false,
            out_bias: false,
            mlp_bias: false,
            lm_head_bias: false,
            tie_embeddings: true,
            softmax: SoftmaxKind::Standard,
            attn_scale: None,
            embed_scale: None,
            embed_norm: false,
            type_vocab_size: 0,
            final_norm: true,
            head_transform: false,
            dropout: 0.0,
            sliding_window: None,
            qk_norm: QkNorm::None,
            attn_softcap: None,
            final_softcap: None,
            first_attn_norm: true,
            norm_bias: true,
            head_transform_bias: true,
            layers: Vec::new(),
        }
    }
}

impl ModelConfig {
    /// Key/value heads (grouped-query attention).
    pub fn kv_heads(&self) -> usize {
        self.n_kv_heads.unwrap_or(self.n_heads)
    }

    /// The factor applied to q·k (`attn_scale`, default 1/√head_dim).
    pub fn attention_scale(&self) -> f64 {
        self.attn_scale
            .unwrap_or(1.0 / (self.head_dim() as f64).sqrt())
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.d_model / self.n_heads.max(1))
    }

    /// Rotated dimensions per head (even, as rotations act on pairs).
    pub fn rotary_dim(&self) -> usize {
        self.rotary_dim_of(&self.position)
    }

    /// Rotated dimensions per head under the position encoding `pos`.
    pub fn rotary_dim_of(&self, pos: &PositionConfig) -> usize {
        let d = (self.head_dim() as f64 * pos.fraction).round() as usize;
        d - d % 2
    }

    /// Whether attention is causal.
    pub fn is_causal(&self) -> bool {
        self.arch == Arch::Decoder
    }

    /// Layer `layer`'s position encoding and window, after the overrides.
    pub fn layer(&self, layer: usize) -> LayerSpec {
        let mut spec = LayerSpec {
            position: self.position,
            sliding_window: self.sliding_window,
        };
        for o in self.layers.iter().filter(|o| o.selects(layer)) {
            if let Some(p) = o.position {
                spec.position = p;
            }
            if let Some(w) = o.sliding_window {
                spec.sliding_window = Some(w);
            }
        }
        spec
    }

    /// Whether query `i` may attend to key `j` in layer `layer` (before padding): the
    /// causal mask and that layer's sliding window.
    pub fn can_attend(&self, layer: usize, i: usize, j: usize) -> bool {
        self.layer(layer).can_attend(self.is_causal(), i, j)
    }

    /// Checks the switches fit together and the model fits in the available memory;
    /// `what` names the source (a recipe field or a config.json) in the error.
    pub fn validate(&self, what: &str) -> Result<()> {
        self.validate_switches(what)?;
        crate::model::budget::check_fits("this model", crate::model::budget::model_bytes(self))
            .map_err(|m| Error::config(what, "model", m))
    }

    /// As [`validate`](Self::validate) without the memory check: for an imported model
    /// whose blocks are read one at a time, which checks what it holds instead.
    pub fn validate_switches(&self, what: &str) -> Result<()> {
        let bad = |field: &str, msg: String| Err(Error::config(what, field, msg));
        if self.vocab_size == 0 {
            return bad("vocab_size", "must be positive".into());
        }
        for (field, v) in [
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("max_seq_len", self.max_seq_len),
        ] {
            if v == 0 {
                return bad(field, "must be positive".into());
            }
        }
        if self.head_dim.is_none() && !self.d_model.is_multiple_of(self.n_heads) {
            return bad(
                "n_heads",
                format!(
                    "{} heads do not divide d_model {}",
                    self.n_heads, self.d_model
                ),
            );
        }
        let kv = self.kv_heads();
        if kv == 0 || !self.n_heads.is_multiple_of(kv) {
            return bad(
                "n_kv_heads",
                format!(
                    "{kv} key/value heads do not divide {} query heads",
                    self.n_heads
                ),
            );
        }
        self.validate_position(&self.position, "position", what)?;
        for (n, o) in self.layers.iter().enumerate() {
            if let Some(bad_layer) = o.layers.iter().find(|&&l| l >= self.n_layers) {
                return bad(
                    &format!("layers[{n}].layers"),
                    format!(
                        "layer {bad_layer} does not exist ({} layers)",
                        self.n_layers
                    ),
                );
            }
            if o.every == Some(0) {
                return bad(&format!("layers[{n}].every"), "must be positive".into());
            }
            if let Some(p) = &o.position {
                if p.is_absolute() {
                    return bad(
                        &format!("layers[{n}].position.kind"),
                        "absolute positions belong to the whole model, not to a layer".into(),
                    );
                }
                self.validate_position(p, &format!("layers[{n}].position"), what)?;
            }
            if o.sliding_window == Some(0) {
                return bad(
                    &format!("layers[{n}].sliding_window"),
                    "must be positive".into(),
                );
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", "must lie in [0, 1)".into());
        }
        if self.sliding_window == Some(0) {
            return bad("sliding_window", "must be positive".into());
        }
        for (field, cap) in [
            ("attn_softcap", self.attn_softcap),
            ("final_softcap", self.final_softcap),
        ] {
            if cap.is_some_and(|c| c.is_nan() || c <= 0.0) {
                return bad(field, "must be positive".into());
            }
        }
        if !(self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return bad("norm_eps", format!("{} is not in (0, 1)", self.norm_eps));
        }
        Ok(())
    }
}

impl PositionConfig {
    /// Numbers a rotary table can be built from: finite, positive, and a base no model
    /// uses beyond 10¹² (a `rope_theta` of 1e308 is a corrupt file, not a model).
    fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        let positive = |field: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err((field, format!("{v} is not a positive finite number")))
            }
        };
        if self.is_rotary() {
            positive("base", self.base)?;
            if self.base > 1e12 {
                return Err(("base", format!("{} exceeds 1e12", self.base)));
            }
            positive("factor", self.factor)?;
            positive("fraction", self.fraction)?;
        }
        match self.scaling {
            None => {}
            Some(RopeScaling::Linear { factor }) => positive("scaling.factor", factor)?,
            Some(RopeScaling::Dynamic {
                factor,
                original_max,
            }) => {
                positive("scaling.factor", factor)?;
                if original_max == 0 {
                    return Err(("scaling.original_max", "must be positive".into()));
                }
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max,
            }) => {
                positive("scaling.factor", factor)?;
                positive("scaling.low_freq_factor", low_freq_factor)?;
                positive("scaling.high_freq_factor", high_freq_factor)?;
                if original_max == 0 {
                    return Err(("scaling.original_max", "must be positive".into()));
                }
            }
        }
        Ok(())
    }
}

impl ModelConfig {
    /// Checks one position encoding (the model's, or a layer override's named `field`).
    fn validate_position(&self, pos: &PositionConfig, field: &str, what: &str) -> Result<()> {
        if let Err((sub, msg)) = pos.check() {
            return Err(Error::config(what, &format!("{field}.{sub}"), msg));
        }
        let bad = |sub: &str, msg: &str| Err(Error::config(what, &format!("{field}.{sub}"), msg));
        if pos.is_rotary() {
            if !(0.0..=1.0).contains(&pos.fraction) || pos.fraction == 0.0 {
                return bad("fraction", "must lie in (0, 1]");
            }
            if self.rotary_dim_of(pos) < 2 {
                return bad("fraction", "rotates fewer than 2 dimensions");
            }
            if pos.base.is_nan() || pos.base <= 1.0 {
                return bad("base", "must exceed 1");
            }
        }
        if pos.kind == PositionKind::NtkRope && (pos.factor.is_nan() || pos.factor < 1.0) {
            return bad("factor", "NTK factor must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_select_layers_and_later_ones_win() {
        let nope = PositionConfig {
            kind: PositionKind::None,
            ..PositionConfig::default()
        };
        let cfg = ModelConfig {
            vocab_size: 10,
            n_layers: 8,
            layers: vec![
                LayerOverride {
                    every: Some(4),
                    first: 3,
                    position: Some(nope),
                    ..Default::default()
                },
                LayerOverride {
                    layers: vec![7, 0],
                    sliding_window: Some(3),
                    ..Default::default()
                },
                LayerOverride {
                    layers: vec![7],
                    sliding_window: Some(5),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let kinds: Vec<_> = (0..8).map(|l| cfg.layer(l).position.kind).collect();
        let none = PositionKind::None;
        let rope = PositionKind::Rope;
        assert_eq!(kinds, [rope, rope, rope, none, rope, rope, rope, none]);
        let windows: Vec<_> = (0..8).map(|l| cfg.layer(l).sliding_window).collect();
        assert_eq!(windows[0], Some(3));
        assert_eq!(windows[7], Some(5));
        assert!(windows[1..7].iter().all(Option::is_none));
        // Layer 0: causal window 3 → keys i-2..=i; layer 1: all past keys.
        assert!(cfg.can_attend(0, 5, 3) && !cfg.can_attend(0, 5, 2) && !cfg.can_attend(0, 5, 6));
        assert!(cfg.can_attend(1, 5, 0));
        // An encoder's window 4: keys within 2 either side.
        let enc = LayerSpec {
            position: PositionConfig::default(),
            sliding_window: Some(4),
        };
        assert!(enc.can_attend(false, 5, 7) && enc.can_attend(false, 5, 3));
        assert!(!enc.can_attend(false, 5, 8) && !enc.can_attend(false, 5, 2));
        cfg.validate("test").unwrap();
    }

    #[test]
    fn bad_overrides_are_named() {
        let base = ModelConfig {
            vocab_size: 10,
            n_layers: 2,
            ..Default::default()
        };
        let learned = PositionConfig {
            kind: PositionKind::Learned,
            ..PositionConfig::default()
        };
        let cases = [
            (
                LayerOverride {
                    layers: vec![2],
                    ..Default::default()
                },
                "layers[0].layers",
            ),
            (
                LayerOverride {
                    every: Some(0),
                    ..Default::default()
                },
                "layers[0].every",
            ),
            (
                LayerOverride {
                    position: Some(learned),
                    ..Default::default()
                },
                "layers[0].position.kind",
            ),
            (
                LayerOverride {
                    position: Some(PositionConfig {
                        base: 0.5,
                        ..PositionConfig::default()
                    }),
                    ..Default::default()
                },
                "layers[0].position.base",
            ),
            (
                LayerOverride {
                    sliding_window: Some(0),
                    ..Default::default()
                },
                "layers[0].sliding_window",
            ),
        ];
        for (o, field) in cases {
            let cfg = ModelConfig {
                layers: vec![o],
                ..base.clone()
            };
            let e = cfg.validate("r.toml").unwrap_err().to_string();
            assert!(e.contains(field) && e.contains("r.toml"), "{e}");
        }
    }
}
