//! Everything a report shows, read from a run folder: the evaluations of
//! `metrics.jsonl`, the final checkpoint's sidecar, and a fresh analysis of the final
//! checkpoint on the run's fixed probe (persistence diagram, attention map, weight
//! spectrum), which the logs do not keep.
//!
//! Nothing here fails on a missing piece: a run without checkpoint, logs or topology
//! comes back with what it has and a note saying what is missing and why.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use burn::backend::Flex;
use serde::Deserialize;
use tracing::warn;

use crate::analysis::names::{FIRST_TOKEN_MASS, TRAIN_HELDOUT_LOSS};
use crate::analysis::{weight_spectrum, Diagrams, SpectraConfig, WeightSpectrum};
use crate::error::{Error, Result};
use crate::eval::{self, EvalPlan, Evaluation, NamedMatrix};
use crate::log::run_log::{METRICS_FILE, TB_DIR};
use crate::log::{read_event_log, scan_jsonl, JsonlDamage, LoggedValue};
use crate::train::checkpoint::{self, CheckpointMeta};
use crate::train::data::Corpus;

/// The thresholded Fiedler value the report shows next to the weighted one.
pub const FIEDLER_THRESHOLD: &str = "0.01";

/// The frame verdict as `metrics.jsonl` records it.
#[derive(Clone, Debug, Deserialize)]
pub struct FrameRecord {
    /// `centralized`, `distributed`, `bidirectional` or `none`.
    pub frame_type: String,
    /// One line per step of the rule, with the numbers compared.
    #[serde(default)]
    pub frame_explanation: Vec<String>,
    /// The counts; only the uniform first-token baseline is read from them.
    #[serde(default)]
    frame_evidence: Option<EvidenceRecord>,
}

#[derive(Clone, Debug, Deserialize)]
struct EvidenceRecord {
    #[serde(default)]
    first_token_baseline_sum: f64,
    #[serde(default)]
    layers: usize,
}

impl FrameRecord {
    /// The first-token mass uniform attention would give (mean over the layers seen),
    /// the line a sink has to rise above.
    pub fn first_token_baseline(&self) -> Option<f64> {
        self.frame_evidence
            .as_ref()
            .filter(|e| e.layers > 0)
            .map(|e| e.first_token_baseline_sum / e.layers as f64)
    }
}

/// One evaluation: its step, frame verdict and scalars by tag.
#[derive(Clone, Debug)]
pub struct EvalRecord {
    /// Training step.
    pub step: usize,
    /// Frame verdict, when the evaluation had one.
    pub frame: Option<FrameRecord>,
    /// Finite scalars by TensorBoard tag.
    pub scalars: BTreeMap<String, f64>,
}

/// One line of `metrics.jsonl`, either an evaluation or a skipped one.
#[derive(Deserialize)]
struct MetricsLine {
    step: usize,
    #[serde(default)]
    frame: Option<FrameRecord>,
    #[serde(default)]
    skipped: Option<String>,
    #[serde(default)]
    scalars: BTreeMap<String, Option<f64>>,
}

impl EvalRecord {
    /// A scalar by tag.
    pub fn get(&self, tag: &str) -> Option<f64> {
        self.scalars.get(tag).copied()
    }

    /// Per-layer values of `prefix` (tags `prefix/layer_NN`), by layer index.
    pub fn per_layer(&self, prefix: &str) -> BTreeMap<usize, f64> {
        let head = format!("{prefix}/layer_");
        self.scalars
            .iter()
            .filter_map(|(tag, v)| {
                let rest = tag.strip_prefix(&head)?;
                if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
                    return None; // `…/std`, `…/head_07`
                }
                Some((rest.parse().ok()?, *v))
            })
            .collect()
    }

    /// The mean over layers of `prefix/layer_NN`, when any layer has it.
    pub fn layer_mean(&self, prefix: &str) -> Option<f64> {
        let values = self.per_layer(prefix);
        (!values.is_empty()).then(|| values.values().sum::<f64>() / values.len() as f64)
    }

    /// The scalars and verdict of a fresh evaluation, tagged as training logs them.
    fn from_evaluation(e: &Evaluation) -> Self {
        Self {
            step: e.step.unwrap_or(0),
            frame: Some(FrameRecord {
                frame_type: e.summary.frame.frame_type.to_string(),
                frame_explanation: e.summary.frame.frame_explanation.clone(),
                frame_evidence: Some(EvidenceRecord {
                    first_token_baseline_sum: e
                        .summary
                        .frame
                        .frame_evidence
                        .first_token_baseline_sum,
                    layers: e.summary.frame.frame_evidence.layers,
                }),
            }),
            scalars: e.scalars().into_iter().collect(),
        }
    }
}

/// The head-mean attention map of one layer on one probe sequence.
#[derive(Clone, Debug)]
pub struct AttentionMap {
    /// Sequence length T.
    pub seq_len: usize,
    /// Row-major `[T, T]` weights, rows = queries.
    pub values: Vec<f64>,
}

/// What the final checkpoint shows when run again on the probe.
#[derive(Clone, Debug)]
pub struct CheckpointAnalysis {
    /// Step of the checkpoint.
    pub step: usize,
    /// The layer drawn (from `--layer`, default the last).
    pub layer: usize,
    /// Every metric of the probe, summarized as a training evaluation logs it.
    pub record: EvalRecord,
    /// Persistence diagram of `layer` on the first probe sequence.
    pub diagrams: Option<Diagrams>,
    /// Attention map of `layer` on the first probe sequence.
    pub attention: Option<AttentionMap>,
    /// The chosen weight's spectrum (eigenvalues and Marchenko–Pastur fit).
    pub spectrum: Option<WeightSpectrum>,
}

/// Everything the report knows about one run.
#[derive(Clone, Debug)]
pub struct RunData {
    /// Name: the sub-folder within a sweep, the folder name for a single run.
    pub name: String,
    /// The run folder.
    pub dir: PathBuf,
    /// Evaluations from `metrics.jsonl`, by step.
    pub evals: Vec<EvalRecord>,
    /// Steps whose evaluation was skipped, with the reason.
    pub skipped: Vec<(usize, String)>,
    /// The final checkpoint's sidecar.
    pub meta: Option<CheckpointMeta>,
    /// Latest held-out loss (sidecar, else TensorBoard logs).
    pub heldout_loss: Option<f64>,
    /// The final checkpoint analysed on the probe.
    pub analysis: Option<CheckpointAnalysis>,
    /// What is missing or was substituted, for the reader.
    pub notes: Vec<String>,
}

impl RunData {
    /// The last logged evaluation.
    pub fn last_eval(&self) -> Option<&EvalRecord> {
        self.evals.last()
    }

    /// Number of layers, from the sidecar or the logged tags.
    pub fn num_layers(&self) -> usize {
        if let Some(m) = &self.meta {
            return m.model.n_layers;
        }
        self.last_eval()
            .and_then(|e| e.per_layer(FIRST_TOKEN_MASS).keys().max().map(|l| l + 1))
            .unwrap_or(0)
    }
}

/// What to draw from each run's checkpoint.
#[derive(Clone, Debug, Default)]
pub struct CollectOptions {
    /// Layer of the persistence diagram and heatmap (default: the last).
    pub layer: Option<usize>,
    /// Weight whose spectrum is drawn (default: the last block's `attn.q`).
    pub weight: Option<String>,
}

/// Whether `dir` looks like a training run: it has logs or checkpoints.
pub fn is_run(dir: &Path) -> bool {
    dir.join(METRICS_FILE).is_file() || checkpoint::checkpoints_dir(dir).is_dir()
}

/// The runs of `dir`: itself if it is a run, else its sub-folders that are runs, by
/// name. An error names the folder when it is neither.
pub fn find_runs(dir: &Path) -> Result<(bool, Vec<(String, PathBuf)>)> {
    if !dir.is_dir() {
        return Err(Error::file(dir, "no such folder"));
    }
    if is_run(dir) {
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_else(|| "run".into());
        return Ok((false, vec![(name, dir.to_path_buf())]));
    }
    let mut runs: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .map_err(|e| Error::file(dir, format!("cannot list: {e}")))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && is_run(p))
        .map(|p| {
            (
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string(),
                p,
            )
        })
        .collect();
    if runs.is_empty() {
        return Err(Error::file(
            dir,
            format!(
                "neither a run folder (no {METRICS_FILE}, no checkpoints/) nor a sweep folder \
                 (no sub-folder is a run)"
            ),
        ));
    }
    runs.sort();
    Ok((true, runs))
}

/// Reads one run: logs, final checkpoint, and the checkpoint analysed on the probe.
pub fn collect_run(name: &str, dir: &Path, opts: &CollectOptions) -> RunData {
    let mut run = RunData {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        evals: Vec::new(),
        skipped: Vec::new(),
        meta: None,
        heldout_loss: None,
        analysis: None,
        notes: Vec::new(),
    };
    read_metrics(&mut run);
    let last = match checkpoint::list(dir) {
        Ok(list) => list.into_iter().last(),
        Err(e) => {
            run.notes.push(format!("cannot list checkpoints: {e}"));
            None
        }
    };
    match &last {
        None => run
            .notes
            .push("no checkpoint: no weight spectrum, persistence diagram or attention map".into()),
        Some((step, ckpt)) => match analyze_checkpoint(*step, ckpt, opts, &mut run.notes) {
            Ok((meta, analysis)) => {
                run.heldout_loss = meta.heldout_loss;
                run.meta = Some(meta);
                run.analysis = Some(analysis);
            }
            Err(e) => {
                run.notes
                    .push(format!("cannot analyse the checkpoint of step {step}: {e}"));
                run.meta = checkpoint::read_meta(ckpt).ok();
                run.heldout_loss = run.meta.as_ref().and_then(|m| m.heldout_loss);
            }
        },
    }
    if run.heldout_loss.is_none() {
        run.heldout_loss = logged_heldout_loss(dir, &mut run.notes);
    }
    run
}

/// Reads `metrics.jsonl` leniently ([`scan_jsonl`]): a damaged line, or one that is
/// not an evaluation record, is skipped with a warning naming the file, the line and
/// the step, and the report notes it; every other line is kept.
fn read_metrics(run: &mut RunData) {
    let path = run.dir.join(METRICS_FILE);
    // Only a regular file: reading a device or pipe in its place may never end.
    let bytes = match fs::metadata(&path) {
        Ok(m) if m.is_file() => fs::read(&path).ok(),
        _ => None,
    };
    let Some(bytes) = bytes else {
        run.notes.push(format!(
            "no {METRICS_FILE}: the run logged no evaluations (hooks off?)"
        ));
        return;
    };
    let (lines, mut damage) = scan_jsonl(&path, &bytes);
    for line in lines {
        match serde_json::from_value::<MetricsLine>(line.value) {
            Ok(MetricsLine {
                step,
                skipped: Some(why),
                ..
            }) => run.skipped.push((step, why)),
            Ok(m) => run.evals.push(EvalRecord {
                step: m.step,
                frame: m.frame,
                scalars: m
                    .scalars
                    .into_iter()
                    .filter_map(|(k, v)| v.filter(|v| v.is_finite()).map(|v| (k, v)))
                    .collect(),
            }),
            Err(e) => damage.push(JsonlDamage::new(
                &path,
                line.number,
                line.raw,
                format!("not an evaluation record: {e}"),
            )),
        }
    }
    damage.sort_by_key(|d| d.line);
    for d in &damage {
        warn!("{d}");
    }
    if !damage.is_empty() {
        run.notes.push(lost_lines_note(&damage));
    }
    if !run.skipped.is_empty() {
        let steps: Vec<String> = run.skipped.iter().map(|(s, _)| s.to_string()).collect();
        run.notes.push(format!(
            "evaluations skipped at step(s) {} ({})",
            steps.join(", "),
            run.skipped[0].1
        ));
    }
    run.evals.sort_by_key(|e| e.step);
}

/// One note for the damaged lines of `metrics.jsonl`: how many, which lines, which
/// steps where legible.
fn lost_lines_note(damage: &[JsonlDamage]) -> String {
    let lines: Vec<String> = damage.iter().map(|d| d.line.to_string()).collect();
    let steps: Vec<String> = damage
        .iter()
        .filter_map(|d| d.step.map(|s| s.to_string()))
        .collect();
    let steps = if steps.is_empty() {
        String::new()
    } else {
        format!(", step(s) {}", steps.join(", "))
    };
    format!(
        "{} damaged line(s) in {METRICS_FILE} skipped (line(s) {}{steps}; a run cut short?)",
        damage.len(),
        lines.join(", ")
    )
}

/// The last `train/heldout_loss` in the TensorBoard logs (runs without checkpoint),
/// read leniently: damaged records are skipped with a warning and a note naming the
/// file and the step lost.
fn logged_heldout_loss(dir: &Path, notes: &mut Vec<String>) -> Option<f64> {
    let tb = dir.join(TB_DIR);
    if !tb.is_dir() {
        return None;
    }
    let log = match read_event_log(&tb) {
        Ok(log) => log,
        Err(e) => {
            notes.push(format!("cannot read the TensorBoard logs: {e}"));
            return None;
        }
    };
    for d in &log.damage {
        warn!("{d}; skipped it and kept the records after it");
        notes.push(format!("damaged TensorBoard record skipped: {d}"));
    }
    log.events
        .into_iter()
        .filter_map(|e| match e.value {
            LoggedValue::Scalar { tag, value } if tag == TRAIN_HELDOUT_LOSS => {
                Some((e.step, f64::from(value)))
            }
            _ => None,
        })
        .max_by_key(|(step, _)| *step)
        .map(|(_, v)| v)
}

/// Runs the final checkpoint on the run's probe (the evaluation path of training
/// hooks, with graph and topology on and diagrams kept) and draws its weight spectrum.
fn analyze_checkpoint(
    step: usize,
    dir: &Path,
    opts: &CollectOptions,
    notes: &mut Vec<String>,
) -> Result<(CheckpointMeta, CheckpointAnalysis)> {
    let device = Default::default();
    let (model, meta) = checkpoint::load_model::<Flex>(dir, &device)?;
    let corpus = load_corpus(&meta, notes)?;
    let probe = corpus.probe_inputs(meta.recipe.hooks.probes.max(1));
    let captures = eval::capture(&model, &probe, corpus.vocabulary().pad, false, &device)?;
    let mut plan = EvalPlan {
        analysis: meta.recipe.hooks.analysis.clone(),
        ..EvalPlan::default()
    };
    plan.analysis.graph = true;
    plan.analysis.spectra = false;
    plan.analysis.topology.enabled = true;
    plan.analysis.topology.keep_diagrams = true;
    let evaluation = eval::evaluate(Some(step), &captures, &[], None, &plan)?;

    let layers = meta.model.n_layers;
    let last = layers.saturating_sub(1);
    let layer = match opts.layer {
        Some(l) if l < layers => l,
        Some(l) => {
            notes.push(format!(
                "--layer {l} is beyond this model's {layers} layers; showing layer {last}"
            ));
            last
        }
        None => last,
    };
    let diagrams = evaluation
        .reports
        .first()
        .and_then(|r| r.layers.get(layer))
        .and_then(|l| l.topology.as_ref())
        .and_then(|t| t.diagrams.clone());
    let attention = captures.first().map(|c| AttentionMap {
        seq_len: c.maps.seq_len(),
        values: c.maps.head_mean(layer),
    });
    let weights = eval::weight_matrices(&model)?;
    let spectrum = choose_weight(&weights, opts.weight.as_deref(), layers, notes)
        .and_then(|w| spectrum_of(w, &meta.recipe.hooks.spectra, notes));
    let analysis = CheckpointAnalysis {
        step,
        layer,
        record: EvalRecord::from_evaluation(&evaluation),
        diagrams,
        attention,
        spectrum,
    };
    Ok((meta, analysis))
}

/// The weight to draw: the one asked for, else the last block's query projection,
/// else the largest matrix.
fn choose_weight<'a>(
    weights: &'a [NamedMatrix],
    asked: Option<&str>,
    layers: usize,
    notes: &mut Vec<String>,
) -> Option<&'a NamedMatrix> {
    let default = format!("blocks.{}.attn.q", layers.saturating_sub(1));
    let want = asked.unwrap_or(&default);
    if let Some(w) = weights.iter().find(|w| w.name == want) {
        return Some(w);
    }
    let largest = weights
        .iter()
        .max_by_key(|w| w.rows.min(w.cols) * w.rows.max(w.cols))?;
    let names: Vec<&str> = weights.iter().map(|w| w.name.as_str()).collect();
    notes.push(format!(
        "no weight `{want}` (weights: {}); showing the largest, `{}`",
        names.join(", "),
        largest.name
    ));
    Some(largest)
}

/// The spectrum of `w` under the run's settings, lowering `min_evals` so that a
/// small model still gets a picture (and saying so).
fn spectrum_of(
    w: &NamedMatrix,
    cfg: &SpectraConfig,
    notes: &mut Vec<String>,
) -> Option<WeightSpectrum> {
    let m = w.rows.min(w.cols);
    let mut cfg = cfg.clone();
    if m < cfg.min_evals {
        notes.push(format!(
            "`{}` has {m} eigenvalues, fewer than the {} WeightWatcher asks for: its fit is \
             shown for illustration only",
            w.name, cfg.min_evals
        ));
        cfg.min_evals = m;
    }
    cfg.max_evals = None;
    cfg.randomize = false;
    match weight_spectrum(&w.name, &w.data, w.rows, w.cols, &cfg, faer::Par::Seq) {
        Ok(Some(spectrum)) => Some(spectrum),
        Ok(None) => {
            notes.push(format!("`{}` has no spectrum to draw", w.name));
            None
        }
        Err(e) => {
            notes.push(format!("no spectrum of `{}`: {e}", w.name));
            None
        }
    }
}

/// The run's corpus, rebuilt from the sidecar's recipe so that the probe is the one
/// the run's hooks analysed.
fn load_corpus(meta: &CheckpointMeta, notes: &mut Vec<String>) -> Result<Corpus> {
    let recipe = &meta.recipe;
    let corpus = Corpus::load(&recipe.data, meta.model.is_causal(), |p| {
        locate_data(&recipe.resolve(p), p)
    })?;
    for given in std::iter::once(&recipe.data.train).chain(&recipe.data.heldout) {
        let used = locate_data(&recipe.resolve(given), given);
        if used != recipe.resolve(given) {
            notes.push(format!(
                "data file `{}` (relative to a recipe folder the checkpoint does not record) \
                 read from `{}`",
                given.display(),
                used.display()
            ));
        }
    }
    Ok(corpus)
}

/// Where a recipe-relative data path is, when the recipe's folder is unknown: as
/// resolved, else with its leading `..` dropped under the working folder or one of its
/// ancestors (`../datasets/x` from `recipes/` is `datasets/x` at the repository root).
fn locate_data(resolved: &Path, given: &Path) -> PathBuf {
    if resolved.exists() || given.is_absolute() {
        return resolved.to_path_buf();
    }
    let tail: PathBuf = given
        .components()
        .skip_while(|c| matches!(c, Component::ParentDir | Component::CurDir))
        .collect();
    let cwd = std::env::current_dir().unwrap_or_default();
    cwd.ancestors()
        .map(|a| a.join(&tail))
        .find(|p| p.exists())
        .unwrap_or_else(|| resolved.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pairs: &[(&str, f64)]) -> EvalRecord {
        EvalRecord {
            step: 0,
            frame: None,
            scalars: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn per_layer_reads_only_layer_tags_of_the_prefix() {
        let r = record(&[
            ("topo/betti0/layer_00", 3.0),
            ("topo/betti0/layer_01", 5.0),
            ("topo/betti0/layer_01/std", 1.0),
            ("topo/betti0_r0.5/layer_00", 9.0),
            ("topo/betti1/layer_00", 7.0),
        ]);
        let b0 = r.per_layer("topo/betti0");
        assert_eq!(b0, BTreeMap::from([(0, 3.0), (1, 5.0)]));
        assert_eq!(r.layer_mean("topo/betti0"), Some(4.0));
        assert_eq!(r.layer_mean("graph/fiedler_0.01"), None);
    }

    #[test]
    fn metrics_lines_parse_with_nulls_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(METRICS_FILE),
            "{\"step\":2,\"frame\":{\"frame_type\":\"none\",\"frame_evidence\":\
             {\"first_token_baseline_sum\":0.3,\"layers\":2},\"frame_explanation\":[\"a\"]},\
             \"scalars\":{\"sink/rate\":5.0,\"info/kl_sink_removed/layer_00\":null}}\n\
             {\"step\":0,\"scalars\":{\"sink/rate\":1.0}}\n\
             {\"step\":4,\"skipped\":\"queue full\",\"scalars\":{}}\n{\"step\":5,\"sc",
        )
        .unwrap();
        let run = collect_run("r", dir.path(), &CollectOptions::default());
        assert_eq!(run.evals.iter().map(|e| e.step).collect::<Vec<_>>(), [0, 2]);
        let last = run.last_eval().unwrap();
        assert_eq!(last.get(crate::analysis::names::SINK_RATE), Some(5.0));
        assert!(!last.scalars.contains_key("info/kl_sink_removed/layer_00"));
        let frame = last.frame.as_ref().unwrap();
        assert_eq!(frame.first_token_baseline(), Some(0.15));
        assert_eq!(run.skipped, [(4, "queue full".to_string())]);
        let notes = run.notes.join("\n");
        assert!(
            notes.contains("1 damaged line(s) in metrics.jsonl skipped (line(s) 4, step(s) 5;"),
            "{notes}"
        );
        assert!(notes.contains("no checkpoint"), "{notes}");
        assert!(run.analysis.is_none() && run.heldout_loss.is_none());
    }

    #[test]
    fn neither_run_nor_sweep_is_an_error_naming_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("empty")).unwrap();
        let err = find_runs(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(err.contains("neither a run"), "{err}");
        let missing = dir.path().join("nope");
        let err = find_runs(&missing).unwrap_err().to_string();
        assert!(
            err.contains("nope") && err.contains("no such folder"),
            "{err}"
        );
    }

    #[test]
    fn relative_data_paths_are_found_above_the_working_folder() {
        // `../datasets/kjv/train.txt.gz` from `recipes/` is `datasets/...` at the root,
        // and the tests run at the repository root.
        let given = Path::new("../datasets/kjv/train.txt.gz");
        let found = locate_data(given, given);
        assert!(found.exists(), "{}", found.display());
        let absent = Path::new("../no/such/file.txt");
        assert_eq!(locate_data(absent, absent), absent);
    }
}
