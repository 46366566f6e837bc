//! Corpus → token shards (`sinkscope tokenize`): documents are read as a stream from
//! text, JSON-lines or gzipped files, tokenized in parallel batches (rayon), and
//! written in input order, each document followed by the tokenizer's separator (EOS,
//! else BOS); every `heldout_every`-th document goes to the held-out stream.
//!
//! A `.jsonl` line is one document (its `text_field`); a `.txt` file is one document,
//! cut at paragraph breaks into pieces of about [`PIECE_BYTES`] so that a large file is
//! tokenized in parallel too (token boundaries can differ from tokenizing the whole
//! file at once only inside the whitespace run where a cut falls).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::io::atomic;
use crate::train::shards::{
    ShardMeta, ShardWriter, TokenDtype, FORMAT, HELDOUT_FILE, META_FILE, TRAIN_FILE,
};
use crate::train::vocab::Vocabulary;

/// Text per piece of a `.txt` document.
pub const PIECE_BYTES: usize = 1 << 20;
/// Text tokenized per parallel batch.
const BATCH_BYTES: usize = 16 << 20;

/// What to tokenize and where.
#[derive(Clone, Debug)]
pub struct TokenizeJob {
    /// Input files (`.txt`, `.jsonl`, either optionally `.gz`).
    pub inputs: Vec<PathBuf>,
    /// The tokenizer.json.
    pub tokenizer: PathBuf,
    /// The shard folder to write.
    pub out: PathBuf,
    /// Every this many documents, one goes to the held-out stream (at least 2).
    pub heldout_every: u64,
    /// Field holding the text in JSON lines.
    pub text_field: String,
}

/// What a tokenization produced.
#[derive(Clone, Debug)]
pub struct TokenizeOutcome {
    /// The written `meta.json`.
    pub meta: ShardMeta,
    /// Bytes of text tokenized.
    pub text_bytes: u64,
}

/// One unit of text to tokenize: a JSONL document or a piece of a `.txt` document.
struct Piece {
    text: String,
    /// Starts a new document (and so decides its stream).
    starts_document: bool,
    /// Ends its document (the separator follows it).
    ends_document: bool,
}

/// Counts the compressed/raw bytes read from a file, for the progress bar.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Tokenizes `job`; `progress` is told the input bytes read so far (of the inputs'
/// total size on disk).
pub fn tokenize(job: &TokenizeJob, progress: &dyn Fn(u64)) -> Result<TokenizeOutcome> {
    if job.heldout_every < 2 {
        return Err(Error::config(
            "tokenize",
            "--heldout-every",
            "must be at least 2 (one document in N is held out)",
        ));
    }
    if job.inputs.is_empty() {
        return Err(Error::config("tokenize", "INPUT", "no input files"));
    }
    let vocab = Vocabulary::from_tokenizer_file(&job.tokenizer)?;
    let tokenizer = vocab.tokenizer().expect("a tokenizer vocabulary");
    let dtype = TokenDtype::for_vocab(vocab.size);
    std::fs::create_dir_all(&job.out)
        .map_err(|e| Error::file(&job.out, format!("cannot create shard folder: {e}")))?;
    // A stale meta.json would describe the new .bin files: it goes first, and comes
    // back only when both streams are complete.
    let meta_path = job.out.join(META_FILE);
    if meta_path.exists() {
        std::fs::remove_file(&meta_path)
            .map_err(|e| Error::file(&meta_path, format!("cannot replace: {e}")))?;
    }
    let mut train = ShardWriter::create(&job.out.join(TRAIN_FILE), dtype)?;
    let mut heldout = ShardWriter::create(&job.out.join(HELDOUT_FILE), dtype)?;

    let read = Arc::new(AtomicU64::new(0));
    let mut text_bytes = 0u64;
    let mut document = 0u64;
    let mut to_heldout = false;
    let mut batch: Vec<Piece> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut flush = |batch: &mut Vec<Piece>| -> Result<()> {
        let ids: Vec<Result<Vec<u32>>> = batch
            .par_iter()
            .map(|p| tokenizer.encode(&p.text))
            .collect();
        for (piece, ids) in batch.drain(..).zip(ids) {
            if piece.starts_document {
                to_heldout = document % job.heldout_every == job.heldout_every - 1;
                document += 1;
            }
            let w = if to_heldout { &mut heldout } else { &mut train };
            w.append(&ids?)?;
            if piece.ends_document {
                w.end_document(vocab.separator)?;
            }
        }
        progress(read.load(Ordering::Relaxed));
        Ok(())
    };
    for input in &job.inputs {
        for_each_piece(input, &job.text_field, read.clone(), &mut |piece| {
            text_bytes += piece.text.len() as u64;
            batch_bytes += piece.text.len();
            batch.push(piece);
            if batch_bytes >= BATCH_BYTES {
                batch_bytes = 0;
                flush(&mut batch)?;
            }
            Ok(())
        })?;
    }
    flush(&mut batch)?;
    let (train_tokens, train_documents) = train.finish()?;
    let (heldout_tokens, heldout_documents) = heldout.finish()?;
    let meta = ShardMeta {
        format: FORMAT.into(),
        dtype,
        vocab_size: vocab.size,
        train_tokens,
        heldout_tokens,
        train_documents,
        heldout_documents,
        heldout_every: job.heldout_every,
        tokenizer: std::fs::canonicalize(&job.tokenizer).unwrap_or_else(|_| job.tokenizer.clone()),
        tokenizer_sha256: tokenizer.sha256().to_string(),
        separator: vocab.separator,
        separator_token: vocab.separator.map(|s| vocab.token_name(s)),
        inputs: job.inputs.clone(),
    };
    let json = serde_json::to_string_pretty(&meta)
        .map_err(|e| Error::file(&meta_path, format!("cannot encode: {e}")))?;
    atomic::write_file(&meta_path, json.as_bytes())
        .map_err(|e| Error::file(&meta_path, format!("cannot write: {e}")))?;
    Ok(TokenizeOutcome { meta, text_bytes })
}

/// Calls `each` with the pieces of `path`'s documents, in order.
fn for_each_piece(
    path: &Path,
    text_field: &str,
    read: Arc<AtomicU64>,
    each: &mut dyn FnMut(Piece) -> Result<()>,
) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let counted = Counting { inner: file, read };
    let name = path.to_string_lossy();
    let (reader, name): (Box<dyn Read>, &str) = match name.strip_suffix(".gz") {
        Some(stem) => (Box::new(flate2::read::GzDecoder::new(counted)), stem),
        None => (Box::new(counted), &name),
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let io_error = |e: std::io::Error| {
        let why = if e.kind() == std::io::ErrorKind::InvalidData {
            format!("not UTF-8 text or not valid gzip: {e}")
        } else {
            format!("cannot read: {e}")
        };
        Error::file(path, why)
    };
    if name.ends_with(".jsonl") {
        let mut line = String::new();
        let mut n = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(io_error)? == 0 {
                return Ok(());
            }
            n += 1;
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&line)
                .map_err(|e| Error::file(path, format!("line {n}: not JSON: {e}")))?;
            let text = v.get(text_field).and_then(|t| t.as_str()).ok_or_else(|| {
                Error::file(path, format!("line {n}: no string field `{text_field}`"))
            })?;
            each(Piece {
                text: text.to_string(),
                starts_document: true,
                ends_document: true,
            })?;
        }
    }
    // A .txt file: one document, in pieces cut after a paragraph break.
    let mut text = String::new();
    reader.read_to_string(&mut text).map_err(io_error)?;
    let mut rest = text.as_str();
    let mut first = true;
    loop {
        let cut = piece_end(rest);
        let (piece, tail) = rest.split_at(cut);
        each(Piece {
            text: piece.to_string(),
            starts_document: first,
            ends_document: tail.is_empty(),
        })?;
        if tail.is_empty() {
            return Ok(());
        }
        first = false;
        rest = tail;
    }
}

/// Where the piece starting at `text` ends: after the first paragraph break (else line
/// break) past [`PIECE_BYTES`], or at the end.
fn piece_end(text: &str) -> usize {
    if text.len() <= PIECE_BYTES {
        return text.len();
    }
    let mut start = PIECE_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let tail = &text[start..];
    let at = tail
        .find("\n\n")
        .map(|i| i + 2)
        .or_else(|| tail.find('\n').map(|i| i + 1))
        .unwrap_or(tail.len());
    start + at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cut_after_paragraph_breaks_and_cover_the_text() {
        let para = "a".repeat(PIECE_BYTES - 3) + "\n\nbbb\n\nccc";
        let end = piece_end(&para);
        assert_eq!(&para[..end], "a".repeat(PIECE_BYTES - 3) + "\n\nbbb\n\n");
        assert_eq!(piece_end("short"), 5);
        // A cut never falls inside a character.
        let wide = "é".repeat(PIECE_BYTES);
        assert_eq!(piece_end(&wide), wide.len());
    }
}
