//! Checkpoints: safetensors weights, the AdamW state, and a JSON sidecar, written
//! into a temporary folder and renamed into place, so a folder named `step-N` is
//! always complete; a crash leaves at worst a `.tmp-` folder that is swept away.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::ParamId;
use burn::optim::Optimizer;
use burn::prelude::*;
use burn::record::{
    FullPrecisionSettings, NamedMpkBytesRecorder, NamedMpkFileRecorder, PrecisionSettings, Record,
    Recorder,
};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::{Error, Result};
use crate::model::params::with_param_ids;
use crate::model::{ModelConfig, Transformer};
use crate::train::recipe::Recipe;

/// Weights file inside a checkpoint folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Optimiser-state file (burn's named MessagePack record).
pub const OPTIMIZER_FILE: &str = "optimizer.mpk";
/// Sidecar file.
pub const META_FILE: &str = "checkpoint.json";
/// Size and CRC-32C of the other three files, written last.
pub const CHECKSUMS_FILE: &str = "checksums.json";

/// The JSON sidecar of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckpointMeta {
    /// Optimiser steps completed.
    pub step: usize,
    /// Training loss of the last step.
    pub train_loss: Option<f64>,
    /// Latest held-out loss.
    pub heldout_loss: Option<f64>,
    /// Training tokens seen.
    pub tokens_seen: u64,
    /// Seed of the run.
    pub seed: u64,
    /// The resolved model (vocabulary size filled in).
    pub model: ModelConfig,
    /// The recipe of the run.
    pub recipe: Recipe,
    /// Weights file, relative to the checkpoint folder.
    pub weights: String,
    /// Optimiser state file, relative to the checkpoint folder.
    pub optimizer: String,
    /// Parameter name → burn parameter id (keys of the optimiser state).
    pub param_ids: BTreeMap<String, u64>,
    /// sinkscope version that wrote it.
    pub version: String,
    /// State of the training hooks that later values depend on (the Fisher hook's
    /// running sum), restored on resume so nothing is lost (Null: none).
    #[serde(default)]
    pub hooks: serde_json::Value,
}

/// The checkpoints folder of a run.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

fn step_dir(root: &Path, step: usize) -> PathBuf {
    root.join(format!("step-{step:08}"))
}

fn io_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::file(path, format!("{what}: {e}"))
}

fn fsync(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(path, "cannot sync", e))
}

/// The optimiser state with its parameters in sorted order: burn's own record is a
/// `HashMap`, whose random iteration order made two identical runs write different
/// bytes. Same encoding (a MessagePack map), so it reads either way.
struct SortedRecord<M>(M);

impl<M, T, B> Record<B> for SortedRecord<M>
where
    M: IntoIterator<Item = (ParamId, T)> + FromIterator<(ParamId, T)> + Send,
    T: Record<B>,
    B: Backend,
{
    type Item<S: PrecisionSettings> = BTreeMap<String, T::Item<S>>;

    fn into_item<S: PrecisionSettings>(self) -> Self::Item<S> {
        self.0
            .into_iter()
            .map(|(id, r)| (id.serialize(), r.into_item()))
            .collect()
    }

    fn from_item<S: PrecisionSettings>(item: Self::Item<S>, device: &B::Device) -> Self {
        SortedRecord(
            item.into_iter()
                .map(|(k, i)| (ParamId::deserialize(&k), T::from_item(i, device)))
                .collect(),
        )
    }
}

/// An error writing `path`; a full disk is said in words, with the promise that the
/// previous checkpoint was not touched.
fn write_err(path: &Path, e: &std::io::Error) -> Error {
    if crate::log::error::is_disk_full(e) {
        Error::file(
            path,
            "disk full: cannot write the checkpoint (the previous checkpoint is intact; free space and resume with --resume)",
        )
    } else {
        io_err(path, "cannot write", e)
    }
}

/// Writes `bytes` to `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = fs::File::create(path).map_err(|e| write_err(path, &e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| write_err(path, &e))
}

/// Writes a checkpoint of `model` and `optim` atomically; returns its folder. The
/// same state gives the same bytes (sorted optimiser record, no random metadata), and
/// [`CHECKSUMS_FILE`], written last, records each file's size and CRC-32C. On any
/// failure the temporary folder is removed and earlier checkpoints stay as they were.
pub fn save<B, O, R>(
    run_dir: &Path,
    meta: &CheckpointMeta,
    model: &Transformer<B>,
    optim: &O,
) -> Result<PathBuf>
where
    B: AutodiffBackend,
    O: Optimizer<Transformer<B>, B>,
    O::Record: IntoIterator<Item = (ParamId, R)> + FromIterator<(ParamId, R)>,
    R: Record<B>,
{
    let root = checkpoints_dir(run_dir);
    fs::create_dir_all(&root).map_err(|e| io_err(&root, "cannot create checkpoint folder", e))?;
    let tmp = root.join(format!(".tmp-step-{:08}", meta.step));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, "cannot remove stale folder", e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| write_err(&tmp, &e))?;
    let written = write_files(&tmp, meta, model, optim).and_then(|()| {
        let dest = step_dir(&root, meta.step);
        if dest.exists() {
            fs::remove_dir_all(&dest).map_err(|e| io_err(&dest, "cannot replace", e))?;
        }
        fs::rename(&tmp, &dest)
            .map_err(|e| io_err(&dest, "cannot move checkpoint into place", e))?;
        fsync(&root)?;
        Ok(dest)
    });
    if written.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    written
}

fn write_files<B, O, R>(
    tmp: &Path,
    meta: &CheckpointMeta,
    model: &Transformer<B>,
    optim: &O,
) -> Result<()>
where
    B: AutodiffBackend,
    O: Optimizer<Transformer<B>, B>,
    O::Record: IntoIterator<Item = (ParamId, R)> + FromIterator<(ParamId, R)>,
    R: Record<B>,
{
    let weights = tmp.join(WEIGHTS_FILE);
    let mut store = SafetensorsStore::from_bytes(None).clear_metadata();
    model
        .save_into(&mut store)
        .map_err(|e| io_err(&weights, "cannot encode weights", e))?;
    let weight_bytes = store
        .get_bytes()
        .map_err(|e| io_err(&weights, "cannot encode weights", e))?;
    let optim_path = tmp.join(OPTIMIZER_FILE);
    let optim_bytes = NamedMpkBytesRecorder::<FullPrecisionSettings>::new()
        .record(SortedRecord(optim.to_record()), ())
        .map_err(|e| io_err(&optim_path, "cannot encode optimiser state", e))?;
    let meta_path = tmp.join(META_FILE);
    let json =
        serde_json::to_vec_pretty(meta).map_err(|e| io_err(&meta_path, "cannot encode", e))?;
    let mut sums = BTreeMap::new();
    for (name, bytes) in [
        (WEIGHTS_FILE, &weight_bytes),
        (OPTIMIZER_FILE, &optim_bytes),
        (META_FILE, &json),
    ] {
        write_synced(&tmp.join(name), bytes)?;
        sums.insert(name.to_string(), FileSum::of(bytes));
    }
    let sums_path = tmp.join(CHECKSUMS_FILE);
    let sums_json =
        serde_json::to_vec_pretty(&sums).map_err(|e| io_err(&sums_path, "cannot encode", e))?;
    write_synced(&sums_path, &sums_json)?;
    fsync(tmp)
}

/// Size and CRC-32C of one checkpoint file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// Length in bytes.
    pub bytes: u64,
    /// CRC-32C (Castagnoli) of the content.
    pub crc32c: u32,
}

impl FileSum {
    fn of(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
        }
    }
}

/// Checks a checkpoint folder against its [`CHECKSUMS_FILE`]: every file present with
/// its recorded size and CRC. The message names the first problem found (a missing
/// file, a truncated one, a corrupt page). Checkpoints written before checksums
/// existed stay usable: they pass when their three files are present, with a warning
/// naming the checkpoint, since nothing proves their content.
pub fn verify(dir: &Path) -> std::result::Result<(), String> {
    verify_files(dir, &[WEIGHTS_FILE, OPTIMIZER_FILE, META_FILE])
}

/// [`verify`] for the files `names` only (loading weights for analysis needs no
/// optimiser state).
fn verify_files(dir: &Path, names: &[&str]) -> std::result::Result<(), String> {
    let sums_path = dir.join(CHECKSUMS_FILE);
    let sums: BTreeMap<String, FileSum> = match fs::read(&sums_path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: malformed: {e}", sums_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            for name in names {
                if !dir.join(name).is_file() {
                    return Err(format!("{}: missing", dir.join(name).display()));
                }
            }
            warn!(
                "{}: no {CHECKSUMS_FILE} (written before checkpoints carried checksums); \
                 used without verifying its files",
                dir.display()
            );
            return Ok(());
        }
        Err(e) => return Err(format!("{}: cannot read: {e}", sums_path.display())),
    };
    for name in names {
        let path = dir.join(name);
        let expected = sums
            .get(*name)
            .ok_or_else(|| format!("{}: no checksum recorded for {name}", sums_path.display()))?;
        let bytes = fs::read(&path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let found = FileSum::of(&bytes);
        if found.bytes != expected.bytes {
            return Err(format!(
                "{}: {} bytes, {} expected (truncated or torn)",
                path.display(),
                found.bytes,
                expected.bytes
            ));
        }
        if found.crc32c != expected.crc32c {
            return Err(format!(
                "{}: checksum mismatch (content corrupt)",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Complete checkpoints of a run, oldest first, as (step, folder).
pub fn list(run_dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let root = checkpoints_dir(run_dir);
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(&root).map_err(|e| io_err(&root, "cannot list", e))? {
        let entry = entry.map_err(|e| io_err(&root, "cannot list", e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse().ok()) {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Removes half-written `.tmp-` folders left by a crash.
pub fn sweep_partial(run_dir: &Path) -> Result<()> {
    let root = checkpoints_dir(run_dir);
    if let Ok(entries) = fs::read_dir(&root) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                fs::remove_dir_all(e.path())
                    .map_err(|err| io_err(&e.path(), "cannot remove", err))?;
            }
        }
    }
    Ok(())
}

/// Deletes all but the newest `keep` checkpoints (0 keeps all).
pub fn prune(run_dir: &Path, keep: usize) -> Result<()> {
    if keep == 0 {
        return Ok(());
    }
    let all = list(run_dir)?;
    for (_, dir) in all.iter().take(all.len().saturating_sub(keep)) {
        fs::remove_dir_all(dir).map_err(|e| io_err(dir, "cannot remove old checkpoint", e))?;
    }
    Ok(())
}

/// Reads a checkpoint's sidecar.
pub fn read_meta(dir: &Path) -> Result<CheckpointMeta> {
    let path = dir.join(META_FILE);
    let text = fs::read_to_string(&path)
        .map_err(|e| io_err(&path, "cannot read checkpoint sidecar", e))?;
    serde_json::from_str(&text).map_err(|e| io_err(&path, "malformed checkpoint sidecar", e))
}

/// Loads the weights of a checkpoint folder into a model built from its sidecar,
/// after checking the weights and sidecar against their checksums ([`verify`]), and
/// that every parameter is present with its shape and nothing is left over.
pub fn load_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(Transformer<B>, CheckpointMeta)> {
    verify_files(dir, &[WEIGHTS_FILE, META_FILE]).map_err(Error::Checkpoint)?;
    let meta = read_meta(dir)?;
    let mut model = Transformer::<B>::skeleton(&meta.model, device);
    let weights = dir.join(&meta.weights);
    load_weights(&mut model, &weights)?;
    Ok((model, meta))
}

/// Applies a safetensors file written by [`save`] to `model`, strictly.
pub fn load_weights<B: Backend>(model: &mut Transformer<B>, weights: &Path) -> Result<()> {
    if !weights.exists() {
        return Err(Error::file(weights, "weights file not found"));
    }
    let mut store = SafetensorsStore::from_file(weights).validate(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| io_err(weights, "cannot read weights", e))?;
    if !result.missing.is_empty() || !result.unused.is_empty() || !result.errors.is_empty() {
        return Err(Error::file(
            weights,
            format!(
                "weights do not match the model: missing {:?}, unexpected {:?}, errors {:?}",
                result.missing, result.unused, result.errors
            ),
        ));
    }
    Ok(())
}

/// Restores model weights, parameter ids and optimiser state for resuming.
pub fn restore<B, O, R>(
    dir: &Path,
    model: Transformer<B>,
    optim: O,
    device: &B::Device,
) -> Result<(Transformer<B>, O, CheckpointMeta)>
where
    B: AutodiffBackend,
    O: Optimizer<Transformer<B>, B>,
    O::Record: IntoIterator<Item = (ParamId, R)> + FromIterator<(ParamId, R)>,
    R: Record<B>,
{
    let meta = read_meta(dir)?;
    let mut model = model;
    load_weights(&mut model, &dir.join(&meta.weights))?;
    let model =
        with_param_ids(model, &meta.param_ids).map_err(|e| Error::file(dir.join(META_FILE), e))?;
    let optim_path = dir.join(&meta.optimizer);
    let record: SortedRecord<O::Record> = NamedMpkFileRecorder::<FullPrecisionSettings>::new()
        .load(optim_path.with_extension(""), device)
        .map_err(|e| io_err(&optim_path, "cannot read optimiser state", e))?;
    let optim = optim.load_record(record.0);
    Ok((model, optim, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /dev/full fails every write with ENOSPC, as a full disk does.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_full_disk_is_said_in_words() {
        let e = write_synced(Path::new("/dev/full"), &[0u8; 8192])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/dev/full: disk full"), "{e}");
        assert!(e.contains("previous checkpoint is intact"), "{e}");
    }

    #[test]
    fn verify_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let files = [
            (WEIGHTS_FILE, b"weights".as_slice()),
            (OPTIMIZER_FILE, b"adam"),
            (META_FILE, b"{}"),
        ];
        let mut sums = BTreeMap::new();
        for (name, bytes) in files {
            fs::write(d.join(name), bytes).unwrap();
            sums.insert(name.to_string(), FileSum::of(bytes));
        }
        fs::write(d.join(CHECKSUMS_FILE), serde_json::to_vec(&sums).unwrap()).unwrap();
        assert_eq!(verify(d), Ok(()));
        fs::write(d.join(OPTIMIZER_FILE), b"adaM").unwrap();
        assert!(verify(d).unwrap_err().contains("checksum mismatch"));
        fs::write(d.join(OPTIMIZER_FILE), b"ad").unwrap();
        assert!(verify(d).unwrap_err().contains("truncated"));
        fs::remove_file(d.join(WEIGHTS_FILE)).unwrap();
        assert!(verify(d).unwrap_err().contains(WEIGHTS_FILE));
    }
}
