//! The vocabulary a training run uses: sinkscope's byte-level one, or a Hugging Face
//! `tokenizer.json` (BPE, WordPiece, Unigram) for runs at the scale where sinks form on
//! natural text (Gu et al. train with a BPE tokenizer).
//!
//! Both give the run its vocabulary size and its special ids (BOS, mask, padding, the
//! document separator), so the model, the batch sampler, the hooks and the reports
//! never assume bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::train::data::bytes;

/// Token strings looked up, in this order, for each special role in a tokenizer.json.
const BOS_NAMES: &[&str] = &[
    "<s>",
    "<|begin_of_text|>",
    "<bos>",
    "[CLS]",
    "<|endoftext|>",
];
const EOS_NAMES: &[&str] = &[
    "</s>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<eos>",
    "[SEP]",
    "<|im_end|>",
];
const MASK_NAMES: &[&str] = &["[MASK]", "<mask>"];
const PAD_NAMES: &[&str] = &["<pad>", "[PAD]", "<|pad|>"];

/// A run's vocabulary and its special ids.
#[derive(Clone)]
pub struct Vocabulary {
    /// Ids `0..size`.
    pub size: usize,
    /// Prepended when `data.bos` is set (None: the tokenizer has none).
    pub bos: Option<u32>,
    /// Ends each document in token shards and on-the-fly tokenization.
    pub separator: Option<u32>,
    /// Replaces masked tokens in masked-LM training (None: the tokenizer has none).
    pub mask: Option<u32>,
    /// Fills unequal-length probe batches (masked out, so its value never matters).
    pub pad: u32,
    /// Random replacements of masked-LM training are drawn from `0..random_ids`
    /// (ordinary tokens, not the special ones at the end of a byte vocabulary).
    pub random_ids: u32,
    tokenizer: Option<Arc<TrainingTokenizer>>,
}

impl std::fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocabulary")
            .field("size", &self.size)
            .field(
                "tokenizer",
                &self
                    .tokenizer
                    .as_ref()
                    .map(|t| t.path.display().to_string()),
            )
            .finish()
    }
}

impl Vocabulary {
    /// sinkscope's byte-level vocabulary: 256 bytes + BOS, MASK, PAD.
    pub fn bytes() -> Self {
        Self {
            size: bytes::VOCAB_SIZE,
            bos: Some(bytes::BOS),
            separator: None,
            mask: Some(bytes::MASK),
            pad: bytes::PAD,
            random_ids: 256,
            tokenizer: None,
        }
    }

    /// The vocabulary of a `tokenizer.json`.
    pub fn from_tokenizer_file(path: &Path) -> Result<Self> {
        let tokenizer = TrainingTokenizer::open(path)?;
        let size = tokenizer.inner.get_vocab_size(true);
        let find = |names: &[&str]| names.iter().find_map(|n| tokenizer.inner.token_to_id(n));
        let bos = find(BOS_NAMES);
        let separator = find(EOS_NAMES).or(bos);
        let mask = find(MASK_NAMES);
        let pad = find(PAD_NAMES).or(separator).unwrap_or(0);
        // Added (special) tokens sit at the end of most vocabularies; random masked-LM
        // replacements stay below the first of them.
        let random_ids = tokenizer
            .inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(&id, _)| id)
            .filter(|&id| id as usize >= size / 2)
            .min()
            .unwrap_or(size as u32)
            .max(1);
        Ok(Self {
            size,
            bos,
            separator,
            mask,
            pad,
            random_ids,
            tokenizer: Some(Arc::new(tokenizer)),
        })
    }

    /// The vocabulary a recipe's data section names (its tokenizer, or bytes).
    pub fn for_data(tokenizer: Option<&Path>) -> Result<Self> {
        match tokenizer {
            Some(p) => Self::from_tokenizer_file(p),
            None => Ok(Self::bytes()),
        }
    }

    /// The tokenizer behind it (None for bytes).
    pub fn tokenizer(&self) -> Option<&TrainingTokenizer> {
        self.tokenizer.as_deref()
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.tokenizer {
            None => Ok(bytes::encode(text)),
            Some(t) => t.encode(text),
        }
    }

    /// A readable name for a token, for reports ("<bos>", "a", "Ġthe").
    pub fn token_name(&self, id: u32) -> String {
        match &self.tokenizer {
            None => bytes::token_name(id),
            Some(t) => t.inner.id_to_token(id).unwrap_or_else(|| format!("<{id}>")),
        }
    }

    /// The text of `ids` (special tokens dropped), e.g. to show a probe window.
    pub fn decode(&self, ids: &[u32]) -> String {
        match &self.tokenizer {
            None => {
                let b: Vec<u8> = ids.iter().filter(|&&t| t < 256).map(|&t| t as u8).collect();
                String::from_utf8_lossy(&b).into_owned()
            }
            Some(t) => t.inner.decode(ids, true).unwrap_or_default(),
        }
    }
}

/// A `tokenizer.json` loaded for training: encodes text without special tokens, and
/// knows its file's SHA-256, which token shards record so that a shard is never read
/// with a different tokenizer.
#[derive(Debug)]
pub struct TrainingTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    sha256: String,
}

impl TrainingTokenizer {
    /// Reads and parses `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let raw = std::fs::read(path)
            .map_err(|e| Error::file(path, format!("cannot read tokenizer: {e}")))?;
        // What `tokenizers` would panic or abort on, refused naming the field.
        crate::import::charsmap::check_tokenizer_json(&raw)
            .map_err(|e| Error::file(path, format!("not a usable tokenizer.json: {e}")))?;
        let inner = crate::error::contain(|| tokenizers::Tokenizer::from_bytes(&raw))
            .map_err(|why| Error::file(path, format!("not a tokenizer.json file: {why}")))?
            .map_err(|e| Error::file(path, format!("not a tokenizer.json file: {e}")))?;
        if inner.get_vocab_size(true) == 0 {
            return Err(Error::file(path, "the tokenizer has an empty vocabulary"));
        }
        Ok(Self {
            inner,
            path: path.to_path_buf(),
            sha256: sha256_hex(&raw),
        })
    }

    /// Token ids of `text`, without the post-processor's special tokens (documents
    /// are joined with the separator instead).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        // The tokenizers crate panics on some files it accepts; such a panic must
        // become an error naming the file (error::contain, shared with the importer).
        match crate::error::contain(|| self.inner.encode(text, false)) {
            Ok(Ok(enc)) => Ok(enc.get_ids().to_vec()),
            Ok(Err(e)) => Err(Error::file(&self.path, format!("cannot tokenize: {e}"))),
            Err(why) => Err(Error::file(&self.path, format!("cannot tokenize: {why}"))),
        }
    }

    /// Hex SHA-256 of the tokenizer.json bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_known_string() {
        // FIPS 180-2's "abc" example.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn byte_vocabulary_round_trips() {
        let v = Vocabulary::bytes();
        assert_eq!(v.size, 259);
        let ids = v.encode("héllo").unwrap();
        assert_eq!(ids.len(), 6);
        assert_eq!(v.decode(&ids), "héllo");
        assert_eq!(v.token_name(bytes::BOS), "<bos>");
    }

    #[test]
    fn a_real_tokenizer_json_gives_its_specials() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/gpt2/tokenizer.json");
        let v = Vocabulary::from_tokenizer_file(&path).unwrap();
        let t = tokenizers::Tokenizer::from_file(&path).unwrap();
        assert_eq!(v.size, t.get_vocab_size(true));
        let eot = t.token_to_id("<|endoftext|>").unwrap();
        assert_eq!(v.separator, Some(eot));
        let ids = v.encode("In the beginning").unwrap();
        assert_eq!(ids, t.encode("In the beginning", false).unwrap().get_ids());
        assert_eq!(v.decode(&ids), "In the beginning");
        let e = Vocabulary::from_tokenizer_file(Path::new("/nonexistent/tokenizer.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/tokenizer.json"), "{e}");
    }
}
