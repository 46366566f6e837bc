//! Reading a JSON file into a serde type with errors that name the file and the field
//! (config.json, the shard index, tokenizer_config.json all go through here).

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::import::error::{ImportError, ImportErrorKind};

/// Reads and parses `path`; a missing file, bad JSON or a wrongly typed field is an error
/// naming the file and the field's dotted path.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ImportErrorKind::Io(e).at(path))?;
    parse_json(path, &text)
}

/// Parses `text`, naming `path` in any error.
pub fn parse_json<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ImportError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        ImportErrorKind::Json {
            field: e.path().to_string(),
            message: e.inner().to_string(),
        }
        .at(path)
    })
}
