//! A serde mirror of Hugging Face `config.json`: every field the supported families read,
//! each an `Option` under the name (or one of the names) transformers writes, resolved
//! once per family into a [`ModelConfig`](crate::model::ModelConfig).
//!
//! Two spellings of the rotary settings exist: the legacy top-level `rope_theta` /
//! `rotary_emb_base` / `partial_rotary_factor` / `rotary_pct` with a `rope_scaling` dict
//! keyed `type` or `rope_type`, and transformers 5's `rope_parameters` dict carrying
//! `rope_theta`, `rope_type` and `partial_rotary_factor` itself. [`HfConfig::rope`] reads
//! both. Norm epsilons are spelled four ways; [`HfConfig::norm_eps`] reads all of them.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::import::error::{ImportError, ImportErrorKind};
use crate::import::json::read_json;
use crate::model::config::RopeScaling;
use crate::model::{Arch, LayerOverride, MlpKind, ModelConfig, PositionConfig, PositionKind};

/// The rotary dict of `rope_scaling` (legacy) or `rope_parameters` (transformers 5).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RopeParams {
    /// Rule name (`default`, `linear`, `dynamic`, `llama3`, …), transformers ≥ 4.45.
    pub rope_type: Option<String>,
    /// Rule name, older spelling.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// θ (transformers 5 keeps it here).
    pub rope_theta: Option<f64>,
    /// Scaling factor of linear/dynamic/llama3.
    pub factor: Option<f64>,
    /// Share of each head that rotates (transformers 5 may keep it here).
    pub partial_rotary_factor: Option<f64>,
    /// Llama 3: the context length the model was pretrained with.
    pub original_max_position_embeddings: Option<usize>,
    /// Llama 3 low-frequency boundary.
    pub low_freq_factor: Option<f64>,
    /// Llama 3 high-frequency boundary.
    pub high_freq_factor: Option<f64>,
}

impl RopeParams {
    /// The rule name under either key; `default` when absent.
    pub fn rule(&self) -> &str {
        self.rope_type
            .as_deref()
            .or(self.kind.as_deref())
            .unwrap_or("default")
    }
}

/// `config.json`, the fields sinkscope reads. Unknown fields are ignored (configs carry
/// many training-only settings); a known field of the wrong type is an error.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HfConfig {
    /// Selects the family table.
    pub model_type: Option<String>,
    /// Rows of the embedding matrix (may exceed the tokenizer's vocabulary).
    pub vocab_size: Option<usize>,
    /// d (most families).
    pub hidden_size: Option<usize>,
    /// d (GPT-2).
    pub n_embd: Option<usize>,
    /// L (most families).
    pub num_hidden_layers: Option<usize>,
    /// L (GPT-2).
    pub n_layer: Option<usize>,
    /// Query heads (most families).
    pub num_attention_heads: Option<usize>,
    /// Query heads (GPT-2).
    pub n_head: Option<usize>,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: Option<usize>,
    /// Per-head width when not d / heads (Gemma, Mistral variants).
    pub head_dim: Option<usize>,
    /// MLP width (most families).
    pub intermediate_size: Option<usize>,
    /// MLP width (GPT-2; null means 4d).
    pub n_inner: Option<usize>,
    /// Position table size / trained context (most families).
    pub max_position_embeddings: Option<usize>,
    /// Position table size (GPT-2).
    pub n_positions: Option<usize>,
    /// MLP activation (most families).
    pub hidden_act: Option<String>,
    /// MLP activation (Gemma, which prefers it over `hidden_act`).
    pub hidden_activation: Option<String>,
    /// MLP activation (GPT-2).
    pub activation_function: Option<String>,
    /// LayerNorm epsilon (BERT, Phi, GPT-NeoX).
    pub layer_norm_eps: Option<f64>,
    /// LayerNorm epsilon (GPT-2).
    pub layer_norm_epsilon: Option<f64>,
    /// RMSNorm epsilon (Llama family, Gemma).
    pub rms_norm_eps: Option<f64>,
    /// Norm epsilon (a few newer configs).
    pub norm_eps: Option<f64>,
    /// Output projection shares the embedding matrix.
    pub tie_word_embeddings: Option<bool>,
    /// θ, legacy top-level spelling.
    pub rope_theta: Option<f64>,
    /// θ, GPT-NeoX spelling.
    pub rotary_emb_base: Option<f64>,
    /// Rotary scaling, legacy spelling (null when none).
    pub rope_scaling: Option<RopeParams>,
    /// Rotary settings, transformers 5 spelling (one dict, or one per layer type).
    pub rope_parameters: Option<RopeParamsField>,
    /// θ of the local layers, legacy spelling (Gemma 3).
    pub rope_local_base_freq: Option<f64>,
    /// θ of the local layers, legacy spelling (ModernBERT).
    pub local_rope_theta: Option<f64>,
    /// θ of the global layers, legacy spelling (ModernBERT).
    pub global_rope_theta: Option<f64>,
    /// Rotated share of each head (Phi).
    pub partial_rotary_factor: Option<f64>,
    /// Rotated share of each head (GPT-NeoX).
    pub rotary_pct: Option<f64>,
    /// Biases on the attention projections (Llama, GPT-NeoX).
    pub attention_bias: Option<bool>,
    /// Biases in the MLP (Llama).
    pub mlp_bias: Option<bool>,
    /// Causal window of Mistral (and Qwen2 when enabled).
    pub sliding_window: Option<usize>,
    /// Qwen2's switch for `sliding_window`.
    pub use_sliding_window: Option<bool>,
    /// Per-layer attention kinds (`full_attention`, `sliding_attention`), transformers 5.
    pub layer_types: Option<Vec<String>>,
    /// Every n-th layer global, the others sliding (Gemma 3 before `layer_types`).
    pub sliding_window_pattern: Option<usize>,
    /// Qwen2/Qwen3: layers from this index on slide (before `layer_types`).
    pub max_window_layers: Option<usize>,
    /// SmolLM3: 1 where a layer uses RoPE, 0 where it is NoPE.
    pub no_rope_layers: Option<Vec<u8>>,
    /// SmolLM3: every n-th layer NoPE when `no_rope_layers` is absent.
    pub no_rope_layer_interval: Option<usize>,
    /// Gemma 2/3: scores scaled by `query_pre_attn_scalar^-1/2` instead of `head_dim^-1/2`.
    pub query_pre_attn_scalar: Option<f64>,
    /// Gemma 2: attention-logit soft-capping.
    pub attn_logit_softcapping: Option<f64>,
    /// Gemma 2: final-logit soft-capping.
    pub final_logit_softcapping: Option<f64>,
    /// ModernBERT: every n-th layer global (before `layer_types`).
    pub global_attn_every_n_layers: Option<usize>,
    /// ModernBERT: the local layers' window (keys within half of it either side).
    pub local_attention: Option<usize>,
    /// ModernBERT: biases on the LayerNorms.
    pub norm_bias: Option<bool>,
    /// ModernBERT: bias of the MLM head's dense layer.
    pub classifier_bias: Option<bool>,
    /// ModernBERT: bias of the MLM decoder.
    pub decoder_bias: Option<bool>,
    /// ModernBERT: activation of the MLM head.
    pub classifier_activation: Option<String>,
    /// Segment embeddings (BERT 2, RoBERTa 1).
    pub type_vocab_size: Option<usize>,
    /// RoBERTa counts positions from `pad_token_id + 1`.
    pub pad_token_id: Option<u32>,
    /// An id or a list of ids (Llama 3 lists several end tokens; so may BOS be).
    pub bos_token_id: Option<Value>,
    /// GPT-NeoX: parallel (`x + attn(ln1 x) + mlp(ln2 x)`) or sequential residual.
    pub use_parallel_residual: Option<bool>,
    /// GPT-2: scale scores by 1/√head_dim (default true).
    pub scale_attn_weights: Option<bool>,
    /// GPT-2: extra 1/(layer + 1) score scaling (not supported).
    pub scale_attn_by_inverse_layer_idx: Option<bool>,
    /// Phi: LayerNorm on q and k (not supported).
    pub qk_layernorm: Option<bool>,
    /// BERT: `absolute` (relative variants are not supported).
    pub position_embedding_type: Option<String>,
    /// The text decoder's own config inside a multimodal wrapper (Gemma 3's
    /// `Gemma3ForConditionalGeneration`): that decoder is what sinkscope analyzes
    /// ([`crate::import::multimodal`]).
    pub text_config: Option<Box<HfConfig>>,
}

/// `rope_parameters`: one dict (most families) or one per layer type (Gemma 3 and
/// ModernBERT: `full_attention`, `sliding_attention`). The per-type form is tried first:
/// a plain dict's values are not dicts, so it cannot be read as one.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RopeParamsField {
    /// One dict per layer type.
    PerType(std::collections::BTreeMap<String, RopeParams>),
    /// One dict for every layer.
    Flat(RopeParams),
}

/// The two layer types transformers 5 names.
const LAYER_TYPES: &[&str] = &["full_attention", "sliding_attention"];

/// A problem with one config field, before the file name is attached.
pub type FieldError = (String, String);

/// Shorthand for a [`FieldError`].
pub fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    (field.to_string(), message.into())
}

/// Resolved rotary settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    /// θ.
    pub base: f64,
    /// Hugging Face scaling rule, if any.
    pub scaling: Option<RopeScaling>,
    /// Share of each head that rotates, if the config says.
    pub fraction: Option<f64>,
}

impl HfConfig {
    /// What every rotary decoder family (Llama, Mistral, Qwen2, Gemma, Phi, GPT-NeoX) reads the
    /// same way: sizes, grouped-query heads, the norm epsilon and RoPE with its scaling,
    /// `default_fraction` being the rotary share when the config names none. Each
    /// family sets its switches (norm, block layout, MLP, biases, ties) over this.
    pub fn rotary_decoder(&self, default_fraction: f64) -> Result<ModelConfig, FieldError> {
        let (d, heads) = (self.d_model()?, self.n_heads()?);
        Ok(ModelConfig {
            arch: Arch::Decoder,
            vocab_size: self.vocab_size()?,
            d_model: d,
            n_layers: self.n_layers()?,
            n_heads: heads,
            n_kv_heads: Some(self.num_key_value_heads.unwrap_or(heads)),
            head_dim: self.head_dim,
            d_ff: self.d_ff()?,
            max_seq_len: self.max_positions()?,
            position: self.rotary_position(self.rope(10_000.0)?, default_fraction)?,
            norm_eps: self.norm_eps()?,
            final_norm: true,
            ..ModelConfig::default()
        })
    }

    /// RoPE as sinkscope stores it: `rope` over this config's head width, rotating
    /// `default_fraction` of each head when the config names no share.
    pub fn rotary_position(
        &self,
        rope: Rope,
        default_fraction: f64,
    ) -> Result<PositionConfig, FieldError> {
        let (d, heads) = (self.d_model()?, self.n_heads()?);
        let head_dim = self.head_dim.unwrap_or(d / heads.max(1));
        Ok(PositionConfig {
            kind: PositionKind::Rope,
            base: rope.base,
            fraction: rotary_fraction(head_dim, rope.fraction.unwrap_or(default_fraction)),
            scaling: rope.scaling,
            ..PositionConfig::default()
        })
    }

    /// Reads `config.json`.
    pub fn read(path: &Path) -> Result<Self, ImportError> {
        read_json(path)
    }

    /// Turns a [`FieldError`] into an error naming `path`.
    pub fn error_at(path: &Path, (field, message): FieldError) -> ImportError {
        ImportErrorKind::Config { field, message }.at(path)
    }

    /// d under either spelling.
    pub fn d_model(&self) -> Result<usize, FieldError> {
        required("hidden_size", self.hidden_size.or(self.n_embd))
    }

    /// L under either spelling.
    pub fn n_layers(&self) -> Result<usize, FieldError> {
        required("num_hidden_layers", self.num_hidden_layers.or(self.n_layer))
    }

    /// Query heads under either spelling.
    pub fn n_heads(&self) -> Result<usize, FieldError> {
        required(
            "num_attention_heads",
            self.num_attention_heads.or(self.n_head),
        )
    }

    /// Vocabulary rows.
    pub fn vocab_size(&self) -> Result<usize, FieldError> {
        required("vocab_size", self.vocab_size)
    }

    /// MLP width.
    pub fn d_ff(&self) -> Result<usize, FieldError> {
        required("intermediate_size", self.intermediate_size)
    }

    /// Position table size / trained context.
    pub fn max_positions(&self) -> Result<usize, FieldError> {
        required(
            "max_position_embeddings",
            self.max_position_embeddings.or(self.n_positions),
        )
    }

    /// The norm epsilon under any of its spellings.
    pub fn norm_eps(&self) -> Result<f64, FieldError> {
        required(
            "layer_norm_eps",
            self.layer_norm_eps
                .or(self.rms_norm_eps)
                .or(self.layer_norm_epsilon)
                .or(self.norm_eps),
        )
    }

    /// The activation under any of its spellings (Gemma's `hidden_activation` first).
    pub fn activation(&self) -> Option<&str> {
        self.hidden_activation
            .as_deref()
            .or(self.hidden_act.as_deref())
            .or(self.activation_function.as_deref())
    }

    /// The BOS id (the first one if the config lists several).
    pub fn bos_id(&self) -> Option<u32> {
        match self.bos_token_id.as_ref()? {
            Value::Number(n) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
            Value::Array(ids) => ids.first()?.as_u64().and_then(|v| u32::try_from(v).ok()),
            _ => None,
        }
    }

    /// Rotary settings of the global (`full_attention`) layers from either spelling;
    /// `default_base` when no θ is given. Rules other than default, linear, dynamic and
    /// llama3 are errors.
    pub fn rope(&self, default_base: f64) -> Result<Rope, FieldError> {
        let legacy_base = self
            .rope_theta
            .or(self.global_rope_theta)
            .or(self.rotary_emb_base);
        match &self.rope_parameters {
            Some(RopeParamsField::PerType(map)) => {
                let params = map.get("full_attention").cloned().unwrap_or_default();
                self.rope_from(
                    &params,
                    "rope_parameters.full_attention",
                    legacy_base,
                    default_base,
                )
            }
            Some(RopeParamsField::Flat(p)) => {
                self.rope_from(p, "rope_parameters", legacy_base, default_base)
            }
            None => {
                let params = self.rope_scaling.clone().unwrap_or_default();
                self.rope_from(&params, "rope_scaling", legacy_base, default_base)
            }
        }
    }

    /// Rotary settings of the local (`sliding_attention`) layers of Gemma 3 and ModernBERT:
    /// their own dict, or the legacy `rope_local_base_freq` / `local_rope_theta` without
    /// scaling; `default_base` when neither names θ.
    pub fn local_rope(&self, default_base: f64) -> Result<Rope, FieldError> {
        let legacy_base = self.rope_local_base_freq.or(self.local_rope_theta);
        let params = match &self.rope_parameters {
            Some(RopeParamsField::PerType(map)) => {
                map.get("sliding_attention").cloned().unwrap_or_default()
            }
            _ => RopeParams::default(),
        };
        let fraction = self.partial_rotary_factor;
        let mut rope = self.rope_from(
            &params,
            "rope_parameters.sliding_attention",
            legacy_base,
            default_base,
        )?;
        rope.fraction = rope.fraction.or(fraction);
        Ok(rope)
    }

    /// The layer types: `layer_types` if the config lists them (checked against the layer
    /// count and the two known kinds), else `default(i)` for each layer `i` (each family's
    /// rule from before `layer_types`).
    pub fn layer_types(
        &self,
        default: impl Fn(usize) -> &'static str,
    ) -> Result<Vec<String>, FieldError> {
        let n = self.n_layers()?;
        let Some(types) = &self.layer_types else {
            return Ok((0..n).map(|i| default(i).to_string()).collect());
        };
        if types.len() != n {
            return Err(field_error(
                "layer_types",
                format!("lists {} layers, the model has {n}", types.len()),
            ));
        }
        if let Some(bad) = types.iter().find(|t| !LAYER_TYPES.contains(&t.as_str())) {
            return Err(field_error(
                "layer_types",
                format!("layer type `{bad}` is not supported (supported: full_attention, sliding_attention)"),
            ));
        }
        Ok(types.clone())
    }

    /// The override that gives the `sliding_attention` layers of `types` their window
    /// and (if it differs from the model's) their position encoding; none if no layer
    /// slides or nothing differs.
    pub fn sliding_layers(
        types: &[String],
        window: Option<usize>,
        position: Option<PositionConfig>,
    ) -> Vec<LayerOverride> {
        let layers: Vec<usize> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| *t == "sliding_attention")
            .map(|(i, _)| i)
            .collect();
        if layers.is_empty() || (window.is_none() && position.is_none()) {
            return Vec::new();
        }
        vec![LayerOverride {
            layers,
            sliding_window: window,
            position,
            ..LayerOverride::default()
        }]
    }

    fn rope_from(
        &self,
        params: &RopeParams,
        field: &str,
        legacy_base: Option<f64>,
        default_base: f64,
    ) -> Result<Rope, FieldError> {
        let base = params.rope_theta.or(legacy_base).unwrap_or(default_base);
        let fraction = params
            .partial_rotary_factor
            .or(self.partial_rotary_factor)
            .or(self.rotary_pct);
        let factor = || {
            params
                .factor
                .ok_or_else(|| field_error(&format!("{field}.factor"), "missing"))
        };
        let scaling = match params.rule() {
            "default" => None,
            "linear" => Some(RopeScaling::Linear { factor: factor()? }),
            "dynamic" => Some(RopeScaling::Dynamic {
                factor: factor()?,
                original_max: self.max_positions()?,
            }),
            "llama3" => {
                let get = |name: &str, v: Option<f64>| {
                    v.ok_or_else(|| field_error(&format!("{field}.{name}"), "missing"))
                };
                Some(RopeScaling::Llama3 {
                    factor: factor()?,
                    low_freq_factor: get("low_freq_factor", params.low_freq_factor)?,
                    high_freq_factor: get("high_freq_factor", params.high_freq_factor)?,
                    original_max: params.original_max_position_embeddings.ok_or_else(|| {
                        field_error(
                            &format!("{field}.original_max_position_embeddings"),
                            "missing",
                        )
                    })?,
                })
            }
            other => {
                return Err(field_error(
                    &format!("{field}.rope_type"),
                    format!(
                        "rotary scaling `{other}` is not supported \
                         (supported: default, linear, dynamic, llama3)"
                    ),
                ))
            }
        };
        Ok(Rope {
            base,
            scaling,
            fraction,
        })
    }
}

/// A required field's value, or a "missing" error naming it.
pub fn required<T>(field: &str, value: Option<T>) -> Result<T, FieldError> {
    value.ok_or_else(|| field_error(field, "missing"))
}

/// The MLP kind for a Hugging Face activation name, gated (SwiGLU/GeGLU) or plain.
pub fn mlp_kind(activation: &str, gated: bool) -> Result<MlpKind, FieldError> {
    let kind = match (activation, gated) {
        ("gelu" | "gelu_python", false) => MlpKind::Gelu,
        ("gelu_new" | "gelu_pytorch_tanh" | "gelu_fast", false) => MlpKind::GeluTanh,
        ("relu", false) => MlpKind::Relu,
        ("silu" | "swish", true) => MlpKind::Swiglu,
        ("gelu" | "gelu_python", true) => MlpKind::Geglu,
        ("gelu_new" | "gelu_pytorch_tanh" | "gelu_fast", true) => MlpKind::GegluTanh,
        _ => {
            let shape = if gated { "gated" } else { "plain" };
            return Err(field_error(
                "hidden_act",
                format!("activation `{activation}` in a {shape} MLP is not supported"),
            ));
        }
    };
    Ok(kind)
}

/// The rotated share of a head as sinkscope stores it, rounded down to whole dimensions
/// as transformers does (`int(head_dim · factor)`), so `ModelConfig::rotary_dim` agrees.
fn rotary_fraction(head_dim: usize, factor: f64) -> f64 {
    (head_dim as f64 * factor).floor() / head_dim as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> HfConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn both_rope_spellings_resolve_alike() {
        let legacy = parse(
            r#"{"rope_theta": 500.0, "max_position_embeddings": 64,
                "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 32}}"#,
        );
        let v5 = parse(
            r#"{"max_position_embeddings": 64,
                "rope_parameters": {"rope_type": "llama3", "rope_theta": 500.0, "factor": 8.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32}}"#,
        );
        assert_eq!(legacy.rope(1e4).unwrap(), v5.rope(1e4).unwrap());
        let linear = parse(r#"{"rope_scaling": {"type": "linear", "factor": 2.0}}"#);
        let rope = linear.rope(1e4).unwrap();
        assert_eq!(rope.base, 1e4);
        assert_eq!(rope.scaling, Some(RopeScaling::Linear { factor: 2.0 }));
        let neox = parse(r#"{"rotary_emb_base": 5000, "rotary_pct": 0.25}"#);
        assert_eq!(neox.rope(1e4).unwrap().fraction, Some(0.25));
        assert_eq!(neox.rope(1e4).unwrap().base, 5000.0);
    }

    #[test]
    fn unsupported_rope_rules_and_missing_fields_are_named() {
        let yarn = parse(r#"{"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}"#);
        let (field, msg) = yarn.rope(1e4).unwrap_err();
        assert_eq!(field, "rope_parameters.rope_type");
        assert!(msg.contains("yarn"), "{msg}");
        let no_factor = parse(r#"{"rope_scaling": {"type": "linear"}}"#);
        assert_eq!(no_factor.rope(1e4).unwrap_err().0, "rope_scaling.factor");
        assert_eq!(parse("{}").d_model().unwrap_err().0, "hidden_size");
    }

    #[test]
    fn epsilon_and_bos_spellings() {
        assert_eq!(
            parse(r#"{"layer_norm_epsilon": 1e-5}"#).norm_eps().unwrap(),
            1e-5
        );
        assert_eq!(parse(r#"{"rms_norm_eps": 1e-6}"#).norm_eps().unwrap(), 1e-6);
        assert_eq!(parse(r#"{"bos_token_id": [7, 8]}"#).bos_id(), Some(7));
        assert_eq!(parse(r#"{"bos_token_id": null}"#).bos_id(), None);
    }

    #[test]
    fn partial_rotary_rounds_down_like_transformers() {
        // Phi-2 fixture: head_dim 10, factor 0.4 → 4 dims; 0.45 would also give 4.
        assert_eq!(rotary_fraction(10, 0.4) * 10.0, 4.0);
        assert_eq!(rotary_fraction(10, 0.45) * 10.0, 4.0);
    }
}
