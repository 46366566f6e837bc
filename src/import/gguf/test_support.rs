//! Shared by the GGUF tests: fixture paths, expected tensors from safetensors files, and
//! damaged copies of fixtures in a temporary directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

/// `tests/fixtures/<rel>` of the crate being tested.
pub(super) fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Every f32 tensor of a safetensors file as (values, row-major shape).
pub(super) fn read_safetensors(path: &Path) -> HashMap<String, (Vec<f32>, Vec<usize>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .filter(|(_, view)| view.dtype() == Dtype::F32)
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (values, view.shape().to_vec()))
        })
        .collect()
}

/// A copy of the fixture `rel`, changed by `damage`, in a fresh temporary directory (kept
/// alive by the returned guard).
pub(super) fn damaged_copy(
    rel: &str,
    damage: impl FnOnce(&mut Vec<u8>),
) -> (tempfile::TempDir, PathBuf) {
    let mut bytes = std::fs::read(fixture(rel)).unwrap();
    damage(&mut bytes);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(Path::new(rel).file_name().unwrap());
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// Byte offset just past the GGUF string `s` (u64 length + bytes), which must occur once.
pub(super) fn end_of_gguf_string(bytes: &[u8], s: &str) -> usize {
    let mut needle = (s.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(s.as_bytes());
    let hits: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "{s:?} should occur once");
    hits[0] + needle.len()
}
