//! The report's content, built once as a list of blocks (headings, text, tables,
//! figures) and rendered twice, by `markdown.rs` and `html.rs`, so that the two files
//! can never say different things.
//!
//! Text may hold `code` spans in backticks; each renderer turns them into its own markup.

use std::collections::HashSet;
use std::path::Path;

use super::collect::{EvalRecord, RunData, FIEDLER_THRESHOLD};
use super::plots::{self, short, BarPanel, SinkCurves};
use crate::analysis::names::{
    self, BETTI, FIEDLER, FIRST_TOKEN_MASS, KL, KL_SINK_REMOVED, SINK_CONCENTRATION, SINK_RATE,
    VALUE_NORM_RATIO,
};
use crate::analysis::TopologyMode;
use crate::error::Result;

/// A figure: the SVG, the file it is written to and what it shows.
#[derive(Clone, Debug)]
pub struct Figure {
    /// Path relative to the report, `plots/<name>.svg`.
    pub file: String,
    /// The title, also drawn inside the SVG.
    pub title: String,
    /// What to read from it.
    pub caption: String,
    /// The SVG text.
    pub svg: String,
}

/// One piece of the report.
#[derive(Clone, Debug)]
pub enum Block {
    /// A heading of level 1–3.
    Heading(u8, String),
    /// A paragraph.
    Paragraph(String),
    /// A bulleted list.
    List(Vec<String>),
    /// A table; a cell's lines are separated by `\n`.
    Table {
        /// Column names.
        header: Vec<String>,
        /// Rows of cells.
        rows: Vec<Vec<String>>,
    },
    /// A figure.
    Figure(Figure),
}

/// The whole report.
#[derive(Clone, Debug)]
pub struct Document {
    /// The page title.
    pub title: String,
    /// Its blocks, in order (the title is not one of them).
    pub blocks: Vec<Block>,
}

impl Document {
    /// Every figure, in order.
    pub fn figures(&self) -> impl Iterator<Item = &Figure> {
        self.blocks.iter().filter_map(|b| match b {
            Block::Figure(f) => Some(f),
            _ => None,
        })
    }
}

const MISSING: &str = "–";
/// Marks a value measured on the final checkpoint rather than read from the logs.
const FRESH: &str = "†";

/// A run's final numbers: the last logged evaluation, completed by the fresh analysis
/// of the final checkpoint for what the run's hooks did not log.
struct Final<'a> {
    logged: Option<&'a EvalRecord>,
    fresh: Option<&'a EvalRecord>,
}

impl<'a> Final<'a> {
    fn of(run: &'a RunData) -> Self {
        Self {
            logged: run.last_eval(),
            fresh: run.analysis.as_ref().map(|a| &a.record),
        }
    }

    /// The value and whether it came from the checkpoint.
    fn value(&self, f: impl Fn(&EvalRecord) -> Option<f64>) -> Option<(f64, bool)> {
        self.logged
            .and_then(&f)
            .map(|v| (v, false))
            .or_else(|| self.fresh.and_then(&f).map(|v| (v, true)))
    }

    fn cell(&self, f: impl Fn(&EvalRecord) -> Option<f64>, fmt: impl Fn(f64) -> String) -> String {
        match self.value(f) {
            Some((v, fresh)) => format!("{}{}", fmt(v), if fresh { FRESH } else { "" }),
            None => MISSING.into(),
        }
    }

    /// Per-layer values of `prefix` over `layers` layers, logged first.
    fn layers(&self, prefix: &str, layers: usize) -> Vec<Option<f64>> {
        let pick =
            |r: Option<&EvalRecord>| r.map(|r| r.per_layer(prefix)).filter(|m| !m.is_empty());
        match pick(self.logged).or_else(|| pick(self.fresh)) {
            Some(m) => (0..layers).map(|l| m.get(&l).copied()).collect(),
            None => vec![None; layers],
        }
    }

    fn frame(&self) -> Option<(&'a super::collect::FrameRecord, usize, bool)> {
        let of = |r: &'a EvalRecord| r.frame.as_ref().map(|f| (f, r.step));
        self.logged
            .and_then(of)
            .map(|(f, s)| (f, s, false))
            .or_else(|| self.fresh.and_then(of).map(|(f, s)| (f, s, true)))
    }

    fn step(&self) -> Option<usize> {
        self.logged.or(self.fresh).map(|r| r.step)
    }
}

fn fixed(decimals: usize) -> impl Fn(f64) -> String {
    move |v| format!("{v:.decimals$}")
}

/// A unit enum as recipes spell it (`decoder`, `ntk-rope`).
fn serde_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => MISSING.into(),
    }
}

/// File-name form of a run name: letters, digits, `.`, `-`, `_`.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Builds the figures and the text of the report on `runs` found in `dir`.
pub fn build(dir: &Path, sweep: bool, runs: &[RunData]) -> Document {
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| dir.display().to_string());
    let mut b = Builder {
        blocks: Vec::new(),
        notes: Vec::new(),
        files: HashSet::new(),
    };
    let names: Vec<String> = runs.iter().map(|r| format!("`{}`", r.name)).collect();
    b.text(if sweep {
        format!(
            "Sweep `{}` with {} run{}: {}. Generated by sinkscope {}.",
            dir.display(),
            runs.len(),
            if runs.len() == 1 { "" } else { "s" },
            names.join(", "),
            env!("CARGO_PKG_VERSION")
        )
    } else {
        format!(
            "Run `{}`. Generated by sinkscope {}.",
            dir.display(),
            env!("CARGO_PKG_VERSION")
        )
    });
    b.final_table(runs);
    b.sink_section(runs);
    b.frame_section(runs);
    b.layer_section(runs);
    for run in runs {
        b.run_section(run);
    }
    if !b.notes.is_empty() {
        b.heading(2, "Notes");
        let notes = std::mem::take(&mut b.notes);
        b.blocks.push(Block::List(notes));
    }
    Document {
        title: format!("sinkscope report: {name}"),
        blocks: b.blocks,
    }
}

/// The per-layer metrics the report shows whose names carry a parameter.
struct Tags {
    betti0: String,
    betti1: String,
    /// Thresholded at [`FIEDLER_THRESHOLD`].
    fiedler: String,
    fiedler_weighted: String,
}

impl Tags {
    fn new() -> Self {
        Self {
            betti0: names::dimension(BETTI, 0),
            betti1: names::dimension(BETTI, 1),
            fiedler: names::thresholded(FIEDLER, FIEDLER_THRESHOLD),
            fiedler_weighted: names::thresholded(FIEDLER, names::WEIGHTED),
        }
    }
}

struct Builder {
    blocks: Vec<Block>,
    notes: Vec<String>,
    files: HashSet<String>,
}

impl Builder {
    fn heading(&mut self, level: u8, text: impl Into<String>) {
        self.blocks.push(Block::Heading(level, text.into()));
    }

    fn text(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Paragraph(text.into()));
    }

    /// Adds a drawn figure under a unique file name, or a note if drawing failed.
    fn figure(&mut self, stem: &str, title: String, caption: String, svg: Result<String>) {
        match svg {
            Ok(svg) => {
                let mut file = format!("plots/{stem}.svg");
                let mut i = 2;
                while !self.files.insert(file.clone()) {
                    file = format!("plots/{stem}-{i}.svg");
                    i += 1;
                }
                self.blocks.push(Block::Figure(Figure {
                    file,
                    title,
                    caption,
                    svg,
                }));
            }
            Err(e) => self.notes.push(format!("figure “{title}” not drawn: {e}")),
        }
    }

    fn final_table(&mut self, runs: &[RunData]) {
        self.heading(2, "Final metrics");
        self.text(
            "At each run's last evaluation. Sink rate, first-token mass, concentration, KL \
             divergences, bar counts and Fiedler values are means over layers of the means over \
             the probe sequences; the held-out loss is the last one the run computed.",
        );
        let header = [
            "run",
            "step",
            "held-out loss",
            "sink rate (%)",
            "first-token mass",
            "sink concentration",
            "sink value-norm ratio",
            "KL",
            "sink-removed KL",
            "β₀ bars",
            "β₁ bars",
            "Fiedler (τ = 0.01)",
            "Fiedler (weighted)",
            "frame",
        ];
        let tags = Tags::new();
        let mut any_fresh = false;
        let rows = runs
            .iter()
            .map(|run| {
                let f = Final::of(run);
                let cells = vec![
                    f.cell(|r| r.get(SINK_RATE), fixed(1)),
                    f.cell(|r| r.get(FIRST_TOKEN_MASS), fixed(3)),
                    f.cell(|r| r.layer_mean(SINK_CONCENTRATION), fixed(3)),
                    f.cell(|r| r.layer_mean(VALUE_NORM_RATIO), fixed(3)),
                    f.cell(|r| r.layer_mean(KL), fixed(3)),
                    f.cell(|r| r.layer_mean(KL_SINK_REMOVED), fixed(3)),
                    f.cell(|r| r.layer_mean(&tags.betti0), fixed(1)),
                    f.cell(|r| r.layer_mean(&tags.betti1), fixed(1)),
                    f.cell(|r| r.layer_mean(&tags.fiedler), short),
                    f.cell(|r| r.layer_mean(&tags.fiedler_weighted), short),
                ];
                any_fresh |= cells.iter().any(|c| c.ends_with(FRESH));
                let frame = match f.frame() {
                    Some((fr, _, fresh)) => {
                        any_fresh |= fresh;
                        format!("{}{}", fr.frame_type, if fresh { FRESH } else { "" })
                    }
                    None => MISSING.into(),
                };
                let mut row = vec![
                    run.name.clone(),
                    f.step().map_or(MISSING.into(), |s| s.to_string()),
                    run.heldout_loss.map_or(MISSING.into(), fixed(4)),
                ];
                row.extend(cells);
                row.push(frame);
                row
            })
            .collect();
        self.blocks.push(Block::Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows,
        });
        if any_fresh {
            self.text(format!(
                "{FRESH} measured on the final checkpoint with the run's probe: the run's hooks \
                 did not log it."
            ));
        }
        if runs
            .iter()
            .any(|r| r.evals.is_empty() && r.analysis.is_none())
        {
            self.text(format!(
                "{MISSING} not measured: the run logged no evaluation and has no checkpoint."
            ));
        }
    }

    fn sink_section(&mut self, runs: &[RunData]) {
        self.heading(2, "Sink emergence");
        let curves: Vec<SinkCurves> = runs
            .iter()
            .map(|r| {
                let series = |tag: &str| {
                    r.evals
                        .iter()
                        .filter_map(|e| e.get(tag).map(|v| (e.step, v)))
                        .collect::<Vec<_>>()
                };
                SinkCurves {
                    name: r.name.clone(),
                    sink_rate: series(SINK_RATE),
                    first_token_mass: series(FIRST_TOKEN_MASS),
                }
            })
            .collect();
        for c in curves.iter().filter(|c| c.sink_rate.is_empty()) {
            self.notes.push(format!(
                "run `{}` logged no sink metrics (`sinks` hook), so it has no curve",
                c.name
            ));
        }
        let baselines: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.last_eval()?.frame.as_ref()?.first_token_baseline())
            .collect();
        let baseline = baselines
            .first()
            .copied()
            .filter(|b| baselines.iter().all(|x| (x - b).abs() < 1e-6));
        let title = "Sink rate and first-token mass during training".to_string();
        let svg = plots::sink_curves(&title, &curves, baseline);
        self.figure(
            "sink-emergence",
            title,
            format!(
                "Every evaluation in `metrics.jsonl`, each the mean over the probe sequences. \
                 Left: Gu et al.'s sink rate `{SINK_RATE}`, the share of heads whose first-token \
                 score α₀ exceeds ε; right: `{FIRST_TOKEN_MASS}`, α₀ averaged over heads. Both \
                 are means over layers. The step axis is log10(step + 1), so the \
                 initialisation (step 0) sits at the left edge.{}",
                if baseline.is_some() {
                    " Dashed: α₀ of uniform attention, the level a model without sinks reads."
                } else {
                    ""
                }
            ),
            svg,
        );
    }

    fn frame_section(&mut self, runs: &[RunData]) {
        self.heading(2, "Frame type");
        self.text(
            "The verdict of the last evaluation over all probe sequences, layers and heads, with \
             the rule's steps and the numbers it compared (`docs/METRICS.md` §8).",
        );
        let rows = runs
            .iter()
            .map(|run| match Final::of(run).frame() {
                Some((f, step, fresh)) => vec![
                    run.name.clone(),
                    format!("{step}{}", if fresh { FRESH } else { "" }),
                    f.frame_type.clone(),
                    f.frame_explanation.join("\n"),
                ],
                None => vec![
                    run.name.clone(),
                    MISSING.into(),
                    MISSING.into(),
                    "no frame verdict: none logged and no checkpoint analysed".into(),
                ],
            })
            .collect();
        self.blocks.push(Block::Table {
            header: ["run", "step", "frame", "evidence"]
                .iter()
                .map(|h| h.to_string())
                .collect(),
            rows,
        });
    }

    fn layer_section(&mut self, runs: &[RunData]) {
        self.heading(2, "Topology and attention graph by layer");
        self.text(
            "At the last evaluation, per layer, each the mean over the probe sequences. Bar \
             counts are the paper's “Betti numbers”: the number of bars of the Vietoris–Rips \
             diagram of the layer's head-mean map in each dimension. The Fiedler value is the \
             second-smallest Laplacian eigenvalue of the attention graph (0 when it is \
             disconnected), thresholded at τ = 0.01 or weighted by the attention itself.",
        );
        let layers = runs.iter().map(RunData::num_layers).max().unwrap_or(0);
        let names: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
        let finals: Vec<Final<'_>> = runs.iter().map(Final::of).collect();
        let tags = Tags::new();
        let panel = |caption: &str, y: &str, prefix: &str| BarPanel {
            caption: caption.into(),
            y_desc: y.into(),
            values: finals.iter().map(|f| f.layers(prefix, layers)).collect(),
        };
        let betti = [
            panel("dimension 0 (components)", "bars", &tags.betti0),
            panel("dimension 1 (loops)", "bars", &tags.betti1),
        ];
        let fiedler = [
            panel(
                &format!("thresholded, τ = {FIEDLER_THRESHOLD}"),
                "Fiedler value λ₂",
                &tags.fiedler,
            ),
            panel("weighted", "Fiedler value λ₂", &tags.fiedler_weighted),
        ];
        for (r, run) in runs.iter().enumerate() {
            for (what, panels) in [("topology", &betti), ("attention-graph", &fiedler)] {
                if panels
                    .iter()
                    .all(|p| p.values[r].iter().all(Option::is_none))
                {
                    self.notes.push(format!(
                        "run `{}` has no {what} metrics: its hooks did not log them and no \
                         checkpoint could be analysed",
                        run.name
                    ));
                }
            }
        }
        let fresh: Vec<String> = runs
            .iter()
            .filter(|run| {
                let f = Final::of(run);
                [&tags.betti0, &tags.fiedler_weighted]
                    .iter()
                    .any(|p| matches!(f.value(|r| r.layer_mean(p)), Some((_, true))))
            })
            .map(|run| format!("`{}`", run.name))
            .collect();
        if !fresh.is_empty() {
            self.text(format!(
                "For {} these were measured on the final checkpoint with the run's probe \
                 ({FRESH} in the table above): the run's hooks did not log them.",
                fresh.join(", ")
            ));
        }
        let title = "Persistent homology by layer: bar counts".to_string();
        let svg = plots::layer_bars(&title, &names, &betti);
        self.figure(
            "betti",
            title,
            format!(
                "Bars per homology dimension (`{}`, `{}`) per layer; one bar per run.",
                tags.betti0, tags.betti1
            ),
            svg,
        );
        let title = "Algebraic connectivity by layer: Fiedler value".to_string();
        let svg = plots::layer_bars(&title, &names, &fiedler);
        self.figure(
            "fiedler",
            title,
            format!(
                "`{}` and `{}` per layer; one bar per run. A star around a sink has a small \
                 Fiedler value.",
                tags.fiedler, tags.fiedler_weighted
            ),
            svg,
        );
    }

    fn run_section(&mut self, run: &RunData) {
        self.heading(2, format!("Run `{}`", run.name));
        let mut about = format!("Folder `{}`.", run.dir.display());
        if let Some(m) = &run.meta {
            about.push_str(&format!(
                " A {} with {} position encoding, {} layers × {} heads, d_model {}, trained \
                 {} steps (seed {}); final checkpoint at step {}.",
                serde_name(&m.model.arch),
                serde_name(&m.model.position.kind),
                m.model.n_layers,
                m.model.n_heads,
                m.model.d_model,
                m.recipe.train.steps,
                m.seed,
                m.step
            ));
        }
        self.text(about);
        let stem = slug(&run.name);
        if let Some(a) = &run.analysis {
            if let Some(w) = &a.spectrum {
                let title = format!("{}: spectrum of {} (step {})", run.name, w.name, a.step);
                let alpha = w
                    .alpha
                    .map_or(String::new(), |x| format!(" Power-law α = {}.", short(x)));
                self.figure(
                    &format!("{stem}-esd"),
                    title.clone(),
                    format!(
                        "Eigenvalues of WᵀW for `{}` ({} × {}) from the final checkpoint, as a \
                         histogram over log10 λ, with the Marchenko–Pastur law fitted to its bulk \
                         (σ on the spectrum rescaled to mean 1, `docs/METRICS.md` §7). {} \
                         eigenvalue(s) lie beyond the bulk edge plus the Tracy–Widom margin.{alpha}",
                        w.name, w.n, w.m, w.num_spikes
                    ),
                    plots::weight_spectrum(&title, w),
                );
            }
            match &a.diagrams {
                Some(d) => {
                    let title = format!(
                        "{}: persistence diagram, layer {} (step {})",
                        run.name, a.layer, a.step
                    );
                    let distance = match run
                        .meta
                        .as_ref()
                        .map(|m| m.recipe.hooks.analysis.topology.mode)
                    {
                        Some(TopologyMode::Paper) => {
                            "1 − Ā read as ripser.py reads it (`paper` mode)"
                        }
                        _ => "1 − (Ā + Āᵀ)/2 (`symmetric` mode)",
                    };
                    self.figure(
                        &format!("{stem}-diagram-layer{:02}", a.layer),
                        title.clone(),
                        format!(
                            "Vietoris–Rips persistence of layer {}'s head-mean attention on the \
                             first probe sequence, final checkpoint, with the run's topology \
                             settings: distance {distance}. Points far above the diagonal are \
                             long-lived features.",
                            a.layer
                        ),
                        plots::persistence_diagram(&title, d),
                    );
                }
                None => self.notes.push(format!(
                    "run `{}`: no persistence diagram for layer {}",
                    run.name, a.layer
                )),
            }
            if let Some(m) = &a.attention {
                let title = format!(
                    "{}: attention, layer {} (step {})",
                    run.name, a.layer, a.step
                );
                self.figure(
                    &format!("{stem}-attention-layer{:02}", a.layer),
                    title.clone(),
                    format!(
                        "Head-mean attention of layer {} on the first probe sequence ({} tokens), \
                         final checkpoint. Row = query, column = key; a sink is a bright column.",
                        a.layer, m.seq_len
                    ),
                    plots::attention_heatmap(&title, &m.values, m.seq_len),
                );
            }
        }
        if !run.notes.is_empty() {
            self.blocks.push(Block::List(run.notes.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("ntk-rope_0.1"), "ntk-rope_0.1");
        assert_eq!(slug("a b/c"), "a_b_c");
    }
}
