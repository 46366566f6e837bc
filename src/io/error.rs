//! The error of every reader in `io`: which file, and what is wrong with it.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::analysis::AnalysisError;

/// A file could not be read as the array the command needs.
#[derive(Debug, Error)]
#[error("{}: {problem}", path.display())]
pub struct ReadError {
    /// The file (or folder) at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What went wrong while reading.
#[derive(Debug, Error)]
pub enum Problem {
    /// The operating system refused (missing file, permissions, …).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The `.npy` header is malformed or unsupported.
    #[error("bad .npy header: {0}")]
    NpyHeader(String),
    /// The file ends before the data its header announces.
    #[error("truncated: the header announces {expected} bytes of data, the file holds {found}")]
    Truncated {
        /// Bytes of data announced.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The `.safetensors` container is malformed (truncated, bad header, bad offsets).
    #[error("bad .safetensors file: {0}")]
    Safetensors(String),
    /// A data type the reader does not convert.
    #[error("unsupported dtype {dtype} for `{what}` ({expected} expected)")]
    Dtype {
        /// The tensor or array.
        what: String,
        /// Its data type.
        dtype: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A required tensor is absent.
    #[error("no tensor named `{0}`")]
    MissingTensor(String),
    /// The array has the wrong rank or shape.
    #[error("{0}")]
    Shape(String),
    /// The values themselves are unusable (NaN, rows not summing to 1, …).
    #[error("{0}")]
    Invalid(#[from] AnalysisError),
    /// A model folder is inconsistent (shard missing, tensor in two shards, …).
    #[error("{0}")]
    Model(String),
}

impl ReadError {
    /// Wraps a problem with the path it concerns.
    pub fn new(path: &Path, problem: impl Into<Problem>) -> Self {
        ReadError {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}
