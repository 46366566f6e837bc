//! ModernBERT (transformers `modeling_modernbert.py`): an encoder with rotary positions
//! instead of a position table, pre-norm blocks with bias-free LayerNorms (`norm_bias`),
//! no attention norm in layer 0 (its input, the embeddings, is normalised already), a fused
//! `Wqkv` (rows `[q | k | v]`), a GeGLU MLP whose `Wi` stacks `[gate | up]` rows, a final
//! norm, and global layers (every `global_attn_every_n_layers`-th from 0, θ
//! `global_rope_theta`) interleaved with local ones that see keys within
//! `local_attention / 2` on either side (θ `local_rope_theta`). The MLM head is
//! `norm(act(dense x))` and a decoder tied to the embeddings, with a bias.

use crate::import::families::{rule, Family, How, Qkv, Rule, Table};
use crate::import::hf_config::{field_error, mlp_kind, FieldError, HfConfig};
use crate::model::{Arch, BlockKind, ModelConfig, NormKind};

/// The family.
pub const FAMILY: Family = Family {
    name: "modernbert",
    model_types: &["modernbert"],
    config,
    table,
};

const QKV_W: &str = "model.layers.{i}.attn.Wqkv.weight";
const QKV_B: &str = "model.layers.{i}.attn.Wqkv.bias";
const WI_W: &str = "model.layers.{i}.mlp.Wi.weight";
const WI_B: &str = "model.layers.{i}.mlp.Wi.bias";

const RULES: &[Rule] = &[
    rule(
        "embed.weight",
        "model.embeddings.tok_embeddings.weight",
        How::Copy,
    ),
    rule(
        "embed_norm.weight",
        "model.embeddings.norm.weight",
        How::Copy,
    ),
    rule("embed_norm.bias", "model.embeddings.norm.bias", How::Copy),
    rule(
        "blocks.{i}.attn_norm.weight",
        "model.layers.{i}.attn_norm.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn_norm.bias",
        "model.layers.{i}.attn_norm.bias",
        How::Copy,
    ),
    rule("blocks.{i}.attn.q.weight", QKV_W, How::StackedQkv(Qkv::Q)),
    rule("blocks.{i}.attn.q.bias", QKV_B, How::StackedQkv(Qkv::Q)),
    rule("blocks.{i}.attn.k.weight", QKV_W, How::StackedQkv(Qkv::K)),
    rule("blocks.{i}.attn.k.bias", QKV_B, How::StackedQkv(Qkv::K)),
    rule("blocks.{i}.attn.v.weight", QKV_W, How::StackedQkv(Qkv::V)),
    rule("blocks.{i}.attn.v.bias", QKV_B, How::StackedQkv(Qkv::V)),
    rule(
        "blocks.{i}.attn.o.weight",
        "model.layers.{i}.attn.Wo.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.attn.o.bias",
        "model.layers.{i}.attn.Wo.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp_norm.weight",
        "model.layers.{i}.mlp_norm.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp_norm.bias",
        "model.layers.{i}.mlp_norm.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.gate.weight",
        WI_W,
        How::StackedGateUp(false),
    ),
    rule("blocks.{i}.mlp.gate.bias", WI_B, How::StackedGateUp(false)),
    rule("blocks.{i}.mlp.up.weight", WI_W, How::StackedGateUp(true)),
    rule("blocks.{i}.mlp.up.bias", WI_B, How::StackedGateUp(true)),
    rule(
        "blocks.{i}.mlp.down.weight",
        "model.layers.{i}.mlp.Wo.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.mlp.down.bias",
        "model.layers.{i}.mlp.Wo.bias",
        How::Copy,
    ),
    rule("final_norm.weight", "model.final_norm.weight", How::Copy),
    rule("final_norm.bias", "model.final_norm.bias", How::Copy),
    rule(
        "head_transform.dense.weight",
        "head.dense.weight",
        How::Linear,
    ),
    rule("head_transform.dense.bias", "head.dense.bias", How::Copy),
    rule("head_transform.norm.weight", "head.norm.weight", How::Copy),
    rule("head_transform.norm.bias", "head.norm.bias", How::Copy),
    rule("lm_bias", "decoder.bias", How::Copy),
    rule("lm_head.weight", "decoder.weight", How::Linear),
    rule("lm_head.bias", "decoder.bias", How::Copy),
];

/// Ignorable: `inv_freq`, cached rotary frequencies of either layer type.
static TABLE: Table = Table {
    rules: &[RULES],
    body_prefix: "model.",
    aliases: &[],
    ignored: &["inv_freq"],
    tied_copies: &["decoder.weight"],
};

fn table(_: &HfConfig) -> &'static Table {
    &TABLE
}

fn config(hf: &HfConfig) -> Result<ModelConfig, FieldError> {
    let act = hf.activation().unwrap_or("gelu");
    if let Some(head_act) = hf.classifier_activation.as_deref() {
        if head_act != act {
            return Err(field_error(
                "classifier_activation",
                format!(
                    "a head activation `{head_act}` other than the MLP's `{act}` is not supported"
                ),
            ));
        }
    }
    let every = hf.global_attn_every_n_layers.unwrap_or(3).max(1);
    let types = hf.layer_types(|i| {
        if i % every == 0 {
            "full_attention"
        } else {
            "sliding_attention"
        }
    })?;
    let local = hf.rotary_position(hf.local_rope(10_000.0)?, 1.0)?;
    let bias = hf.attention_bias.unwrap_or(false);
    let base = hf.rotary_decoder(1.0)?;
    let norm_bias = hf.norm_bias.unwrap_or(false);
    Ok(ModelConfig {
        arch: Arch::Encoder,
        n_kv_heads: None,
        position: hf.rotary_position(hf.rope(160_000.0)?, 1.0)?,
        norm: NormKind::Layer,
        norm_bias,
        block: BlockKind::Pre,
        mlp: mlp_kind(act, true)?,
        qkv_bias: bias,
        out_bias: bias,
        mlp_bias: hf.mlp_bias.unwrap_or(false),
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(true),
        lm_head_bias: hf.decoder_bias.unwrap_or(true),
        embed_norm: true,
        first_attn_norm: false,
        final_norm: true,
        head_transform: true,
        head_transform_bias: hf.classifier_bias.unwrap_or(false),
        layers: HfConfig::sliding_layers(
            &types,
            Some(hf.local_attention.unwrap_or(128)),
            Some(local),
        ),
        ..base
    })
}
