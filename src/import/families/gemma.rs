//! Gemma (transformers `modeling_gemma.py`): a Llama-shaped decoder with three twists —
//! embeddings multiplied by √d (in float32, as `GemmaTextScaledWordEmbedding` does), RMSNorm
//! scaling by `1 + w` (folded into the weight here, so the model's plain RMSNorm applies),
//! and a GELU-tanh gated MLP. Tied embeddings, often multi-query attention, and a head_dim
//! set apart from d / heads.

use crate::import::families::llama::{ATTENTION_QKV, PROJECTIONS};
use crate::import::families::{rule, Family, How, Rule, Table};
use crate::import::hf_config::{mlp_kind, FieldError, HfConfig};
use crate::model::{BlockKind, ModelConfig, NormKind};

/// The family.
pub const FAMILY: Family = Family {
    name: "gemma",
    model_types: &["gemma"],
    config,
    table,
};

const NORMS: &[Rule] = &[
    rule(
        "blocks.{i}.attn_norm.weight",
        "model.layers.{i}.input_layernorm.weight",
        How::NormPlusOne,
    ),
    rule(
        "blocks.{i}.mlp_norm.weight",
        "model.layers.{i}.post_attention_layernorm.weight",
        How::NormPlusOne,
    ),
    rule("final_norm.weight", "model.norm.weight", How::NormPlusOne),
    rule("lm_head.weight", "lm_head.weight", How::Linear),
];

/// Ignorable: `rotary_emb.inv_freq`, a cached frequency buffer.
static TABLE: Table = Table::decoder(&[ATTENTION_QKV, PROJECTIONS, NORMS]);

fn table(_: &HfConfig) -> &'static Table {
    &TABLE
}

fn config(hf: &HfConfig) -> Result<ModelConfig, FieldError> {
    let bias = hf.attention_bias.unwrap_or(false);
    // transformers reads `hidden_activation` and ignores the legacy `hidden_act` ("gelu" in
    // the original configs, run as the tanh approximation).
    let act = hf
        .hidden_activation
        .as_deref()
        .unwrap_or("gelu_pytorch_tanh");
    let base = hf.rotary_decoder(1.0)?;
    Ok(ModelConfig {
        norm: NormKind::Rms,
        block: BlockKind::Pre,
        mlp: mlp_kind(act, true)?,
        qkv_bias: bias,
        out_bias: bias,
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(true),
        embed_scale: Some((base.d_model as f64).sqrt()),
        ..base
    })
}
