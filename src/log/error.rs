//! The one error type of the logging module.
//!
//! Every variant names the file (or the input) and the problem, so that a
//! message reaching the user says where to look without a backtrace.

use std::io;
use std::path::{Path, PathBuf};

/// What went wrong while writing, reading or rewriting a log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An operating-system call failed on `path`; `action` says which one in
    /// words ("cannot create log folder", "cannot write", …).
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What we were doing, in words.
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// A record's framing is damaged: a CRC does not match.
    #[error("{}: corrupt record at byte offset {offset}: {problem}", .path.display())]
    Corrupt {
        /// The event file.
        path: PathBuf,
        /// Byte offset of the start of the damaged record.
        offset: u64,
        /// Which check failed.
        problem: String,
    },

    /// The file ends in the middle of a record (a crash while writing, or a
    /// file still being written).
    #[error("{}: truncated record at byte offset {offset}: {problem}", .path.display())]
    Truncated {
        /// The event file.
        path: PathBuf,
        /// Byte offset of the start of the incomplete record.
        offset: u64,
        /// What was missing.
        problem: String,
    },

    /// A record's framing is intact but its payload is not an `Event`.
    #[error("{}: cannot decode the event at byte offset {offset}: {source}", .path.display())]
    Decode {
        /// The event file.
        path: PathBuf,
        /// Byte offset of the start of the record.
        offset: u64,
        /// What prost reported.
        source: prost::DecodeError,
    },

    /// A JSONL file has a line that is not a JSON object.
    #[error("{}:{line}: {problem}", .path.display())]
    Jsonl {
        /// The JSONL file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },

    /// A value could not be turned into one JSON line.
    #[error("cannot serialize a line for {}: {source}", .path.display())]
    Serialize {
        /// The JSONL file the line was meant for.
        path: PathBuf,
        /// What serde_json reported.
        source: serde_json::Error,
    },

    /// A step that TensorBoard's signed 64-bit `Event.step` cannot hold.
    #[error("step {step} does not fit TensorBoard's int64 step")]
    StepOutOfRange {
        /// The step asked for.
        step: u64,
    },

    /// Bad input to the image renderer (sizes that do not match, an empty
    /// or oversized image).
    #[error("image: {0}")]
    Image(String),

    /// The PNG encoder refused the image.
    #[error("cannot encode PNG: {0}")]
    Png(#[from] png::EncodingError),
}

impl LogError {
    /// Wraps an `io::Error` with the path and the action, the form every
    /// file operation in this module reports.
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        LogError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
