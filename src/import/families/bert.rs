//! BERT and RoBERTa / XLM-RoBERTa (transformers `modeling_bert.py`, `modeling_roberta.py`,
//! `modeling_xlm_roberta.py`): post-LayerNorm encoders with learned absolute positions,
//! a token-type embedding (row 0 added to every token), a LayerNorm on the embeddings, and
//! the masked-LM head `LayerNorm(gelu(x W + b))` followed by the tied decoder and its bias.
//!
//! In sinkscope's post-norm block, `attn_norm` is the norm after the attention residual
//! (`attention.output.LayerNorm`) and `mlp_norm` the one after the MLP residual
//! (`output.LayerNorm`). RoBERTa's position ids start at `pad_token_id + 1` (2), so its
//! table carries two unused leading rows; sinkscope's position `offset` skips them.
//!
//! The two variants share the encoder rules and differ in the body prefix and head names.

use crate::import::families::{rule, Family, How, Rule, Table};
use crate::import::hf_config::{field_error, mlp_kind, required, FieldError, HfConfig};
use crate::model::{Arch, BlockKind, ModelConfig, NormKind, PositionConfig, PositionKind};

/// The family.
pub const FAMILY: Family = Family {
    name: "bert",
    model_types: &["bert", "roberta", "xlm-roberta"],
    config,
    table,
};

const ENCODER: &[Rule] = &[
    rule(
        "embed.weight",
        "{body}embeddings.word_embeddings.weight",
        How::Copy,
    ),
    rule(
        "position.table",
        "{body}embeddings.position_embeddings.weight",
        How::Copy,
    ),
    rule(
        "token_type.weight",
        "{body}embeddings.token_type_embeddings.weight",
        How::Copy,
    ),
    rule(
        "embed_norm.weight",
        "{body}embeddings.LayerNorm.weight",
        How::Copy,
    ),
    rule(
        "embed_norm.bias",
        "{body}embeddings.LayerNorm.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn.q.weight",
        "{body}encoder.layer.{i}.attention.self.query.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.attn.q.bias",
        "{body}encoder.layer.{i}.attention.self.query.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn.k.weight",
        "{body}encoder.layer.{i}.attention.self.key.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.attn.k.bias",
        "{body}encoder.layer.{i}.attention.self.key.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn.v.weight",
        "{body}encoder.layer.{i}.attention.self.value.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.attn.v.bias",
        "{body}encoder.layer.{i}.attention.self.value.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn.o.weight",
        "{body}encoder.layer.{i}.attention.output.dense.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.attn.o.bias",
        "{body}encoder.layer.{i}.attention.output.dense.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn_norm.weight",
        "{body}encoder.layer.{i}.attention.output.LayerNorm.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn_norm.bias",
        "{body}encoder.layer.{i}.attention.output.LayerNorm.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.up.weight",
        "{body}encoder.layer.{i}.intermediate.dense.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.mlp.up.bias",
        "{body}encoder.layer.{i}.intermediate.dense.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.down.weight",
        "{body}encoder.layer.{i}.output.dense.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.mlp.down.bias",
        "{body}encoder.layer.{i}.output.dense.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp_norm.weight",
        "{body}encoder.layer.{i}.output.LayerNorm.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp_norm.bias",
        "{body}encoder.layer.{i}.output.LayerNorm.bias",
        How::Copy,
    ),
];

/// `lm_bias` is the bias of a tied decoder, `lm_head.*` an untied one: only the parameters
/// the config creates are read.
const BERT_HEAD: &[Rule] = &[
    rule(
        "head_transform.dense.weight",
        "cls.predictions.transform.dense.weight",
        How::Linear,
    ),
    rule(
        "head_transform.dense.bias",
        "cls.predictions.transform.dense.bias",
        How::Copy,
    ),
    rule(
        "head_transform.norm.weight",
        "cls.predictions.transform.LayerNorm.weight",
        How::Copy,
    ),
    rule(
        "head_transform.norm.bias",
        "cls.predictions.transform.LayerNorm.bias",
        How::Copy,
    ),
    rule("lm_bias", "cls.predictions.bias", How::Copy),
    rule(
        "lm_head.weight",
        "cls.predictions.decoder.weight",
        How::Linear,
    ),
    rule("lm_head.bias", "cls.predictions.bias", How::Copy),
];

const ROBERTA_HEAD: &[Rule] = &[
    rule(
        "head_transform.dense.weight",
        "lm_head.dense.weight",
        How::Linear,
    ),
    rule("head_transform.dense.bias", "lm_head.dense.bias", How::Copy),
    rule(
        "head_transform.norm.weight",
        "lm_head.layer_norm.weight",
        How::Copy,
    ),
    rule(
        "head_transform.norm.bias",
        "lm_head.layer_norm.bias",
        How::Copy,
    ),
    rule("lm_bias", "lm_head.bias", How::Copy),
    rule("lm_head.weight", "lm_head.decoder.weight", How::Linear),
    rule("lm_head.bias", "lm_head.bias", How::Copy),
];

/// Ignorable in both: `embeddings.position_ids` (an index buffer), the pooler (the [CLS]
/// classifier input, not on the masked-LM path). In BERT also the next-sentence head
/// (`cls.seq_relationship`) and `cls.predictions.decoder.bias`, which transformers ties to
/// `cls.predictions.bias`; in RoBERTa `lm_head.decoder.bias`, tied to `lm_head.bias`.
static BERT: Table = Table {
    rules: &[ENCODER, BERT_HEAD],
    body_prefix: "bert.",
    aliases: &[
        ("LayerNorm.weight", "LayerNorm.gamma"),
        ("LayerNorm.bias", "LayerNorm.beta"),
    ],
    ignored: &[
        "embeddings.position_ids",
        "pooler.dense.weight",
        "pooler.dense.bias",
        "cls.seq_relationship.weight",
        "cls.seq_relationship.bias",
        "cls.predictions.decoder.bias",
    ],
    tied_copies: &["cls.predictions.decoder.weight"],
};

static ROBERTA: Table = Table {
    rules: &[ENCODER, ROBERTA_HEAD],
    body_prefix: "roberta.",
    aliases: &[],
    ignored: &[
        "embeddings.position_ids",
        "pooler.dense.weight",
        "pooler.dense.bias",
        "lm_head.decoder.bias",
    ],
    tied_copies: &["lm_head.decoder.weight"],
};

fn is_roberta(hf: &HfConfig) -> bool {
    matches!(hf.model_type.as_deref(), Some("roberta" | "xlm-roberta"))
}

fn table(hf: &HfConfig) -> &'static Table {
    if is_roberta(hf) {
        &ROBERTA
    } else {
        &BERT
    }
}

fn config(hf: &HfConfig) -> Result<ModelConfig, FieldError> {
    if let Some(kind) = hf.position_embedding_type.as_deref() {
        if kind != "absolute" {
            return Err(field_error(
                "position_embedding_type",
                format!("`{kind}` positions are not supported (only `absolute`)"),
            ));
        }
    }
    // RoBERTa: position ids run from padding_idx + 1, so the first rows are never read.
    let offset = if is_roberta(hf) {
        required("pad_token_id", hf.pad_token_id)? as usize + 1
    } else {
        0
    };
    let table_rows = hf.max_positions()?;
    let max_seq_len = table_rows
        .checked_sub(offset)
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            field_error(
                "max_position_embeddings",
                format!("{table_rows} rows leave no position after the offset {offset}"),
            )
        })?;
    Ok(ModelConfig {
        arch: Arch::Encoder,
        vocab_size: hf.vocab_size()?,
        d_model: hf.d_model()?,
        n_layers: hf.n_layers()?,
        n_heads: hf.n_heads()?,
        d_ff: hf.d_ff()?,
        max_seq_len,
        position: PositionConfig {
            kind: PositionKind::Learned,
            offset,
            ..PositionConfig::default()
        },
        norm: NormKind::Layer,
        norm_eps: hf.norm_eps()?,
        block: BlockKind::Post,
        mlp: mlp_kind(hf.activation().unwrap_or("gelu"), false)?,
        qkv_bias: true,
        out_bias: true,
        mlp_bias: true,
        lm_head_bias: true,
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(true),
        embed_norm: true,
        type_vocab_size: hf.type_vocab_size.unwrap_or(2),
        final_norm: false,
        head_transform: true,
        ..ModelConfig::default()
    })
}
