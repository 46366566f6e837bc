//! OLMo 2 (transformers `modeling_olmo2.py`): a Llama-shaped decoder whose norms sit on the
//! sublayer outputs only (`x + norm(attn(x))`, `x + norm(mlp(x))`: `post_attention_layernorm`
//! and `post_feedforward_layernorm`, no input norms), with an RMSNorm over the whole q and
//! k projections (`q_norm` `[H·Dh]`, `k_norm` `[Hkv·Dh]`) before the rotation.

use crate::import::families::llama::{ATTENTION_QKV, PROJECTIONS};
use crate::import::families::qwen3::QK_NORMS;
use crate::import::families::{rule, Family, How, Rule, Table};
use crate::import::hf_config::{mlp_kind, FieldError, HfConfig};
use crate::model::{BlockKind, ModelConfig, NormKind, QkNorm};

/// The family.
pub const FAMILY: Family = Family {
    name: "olmo2",
    model_types: &["olmo2"],
    config,
    table,
};

const NORMS: &[Rule] = &[
    rule(
        "blocks.{i}.attn_norm.weight",
        "model.layers.{i}.post_attention_layernorm.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp_norm.weight",
        "model.layers.{i}.post_feedforward_layernorm.weight",
        How::Copy,
    ),
    rule("final_norm.weight", "model.norm.weight", How::Copy),
    rule("lm_head.weight", "lm_head.weight", How::Linear),
];

/// Ignorable: `rotary_emb.inv_freq`, a cached frequency buffer.
static TABLE: Table = Table::decoder(&[ATTENTION_QKV, QK_NORMS, PROJECTIONS, NORMS]);

fn table(_: &HfConfig) -> &'static Table {
    &TABLE
}

fn config(hf: &HfConfig) -> Result<ModelConfig, FieldError> {
    let bias = hf.attention_bias.unwrap_or(false);
    Ok(ModelConfig {
        norm: NormKind::Rms,
        block: BlockKind::PostBranch,
        mlp: mlp_kind(hf.activation().unwrap_or("silu"), true)?,
        qkv_bias: bias,
        out_bias: bias,
        qk_norm: QkNorm::Full,
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(false),
        ..hf.rotary_decoder(1.0)?
    })
}
