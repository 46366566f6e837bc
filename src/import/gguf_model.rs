//! llama.cpp GGUF models into sinkscope's transformer: the model config from the
//! `{arch}.*` metadata, the tensors by llama.cpp's names (`blk.N.attn_q.weight`, …)
//! dequantized to f32 with the Llama q/k rows un-permuted back to Hugging Face's rotary
//! layout, and the tokenizer from `tokenizer.ggml.*`.
//!
//! Supported architectures: `llama` (which llama.cpp also uses for Mistral and SmolLM) and
//! `qwen2` (q/k/v biases; written unpermuted, as its rotary is NeoX-style). Reading the
//! file itself is [`crate::import::gguf`]'s job.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::import::error::ImportErrorKind;
use crate::import::families::{rule, How, Qkv, Rule, Table};
use crate::import::gguf::{GgufErrorKind, GgufFile};
use crate::import::source::TensorSource;
use crate::import::tokenizer::GgufVocab;
use crate::model::config::RopeScaling;
use crate::model::{Arch, BlockKind, MlpKind, ModelConfig, NormKind, PositionConfig, PositionKind};

/// `general.architecture` values sinkscope imports.
pub const ARCHITECTURES: &[&str] = &["llama", "qwen2"];

/// Tensors every supported architecture names alike.
const COMMON: &[Rule] = &[
    rule("embed.weight", "token_embd.weight", How::Copy),
    rule(
        "blocks.{i}.attn_norm.weight",
        "blk.{i}.attn_norm.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.attn.v.weight",
        "blk.{i}.attn_v.weight",
        How::Linear,
    ),
    rule("blocks.{i}.attn.v.bias", "blk.{i}.attn_v.bias", How::Copy),
    rule(
        "blocks.{i}.attn.o.weight",
        "blk.{i}.attn_output.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.attn.o.bias",
        "blk.{i}.attn_output.bias",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp_norm.weight",
        "blk.{i}.ffn_norm.weight",
        How::Copy,
    ),
    rule(
        "blocks.{i}.mlp.gate.weight",
        "blk.{i}.ffn_gate.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.mlp.up.weight",
        "blk.{i}.ffn_up.weight",
        How::Linear,
    ),
    rule(
        "blocks.{i}.mlp.down.weight",
        "blk.{i}.ffn_down.weight",
        How::Linear,
    ),
    rule("final_norm.weight", "output_norm.weight", How::Copy),
    rule("lm_head.weight", "output.weight", How::Linear),
];

/// llama.cpp permutes Llama q/k rows for its interleaved rotary kernel.
const PERMUTED_QK: &[Rule] = &[
    rule(
        "blocks.{i}.attn.q.weight",
        "blk.{i}.attn_q.weight",
        How::LlamaCppQk(Qkv::Q),
    ),
    rule(
        "blocks.{i}.attn.q.bias",
        "blk.{i}.attn_q.bias",
        How::LlamaCppQk(Qkv::Q),
    ),
    rule(
        "blocks.{i}.attn.k.weight",
        "blk.{i}.attn_k.weight",
        How::LlamaCppQk(Qkv::K),
    ),
    rule(
        "blocks.{i}.attn.k.bias",
        "blk.{i}.attn_k.bias",
        How::LlamaCppQk(Qkv::K),
    ),
];

/// Architectures with NeoX-style rotary (Qwen2) are written as Hugging Face has them.
const PLAIN_QK: &[Rule] = &[
    rule(
        "blocks.{i}.attn.q.weight",
        "blk.{i}.attn_q.weight",
        How::Linear,
    ),
    rule("blocks.{i}.attn.q.bias", "blk.{i}.attn_q.bias", How::Copy),
    rule(
        "blocks.{i}.attn.k.weight",
        "blk.{i}.attn_k.weight",
        How::Linear,
    ),
    rule("blocks.{i}.attn.k.bias", "blk.{i}.attn_k.bias", How::Copy),
];

/// Ignorable: none. (`rope_freqs.weight`, Llama 3's frequency factors, is refused in the
/// config instead: the model could not honour it.)
static LLAMA: Table = Table {
    rules: &[COMMON, PERMUTED_QK],
    body_prefix: "",
    aliases: &[],
    ignored: &[],
    tied_copies: &["output.weight"],
};

static QWEN2: Table = Table {
    rules: &[COMMON, PLAIN_QK],
    body_prefix: "",
    aliases: &[],
    ignored: &[],
    tied_copies: &["output.weight"],
};

/// The tensor table for an architecture checked by [`config`].
pub fn table(arch: &str) -> &'static Table {
    if arch == "qwen2" {
        &QWEN2
    } else {
        &LLAMA
    }
}

fn config_error(path: &Path, field: &str, message: impl Into<String>) -> crate::Error {
    ImportErrorKind::Config {
        field: field.to_string(),
        message: message.into(),
    }
    .at(path)
    .into()
}

/// The sinkscope config a GGUF file's metadata describes.
pub fn config(file: &GgufFile) -> Result<ModelConfig> {
    let path = file.path();
    let arch = file.architecture()?;
    if !ARCHITECTURES.contains(&arch) {
        return Err(ImportErrorKind::UnknownModelType {
            found: format!("{arch} (GGUF general.architecture)"),
            supported: ARCHITECTURES.iter().map(|a| a.to_string()).collect(),
        }
        .at(path)
        .into());
    }
    let m = file.metadata();
    let key = |k: &str| format!("{arch}.{k}");
    let d: usize = m.value(&key("embedding_length"))?;
    let heads: usize = m.value(&key("attention.head_count"))?;
    let kv: usize = m
        .value_opt(&key("attention.head_count_kv"))?
        .unwrap_or(heads);
    let head_dim: usize = m
        .value_opt(&key("attention.key_length"))?
        .unwrap_or(d / heads.max(1));
    let rotary: usize = m
        .value_opt(&key("rope.dimension_count"))?
        .unwrap_or(head_dim);
    check_rotary_dim(path, &key("rope.dimension_count"), rotary, head_dim)?;
    let vocab: usize = match m.value_opt(&key("vocab_size"))? {
        Some(v) => v,
        None => file.tensor_info("token_embd.weight")?.shape()[0],
    };
    if file.tensor_info("rope_freqs.weight").is_ok() {
        return Err(config_error(
            path,
            "rope_freqs.weight",
            "per-frequency rotary factors (Llama 3.1 scaling) are not supported in GGUF",
        ));
    }
    let scaling = match m.value_opt::<&str>(&key("rope.scaling.type"))? {
        None | Some("none") => m
            .value_opt::<f64>(&key("rope.scale_linear"))?
            .map(|factor| RopeScaling::Linear { factor }),
        Some("linear") => Some(RopeScaling::Linear {
            factor: m.value(&key("rope.scaling.factor"))?,
        }),
        Some(other) => {
            return Err(config_error(
                path,
                &key("rope.scaling.type"),
                format!("rotary scaling `{other}` is not supported (supported: none, linear)"),
            ))
        }
    };
    let has = |name: &str| file.tensor_info(name).is_ok();
    Ok(ModelConfig {
        arch: Arch::Decoder,
        vocab_size: vocab,
        d_model: d,
        n_layers: m.value(&key("block_count"))?,
        n_heads: heads,
        n_kv_heads: Some(kv),
        head_dim: Some(head_dim),
        d_ff: m.value(&key("feed_forward_length"))?,
        max_seq_len: m.value(&key("context_length"))?,
        position: PositionConfig {
            kind: PositionKind::Rope,
            base: m.value_opt(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            fraction: rotary as f64 / head_dim as f64,
            scaling,
            ..PositionConfig::default()
        },
        norm: NormKind::Rms,
        norm_eps: m.value(&key("attention.layer_norm_rms_epsilon"))?,
        block: BlockKind::Pre,
        mlp: MlpKind::Swiglu,
        qkv_bias: has("blk.0.attn_q.bias"),
        out_bias: has("blk.0.attn_output.bias"),
        tie_embeddings: !has("output.weight"),
        final_norm: true,
        ..ModelConfig::default()
    })
}

/// Rotations act on pairs inside one head: the rotated width must be even and at
/// most the head's.
fn check_rotary_dim(path: &Path, field: &str, rotary: usize, head_dim: usize) -> Result<()> {
    if rotary % 2 == 1 || rotary > head_dim || rotary == 0 {
        return Err(config_error(
            path,
            field,
            format!("{rotary} rotated dimensions: must be even, positive and at most the head width {head_dim}"),
        ));
    }
    Ok(())
}

/// A vocabulary text can be encoded and named with: tokens present, and a model type
/// that fits what the file carries (SentencePiece needs a score per token, byte-level
/// BPE needs merges).
fn check_vocab(path: &Path, v: &GgufVocab) -> Result<()> {
    if v.tokens.is_empty() {
        return Err(config_error(
            path,
            "tokenizer.ggml.tokens",
            "missing or empty: tokens could not be named",
        ));
    }
    if v.model == "llama" && v.scores.len() != v.tokens.len() {
        return Err(config_error(
            path,
            "tokenizer.ggml.model",
            format!(
                "`llama` (SentencePiece) needs a score per token, found {} scores for {} tokens{}",
                v.scores.len(),
                v.tokens.len(),
                if v.merges.is_empty() {
                    ""
                } else {
                    " and BPE merges"
                }
            ),
        ));
    }
    if v.model == "gpt2" && v.merges.is_empty() {
        return Err(config_error(
            path,
            "tokenizer.ggml.merges",
            "`gpt2` (byte-level BPE) needs merges, found none",
        ));
    }
    Ok(())
}

/// The tokenizer description in `tokenizer.ggml.*` (empty vocabulary if there is none).
pub fn vocab(file: &GgufFile) -> Result<GgufVocab> {
    let m = file.metadata();
    let model = m
        .value_opt::<&str>("tokenizer.ggml.model")?
        .unwrap_or("none");
    let strings = |k: &str| -> Result<Vec<String>> {
        Ok(m.value_opt::<Vec<&str>>(k)?
            .unwrap_or_default()
            .into_iter()
            .map(str::to_string)
            .collect())
    };
    // llama.cpp's defaults: SentencePiece vocabularies add BOS, BPE ones do not.
    let spm = model == "llama";
    let vocab = GgufVocab {
        model: model.to_string(),
        pre: m
            .value_opt::<&str>("tokenizer.ggml.pre")?
            .map(str::to_string),
        tokens: strings("tokenizer.ggml.tokens")?,
        scores: m.value_opt("tokenizer.ggml.scores")?.unwrap_or_default(),
        token_types: m
            .value_opt("tokenizer.ggml.token_type")?
            .unwrap_or_default(),
        merges: strings("tokenizer.ggml.merges")?,
        bos: m.value_opt("tokenizer.ggml.bos_token_id")?,
        unk: m.value_opt("tokenizer.ggml.unknown_token_id")?,
        add_bos: m.value_opt("tokenizer.ggml.add_bos_token")?.unwrap_or(spm),
        add_space_prefix: m
            .value_opt("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(true),
    };
    check_vocab(file.path(), &vocab)?;
    Ok(vocab)
}

/// A GGUF file as a [`TensorSource`]; dequantization happens per tensor, on read.
pub struct GgufSource(pub GgufFile);

impl TensorSource for GgufSource {
    fn names(&self) -> Vec<String> {
        self.0
            .tensors()
            .iter()
            .map(|t| t.name().to_string())
            .collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.0.tensor_info(name).ok().map(|t| t.shape())
    }

    fn origin(&self) -> PathBuf {
        self.0.path().to_path_buf()
    }

    fn file_of(&self, _name: &str) -> PathBuf {
        self.origin()
    }

    fn check_readable(&self, name: &str) -> Result<()> {
        let info = self.0.tensor_info(name)?;
        if info.ggml_type().is_supported() {
            Ok(())
        } else {
            Err(GgufErrorKind::UnsupportedGgmlType {
                tensor: name.to_string(),
                ggml_type: info.ggml_type(),
            }
            .at(self.0.path())
            .into())
        }
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        Ok(self.0.tensor_f32(name)?.0)
    }
}
