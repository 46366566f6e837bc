//! What `analyze` and `ablate` work on: a pretrained model imported from Hugging Face
//! or GGUF, or a sinkscope checkpoint (a checkpoint folder, or a run folder whose
//! newest checkpoint is taken), each with its tokenizer.

use std::path::Path;

use burn::prelude::*;

use crate::error::{Error, Result};
use crate::import::tokenizer::{Encoded, TextTokenizer};
use crate::import::Residence;
use crate::model::Transformer;
use crate::train::checkpoint;
use crate::train::data::{self, Corpus};
use crate::train::vocab::Vocabulary;
use crate::train::Recipe;

/// How a subject turns text into ids.
#[derive(Debug)]
pub enum SubjectTokenizer {
    /// A sinkscope run's vocabulary (bytes, or the tokenizer.json it trained with);
    /// `bos` if the run prepended BOS.
    Run {
        /// The run's vocabulary.
        vocab: Vocabulary,
        /// Prepend the BOS token.
        bos: bool,
    },
    /// A pretrained model's tokenizer (boxed: it is large, the byte tokenizer is a flag).
    Text(Box<TextTokenizer>),
}

/// A model with its tokenizer and a name for reports.
#[derive(Debug)]
pub struct Subject<B: Backend> {
    /// The model.
    pub model: Transformer<B>,
    /// Its tokenizer.
    pub tokenizer: SubjectTokenizer,
    /// Model family (`llama`, `gpt2`, …; `sinkscope` for checkpoints).
    pub family: String,
    /// Where it was loaded from.
    pub source: String,
    /// For a sinkscope checkpoint, the run's own probe windows (held-out text or
    /// synthetic task), the default input of `analyze` and `ablate`: a model trained
    /// on a synthetic task is only meaningful on that task. Empty for imported models.
    pub probe_texts: Vec<String>,
    /// The same probe windows as the hooks' token ids, so `analyze` on a checkpoint
    /// gives the values its training logged (re-encoding the text may differ).
    pub probe_inputs: Vec<Encoded>,
    /// Whether the model has its output head (see [`crate::import::Imported::head`]):
    /// without it, loss, output KL and Fisher information are left out.
    pub head: bool,
}

impl<B: Backend> Subject<B> {
    /// Loads `arg`: a sinkscope checkpoint or run folder, else anything
    /// [`crate::import::load`] accepts (model folder, hub id in the local cache, GGUF file),
    /// every weight in memory.
    pub fn load(arg: &str, device: &B::Device) -> Result<Self> {
        Self::load_with(arg, Residence::InMemory, device)
    }

    /// As [`load`](Self::load), with an imported model's blocks in memory or read from
    /// its checkpoint when a forward pass reaches them ([`Residence`]); a sinkscope
    /// checkpoint (a model small enough to have been trained here) is held in memory.
    pub fn load_with(arg: &str, residence: Residence, device: &B::Device) -> Result<Self> {
        let path = Path::new(arg);
        let checkpoint_dir = if path.join(checkpoint::META_FILE).is_file() {
            Some(path.to_path_buf())
        } else if checkpoint::checkpoints_dir(path).is_dir() {
            let all = checkpoint::list(path)?;
            let (_, dir) = all
                .last()
                .ok_or_else(|| Error::file(path, "run folder holds no complete checkpoint"))?;
            Some(dir.clone())
        } else {
            None
        };
        if let Some(dir) = checkpoint_dir {
            let (model, meta) = checkpoint::load_model::<B>(&dir, device)?;
            let probe_ids = run_probe_inputs(&meta.recipe);
            let vocab = data::vocabulary(&meta.recipe.data, |p| meta.recipe.resolve(p))?;
            let probe_texts = probe_ids.iter().map(|ids| vocab.decode(ids)).collect();
            let bos = vocab.bos.filter(|_| meta.recipe.data.bos);
            let probe_inputs = probe_ids
                .into_iter()
                .map(|ids| Encoded {
                    tokens: ids.iter().map(|&i| vocab.token_name(i)).collect(),
                    special: ids
                        .iter()
                        .enumerate()
                        .map(|(p, &i)| p == 0 && Some(i) == bos)
                        .collect(),
                    ids,
                })
                .collect();
            return Ok(Self {
                model,
                tokenizer: SubjectTokenizer::Run {
                    vocab,
                    bos: meta.recipe.data.bos,
                },
                family: "sinkscope".into(),
                source: dir.display().to_string(),
                probe_texts,
                probe_inputs,
                head: true,
            });
        }
        let imported = crate::import::load_with::<B>(arg, residence, device)?;
        Ok(Self {
            model: imported.model,
            tokenizer: SubjectTokenizer::Text(Box::new(imported.tokenizer)),
            family: imported.family,
            source: imported.source.display().to_string(),
            probe_texts: Vec::new(),
            probe_inputs: Vec::new(),
            head: imported.head,
        })
    }

    /// Token ids and their readable names, with the model's special tokens (BOS/CLS/SEP).
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        match &self.tokenizer {
            SubjectTokenizer::Run { vocab, bos } => {
                let mut ids = Vec::new();
                ids.extend(vocab.bos.filter(|_| *bos));
                let first = ids.len();
                ids.extend(vocab.encode(text)?);
                Ok(Encoded {
                    tokens: ids.iter().map(|&i| vocab.token_name(i)).collect(),
                    special: (0..ids.len()).map(|i| i < first).collect(),
                    ids,
                })
            }
            SubjectTokenizer::Text(t) => {
                let enc = t.encode(text)?;
                if let Some(&bad) = enc
                    .ids
                    .iter()
                    .find(|&&i| i as usize >= self.model.config.vocab_size)
                {
                    return Err(Error::Input(format!(
                        "token id {bad} is outside the model's vocabulary of {}",
                        self.model.config.vocab_size
                    )));
                }
                Ok(enc)
            }
        }
    }

    /// The longest sequence the model accepts: a learned position table has a size;
    /// other encodings extend (None).
    pub fn max_len(&self) -> Option<usize> {
        let cfg = &self.model.config;
        (cfg.position.kind == crate::model::PositionKind::Learned).then_some(cfg.max_seq_len)
    }

    /// Id used to fill padding (never seen by real tokens: padded keys are masked).
    pub fn pad_id(&self) -> u32 {
        match &self.tokenizer {
            SubjectTokenizer::Run { vocab, .. } => vocab.pad,
            SubjectTokenizer::Text(t) => ["<pad>", "[PAD]", "<|endoftext|>"]
                .iter()
                .find_map(|p| t.id_of(p))
                .unwrap_or(0),
        }
    }

    /// The mask token for masked-LM losses of encoders.
    pub fn mask_id(&self) -> Option<u32> {
        match &self.tokenizer {
            SubjectTokenizer::Run { vocab, .. } => vocab.mask,
            SubjectTokenizer::Text(t) => ["[MASK]", "<mask>"].iter().find_map(|p| t.id_of(p)),
        }
    }

    /// Tokenization caveat to show the user, if any.
    pub fn caveat(&self) -> Option<&str> {
        match &self.tokenizer {
            SubjectTokenizer::Text(t) => t.caveat(),
            SubjectTokenizer::Run { .. } => None,
        }
    }
}

/// The probe windows the run's hooks analysed (BOS included); empty, with a warning,
/// when the run's data can no longer be read.
fn run_probe_inputs(recipe: &Recipe) -> Vec<Vec<u32>> {
    match Corpus::load(&recipe.data, recipe.model.is_causal(), |p| p.to_path_buf()) {
        Ok(corpus) => corpus.probe_inputs(recipe.hooks.probes.max(1)),
        Err(e) => {
            tracing::warn!("the run's data cannot be read ({e}); using the default texts");
            Vec::new()
        }
    }
}
