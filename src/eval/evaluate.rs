//! Captured probe → every metric: the attention analysis of each sequence, their
//! summary (mean ± std per tag and one frame verdict), weight spectra, and the
//! gradient-based Fisher trace when training supplies it.

use burn::prelude::Backend;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::analysis::names;
use crate::analysis::{
    self, AnalysisConfig, AttentionMaps, AttentionReport, HiddenStates, LayerReport, SpectraConfig,
    Summary, ValueNorms, WeightSpectrum,
};
use crate::error::{Error, Result};
use crate::eval::capture::{capture_layers, NamedMatrix, SequenceCapture};
use crate::model::{SoftmaxKind, Transformer};

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
        .map(|s| {
            analysis::analyze(
                &s.maps,
                s.hidden.as_ref(),
                s.values.as_ref(),
                &plan.analysis,
            )
        })
        .collect();
    let null_mass: Vec<Option<&[f64]>> = probe.iter().map(|s| s.null_mass.as_deref()).collect();
    finish(step, reports, &null_mass, weights, fisher, plan)
}

/// The evaluation of already analyzed sequences: summary, weight spectra, mean null
/// mass (`null_mass` per sequence, `None` for the standard softmax).
pub fn finish(
    step: Option<usize>,
    reports: Vec<AttentionReport>,
    null_mass: &[Option<&[f64]>],
    weights: &[NamedMatrix],
    fisher: Option<Vec<f64>>,
    plan: &EvalPlan,
) -> Result<Evaluation> {
    let summary = analysis::summarize(&reports);
    let spectra = if plan.weights {
        weight_spectra(weights, &plan.spectra)?
    } else {
        Vec::new()
    };
    let null_mass = null_mass.first().copied().flatten().map(|first| {
        (0..first.len())
            .map(|l| {
                null_mass
                    .iter()
                    .filter_map(|s| s.map(|m| m[l]))
                    .sum::<f64>()
                    / null_mass.len() as f64
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

/// The spectra of `weights` (those `cfg` covers), side by side.
pub fn weight_spectra(weights: &[NamedMatrix], cfg: &SpectraConfig) -> Result<Vec<WeightSpectrum>> {
    Ok(weights
        .par_iter()
        .map(|w| analysis::weight_spectrum(&w.name, &w.data, w.rows, w.cols, cfg, faer::Par::Seq))
        .collect::<std::result::Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect())
}

/// What a streamed analysis keeps of each probe sequence: its report and everything a
/// [`SequenceCapture`] holds except the maps.
#[derive(Debug)]
pub struct StreamedSequence {
    /// Token ids.
    pub tokens: Vec<u32>,
    /// Every attention metric of the sequence.
    pub report: AttentionReport,
    /// `[L + 1, T, d]` residual stream, if captured.
    pub hidden: Option<HiddenStates>,
    /// `[T, d]` hidden state after the final norm, if captured.
    pub final_hidden: Option<Vec<f32>>,
    /// Per layer, attention a quiet-softmax head gave to nothing (None: standard softmax).
    pub null_mass: Option<Vec<f64>>,
}

/// One layer's maps of one probe sequence, as a streamed analysis hands them out.
#[derive(Debug)]
pub struct LayerMaps<'a> {
    /// Index of the sequence in the probe set.
    pub sequence: usize,
    /// Layer index.
    pub layer: usize,
    /// `[1, H, T, T]` maps of that layer (rows renormalized for a quiet softmax).
    pub maps: &'a AttentionMaps,
}

/// Layers whose maps may wait for the analysis while the forward pass goes on: bounds
/// the memory of maps to about `IN_FLIGHT + 2` layers.
const IN_FLIGHT: usize = 0;

/// Runs `model` on `sequences` (`batch` at a time) and analyzes each layer's maps as soon
/// as the forward pass has produced them, on another thread while the forward pass goes
/// on with the next layers; a layer's maps are dropped once `on_layer` has seen them
/// (`analyze --dump` writes them out there) and the analysis is done with them, so the
/// memory of maps is a few layers' instead of the whole model's. A batch's last layer is
/// analyzed before the forward pass goes on to copy out the residual streams, so that
/// those copies and that layer's analysis do not meet at the peak.
///
/// The numbers are those of [`capture`](super::capture) followed by [`evaluate`], except
/// that causality is detected per layer (a model's layers agree).
#[allow(
    clippy::too_many_arguments,
    reason = "model, probes and the analysis settings, each needed"
)]
pub fn analyze_streaming<B: Backend>(
    model: &Transformer<B>,
    sequences: &[Vec<u32>],
    pad_id: u32,
    batch: usize,
    residuals: bool,
    cfg: &AnalysisConfig,
    device: &B::Device,
    on_layer: &mut dyn FnMut(LayerMaps<'_>) -> Result<()>,
) -> Result<Vec<StreamedSequence>> {
    let layers = model.config.n_layers;
    let heads = model.config.n_heads;
    let batch = batch.max(1);
    type Job = (usize, Vec<(usize, AttentionMaps, ValueNorms)>);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(IN_FLIGHT);
    // one message per analyzed layer, so that a batch's last layer is analyzed before
    // the forward pass copies out its residual streams (the two peaks do not add up)
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let mut done: Vec<Vec<Option<(LayerReport, bool)>>> =
                (0..sequences.len()).map(|_| vec![None; layers]).collect();
            for (l, maps) in rx {
                let reports: Vec<(usize, LayerReport, bool)> = maps
                    .par_iter()
                    .map(|(seq, m, v)| {
                        let detected = m.is_causal();
                        let causal = cfg.causal.unwrap_or(detected);
                        let r = analysis::analyze_layer(m, 0, l, causal, detected, Some(v), cfg);
                        (*seq, r, detected)
                    })
                    .collect();
                for (seq, r, detected) in reports {
                    done[seq][l] = Some((r, detected));
                }
                // the receiver waits only at a batch's last layer
                let _ = ack_tx.send(());
            }
            done
        });
        let mut states = Vec::with_capacity(sequences.len());
        let mut null_mass: Vec<Vec<f64>> = vec![Vec::new(); sequences.len()];
        let (mut sent, mut acked) = (0usize, 0usize);
        for (c, chunk) in sequences.chunks(batch).enumerate() {
            let first = c * batch;
            let st = capture_layers(model, chunk, pad_id, residuals, device, &mut |l, caps| {
                let mut job = Vec::with_capacity(caps.len());
                for (b, cap) in caps.into_iter().enumerate() {
                    on_layer(LayerMaps {
                        sequence: first + b,
                        layer: l,
                        maps: &cap.maps,
                    })?;
                    null_mass[first + b].extend(cap.null_mass);
                    job.push((first + b, cap.maps, cap.values));
                }
                tx.send((l, job))
                    .map_err(|_| Error::Internal("the analysis thread stopped".into()))?;
                sent += 1;
                if l + 1 == layers {
                    while acked < sent {
                        ack_rx
                            .recv()
                            .map_err(|_| Error::Internal("the analysis thread stopped".into()))?;
                        acked += 1;
                    }
                }
                Ok(())
            });
            match st {
                Ok(st) => states.extend(st),
                Err(e) => {
                    drop(tx);
                    let _ = worker.join();
                    return Err(e);
                }
            }
        }
        drop(tx);
        let done = worker
            .join()
            .map_err(|_| Error::Internal("the analysis thread panicked".into()))?;
        let quiet = model.config.softmax == SoftmaxKind::Quiet;
        sequences
            .iter()
            .zip(done)
            .zip(states)
            .zip(null_mass)
            .map(|(((tokens, layers), st), null)| {
                let (reports, detected): (Vec<LayerReport>, Vec<bool>) = layers
                    .into_iter()
                    .map(|x| x.ok_or_else(|| Error::Internal("a layer was not analyzed".into())))
                    .collect::<Result<Vec<_>>>()?
                    .into_iter()
                    .unzip();
                let report = analysis::assemble(
                    reports,
                    heads,
                    tokens.len(),
                    detected.iter().all(|&d| d),
                    st.hidden.as_ref(),
                    cfg,
                );
                Ok(StreamedSequence {
                    tokens: tokens.clone(),
                    report,
                    hidden: st.hidden,
                    final_hidden: st.final_hidden,
                    null_mass: quiet.then_some(null),
                })
            })
            .collect()
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

impl Evaluation {
    /// Every number as a flat `(tag, value)` list: the attention summary's tags, then
    /// `rmt/<metric>/<weight>`, `fisher/layer_NN`, `sink/null_mass/layer_NN`.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let mut out = self.summary.scalars();
        for w in &self.weights {
            for (metric, v) in weight_scalars(w) {
                if let Some(v) = v {
                    out.push((names::rmt(metric, &w.name), v));
                }
            }
        }
        if let Some(f) = &self.fisher {
            out.extend(
                f.iter()
                    .enumerate()
                    .map(|(l, v)| (names::layer(names::family::FISHER, l, f.len()), *v)),
            );
        }
        if let Some(m) = &self.null_mass {
            out.extend(
                m.iter()
                    .enumerate()
                    .map(|(l, v)| (names::layer(names::NULL_MASS, l, m.len()), *v)),
            );
        }
        out.retain(|(_, v)| v.is_finite());
        out
    }
}
