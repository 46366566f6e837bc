//! PyTorch `pytorch_model.bin` checkpoints (the zip + pickle format `torch.save` writes,
//! used by older and intermediate checkpoints such as Pythia's revisions), single-file or
//! sharded (`pytorch_model.bin.index.json`), read without Python.
//!
//! The pickle is read by burn-store's PyTorch reader (a maintained crate we already build
//! burn with): it parses `data.pkl` with a restricted unpickler that only rebuilds tensors
//! and plain containers, so a checkpoint cannot run code, and reads each tensor's storage
//! from the zip only when asked. Pickle content it does not understand (a whole pickled
//! `nn.Module`, custom classes) fails with its message and the file's name.
//!
//! One guard is ours: burn-store returns zeros for a tensor whose storage entry is
//! missing, unreadable or short (`pickle_reader.rs`, "return zeros"), and a silently
//! zeroed weight is worse than a failed load. So on opening, every storage entry of the
//! zip is read once through the zip crate, which checks its CRC-32: a corrupted or cut
//! entry is an error naming the file. (A storage entry absent from a valid zip, or
//! written short with a matching CRC, still reads as zeros; no writer produces those.)

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::store::TensorSnapshot;
use burn::tensor::DType;
use burn_store::pytorch::PytorchReader;

use crate::error::Result;
use crate::import::error::{ImportError, ImportErrorKind};
use crate::import::safetensors::Index;
use crate::import::source::TensorSource;

/// The single-file checkpoint name `save_pretrained(safe_serialization=False)` writes.
pub const SINGLE_FILE: &str = "pytorch_model.bin";
/// The index of a sharded one.
pub const INDEX_FILE: &str = "pytorch_model.bin.index.json";

/// One `.bin` file's tensors (lazy: data stays in the zip until read).
struct Shard {
    path: PathBuf,
    tensors: HashMap<String, TensorSnapshot>,
}

impl Shard {
    fn open(path: &Path) -> Result<Self, ImportError> {
        if !path.is_file() {
            return Err(ImportErrorKind::NotFound("no such file".into()).at(path));
        }
        let reader = PytorchReader::new(path)
            .map_err(|e| ImportErrorKind::Pytorch(e.to_string()).at(path))?;
        verify_storages(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            tensors: reader.into_tensors(),
        })
    }
}

/// Reads every tensor storage (`…/data/N`) of a zip-format checkpoint to its end, so the
/// zip crate checks its CRC-32 (see the module doc). Legacy non-zip formats have no
/// checksums to check.
fn verify_storages(path: &Path) -> Result<(), ImportError> {
    let file = File::open(path).map_err(|e| ImportErrorKind::Io(e).at(path))?;
    let Ok(mut archive) = zip::ZipArchive::new(file) else {
        return Ok(());
    };
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| ImportErrorKind::Pytorch(e.to_string()).at(path))?;
        let name = entry.name().to_string();
        if !(name.starts_with("data/") || name.contains("/data/")) {
            continue;
        }
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| {
            ImportErrorKind::Pytorch(format!("tensor storage `{name}` is corrupt: {e}")).at(path)
        })?;
    }
    Ok(())
}

fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
}

/// A PyTorch checkpoint: one `.bin` file or the shards an index names.
pub struct PytorchSource {
    main: PathBuf,
    shards: Vec<Shard>,
    by_name: HashMap<String, usize>,
}

impl PytorchSource {
    /// One `pytorch_model.bin` (or any `torch.save`d state dict).
    pub fn open_file(path: &Path) -> Result<Self, ImportError> {
        let shard = Shard::open(path)?;
        let by_name = shard.tensors.keys().map(|n| (n.clone(), 0)).collect();
        Ok(Self {
            main: path.to_path_buf(),
            shards: vec![shard],
            by_name,
        })
    }

    /// The shards an index names; every tensor it lists must be in its shard, and no
    /// tensor may be in two shards.
    pub fn open_index(index_path: &Path) -> Result<Self, ImportError> {
        let (index, files) = Index::read(index_path)?;
        let shards = files
            .iter()
            .map(|f| Shard::open(f))
            .collect::<Result<Vec<_>, _>>()?;
        let mut by_name = HashMap::new();
        for (i, shard) in shards.iter().enumerate() {
            for name in shard.tensors.keys() {
                if let Some(j) = by_name.insert(name.clone(), i) {
                    return Err(ImportErrorKind::Pytorch(format!(
                        "tensor `{name}` is also in {}",
                        shards[j].path.display()
                    ))
                    .at(&shard.path));
                }
            }
        }
        let dir = index_path.parent().unwrap_or(Path::new("."));
        for (name, file) in &index.weight_map {
            let holder = by_name.get(name).map(|&i| &shards[i]);
            if holder.is_none_or(|s| s.path != dir.join(file)) {
                return Err(ImportErrorKind::Pytorch(format!(
                    "the index puts tensor `{name}` here, but this file does not hold it"
                ))
                .at(dir.join(file)));
            }
        }
        Ok(Self {
            main: index_path.to_path_buf(),
            shards,
            by_name,
        })
    }

    fn find(&self, name: &str) -> Option<(&Shard, &TensorSnapshot)> {
        let shard = &self.shards[*self.by_name.get(name)?];
        Some((shard, shard.tensors.get(name)?))
    }

    fn missing(&self, name: &str) -> ImportError {
        ImportErrorKind::NotFound(format!("no tensor `{name}` in the checkpoint")).at(&self.main)
    }
}

impl TensorSource for PytorchSource {
    fn names(&self) -> Vec<String> {
        self.by_name
            .keys()
            .filter(|n| self.find(n).is_some_and(|(_, t)| is_float(t.dtype)))
            .cloned()
            .collect()
    }

    fn left_out(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .by_name
            .keys()
            .filter_map(|n| {
                let (_, t) = self.find(n)?;
                (!is_float(t.dtype)).then(|| format!("{n} ({:?})", t.dtype))
            })
            .collect();
        out.sort();
        out
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.find(name).map(|(_, t)| t.shape.to_vec())
    }

    fn origin(&self) -> PathBuf {
        self.main.clone()
    }

    fn file_of(&self, name: &str) -> PathBuf {
        self.find(name)
            .map_or_else(|| self.main.clone(), |(s, _)| s.path.clone())
    }

    fn check_readable(&self, name: &str) -> Result<()> {
        let (shard, t) = self.find(name).ok_or_else(|| self.missing(name))?;
        if is_float(t.dtype) {
            Ok(())
        } else {
            Err(ImportErrorKind::UnsupportedDtype {
                tensor: name.to_string(),
                dtype: format!("{:?}", t.dtype),
            }
            .at(&shard.path)
            .into())
        }
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let (shard, t) = self.find(name).ok_or_else(|| self.missing(name))?;
        let bad =
            |e: String| ImportErrorKind::Pytorch(format!("tensor `{name}`: {e}")).at(&shard.path);
        let data = t.to_data().map_err(|e| bad(format!("{e:?}")))?;
        let expected: usize = t.shape.iter().product();
        let values = data
            .convert_dtype(DType::F32)
            .into_vec::<f32>()
            .map_err(|e| bad(format!("{e:?}")))?;
        if values.len() != expected {
            return Err(bad(format!(
                "holds {} values for shape {:?}",
                values.len(),
                t.shape
            ))
            .into());
        }
        Ok(values)
    }
}
