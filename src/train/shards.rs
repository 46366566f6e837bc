//! Token shards: a corpus tokenized once (`sinkscope tokenize`) into flat files of
//! little-endian token ids that training memory-maps, the format nanoGPT and most
//! pre-training code use, so a run of billions of tokens never holds its corpus in
//! memory nor tokenizes it twice.
//!
//! A shard folder holds `train.bin`, `heldout.bin` (u16 when the vocabulary fits, else
//! u32) and `meta.json` ([`ShardMeta`]: dtype, vocabulary size, token counts, the
//! tokenizer's SHA-256 and the document separator). `meta.json` is written last, so a
//! folder without it is an interrupted tokenization, never a shorter corpus.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The train stream's file in a shard folder.
pub const TRAIN_FILE: &str = "train.bin";
/// The held-out stream's file.
pub const HELDOUT_FILE: &str = "heldout.bin";
/// The description, written last.
pub const META_FILE: &str = "meta.json";
/// `meta.json`'s `format` value.
pub const FORMAT: &str = "sinkscope-token-shards";

/// Width of one stored token id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    /// Vocabularies of at most 65,536 ids.
    U16,
    /// Larger vocabularies.
    U32,
}

impl TokenDtype {
    /// The narrowest type that holds ids `0..vocab_size`.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= 1 << 16 {
            Self::U16
        } else {
            Self::U32
        }
    }

    /// Bytes per id.
    pub fn width(self) -> usize {
        match self {
            Self::U16 => 2,
            Self::U32 => 4,
        }
    }
}

/// `meta.json` of a shard folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardMeta {
    /// Always [`FORMAT`].
    pub format: String,
    /// Width of the ids in the `.bin` files.
    pub dtype: TokenDtype,
    /// Ids lie in `0..vocab_size`.
    pub vocab_size: usize,
    /// Tokens in `train.bin`.
    pub train_tokens: u64,
    /// Tokens in `heldout.bin`.
    pub heldout_tokens: u64,
    /// Documents in `train.bin`.
    pub train_documents: u64,
    /// Documents in `heldout.bin`.
    pub heldout_documents: u64,
    /// Every this many documents went to the held-out stream.
    pub heldout_every: u64,
    /// The tokenizer.json the ids come from, as given to `tokenize`.
    pub tokenizer: PathBuf,
    /// Hex SHA-256 of that file's bytes.
    pub tokenizer_sha256: String,
    /// The id that ends every document, and its token string.
    pub separator: Option<u32>,
    /// The separator's token string.
    pub separator_token: Option<String>,
    /// The input files, in the order read.
    pub inputs: Vec<PathBuf>,
}

impl ShardMeta {
    /// Reads and checks `dir/meta.json` against the sizes of the `.bin` files.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(META_FILE);
        let raw = std::fs::read(&path).map_err(|e| {
            Error::file(
                &path,
                format!("cannot read token-shard description ({e}); was `sinkscope tokenize` interrupted?"),
            )
        })?;
        let meta: ShardMeta = serde_json::from_slice(&raw)
            .map_err(|e| Error::file(&path, format!("not a token-shard description: {e}")))?;
        if meta.format != FORMAT {
            return Err(Error::file(
                &path,
                format!("format is `{}`, expected `{FORMAT}`", meta.format),
            ));
        }
        if meta.vocab_size == 0
            || TokenDtype::for_vocab(meta.vocab_size).width() > meta.dtype.width()
        {
            return Err(Error::file(
                &path,
                format!(
                    "a vocabulary of {} ids does not fit dtype {:?}",
                    meta.vocab_size, meta.dtype
                ),
            ));
        }
        for (file, tokens) in [
            (TRAIN_FILE, meta.train_tokens),
            (HELDOUT_FILE, meta.heldout_tokens),
        ] {
            let p = dir.join(file);
            let len = std::fs::metadata(&p)
                .map_err(|e| Error::file(&p, format!("cannot read token shard: {e}")))?
                .len();
            let want = tokens.checked_mul(meta.dtype.width() as u64);
            if want != Some(len) {
                return Err(Error::file(
                    &p,
                    format!(
                        "holds {len} bytes but meta.json says {tokens} tokens of {} bytes: truncated or from another tokenization",
                        meta.dtype.width()
                    ),
                ));
            }
        }
        Ok(meta)
    }
}

/// A stream of token ids: in memory (byte-level corpora, synthetic tasks, text
/// tokenized on the fly) or memory-mapped from a shard file.
#[derive(Debug)]
pub enum TokenStream {
    /// Ids held in memory.
    Owned(Vec<u32>),
    /// A memory-mapped shard (`len` ids of `dtype`).
    Mapped {
        /// The mapping.
        map: Mmap,
        /// Width of the ids.
        dtype: TokenDtype,
        /// Number of ids.
        len: usize,
    },
}

impl From<Vec<u32>> for TokenStream {
    fn from(v: Vec<u32>) -> Self {
        Self::Owned(v)
    }
}

impl TokenStream {
    /// Maps `path`, which holds ids of `dtype`.
    pub fn map(path: &Path, dtype: TokenDtype) -> Result<Self> {
        let file = File::open(path)
            .map_err(|e| Error::file(path, format!("cannot open token shard: {e}")))?;
        // SAFETY: the shard is opened read-only; like every memory-mapped reader we rely
        // on nobody truncating the file while a run reads it (meta.json's sizes are
        // checked first, so a shorter file is refused before it is mapped).
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| Error::file(path, format!("cannot memory-map token shard: {e}")))?;
        if map.len() % dtype.width() != 0 {
            return Err(Error::file(
                path,
                format!("{} bytes is not a whole number of {dtype:?} ids", map.len()),
            ));
        }
        let len = map.len() / dtype.width();
        Ok(Self::Mapped { map, dtype, len })
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        match self {
            Self::Owned(v) => v.len(),
            Self::Mapped { len, .. } => *len,
        }
    }

    /// Whether it holds no id.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest id (None when empty): read once at load, in parallel, so that a
    /// corrupt shard is refused before an out-of-range id reaches the embedding.
    pub fn max_id(&self) -> Option<u32> {
        use rayon::prelude::*;
        match self {
            Self::Owned(v) => v.iter().copied().max(),
            Self::Mapped { map, dtype, .. } => {
                let chunk = 1 << 20;
                match dtype {
                    TokenDtype::U16 => map
                        .par_chunks(chunk * 2)
                        .filter_map(|c| {
                            c.chunks_exact(2)
                                .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
                                .max()
                        })
                        .max(),
                    TokenDtype::U32 => map
                        .par_chunks(chunk * 4)
                        .filter_map(|c| {
                            c.chunks_exact(4)
                                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                                .max()
                        })
                        .max(),
                }
            }
        }
    }

    /// Ids `start..start + n` (the caller keeps the range inside [`Self::len`]).
    pub fn window(&self, start: usize, n: usize) -> Vec<u32> {
        match self {
            Self::Owned(v) => v[start..start + n].to_vec(),
            Self::Mapped { map, dtype, .. } => {
                let w = dtype.width();
                let bytes = &map[start * w..(start + n) * w];
                match dtype {
                    TokenDtype::U16 => bytes
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
                        .collect(),
                    TokenDtype::U32 => bytes
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                }
            }
        }
    }
}

/// Writes one `.bin` stream through a temporary file renamed into place by
/// [`ShardWriter::finish`], so an interrupted tokenization leaves no shard that looks
/// complete.
#[derive(Debug)]
pub struct ShardWriter {
    out: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    dtype: TokenDtype,
    tokens: u64,
    documents: u64,
}

impl ShardWriter {
    /// Starts `path` (written as `path.partial` until finished).
    pub fn create(path: &Path, dtype: TokenDtype) -> Result<Self> {
        let tmp = path.with_extension("bin.partial");
        let file =
            File::create(&tmp).map_err(|e| Error::file(&tmp, format!("cannot create: {e}")))?;
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, file),
            tmp,
            path: path.to_path_buf(),
            dtype,
            tokens: 0,
            documents: 0,
        })
    }

    /// Appends ids to the current document.
    pub fn append(&mut self, ids: &[u32]) -> Result<()> {
        let mut buf = Vec::with_capacity(ids.len() * self.dtype.width());
        for &id in ids {
            match self.dtype {
                TokenDtype::U16 => {
                    let v = u16::try_from(id).map_err(|_| {
                        Error::file(&self.path, format!("token id {id} does not fit u16"))
                    })?;
                    buf.extend_from_slice(&v.to_le_bytes());
                }
                TokenDtype::U32 => buf.extend_from_slice(&id.to_le_bytes()),
            }
        }
        self.out
            .write_all(&buf)
            .map_err(|e| Error::file(&self.tmp, format!("cannot write: {e}")))?;
        self.tokens += ids.len() as u64;
        Ok(())
    }

    /// Ends the current document with `separator` (if the tokenizer has one).
    pub fn end_document(&mut self, separator: Option<u32>) -> Result<()> {
        if let Some(sep) = separator {
            self.append(&[sep])?;
        }
        self.documents += 1;
        Ok(())
    }

    /// Flushes, syncs and renames into place; returns (tokens, documents).
    pub fn finish(self) -> Result<(u64, u64)> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::file(&self.tmp, format!("cannot write: {}", e.error())))?;
        file.sync_all()
            .map_err(|e| Error::file(&self.tmp, format!("cannot sync: {e}")))?;
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| Error::file(&self.path, format!("cannot move into place: {e}")))?;
        Ok((self.tokens, self.documents))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_ids_read_back_through_the_mapping() {
        let dir = tempfile::tempdir().unwrap();
        for (dtype, ids) in [
            (TokenDtype::U16, vec![0u32, 1, 65535, 7]),
            (TokenDtype::U32, vec![0u32, 70000, u32::MAX, 3]),
        ] {
            let p = dir.path().join("s.bin");
            let mut w = ShardWriter::create(&p, dtype).unwrap();
            w.append(&ids[..1]).unwrap();
            w.append(&ids[1..2]).unwrap();
            w.end_document(None).unwrap();
            w.append(&ids[2..3]).unwrap();
            w.end_document(Some(ids[3])).unwrap();
            assert_eq!(w.finish().unwrap(), (4, 2));
            let s = TokenStream::map(&p, dtype).unwrap();
            assert_eq!(s.len(), 4);
            assert_eq!(s.window(0, 4), ids);
            assert_eq!(s.window(1, 2), ids[1..3]);
            assert_eq!(
                std::fs::metadata(&p).unwrap().len(),
                4 * dtype.width() as u64
            );
        }
        let mut w = ShardWriter::create(&dir.path().join("t.bin"), TokenDtype::U16).unwrap();
        let e = w.append(&[70000]).unwrap_err().to_string();
        assert!(e.contains("70000") && e.contains("t.bin"), "{e}");
    }

    #[test]
    fn dtype_follows_the_vocabulary() {
        assert_eq!(TokenDtype::for_vocab(259), TokenDtype::U16);
        assert_eq!(TokenDtype::for_vocab(65536), TokenDtype::U16);
        assert_eq!(TokenDtype::for_vocab(65537), TokenDtype::U32);
        assert_eq!(TokenDtype::for_vocab(128_256), TokenDtype::U32);
    }
}
