//! Where stored tensors come from: one interface over safetensors (single or sharded) and
//! GGUF, so the weight loader is written once for both.

use std::path::PathBuf;

use crate::error::Result;

/// A read-only collection of named tensors, each readable as row-major f32.
pub trait TensorSource {
    /// Every tensor name in the checkpoint (unordered).
    fn names(&self) -> Vec<String>;

    /// The row-major shape of `name`, or None if there is no such tensor.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;

    /// The checkpoint as a whole (the single file, the shard index, the GGUF file), for
    /// errors that concern no one tensor.
    fn origin(&self) -> PathBuf;

    /// The file holding `name` (the origin if there is no such tensor), for errors.
    fn file_of(&self, name: &str) -> PathBuf;

    /// Checks that `name` can be converted to f32 (its dtype or quantization is supported),
    /// so a load fails before any data is read rather than half-way.
    fn check_readable(&self, name: &str) -> Result<()>;

    /// The values of `name`, converted to f32.
    fn read_f32(&self, name: &str) -> Result<Vec<f32>>;
}
