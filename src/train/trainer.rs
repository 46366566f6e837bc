//! The training loop: AdamW with warm-up + cosine, global-norm clipping, held-out
//! loss, atomic checkpoints, resume, and a stop on a non-finite loss.
//!
//! This file holds the loop's interface and its one optimiser step; the loop's
//! named steps are in `session.rs` (start, step, evaluate if due, checkpoint if
//! due, finish), the resume decision in `start.rs`, the due-ness schedule in
//! `cadence.rs`.
//!
//! A loop of our own rather than burn-train's `Learner`: that one checkpoints per
//! epoch and its metrics never see the model, while sinkscope needs step-level
//! hooks that read attention maps and gradients.

use std::path::{Path, PathBuf};

use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::error::{Error, Result};
use crate::model::{ForwardOptions, ModelConfig, Transformer};
use crate::train::adamw::FusedAdamW;
use crate::train::data::{self, Corpus, HostBatch};
use crate::train::grads::{clip_global_norm, grad_stats, GradStats};
use crate::train::loss::{lm_loss, DeviceBatch};
use crate::train::recipe::{Recipe, TrainConfig};
use crate::train::session::Session;
use crate::train::start::Resume;

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
#[derive(Debug)]
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

/// The optimiser the loop trains with: [`FusedAdamW`] behind burn's adaptor.
pub type Adam<B> = OptimizerAdaptor<FusedAdamW, Transformer<B>, B>;

/// AdamW as the recipe configures it (fused on the CPU; clipping is ours, global).
pub fn adamw<B: AutodiffBackend>(t: &TrainConfig) -> Adam<B> {
    OptimizerAdaptor::from(FusedAdamW::new(
        t.beta1 as f32,
        t.beta2 as f32,
        t.eps as f32,
        t.weight_decay as f32,
    ))
}

/// One optimiser step over `micro` (one batch, or the micro-batches of
/// `train.accumulate` on each of the `devices`): forward, loss, backward per
/// micro-batch with gradients summed, then global-norm clipping and the AdamW update on
/// the first device. Each micro-batch's loss is weighted by its share of the step's
/// loss weights, so k micro-batches give the gradient of one batch k times as large.
///
/// With several devices (data parallelism), micro-batch i runs on device i mod n, in
/// one thread per device on a copy of the model forked there (burn's `Module::fork`);
/// each device sums its gradients, which then move to the first device
/// (`GradientsParams::to_device`) and are summed in device order with burn's
/// `GradientsAccumulator`. The result is the one-device step over the same
/// micro-batches, up to the order of float additions.
///
/// Returns the model, the step's loss and the gradient norms before clipping; on a
/// non-finite loss the model comes back unchanged and the norms are `None`.
pub fn optimizer_step<B, O>(
    model: Transformer<B>,
    optim: &mut O,
    micro: &[HostBatch],
    devices: &[B::Device],
    lr: f64,
    grad_clip: f64,
) -> (Transformer<B>, f32, Option<GradStats>)
where
    B: AutodiffBackend,
    O: Optimizer<Transformer<B>, B>,
{
    let weight = |h: &HostBatch| h.weights.iter().map(|&w| w as f64).sum::<f64>();
    let total: f64 = micro.iter().map(weight).sum();
    let share = |h: &HostBatch| (micro.len() > 1).then(|| weight(h) / total);
    let n = devices.len().max(1);
    let shares: Vec<Vec<(&HostBatch, Option<f64>)>> = (0..n)
        .map(|d| {
            micro
                .iter()
                .skip(d)
                .step_by(n)
                .map(|h| (h, share(h)))
                .collect()
        })
        .collect();
    let parts: Vec<DeviceGrads> = if n == 1 {
        vec![device_grads(&model, &shares[0], &devices[0])]
    } else {
        std::thread::scope(|s| {
            let workers: Vec<_> = devices
                .iter()
                .zip(&shares)
                .map(|(device, mine)| {
                    let replica = model.clone().fork(device);
                    s.spawn(move || device_grads(&replica, mine, device))
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    let step_loss: f32 = parts.iter().map(|p| p.loss).sum();
    if !step_loss.is_finite() {
        return (model, step_loss, None);
    }
    let mut accumulated = GradientsAccumulator::<Transformer<B>>::new();
    for part in parts {
        if let Some(grads) = part.grads {
            accumulated.accumulate(&model, grads.to_device(&devices[0], &model));
        }
    }
    let mut grads = accumulated.grads();
    let stats = grad_stats(&model, &grads);
    clip_global_norm(&model, &mut grads, &stats, grad_clip);
    (optim.step(lr, model, grads), step_loss, Some(stats))
}

/// One device's share of a step: its gradients summed over its micro-batches, and their
/// weighted loss (non-finite: the gradients are left out, the step is abandoned).
struct DeviceGrads {
    grads: Option<GradientsParams>,
    loss: f32,
}

/// Forward and backward of `micro` (each with its loss share) on `model`, which lives on
/// `device`.
fn device_grads<B: AutodiffBackend>(
    model: &Transformer<B>,
    micro: &[(&HostBatch, Option<f64>)],
    device: &B::Device,
) -> DeviceGrads {
    let mut accumulated = GradientsAccumulator::<Transformer<B>>::new();
    let mut total = 0f32;
    for &(h, share) in micro {
        let batch = DeviceBatch::<B>::new(h, device);
        let out = model.forward(
            &crate::model::Batch {
                ids: batch.inputs,
                padding: None,
            },
            &ForwardOptions::default(),
        );
        let mut loss = lm_loss(out.logits, batch.targets, batch.weights);
        if let Some(share) = share {
            loss = loss * share;
        }
        let value: f32 = loss.clone().into_scalar().elem();
        total += value;
        if !value.is_finite() {
            return DeviceGrads {
                grads: None,
                loss: value,
            };
        }
        accumulated.accumulate(model, GradientsParams::from_grads(loss.backward(), model));
    }
    DeviceGrads {
        grads: (!micro.is_empty()).then(|| accumulated.grads()),
        loss: total,
    }
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

/// Trains `recipe` into `run_dir` on one device: a new run, or with `resume` (`true`,
/// or [`Resume::Latest`] naming the recipe fields allowed to change) a continuation
/// from its newest intact checkpoint. The steps are those of `session.rs`.
pub fn train<B: AutodiffBackend>(
    recipe: &Recipe,
    run_dir: &Path,
    resume: impl Into<Resume>,
    device: &B::Device,
    events: &mut dyn TrainEvents<B>,
) -> Result<TrainOutcome> {
    train_on_devices(
        recipe,
        run_dir,
        resume,
        std::slice::from_ref(device),
        events,
    )
}

/// [`train`] with data parallelism over `devices`, one per entry of the recipe's
/// `devices` (the first holds the model, evaluates and checkpoints; see
/// [`optimizer_step`]).
pub fn train_on_devices<B: AutodiffBackend>(
    recipe: &Recipe,
    run_dir: &Path,
    resume: impl Into<Resume>,
    devices: &[B::Device],
    events: &mut dyn TrainEvents<B>,
) -> Result<TrainOutcome> {
    let asked = recipe.devices();
    if asked.len() != devices.len() {
        return Err(Error::config(
            &format!("recipe {}", recipe.name),
            "devices",
            format!(
                "names {} device(s) but the run was given {}",
                asked.len(),
                devices.len()
            ),
        ));
    }
    let cfg = resolve_model(recipe)?;
    let corpus = Corpus::load(&recipe.data, cfg.is_causal(), |p| recipe.resolve(p))?;
    check_windows(recipe, &corpus)?;
    let resume = resume.into();
    let (mut model, mut run) =
        Session::start(recipe, cfg, corpus, run_dir, &resume, devices, events)?;
    for step in run.steps() {
        model = run.step(model, step, events)?;
        run.evaluate_if_due(&model, step, events)?;
        run.checkpoint_if_due(&model, step, events)?;
        if run.halts_after(step) {
            return run.finish(Some(step), events);
        }
    }
    run.finish(None, events)
}
