//! GPT-2 (transformers `modeling_gpt2.py`): pre-LayerNorm decoder with learned absolute
//! positions, GELU-tanh ("gelu_new") MLP, biases everywhere and tied embeddings.
//!
//! Its projections are `Conv1D` modules whose weights are stored `[in, out]` — already
//! burn's layout, so nothing is transposed — and `c_attn` packs q, k and v side by side
//! along the output axis (`[in, q | k | v]`), cut apart here by columns. The original
//! upload names tensors without the `transformer.` prefix.

use crate::import::families::{rule, Family, How, Qkv, Rule, Table};
use crate::import::hf_config::{field_error, mlp_kind, required, FieldError, HfConfig};
use crate::model::{Arch, BlockKind, ModelConfig, NormKind, PositionConfig, PositionKind};

/// The family.
pub const FAMILY: Family = Family {
    name: "gpt2",
    model_types: &["gpt2"],
    config,
    table,
};

const C_ATTN_W: &str = "transformer.h.{i}.attn.c_attn.weight";
const C_ATTN_B: &str = "transformer.h.{i}.attn.c_attn.bias";

const RULES: &[Rule] = &[
    rule("embed.weight", "transformer.wte.weight", How::Copy),
    rule("position.table", "transformer.wpe.weight", How::Copy),
    rule(
        "blocks.{i}.attn_norm.weight",
        "transformer.h.{i}.ln_1.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn_norm.bias",
        "transformer.h.{i}.ln_1.bias",
        How::Copy,
    ),
    rule("blocks.{i}.attn.q.weight", C_ATTN_W, How::ConvQkv(Qkv::Q)),
    rule("blocks.{i}.attn.q.bias", C_ATTN_B, How::ConvQkv(Qkv::Q)),
    rule("blocks.{i}.attn.k.weight", C_ATTN_W, How::ConvQkv(Qkv::K)),
    rule("blocks.{i}.attn.k.bias", C_ATTN_B, How::ConvQkv(Qkv::K)),
    rule("blocks.{i}.attn.v.weight", C_ATTN_W, How::ConvQkv(Qkv::V)),
    rule("blocks.{i}.attn.v.bias", C_ATTN_B, How::ConvQkv(Qkv::V)),
    rule(
        "blocks.{i}.attn.o.weight",
        "transformer.h.{i}.attn.c_proj.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn.o.bias",
        "transformer.h.{i}.attn.c_proj.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp_norm.weight",
        "transformer.h.{i}.ln_2.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp_norm.bias",
        "transformer.h.{i}.ln_2.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.up.weight",
        "transformer.h.{i}.mlp.c_fc.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.up.bias",
        "transformer.h.{i}.mlp.c_fc.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.down.weight",
        "transformer.h.{i}.mlp.c_proj.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.down.bias",
        "transformer.h.{i}.mlp.c_proj.bias",
        How::Copy,
    ),
    rule("final_norm.weight", "transformer.ln_f.weight", How::Copy),
    rule("final_norm.bias", "transformer.ln_f.bias", How::Copy),
    // lm_head is an nn.Linear, not a Conv1D.
    rule("lm_head.weight", "lm_head.weight", How::Linear),
];

/// Ignorable: `attn.bias` and `attn.masked_bias` are the causal-mask buffers older
/// checkpoints saved (the mask is built by the model, not read).
static TABLE: Table = Table {
    rules: &[RULES],
    body_prefix: "transformer.",
    aliases: &[],
    ignored: &[".attn.bias", ".attn.masked_bias"],
    tied_copies: &["lm_head.weight"],
};

fn table(_: &HfConfig) -> &'static Table {
    &TABLE
}

fn config(hf: &HfConfig) -> Result<ModelConfig, FieldError> {
    if hf.scale_attn_by_inverse_layer_idx == Some(true) {
        return Err(field_error(
            "scale_attn_by_inverse_layer_idx",
            "per-layer score scaling is not supported",
        ));
    }
    let d = hf.d_model()?;
    Ok(ModelConfig {
        arch: Arch::Decoder,
        vocab_size: hf.vocab_size()?,
        d_model: d,
        n_layers: hf.n_layers()?,
        n_heads: hf.n_heads()?,
        d_ff: hf.n_inner.or(hf.intermediate_size).unwrap_or(4 * d),
        max_seq_len: required("n_positions", hf.n_positions.or(hf.max_position_embeddings))?,
        position: PositionConfig {
            kind: PositionKind::Learned,
            ..PositionConfig::default()
        },
        norm: NormKind::Layer,
        norm_eps: hf.norm_eps()?,
        block: BlockKind::Pre,
        mlp: mlp_kind(hf.activation().unwrap_or("gelu_new"), false)?,
        qkv_bias: true,
        out_bias: true,
        mlp_bias: true,
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(true),
        attn_scale: (hf.scale_attn_weights == Some(false)).then_some(1.0),
        final_norm: true,
        ..ModelConfig::default()
    })
}
