//! Where stored tensors come from: one interface over safetensors and PyTorch
//! `pytorch_model.bin` (single or sharded) and GGUF, so the weight loader (and `spectra`)
//! is written once for all of them.

use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::Result;
use crate::import::error::{ImportError, ImportErrorKind};
use crate::import::pytorch::{self, PytorchSource};
use crate::import::safetensors::{self as st, SafetensorsSource};

/// A read-only collection of named tensors, each readable as row-major f32. Shared
/// across threads: an imported model's blocks are read from it while the forward pass
/// runs ([`crate::model::BlockWeights`]).
pub trait TensorSource: Send + Sync + std::fmt::Debug {
    /// Every float tensor in the checkpoint (unordered). Integer and boolean tensors
    /// (`position_ids`, `token_type_ids`, masks) are index buffers, never weights: they
    /// are listed by [`TensorSource::left_out`] instead.
    fn names(&self) -> Vec<String>;

    /// The non-float tensors left out of [`TensorSource::names`], as `name (dtype)`,
    /// sorted, for the note that mentions them.
    fn left_out(&self) -> Vec<String> {
        Vec::new()
    }

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

/// One line that mentions the tensors `source` leaves out (None when there are none), so a
/// user sees that an integer buffer was skipped on purpose rather than lost.
pub fn left_out_note(source: &dyn TensorSource) -> Option<String> {
    let left = source.left_out();
    if left.is_empty() {
        return None;
    }
    const SHOWN: usize = 6;
    let mut names = left[..left.len().min(SHOWN)].join(", ");
    if left.len() > SHOWN {
        names.push_str(&format!(" and {} more", left.len() - SHOWN));
    }
    Some(format!(
        "{}: left out {} non-float tensor{} (index buffers, not weights): {names}",
        source.origin().display(),
        left.len(),
        if left.len() == 1 { "" } else { "s" }
    ))
}

/// The checkpoint in a model folder, in the order transformers prefers them:
/// `model.safetensors`, its sharded index, `pytorch_model.bin`, its sharded index.
pub fn open_folder(dir: &Path) -> Result<Box<dyn TensorSource>, ImportError> {
    let has = |f: &str| dir.join(f).is_file();
    Ok(if has(st::SINGLE_FILE) {
        Box::new(SafetensorsSource::open_file(&dir.join(st::SINGLE_FILE))?)
    } else if has(st::INDEX_FILE) {
        Box::new(SafetensorsSource::open_index(&dir.join(st::INDEX_FILE))?)
    } else if has(pytorch::SINGLE_FILE) {
        Box::new(PytorchSource::open_file(&dir.join(pytorch::SINGLE_FILE))?)
    } else if has(pytorch::INDEX_FILE) {
        Box::new(PytorchSource::open_index(&dir.join(pytorch::INDEX_FILE))?)
    } else {
        return Err(ImportErrorKind::NotFound(format!(
            "no weights in this folder (looked for {}, {}, {}, {})",
            st::SINGLE_FILE,
            st::INDEX_FILE,
            pytorch::SINGLE_FILE,
            pytorch::INDEX_FILE
        ))
        .at(dir));
    })
}

/// Drops the pages of `map` that lie wholly inside `start..end` from this process once a
/// tensor there has been converted, so the converted copy does not sit next to the raw
/// one in memory: mapped file pages count in the resident set once touched, and a model
/// read block by block would otherwise end up with the whole file resident.
#[cfg(unix)]
pub(crate) fn release_pages(map: &Mmap, start: usize, end: usize) {
    const PAGE: usize = 4096;
    let first = start.next_multiple_of(PAGE);
    let last = end / PAGE * PAGE;
    if last > first {
        // SAFETY: the map is private and read-only, so MADV_DONTNEED discards nothing:
        // a later read of these pages faults them back in from the file with the same
        // bytes. No borrow of the range is alive here (the conversion is done).
        // A failure (e.g. a larger page size) only means the pages stay resident.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, last - first)
        };
    }
}

/// Mapped pages stay until the map is dropped where `madvise` is not available.
#[cfg(not(unix))]
pub(crate) fn release_pages(_map: &Mmap, _start: usize, _end: usize) {}
