//! Memory-mapped `.safetensors` array files (`metrics`' input, `--dump`'s output), with
//! conversion of float tensors to f32. Model checkpoints are read by the importer's
//! tensor sources (`crate::import::source`).
//!
//! Headers are parsed once; tensor bytes are read from the maps only when a tensor is
//! loaded, so a multi-gigabyte model costs one tensor of memory at a time.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::error::{Problem, ReadError};

/// One tensor of the set: its name, shape, dtype and where its bytes are.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    /// Tensor name as stored.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Stored data type.
    pub dtype: Dtype,
    shard: usize,
    begin: usize,
    end: usize,
}

#[derive(Debug)]
struct Shard {
    path: PathBuf,
    map: Mmap,
}

/// Every tensor of one `.safetensors` file or of a model folder.
#[derive(Debug)]
pub struct TensorFiles {
    shards: Vec<Shard>,
    tensors: Vec<TensorEntry>,
    by_name: HashMap<String, usize>,
}

impl TensorFiles {
    /// Opens one `.safetensors` file.
    pub fn open_file(path: &Path) -> Result<Self, ReadError> {
        let mut set = TensorFiles {
            shards: Vec::new(),
            tensors: Vec::new(),
            by_name: HashMap::new(),
        };
        set.add_shard(path)?;
        Ok(set)
    }

    fn add_shard(&mut self, path: &Path) -> Result<(), ReadError> {
        let file = File::open(path).map_err(|e| ReadError::new(path, e))?;
        // SAFETY: the map is read-only and lives as long as `self`; like every reader of
        // model files we assume no other process truncates the file meanwhile.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| ReadError::new(path, e))?;
        let (n, meta) = SafeTensors::read_metadata(&map).map_err(|e| {
            let hint = match e {
                safetensors::SafeTensorError::MetadataIncompleteBuffer
                | safetensors::SafeTensorError::InvalidHeaderLength
                | safetensors::SafeTensorError::HeaderTooSmall => " (truncated file?)",
                _ => "",
            };
            ReadError::new(path, Problem::Safetensors(format!("{e}{hint}")))
        })?;
        let shard = self.shards.len();
        let data_start = 8 + n;
        let mut entries: Vec<TensorEntry> = meta
            .tensors()
            .into_iter()
            .map(|(name, info)| TensorEntry {
                name,
                shape: info.shape.clone(),
                dtype: info.dtype,
                shard,
                begin: data_start + info.data_offsets.0,
                end: data_start + info.data_offsets.1,
            })
            .collect();
        entries.sort_by_key(|e| e.begin);
        for e in entries {
            if let Some(&other) = self.by_name.get(&e.name) {
                return Err(ReadError::new(
                    path,
                    Problem::Model(format!(
                        "tensor `{}` is also in {}",
                        e.name,
                        self.shards[self.tensors[other].shard].path.display()
                    )),
                ));
            }
            self.by_name.insert(e.name.clone(), self.tensors.len());
            self.tensors.push(e);
        }
        self.shards.push(Shard {
            path: path.to_path_buf(),
            map,
        });
        Ok(())
    }

    /// Every tensor, shard by shard in file order.
    pub fn tensors(&self) -> &[TensorEntry] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The file holding a tensor.
    pub fn path_of(&self, entry: &TensorEntry) -> &Path {
        &self.shards[entry.shard].path
    }

    /// A float tensor's values as f32 (F32, F16, BF16 and F64 are converted; anything else
    /// is an error naming the tensor).
    pub fn read_f32(&self, entry: &TensorEntry) -> Result<Vec<f32>, ReadError> {
        let bytes = &self.shards[entry.shard].map[entry.begin..entry.end];
        let out = match entry.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")) as f32)
                .collect(),
            other => {
                return Err(ReadError::new(
                    self.path_of(entry),
                    Problem::Dtype {
                        what: entry.name.clone(),
                        dtype: format!("{other:?}"),
                        expected: "F32, F16, BF16 or F64",
                    },
                ))
            }
        };
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    /// Writes a safetensors file from (name, dtype, shape, raw bytes).
    pub(crate) fn write(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, path).unwrap();
    }

    pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn converts_float_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let halfs: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let bhalfs: Vec<u8> = [0.5f32, 4.0]
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect();
        let doubles: Vec<u8> = [0.25f64, 8.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        write(
            &p,
            &[
                ("a", Dtype::F32, vec![2], f32_bytes(&[1.0, 2.0])),
                ("b", Dtype::F16, vec![2], halfs),
                ("c", Dtype::BF16, vec![2], bhalfs),
                ("d", Dtype::F64, vec![1, 2], doubles),
                ("e", Dtype::I32, vec![1], vec![0, 0, 0, 0]),
            ],
        );
        let t = TensorFiles::open_file(&p).unwrap();
        let read = |n: &str| t.read_f32(t.get(n).unwrap());
        assert_eq!(read("a").unwrap(), vec![1.0, 2.0]);
        assert_eq!(read("b").unwrap(), vec![1.5, -2.0]);
        assert_eq!(read("c").unwrap(), vec![0.5, 4.0]);
        assert_eq!(read("d").unwrap(), vec![0.25, 8.0]);
        assert_eq!(t.get("d").unwrap().shape, vec![1, 2]);
        let err = read("e").unwrap_err().to_string();
        assert!(
            err.contains("I32") && err.contains("t.safetensors"),
            "{err}"
        );
    }

    #[test]
    fn truncated_and_garbage_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        write(&p, &[("a", Dtype::F32, vec![4], f32_bytes(&[1.0; 4]))]);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let err = TensorFiles::open_file(&p).err().unwrap().to_string();
        assert!(
            err.contains("t.safetensors") && err.contains("truncated"),
            "{err}"
        );
        std::fs::write(&p, b"hello").unwrap();
        assert!(TensorFiles::open_file(&p).is_err());
    }
}
