//! Llama, Mistral and Qwen2 (transformers `modeling_llama.py`, `modeling_mistral.py`,
//! `modeling_qwen2.py`): pre-norm RMSNorm decoders with SwiGLU MLPs, rotate-half RoPE and
//! grouped-query attention.
//!
//! The three differ only in switches: Qwen2 always has q/k/v biases (and no o_proj bias),
//! Llama has `attention_bias` (all four projections) and `mlp_bias`, Mistral a causal
//! `sliding_window`. Gemma shares the projection rules ([`PROJECTIONS`]).

use crate::import::families::{rule, Family, How, Rule, Table};
use crate::import::hf_config::{mlp_kind, FieldError, HfConfig};
use crate::model::{BlockKind, ModelConfig, NormKind};

/// The family.
pub const FAMILY: Family = Family {
    name: "llama",
    model_types: &["llama", "mistral", "qwen2"],
    config,
    table,
};

/// Query, key and value projections (weights and optional biases) under Hugging
/// Face's `self_attn.{q,k,v}_proj` names, shared with Gemma and Phi.
pub const ATTENTION_QKV: &[Rule] = &[
    rule(
        "blocks.{i}.attn.q.weight",
        "model.layers.{i}.self_attn.q_proj.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.attn.q.bias",
        "model.layers.{i}.self_attn.q_proj.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn.k.weight",
        "model.layers.{i}.self_attn.k_proj.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.attn.k.bias",
        "model.layers.{i}.self_attn.k_proj.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn.v.weight",
        "model.layers.{i}.self_attn.v_proj.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.attn.v.bias",
        "model.layers.{i}.self_attn.v_proj.bias",
        How::Copy,
    ),
];

/// Embeddings, attention output and MLP projections, shared with Gemma.
pub const PROJECTIONS: &[Rule] = &[
    rule("embed.weight", "model.embed_tokens.weight", How::Copy),
    rule(
        "blocks.{i}.attn.o.weight",
        "model.layers.{i}.self_attn.o_proj.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.attn.o.bias",
        "model.layers.{i}.self_attn.o_proj.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.gate.weight",
        "model.layers.{i}.mlp.gate_proj.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.mlp.gate.bias",
        "model.layers.{i}.mlp.gate_proj.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.up.weight",
        "model.layers.{i}.mlp.up_proj.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.mlp.up.bias",
        "model.layers.{i}.mlp.up_proj.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.down.weight",
        "model.layers.{i}.mlp.down_proj.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.mlp.down.bias",
        "model.layers.{i}.mlp.down_proj.bias",
        How::Copy,
    ),
];

/// Pre-norms, the final norm and an untied head, shared with Qwen3 and SmolLM3.
pub const NORMS_AND_HEAD: &[Rule] = &[
    rule(
        "blocks.{i}.attn_norm.weight",
        "model.layers.{i}.input_layernorm.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp_norm.weight",
        "model.layers.{i}.post_attention_layernorm.weight",
        How::Copy,
    ),
    rule("final_norm.weight", "model.norm.weight", How::Copy),
    rule("lm_head.weight", "lm_head.weight", How::Linear),
];

/// Ignorable: `rotary_emb.inv_freq` is a cached frequency buffer older checkpoints saved.
/// Shared with SmolLM3.
pub static TABLE: Table = Table::decoder(&[ATTENTION_QKV, PROJECTIONS, NORMS_AND_HEAD]);

/// The one table of the family.
pub fn table(_: &HfConfig) -> &'static Table {
    &TABLE
}

/// The causal windows: Mistral's `sliding_window` on every layer; Qwen2's (and Qwen3's)
/// only with `use_sliding_window`, on the layers from `max_window_layers` on; or the layers
/// `layer_types` marks sliding. Shared with Qwen3 and SmolLM3.
pub fn windows(hf: &HfConfig, cfg: &mut ModelConfig) -> Result<(), FieldError> {
    let qwen = matches!(hf.model_type.as_deref(), Some("qwen2" | "qwen3"));
    let window = match (qwen, hf.use_sliding_window.unwrap_or(false)) {
        (false, _) => hf.sliding_window,
        (true, false) => None,
        (true, true) => hf.sliding_window,
    };
    if hf.layer_types.is_none() && !qwen {
        cfg.sliding_window = window;
        return Ok(());
    }
    let from = hf.max_window_layers.unwrap_or(0);
    let types = hf.layer_types(|i| {
        if window.is_some() && i >= from {
            "sliding_attention"
        } else {
            "full_attention"
        }
    })?;
    cfg.layers
        .extend(HfConfig::sliding_layers(&types, window, None));
    Ok(())
}

/// Llama's switches, shared with SmolLM3.
pub fn config(hf: &HfConfig) -> Result<ModelConfig, FieldError> {
    let qwen2 = hf.model_type.as_deref() == Some("qwen2");
    let bias = hf.attention_bias.unwrap_or(false);
    let mut cfg = ModelConfig {
        norm: NormKind::Rms,
        block: BlockKind::Pre,
        mlp: mlp_kind(hf.activation().unwrap_or("silu"), true)?,
        qkv_bias: qwen2 || bias,
        out_bias: !qwen2 && bias,
        mlp_bias: hf.mlp_bias.unwrap_or(false),
        lm_head_bias: false,
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(false),
        ..hf.rotary_decoder(1.0)?
    };
    windows(hf, &mut cfg)?;
    Ok(cfg)
}
