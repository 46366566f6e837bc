//! Phi-3 / Phi-4-mini (transformers `modeling_phi3.py`): a Llama-shaped decoder with the q,
//! k and v projections fused in one `qkv_proj` (rows `[q | k | v]`) and the gate and up
//! projections in one `gate_up_proj` (rows `[gate | up]`), optional partial rotary
//! (`partial_rotary_factor`) and a causal `sliding_window` on every layer.

use crate::import::families::llama::NORMS_AND_HEAD;
use crate::import::families::{rule, Family, How, Qkv, Rule, Table};
use crate::import::hf_config::{mlp_kind, FieldError, HfConfig};
use crate::model::{BlockKind, ModelConfig, NormKind};

/// The family.
pub const FAMILY: Family = Family {
    name: "phi3",
    model_types: &["phi3"],
    config,
    table,
};

const QKV: &str = "model.layers.{i}.self_attn.qkv_proj.weight";
const GATE_UP: &str = "model.layers.{i}.mlp.gate_up_proj.weight";

const RULES: &[Rule] = &[
    rule("embed.weight", "model.embed_tokens.weight", How::Copy),
    rule("blocks.{i}.attn.q.weight", QKV, How::StackedQkv(Qkv::Q)),
    rule("blocks.{i}.attn.k.weight", QKV, How::StackedQkv(Qkv::K)),
    rule("blocks.{i}.attn.v.weight", QKV, How::StackedQkv(Qkv::V)),
    rule(
        "blocks.{i}.attn.o.weight",
        "model.layers.{i}.self_attn.o_proj.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.mlp.gate.weight",
        GATE_UP,
        How::StackedGateUp(false),
    ),
    rule(
        "blocks.{i}.mlp.up.weight",
        GATE_UP,
        How::StackedGateUp(true),
    ),
    rule(
        "blocks.{i}.mlp.down.weight",
        "model.layers.{i}.mlp.down_proj.weight",
        How::Linear,
    ),
];

/// Ignorable: `rotary_emb.inv_freq`, a cached frequency buffer.
static TABLE: Table = Table::decoder(&[RULES, NORMS_AND_HEAD]);

fn table(_: &HfConfig) -> &'static Table {
    &TABLE
}

fn config(hf: &HfConfig) -> Result<ModelConfig, FieldError> {
    Ok(ModelConfig {
        norm: NormKind::Rms,
        block: BlockKind::Pre,
        mlp: mlp_kind(hf.activation().unwrap_or("silu"), true)?,
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(false),
        sliding_window: hf.sliding_window,
        ..hf.rotary_decoder(1.0)?
    })
}
