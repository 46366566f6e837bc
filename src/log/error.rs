//! The one error type of the logging module.
//!
//! Every variant names the file (or the input) and the problem, so that a
//! message reaching the user says where to look without a backtrace.

use std::io;
use std::path::{Path, PathBuf};

/// What went wrong while writing, reading or rewriting a log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The disk (or the user's quota) is full: `path` could not be written. Files
    /// already complete (checkpoints, earlier log records) are left as they were.
    #[error(
        "{}: disk full: {action} (checkpoints already written are intact; free space, then \
         `train --resume` continues a training run from its last checkpoint)",
        .path.display()
    )]
    DiskFull {
        /// What we were doing, in words.
        action: &'static str,
        /// The file that could not be written.
        path: PathBuf,
    },

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

    /// An event file holds a damaged record (bad CRC, cut short, or not an
    /// `Event`); the message names the file, the byte offset and the step lost.
    #[error("{0}")]
    Damaged(Box<crate::log::reader::Damage>),

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
    /// file operation in this module reports; a full disk says so in words.
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        let path = path.to_path_buf();
        if is_disk_full(&source) {
            LogError::DiskFull { action, path }
        } else {
            LogError::Io {
                action,
                path,
                source,
            }
        }
    }
}

/// Whether `e` says the disk or the user's disk quota is full (ENOSPC, EDQUOT), which
/// deserves words rather than "os error 28".
pub fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(code) if code == libc::ENOSPC || code == libc::EDQUOT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_said_in_words_naming_the_file() {
        let path = Path::new("/runs/a/metrics.jsonl");
        for code in [libc::ENOSPC, libc::EDQUOT] {
            let e = LogError::io("cannot write", path, io::Error::from_raw_os_error(code));
            let msg = e.to_string();
            assert!(
                msg.starts_with("/runs/a/metrics.jsonl: disk full: cannot write"),
                "{msg}"
            );
            assert!(
                msg.contains("checkpoints already written are intact"),
                "{msg}"
            );
        }
        let other = LogError::io(
            "cannot write",
            path,
            io::Error::from_raw_os_error(libc::EIO),
        );
        assert!(matches!(other, LogError::Io { .. }), "{other}");
    }
}
