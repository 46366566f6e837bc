//! The `Hook` interface and the registry of hooks a recipe can name.
//!
//! A hook declares what it needs captured (residuals, weights, gradients), switches
//! on the part of the analysis it reads, and turns an [`Evaluation`] into log entries.
//! The analysis itself runs once per evaluation (the shared evaluation path), so
//! hooks never compute the same metric twice.

use crate::analysis::frame::FrameType;
use crate::analysis::names::{self, family};
use crate::analysis::AnalysisConfig;
use crate::eval::{EvalPlan, Evaluation, SequenceCapture};
use crate::log::{heatmap, scatter, RgbImage};

/// What a hook needs from the training thread besides the attention maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// The residual stream of the probe.
    pub residuals: bool,
    /// Every 2-D weight on the host.
    pub weights: bool,
    /// Gradient statistics accumulated since the last evaluation.
    pub gradients: bool,
}

impl Needs {
    /// Both sets of needs.
    pub fn union(self, o: Needs) -> Needs {
        Needs {
            residuals: self.residuals || o.residuals,
            weights: self.weights || o.weights,
            gradients: self.gradients || o.gradients,
        }
    }
}

/// What a hook reads at an evaluation.
#[derive(Debug)]
pub struct HookInput<'a> {
    /// Every metric of this evaluation.
    pub evaluation: &'a Evaluation,
    /// The captured probe sequences.
    pub probe: &'a [SequenceCapture],
}

/// What a hook hands to the logs.
#[derive(Debug, Default)]
pub struct HookOutput {
    /// `(tag, value)` scalars.
    pub scalars: Vec<(String, f64)>,
    /// `(tag, values)` histograms.
    pub histograms: Vec<(String, Vec<f64>)>,
    /// `(tag, image)` images.
    pub images: Vec<(String, RgbImage)>,
    /// `(hook name, end)`: the scalars `scalars[previous end..end]` came from that
    /// hook (filled by [`run_hooks`]; the custom-scalars layout groups by it).
    pub sections: Vec<(&'static str, usize)>,
}

/// Runs every hook on one evaluation, recording which hook logged which scalars.
pub fn run_hooks(hooks: &[Box<dyn Hook>], input: &HookInput<'_>) -> HookOutput {
    let mut out = HookOutput::default();
    for hook in hooks {
        hook.run(input, &mut out);
        out.sections.push((hook.name(), out.scalars.len()));
    }
    out
}

/// Code of a frame type in [`names::FRAME_TYPE`] (documented in `docs/HOOKS.md`):
/// the verdict as a number, so TensorBoard can plot it and the HParams dashboard
/// can show it as a metric column.
pub fn frame_code(frame: FrameType) -> f64 {
    match frame {
        FrameType::None => 0.0,
        FrameType::Centralized => 1.0,
        FrameType::Distributed => 2.0,
        FrameType::Bidirectional => 3.0,
    }
}

/// A training-time measurement.
pub trait Hook: Send + Sync {
    /// Name used in recipes (`[hooks] run = [...]`).
    fn name(&self) -> &'static str;
    /// One line for `sinkscope hooks` and `docs/HOOKS.md`.
    fn about(&self) -> &'static str;
    /// The tag families (or names within one) it logs under, from [`names`]. Every
    /// hook of the [`registry`] declares some, and `docs/HOOKS.md` names each in the
    /// hook's row (both checked by `tests/it/docs.rs`).
    fn tags(&self) -> &'static [&'static str] {
        &[]
    }
    /// What must be captured for it.
    fn needs(&self) -> Needs {
        Needs::default()
    }
    /// Switches on the analysis it reads.
    fn plan(&self, _plan: &mut EvalPlan) {}
    /// Its log entries for one evaluation.
    fn run(&self, input: &HookInput<'_>, out: &mut HookOutput);
}

/// A hook that logs the scalars of some tag families.
struct Metrics {
    name: &'static str,
    about: &'static str,
    families: &'static [&'static str],
    needs: Needs,
    plan: fn(&mut EvalPlan),
    /// Scalars the hook derives itself, beyond the evaluation's.
    extra: fn(&HookInput<'_>, &mut HookOutput),
}

impl Hook for Metrics {
    fn name(&self) -> &'static str {
        self.name
    }
    fn about(&self) -> &'static str {
        self.about
    }
    fn tags(&self) -> &'static [&'static str] {
        self.families
    }
    fn needs(&self) -> Needs {
        self.needs
    }
    fn plan(&self, plan: &mut EvalPlan) {
        (self.plan)(plan)
    }
    fn run(&self, input: &HookInput<'_>, out: &mut HookOutput) {
        out.scalars.extend(
            input
                .evaluation
                .scalars()
                .into_iter()
                .filter(|(tag, _)| self.families.iter().any(|f| names::in_family(tag, f))),
        );
        (self.extra)(input, out);
    }
}

fn no_extra(_: &HookInput<'_>, _: &mut HookOutput) {}

fn frame_type(input: &HookInput<'_>, out: &mut HookOutput) {
    let frame = input.evaluation.summary.frame.frame_type;
    out.scalars
        .push((names::FRAME_TYPE.into(), frame_code(frame)));
}

/// Attention heatmaps (head mean, first probe sequence) per layer.
struct Heatmaps;

impl Hook for Heatmaps {
    fn name(&self) -> &'static str {
        "heatmaps"
    }
    fn about(&self) -> &'static str {
        "images of the head-mean attention map of the first probe sequence, per layer"
    }
    fn tags(&self) -> &'static [&'static str] {
        &[family::ATTENTION]
    }
    fn run(&self, input: &HookInput<'_>, out: &mut HookOutput) {
        let Some(seq) = input.probe.first() else {
            return;
        };
        let (layers, t) = (seq.maps.layers(), seq.maps.seq_len());
        let scale = (256 / t.max(1)).clamp(1, 8);
        for l in 0..layers {
            let mean: Vec<f32> = seq.maps.head_mean(l).iter().map(|&x| x as f32).collect();
            if let Ok(img) = heatmap(&mean, t, t, scale) {
                out.images
                    .push((names::layer(family::ATTENTION, l, layers), img));
            }
        }
    }
}

/// Persistence diagrams (first probe sequence) per layer.
struct Diagrams;

impl Hook for Diagrams {
    fn name(&self) -> &'static str {
        "diagrams"
    }
    fn about(&self) -> &'static str {
        "images of the persistence diagram of each layer's attention (first probe sequence)"
    }
    fn tags(&self) -> &'static [&'static str] {
        &[names::DIAGRAM]
    }
    fn plan(&self, plan: &mut EvalPlan) {
        plan.analysis.topology.enabled = true;
        plan.analysis.topology.keep_diagrams = true;
    }
    fn run(&self, input: &HookInput<'_>, out: &mut HookOutput) {
        let Some(report) = input.evaluation.reports.first() else {
            return;
        };
        for layer in &report.layers {
            let Some(d) = layer.topology.as_ref().and_then(|t| t.diagrams.as_ref()) else {
                continue;
            };
            let mut points = Vec::new();
            let mut groups = Vec::new();
            for (k, bars) in d.dims.iter().enumerate() {
                for b in bars {
                    points.push((b.birth, b.death));
                    groups.push(k);
                }
            }
            if let Ok(img) = scatter(&points, &groups, 192) {
                out.images.push((
                    names::layer(names::DIAGRAM, layer.layer, report.num_layers),
                    img,
                ));
            }
        }
    }
}

/// Histograms of the weight eigenvalue spectra.
struct WeightSpectra;

impl Hook for WeightSpectra {
    fn name(&self) -> &'static str {
        "weights"
    }
    fn about(&self) -> &'static str {
        "WeightWatcher-style spectra (alpha, norms, MP fit, rand_distance) of every 2-D weight"
    }
    fn tags(&self) -> &'static [&'static str] {
        &[family::RMT, family::ESD]
    }
    fn needs(&self) -> Needs {
        Needs {
            weights: true,
            ..Needs::default()
        }
    }
    fn plan(&self, plan: &mut EvalPlan) {
        plan.weights = true;
    }
    fn run(&self, input: &HookInput<'_>, out: &mut HookOutput) {
        out.scalars.extend(
            input
                .evaluation
                .scalars()
                .into_iter()
                .filter(|(tag, _)| names::in_family(tag, family::RMT)),
        );
        for w in &input.evaluation.weights {
            if !w.evals.is_empty() {
                out.histograms.push((
                    names::esd(&w.name),
                    w.evals.iter().map(|x| x.max(1e-30).log10()).collect(),
                ));
            }
        }
    }
}

const fn needs(residuals: bool, gradients: bool) -> Needs {
    Needs {
        residuals,
        weights: false,
        gradients,
    }
}

/// The hooks `sinkscope analyze` runs on a model: every hook of the [`registry`] but
/// Fisher's (it reads training gradients), the weight spectra only with `weights`.
pub fn analysis_hooks(weights: bool) -> Vec<Box<dyn Hook>> {
    registry()
        .into_iter()
        .filter(|h| (weights || h.name() != "weights") && h.name() != "fisher")
        .collect()
}

/// The evaluation plan that serves `hooks`: `analysis`'s settings with every switch the
/// hooks ask for.
pub fn plan_for(hooks: &[Box<dyn Hook>], analysis: AnalysisConfig) -> EvalPlan {
    let mut plan = EvalPlan {
        analysis,
        ..Default::default()
    };
    for h in hooks {
        h.plan(&mut plan);
    }
    plan
}

/// Every hook a recipe can name, in the order they are documented.
pub fn registry() -> Vec<Box<dyn Hook>> {
    vec![
        Box::new(Metrics {
            name: "sinks",
            about: "sink rate (Gu et al., ε), first-token mass, sink concentration, specialized heads, value-norm ratio of the sink keys, frame evidence",
            families: &[family::SINK, family::FRAME],
            needs: needs(false, false),
            plan: |_| {},
            extra: frame_type,
        }),
        Box::new(Metrics {
            name: "graph",
            about: "Fiedler value, spectral gap, degree centralization of the thresholded attention graph",
            families: &[family::GRAPH],
            needs: needs(false, false),
            plan: |p| p.analysis.graph = true,
            extra: no_extra,
        }),
        Box::new(Metrics {
            name: "topology",
            about: "Vietoris–Rips persistent homology: bar counts (the paper's Betti numbers), Betti at radii, persistence",
            families: &[family::TOPO],
            needs: needs(false, false),
            plan: |p| p.analysis.topology.enabled = true,
            extra: no_extra,
        }),
        Box::new(Metrics {
            name: "attention-spectra",
            about: "eigen- and singular-value spectra of the attention maps: gaps, participation ratio, stable rank, MP KL",
            families: &[family::SPECTRA],
            needs: needs(false, false),
            plan: |p| p.analysis.spectra = true,
            extra: no_extra,
        }),
        Box::new(Metrics {
            name: "information",
            about: "KL between heads and their mean, with sink columns removed, and the sink attention percentage",
            families: &[family::INFO],
            needs: needs(false, false),
            plan: |_| {},
            extra: no_extra,
        }),
        Box::new(Metrics {
            name: "massive",
            about: "massive activations: top-3 |h| and the median per residual state",
            families: &[family::MASSIVE],
            needs: needs(true, false),
            plan: |_| {},
            extra: no_extra,
        }),
        Box::new(Metrics {
            name: "fisher",
            about: "empirical Fisher trace per layer from the training gradients, (1/N) Σ ‖∂L/∂θ‖²",
            families: &[family::FISHER],
            needs: needs(false, true),
            plan: |_| {},
            extra: no_extra,
        }),
        Box::new(WeightSpectra),
        Box::new(Heatmaps),
        Box::new(Diagrams),
    ]
}

/// The hooks named in `names`, or an error naming the unknown one and listing the rest.
pub fn select(names: &[String]) -> Result<Vec<Box<dyn Hook>>, String> {
    let mut all = registry();
    let known: Vec<&'static str> = all.iter().map(|h| h.name()).collect();
    for n in names {
        if !known.contains(&n.as_str()) {
            return Err(format!(
                "unknown hook `{n}`; known hooks: {}",
                known.join(", ")
            ));
        }
    }
    all.retain(|h| names.iter().any(|n| n == h.name()));
    Ok(all)
}
