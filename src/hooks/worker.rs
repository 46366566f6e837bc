//! The analysis worker: evaluations are captured on the training thread and analysed
//! here, behind a bounded queue, so a GPU is never kept waiting on CPU-side analysis
//! unless the queue is full.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use tracing::warn;

use crate::error::{Error, Result};
use crate::eval::{evaluate, EvalPlan, NamedMatrix, SequenceCapture};
use crate::hooks::hook::{run_hooks, Hook, HookInput};
use crate::hooks::tags::LayoutBuilder;
use crate::log::hparams::HParamsPluginData;
use crate::log::RunLog;

/// Work for the analysis thread.
#[derive(Debug)]
pub enum Job {
    /// Scalars to log as they are (training loss, learning rate…).
    Scalars {
        /// Step.
        step: usize,
        /// `(tag, value)`.
        scalars: Vec<(String, f64)>,
    },
    /// Text for TensorBoard's text dashboard.
    Text {
        /// Step.
        step: usize,
        /// Tag.
        tag: String,
        /// Markdown.
        text: String,
    },
    /// A captured evaluation to analyse and log.
    Evaluate {
        /// Step.
        step: usize,
        /// Probe captures.
        probe: Vec<SequenceCapture>,
        /// Weights (empty unless a hook needs them).
        weights: Vec<NamedMatrix>,
        /// Fisher trace per layer since the last evaluation.
        fisher: Option<Vec<f64>>,
    },
    /// An evaluation that was not run, to be recorded.
    Skipped {
        /// Step.
        step: usize,
        /// Why.
        why: String,
    },
    /// A record of TensorBoard's HParams plugin.
    HParams {
        /// Step.
        step: usize,
        /// The record.
        data: HParamsPluginData,
    },
    /// Write everything queued so far to disk, then answer.
    Flush(SyncSender<()>),
}

/// Handle to the running worker.
#[derive(Debug)]
pub struct Worker {
    tx: Option<SyncSender<Job>>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl Worker {
    /// Starts a worker with room for `queue` pending jobs.
    pub fn spawn(mut log: RunLog, hooks: Vec<Box<dyn Hook>>, plan: EvalPlan, queue: usize) -> Self {
        let (tx, rx) = sync_channel::<Job>(queue.max(1));
        let handle = std::thread::Builder::new()
            .name("sinkscope-analysis".into())
            .spawn(move || work(rx, &mut log, &hooks, &plan))
            .ok();
        Self {
            tx: Some(tx),
            handle,
        }
    }

    /// Queues a job, waiting for room.
    pub fn send(&mut self, job: Job) -> Result<()> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::Internal("analysis worker already stopped".into()))?;
        if tx.send(job).is_err() {
            return Err(self.failure());
        }
        Ok(())
    }

    /// Queues a job if there is room; gives it back otherwise.
    pub fn try_send(&mut self, job: Job) -> Result<Option<Job>> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::Internal("analysis worker already stopped".into()))?;
        match tx.try_send(job) {
            Ok(()) => Ok(None),
            Err(TrySendError::Full(job)) => Ok(Some(job)),
            Err(TrySendError::Disconnected(_)) => Err(self.failure()),
        }
    }

    /// Waits until every job queued so far is analysed and on disk.
    pub fn flush(&mut self) -> Result<()> {
        let (ack_tx, ack_rx) = sync_channel(1);
        self.send(Job::Flush(ack_tx))?;
        ack_rx.recv().map_err(|_| self.failure())
    }

    /// Drains the queue and stops the worker, returning its first error.
    pub fn finish(&mut self) -> Result<()> {
        self.tx.take();
        match self.handle.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("the analysis worker crashed".into()))),
            None => Ok(()),
        }
    }

    fn failure(&mut self) -> Error {
        match self.finish() {
            Err(e) => e,
            Ok(()) => Error::Internal("the analysis worker stopped unexpectedly".into()),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn work(
    rx: Receiver<Job>,
    log: &mut RunLog,
    hooks: &[Box<dyn Hook>],
    plan: &EvalPlan,
) -> Result<()> {
    // The custom-scalars layout, built from the tags evaluations wrote, is written
    // with the first evaluation of each session and again when a later one adds
    // tags (TensorBoard draws the latest).
    let mut layout = LayoutBuilder::default();
    let mut layout_written = false;
    for job in rx {
        match job {
            Job::Scalars { step, scalars } => log.scalars(step, &scalars)?,
            Job::Text { step, tag, text } => log.text(&tag, &text, step)?,
            Job::HParams { step, data } => log.hparams(step, &data)?,
            Job::Evaluate {
                step,
                probe,
                weights,
                fisher,
            } => {
                let evaluation = evaluate(Some(step), &probe, &weights, fisher, plan)?;
                let input = HookInput {
                    evaluation: &evaluation,
                    probe: &probe,
                };
                let out = run_hooks(hooks, &input);
                if layout.add(&out, log.filter()) || !layout_written {
                    log.layout(step, &layout.layout(true))?;
                    layout_written = true;
                }
                log.evaluation(
                    step,
                    &evaluation.summary.frame,
                    &out.scalars,
                    &out.histograms,
                    &out.images,
                )?;
            }
            Job::Skipped { step, why } => {
                warn!(step, "evaluation skipped: {why}");
                log.skipped(step, &why)?;
            }
            Job::Flush(ack) => {
                log.flush()?;
                let _ = ack.send(());
            }
        }
    }
    log.flush()?;
    Ok(())
}
