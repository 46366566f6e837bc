//! Captured probe → every metric: the attention analysis of each sequence, their
//! summary (mean ± std per tag and one frame verdict), weight spectra, and the
//! gradient-based Fisher trace when training supplies it.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::analysis::report::padded_index;
use crate::analysis::{
    self, AnalysisConfig, AttentionReport, SpectraConfig, Summary, WeightSpectrum,
};
use crate::error::Result;
use crate::eval::capture::{NamedMatrix, SequenceCapture};

/// What to compute at an evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalPlan {
    /// Attention analysis settings (which parts run, thresholds, topology mode).
    pub analysis: AnalysisConfig,
    /// Compute WeightWatcher-style spectra of every 2-D weight.
    pub weights: bool,
    /// Weight-spectra settings.
    pub spectra: SpectraConfig,
}

/// The result of one evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    /// Training step (None for a pretrained model).
    pub step: Option<usize>,
    /// One report per probe sequence.
    pub reports: Vec<AttentionReport>,
    /// Mean and spread over the probe sequences, and the frame verdict.
    pub summary: Summary,
    /// Spectra of the 2-D weights (empty unless planned).
    pub weights: Vec<WeightSpectrum>,
    /// Empirical Fisher trace per layer (1/N) Σ‖∂L/∂θ_layer‖² (training only).
    pub fisher: Option<Vec<f64>>,
    /// Per layer, mean attention given to nothing by quiet-softmax heads.
    pub null_mass: Option<Vec<f64>>,
}

/// Analyzes a captured probe set and the model's weights.
pub fn evaluate(
    step: Option<usize>,
    probe: &[SequenceCapture],
    weights: &[NamedMatrix],
    fisher: Option<Vec<f64>>,
    plan: &EvalPlan,
) -> Result<Evaluation> {
    let reports: Vec<AttentionReport> = probe
        .iter()
        .map(|s| analysis::analyze(&s.maps, s.hidden.as_ref(), &plan.analysis))
        .collect();
    let summary = analysis::summarize(&reports);
    let spectra = if plan.weights {
        weights
            .par_iter()
            .map(|w| {
                analysis::weight_spectrum(
                    &w.name,
                    &w.data,
                    w.rows,
                    w.cols,
                    &plan.spectra,
                    faer::Par::Seq,
                )
            })
            .collect::<std::result::Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect()
    } else {
        Vec::new()
    };
    let null_mass = probe
        .first()
        .and_then(|s| s.null_mass.as_ref())
        .map(|first| {
            (0..first.len())
                .map(|l| {
                    probe
                        .iter()
                        .filter_map(|s| s.null_mass.as_ref().map(|m| m[l]))
                        .sum::<f64>()
                        / probe.len() as f64
                })
                .collect()
        });
    Ok(Evaluation {
        step,
        reports,
        summary,
        weights: spectra,
        fisher,
        null_mass,
    })
}

/// The WeightWatcher columns logged per weight, by their WeightWatcher names.
fn weight_scalars(w: &WeightSpectrum) -> [(&'static str, Option<f64>); 9] {
    [
        ("alpha", w.alpha),
        ("alpha_weighted", w.alpha_weighted),
        ("log_norm", Some(w.log_norm)),
        ("log_spectral_norm", Some(w.log_spectral_norm)),
        ("stable_rank", Some(w.stable_rank)),
        ("num_spikes", Some(w.num_spikes as f64)),
        ("mp_softrank", Some(w.mp_softrank)),
        ("rand_distance", w.rand_distance),
        ("log_alpha_norm", w.log_alpha_norm),
    ]
}

fn layer_tag(prefix: &str, l: usize, n: usize) -> String {
    format!("{prefix}/layer_{}", padded_index(l, n))
}

impl Evaluation {
    /// Every number as a flat `(tag, value)` list: the attention summary's tags, then
    /// `rmt/<metric>/<weight>`, `fisher/layer_NN`, `sink/null_mass/layer_NN`.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let mut out = self.summary.scalars();
        for w in &self.weights {
            for (metric, v) in weight_scalars(w) {
                if let Some(v) = v {
                    out.push((format!("rmt/{metric}/{}", w.name), v));
                }
            }
        }
        if let Some(f) = &self.fisher {
            out.extend(
                f.iter()
                    .enumerate()
                    .map(|(l, v)| (layer_tag("fisher", l, f.len()), *v)),
            );
        }
        if let Some(m) = &self.null_mass {
            out.extend(
                m.iter()
                    .enumerate()
                    .map(|(l, v)| (layer_tag("sink/null_mass", l, m.len()), *v)),
            );
        }
        out.retain(|(_, v)| v.is_finite());
        out
    }
}
