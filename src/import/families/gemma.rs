//! Gemma (transformers `modeling_gemma.py`): a Llama-shaped decoder with three twists —
//! embeddings multiplied by √d (in float32, as `GemmaTextScaledWordEmbedding` does), RMSNorm
//! scaling by `1 + w` (folded into the weight here, so the model's plain RMSNorm applies),
//! and a GELU-tanh gated MLP. Tied embeddings, often multi-query attention, and a head_dim
//! set apart from d / heads.

use crate::import::families::llama::{ATTENTION_QKV, PROJECTIONS};
use crate::import::families::{rule, Family, How, Rule, Table};
use crate::import::hf_config::{mlp_kind, rotary_fraction, FieldError, HfConfig};
use crate::model::{Arch, BlockKind, ModelConfig, NormKind, PositionConfig, PositionKind};

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
static TABLE: Table = Table {
    rules: &[ATTENTION_QKV, PROJECTIONS, NORMS],
    body_prefix: "model.",
    aliases: &[],
    ignored: &["rotary_emb.inv_freq"],
    tied_copies: &["lm_head.weight"],
};

fn table(_: &HfConfig) -> &'static Table {
    &TABLE
}

fn config(hf: &HfConfig) -> Result<ModelConfig, FieldError> {
    let (d, heads) = (hf.d_model()?, hf.n_heads()?);
    let head_dim = hf.head_dim.unwrap_or(d / heads.max(1));
    let rope = hf.rope(10_000.0)?;
    let bias = hf.attention_bias.unwrap_or(false);
    // transformers reads `hidden_activation` and ignores the legacy `hidden_act` ("gelu" in
    // the original configs, run as the tanh approximation).
    let act = hf
        .hidden_activation
        .as_deref()
        .unwrap_or("gelu_pytorch_tanh");
    Ok(ModelConfig {
        arch: Arch::Decoder,
        vocab_size: hf.vocab_size()?,
        d_model: d,
        n_layers: hf.n_layers()?,
        n_heads: heads,
        n_kv_heads: Some(hf.num_key_value_heads.unwrap_or(heads)),
        head_dim: Some(head_dim),
        d_ff: hf.d_ff()?,
        max_seq_len: hf.max_positions()?,
        position: PositionConfig {
            kind: PositionKind::Rope,
            base: rope.base,
            fraction: rotary_fraction(head_dim, rope.fraction.unwrap_or(1.0)),
            scaling: rope.scaling,
            ..PositionConfig::default()
        },
        norm: NormKind::Rms,
        norm_eps: hf.norm_eps()?,
        block: BlockKind::Pre,
        mlp: mlp_kind(act, true)?,
        qkv_bias: bias,
        out_bias: bias,
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(true),
        embed_scale: Some((d as f64).sqrt()),
        final_norm: true,
        ..ModelConfig::default()
    })
}
