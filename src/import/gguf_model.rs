//! llama.cpp GGUF models through the same family tables as Hugging Face checkpoints:
//! `general.architecture` names a family ([`ARCHITECTURES`]), the `{arch}.*` metadata is
//! read into the [`HfConfig`] fields the family reads, and [`GgufSource`] hands the
//! tensors out under their Hugging Face names, dequantized to f32, with what llama.cpp's
//! `convert_hf_to_gguf.py` changed undone (Llama's q/k row permutation, Gemma's norms
//! stored as `1 + w`, GPT-2's Conv1D weights transposed). The one family list then serves
//! both formats. Reading the file itself is [`crate::import::gguf`]'s job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::import::error::ImportErrorKind;
use crate::import::families::{self, Family, Table};
use crate::import::gguf::{GgufErrorKind, GgufFile};
use crate::import::hf_config::{HfConfig, RopeParams};
use crate::import::source::TensorSource;
use crate::import::tokenizer::GgufVocab;
use crate::import::transform::{self, Op};
use crate::model::ModelConfig;

/// One GGUF architecture: the Hugging Face family it was converted from, and how the
/// converter named and changed its tensors.
#[derive(Debug)]
pub struct GgufArch {
    /// `general.architecture`.
    pub name: &'static str,
    /// The Hugging Face `model_type` whose family reads it.
    pub model_type: &'static str,
    /// Hugging Face prefix of block `i`'s tensors (`{i}` for the index).
    block_prefix: &'static str,
    /// GGUF names outside the blocks → Hugging Face names.
    top: &'static [(&'static str, &'static str)],
    /// GGUF block tensor stems (`attn_q`) → Hugging Face module paths (`self_attn.q_proj`).
    blocks: &'static [(&'static str, &'static str)],
    /// q/k rows permuted for llama.cpp's interleaved rotary (Llama, Mistral).
    permuted_qk: bool,
    /// Norm weights stored as `1 + w` (Gemma family).
    norms_plus_one: bool,
    /// 2-D block weights stored transposed (GPT-2's Conv1D).
    transposed: bool,
}

const LLAMA_TOP: &[(&str, &str)] = &[
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
];

const LLAMA_BLOCKS: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

const GEMMA2_BLOCKS: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("post_attention_norm", "post_attention_layernorm"),
    ("ffn_norm", "pre_feedforward_layernorm"),
    ("post_ffw_norm", "post_feedforward_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

const PHI3_BLOCKS: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_qkv", "self_attn.qkv_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_up", "mlp.gate_up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

const GPT2_TOP: &[(&str, &str)] = &[
    ("token_embd", "transformer.wte"),
    ("position_embd", "transformer.wpe"),
    ("output_norm", "transformer.ln_f"),
    ("output", "lm_head"),
];

const GPT2_BLOCKS: &[(&str, &str)] = &[
    ("attn_norm", "ln_1"),
    ("attn_qkv", "attn.c_attn"),
    ("attn_output", "attn.c_proj"),
    ("ffn_norm", "ln_2"),
    ("ffn_up", "mlp.c_fc"),
    ("ffn_down", "mlp.c_proj"),
];

const fn arch(
    name: &'static str,
    model_type: &'static str,
    blocks: &'static [(&'static str, &'static str)],
) -> GgufArch {
    GgufArch {
        name,
        model_type,
        block_prefix: "model.layers.{i}.",
        top: LLAMA_TOP,
        blocks,
        permuted_qk: false,
        norms_plus_one: false,
        transposed: false,
    }
}

/// `general.architecture` values sinkscope imports, each onto a Hugging Face family.
pub const ARCHITECTURES: &[GgufArch] = &[
    GgufArch {
        permuted_qk: true,
        ..arch("llama", "llama", LLAMA_BLOCKS)
    },
    arch("qwen2", "qwen2", LLAMA_BLOCKS),
    arch("qwen3", "qwen3", LLAMA_BLOCKS),
    GgufArch {
        norms_plus_one: true,
        ..arch("gemma", "gemma", LLAMA_BLOCKS)
    },
    GgufArch {
        norms_plus_one: true,
        ..arch("gemma2", "gemma2", GEMMA2_BLOCKS)
    },
    GgufArch {
        norms_plus_one: true,
        ..arch("gemma3", "gemma3_text", GEMMA2_BLOCKS)
    },
    arch("phi3", "phi3", PHI3_BLOCKS),
    GgufArch {
        block_prefix: "transformer.h.{i}.",
        top: GPT2_TOP,
        transposed: true,
        ..arch("gpt2", "gpt2", GPT2_BLOCKS)
    },
];

/// The architecture entry of a file, or an error listing the supported ones.
pub fn architecture(file: &GgufFile) -> Result<&'static GgufArch> {
    let name = file.architecture()?;
    ARCHITECTURES
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| {
            ImportErrorKind::UnknownModelType {
                found: format!("{name} (GGUF general.architecture)"),
                supported: ARCHITECTURES.iter().map(|a| a.name.to_string()).collect(),
            }
            .at(file.path())
            .into()
        })
}

fn family(a: &GgufArch) -> &'static Family {
    families::by_model_type(a.model_type).expect("every GGUF architecture names a family")
}

/// The tensor table of a file's family.
pub fn table(file: &GgufFile) -> Result<&'static Table> {
    let a = architecture(file)?;
    Ok((family(a).table)(&hf_config(file, a)?))
}

fn config_error(path: &Path, field: &str, message: impl Into<String>) -> crate::Error {
    ImportErrorKind::Config {
        field: field.to_string(),
        message: message.into(),
    }
    .at(path)
    .into()
}

/// The Hugging Face config fields that `{arch}.*` metadata carries, as llama.cpp reads
/// them (its rules where GGUF stores nothing: Gemma's score scale, Gemma 3's local θ).
fn hf_config(file: &GgufFile, a: &GgufArch) -> Result<HfConfig> {
    let path = file.path();
    let m = file.metadata();
    let key = |k: &str| format!("{}.{k}", a.name);
    let d: usize = m.value(&key("embedding_length"))?;
    let heads: usize = m.value(&key("attention.head_count"))?;
    let layers: usize = m.value(&key("block_count"))?;
    let head_dim: usize = m
        .value_opt(&key("attention.key_length"))?
        .unwrap_or(d / heads.max(1));
    let rotary: Option<usize> = m.value_opt(&key("rope.dimension_count"))?;
    if let Some(r) = rotary {
        check_rotary_dim(path, &key("rope.dimension_count"), r, head_dim)?;
    }
    let vocab: usize = match m.value_opt(&key("vocab_size"))? {
        Some(v) => v,
        None => file.tensor_info("token_embd.weight")?.shape()[0],
    };
    let rope_base: f64 = m.value_opt(&key("rope.freq_base"))?.unwrap_or(10_000.0);
    let llama3 = match file.tensor_info("rope_freqs.weight") {
        Ok(_) => {
            let (factors, _) = file.tensor_f32("rope_freqs.weight")?;
            let dim = rotary.unwrap_or(head_dim);
            Some(
                llama3_from_factors(&factors, rope_base, dim)
                    .map_err(|msg| config_error(path, "rope_freqs.weight", msg))?,
            )
        }
        Err(_) => None,
    };
    let scaling = match m.value_opt::<&str>(&key("rope.scaling.type"))? {
        None | Some("none") => m
            .value_opt::<f64>(&key("rope.scale_linear"))?
            .map(|factor| ("linear", factor)),
        Some("linear") => Some(("linear", m.value(&key("rope.scaling.factor"))?)),
        Some(other) => {
            return Err(config_error(
                path,
                &key("rope.scaling.type"),
                format!("rotary scaling `{other}` is not supported (supported: none, linear)"),
            ))
        }
    };
    let rope = match llama3 {
        Some(l) => l,
        None => RopeParams {
            rope_type: Some(scaling.map_or("default", |s| s.0).to_string()),
            factor: scaling.map(|s| s.1),
            ..RopeParams::default()
        },
    };
    let has = |name: &str| file.tensor_info(name).is_ok();
    // llama.cpp scales Gemma 2/3 scores by 1/√head_dim, except the 27B models (46 and 62
    // layers) by 1/√(d / heads), as their query_pre_attn_scalar says.
    let query_pre_attn_scalar = match (a.name, layers) {
        ("gemma2", 46) | ("gemma3", 62) => Some((d / heads.max(1)) as f64),
        ("gemma2" | "gemma3", _) => Some(head_dim as f64),
        _ => None,
    };
    let eps: Option<f64> = m.value_opt(&key("attention.layer_norm_rms_epsilon"))?;
    let ln_eps: Option<f64> = m.value_opt(&key("attention.layer_norm_epsilon"))?;
    Ok(HfConfig {
        model_type: Some(a.model_type.to_string()),
        vocab_size: Some(vocab),
        hidden_size: Some(d),
        num_hidden_layers: Some(layers),
        num_attention_heads: Some(heads),
        num_key_value_heads: Some(
            m.value_opt(&key("attention.head_count_kv"))?
                .unwrap_or(heads),
        ),
        head_dim: Some(head_dim),
        intermediate_size: Some(m.value(&key("feed_forward_length"))?),
        max_position_embeddings: Some(m.value(&key("context_length"))?),
        rms_norm_eps: eps,
        layer_norm_eps: ln_eps,
        tie_word_embeddings: Some(!has("output.weight") || a.name == "gpt2"),
        rope_theta: m.value_opt(&key("rope.freq_base"))?,
        rope_scaling: Some(rope),
        partial_rotary_factor: rotary.map(|r| r as f64 / head_dim as f64),
        attention_bias: Some(has("blk.0.attn_q.bias") || has("blk.0.attn_qkv.bias")),
        sliding_window: m.value_opt(&key("attention.sliding_window"))?,
        attn_logit_softcapping: m.value_opt(&key("attn_logit_softcapping"))?,
        final_logit_softcapping: m.value_opt(&key("final_logit_softcapping"))?,
        query_pre_attn_scalar,
        // llama.cpp's Gemma 3: local layers at θ 10 000, unscaled.
        rope_local_base_freq: (a.name == "gemma3").then_some(10_000.0),
        ..HfConfig::default()
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

/// Llama 3's rotary scaling recovered from llama.cpp's `rope_freqs` (the factor each
/// frequency is divided by, which the converter computes with Llama 3's rule), so the
/// model's own `llama3` rule reproduces them. The rule depends on its context lengths
/// only through their ratios, so `original_max` is fixed at 8192 and the two boundary
/// factors are solved for; factors that no such rule gives are an error.
fn llama3_from_factors(factors: &[f32], base: f64, dim: usize) -> Result<RopeParams, String> {
    if factors.len() != dim / 2 {
        return Err(format!(
            "{} factors for {} rotary frequencies",
            factors.len(),
            dim / 2
        ));
    }
    let f: Vec<f64> = factors.iter().map(|&x| f64::from(x)).collect();
    if f.iter().any(|x| !x.is_finite() || *x <= 0.0) {
        return Err("factors must be positive and finite".into());
    }
    let factor = f.iter().cloned().fold(1.0, f64::max);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1.0);
    // Wavelengths 2π/θ_i of the unscaled frequencies, increasing with i.
    let wavelen: Vec<f64> = (0..dim / 2)
        .map(|i| 2.0 * std::f64::consts::PI * base.powf(2.0 * i as f64 / dim as f64))
        .collect();
    // smooth_i = (1/f_i − 1/factor) / (1 − 1/factor) = a/λ_i − b on the middle band.
    let smooth: Vec<(f64, f64)> = (0..f.len())
        .filter(|&i| !close(f[i], 1.0) && !close(f[i], factor))
        .map(|i| {
            (
                1.0 / wavelen[i],
                (1.0 / f[i] - 1.0 / factor) / (1.0 - 1.0 / factor),
            )
        })
        .collect();
    let last_high = (0..f.len()).rev().find(|&i| close(f[i], 1.0));
    let first_low = (0..f.len()).find(|&i| close(f[i], factor));
    // Band edges between the classes (midpoints in log-wavelength), where the rule is
    // free to put them.
    let edge = |lo: Option<usize>, hi: Option<usize>| match (lo, hi) {
        (Some(a), Some(b)) if b < wavelen.len() => (wavelen[a] * wavelen[b]).sqrt(),
        (Some(a), _) => wavelen[a] * 1.5,
        (None, Some(b)) => wavelen[b] / 1.5,
        (None, None) => 1.0,
    };
    let (a, b) = match smooth.len() {
        0 => {
            // smooth = 1 at the high edge, 0 at the low edge.
            let hi = edge(last_high, last_high.map(|i| i + 1).or(first_low));
            let lo = edge(first_low.map(|i| i.saturating_sub(1)), first_low).max(hi * 1.5);
            let a = 1.0 / (1.0 / hi - 1.0 / lo);
            (a, a / lo)
        }
        1 => {
            let (x, y) = smooth[0];
            let hi = edge(last_high, last_high.map(|i| i + 1));
            let a = (1.0 - y) / (1.0 / hi - x);
            (a, a * x - y)
        }
        _ => {
            let (x0, y0) = smooth[0];
            let (x1, y1) = smooth[smooth.len() - 1];
            let a = (y0 - y1) / (x0 - x1);
            (a, a * x0 - y0)
        }
    };
    // a = O/(H − L), b = L/(H − L) with O = original_max.
    let original_max = 8192usize;
    let o = original_max as f64;
    let span = o / a;
    let (low, high) = (b * span, (b + 1.0) * span);
    let params = RopeParams {
        rope_type: Some("llama3".into()),
        factor: Some(factor),
        low_freq_factor: Some(low),
        high_freq_factor: Some(high),
        original_max_position_embeddings: Some(original_max),
        ..RopeParams::default()
    };
    // The rule must give back every factor.
    let (lw, hw) = (o / low, o / high);
    for (i, &fi) in f.iter().enumerate() {
        let w = wavelen[i];
        let want = if w < hw {
            1.0
        } else if w > lw {
            factor
        } else {
            let s = (o / w - low) / (high - low);
            1.0 / ((1.0 - s) / factor + s)
        };
        if !(a.is_finite() && b.is_finite() && low > 0.0 && high > low && close(fi, want)) {
            return Err(format!(
                "factor {fi} of frequency {i} does not follow Llama 3's rotary scaling"
            ));
        }
    }
    Ok(params)
}

/// The sinkscope config a GGUF file's metadata describes, through its family.
pub fn config(file: &GgufFile) -> Result<ModelConfig> {
    let a = architecture(file)?;
    let hf = hf_config(file, a)?;
    Ok((family(a).config)(&hf).map_err(|e| HfConfig::error_at(file.path(), e))?)
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

/// A GGUF file as the Hugging Face checkpoint it was converted from: tensors under their
/// Hugging Face names, the converter's changes undone, dequantized per tensor on read.
/// Tensors the architecture does not name keep their GGUF names (and are reported unused).
#[derive(Debug)]
pub struct GgufSource {
    file: GgufFile,
    /// Hugging Face name → (GGUF name, steps that undo the converter).
    names: BTreeMap<String, (String, Vec<Op>)>,
}

impl GgufSource {
    /// Maps `file`'s tensors onto Hugging Face names.
    pub fn new(file: GgufFile) -> Result<Self> {
        let a = architecture(&file)?;
        let m = file.metadata();
        let heads: usize = m.value(&format!("{}.attention.head_count", a.name))?;
        let kv: usize = m
            .value_opt(&format!("{}.attention.head_count_kv", a.name))?
            .unwrap_or(heads);
        let mut names = BTreeMap::new();
        for t in file.tensors() {
            let gguf = t.name().to_string();
            let Some((stem, kind)) = gguf.rsplit_once('.') else {
                continue;
            };
            let (hf, block_stem) = match stem.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
                Some((i, rest)) => {
                    let Some((_, path)) = a.blocks.iter().find(|(g, _)| *g == rest) else {
                        continue;
                    };
                    (
                        format!("{}{path}.{kind}", a.block_prefix.replace("{i}", i)),
                        Some(rest),
                    )
                }
                None => {
                    let Some((_, hf)) = a.top.iter().find(|(g, _)| *g == stem) else {
                        continue;
                    };
                    (format!("{hf}.{kind}"), None)
                }
            };
            let mut ops = Vec::new();
            if a.permuted_qk {
                match block_stem {
                    Some("attn_q") => ops.push(Op::Unpermute(heads)),
                    Some("attn_k") => ops.push(Op::Unpermute(kv)),
                    _ => {}
                }
            }
            if a.norms_plus_one && stem.ends_with("norm") && kind == "weight" {
                ops.push(Op::SubOne);
            }
            if a.transposed && block_stem.is_some() && kind == "weight" && t.shape().len() == 2 {
                ops.push(Op::Transpose);
            }
            names.insert(hf, (gguf, ops));
        }
        Ok(Self { file, names })
    }

    /// The GGUF tensor behind `name` and the steps from it, if `name` is a mapped one.
    fn lookup<'a>(&'a self, name: &'a str) -> (&'a str, &'a [Op]) {
        match self.names.get(name) {
            Some((gguf, ops)) => (gguf, ops),
            None => (name, &[]),
        }
    }
}

impl TensorSource for GgufSource {
    fn names(&self) -> Vec<String> {
        let mapped: std::collections::BTreeSet<&str> =
            self.names.values().map(|(g, _)| g.as_str()).collect();
        self.names
            .keys()
            .cloned()
            .chain(
                self.file
                    .tensors()
                    .iter()
                    .map(|t| t.name())
                    // `rope_freqs` is read into the config (Llama 3's scaling).
                    .filter(|n| !mapped.contains(n) && *n != "rope_freqs.weight")
                    .map(str::to_string),
            )
            .collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let (gguf, ops) = self.lookup(name);
        let shape = self.file.tensor_info(gguf).ok()?.shape();
        transform::derive_shape(&shape, ops).ok()
    }

    fn origin(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }

    fn file_of(&self, _name: &str) -> PathBuf {
        self.origin()
    }

    fn check_readable(&self, name: &str) -> Result<()> {
        let (gguf, _) = self.lookup(name);
        let info = self.file.tensor_info(gguf)?;
        if info.ggml_type().is_supported() {
            Ok(())
        } else {
            Err(GgufErrorKind::UnsupportedGgmlType {
                tensor: gguf.to_string(),
                ggml_type: info.ggml_type(),
            }
            .at(self.file.path())
            .into())
        }
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let (gguf, ops) = self.lookup(name);
        let (data, _) = self.file.tensor_f32(gguf)?;
        let shape = self.file.tensor_info(gguf)?.shape();
        let (data, _) = transform::apply(data, shape, ops).map_err(|e| {
            ImportErrorKind::Apply(format!("tensor `{gguf}`: {e}")).at(self.file.path())
        })?;
        Ok(data)
    }
}
