//! The one error type of the GGUF reader: which file, and what is wrong with it.

use std::fmt;
use std::path::PathBuf;

use super::ggml_type::GgmlType;
use super::permute::PermuteError;

/// A GGUF file could not be read or used; `Display` reads "`<path>`: `<problem>`".
///
/// The path is kept apart from the [`GgufErrorKind`] so that every problem names its file
/// without each variant repeating it, and so callers can match on the kind.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct GgufError {
    /// The file the problem is in.
    pub path: PathBuf,
    /// What is wrong.
    pub kind: GgufErrorKind,
}

/// What went wrong while reading a GGUF file or one of its tensors.
#[derive(Debug, thiserror::Error)]
pub enum GgufErrorKind {
    /// The file could not be opened or memory-mapped.
    #[error("cannot read the file: {0}")]
    Io(std::io::Error),
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: it starts with {found:?}, not \"GGUF\"")]
    BadMagic {
        /// The first four bytes (fewer if the file is shorter).
        found: Vec<u8>,
    },
    /// A GGUF version other than 2 or 3 (version 1 used 32-bit counts and is long obsolete).
    #[error("GGUF version {version} is not supported (only versions 2 and 3 are)")]
    UnsupportedVersion {
        /// The version field as read little-endian.
        version: u32,
    },
    /// The version field reads as a byte-swapped 2 or 3: the file was written big-endian.
    #[error("big-endian GGUF files are not supported")]
    BigEndian,
    /// The file ends inside the header, the metadata or the tensor table.
    #[error(
        "truncated: {what} needs {needed} bytes at offset {offset}, but the file has {len} bytes"
    )]
    Truncated {
        /// What was being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// The file length.
        len: u64,
    },
    /// A metadata value type id outside the GGUF specification.
    #[error("metadata key {key:?} has unknown value type id {id}")]
    UnknownValueType {
        /// The key being read.
        key: String,
        /// The type id found.
        id: u32,
    },
    /// A string (key, value or tensor name) that is not UTF-8, which GGUF requires.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which string.
        what: String,
    },
    /// Structurally impossible content (zero alignment, too many dimensions, duplicate names…).
    #[error("{0}")]
    Invalid(String),
    /// A tensor whose ggml type id is not one ggml defines.
    #[error("tensor {tensor:?} has unknown ggml type id {id}")]
    UnknownGgmlType {
        /// The tensor's name.
        tensor: String,
        /// The type id found.
        id: u32,
    },
    /// A ggml type sinkscope cannot dequantize (i-quants, Q2_K, Q3_K, integer types…).
    #[error(
        "tensor {tensor:?} is {ggml_type}, which sinkscope cannot dequantize (supported: {})",
        SupportedList
    )]
    UnsupportedGgmlType {
        /// The tensor's name.
        tensor: String,
        /// Its type.
        ggml_type: GgmlType,
    },
    /// A tensor whose data lies (partly) past the end of the file.
    #[error("tensor {tensor:?} data {start}..{end} lies outside the file ({len} bytes)")]
    TensorOutOfBounds {
        /// The tensor's name.
        tensor: String,
        /// Absolute start of its data.
        start: u64,
        /// Absolute end of its data.
        end: u64,
        /// The file length.
        len: u64,
    },
    /// No tensor of that name in the file.
    #[error("no tensor named {0:?}")]
    MissingTensor(String),
    /// No metadata key of that name in the file.
    #[error("metadata key {0:?} is missing")]
    MissingMetadata(String),
    /// A metadata value of another type than the caller needs (or out of its range).
    #[error("metadata key {key:?} holds {found}, expected {expected}")]
    MetadataType {
        /// The key.
        key: String,
        /// What the caller asked for.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// A q/k tensor whose shape does not fit the head count it is un-permuted with.
    #[error("cannot un-permute tensor {tensor:?}: {source}")]
    Permute {
        /// The tensor's name.
        tensor: String,
        /// Why it does not fit.
        source: PermuteError,
    },
}

impl GgufErrorKind {
    /// Attach the file, turning the kind into a reportable error.
    pub fn at(self, path: impl Into<PathBuf>) -> GgufError {
        GgufError {
            path: path.into(),
            kind: self,
        }
    }
}

/// Formats the supported types for error messages, from the one list in [`GgmlType`].
struct SupportedList;

impl fmt::Display for SupportedList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = GgmlType::SUPPORTED.iter().map(|t| t.name()).collect();
        f.write_str(&names.join(", "))
    }
}
