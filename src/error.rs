//! The library's one error type. Every variant names the file or field at fault, so
//! the binary can print it as is and exit non-zero without a backtrace.

use std::path::{Path, PathBuf};

/// Result with sinkscope's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A recipe, config.json or command-line setting is missing, unknown or out of range.
    #[error("{source_name}: `{field}`: {message}")]
    Config {
        /// The file (or `--set`) the setting came from.
        source_name: String,
        /// The dotted field name.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A file could not be read or written, or its content is malformed.
    #[error("{}: {message}", path.display())]
    File {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Training produced a non-finite loss.
    #[error("{0}")]
    Diverged(String),
    /// Analysis input was rejected (wrong shape, NaN, rows not summing to 1…).
    #[error(transparent)]
    Analysis(#[from] crate::analysis::AnalysisError),
    /// Reading arrays from disk failed.
    #[error(transparent)]
    Read(#[from] crate::io::ReadError),
    /// Writing or reading logs failed.
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
    /// Reading a GGUF file failed.
    #[error(transparent)]
    Gguf(#[from] crate::import::gguf::GgufError),
    /// Finding, reading or mapping a Hugging Face model failed.
    #[error(transparent)]
    Import(#[from] crate::import::ImportError),
    /// The texts or token ids given do not fit the model: too short for a loss, none
    /// at all, an id outside the vocabulary, no mask token for a masked-LM loss.
    #[error("{0}")]
    Input(String),
    /// A checkpoint's content does not fit the run restoring it (a parameter without
    /// a recorded id, malformed hook state).
    #[error("{0}")]
    Checkpoint(String),
    /// A tensor could not be read back from the compute device (the backend's error).
    #[error("{0}")]
    Device(String),
    /// An internal invariant broke (a background analysis thread stopped or panicked,
    /// hooks used before the run started): a bug to report, not bad input.
    #[error("{0}")]
    Internal(String),
    /// Anything else that stops a command, with its explanation.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// A bad setting `field` in `source_name`.
    pub fn config(source_name: &str, field: &str, message: impl Into<String>) -> Self {
        Self::Config {
            source_name: source_name.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// A problem with the file at `path`.
    pub fn file(path: impl AsRef<Path>, message: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.as_ref().to_path_buf(),
            message: message.to_string(),
        }
    }
}

thread_local! {
    static CONTAINED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `f`, turning a panic inside it (in practice: inside a dependency fed a file it
/// accepts but then trips over, such as `tokenizers` on a template naming a missing
/// token) into `Err` with the panic's message. While `f` runs,
/// [`panic_is_contained`] is true on this thread, so the binary's panic hook stays
/// silent instead of printing an internal-error report.
pub fn contain<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    CONTAINED.with(|c| c.set(c.get() + 1));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(c.get() - 1));
    result.map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("rejected by a dependency: {msg}")
    })
}

/// Whether the current thread is inside [`contain`] (for the binary's panic hook).
pub fn panic_is_contained() -> bool {
    CONTAINED.with(|c| c.get() > 0)
}
