//! Text → token ids, and the token string at each position so a sink can be named
//! ("<s>", "[CLS]", "▁In", "Ġthe").
//!
//! Hugging Face models are tokenized through the `tokenizers` crate from `tokenizer.json`
//! with `add_special_tokens`, so the file's own post-processor decides where BOS, CLS and
//! SEP go, exactly as `AutoTokenizer` does. GGUF files carry a vocabulary instead: a
//! byte-level BPE (`tokenizer.ggml.model = gpt2`, with merges) is rebuilt as a `tokenizers`
//! BPE; a SentencePiece vocabulary (`llama`, scores instead of merges) goes through
//! llama.cpp's algorithm ([`Spm`]); BOS is prepended when `tokenizer.ggml.add_bos_token`
//! says so. Other GGUF tokenizer models can name tokens but not encode text.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

use crate::import::error::{ImportError, ImportErrorKind};
use crate::import::json::read_json;
use crate::import::spm::Spm;

/// One text, tokenized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// The vocabulary string of each id (`"<s>"`, `"▁In"`, `"Ġthe"`).
    pub tokens: Vec<String>,
    /// Whether each position holds a special token (BOS, CLS, SEP, control tokens).
    pub special: Vec<bool>,
}

/// What a GGUF file says about its tokenizer (`tokenizer.ggml.*`).
#[derive(Clone, Debug, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `llama` (SentencePiece), `gpt2` (byte-level BPE), …
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer regex family of a BPE vocabulary.
    pub pre: Option<String>,
    /// Pieces, id = index.
    pub tokens: Vec<String>,
    /// Piece scores (SentencePiece).
    pub scores: Vec<f32>,
    /// Token types (1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte).
    pub token_types: Vec<i32>,
    /// `"left right"` merges (BPE).
    pub merges: Vec<String>,
    /// BOS id.
    pub bos: Option<u32>,
    /// Unknown-token id.
    pub unk: Option<u32>,
    /// Whether encoding prepends BOS.
    pub add_bos: bool,
    /// Whether SentencePiece prepends a space (`tokenizer.ggml.add_space_prefix`, default true).
    pub add_space_prefix: bool,
}

/// GGUF token type of control tokens (BOS, EOS, …).
const CONTROL: i32 = 3;
/// GGUF pre-tokenizer names whose regex is GPT-2's own.
const GPT2_PRE: [&str; 2] = ["default", "gpt-2"];

#[derive(Debug)]
enum Engine {
    /// tokenizer.json through `tokenizers`; its post-processor adds BOS/CLS/SEP.
    Hf(Box<tokenizers::Tokenizer>),
    /// A GGUF byte-level BPE rebuilt in `tokenizers` (no post-processor).
    Bpe(Box<tokenizers::Tokenizer>),
    /// llama.cpp's SentencePiece algorithm over a GGUF vocabulary.
    Spm(Spm),
    /// A vocabulary sinkscope can name but not encode with.
    VocabOnly(String),
}

/// A model's tokenizer.
#[derive(Debug)]
pub struct TextTokenizer {
    engine: Engine,
    /// id → piece of a GGUF vocabulary, for naming tokens (empty for tokenizer.json).
    pieces: Vec<String>,
    /// Ids that are special in a GGUF vocabulary.
    control: HashSet<u32>,
    bos: Option<u32>,
    /// Prepend `bos` after encoding (GGUF; tokenizer.json does it in its post-processor).
    prepend_bos: bool,
    caveat: Option<String>,
    origin: PathBuf,
}

impl TextTokenizer {
    /// The tokenizer of a Hugging Face folder (`tokenizer.json`). `bos` is config.json's
    /// `bos_token_id`; without it, tokenizer_config.json's `bos_token` is looked up.
    pub fn from_hf_folder(dir: &Path, bos: Option<u32>) -> Result<Self, ImportError> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(ImportErrorKind::NotFound(
                "no tokenizer.json in the model folder (sinkscope reads the fast-tokenizer file)"
                    .into(),
            )
            .at(dir));
        }
        let raw = std::fs::read(&path).map_err(|e| ImportErrorKind::Io(e).at(&path))?;
        // What `tokenizers` would panic or abort on, refused naming the field.
        crate::import::charsmap::check_tokenizer_json(&raw)
            .map_err(|e| ImportErrorKind::Tokenizer(e).at(&path))?;
        let mut tokenizer = crate::error::contain(|| tokenizers::Tokenizer::from_bytes(&raw))
            .map_err(|e| ImportErrorKind::Tokenizer(e).at(&path))?
            .map_err(|e| ImportErrorKind::Tokenizer(e.to_string()).at(&path))?;
        // transformers calls a fast tokenizer without padding or truncation unless asked,
        // whatever tokenizer.json says (sentence-transformers files pad to 128): so do we.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| ImportErrorKind::Tokenizer(e.to_string()).at(&path))?;
        check_post_processor(&path, &tokenizer)?;
        let bos = match bos {
            Some(id) => Some(id),
            None => bos_from_tokenizer_config(dir, &tokenizer)?,
        };
        Ok(Self {
            engine: Engine::Hf(Box::new(tokenizer)),
            pieces: Vec::new(),
            control: HashSet::new(),
            bos,
            prepend_bos: false,
            caveat: None,
            origin: path,
        })
    }

    /// The tokenizer a GGUF file describes; `origin` names the file in errors.
    pub fn from_gguf_vocab(vocab: GgufVocab, origin: &Path) -> Result<Self, ImportError> {
        let mut caveat = None;
        let engine = match vocab.model.as_str() {
            "llama" => Engine::Spm(Spm::new(
                &vocab.tokens,
                &vocab.scores,
                vocab.unk,
                vocab.add_space_prefix,
            )),
            "gpt2" => {
                let pre = vocab.pre.as_deref().unwrap_or("default");
                if !GPT2_PRE.contains(&pre) {
                    caveat = Some(format!(
                        "GGUF pre-tokenizer `{pre}` is approximated by GPT-2's regex; \
                         token boundaries may differ from llama.cpp on digits and contractions"
                    ));
                }
                Engine::Bpe(Box::new(byte_level_bpe(&vocab, origin)?))
            }
            other => Engine::VocabOnly(other.to_string()),
        };
        let control = vocab
            .token_types
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == CONTROL)
            .map(|(id, _)| id as u32)
            .collect();
        Ok(Self {
            engine,
            pieces: vocab.tokens,
            control,
            bos: vocab.bos,
            prepend_bos: vocab.add_bos,
            caveat,
            origin: origin.to_path_buf(),
        })
    }

    /// Tokenizes `text` with the model's special-token rules.
    pub fn encode(&self, text: &str) -> Result<Encoded, ImportError> {
        let mut ids = Vec::new();
        if self.prepend_bos {
            ids.extend(self.bos);
        }
        let hf_error =
            |e: tokenizers::Error| ImportErrorKind::Tokenizer(e.to_string()).at(&self.origin);
        match &self.engine {
            Engine::Hf(tokenizer) => {
                let enc = crate::error::contain(|| tokenizer.encode(text, true))
                    .map_err(|e| ImportErrorKind::Tokenizer(e).at(&self.origin))?
                    .map_err(hf_error)?;
                let special = enc.get_special_tokens_mask().iter().map(|&m| m == 1);
                return Ok(Encoded {
                    ids: enc.get_ids().to_vec(),
                    tokens: enc.get_tokens().to_vec(),
                    special: special.collect(),
                });
            }
            Engine::Bpe(tokenizer) => {
                let enc = crate::error::contain(|| tokenizer.encode(text, false))
                    .map_err(|e| ImportErrorKind::Tokenizer(e).at(&self.origin))?
                    .map_err(hf_error)?;
                ids.extend_from_slice(enc.get_ids());
            }
            Engine::Spm(spm) => ids.extend(spm.encode(text)),
            Engine::VocabOnly(model) => {
                return Err(ImportErrorKind::Tokenizer(format!(
                    "GGUF tokenizer model `{model}` can name tokens but not encode text"
                ))
                .at(&self.origin))
            }
        }
        let tokens = ids
            .iter()
            .map(|&id| self.token(id).unwrap_or_default())
            .collect();
        let special = ids.iter().map(|id| self.control.contains(id)).collect();
        Ok(Encoded {
            ids,
            tokens,
            special,
        })
    }

    /// The vocabulary string of `id`.
    pub fn token(&self, id: u32) -> Option<String> {
        match &self.engine {
            Engine::Hf(tokenizer) => tokenizer.id_to_token(id),
            _ => self.pieces.get(id as usize).cloned(),
        }
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        match &self.engine {
            Engine::Hf(tokenizer) => tokenizer.get_vocab_size(true),
            _ => self.pieces.len(),
        }
    }

    /// The id of a vocabulary string (`"[MASK]"`, `"<mask>"`), if present.
    pub fn id_of(&self, token: &str) -> Option<u32> {
        match &self.engine {
            Engine::Hf(tokenizer) => tokenizer.token_to_id(token),
            _ => self
                .pieces
                .iter()
                .position(|p| p == token)
                .map(|i| i as u32),
        }
    }

    /// The BOS id, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// A warning when tokenization only approximates the original (a GGUF pre-tokenizer
    /// other than GPT-2's), for the caller to show.
    pub fn caveat(&self) -> Option<&str> {
        self.caveat.as_deref()
    }
}

/// `bos_token` of tokenizer_config.json (a string or `{"content": …}`) as an id.
/// Checks what `tokenizers` accepts on loading but panics on when encoding: every
/// special token a `TemplateProcessing` post-processor (alone or inside a `Sequence`)
/// places must be defined in its `special_tokens`, with ids inside the vocabulary.
fn check_post_processor(path: &Path, tokenizer: &tokenizers::Tokenizer) -> Result<(), ImportError> {
    let bad = |m: String| Err(ImportErrorKind::Tokenizer(m).at(path));
    let Ok(value) = serde_json::to_value(tokenizer.get_post_processor()) else {
        return Ok(());
    };
    let vocab = tokenizer.get_vocab_size(true);
    let mut stack = vec![&value];
    while let Some(p) = stack.pop() {
        match p.get("type").and_then(Value::as_str) {
            Some("Sequence") => stack.extend(
                p.get("processors")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten(),
            ),
            Some("TemplateProcessing") => {
                let defined = p.get("special_tokens").and_then(Value::as_object);
                for piece in ["single", "pair"]
                    .iter()
                    .filter_map(|k| p.get(*k).and_then(Value::as_array))
                    .flatten()
                {
                    let Some(id) = piece.pointer("/SpecialToken/id").and_then(Value::as_str) else {
                        continue;
                    };
                    let Some(token) = defined.and_then(|d| d.get(id)) else {
                        return bad(format!(
                            "post_processor: the template places special token `{id}`, which its special_tokens do not define"
                        ));
                    };
                    let ids = token.get("ids").and_then(Value::as_array);
                    if let Some(out) = ids
                        .into_iter()
                        .flatten()
                        .find(|i| i.as_u64().is_none_or(|i| i >= vocab as u64))
                    {
                        return bad(format!(
                            "post_processor: special token `{id}` has id {out}, outside the vocabulary of {vocab}"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn bos_from_tokenizer_config(
    dir: &Path,
    tokenizer: &tokenizers::Tokenizer,
) -> Result<Option<u32>, ImportError> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let config: Value = read_json(&path)?;
    let content = match config.get("bos_token") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str),
        _ => None,
    };
    Ok(content.and_then(|c| tokenizer.token_to_id(c)))
}

/// A byte-level BPE tokenizer from a GGUF vocabulary and merges, with GPT-2's
/// pre-tokenizer regex (no prefix space, as llama.cpp's BPE does).
fn byte_level_bpe(vocab: &GgufVocab, origin: &Path) -> Result<tokenizers::Tokenizer, ImportError> {
    let ids: Vocab = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.clone(), id as u32))
        .collect();
    let mut merges = Vec::with_capacity(vocab.merges.len());
    for m in &vocab.merges {
        let Some((a, b)) = m.split_once(' ') else {
            return Err(ImportErrorKind::Tokenizer(format!(
                "merge `{m}` in tokenizer.ggml.merges is not two pieces"
            ))
            .at(origin));
        };
        merges.push((a.to_string(), b.to_string()));
    }
    let bpe = BPE::builder()
        .vocab_and_merges(ids, merges)
        .build()
        .map_err(|e| ImportErrorKind::Tokenizer(e.to_string()).at(origin))?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

/// The contents of a text file as UTF-8, or an error naming the file and the first bad byte.
pub fn read_text_file(path: &Path) -> Result<String, ImportError> {
    let bytes = std::fs::read(path).map_err(|e| ImportErrorKind::Io(e).at(path))?;
    String::from_utf8(bytes).map_err(|e| {
        ImportErrorKind::Tokenizer(format!(
            "the text is not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
        .at(path)
    })
}
