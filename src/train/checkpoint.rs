//! Checkpoints: safetensors weights, the AdamW state, and a JSON sidecar, written
//! into a temporary folder and renamed into place, so a folder named `step-N` is
//! always complete; a crash leaves at worst a `.tmp-` folder that is swept away.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::optim::Optimizer;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

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

/// Writes a checkpoint of `model` and `optim` atomically; returns its folder.
pub fn save<B, O>(
    run_dir: &Path,
    meta: &CheckpointMeta,
    model: &Transformer<B>,
    optim: &O,
) -> Result<PathBuf>
where
    B: AutodiffBackend,
    O: Optimizer<Transformer<B>, B>,
{
    let root = checkpoints_dir(run_dir);
    fs::create_dir_all(&root).map_err(|e| io_err(&root, "cannot create checkpoint folder", e))?;
    let tmp = root.join(format!(".tmp-step-{:08}", meta.step));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, "cannot remove stale folder", e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, "cannot create", e))?;

    let weights = tmp.join(WEIGHTS_FILE);
    let mut store = SafetensorsStore::from_file(&weights).metadata("step", meta.step.to_string());
    model
        .save_into(&mut store)
        .map_err(|e| io_err(&weights, "cannot write weights", e))?;
    let optim_path = tmp.join(OPTIMIZER_FILE);
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
        .record(optim.to_record(), optim_path.with_extension(""))
        .map_err(|e| io_err(&optim_path, "cannot write optimiser state", e))?;
    let meta_path = tmp.join(META_FILE);
    let json =
        serde_json::to_vec_pretty(meta).map_err(|e| io_err(&meta_path, "cannot encode", e))?;
    fs::write(&meta_path, json).map_err(|e| io_err(&meta_path, "cannot write", e))?;
    for f in [&weights, &optim_path, &meta_path] {
        fsync(f)?;
    }
    let dest = step_dir(&root, meta.step);
    if dest.exists() {
        fs::remove_dir_all(&dest).map_err(|e| io_err(&dest, "cannot replace", e))?;
    }
    fs::rename(&tmp, &dest).map_err(|e| io_err(&dest, "cannot move checkpoint into place", e))?;
    fsync(&root)?;
    Ok(dest)
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
/// checking that every parameter is present with its shape and nothing is left over.
pub fn load_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(Transformer<B>, CheckpointMeta)> {
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
pub fn restore<B, O>(
    dir: &Path,
    model: Transformer<B>,
    optim: O,
    device: &B::Device,
) -> Result<(Transformer<B>, O, CheckpointMeta)>
where
    B: AutodiffBackend,
    O: Optimizer<Transformer<B>, B>,
{
    let meta = read_meta(dir)?;
    let mut model = model;
    load_weights(&mut model, &dir.join(&meta.weights))?;
    let model =
        with_param_ids(model, &meta.param_ids).map_err(|e| Error::file(dir.join(META_FILE), e))?;
    let optim_path = dir.join(&meta.optimizer);
    let record = NamedMpkFileRecorder::<FullPrecisionSettings>::new()
        .load(optim_path.with_extension(""), device)
        .map_err(|e| io_err(&optim_path, "cannot read optimiser state", e))?;
    let optim = optim.load_record(record);
    Ok((model, optim, meta))
}
