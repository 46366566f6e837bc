//! Phi-1/Phi-2 (transformers `modeling_phi.py`): one LayerNorm per block feeding attention
//! and MLP in parallel (`x + attn(ln x) + mlp(ln x)`), partial rotary (`partial_rotary_factor`,
//! 0.4 in Phi-2, counted as `int(head_dim · factor)` dimensions), GELU-tanh MLP, biases on
//! every projection including the untied `lm_head`.

use crate::import::families::llama::ATTENTION_QKV;
use crate::import::families::{rule, Family, How, Rule, Table};
use crate::import::hf_config::{field_error, mlp_kind, FieldError, HfConfig};
use crate::model::{BlockKind, ModelConfig, NormKind};

/// The family.
pub const FAMILY: Family = Family {
    name: "phi",
    model_types: &["phi"],
    config,
    table,
};

const RULES: &[Rule] = &[
    rule("embed.weight", "model.embed_tokens.weight", How::Copy),
    rule(
        "blocks.{i}.attn_norm.weight",
        "model.layers.{i}.input_layernorm.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn_norm.bias",
        "model.layers.{i}.input_layernorm.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn.o.weight",
        "model.layers.{i}.self_attn.dense.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.attn.o.bias",
        "model.layers.{i}.self_attn.dense.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.up.weight",
        "model.layers.{i}.mlp.fc1.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.mlp.up.bias",
        "model.layers.{i}.mlp.fc1.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.down.weight",
        "model.layers.{i}.mlp.fc2.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.mlp.down.bias",
        "model.layers.{i}.mlp.fc2.bias",
        How::Copy,
    ),
    rule(
        "final_norm.weight",
        "model.final_layernorm.weight",
        How::Copy,
    ),
    rule("final_norm.bias", "model.final_layernorm.bias", How::Copy),
    rule("lm_head.weight", "lm_head.weight", How::Linear),
    rule("lm_head.bias", "lm_head.bias", How::Copy),
];

/// Ignorable: `rotary_emb.inv_freq`, a cached frequency buffer.
static TABLE: Table = Table::decoder(&[ATTENTION_QKV, RULES]);

fn table(_: &HfConfig) -> &'static Table {
    &TABLE
}

fn config(hf: &HfConfig) -> Result<ModelConfig, FieldError> {
    if hf.qk_layernorm == Some(true) {
        return Err(field_error(
            "qk_layernorm",
            "LayerNorm on q and k is not supported",
        ));
    }
    Ok(ModelConfig {
        norm: NormKind::Layer,
        block: BlockKind::ParallelShared,
        mlp: mlp_kind(hf.activation().unwrap_or("gelu_new"), false)?,
        qkv_bias: true,
        out_bias: true,
        mlp_bias: true,
        lm_head_bias: true,
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(false),
        ..hf.rotary_decoder(0.5)?
    })
}
