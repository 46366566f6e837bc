//! Start or resume: `--resume` and what the run folder holds decide together
//! whether a run starts afresh, continues from its newest intact checkpoint, or is
//! refused (a folder that holds checkpoints is never silently overwritten).

use std::path::{Path, PathBuf};

use burn::optim::Optimizer;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::model::params::param_ids;
use crate::model::{ModelConfig, Transformer};
use crate::train::checkpoint::{self, CheckpointMeta};
use crate::train::recipe::Recipe;
use crate::train::trainer::{adamw, Adam, TrainEvents};

/// Whether [`train`](crate::train::train) starts a run afresh or continues it.
/// `true` and `false` convert to [`Resume::Latest`] with no change allowed and
/// [`Resume::No`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Resume {
    /// A new run; a folder that already holds checkpoints is refused.
    #[default]
    No,
    /// Continue from the newest intact checkpoint, or start afresh if there is none.
    Latest {
        /// Recipe fields (dotted fields or tables) that may differ from the
        /// checkpoint's; any other difference is refused, listing the fields, and
        /// allowed ones are recorded in the run's `history.jsonl`.
        allow_change: Vec<String>,
    },
}

impl Resume {
    /// The recipe fields a resume may change (none for a new run).
    pub fn allowed_changes(&self) -> &[String] {
        match self {
            Resume::No => &[],
            Resume::Latest { allow_change } => allow_change,
        }
    }
}

impl From<bool> for Resume {
    fn from(resume: bool) -> Self {
        if resume {
            Resume::Latest {
                allow_change: Vec::new(),
            }
        } else {
            Resume::No
        }
    }
}

/// What the loop does with the run folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Initialise a new model at step 0.
    Fresh,
    /// Restore the newest intact checkpoint.
    Restore,
}

/// The resume decision for a folder whose newest checkpoint is `latest`: a resume
/// restores it (or starts afresh when there is none, saying so); a new run refuses a
/// folder that has one.
pub(crate) fn decide(resume: &Resume, run_dir: &Path, latest: Option<&Path>) -> Result<Decision> {
    match (resume, latest) {
        (Resume::Latest { .. }, Some(_)) => Ok(Decision::Restore),
        (Resume::Latest { .. }, None) => {
            info!(folder = %run_dir.display(), "no checkpoint to resume from; starting afresh");
            Ok(Decision::Fresh)
        }
        (Resume::No, Some(dir)) => Err(Error::file(
            run_dir,
            format!(
                "already holds checkpoints (latest {}); pass --resume to continue it or --out for a new folder",
                dir.display()
            ),
        )),
        (Resume::No, None) => Ok(Decision::Fresh),
    }
}

/// Where a session of training begins: the model and optimiser (new or restored)
/// and what the restored checkpoint recorded.
pub(crate) struct Begin<B: AutodiffBackend> {
    /// The model to train.
    pub model: Transformer<B>,
    /// Its optimiser, with state when restored.
    pub optim: Adam<B>,
    /// Steps already done (0 for a new run).
    pub step: usize,
    /// The checkpoint's last training loss.
    pub train_loss: Option<f64>,
    /// The checkpoint's last held-out loss.
    pub heldout_loss: Option<f64>,
    /// The checkpoint resumed from.
    pub checkpoint: Option<PathBuf>,
}

/// Prepares `run_dir` (created, half-written checkpoints swept away) and returns the
/// model to train: new, or restored from the newest intact checkpoint with the
/// hooks' saved state handed back to `events`.
pub(crate) fn start_or_resume<B: AutodiffBackend>(
    recipe: &Recipe,
    cfg: &ModelConfig,
    run_dir: &Path,
    resume: &Resume,
    device: &B::Device,
    events: &mut dyn TrainEvents<B>,
) -> Result<Begin<B>> {
    std::fs::create_dir_all(run_dir)
        .map_err(|e| Error::file(run_dir, format!("cannot create run folder: {e}")))?;
    checkpoint::sweep_partial(run_dir)?;
    let existing = checkpoint::list(run_dir)?;
    let model = deterministic_ids(Transformer::<B>::init(cfg, recipe.seed, device))?;
    let optim = adamw::<B>(&recipe.train);
    let latest = existing.last().map(|(_, dir)| dir.as_path());
    let begin = match decide(resume, run_dir, latest)? {
        Decision::Fresh => Begin {
            model,
            optim,
            step: 0,
            train_loss: None,
            heldout_loss: None,
            checkpoint: None,
        },
        Decision::Restore => {
            let (dir, (model, optim, meta)) =
                restore_newest_intact(&existing, model, optim, device)?;
            check_resumable(&dir, &meta, cfg, recipe, run_dir, resume)?;
            events.restore_state(&meta.hooks)?;
            info!(step = meta.step, checkpoint = %dir.display(), "resuming");
            Begin {
                model,
                optim,
                step: meta.step,
                train_loss: meta.train_loss,
                heldout_loss: meta.heldout_loss,
                checkpoint: Some(dir),
            }
        }
    };
    if begin.step >= recipe.train.steps {
        info!(step = begin.step, "run already complete");
    }
    Ok(begin)
}

/// Refuses to continue the checkpoint in `dir` with another model, or with a
/// recipe that differs in fields `resume` does not allow to change (allowed
/// changes are recorded in the run's history).
fn check_resumable(
    dir: &Path,
    meta: &CheckpointMeta,
    cfg: &ModelConfig,
    recipe: &Recipe,
    run_dir: &Path,
    resume: &Resume,
) -> Result<()> {
    if meta.model != *cfg {
        return Err(Error::file(
            dir.join(checkpoint::META_FILE),
            "the checkpoint's model differs from the recipe's; resume with the recipe it was trained with",
        ));
    }
    crate::train::history::check_changes(
        run_dir,
        &meta.recipe,
        recipe,
        meta.step,
        resume.allowed_changes(),
    )
}

/// Parameter ids 1, 2, … in name order instead of burn's random ones: the ids key
/// the optimiser state in checkpoints, and random ones made the same seed write
/// different bytes.
fn deterministic_ids<B: Backend>(model: Transformer<B>) -> Result<Transformer<B>> {
    let ids = param_ids(&model)
        .into_keys()
        .enumerate()
        .map(|(i, name)| (name, i as u64 + 1))
        .collect();
    crate::model::params::with_param_ids(model, &ids).map_err(|e| Error::Checkpoint(e.to_string()))
}

/// The restored state of the newest checkpoint that passes [`checkpoint::verify`] and
/// loads; each one skipped is reported with what was wrong with it.
#[allow(
    clippy::type_complexity,
    reason = "the restored model, optimizer and sidecar, as `checkpoint::restore` returns them"
)]
fn restore_newest_intact<B, O, R>(
    existing: &[(usize, PathBuf)],
    model: Transformer<B>,
    optim: O,
    device: &B::Device,
) -> Result<(PathBuf, (Transformer<B>, O, CheckpointMeta))>
where
    B: AutodiffBackend,
    O: Optimizer<Transformer<B>, B> + Clone,
    O::Record:
        IntoIterator<Item = (burn::module::ParamId, R)> + FromIterator<(burn::module::ParamId, R)>,
    R: burn::record::Record<B>,
{
    let mut problems = Vec::new();
    for (_, dir) in existing.iter().rev() {
        let restored = checkpoint::verify(dir)
            .map_err(Error::Checkpoint)
            .and_then(|()| checkpoint::restore(dir, model.clone(), optim.clone(), device));
        match restored {
            Ok(r) => {
                if !problems.is_empty() {
                    warn!(checkpoint = %dir.display(), "resuming from an older checkpoint, as newer ones are damaged");
                }
                return Ok((dir.clone(), r));
            }
            Err(e) => {
                warn!("skipping damaged checkpoint {}: {e}", dir.display());
                problems.push(format!("{}: {e}", dir.display()));
            }
        }
    }
    Err(Error::Checkpoint(format!(
        "no intact checkpoint to resume from: {}",
        problems.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_restores_a_checkpoint_and_a_new_run_refuses_one() {
        let run = Path::new("runs/a");
        let latest = Path::new("runs/a/checkpoints/step-8");
        let allowing = Resume::Latest {
            allow_change: vec!["train.steps".into()],
        };
        assert_eq!(allowing.allowed_changes(), ["train.steps"]);
        assert!(Resume::from(true).allowed_changes().is_empty());
        for resume in [Resume::from(true), allowing] {
            let restore = decide(&resume, run, Some(latest)).unwrap();
            assert_eq!(restore, Decision::Restore);
            assert_eq!(decide(&resume, run, None).unwrap(), Decision::Fresh);
        }
        assert_eq!(
            decide(&Resume::from(false), run, None).unwrap(),
            Decision::Fresh
        );
        let e = decide(&Resume::No, run, Some(latest))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("runs/a: already holds checkpoints"), "{e}");
        assert!(e.contains("step-8") && e.contains("--resume"), "{e}");
    }
}
