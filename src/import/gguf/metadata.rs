//! GGUF metadata: the typed key/value pairs in a file's header, and lookups that say which
//! file and key were wrong instead of returning a bare `None`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::{GgufError, GgufErrorKind};

/// One metadata value, with the thirteen GGUF value types (`GGUFValueType` in gguf-py).
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataValue {
    /// Type 0.
    U8(u8),
    /// Type 1.
    I8(i8),
    /// Type 2.
    U16(u16),
    /// Type 3.
    I16(i16),
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 6.
    F32(f32),
    /// Type 7 (one byte, 0 or 1).
    Bool(bool),
    /// Type 8 (u64 length + UTF-8 bytes).
    String(String),
    /// Type 9 (element type + u64 count + elements; arrays may nest).
    Array(Vec<MetadataValue>),
    /// Type 10.
    U64(u64),
    /// Type 11.
    I64(i64),
    /// Type 12.
    F64(f64),
}

impl MetadataValue {
    /// Short description for error messages: `u32 7`, `string "llama"`, `array of 3 u32`.
    pub fn describe(&self) -> String {
        match self {
            Self::U8(v) => format!("u8 {v}"),
            Self::I8(v) => format!("i8 {v}"),
            Self::U16(v) => format!("u16 {v}"),
            Self::I16(v) => format!("i16 {v}"),
            Self::U32(v) => format!("u32 {v}"),
            Self::I32(v) => format!("i32 {v}"),
            Self::U64(v) => format!("u64 {v}"),
            Self::I64(v) => format!("i64 {v}"),
            Self::F32(v) => format!("f32 {v}"),
            Self::F64(v) => format!("f64 {v}"),
            Self::Bool(v) => format!("bool {v}"),
            Self::String(v) => format!("string {v:?}"),
            Self::Array(items) => match items.first() {
                None => "empty array".to_string(),
                Some(first) => {
                    let kind = first.describe();
                    let kind = kind.split(' ').next().unwrap_or_default();
                    format!("array of {} {kind}", items.len())
                }
            },
        }
    }

    /// Any integer value, widened; `None` for floats, bools, strings and arrays.
    pub fn as_i128(&self) -> Option<i128> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::I8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::U64(v) => Some(v.into()),
            Self::I64(v) => Some(v.into()),
            _ => None,
        }
    }
}

/// Conversion of a [`MetadataValue`] to a Rust type, for [`Metadata::value`].
///
/// Integers convert between widths when the value fits (converters disagree on whether a
/// count is u32 or u64), floats between f32 and f64; nothing converts across kinds.
pub trait FromMetadata<'a>: Sized {
    /// What the caller expected, for the error message.
    fn expected() -> String;
    /// The value as `Self`, or `None` if it is of another kind or out of range.
    fn from_metadata(value: &'a MetadataValue) -> Option<Self>;
}

/// Integer targets: any integer value that fits.
macro_rules! from_metadata_int {
    ($($t:ty),*) => {$(
        impl<'a> FromMetadata<'a> for $t {
            fn expected() -> String {
                stringify!($t).to_string()
            }
            fn from_metadata(value: &'a MetadataValue) -> Option<Self> {
                value.as_i128().and_then(|v| <$t>::try_from(v).ok())
            }
        }
    )*};
}
from_metadata_int!(u8, u16, u32, u64, i32, i64, usize);

impl<'a> FromMetadata<'a> for f32 {
    fn expected() -> String {
        "f32".to_string()
    }
    fn from_metadata(value: &'a MetadataValue) -> Option<Self> {
        match *value {
            MetadataValue::F32(v) => Some(v),
            MetadataValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }
}

impl<'a> FromMetadata<'a> for f64 {
    fn expected() -> String {
        "f64".to_string()
    }
    fn from_metadata(value: &'a MetadataValue) -> Option<Self> {
        match *value {
            MetadataValue::F32(v) => Some(v.into()),
            MetadataValue::F64(v) => Some(v),
            _ => None,
        }
    }
}

impl<'a> FromMetadata<'a> for bool {
    fn expected() -> String {
        "bool".to_string()
    }
    fn from_metadata(value: &'a MetadataValue) -> Option<Self> {
        match *value {
            MetadataValue::Bool(v) => Some(v),
            _ => None,
        }
    }
}

impl<'a> FromMetadata<'a> for &'a str {
    fn expected() -> String {
        "string".to_string()
    }
    fn from_metadata(value: &'a MetadataValue) -> Option<Self> {
        match value {
            MetadataValue::String(v) => Some(v),
            _ => None,
        }
    }
}

impl<'a, T: FromMetadata<'a>> FromMetadata<'a> for Vec<T> {
    fn expected() -> String {
        format!("array of {}", T::expected())
    }
    fn from_metadata(value: &'a MetadataValue) -> Option<Self> {
        match value {
            MetadataValue::Array(items) => items.iter().map(T::from_metadata).collect(),
            _ => None,
        }
    }
}

/// All metadata of one file, in file order, with lookups by key.
#[derive(Clone, Debug)]
pub struct Metadata {
    path: PathBuf,
    entries: Vec<(String, MetadataValue)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// Metadata of the file at `path` (kept for error messages); keys must be unique.
    pub(super) fn new(
        path: &Path,
        entries: Vec<(String, MetadataValue)>,
    ) -> Result<Self, GgufErrorKind> {
        let mut index = HashMap::with_capacity(entries.len());
        for (i, (key, _)) in entries.iter().enumerate() {
            if index.insert(key.clone(), i).is_some() {
                return Err(GgufErrorKind::Invalid(format!(
                    "metadata key {key:?} appears twice"
                )));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            entries,
            index,
        })
    }

    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// All pairs in file order (for listing a file's metadata).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetadataValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no metadata at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of a required key as `T`; a missing key or a value of another type is an
    /// error naming the file and the key.
    pub fn value<'a, T: FromMetadata<'a>>(&'a self, key: &str) -> Result<T, GgufError> {
        self.value_opt(key)?
            .ok_or_else(|| GgufErrorKind::MissingMetadata(key.to_string()).at(&self.path))
    }

    /// The value of an optional key as `T`: `Ok(None)` when absent, an error when present
    /// with another type (a wrong type is a broken file, not a default).
    pub fn value_opt<'a, T: FromMetadata<'a>>(&'a self, key: &str) -> Result<Option<T>, GgufError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        T::from_metadata(value).map(Some).ok_or_else(|| {
            GgufErrorKind::MetadataType {
                key: key.to_string(),
                expected: T::expected(),
                found: value.describe(),
            }
            .at(&self.path)
        })
    }

    /// A required unsigned 32-bit integer (counts, lengths, token ids).
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.value(key)
    }

    /// A required unsigned 64-bit integer.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.value(key)
    }

    /// A required float (rope bases, norm epsilons).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.value(key)
    }

    /// A required bool (`tokenizer.ggml.add_bos_token`).
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        self.value(key)
    }

    /// A required string (`general.architecture`, `tokenizer.ggml.model`).
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.value(key)
    }

    /// A required array of strings (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges`).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        self.value(key)
    }

    /// A required array of floats (`tokenizer.ggml.scores`).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        self.value(key)
    }

    /// A required array of integers (`tokenizer.ggml.token_type`).
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        self.value(key)
    }
}
