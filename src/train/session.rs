//! One session of the training loop (a new run, or a resume up to the end or a
//! halt) as named steps: start, step, evaluate if due, checkpoint if due, finish.
//! [`train`](crate::train::train) strings them together; the model is passed
//! through by value, as burn's optimisers take and return it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::log::Progress;
use crate::model::params::param_ids;
use crate::model::{ModelConfig, Transformer};
use crate::train::cadence::Cadence;
use crate::train::checkpoint::{self, CheckpointMeta, OPTIMIZER_FILE, WEIGHTS_FILE};
use crate::train::data::{mix, Corpus};
use crate::train::recipe::Recipe;
use crate::train::schedule::Schedule;
use crate::train::start::{start_or_resume, Resume};
use crate::train::trainer::{
    heldout_loss, optimizer_step, Adam, StepInfo, TrainEvents, TrainOutcome,
};

/// The loop's state besides the model: what it trains on, its optimiser, its
/// schedules, and the outcome so far.
pub(crate) struct Session<'a, B: AutodiffBackend> {
    recipe: &'a Recipe,
    cfg: ModelConfig,
    corpus: Corpus,
    run_dir: &'a Path,
    /// Where the model lives between steps: evaluation, hooks and checkpoints.
    device: &'a B::Device,
    /// Every device a step's micro-batches run on (`device` first).
    devices: &'a [B::Device],
    optim: Adam<B>,
    lr: Schedule,
    cadence: Cadence,
    tokens_per_step: u64,
    /// Steps done before this session (the checkpoint's step on resume).
    start: usize,
    started: Instant,
    bar: Progress,
    train_loss: Option<f64>,
    heldout_loss: Option<f64>,
    tokens_per_sec: f64,
    last_checkpoint: Option<PathBuf>,
}

impl<'a, B: AutodiffBackend> Session<'a, B> {
    /// Starts or resumes (see [`start_or_resume`]), then calls `on_start`; returns
    /// the model to train and the session.
    pub(super) fn start(
        recipe: &'a Recipe,
        cfg: ModelConfig,
        corpus: Corpus,
        run_dir: &'a Path,
        resume: &Resume,
        devices: &'a [B::Device],
        events: &mut dyn TrainEvents<B>,
    ) -> Result<(Transformer<B>, Self)> {
        let device = &devices[0];
        let begin = start_or_resume(recipe, &cfg, run_dir, resume, device, events)?;
        let t = &recipe.train;
        let lr = Schedule {
            peak: t.lr,
            warmup: t.warmup_steps,
            total: t.steps,
            floor: t.min_lr,
        };
        let bar = Progress::new(t.steps as u64, begin.step as u64);
        events.on_start(begin.step, &begin.model, &corpus)?;
        let session = Self {
            recipe,
            cfg,
            corpus,
            run_dir,
            device,
            devices,
            optim: begin.optim,
            lr,
            cadence: Cadence::of(t),
            tokens_per_step: (t.batch_size * recipe.micro_batches() * recipe.data.seq_len) as u64,
            start: begin.step,
            started: Instant::now(),
            bar,
            train_loss: begin.train_loss,
            heldout_loss: begin.heldout_loss,
            tokens_per_sec: 0.0,
            last_checkpoint: begin.checkpoint,
        };
        Ok((begin.model, session))
    }

    /// The steps this session runs (empty when the run is already complete).
    pub(super) fn steps(&self) -> std::ops::RangeInclusive<usize> {
        self.start + 1..=self.cadence.steps
    }

    /// Optimiser step `step`, then progress and `on_step`. A non-finite loss stops
    /// the run: `on_finish` at the step before, then [`Error::Diverged`].
    pub(super) fn step(
        &mut self,
        model: Transformer<B>,
        step: usize,
        events: &mut dyn TrainEvents<B>,
    ) -> Result<Transformer<B>> {
        let (seed, t) = (self.recipe.seed, &self.recipe.train);
        if self.cfg.dropout > 0.0 {
            // Dropout masks as a function of (seed, step), so resume redraws them exactly.
            for device in self.devices {
                B::seed(device, mix(seed, step as u64));
            }
        }
        // The step's batch is drawn whole and cut into micro-batches, so accumulation
        // and data parallelism see exactly the sequences one batch of batch_size ×
        // accumulate × devices would.
        let micro = self.recipe.micro_batches();
        let batch = self.corpus.train_batch(seed, step, t.batch_size * micro);
        let lr = self.lr.at(step - 1);
        let (model, loss, grads) = optimizer_step(
            model,
            &mut self.optim,
            &batch.split(micro),
            self.devices,
            lr,
            t.grad_clip,
        );
        let Some(grads) = grads else {
            self.bar.abandon();
            events.on_finish(step - 1)?;
            return Err(diverged(step, loss, lr, self.last_checkpoint.as_deref()));
        };
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        self.tokens_per_sec = ((step - self.start) as u64 * self.tokens_per_step) as f64 / elapsed;
        self.train_loss = Some(loss as f64);
        let info = StepInfo {
            step,
            loss: loss as f64,
            lr,
            grads,
            tokens_per_sec: self.tokens_per_sec,
        };
        self.show(&info);
        events.on_step(&info, &model)?;
        Ok(model)
    }

    /// Moves the progress display to `info`'s step, with a log line when one is due.
    fn show(&self, info: &StepInfo) {
        let (step, loss, lr, tok_s) = (info.step, info.loss, info.lr, info.tokens_per_sec);
        self.bar.set_position(step as u64);
        self.bar
            .set_message(format!("loss {loss:.4}  {tok_s:.0} tok/s"));
        if self.cadence.logs(step) {
            self.bar.suspend(|| {
                info!(
                    step,
                    loss = format!("{loss:.4}"),
                    lr = format!("{lr:.3e}"),
                    tok_s = format!("{tok_s:.0}"),
                    "train"
                )
            });
        }
    }

    /// The held-out loss after `step` when one is due, then `on_eval`.
    pub(super) fn evaluate_if_due(
        &mut self,
        model: &Transformer<B>,
        step: usize,
        events: &mut dyn TrainEvents<B>,
    ) -> Result<()> {
        if !self.cadence.evaluates(step) {
            return Ok(());
        }
        let t = &self.recipe.train;
        let h = heldout_loss(
            &model.valid(),
            &self.corpus,
            t.eval_batches,
            t.batch_size,
            self.device,
        );
        self.heldout_loss = Some(h);
        self.bar
            .suspend(|| info!(step, heldout_loss = format!("{h:.4}"), "eval"));
        events.on_eval(step, h)
    }

    /// A checkpoint after `step` when one is due: `before_checkpoint`, the atomic
    /// save, pruning to `train.keep_checkpoints`, then `on_checkpoint`.
    pub(super) fn checkpoint_if_due(
        &mut self,
        model: &Transformer<B>,
        step: usize,
        events: &mut dyn TrainEvents<B>,
    ) -> Result<()> {
        if !self.cadence.checkpoints(step) {
            return Ok(());
        }
        let meta = self.meta(model, step, events.state());
        events.before_checkpoint(step)?;
        let dir = checkpoint::save(self.run_dir, &meta, model, &self.optim)?;
        checkpoint::prune(self.run_dir, self.recipe.train.keep_checkpoints)?;
        events.on_checkpoint(step, &dir)?;
        self.last_checkpoint = Some(dir);
        Ok(())
    }

    /// The sidecar of a checkpoint of `model` at `step`, with the hooks' `state`.
    fn meta(
        &self,
        model: &Transformer<B>,
        step: usize,
        hooks: serde_json::Value,
    ) -> CheckpointMeta {
        CheckpointMeta {
            step,
            train_loss: self.train_loss,
            heldout_loss: self.heldout_loss,
            tokens_seen: step as u64 * self.tokens_per_step,
            seed: self.recipe.seed,
            model: self.cfg.clone(),
            recipe: self.recipe.clone(),
            weights: WEIGHTS_FILE.into(),
            optimizer: OPTIMIZER_FILE.into(),
            param_ids: param_ids(model),
            version: env!("CARGO_PKG_VERSION").into(),
            hooks,
        }
    }

    /// Whether the run stops after `step` as `train.halt_after` asks.
    pub(super) fn halts_after(&self, step: usize) -> bool {
        self.cadence.halts_after(step)
    }

    /// Clears the progress display, calls `on_finish` and reports the outcome;
    /// `halted_at` is the step of a halt.
    pub(super) fn finish(
        self,
        halted_at: Option<usize>,
        events: &mut dyn TrainEvents<B>,
    ) -> Result<TrainOutcome> {
        if let Some(step) = halted_at {
            warn!(
                step,
                "halting as train.halt_after asks (no final checkpoint)"
            );
        }
        self.bar.finish_and_clear();
        let step = self.cadence.final_step(self.start, halted_at);
        events.on_finish(step)?;
        Ok(TrainOutcome {
            step,
            train_loss: self.train_loss,
            heldout_loss: self.heldout_loss,
            tokens_per_sec: self.tokens_per_sec,
            halted: halted_at.is_some(),
            last_checkpoint: self.last_checkpoint,
        })
    }
}

/// The error that stops a run whose training loss became `loss` at `step`, naming
/// the checkpoint to go back to and what to change.
fn diverged(step: usize, loss: f32, lr: f64, last_checkpoint: Option<&Path>) -> Error {
    let keep = last_checkpoint
        .map(|d| format!("the last good checkpoint is {}", d.display()))
        .unwrap_or_else(|| "no checkpoint was written yet".into());
    Error::Diverged(format!(
        "training loss became {loss} at step {step} (lr {lr:.3e}); stopped. {keep}. Lower train.lr or raise train.warmup_steps."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divergence_names_the_step_the_checkpoint_and_the_remedy() {
        let e = diverged(7, f32::NAN, 3e-3, Some(Path::new("run/checkpoints/step-4")));
        assert!(matches!(e, Error::Diverged(_)));
        assert_eq!(
            e.to_string(),
            "training loss became NaN at step 7 (lr 3.000e-3); stopped. the last good checkpoint \
             is run/checkpoints/step-4. Lower train.lr or raise train.warmup_steps."
        );
        let e = diverged(1, f32::INFINITY, 1e-2, None).to_string();
        assert!(e.contains("became inf at step 1") && e.contains("no checkpoint was written yet"));
    }
}
