//! Hugging Face safetensors checkpoints, single-file or sharded
//! (`model.safetensors.index.json`), memory-mapped and converted tensor by tensor to f32.
//!
//! Every header is validated when the file is opened (by the `safetensors` crate: offsets
//! inside the file, no gaps, nothing past the end), so a truncated or corrupt file fails
//! there, naming the file. Data stays in the memory map until a tensor is read; after
//! conversion its pages are handed back to the kernel, so loading a model holds about one
//! f32 copy of it rather than the copy plus the mapped file.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Component, Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::error::Result;
use crate::import::error::{ImportError, ImportErrorKind};
use crate::import::json::read_json;
use crate::import::sharded::{CheckpointFile, Sharded};
use crate::import::source::release_pages;

/// The single-file checkpoint name `save_pretrained` writes.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// One memory-mapped safetensors file with its parsed header.
#[derive(Debug)]
pub struct Shard {
    path: PathBuf,
    map: Mmap,
    /// Absolute offset of the data section (8 + header length).
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
}

impl Shard {
    fn open(path: &Path) -> Result<Self, ImportError> {
        let file = File::open(path).map_err(|e| ImportErrorKind::Io(e).at(path))?;
        // SAFETY: memmap2 requires that the file is not modified or truncated while mapped.
        // The map is only read; checkpoints are inputs sinkscope never writes, and another
        // process rewriting one during an analysis is outside what we can guard against.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| ImportErrorKind::Io(e).at(path))?;
        let (header_len, metadata) = SafeTensors::read_metadata(&map)
            .map_err(|e| ImportErrorKind::Safetensors(e.to_string()).at(path))?;
        let tensors = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            map,
            data_start: 8 + header_len,
            tensors,
        })
    }

    fn read_f32(&self, name: &str, info: &TensorInfo) -> Result<Vec<f32>, ImportError> {
        let (start, end) = info.data_offsets;
        let (start, end) = (self.data_start + start, self.data_start + end);
        let values = to_f32(info.dtype, &self.map[start..end]).ok_or_else(|| {
            ImportErrorKind::UnsupportedDtype {
                tensor: name.to_string(),
                dtype: format!("{:?}", info.dtype),
            }
            .at(&self.path)
        })?;
        release_pages(&self.map, start, end);
        Ok(values)
    }
}

/// Little-endian `bytes` of `dtype` as f32; None for dtypes that are not floats we convert.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let two = |f: fn(u16) -> f32| {
        bytes
            .chunks_exact(2)
            .map(|b| f(u16::from_le_bytes([b[0], b[1]])))
            .collect()
    };
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => two(|bits| f16::from_bits(bits).to_f32()),
        Dtype::BF16 => two(|bits| bf16::from_bits(bits).to_f32()),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                f64::from_le_bytes(a) as f32
            })
            .collect(),
        _ => return None,
    })
}

fn convertible(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64)
}

/// The part of a shard index (`model.safetensors.index.json`, `pytorch_model.bin.index.json`:
/// the same layout) that says which shard holds which tensor.
#[derive(Deserialize)]
pub(crate) struct Index {
    pub(crate) weight_map: BTreeMap<String, String>,
}

impl Index {
    /// Reads `index_path` and returns it with its shard files (each once, sorted), every
    /// one a plain file name inside the index's folder.
    pub(crate) fn read(index_path: &Path) -> Result<(Self, Vec<PathBuf>), ImportError> {
        let index: Index = read_json(index_path)?;
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut files: Vec<&String> = index.weight_map.values().collect();
        files.sort();
        files.dedup();
        let mut paths = Vec::with_capacity(files.len());
        for file in files {
            let plain = Path::new(file)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
            if !plain {
                return Err(ImportErrorKind::Config {
                    field: "weight_map".into(),
                    message: format!("shard `{file}` is not a file name inside the folder"),
                }
                .at(index_path));
            }
            paths.push(dir.join(file));
        }
        Ok((index, paths))
    }
}

/// A safetensors checkpoint: one file, or the shards an index names.
pub type SafetensorsSource = Sharded<Shard>;

impl CheckpointFile for Shard {
    fn open(path: &Path) -> Result<Self, ImportError> {
        Shard::open(path)
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn tensor_names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    fn dtype(&self, name: &str) -> Option<String> {
        self.tensors.get(name).map(|i| format!("{:?}", i.dtype))
    }

    fn is_float(&self, name: &str) -> bool {
        self.tensors.get(name).is_some_and(|i| convertible(i.dtype))
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|i| i.shape.clone())
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, ImportError> {
        let info = self.tensors.get(name).ok_or_else(|| {
            ImportErrorKind::NotFound(format!("no tensor `{name}`")).at(&self.path)
        })?;
        Shard::read_f32(self, name, info)
    }

    fn format_error(message: String) -> ImportErrorKind {
        ImportErrorKind::Safetensors(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_values_convert_exactly() {
        let halves = [1.0f32, -2.5, 65504.0, 0.0];
        let f16_bytes: Vec<u8> = halves
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        assert_eq!(to_f32(Dtype::F16, &f16_bytes).unwrap(), halves);
        let bf16_bytes: Vec<u8> = [1.0f32, -3.0, 256.0]
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        assert_eq!(
            to_f32(Dtype::BF16, &bf16_bytes).unwrap(),
            [1.0, -3.0, 256.0]
        );
        assert_eq!(to_f32(Dtype::F64, &0.5f64.to_le_bytes()).unwrap(), [0.5f32]);
        assert!(to_f32(Dtype::I64, &[0; 8]).is_none());
    }
}
