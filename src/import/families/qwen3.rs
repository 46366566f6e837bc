//! Qwen3 (transformers `modeling_qwen3.py`): Qwen2's decoder with an RMSNorm on each head
//! of q and k before the rotation (`q_norm`, `k_norm`, weights `[head_dim]` shared by the
//! heads), an explicit `head_dim`, no q/k/v biases unless `attention_bias`, and per-layer
//! sliding windows (`layer_types`, or `use_sliding_window` from `max_window_layers` on).

use crate::import::families::llama::{windows, ATTENTION_QKV, NORMS_AND_HEAD, PROJECTIONS};
use crate::import::families::{rule, Family, How, Rule, Table};
use crate::import::hf_config::{mlp_kind, FieldError, HfConfig};
use crate::model::{BlockKind, ModelConfig, NormKind, QkNorm};

/// The family.
pub const FAMILY: Family = Family {
    name: "qwen3",
    model_types: &["qwen3"],
    config,
    table,
};

/// The q/k norms under Hugging Face's `self_attn.{q,k}_norm` names (Qwen3, OLMo 2).
pub const QK_NORMS: &[Rule] = &[
    rule(
        "blocks.{i}.attn.q_norm.weight",
        "model.layers.{i}.self_attn.q_norm.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn.k_norm.weight",
        "model.layers.{i}.self_attn.k_norm.weight",
        How::Copy,
    ),
];

/// Ignorable: `rotary_emb.inv_freq`, a cached frequency buffer.
static TABLE: Table = Table::decoder(&[ATTENTION_QKV, QK_NORMS, PROJECTIONS, NORMS_AND_HEAD]);

fn table(_: &HfConfig) -> &'static Table {
    &TABLE
}

fn config(hf: &HfConfig) -> Result<ModelConfig, FieldError> {
    let bias = hf.attention_bias.unwrap_or(false);
    let mut cfg = ModelConfig {
        norm: NormKind::Rms,
        block: BlockKind::Pre,
        mlp: mlp_kind(hf.activation().unwrap_or("silu"), true)?,
        qkv_bias: bias,
        out_bias: bias,
        qk_norm: QkNorm::PerHead,
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(false),
        ..hf.rotary_decoder(1.0)?
    };
    windows(hf, &mut cfg)?;
    Ok(cfg)
}
