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
//!
//! burn-store's lazy tensors cannot cross threads, while an imported model's blocks are
//! read when a forward pass reaches them, from whichever thread runs it; so a [`Shard`]
//! keeps only each tensor's dtype and shape, and a read opens the file's reader again
//! (it parses `data.pkl`, small next to the tensors, and reads the one storage asked for).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::tensor::DType;
use burn_store::pytorch::PytorchReader;

use crate::error::Result;
use crate::import::error::{ImportError, ImportErrorKind};
use crate::import::sharded::{CheckpointFile, Sharded};

/// The single-file checkpoint name `save_pretrained(safe_serialization=False)` writes.
pub const SINGLE_FILE: &str = "pytorch_model.bin";
/// The index of a sharded one.
pub const INDEX_FILE: &str = "pytorch_model.bin.index.json";

/// A tensor's stored dtype and shape.
#[derive(Debug)]
struct Stored {
    dtype: DType,
    shape: Vec<usize>,
}

/// One `.bin` file's tensors (lazy: data stays in the zip until read).
#[derive(Debug)]
pub struct Shard {
    path: PathBuf,
    tensors: HashMap<String, Stored>,
}

impl Shard {
    fn open(path: &Path) -> Result<Self, ImportError> {
        if !path.is_file() {
            return Err(ImportErrorKind::NotFound("no such file".into()).at(path));
        }
        let reader = PytorchReader::new(path)
            .map_err(|e| ImportErrorKind::Pytorch(e.to_string()).at(path))?;
        verify_storages(path)?;
        let tensors = reader
            .into_tensors()
            .into_iter()
            .map(|(name, t)| {
                let stored = Stored {
                    dtype: t.dtype,
                    shape: t.shape.to_vec(),
                };
                (name, stored)
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
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
pub type PytorchSource = Sharded<Shard>;

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
        self.tensors.get(name).map(|t| format!("{:?}", t.dtype))
    }

    fn is_float(&self, name: &str) -> bool {
        self.tensors.get(name).is_some_and(|t| is_float(t.dtype))
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.shape.clone())
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, ImportError> {
        let bad =
            |e: String| ImportErrorKind::Pytorch(format!("tensor `{name}`: {e}")).at(&self.path);
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| bad("not in this file".into()))?;
        let reader = PytorchReader::new(&self.path)
            .map_err(|e| ImportErrorKind::Pytorch(e.to_string()).at(&self.path))?;
        let data = reader
            .get(name)
            .ok_or_else(|| bad("not in this file".into()))?
            .to_data()
            .map_err(|e| bad(format!("{e:?}")))?;
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
            )));
        }
        Ok(values)
    }

    fn format_error(message: String) -> ImportErrorKind {
        ImportErrorKind::Pytorch(message)
    }
}
