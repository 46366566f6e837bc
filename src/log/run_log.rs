//! The logs of one training run: `RUN/tb/` (TensorBoard) and `RUN/metrics.jsonl`
//! (one object per evaluation), opened so that a resumed run continues them without
//! duplicate or missing steps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::log::hparams::HParamsPluginData;
use crate::log::{
    truncate_after, truncate_jsonl_after, JsonlWriter, Layout, LogError, RgbImage,
    TensorBoardWriter,
};

/// TensorBoard folder inside a run.
pub const TB_DIR: &str = "tb";
/// Metrics file inside a run.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Which scalars of an evaluation go to TensorBoard. `metrics.jsonl` keeps
/// every scalar; TensorBoard shows one card per tag, so the spread over probe
/// sequences (`…/std`) and per-head values (`…/head_07`), which multiply the
/// tag count, are opt-in there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TagFilter {
    /// Keep the `<tag>/std` companions.
    pub std: bool,
    /// Keep per-head tags (a `head_NN` path component).
    pub per_head: bool,
}

impl TagFilter {
    /// Whether `tag` goes to TensorBoard.
    pub fn keeps(&self, tag: &str) -> bool {
        let is_std = tag.ends_with("/std");
        let is_head = tag.split('/').any(|c| {
            c.strip_prefix("head_")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        });
        (self.std || !is_std) && (self.per_head || !is_head)
    }
}

/// Writers for one run's logs.
#[derive(Debug)]
pub struct RunLog {
    tb: TensorBoardWriter,
    jsonl: JsonlWriter,
    dir: PathBuf,
    filter: TagFilter,
}

/// One line of `metrics.jsonl`.
#[derive(Serialize)]
struct Record<'a, F: Serialize> {
    step: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    frame: Option<&'a F>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<&'a str>,
    scalars: BTreeMap<&'a str, f64>,
}

impl RunLog {
    /// Opens the logs of `run_dir`. `resume_from` is the checkpoint step a resumed run
    /// continues from: entries after it are removed first. A fresh run (None) starts
    /// the logs anew. Fails early, naming the folder, when it cannot be written.
    pub fn open(run_dir: &Path, resume_from: Option<usize>) -> Result<Self, LogError> {
        let tb_dir = run_dir.join(TB_DIR);
        let metrics = run_dir.join(METRICS_FILE);
        match resume_from {
            Some(step) => {
                // each damaged record dropped is named by the readers as they go
                truncate_after(&tb_dir, step as u64)?;
                truncate_jsonl_after(&metrics, step as u64)?;
            }
            None => {
                // Logs of an earlier attempt that never reached a checkpoint. Anything
                // else at these paths is left for the writers to report.
                if tb_dir.is_dir() {
                    std::fs::remove_dir_all(&tb_dir).map_err(|e| {
                        LogError::io("cannot clear logs of an earlier attempt in", &tb_dir, e)
                    })?;
                }
                if metrics.is_file() {
                    std::fs::remove_file(&metrics).map_err(|e| {
                        LogError::io("cannot clear logs of an earlier attempt in", &metrics, e)
                    })?;
                }
            }
        }
        Ok(Self {
            tb: TensorBoardWriter::create(&tb_dir)?,
            jsonl: JsonlWriter::open_append(&metrics)?,
            dir: run_dir.to_path_buf(),
            filter: TagFilter::default(),
        })
    }

    /// Chooses which evaluation scalars go to TensorBoard (default: no
    /// `/std`, no per-head tags).
    pub fn set_filter(&mut self, filter: TagFilter) {
        self.filter = filter;
    }

    /// The filter in use, so a layout lists only tags that are written.
    pub fn filter(&self) -> TagFilter {
        self.filter
    }

    /// The TensorBoard folder, for the `tensorboard --logdir` hint.
    pub fn tb_dir(&self) -> PathBuf {
        self.dir.join(TB_DIR)
    }

    /// Scalars to TensorBoard only (training loss, learning rate…).
    pub fn scalars(&mut self, step: usize, scalars: &[(String, f64)]) -> Result<(), LogError> {
        self.tb.add_scalars(scalars, step as u64)
    }

    /// One evaluation: scalars (those the [`TagFilter`] keeps), histograms and images
    /// to TensorBoard, and a line of `metrics.jsonl` with every scalar and the frame
    /// verdict.
    pub fn evaluation<F: Serialize>(
        &mut self,
        step: usize,
        frame: &F,
        scalars: &[(String, f64)],
        histograms: &[(String, Vec<f64>)],
        images: &[(String, RgbImage)],
    ) -> Result<(), LogError> {
        let shown: Vec<(&str, f64)> = scalars
            .iter()
            .filter(|(tag, _)| self.filter.keeps(tag))
            .map(|(tag, v)| (tag.as_str(), *v))
            .collect();
        self.tb.add_scalars(&shown, step as u64)?;
        for (tag, values) in histograms {
            self.tb.add_histogram(tag, values, step as u64)?;
        }
        for (tag, image) in images {
            self.tb.add_image(tag, image, step as u64)?;
        }
        // the metrics.jsonl line is what marks a step recorded (a resumed series skips
        // it), so the step's TensorBoard events leave the buffer first: a kill between
        // the two leaves events without a line (cut on resume), never a line without
        // its events
        self.tb.flush()?;
        self.jsonl.write(&Record {
            step,
            frame: Some(frame),
            skipped: None,
            scalars: scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect(),
        })
    }

    /// Records that the evaluation of `step` was skipped, and why, so none is lost silently.
    pub fn skipped(&mut self, step: usize, why: &str) -> Result<(), LogError> {
        self.jsonl.write(&Record::<()> {
            step,
            frame: None,
            skipped: Some(why),
            scalars: BTreeMap::new(),
        })
    }

    /// Markdown text to TensorBoard's text dashboard.
    pub fn text(&mut self, tag: &str, text: &str, step: usize) -> Result<(), LogError> {
        self.tb.add_text(tag, text, step as u64)
    }

    /// A record of TensorBoard's HParams plugin (see `hparams.rs`).
    pub fn hparams(&mut self, step: usize, data: &HParamsPluginData) -> Result<(), LogError> {
        self.tb.add_hparams(data, step as u64)
    }

    /// The custom-scalars layout (see `layout.rs`).
    pub fn layout(&mut self, step: usize, layout: &Layout) -> Result<(), LogError> {
        self.tb.add_layout(layout, step as u64)
    }

    /// Writes and fsyncs both files.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.tb.flush()?;
        self.jsonl.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_and_per_head_tags_are_opt_in() {
        let tags = [
            "sink/rate/layer_03",
            "sink/rate/layer_03/std",
            "sink/first_token_mass/layer_03/head_07",
            "sink/first_token_mass/layer_03/head_07/std",
            "graph/heads_0.1/layer_00",
        ];
        let kept =
            |f: TagFilter| -> Vec<&str> { tags.into_iter().filter(|t| f.keeps(t)).collect() };
        assert_eq!(
            kept(TagFilter::default()),
            ["sink/rate/layer_03", "graph/heads_0.1/layer_00"]
        );
        assert_eq!(
            kept(TagFilter {
                std: true,
                per_head: false
            })
            .len(),
            3
        );
        assert_eq!(
            kept(TagFilter {
                std: false,
                per_head: true
            })
            .len(),
            3
        );
        assert_eq!(
            kept(TagFilter {
                std: true,
                per_head: true
            })
            .len(),
            5
        );
    }
}
