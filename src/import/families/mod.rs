//! Model families: for each Hugging Face `model_type`, the switches of sinkscope's one
//! transformer ([`ModelConfig`]) and a table from sinkscope parameter names to checkpoint
//! tensor names with the conversion each needs. A family is data, never a copy of the model.
//! GGUF files reach the same tables: [`crate::import::gguf_model`] maps each
//! `general.architecture` onto a family here.
//!
//! A rule reads `("blocks.{i}.attn.q.weight", "model.layers.{i}.self_attn.q_proj.weight",
//! How::Linear)`: `{i}` runs over the blocks. Rules whose sinkscope parameter the config
//! does not create (a bias the config switches off) are simply not used; checkpoint tensors
//! that no used rule reads are an error unless the table lists them as ignorable.

pub mod bert;
pub mod gemma;
pub mod gemma2;
pub mod gpt2;
pub mod gpt_neox;
pub mod llama;
pub mod modernbert;
pub mod olmo2;
pub mod phi;
pub mod phi3;
pub mod qwen3;
pub mod smollm3;

use std::ops::Range;

use crate::import::hf_config::{FieldError, HfConfig};
use crate::import::transform::Op;
use crate::model::ModelConfig;

/// One of the three projections packed in a fused attention tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qkv {
    /// Queries.
    Q,
    /// Keys.
    K,
    /// Values.
    V,
}

/// How a stored tensor becomes a sinkscope parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// Same layout (embeddings, norms, biases, burn-ordered weights).
    Copy,
    /// A PyTorch `nn.Linear` weight `[out, in]`, transposed into burn's `[in, out]`.
    Linear,
    /// Gemma's RMSNorm computes `x̂ · (1 + w)`: stored `w`, loaded as `1 + w`.
    NormPlusOne,
    /// GPT-2's Conv1D `c_attn` `[in, q|k|v]` (already `[in, out]`): this part's columns,
    /// or for the bias this part's entries.
    ConvQkv(Qkv),
    /// GPT-NeoX's `query_key_value` `[3·H·Dh, in]`, interleaved per head
    /// (`[h0 q, h0 k, h0 v, h1 q, …]`, each `Dh` rows): this part's rows of every head,
    /// then transposed (the bias: the same entries).
    HeadInterleavedQkv(Qkv),
    /// A `[q | k | v]` stack along the output rows (Phi-3's `qkv_proj`, ModernBERT's
    /// `Wqkv`): this part's rows, then transposed (the bias: the same entries).
    StackedQkv(Qkv),
    /// A `[gate | up]` stack along the output rows, `d_ff` rows each (Phi-3's
    /// `gate_up_proj`, ModernBERT's `Wi`): the gate's (`false`) or up's (`true`) rows, then
    /// transposed.
    StackedGateUp(bool),
    /// A llama.cpp q or k weight `[out, in]` with rows permuted for its rotary kernel:
    /// un-permuted over this part's head count, then transposed (the bias: un-permuted).
    LlamaCppQk(Qkv),
}

impl How {
    /// The conversion steps for a parameter of rank `rank` in a model configured by `cfg`.
    pub fn ops(self, cfg: &ModelConfig, rank: usize) -> Vec<Op> {
        let weight = rank == 2;
        let (h, kv, dh) = (cfg.n_heads, cfg.kv_heads(), cfg.head_dim());
        let part = |p: Qkv| -> Range<usize> {
            let (q, k) = (h * dh, kv * dh);
            match p {
                Qkv::Q => 0..q,
                Qkv::K => q..q + k,
                Qkv::V => q + k..q + 2 * k,
            }
        };
        match self {
            How::Copy => vec![],
            How::Linear => vec![Op::Transpose],
            How::NormPlusOne => vec![Op::AddOne],
            How::ConvQkv(p) if weight => vec![Op::Cols(part(p))],
            How::ConvQkv(p) => vec![Op::Rows(vec![part(p)])],
            How::HeadInterleavedQkv(p) => {
                let offset = match p {
                    Qkv::Q => 0,
                    Qkv::K => dh,
                    Qkv::V => 2 * dh,
                };
                let rows = (0..h)
                    .map(|head| head * 3 * dh + offset..head * 3 * dh + offset + dh)
                    .collect();
                let mut ops = vec![Op::Rows(rows)];
                if weight {
                    ops.push(Op::Transpose);
                }
                ops
            }
            How::StackedQkv(p) => {
                let mut ops = vec![Op::Rows(vec![part(p)])];
                if weight {
                    ops.push(Op::Transpose);
                }
                ops
            }
            How::StackedGateUp(up) => {
                let ff = cfg.d_ff;
                let rows = if up { ff..2 * ff } else { 0..ff };
                let mut ops = vec![Op::Rows(vec![rows])];
                if weight {
                    ops.push(Op::Transpose);
                }
                ops
            }
            How::LlamaCppQk(p) => {
                let heads = if p == Qkv::Q { h } else { kv };
                let mut ops = vec![Op::Unpermute(heads)];
                if weight {
                    ops.push(Op::Transpose);
                }
                ops
            }
        }
    }
}

/// One table row: sinkscope parameter ← checkpoint tensor, and how.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// sinkscope's dotted parameter name; `{i}` stands for the block index.
    pub ours: &'static str,
    /// The checkpoint's tensor name; `{i}` stands for the block index.
    pub theirs: &'static str,
    /// The conversion.
    pub how: How,
}

/// Shorthand for a [`Rule`], so tables read as tables.
pub const fn rule(ours: &'static str, theirs: &'static str, how: How) -> Rule {
    Rule { ours, theirs, how }
}

/// A family's tensor names.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    /// The rules, in groups so that related families share theirs (BERT and RoBERTa share
    /// the encoder, Llama and Gemma the projections).
    pub rules: &'static [&'static [Rule]],
    /// The prefix of the base model's tensors (`model.`, `bert.`), written `{body}` in a
    /// shared rule. Checkpoints saved from the bare base class (or GPT-2's original upload)
    /// omit it, so it is optional.
    pub body_prefix: &'static str,
    /// Older spellings of a name's ending, tried when the current one is absent
    /// (BERT's `LayerNorm.gamma`/`beta`).
    pub aliases: &'static [(&'static str, &'static str)],
    /// Endings of tensors that carry nothing the model needs, each with the reason in the
    /// family's file: causal-mask buffers, cached rotary frequencies, position-id buffers,
    /// heads sinkscope does not run (BERT's pooler).
    pub ignored: &'static [&'static str],
    /// Tensors that hold a copy of the embedding matrix when the embeddings are tied; read
    /// as ignorable only then (transformers itself ignores them when tying).
    pub tied_copies: &'static [&'static str],
}

/// A parameter's binding: which stored tensor (first name found among `candidates`), and
/// the conversion steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// sinkscope's dotted parameter name.
    pub param: String,
    /// Names to look for, preferred first (the full name, then prefix-less and alias forms).
    pub candidates: Vec<String>,
    /// How the stored tensor becomes the parameter.
    pub how: How,
}

impl Table {
    /// The table of a Llama-style decoder with these rules: the body under `model.`, a
    /// cached rotary-frequency buffer to ignore, `lm_head.weight` a copy of the
    /// embeddings when they are tied. Most decoder families differ only in their rules.
    pub const fn decoder(rules: &'static [&'static [Rule]]) -> Table {
        Table {
            rules,
            body_prefix: "model.",
            aliases: &[],
            ignored: &["rotary_emb.inv_freq"],
            tied_copies: &["lm_head.weight"],
        }
    }

    /// Every rule expanded over `n_layers` blocks, with the alternative names to try.
    pub fn bindings(&self, n_layers: usize) -> Vec<Binding> {
        let mut out = Vec::new();
        for r in self.rules.iter().flat_map(|group| group.iter()) {
            let layers: Vec<Option<usize>> = if r.ours.contains("{i}") {
                (0..n_layers).map(Some).collect()
            } else {
                vec![None]
            };
            for layer in layers {
                let fill = |s: &str| match layer {
                    Some(i) => s.replace("{i}", &i.to_string()),
                    None => s.to_string(),
                };
                let theirs = fill(r.theirs).replace("{body}", self.body_prefix);
                let mut candidates = vec![theirs.clone()];
                if let Some(bare) = theirs.strip_prefix(self.body_prefix) {
                    if !self.body_prefix.is_empty() {
                        candidates.push(bare.to_string());
                    }
                }
                for (now, old) in self.aliases {
                    let olds: Vec<String> = candidates
                        .iter()
                        .filter_map(|c| c.strip_suffix(now).map(|stem| format!("{stem}{old}")))
                        .collect();
                    candidates.extend(olds);
                }
                out.push(Binding {
                    param: fill(r.ours),
                    candidates,
                    how: r.how,
                });
            }
        }
        out
    }

    /// Whether a checkpoint tensor nobody reads may be skipped.
    pub fn is_ignorable(&self, name: &str, tied: bool) -> bool {
        let bare = name.strip_prefix(self.body_prefix).unwrap_or(name);
        self.ignored.iter().any(|end| name.ends_with(end))
            || (tied && self.tied_copies.iter().any(|c| name == *c || bare == *c))
    }
}

/// A Hugging Face family: the `model_type`s it covers, its switches and its table.
#[derive(Debug)]
pub struct Family {
    /// The name shown to users (`llama`, `bert`, …).
    pub name: &'static str,
    /// The `model_type` values it reads.
    pub model_types: &'static [&'static str],
    /// config.json → sinkscope's switches.
    pub config: fn(&HfConfig) -> Result<ModelConfig, FieldError>,
    /// The tensor table for a config (BERT and RoBERTa name their tensors differently).
    pub table: fn(&HfConfig) -> &'static Table,
}

/// Every supported family.
pub const FAMILIES: &[&Family] = &[
    &bert::FAMILY,
    &gpt2::FAMILY,
    &llama::FAMILY,
    &gemma::FAMILY,
    &phi::FAMILY,
    &gpt_neox::FAMILY,
    &qwen3::FAMILY,
    &gemma2::FAMILY,
    &smollm3::FAMILY,
    &olmo2::FAMILY,
    &phi3::FAMILY,
    &modernbert::FAMILY,
];

/// Every supported `model_type`, for error messages.
pub fn supported_model_types() -> Vec<String> {
    FAMILIES
        .iter()
        .flat_map(|f| f.model_types.iter().map(|t| t.to_string()))
        .collect()
}

/// The family covering `model_type`.
pub fn by_model_type(model_type: &str) -> Option<&'static Family> {
    FAMILIES
        .iter()
        .copied()
        .find(|f| f.model_types.contains(&model_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;

    #[test]
    #[allow(
        clippy::single_range_in_vec_init,
        reason = "one block of rows, on purpose"
    )]
    fn fused_qkv_parts_by_hand() {
        let cfg = ModelConfig {
            d_model: 8,
            n_heads: 2,
            ..Default::default()
        };
        // GPT-2: columns 0..8, 8..16, 16..24 of [8, 24].
        assert_eq!(How::ConvQkv(Qkv::K).ops(&cfg, 2), [Op::Cols(8..16)]);
        assert_eq!(How::ConvQkv(Qkv::V).ops(&cfg, 1), [Op::Rows(vec![16..24])]);
        // NeoX, head_dim 4: head h's k rows are 12h + 4 .. 12h + 8.
        assert_eq!(
            How::HeadInterleavedQkv(Qkv::K).ops(&cfg, 2),
            [Op::Rows(vec![4..8, 16..20]), Op::Transpose]
        );
    }

    #[test]
    fn bindings_offer_prefixless_and_alias_names() {
        const RULES: &[Rule] = &[rule(
            "blocks.{i}.attn_norm.weight",
            "{body}encoder.layer.{i}.output.LayerNorm.weight",
            How::Copy,
        )];
        let table = Table {
            rules: &[RULES],
            body_prefix: "bert.",
            aliases: &[("LayerNorm.weight", "LayerNorm.gamma")],
            ignored: &[".attn.bias"],
            tied_copies: &["lm_head.weight"],
        };
        let b = table.bindings(2);
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].param, "blocks.1.attn_norm.weight");
        assert_eq!(
            b[1].candidates,
            [
                "bert.encoder.layer.1.output.LayerNorm.weight",
                "encoder.layer.1.output.LayerNorm.weight",
                "bert.encoder.layer.1.output.LayerNorm.gamma",
                "encoder.layer.1.output.LayerNorm.gamma",
            ]
        );
        assert!(table.is_ignorable("h.0.attn.bias", false));
        assert!(table.is_ignorable("lm_head.weight", true));
        assert!(!table.is_ignorable("lm_head.weight", false));
    }

    #[test]
    fn every_model_type_has_one_family() {
        let types = supported_model_types();
        for t in &types {
            assert_eq!(
                by_model_type(t)
                    .unwrap()
                    .model_types
                    .iter()
                    .filter(|x| *x == t)
                    .count(),
                1
            );
        }
        assert!(by_model_type("t5").is_none());
    }
}
