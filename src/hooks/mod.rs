//! Training-time instrumentation: hooks measure the model at scheduled steps on a
//! fixed probe set and log to TensorBoard and `metrics.jsonl`.
//!
//! - `hook.rs`: the [`Hook`] interface and the registry of named hooks.
//! - `schedule.rs`: every N steps, at checkpoints, or log-spaced.
//! - `config.rs`: the recipe's `[hooks]` table.
//! - `hparams.rs`: the run's settings and final metrics for TensorBoard's HParams.
//! - `tags.rs`: the custom-scalars layout (one chart per metric, lines per layer).
//! - `runner.rs`: the training-loop side ([`HookRunner`], a `TrainEvents`).
//! - `worker.rs`: analysis on a separate thread behind a bounded queue.

pub mod config;
pub mod hook;
pub mod hparams;
pub mod runner;
pub mod schedule;
pub mod tags;
pub mod worker;

pub use config::{Backlog, HooksConfig};
pub use hook::{analysis_hooks, plan_for, registry, run_hooks, Hook, HookInput, HookOutput, Needs};
pub use hparams::SessionRecords;
pub use runner::HookRunner;
pub use schedule::HookSchedule;
