//! The training loop: AdamW with warm-up + cosine, global-norm clipping, held-out
//! loss, atomic checkpoints, resume, and a stop on a non-finite loss.
//!
//! A loop of our own rather than burn-train's `Learner`: that one checkpoints per
//! epoch and its metrics never see the model, while sinkscope needs step-level
//! hooks that read attention maps and gradients.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::model::params::param_ids;
use crate::model::{ForwardOptions, ModelConfig, Transformer};
use crate::train::adamw::FusedAdamW;
use crate::train::checkpoint::{self, CheckpointMeta, OPTIMIZER_FILE, WEIGHTS_FILE};
use crate::train::data::{self, mix, Corpus, HostBatch};
use crate::train::grads::{clip_global_norm, grad_stats, GradStats};
use crate::train::loss::{lm_loss, DeviceBatch};
use crate::train::recipe::{Recipe, TrainConfig};
use crate::train::schedule::Schedule;

/// What one optimiser step produced.
#[derive(Clone, Debug)]
pub struct StepInfo {
    /// Step number, from 1.
    pub step: usize,
    /// Training loss of the step's batch.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norms before clipping (global and per layer: the empirical Fisher trace).
    pub grads: GradStats,
    /// Training tokens per second since the run (or resume) started.
    pub tokens_per_sec: f64,
}

/// Callbacks through which hooks and loggers watch a run. Every method defaults to
/// doing nothing.
pub trait TrainEvents<B: AutodiffBackend> {
    /// Before the first step (`step` = 0 for a new run, the checkpoint's step on resume).
    fn on_start(&mut self, _step: usize, _model: &Transformer<B>, _corpus: &Corpus) -> Result<()> {
        Ok(())
    }
    /// After each optimiser step, with the updated model.
    fn on_step(&mut self, _info: &StepInfo, _model: &Transformer<B>) -> Result<()> {
        Ok(())
    }
    /// After each held-out evaluation.
    fn on_eval(&mut self, _step: usize, _heldout_loss: f64) -> Result<()> {
        Ok(())
    }
    /// Just before a checkpoint is written: logs up to `step` must be on disk, since
    /// a resume cuts them back to the checkpoint's step.
    fn before_checkpoint(&mut self, _step: usize) -> Result<()> {
        Ok(())
    }
    /// After a checkpoint is in place.
    fn on_checkpoint(&mut self, _step: usize, _dir: &Path) -> Result<()> {
        Ok(())
    }
    /// At the end of the run (also after a halt), to drain queues and flush logs.
    fn on_finish(&mut self, _step: usize) -> Result<()> {
        Ok(())
    }
    /// State that later values depend on, saved in each checkpoint (Null: none).
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Restores what [`TrainEvents::state`] saved, before `on_start` of a resume.
    fn restore_state(&mut self, _state: &serde_json::Value) -> Result<()> {
        Ok(())
    }
}

/// Watches nothing.
pub struct NoEvents;
impl<B: AutodiffBackend> TrainEvents<B> for NoEvents {}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// Steps completed in total.
    pub step: usize,
    /// Last training loss.
    pub train_loss: Option<f64>,
    /// Last held-out loss.
    pub heldout_loss: Option<f64>,
    /// Training tokens per second of this session.
    pub tokens_per_sec: f64,
    /// Stopped by `train.halt_after` (simulated kill).
    pub halted: bool,
    /// Latest checkpoint folder.
    pub last_checkpoint: Option<PathBuf>,
}

/// The recipe's model with the vocabulary filled in from the tokenizer (bytes, the
/// recipe's tokenizer.json, or its token shards').
pub fn resolve_model(recipe: &Recipe) -> Result<ModelConfig> {
    resolve_model_in(recipe, &format!("recipe {}", recipe.name), true)
}

/// [`resolve_model`], naming `source` (the recipe file) in errors. Without
/// `read_data`, an explicit `model.vocab_size` is taken as it is and the data's
/// tokenizer or shards are not opened (a recipe loads before its shards exist; training
/// checks them).
pub(crate) fn resolve_model_in(
    recipe: &Recipe,
    source: &str,
    read_data: bool,
) -> Result<ModelConfig> {
    let mut cfg = recipe.model.clone();
    let source = source.to_string();
    if read_data || cfg.vocab_size == 0 {
        let vocab = data::vocabulary(&recipe.data, |p| recipe.resolve(p))?;
        if cfg.vocab_size == 0 {
            cfg.vocab_size = vocab.size;
        } else if cfg.vocab_size < vocab.size {
            return Err(Error::config(
                &source,
                "model.vocab_size",
                format!("the tokenizer needs at least {}", vocab.size),
            ));
        }
    }
    cfg.validate(&source)?;
    check_sizes(recipe, &cfg, &source)?;
    Ok(cfg)
}

/// Refuses, before anything is allocated, a batch or probe set that cannot fit in
/// memory (overflow-checked), with the numbers.
fn check_sizes(recipe: &Recipe, cfg: &ModelConfig, source: &str) -> Result<()> {
    use crate::model::budget::{activation_bytes, check_fits, training_bytes};
    let seq = recipe.data.seq_len;
    check_fits(
        &format!("training with batch_size {}", recipe.train.batch_size),
        training_bytes(cfg, recipe.train.batch_size, seq),
    )
    .map_err(|m| Error::config(source, "train.batch_size", m))?;
    check_fits(
        &format!("analysing {} probes", recipe.hooks.probes),
        activation_bytes(cfg, recipe.hooks.probes, seq),
    )
    .map_err(|m| Error::config(source, "hooks.probes", m))
}

/// Refuses more held-out windows or probes than the held-out text has distinct
/// windows (more would repeat windows, and `1e9` evaluation batches never end).
fn check_windows(recipe: &Recipe, corpus: &Corpus) -> Result<()> {
    let source = format!("recipe {}", recipe.name);
    let windows = corpus.heldout_windows();
    let t = &recipe.train;
    let asked = t.eval_batches.checked_mul(t.batch_size);
    if asked.is_none_or(|a| a > windows) {
        return Err(Error::config(
            &source,
            "train.eval_batches",
            format!(
                "{} batches of {} exceed the {windows} distinct windows of the held-out text",
                t.eval_batches, t.batch_size
            ),
        ));
    }
    if recipe.hooks.probes > windows {
        return Err(Error::config(
            &source,
            "hooks.probes",
            format!(
                "{} exceed the {windows} distinct windows of the held-out text",
                recipe.hooks.probes
            ),
        ));
    }
    Ok(())
}

/// AdamW as the recipe configures it (fused on the CPU; clipping is ours, global).
pub fn adamw<B: AutodiffBackend>(
    t: &TrainConfig,
) -> OptimizerAdaptor<FusedAdamW, Transformer<B>, B> {
    OptimizerAdaptor::from(FusedAdamW::new(
        t.beta1 as f32,
        t.beta2 as f32,
        t.eps as f32,
        t.weight_decay as f32,
    ))
}

/// One optimiser step over `micro` (one batch, or the micro-batches of
/// `train.accumulate`): forward, loss, backward per micro-batch with gradients summed,
/// then global-norm clipping and the AdamW update. Each micro-batch's loss is weighted
/// by its share of the step's loss weights, so k micro-batches give the gradient of one
/// batch k times as large. Returns the model, the step's loss and the gradient norms
/// before clipping; on a non-finite loss the model comes back unchanged and the norms
/// are `None`.
pub fn optimizer_step<B, O>(
    model: Transformer<B>,
    optim: &mut O,
    micro: &[HostBatch],
    device: &B::Device,
    lr: f64,
    grad_clip: f64,
) -> (Transformer<B>, f32, Option<GradStats>)
where
    B: AutodiffBackend,
    O: Optimizer<Transformer<B>, B>,
{
    let weight = |h: &HostBatch| h.weights.iter().map(|&w| w as f64).sum::<f64>();
    let total: f64 = micro.iter().map(weight).sum();
    let mut accumulated = GradientsAccumulator::<Transformer<B>>::new();
    let mut step_loss = 0f32;
    for h in micro {
        let batch = DeviceBatch::<B>::new(h, device);
        let out = model.forward(
            &crate::model::Batch {
                ids: batch.inputs,
                padding: None,
            },
            &ForwardOptions::default(),
        );
        let mut loss = lm_loss(out.logits, batch.targets, batch.weights);
        if micro.len() > 1 {
            loss = loss * (weight(h) / total);
        }
        let value: f32 = loss.clone().into_scalar().elem();
        step_loss += value;
        if !value.is_finite() {
            return (model, value, None);
        }
        accumulated.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
    }
    let mut grads = accumulated.grads();
    let stats = grad_stats(&model, &grads);
    clip_global_norm(&model, &mut grads, &stats, grad_clip);
    (optim.step(lr, model, grads), step_loss, Some(stats))
}

/// Held-out loss over the fixed evaluation batches, without gradients.
pub fn heldout_loss<B: Backend>(
    model: &Transformer<B>,
    corpus: &Corpus,
    batches: usize,
    batch_size: usize,
    device: &B::Device,
) -> f64 {
    let n = batches.max(1);
    let mut total = 0.0;
    for i in 0..n {
        let b = DeviceBatch::<B>::new(&corpus.heldout_batch(i, n, batch_size), device);
        let out = model.forward(
            &crate::model::Batch {
                ids: b.inputs,
                padding: None,
            },
            &ForwardOptions::default(),
        );
        let l: f32 = lm_loss(out.logits, b.targets, b.weights)
            .into_scalar()
            .elem();
        total += l as f64;
    }
    total / n as f64
}

/// Trains `recipe` into `run_dir`, resuming from its latest checkpoint if `resume`
/// (with the checkpoint's recipe, [`train_allowing`] to change it).
pub fn train<B: AutodiffBackend>(
    recipe: &Recipe,
    run_dir: &Path,
    resume: bool,
    device: &B::Device,
    events: &mut dyn TrainEvents<B>,
) -> Result<TrainOutcome> {
    train_allowing(recipe, run_dir, resume, &[], device, events)
}

/// [`train`], where a resume may change the recipe's fields named in `allow_change`
/// (dotted fields or tables; any other difference is refused, listing the fields).
pub fn train_allowing<B: AutodiffBackend>(
    recipe: &Recipe,
    run_dir: &Path,
    resume: bool,
    allow_change: &[String],
    device: &B::Device,
    events: &mut dyn TrainEvents<B>,
) -> Result<TrainOutcome> {
    let cfg = resolve_model(recipe)?;
    let corpus = Corpus::load(&recipe.data, cfg.is_causal(), |p| recipe.resolve(p))?;
    check_windows(recipe, &corpus)?;
    let t = &recipe.train;
    std::fs::create_dir_all(run_dir)
        .map_err(|e| Error::file(run_dir, format!("cannot create run folder: {e}")))?;
    checkpoint::sweep_partial(run_dir)?;
    let existing = checkpoint::list(run_dir)?;

    let mut model = deterministic_ids(Transformer::<B>::init(&cfg, recipe.seed, device))?;
    let mut optim = adamw::<B>(t);
    let mut start = 0;
    let mut last_checkpoint = None;
    let mut heldout = None;
    let mut train_loss = None;
    match (resume, existing.last()) {
        (true, Some(_)) => {
            let (dir, (m, o, meta)) = restore_newest_intact(&existing, model, optim, device)?;
            if meta.model != cfg {
                return Err(Error::file(
                    dir.join(checkpoint::META_FILE),
                    "the checkpoint's model differs from the recipe's; resume with the recipe it was trained with",
                ));
            }
            crate::train::history::check_changes(run_dir, &meta.recipe, recipe, meta.step, allow_change)?;
            events.restore_state(&meta.hooks)?;
            (model, optim, start) = (m, o, meta.step);
            (heldout, train_loss) = (meta.heldout_loss, meta.train_loss);
            info!(step = start, checkpoint = %dir.display(), "resuming");
            last_checkpoint = Some(dir);
        }
        (true, None) => info!(folder = %run_dir.display(), "no checkpoint to resume from; starting afresh"),
        (false, Some((_, dir))) => {
            return Err(Error::file(
                run_dir,
                format!(
                    "already holds checkpoints (latest {}); pass --resume to continue it or --out for a new folder",
                    dir.display()
                ),
            ))
        }
        (false, None) => {}
    }
    if start >= t.steps {
        info!(step = start, "run already complete");
    }

    let schedule = Schedule {
        peak: t.lr,
        warmup: t.warmup_steps,
        total: t.steps,
        floor: t.min_lr,
    };
    let tokens_per_step = (t.batch_size * t.accumulate * recipe.data.seq_len) as u64;
    let bar = progress_bar(t.steps as u64, start as u64);
    events.on_start(start, &model, &corpus)?;
    let started = Instant::now();
    let mut tokens_per_sec = 0.0;
    let mut halted = false;

    for step in start + 1..=t.steps {
        if cfg.dropout > 0.0 {
            // Dropout masks as a function of (seed, step), so resume redraws them exactly.
            B::seed(device, mix(recipe.seed, step as u64));
        }
        // The step's batch is drawn whole and cut into micro-batches, so accumulation
        // sees exactly the sequences one batch of batch_size × accumulate would.
        let batch = corpus.train_batch(recipe.seed, step, t.batch_size * t.accumulate);
        let lr = schedule.at(step - 1);
        let (updated, loss_value, stats) = optimizer_step(
            model,
            &mut optim,
            &batch.split(t.accumulate),
            device,
            lr,
            t.grad_clip,
        );
        model = updated;
        let Some(stats) = stats else {
            bar.abandon();
            let keep = last_checkpoint
                .as_ref()
                .map(|d: &PathBuf| format!("the last good checkpoint is {}", d.display()))
                .unwrap_or_else(|| "no checkpoint was written yet".into());
            events.on_finish(step - 1)?;
            return Err(Error::Diverged(format!(
                "training loss became {loss_value} at step {step} (lr {lr:.3e}); stopped. {keep}. Lower train.lr or raise train.warmup_steps."
            )));
        };

        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        tokens_per_sec = ((step - start) as u64 * tokens_per_step) as f64 / elapsed;
        train_loss = Some(loss_value as f64);
        let info = StepInfo {
            step,
            loss: loss_value as f64,
            lr,
            grads: stats,
            tokens_per_sec,
        };
        bar.set_position(step as u64);
        bar.set_message(format!(
            "loss {:.4}  {:.0} tok/s",
            loss_value, tokens_per_sec
        ));
        if t.log_every > 0 && step % t.log_every == 0 {
            bar.suspend(|| {
                info!(
                    step,
                    loss = format!("{loss_value:.4}"),
                    lr = format!("{lr:.3e}"),
                    tok_s = format!("{tokens_per_sec:.0}"),
                    "train"
                )
            });
        }
        events.on_step(&info, &model)?;

        let last = step == t.steps;
        if (t.eval_every > 0 && step % t.eval_every == 0) || last {
            let h = heldout_loss(
                &model.valid(),
                &corpus,
                t.eval_batches,
                t.batch_size,
                device,
            );
            heldout = Some(h);
            bar.suspend(|| info!(step, heldout_loss = format!("{h:.4}"), "eval"));
            events.on_eval(step, h)?;
        }
        if (t.checkpoint_every > 0 && step % t.checkpoint_every == 0) || last {
            let meta = CheckpointMeta {
                step,
                train_loss,
                heldout_loss: heldout,
                tokens_seen: step as u64 * tokens_per_step,
                seed: recipe.seed,
                model: cfg.clone(),
                recipe: recipe.clone(),
                weights: WEIGHTS_FILE.into(),
                optimizer: OPTIMIZER_FILE.into(),
                param_ids: param_ids(&model),
                version: env!("CARGO_PKG_VERSION").into(),
                hooks: events.state(),
            };
            events.before_checkpoint(step)?;
            let dir = checkpoint::save(run_dir, &meta, &model, &optim)?;
            checkpoint::prune(run_dir, t.keep_checkpoints)?;
            events.on_checkpoint(step, &dir)?;
            last_checkpoint = Some(dir);
        }
        if t.halt_after == Some(step) && !last {
            warn!(
                step,
                "halting as train.halt_after asks (no final checkpoint)"
            );
            halted = true;
            break;
        }
    }
    bar.finish_and_clear();
    let step = if halted {
        t.halt_after.unwrap_or(t.steps)
    } else {
        t.steps.max(start)
    };
    events.on_finish(step)?;
    Ok(TrainOutcome {
        step,
        train_loss,
        heldout_loss: heldout,
        tokens_per_sec,
        halted,
        last_checkpoint,
    })
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
    crate::model::params::with_param_ids(model, &ids).map_err(|e| Error::Other(e.to_string()))
}

/// The restored state of the newest checkpoint that passes [`checkpoint::verify`] and
/// loads; each one skipped is reported with what was wrong with it.
#[allow(clippy::type_complexity)]
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
            .map_err(Error::Other)
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
    Err(Error::Other(format!(
        "no intact checkpoint to resume from: {}",
        problems.join("; ")
    )))
}

/// A bar on a terminal, plain periodic log lines elsewhere (`log/progress.rs`).
fn progress_bar(len: u64, pos: u64) -> crate::log::Progress {
    crate::log::Progress::new(len, pos)
}
