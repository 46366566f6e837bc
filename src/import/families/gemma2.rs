//! Gemma 2 and Gemma 3's text model (transformers `modeling_gemma2.py`,
//! `modeling_gemma3.py`): Gemma's decoder (embeddings × √d, RMSNorm × (1 + w), GELU-tanh
//! gated MLP) with norms on both sides of each sublayer (`input_layernorm` /
//! `post_attention_layernorm` around attention, `pre_feedforward_layernorm` /
//! `post_feedforward_layernorm` around the MLP), scores scaled by
//! `query_pre_attn_scalar^-1/2`, and local (sliding-window) layers interleaved with
//! global ones by `layer_types`.
//!
//! Gemma 2 soft-caps the attention logits and the final logits (`c · tanh(x / c)`) and
//! alternates local and global layers. Gemma 3 drops the caps, normalises each head of q
//! and k (with 1 + w), makes every sixth layer global (`sliding_window_pattern`) and gives
//! the local layers their own rotary base (`rope_local_base_freq`, or the
//! `sliding_attention` entry of `rope_parameters`).

use crate::import::families::llama::{ATTENTION_QKV, PROJECTIONS};
use crate::import::families::{rule, Family, How, Rule, Table};
use crate::import::hf_config::{mlp_kind, FieldError, HfConfig};
use crate::model::{BlockKind, ModelConfig, NormKind, QkNorm};

/// The family.
pub const FAMILY: Family = Family {
    name: "gemma2",
    model_types: &["gemma2", "gemma3_text"],
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
        "blocks.{i}.attn_post_norm.weight",
        "model.layers.{i}.post_attention_layernorm.weight",
        How::NormPlusOne,
    ),
    rule(
        "blocks.{i}.mlp_norm.weight",
        "model.layers.{i}.pre_feedforward_layernorm.weight",
        How::NormPlusOne,
    ),
    rule(
        "blocks.{i}.mlp_post_norm.weight",
        "model.layers.{i}.post_feedforward_layernorm.weight",
        How::NormPlusOne,
    ),
    rule(
        "blocks.{i}.attn.q_norm.weight",
        "model.layers.{i}.self_attn.q_norm.weight",
        How::NormPlusOne,
    ),
    rule(
        "blocks.{i}.attn.k_norm.weight",
        "model.layers.{i}.self_attn.k_norm.weight",
        How::NormPlusOne,
    ),
    rule("final_norm.weight", "model.norm.weight", How::NormPlusOne),
    rule("lm_head.weight", "lm_head.weight", How::Linear),
];

/// Ignorable: `rotary_emb.inv_freq` / `rotary_emb_local.inv_freq`, cached frequency buffers.
static TABLE: Table = Table {
    ignored: &["inv_freq"],
    ..Table::decoder(&[ATTENTION_QKV, PROJECTIONS, NORMS])
};

fn table(_: &HfConfig) -> &'static Table {
    &TABLE
}

fn config(hf: &HfConfig) -> Result<ModelConfig, FieldError> {
    let gemma3 = hf.model_type.as_deref() == Some("gemma3_text");
    let bias = hf.attention_bias.unwrap_or(false);
    let act = hf
        .hidden_activation
        .as_deref()
        .unwrap_or("gelu_pytorch_tanh");
    let mut base = hf.rotary_decoder(1.0)?;
    if gemma3 {
        // Gemma 3's global θ defaults to 1e6.
        base.position = hf.rotary_position(hf.rope(1_000_000.0)?, 1.0)?;
    }
    let head_dim = base.head_dim();
    let pattern = hf.sliding_window_pattern.unwrap_or(6).max(1);
    let types = hf.layer_types(|i| {
        let global = if gemma3 {
            (i + 1) % pattern == 0
        } else {
            (i + 1) % 2 == 0
        };
        if global {
            "full_attention"
        } else {
            "sliding_attention"
        }
    })?;
    let local_position = if gemma3 {
        Some(hf.rotary_position(hf.local_rope(10_000.0)?, 1.0)?)
    } else {
        None
    };
    let scalar = hf.query_pre_attn_scalar.unwrap_or(head_dim as f64);
    Ok(ModelConfig {
        norm: NormKind::Rms,
        block: BlockKind::Sandwich,
        mlp: mlp_kind(act, true)?,
        qkv_bias: bias,
        out_bias: bias,
        qk_norm: if gemma3 {
            QkNorm::PerHead
        } else {
            QkNorm::None
        },
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(true),
        embed_scale: Some((base.d_model as f64).sqrt()),
        attn_scale: Some(1.0 / scalar.sqrt()),
        attn_softcap: hf.attn_logit_softcapping,
        final_softcap: hf.final_logit_softcapping,
        layers: HfConfig::sliding_layers(&types, hf.sliding_window, local_position),
        ..base
    })
}
