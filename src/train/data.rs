//! Corpora and the byte-level tokenizer, and the deterministic batch sampler.
//!
//! A corpus is text tokenized byte by byte (the default), text tokenized on the fly with
//! a `tokenizer.json` (`[data] tokenizer`), memory-mapped token shards written by
//! `sinkscope tokenize` (`[data] shards`), or a synthetic task. Every batch is a pure
//! function of (seed, step): a resumed run draws exactly the batches an uninterrupted
//! one would, with no sampler state to checkpoint.

use std::io::Read;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::train::recipe::DataConfig;
use crate::train::shards::{self, ShardMeta, TokenStream};
use crate::train::vocab::Vocabulary;

/// The byte-level tokenizer: token id = byte value, plus three special tokens.
pub mod bytes {
    /// Prepended when `data.bos` is set.
    pub const BOS: u32 = 256;
    /// Replaces masked tokens in masked-LM training.
    pub const MASK: u32 = 257;
    /// Fills unequal-length batches.
    pub const PAD: u32 = 258;
    /// 256 bytes + BOS, MASK, PAD.
    pub const VOCAB_SIZE: usize = 259;

    /// Token ids of `text`.
    pub fn encode(text: &str) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }

    /// A readable name for a token, for reports ("<bos>", "a", "\n").
    pub fn token_name(id: u32) -> String {
        match id {
            BOS => "<bos>".into(),
            MASK => "<mask>".into(),
            PAD => "<pad>".into(),
            b if b < 256 => {
                let c = b as u8;
                if c.is_ascii_graphic() || c == b' ' {
                    (c as char).to_string()
                } else {
                    format!("{:?}", c as char).trim_matches('\'').to_string()
                }
            }
            other => format!("<{other}>"),
        }
    }
}

/// Reads a corpus: `.txt`, `.jsonl` (one object per line, text in `text_field`),
/// either optionally gzipped. Errors name the file and, for JSONL, the line.
pub fn read_corpus(path: &Path, text_field: &str) -> Result<String> {
    let raw =
        std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read dataset: {e}")))?;
    let name = path.to_string_lossy();
    let (raw, name) = if let Some(stem) = name.strip_suffix(".gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::file(path, format!("not a valid gzip file: {e}")))?;
        (out, stem.to_string())
    } else {
        (raw, name.to_string())
    };
    let text = String::from_utf8(raw).map_err(|e| {
        Error::file(
            path,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })?;
    if !name.ends_with(".jsonl") {
        return Ok(text);
    }
    let mut out = String::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::file(path, format!("line {}: not JSON: {e}", n + 1)))?;
        let t = v.get(text_field).and_then(|t| t.as_str()).ok_or_else(|| {
            Error::file(
                path,
                format!("line {}: no string field `{text_field}`", n + 1),
            )
        })?;
        out.push_str(t);
        out.push('\n');
    }
    Ok(out)
}

/// One batch on the host: `[B, T]` inputs, targets and loss weights.
#[derive(Clone, Debug, PartialEq)]
pub struct HostBatch {
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Input ids, row-major `[B, T]`.
    pub inputs: Vec<u32>,
    /// Target ids `[B, T]` (next token for decoders, original token for encoders).
    pub targets: Vec<u32>,
    /// 1 where the loss counts, 0 elsewhere `[B, T]`.
    pub weights: Vec<f32>,
}

impl HostBatch {
    /// The batch cut into `k` micro-batches of consecutive rows (`batch` must be a
    /// multiple of `k`), for gradient accumulation.
    pub fn split(&self, k: usize) -> Vec<HostBatch> {
        let k = k.max(1);
        let rows = self.batch / k;
        let n = rows * self.seq_len;
        (0..k)
            .map(|i| HostBatch {
                batch: rows,
                seq_len: self.seq_len,
                inputs: self.inputs[i * n..(i + 1) * n].to_vec(),
                targets: self.targets[i * n..(i + 1) * n].to_vec(),
                weights: self.weights[i * n..(i + 1) * n].to_vec(),
            })
            .collect()
    }
}

/// The tokenised train and held-out streams and how to cut batches from them.
#[derive(Debug)]
pub struct Corpus {
    train: TokenStream,
    heldout: TokenStream,
    vocab: Vocabulary,
    seq_len: usize,
    bos: bool,
    mask_prob: f64,
    causal: bool,
}

/// The vocabulary the recipe's data uses: the tokenizer it names (directly or through
/// its token shards' `meta.json`), or bytes. `resolve` maps recipe-relative paths.
pub fn vocabulary(
    cfg: &DataConfig,
    resolve: impl Fn(&Path) -> std::path::PathBuf,
) -> Result<Vocabulary> {
    if cfg.synthetic.is_some() {
        return Ok(Vocabulary::bytes());
    }
    match (&cfg.shards, &cfg.tokenizer) {
        (Some(dir), given) => {
            let dir = resolve(dir);
            let meta = ShardMeta::read(&dir)?;
            let path = given
                .as_ref()
                .map(|p| resolve(p))
                .unwrap_or_else(|| meta.tokenizer.clone());
            let vocab = Vocabulary::from_tokenizer_file(&path).map_err(|e| {
                Error::file(
                    dir.join(shards::META_FILE),
                    format!(
                        "the shards' tokenizer cannot be read ({e}); name it with data.tokenizer"
                    ),
                )
            })?;
            let t = vocab.tokenizer().expect("a tokenizer vocabulary");
            if t.sha256() != meta.tokenizer_sha256 || vocab.size != meta.vocab_size {
                return Err(Error::file(
                    dir.join(shards::META_FILE),
                    format!(
                        "the shards were tokenized with {} (sha256 {}, {} ids), but the recipe's tokenizer is {} (sha256 {}, {} ids); re-run `sinkscope tokenize` or name the tokenizer the shards were made with",
                        meta.tokenizer.display(),
                        short(&meta.tokenizer_sha256),
                        meta.vocab_size,
                        path.display(),
                        short(t.sha256()),
                        vocab.size
                    ),
                ));
            }
            Ok(vocab)
        }
        (None, Some(p)) => Vocabulary::from_tokenizer_file(&resolve(p)),
        (None, None) => Ok(Vocabulary::bytes()),
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

impl Corpus {
    /// Loads the recipe's data; `resolve` maps recipe-relative paths.
    pub fn load(
        cfg: &DataConfig,
        causal: bool,
        resolve: impl Fn(&Path) -> std::path::PathBuf,
    ) -> Result<Self> {
        let vocab = vocabulary(cfg, &resolve)?;
        let train_path = cfg
            .shards
            .as_ref()
            .map(|d| resolve(d).join(shards::TRAIN_FILE))
            .unwrap_or_else(|| resolve(&cfg.train));
        let heldout_path = match (&cfg.shards, &cfg.heldout) {
            (Some(d), _) => resolve(d).join(shards::HELDOUT_FILE),
            (None, Some(h)) => resolve(h),
            (None, None) => train_path.clone(),
        };
        let (train, heldout): (TokenStream, TokenStream) =
            match (&cfg.synthetic, &cfg.shards, &cfg.heldout) {
                (Some(task), _, _) => {
                    let (t, h) = task.streams();
                    (t.into(), h.into())
                }
                (None, Some(dir), _) => {
                    let meta = ShardMeta::read(&resolve(dir))?;
                    (
                        TokenStream::map(&train_path, meta.dtype)?,
                        TokenStream::map(&heldout_path, meta.dtype)?,
                    )
                }
                (None, None, Some(h)) => (
                    vocab
                        .encode(&read_corpus(&train_path, &cfg.text_field)?)?
                        .into(),
                    vocab
                        .encode(&read_corpus(&resolve(h), &cfg.text_field)?)?
                        .into(),
                ),
                (None, None, None) => {
                    let mut all = vocab.encode(&read_corpus(&train_path, &cfg.text_field)?)?;
                    let cut = ((all.len() as f64) * (1.0 - cfg.heldout_fraction)) as usize;
                    let held = all.split_off(cut);
                    (all.into(), held.into())
                }
            };
        for (stream, path) in [(&train, &train_path), (&heldout, &heldout_path)] {
            if let Some(max) = stream.max_id().filter(|&m| m as usize >= vocab.size) {
                return Err(Error::file(
                    path,
                    format!(
                        "holds token id {max}, outside the vocabulary of {}",
                        vocab.size
                    ),
                ));
            }
        }
        let need = cfg.seq_len + 1;
        if train.len() < need {
            return Err(Error::file(
                &train_path,
                format!("only {} tokens; need at least {need}", train.len()),
            ));
        }
        if heldout.len() < need {
            return Err(Error::file(
                heldout_path,
                format!(
                    "held-out part has only {} tokens; need at least {need}",
                    heldout.len()
                ),
            ));
        }
        if cfg.bos && vocab.bos.is_none() {
            return Err(Error::config(
                "recipe",
                "data.bos",
                "the tokenizer has no BOS token (looked for <s>, <|begin_of_text|>, <bos>, [CLS], <|endoftext|>)",
            ));
        }
        if !causal && vocab.mask.is_none() {
            return Err(Error::config(
                "recipe",
                "data.tokenizer",
                "an encoder's masked-LM loss needs a mask token ([MASK] or <mask>), which this tokenizer lacks",
            ));
        }
        Ok(Self {
            train,
            heldout,
            vocab,
            seq_len: cfg.seq_len,
            bos: cfg.bos,
            mask_prob: cfg.mask_prob,
            causal,
        })
    }

    /// The vocabulary the streams are written in.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocab
    }

    /// Tokens in the training stream.
    pub fn train_tokens(&self) -> usize {
        self.train.len()
    }

    /// The training batch of `step`: random windows drawn from an RNG seeded by
    /// (seed, step) alone.
    pub fn train_batch(&self, seed: u64, step: usize, batch: usize) -> HostBatch {
        let mut rng = StdRng::seed_from_u64(mix(seed, step as u64));
        let span = self.train.len() - self.seq_len - 1;
        let starts: Vec<usize> = (0..batch).map(|_| rng.random_range(0..=span)).collect();
        self.make_batch(&self.train, &starts, &mut rng)
    }

    /// The `index`-th fixed held-out batch: windows evenly spaced over the held-out
    /// stream, masks drawn from a fixed seed, identical at every evaluation.
    pub fn heldout_batch(&self, index: usize, of: usize, batch: usize) -> HostBatch {
        let starts = self.heldout_starts(index, of, batch);
        let mut rng = StdRng::seed_from_u64(mix(0x5EED, index as u64));
        self.make_batch(&self.heldout, &starts, &mut rng)
    }

    /// `batch` fixed held-out windows (no masking): the probe sequences that training
    /// hooks analyse at every evaluation.
    pub fn probe_inputs(&self, batch: usize) -> Vec<Vec<u32>> {
        let starts = self.heldout_starts(0, 1, batch);
        starts
            .iter()
            .map(|&s| self.window(&self.heldout, s).0)
            .collect()
    }

    /// Distinct held-out windows (start positions) there are.
    pub fn heldout_windows(&self) -> usize {
        self.heldout.len() - self.seq_len
    }

    fn heldout_starts(&self, index: usize, of: usize, batch: usize) -> Vec<usize> {
        let span = self.heldout.len() - self.seq_len - 1;
        let total = (of * batch).max(1);
        (0..batch)
            .map(|b| span * (index * batch + b) / total)
            .collect()
    }

    /// (inputs, next tokens) of the window starting at `start`, with BOS if asked.
    fn window(&self, stream: &TokenStream, start: usize) -> (Vec<u32>, Vec<u32>) {
        let t = self.seq_len;
        let ids = stream.window(start, t + 1);
        match self.vocab.bos.filter(|_| self.bos) {
            Some(bos) => {
                let mut input = vec![bos];
                input.extend_from_slice(&ids[..t - 1]);
                (input, ids[..t].to_vec())
            }
            None => (ids[..t].to_vec(), ids[1..].to_vec()),
        }
    }

    fn make_batch(&self, stream: &TokenStream, starts: &[usize], rng: &mut StdRng) -> HostBatch {
        let t = self.seq_len;
        let mut out = HostBatch {
            batch: starts.len(),
            seq_len: t,
            inputs: Vec::with_capacity(starts.len() * t),
            targets: Vec::with_capacity(starts.len() * t),
            weights: Vec::with_capacity(starts.len() * t),
        };
        for &s in starts {
            let (input, next) = self.window(stream, s);
            if self.causal {
                out.inputs.extend(&input);
                out.targets.extend(&next);
                out.weights.extend(std::iter::repeat_n(1.0, t));
            } else {
                let spec = MaskSpec {
                    prob: self.mask_prob,
                    // Checked at load: an encoder's vocabulary has a mask token.
                    mask_id: self.vocab.mask.unwrap_or(0),
                    random_ids: self.vocab.random_ids,
                    first: usize::from(self.bos),
                };
                let (masked, weights) = mlm_mask(&input, &spec, rng);
                out.inputs.extend(masked);
                out.targets.extend(&input);
                out.weights.extend(weights);
            }
        }
        out
    }
}

/// How masked-LM inputs are corrupted.
#[derive(Clone, Copy, Debug)]
pub struct MaskSpec {
    /// Share of tokens chosen.
    pub prob: f64,
    /// The mask token.
    pub mask_id: u32,
    /// Random replacements are drawn from ids `0..random_ids`.
    pub random_ids: u32,
    /// Positions before this are never chosen (BOS/CLS).
    pub first: usize,
}

/// BERT's masking: each token from `spec.first` on is chosen with `spec.prob` (at least
/// one per sequence); a chosen token becomes the mask (80%), a random id (10%) or stays
/// (10%). Returns the corrupted ids and the loss weights (1 at chosen positions).
pub fn mlm_mask(input: &[u32], spec: &MaskSpec, rng: &mut StdRng) -> (Vec<u32>, Vec<f32>) {
    let mut ids = input.to_vec();
    let mut w = vec![0f32; input.len()];
    let first = spec.first.min(input.len().saturating_sub(1));
    for wi in w.iter_mut().skip(first) {
        if rng.random_bool(spec.prob) {
            *wi = 1.0;
        }
    }
    if !w.iter().any(|&x| x > 0.0) && !input.is_empty() {
        w[rng.random_range(first..input.len())] = 1.0;
    }
    for (id, &wi) in ids.iter_mut().zip(&w) {
        if wi > 0.0 {
            let r: f64 = rng.random();
            if r < 0.8 {
                *id = spec.mask_id;
            } else if r < 0.9 {
                *id = rng.random_range(0..spec.random_ids);
            }
        }
    }
    (ids, w)
}

/// SplitMix64-style mixing of a seed and a counter into one RNG seed.
pub fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(causal: bool, bos: bool) -> Corpus {
        let text: String = (0..2000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        Corpus {
            train: bytes::encode(&text).into(),
            heldout: bytes::encode(&text[..300]).into(),
            vocab: Vocabulary::bytes(),
            seq_len: 8,
            bos,
            mask_prob: 0.15,
            causal,
        }
    }

    #[test]
    fn decoder_targets_are_next_tokens_and_batches_are_a_function_of_step() {
        let c = corpus(true, false);
        let b = c.train_batch(1, 5, 3);
        for r in 0..3 {
            for i in 0..7 {
                assert_eq!(b.targets[r * 8 + i], b.inputs[r * 8 + i + 1]);
            }
        }
        assert_eq!(b, c.train_batch(1, 5, 3));
        assert_ne!(b, c.train_batch(1, 6, 3));
        let with_bos = corpus(true, true).train_batch(1, 5, 1);
        assert_eq!(with_bos.inputs[0], bytes::BOS);
        assert_eq!(with_bos.inputs[1], with_bos.targets[0]);
    }

    #[test]
    fn encoder_masks_and_weights_match() {
        let c = corpus(false, false);
        let b = c.train_batch(3, 0, 50);
        let masked = b.weights.iter().filter(|&&w| w > 0.0).count();
        let share = masked as f64 / b.weights.len() as f64;
        assert!((0.08..0.25).contains(&share), "{share}");
        for i in 0..b.inputs.len() {
            if b.weights[i] == 0.0 {
                assert_eq!(b.inputs[i], b.targets[i]);
            }
        }
        assert!(b.inputs.contains(&bytes::MASK));
        assert_eq!(c.heldout_batch(1, 2, 4), c.heldout_batch(1, 2, 4));
    }

    #[test]
    fn jsonl_and_gzip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(&p, "{\"text\": \"hello\"}\n{\"text\": \"world\"}\n").unwrap();
        assert_eq!(read_corpus(&p, "text").unwrap(), "hello\nworld\n");
        let e = read_corpus(&p, "body").unwrap_err().to_string();
        assert!(
            e.contains("d.jsonl") && e.contains("line 1") && e.contains("body"),
            "{e}"
        );
        let bad = dir.path().join("b.txt");
        std::fs::write(&bad, [0xffu8, 0xfe]).unwrap();
        assert!(read_corpus(&bad, "text")
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
        let missing = read_corpus(&dir.path().join("none.txt"), "text")
            .unwrap_err()
            .to_string();
        assert!(missing.contains("none.txt"));
    }
}
