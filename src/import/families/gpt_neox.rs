//! GPT-NeoX / Pythia (transformers `modeling_gpt_neox.py`): a fused `query_key_value`
//! projection interleaved per head (rows `[h0 q, h0 k, h0 v, h1 q, …]`, each head_dim
//! rows, as the model's `view(…, heads, 3·head_dim).chunk(3)` reads it), a parallel residual
//! with two LayerNorms (`x + attn(ln1 x) + mlp(ln2 x)`, or sequential when
//! `use_parallel_residual` is false), partial rotary (`rotary_pct`, 0.25) and a separate
//! output matrix `embed_out`.

use crate::import::families::{rule, Family, How, Qkv, Rule, Table};
use crate::import::hf_config::{mlp_kind, FieldError, HfConfig};
use crate::model::{BlockKind, ModelConfig, NormKind};

/// The family.
pub const FAMILY: Family = Family {
    name: "gpt_neox",
    model_types: &["gpt_neox"],
    config,
    table,
};

/// The fused projection, read once per part.
const QKV_W: &str = "gpt_neox.layers.{i}.attention.query_key_value.weight";
const QKV_B: &str = "gpt_neox.layers.{i}.attention.query_key_value.bias";

const RULES: &[Rule] = &[
    rule("embed.weight", "gpt_neox.embed_in.weight", How::Copy),
    rule(
        "blocks.{i}.attn_norm.weight",
        "gpt_neox.layers.{i}.input_layernorm.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn_norm.bias",
        "gpt_neox.layers.{i}.input_layernorm.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn.q.weight",
        QKV_W,
        How::HeadInterleavedQkv(Qkv::Q),
    ),
    rule(
        "blocks.{i}.attn.q.bias",
        QKV_B,
        How::HeadInterleavedQkv(Qkv::Q),
    ),
    rule(
        "blocks.{i}.attn.k.weight",
        QKV_W,
        How::HeadInterleavedQkv(Qkv::K),
    ),
    rule(
        "blocks.{i}.attn.k.bias",
        QKV_B,
        How::HeadInterleavedQkv(Qkv::K),
    ),
    rule(
        "blocks.{i}.attn.v.weight",
        QKV_W,
        How::HeadInterleavedQkv(Qkv::V),
    ),
    rule(
        "blocks.{i}.attn.v.bias",
        QKV_B,
        How::HeadInterleavedQkv(Qkv::V),
    ),
    rule(
        "blocks.{i}.attn.o.weight",
        "gpt_neox.layers.{i}.attention.dense.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.attn.o.bias",
        "gpt_neox.layers.{i}.attention.dense.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp_norm.weight",
        "gpt_neox.layers.{i}.post_attention_layernorm.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp_norm.bias",
        "gpt_neox.layers.{i}.post_attention_layernorm.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.up.weight",
        "gpt_neox.layers.{i}.mlp.dense_h_to_4h.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.mlp.up.bias",
        "gpt_neox.layers.{i}.mlp.dense_h_to_4h.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.down.weight",
        "gpt_neox.layers.{i}.mlp.dense_4h_to_h.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.mlp.down.bias",
        "gpt_neox.layers.{i}.mlp.dense_4h_to_h.bias",
        How::Copy,
    ),
    rule(
        "final_norm.weight",
        "gpt_neox.final_layer_norm.weight",
        How::Copy,
    ),
    rule(
        "final_norm.bias",
        "gpt_neox.final_layer_norm.bias",
        How::Copy,
    ),
    rule("lm_head.weight", "embed_out.weight", How::Linear),
];

/// Ignorable: `attention.bias` / `attention.masked_bias` are the causal-mask buffers and
/// `rotary_emb.inv_freq` the cached frequencies that older Pythia checkpoints saved.
static TABLE: Table = Table {
    rules: &[RULES],
    body_prefix: "gpt_neox.",
    aliases: &[],
    ignored: &[
        ".attention.bias",
        ".attention.masked_bias",
        "rotary_emb.inv_freq",
    ],
    tied_copies: &["embed_out.weight"],
};

fn table(_: &HfConfig) -> &'static Table {
    &TABLE
}

fn config(hf: &HfConfig) -> Result<ModelConfig, FieldError> {
    let bias = hf.attention_bias.unwrap_or(true);
    let block = if hf.use_parallel_residual.unwrap_or(true) {
        BlockKind::Parallel
    } else {
        BlockKind::Pre
    };
    Ok(ModelConfig {
        norm: NormKind::Layer,
        block,
        mlp: mlp_kind(hf.activation().unwrap_or("gelu"), false)?,
        qkv_bias: bias,
        out_bias: bias,
        mlp_bias: true,
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(false),
        ..hf.rotary_decoder(0.25)?
    })
}
