//! The `[hooks]` table of a recipe: which hooks run, when, on how many probe
//! sequences, and what happens when analysis falls behind training.

use serde::{Deserialize, Serialize};

use crate::analysis::{AnalysisConfig, SpectraConfig};
use crate::hooks::schedule::HookSchedule;
use crate::log::TagFilter;

/// What training does when the analysis worker is still busy with earlier evaluations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backlog {
    /// Training waits for a free slot (no evaluation is ever dropped).
    #[default]
    Wait,
    /// The evaluation is skipped, with a warning and a `skipped` line in metrics.jsonl.
    Skip,
}

/// Training-time instrumentation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// Run hooks at all.
    pub enabled: bool,
    /// Hooks to run, by name (see `docs/HOOKS.md`).
    pub run: Vec<String>,
    /// `"log"` (0, 1, 2, 4, …), `"checkpoint"`, or `"every:N"`; the last step always.
    pub schedule: HookSchedule,
    /// Probe sequences: fixed held-out windows, the same at every evaluation.
    pub probes: usize,
    /// Evaluations that may wait for the analysis worker.
    pub queue: usize,
    /// What to do when the queue is full.
    pub on_backlog: Backlog,
    /// Per-head scalars (`…/layer_03/head_07`) in TensorBoard too: one tag per head,
    /// so off by default (`metrics.jsonl` always has them).
    pub per_head: bool,
    /// The `<tag>/std` companions (spread over the probe sequences) in TensorBoard
    /// too: they double the tag count, so off by default (`metrics.jsonl` always has
    /// them).
    pub std: bool,
    /// Analysis settings (thresholds, topology mode, …).
    pub analysis: AnalysisConfig,
    /// Weight-spectra settings.
    pub spectra: SpectraConfig,
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            run: crate::hooks::hook::registry()
                .iter()
                .map(|h| h.name().to_string())
                .collect(),
            schedule: HookSchedule::LogSpaced,
            probes: 8,
            queue: 2,
            on_backlog: Backlog::Wait,
            per_head: false,
            std: false,
            analysis: AnalysisConfig::default(),
            spectra: SpectraConfig::default(),
        }
    }
}

impl HooksConfig {
    /// Which evaluation scalars go to TensorBoard.
    pub fn tag_filter(&self) -> TagFilter {
        TagFilter {
            std: self.std,
            per_head: self.per_head,
        }
    }
}
