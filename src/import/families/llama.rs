//! Llama, Mistral and Qwen2 (transformers `modeling_llama.py`, `modeling_mistral.py`,
//! `modeling_qwen2.py`): pre-norm RMSNorm decoders with SwiGLU MLPs, rotate-half RoPE and
//! grouped-query attention.
//!
//! The three differ only in switches: Qwen2 always has q/k/v biases (and no o_proj bias),
//! Llama has `attention_bias` (all four projections) and `mlp_bias`, Mistral a causal
//! `sliding_window`. Gemma shares the projection rules ([`PROJECTIONS`]).

use crate::import::families::{rule, Family, How, Rule, Table};
use crate::import::hf_config::{field_error, mlp_kind, FieldError, HfConfig};
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

const NORMS_AND_HEAD: &[Rule] = &[
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
static TABLE: Table = Table {
    rules: &[ATTENTION_QKV, PROJECTIONS, NORMS_AND_HEAD],
    body_prefix: "model.",
    aliases: &[],
    ignored: &["rotary_emb.inv_freq"],
    tied_copies: &["lm_head.weight"],
};

fn table(_: &HfConfig) -> &'static Table {
    &TABLE
}

/// The causal window: Mistral's `sliding_window`; Qwen2's only with `use_sliding_window`.
/// Windows on some layers only (`layer_types` mixing kinds) are not supported.
fn sliding_window(hf: &HfConfig, qwen2: bool) -> Result<Option<usize>, FieldError> {
    if let Some(types) = &hf.layer_types {
        let sliding = types.iter().filter(|t| *t == "sliding_attention").count();
        return match sliding {
            0 => Ok(None),
            n if n == types.len() => Ok(hf.sliding_window),
            _ => Err(field_error(
                "layer_types",
                "sliding windows on some layers only are not supported",
            )),
        };
    }
    match (qwen2, hf.use_sliding_window.unwrap_or(false)) {
        (false, _) => Ok(hf.sliding_window),
        (true, false) => Ok(None),
        (true, true) => Err(field_error(
            "use_sliding_window",
            "Qwen2's per-layer sliding windows (max_window_layers) are not supported",
        )),
    }
}

fn config(hf: &HfConfig) -> Result<ModelConfig, FieldError> {
    let qwen2 = hf.model_type.as_deref() == Some("qwen2");
    let bias = hf.attention_bias.unwrap_or(false);
    Ok(ModelConfig {
        norm: NormKind::Rms,
        block: BlockKind::Pre,
        mlp: mlp_kind(hf.activation().unwrap_or("silu"), true)?,
        qkv_bias: qwen2 || bias,
        out_bias: !qwen2 && bias,
        mlp_bias: hf.mlp_bias.unwrap_or(false),
        lm_head_bias: false,
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(false),
        sliding_window: sliding_window(hf, qwen2)?,
        ..hf.rotary_decoder(1.0)?
    })
}
