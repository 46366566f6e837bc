//! The one error type of the Hugging Face importer: which file, and what is wrong with it.
//!
//! As in the GGUF reader, the path is kept apart from the [`ImportErrorKind`], so every
//! problem names its file (config.json, a shard, the index, tokenizer.json, the model
//! argument) without each variant repeating it, and callers can match on the kind.

use std::fmt;
use std::path::PathBuf;

/// A model could not be found, read or mapped; `Display` reads "`<path>`: `<problem>`".
///
/// The kind is boxed so that results carrying this error (and the crate's [`Error`], which
/// wraps it) stay small on the happy path.
///
/// [`Error`]: crate::Error
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct ImportError {
    /// The file (or folder, or model argument) the problem is in.
    pub path: PathBuf,
    /// What is wrong.
    pub kind: Box<ImportErrorKind>,
}

/// What went wrong while importing a model.
#[derive(Debug, thiserror::Error)]
pub enum ImportErrorKind {
    /// The file could not be opened, read or memory-mapped.
    #[error("cannot read: {0}")]
    Io(std::io::Error),
    /// The model argument names nothing sinkscope can load, or a required file is absent.
    #[error("{0}")]
    NotFound(String),
    /// The safetensors header or layout is broken (truncated file, corrupt header…).
    #[error("not a valid safetensors file: {0}")]
    Safetensors(String),
    /// A `pytorch_model.bin` that cannot be read: not a zip/pickle checkpoint, truncated,
    /// or pickle content the reader does not rebuild (a whole pickled module, custom classes).
    #[error("not a readable PyTorch checkpoint: {0}")]
    Pytorch(String),
    /// A JSON file (config.json, the shard index, tokenizer_config.json) does not parse.
    #[error("malformed JSON at `{field}`: {message}")]
    Json {
        /// The dotted path of the offending field (`.` for the whole document).
        field: String,
        /// serde's explanation.
        message: String,
    },
    /// A tensor stored in a dtype sinkscope does not convert.
    #[error("tensor `{tensor}` is stored as {dtype}; sinkscope reads F32, F16, BF16 and F64")]
    UnsupportedDtype {
        /// The tensor's name.
        tensor: String,
        /// Its dtype as safetensors names it.
        dtype: String,
    },
    /// A `model_type` that no family table covers.
    #[error("model_type `{found}` is not supported (supported: {})", supported.join(", "))]
    UnknownModelType {
        /// The `model_type` (or GGUF `general.architecture`) found.
        found: String,
        /// Everything that is supported.
        supported: Vec<String>,
    },
    /// A setting that is missing, malformed, or asks for something the model cannot do.
    #[error("`{field}`: {message}")]
    Config {
        /// The setting's name as the file spells it.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A tensor the configuration needs is not in the checkpoint.
    #[error("tensor `{tensor}` (for {param}) is missing")]
    MissingTensor {
        /// The name looked for.
        tensor: String,
        /// The sinkscope parameter it would fill.
        param: String,
    },
    /// A tensor whose shape does not fit the parameter the configuration makes.
    #[error(
        "tensor `{tensor}` has shape {shape:?}, which does not fit {param} {expected:?} \
         (burn layout, after: {how})"
    )]
    ShapeMismatch {
        /// The tensor's name.
        tensor: String,
        /// Its stored (row-major) shape.
        shape: Vec<usize>,
        /// The sinkscope parameter.
        param: String,
        /// The parameter's shape as the configuration makes it.
        expected: Vec<usize>,
        /// The conversion steps, for the reader to follow.
        how: String,
    },
    /// Tensors in the checkpoint that the family table does not use: importing them
    /// silently would hide a config/checkpoint mismatch.
    #[error("{} tensor(s) that the {family} mapping does not use: {}", tensors.len(), Shortlist(tensors))]
    UnusedTensors {
        /// The family whose table was applied.
        family: String,
        /// The unused names, sorted.
        tensors: Vec<String>,
    },
    /// tokenizer.json could not be loaded, or a text could not be encoded.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// burn refused a converted tensor (should not happen after the checks above).
    #[error("cannot apply the weights: {0}")]
    Apply(String),
}

impl ImportErrorKind {
    /// Attach the file, turning the kind into a reportable error.
    pub fn at(self, path: impl Into<PathBuf>) -> ImportError {
        ImportError {
            path: path.into(),
            kind: Box::new(self),
        }
    }
}

/// The first few names of a long list, then a count, so an error stays readable.
struct Shortlist<'a>(&'a [String]);

impl fmt::Display for Shortlist<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 8;
        let names: Vec<&str> = self.0.iter().take(SHOWN).map(String::as_str).collect();
        f.write_str(&names.join(", "))?;
        if self.0.len() > SHOWN {
            write!(f, " and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}
