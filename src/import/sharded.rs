//! A checkpoint as published: one file, or the shards an index names
//! (`model.safetensors.index.json`, `pytorch_model.bin.index.json`: the same layout),
//! whatever the file format. The format ([`CheckpointFile`]: safetensors, PyTorch zip)
//! opens and reads one file; this module finds each tensor's file, checks the index
//! against the files (every tensor where the index puts it, none in two files) and
//! leaves non-float tensors out, once for every format.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::import::error::{ImportError, ImportErrorKind};
use crate::import::safetensors::Index;
use crate::import::source::TensorSource;

/// One checkpoint file of some format, opened and validated, its data read on demand.
pub trait CheckpointFile: Sized + Send + Sync + std::fmt::Debug {
    /// Opens `path`, checking what can be checked without reading every tensor.
    fn open(path: &Path) -> Result<Self, ImportError>;
    /// The file it was opened from.
    fn path(&self) -> &Path;
    /// Every tensor name in the file.
    fn tensor_names(&self) -> Vec<String>;
    /// The stored dtype of `name` as the format spells it, if the file holds it.
    fn dtype(&self, name: &str) -> Option<String>;
    /// Whether `name` is a floating-point tensor (others are buffers: ids, masks).
    fn is_float(&self, name: &str) -> bool;
    /// Shape of `name`.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// The values of `name` (held by this file, floating point) as f32.
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, ImportError>;
    /// The format's error kind for a problem across the files of a checkpoint.
    fn format_error(message: String) -> ImportErrorKind;
}

/// A checkpoint: one file, or the shards an index names.
#[derive(Debug)]
pub struct Sharded<F> {
    /// The single file or the index, for errors about the checkpoint as a whole.
    main: PathBuf,
    files: Vec<F>,
    by_name: HashMap<String, usize>,
}

impl<F: CheckpointFile> Sharded<F> {
    /// One checkpoint file.
    pub fn open_file(path: &Path) -> Result<Self, ImportError> {
        let file = F::open(path)?;
        let by_name = file.tensor_names().into_iter().map(|n| (n, 0)).collect();
        Ok(Self {
            main: path.to_path_buf(),
            files: vec![file],
            by_name,
        })
    }

    /// The shards named by an index file; every tensor the index lists must be in its
    /// shard, and no tensor may appear in two shards.
    pub fn open_index(index_path: &Path) -> Result<Self, ImportError> {
        let (index, paths) = Index::read(index_path)?;
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let files = paths
            .iter()
            .map(|f| F::open(f))
            .collect::<Result<Vec<_>, _>>()?;
        let mut by_name = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            for name in file.tensor_names() {
                if let Some(j) = by_name.insert(name.clone(), i) {
                    return Err(F::format_error(format!(
                        "tensor `{name}` is also in {}",
                        files[j].path().display()
                    ))
                    .at(file.path()));
                }
            }
        }
        for (name, file) in &index.weight_map {
            let holder = by_name.get(name).map(|&i| &files[i]);
            if holder.is_none_or(|s| s.path() != dir.join(file)) {
                return Err(F::format_error(format!(
                    "the index puts tensor `{name}` here, but this file does not hold it"
                ))
                .at(dir.join(file)));
            }
        }
        Ok(Self {
            main: index_path.to_path_buf(),
            files,
            by_name,
        })
    }

    fn find(&self, name: &str) -> Option<&F> {
        let file = &self.files[*self.by_name.get(name)?];
        file.dtype(name).map(|_| file)
    }

    fn holder(&self, name: &str) -> Result<&F, ImportError> {
        self.find(name).ok_or_else(|| {
            ImportErrorKind::NotFound(format!("no tensor `{name}` in the checkpoint"))
                .at(&self.main)
        })
    }
}

impl<F: CheckpointFile> TensorSource for Sharded<F> {
    fn names(&self) -> Vec<String> {
        self.by_name
            .keys()
            .filter(|n| self.find(n).is_some_and(|f| f.is_float(n)))
            .cloned()
            .collect()
    }

    fn left_out(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .by_name
            .keys()
            .filter_map(|n| {
                let f = self.find(n)?;
                (!f.is_float(n)).then(|| format!("{n} ({})", f.dtype(n).unwrap_or_default()))
            })
            .collect();
        out.sort();
        out
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.find(name)?.shape(name)
    }

    fn origin(&self) -> PathBuf {
        self.main.clone()
    }

    fn file_of(&self, name: &str) -> PathBuf {
        self.find(name)
            .map_or_else(|| self.main.clone(), |f| f.path().to_path_buf())
    }

    fn check_readable(&self, name: &str) -> Result<()> {
        let file = self.holder(name)?;
        if file.is_float(name) {
            Ok(())
        } else {
            Err(ImportErrorKind::UnsupportedDtype {
                tensor: name.to_string(),
                dtype: file.dtype(name).unwrap_or_default(),
            }
            .at(file.path())
            .into())
        }
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        Ok(self.holder(name)?.read_f32(name)?)
    }
}
