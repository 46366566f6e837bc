//! [`HookRunner`]: the training-loop side of the hooks. It captures the probe on the
//! training thread at scheduled steps, accumulates the Fisher trace from each step's
//! gradients, and hands everything to the analysis [`Worker`].

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use tracing::warn;

use crate::analysis::names;
use crate::error::{Error, Result};
use crate::eval::{capture, weight_matrices, EvalPlan};
use crate::hooks::config::{Backlog, HooksConfig};
use crate::hooks::hook::{select, Hook, Needs};
use crate::hooks::hparams::{session_end, session_succeeded, SessionRecords};
use crate::hooks::schedule::HookSchedule;
use crate::hooks::worker::{Job, Worker};
use crate::log::hparams::status;
use crate::log::{RunLog, TagFilter, TensorBoardWriter};
use crate::model::Transformer;
use crate::train::data::Corpus;
use crate::train::{StepInfo, TrainEvents};

/// Runs the recipe's hooks during training and keeps the run's logs.
pub struct HookRunner<B: AutodiffBackend> {
    /// Handed to the worker when the run starts.
    hooks: Vec<Box<dyn Hook>>,
    active: bool,
    needs: Needs,
    plan: EvalPlan,
    schedule: HookSchedule,
    probes: usize,
    queue: usize,
    backlog: Backlog,
    run_dir: PathBuf,
    recipe_text: String,
    total_steps: usize,
    checkpoint_every: usize,
    log_every: usize,
    device: B::Device,
    probe: Vec<Vec<u32>>,
    /// Fills unequal probe windows (the corpus vocabulary's padding id).
    pad: u32,
    fisher_sum: Vec<f64>,
    fisher_steps: usize,
    worker: Option<Worker>,
    tag_filter: TagFilter,
    recipe: crate::train::Recipe,
    session: SessionRecords,
    /// The last step the trainer reported (`on_start`, `on_step`, `on_finish`); a
    /// failure is logged just after it, past any checkpoint a resume cuts back to.
    last_step: usize,
    /// Whether `on_start` opened the logs (a failure before that is not the run's).
    started: bool,
    /// The step `on_start` reported.
    started_at: usize,
}

impl<B: AutodiffBackend> std::fmt::Debug for HookRunner<B> {
    /// The hooks by name and the schedule (the logs and the worker are left out).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hooks: Vec<&str> = self.hooks.iter().map(|h| h.name()).collect();
        f.debug_struct("HookRunner")
            .field("hooks", &hooks)
            .field("active", &self.active)
            .field("schedule", &self.schedule)
            .field("probes", &self.probes)
            .finish_non_exhaustive()
    }
}

impl<B: AutodiffBackend> HookRunner<B> {
    /// Hooks named in `cfg` (an unknown name is an error naming `[hooks] run`).
    pub fn new(
        cfg: &HooksConfig,
        recipe: &crate::train::Recipe,
        run_dir: &Path,
        device: &B::Device,
    ) -> Result<Self> {
        let hooks = if cfg.enabled {
            select(&cfg.run)
                .map_err(|m| Error::config(&format!("recipe {}", recipe.name), "hooks.run", m))?
        } else {
            Vec::new()
        };
        Self::with_hooks(hooks, cfg, recipe, run_dir, device)
    }

    /// Runs the given hooks (tests use this to add a deliberately slow one).
    pub fn with_hooks(
        hooks: Vec<Box<dyn Hook>>,
        cfg: &HooksConfig,
        recipe: &crate::train::Recipe,
        run_dir: &Path,
        device: &B::Device,
    ) -> Result<Self> {
        let source = format!("recipe {}", recipe.name);
        cfg.analysis
            .validate()
            .map_err(|e| Error::config(&source, "hooks.analysis", e.to_string()))?;
        if cfg.probes == 0 && !hooks.is_empty() {
            return Err(Error::config(&source, "hooks.probes", "must be positive"));
        }
        let mut plan = EvalPlan {
            analysis: cfg.analysis.clone(),
            weights: false,
            spectra: cfg.spectra.clone(),
        };
        // Only what a chosen hook reads is computed.
        plan.analysis.graph = false;
        plan.analysis.spectra = false;
        plan.analysis.topology.enabled = false;
        let mut needs = Needs::default();
        for h in &hooks {
            h.plan(&mut plan);
            needs = needs.union(h.needs());
        }
        let recipe_text = toml::to_string_pretty(recipe).unwrap_or_default();
        Ok(Self {
            active: !hooks.is_empty(),
            hooks,
            needs,
            plan,
            schedule: cfg.schedule,
            probes: cfg.probes,
            queue: cfg.queue,
            backlog: cfg.on_backlog,
            run_dir: run_dir.to_path_buf(),
            recipe_text,
            total_steps: recipe.train.steps,
            checkpoint_every: recipe.train.checkpoint_every,
            log_every: recipe.train.log_every.max(1),
            device: device.clone(),
            probe: Vec::new(),
            pad: 0,
            fisher_sum: Vec::new(),
            fisher_steps: 0,
            worker: None,
            tag_filter: cfg.tag_filter(),
            session: SessionRecords::training(recipe, &[]),
            recipe: recipe.clone(),
            last_step: 0,
            started: false,
            started_at: 0,
        })
    }

    /// Names the whole sweep this run belongs to, so its HParams records list
    /// the settings the sweep varies (call before training).
    pub fn set_sweep(&mut self, sweep: &[crate::train::Recipe]) {
        self.session = SessionRecords::training(&self.recipe, sweep);
    }

    /// Marks the run as failed in TensorBoard's HParams dashboard, after `train`
    /// returned an error. Written at the step after the last one reported, so a
    /// resume from an earlier checkpoint cuts it away again.
    pub fn record_failure(&mut self) -> Result<()> {
        if !self.started {
            return Ok(());
        }
        if let Some(mut w) = self.worker.take() {
            let _ = w.finish();
        }
        let mut tb = TensorBoardWriter::create(self.tb_dir())?;
        tb.add_hparams(&session_end(status::FAILURE), self.last_step as u64 + 1)?;
        Ok(tb.flush()?)
    }

    /// Where TensorBoard should look.
    pub fn tb_dir(&self) -> PathBuf {
        self.run_dir.join(crate::log::run_log::TB_DIR)
    }

    fn worker(&mut self) -> Result<&mut Worker> {
        self.worker
            .as_mut()
            .ok_or_else(|| Error::Internal("hooks used before the run started".into()))
    }

    fn evaluate(&mut self, step: usize, model: &Transformer<B>) -> Result<()> {
        let inner = model.valid();
        let probe = capture(
            &inner,
            &self.probe,
            self.pad,
            self.needs.residuals,
            &self.device,
        )?;
        let weights = if self.needs.weights {
            weight_matrices(&inner)?
        } else {
            Vec::new()
        };
        let fisher = (self.needs.gradients && self.fisher_steps > 0).then(|| {
            let n = self.fisher_steps as f64;
            self.fisher_sum.iter().map(|s| s / n).collect()
        });
        self.fisher_sum.iter_mut().for_each(|s| *s = 0.0);
        self.fisher_steps = 0;
        let job = Job::Evaluate {
            step,
            probe,
            weights,
            fisher,
        };
        match self.backlog {
            Backlog::Wait => self.worker()?.send(job),
            Backlog::Skip => {
                if self.worker()?.try_send(job)?.is_some() {
                    warn!(step, "analysis is behind; skipping this evaluation (hooks.on_backlog = \"skip\")");
                    self.worker()?.send(Job::Skipped {
                        step,
                        why: "analysis queue full (hooks.on_backlog = \"skip\")".into(),
                    })?;
                }
                Ok(())
            }
        }
    }
}

impl<B: AutodiffBackend> TrainEvents<B> for HookRunner<B> {
    fn on_start(&mut self, step: usize, model: &Transformer<B>, corpus: &Corpus) -> Result<()> {
        (self.last_step, self.started_at) = (step, step);
        let mut log = RunLog::open(&self.run_dir, (step > 0).then_some(step))?;
        log.set_filter(self.tag_filter);
        let hooks = std::mem::take(&mut self.hooks);
        self.worker = Some(Worker::spawn(log, hooks, self.plan.clone(), self.queue));
        self.started = true;
        self.probe = corpus.probe_inputs(self.probes);
        self.pad = corpus.vocabulary().pad;
        // A resume has restored the running sum (restore_state); keep it.
        if self.fisher_sum.len() != model.blocks.len() {
            self.fisher_sum = vec![0.0; model.blocks.len()];
            self.fisher_steps = 0;
        }
        if step == 0 {
            let s = self.session.clone();
            for data in [s.experiment, s.start] {
                self.worker()?.send(Job::HParams { step, data })?;
            }
            let text = format!("```toml\n{}\n```", self.recipe_text);
            self.worker()?.send(Job::Text {
                step,
                tag: "recipe".into(),
                text,
            })?;
            if self.active {
                self.evaluate(0, model)?;
            }
        }
        Ok(())
    }

    fn on_step(&mut self, info: &StepInfo, model: &Transformer<B>) -> Result<()> {
        self.last_step = info.step;
        for (f, l) in self.fisher_sum.iter_mut().zip(&info.grads.layer_sq) {
            *f += l;
        }
        self.fisher_steps += 1;
        if info.step.is_multiple_of(self.log_every) || info.step == self.total_steps {
            let scalars = vec![
                (names::TRAIN_LOSS.to_string(), info.loss),
                (names::TRAIN_LR.to_string(), info.lr),
                (names::TRAIN_TOKENS_PER_SEC.to_string(), info.tokens_per_sec),
                (names::TRAIN_GRAD_NORM.to_string(), info.grads.norm()),
            ];
            self.worker()?.send(Job::Scalars {
                step: info.step,
                scalars,
            })?;
        }
        if self.active
            && self
                .schedule
                .is_due(info.step, self.total_steps, self.checkpoint_every)
        {
            self.evaluate(info.step, model)?;
        }
        Ok(())
    }

    fn on_eval(&mut self, step: usize, heldout_loss: f64) -> Result<()> {
        self.worker()?.send(Job::Scalars {
            step,
            scalars: vec![(names::TRAIN_HELDOUT_LOSS.into(), heldout_loss)],
        })
    }

    fn before_checkpoint(&mut self, _step: usize) -> Result<()> {
        // A checkpoint at step s promises logs complete up to s: resume cuts back to it.
        self.worker()?.flush()
    }

    /// The Fisher trace's running sum since the last evaluation: the next value
    /// averages over steps on both sides of a checkpoint. Stored as f64 bit patterns,
    /// so the resumed sum is exactly the one saved.
    fn state(&self) -> serde_json::Value {
        serde_json::json!({
            "fisher_sum_bits": self.fisher_sum.iter().map(|v| v.to_bits()).collect::<Vec<u64>>(),
            "fisher_steps": self.fisher_steps,
        })
    }

    fn restore_state(&mut self, state: &serde_json::Value) -> Result<()> {
        if state.is_null() {
            return Ok(());
        }
        let bad = || Error::Checkpoint(format!("checkpoint: malformed hook state {state}"));
        let sum = state["fisher_sum_bits"].as_array().ok_or_else(bad)?;
        self.fisher_sum = sum
            .iter()
            .map(|v| v.as_u64().map(f64::from_bits).ok_or_else(bad))
            .collect::<Result<_>>()?;
        self.fisher_steps = state["fisher_steps"].as_u64().ok_or_else(bad)? as usize;
        Ok(())
    }

    fn on_finish(&mut self, step: usize) -> Result<()> {
        // A run that trained to its last step succeeded (a run resumed when already
        // complete has its record from before).
        let completed = step == self.total_steps && step > self.started_at;
        self.last_step = step;
        if completed {
            if let Some(w) = self.worker.as_mut() {
                w.send(Job::HParams {
                    step,
                    data: session_succeeded(),
                })?;
            }
        }
        match self.worker.take() {
            Some(mut w) => w.finish(),
            None => Ok(()),
        }
    }
}
