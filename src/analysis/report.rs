//! What `analyze` returns for one sequence, what `summarize` returns for several, and the
//! flat `(tag, value)` list both hand to TensorBoard.
//!
//! The structs serialize directly to the JSON of `sinkscope metrics --json`
//! (`{"layers": [{"layer", "sink_rate", "first_token_mass", "sink_concentration",
//! "value_norm_ratio", "fiedler": {"0.001": …, "weighted": …}, "centralization": {…}, "kl",
//! "kl_sink_removed",
//! "betti": {"0": n, "1": n}, …}], "frame_type": …}`); `docs/METRICS.md` lists every key.

use std::collections::HashMap;

use serde::Serialize;

use super::attn_spectra::MatrixSpectrum;
use super::config::FrameConfig;
use super::frame::{classify, FrameEvidence, FrameVerdict};
use super::graph::LayerGraph;
use super::info::LayerInfo;
use super::keyed::Keyed;
use super::massive::MassiveLayer;
use super::sink::{HeadSink, LayerSink};
use super::stats::mean_std;
use super::topology::LayerTopology;

/// Per-head detail of a layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadReport {
    /// Sink statistics (head index, α_0, top key, specialization).
    #[serde(flatten)]
    pub sink: HeadSink,
    /// Keys the frame rule counts as sinks of this head.
    pub sink_keys: Vec<usize>,
    /// Spectra of the head's map (when `spectra_per_head`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spectra: Option<MatrixSpectrum>,
}

/// Every metric of one layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerReport {
    /// Layer index.
    pub layer: usize,
    /// Sink rate, first-token mass, sink set and concentration.
    #[serde(flatten)]
    pub sink: LayerSink,
    /// KL to the head mean, with and without sinks.
    #[serde(flatten)]
    pub info: LayerInfo,
    /// Attention-graph metrics (absent when disabled).
    #[serde(flatten)]
    pub graph: Option<LayerGraph>,
    /// Bar counts by dimension (the paper's "Betti numbers"); `null` when topology is off.
    pub betti: Option<Keyed<usize>>,
    /// Full persistence summary.
    pub topology: Option<LayerTopology>,
    /// Spectra of the head mean.
    pub spectra: Option<MatrixSpectrum>,
    /// Per-head detail.
    pub heads: Vec<HeadReport>,
}

/// Every metric of one sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttentionReport {
    /// Whether the maps were analyzed as causal.
    pub causal: bool,
    /// Whether they look causal (all zero above the diagonal).
    pub causal_detected: bool,
    /// Number of layers L.
    pub num_layers: usize,
    /// Heads per layer H.
    pub num_heads: usize,
    /// Sequence length T.
    pub seq_len: usize,
    /// Gu et al.'s sink rate over every layer and head: percentage of heads with α_0 > ε.
    pub sink_rate: f64,
    /// Mean of α_0 over every layer and head.
    pub first_token_mass: f64,
    /// Per-layer metrics.
    pub layers: Vec<LayerReport>,
    /// Massive activations per residual-stream state (when hidden states were given).
    pub massive: Option<Vec<MassiveLayer>>,
    /// Frame type, evidence and explanation (`frame_type`, `frame_evidence`,
    /// `frame_explanation`).
    #[serde(flatten)]
    pub frame: FrameVerdict,
    /// Remarks on the input (forced causality, mismatched hidden states, …).
    pub notes: Vec<String>,
    #[serde(skip)]
    pub(super) per_head_scalars: bool,
    #[serde(skip)]
    pub(super) frame_config: FrameConfig,
    #[serde(skip)]
    pub(super) sink_epsilon: f64,
}

/// Zero-padded index: at least two digits, more for ≥ 100 layers, so tags sort.
/// Index `i` of `count` zero-padded to at least two digits, so tags sort (`layer_03`).
pub fn padded_index(i: usize, count: usize) -> String {
    let width = count.saturating_sub(1).to_string().len().max(2);
    format!("{i:0width$}")
}

/// Collects finite values only: TensorBoard cannot plot NaN or ±∞.
struct Scalars(Vec<(String, f64)>);

impl Scalars {
    fn push(&mut self, tag: String, value: Option<f64>) {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            self.0.push((tag, v));
        }
    }
}

fn spectrum_scalars(out: &mut Scalars, s: &MatrixSpectrum, suffix: &str) {
    for (name, v) in [
        ("spectral_gap", s.spectral_gap),
        ("participation_ratio", s.participation_ratio),
        ("singular_gap", s.singular_gap),
        (
            "singular_participation_ratio",
            s.singular_participation_ratio,
        ),
        ("stable_rank", s.stable_rank),
        ("mp_kl", s.mp_kl),
    ] {
        out.push(format!("spectra/{name}/{suffix}"), v);
    }
}

impl AttentionReport {
    /// Flat `(tag, value)` list for TensorBoard, tags like `sink/rate/layer_03`,
    /// `sink/first_token_mass/layer_03/head_07`, `graph/fiedler_0.01/layer_03`,
    /// `topo/betti1/layer_03` (all listed in `docs/METRICS.md`). Non-finite values are left
    /// out.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let mut out = Scalars(Vec::new());
        out.push("sink/rate".into(), Some(self.sink_rate));
        out.push("sink/first_token_mass".into(), Some(self.first_token_mass));
        let nl = self.num_layers;
        for l in &self.layers {
            let layer = format!("layer_{}", padded_index(l.layer, nl));
            let s = &l.sink;
            out.push(format!("sink/rate/{layer}"), Some(s.sink_rate));
            out.push(
                format!("sink/first_token_mass/{layer}"),
                Some(s.first_token_mass),
            );
            out.push(
                format!("sink/concentration/{layer}"),
                Some(s.sink_concentration),
            );
            out.push(
                format!("sink/specialized_heads/{layer}"),
                Some(s.specialized_heads.len() as f64),
            );
            out.push(format!("sink/value_norm_ratio/{layer}"), s.value_norm_ratio);
            if self.per_head_scalars {
                for h in &s.heads {
                    out.push(
                        format!(
                            "sink/first_token_mass/{layer}/head_{}",
                            padded_index(h.head, self.num_heads)
                        ),
                        Some(h.first_token_score),
                    );
                }
            }
            out.push(format!("info/kl/{layer}"), Some(l.info.kl));
            out.push(
                format!("info/kl_sink_removed/{layer}"),
                l.info.kl_sink_removed,
            );
            out.push(
                format!("info/sink_attention_pct/{layer}"),
                Some(l.info.sink_attention_pct),
            );
            if let Some(g) = &l.graph {
                for (name, map) in [
                    ("fiedler", &g.fiedler),
                    ("fiedler_gap", &g.fiedler_gap),
                    ("centralization", &g.centralization),
                    ("star_likeness", &g.star_likeness),
                    ("in_degree_gini", &g.in_degree_gini),
                ] {
                    for (key, v) in map.iter() {
                        out.push(format!("graph/{name}_{key}/{layer}"), *v);
                    }
                }
                for (key, v) in g.edge_density.iter() {
                    out.push(format!("graph/edge_density_{key}/{layer}"), Some(*v));
                }
            }
            if let Some(t) = &l.topology {
                for (k, n) in t.betti.iter() {
                    out.push(format!("topo/betti{k}/{layer}"), Some(*n as f64));
                }
                for b in &t.betti_at {
                    for (k, n) in b.betti.iter() {
                        out.push(
                            format!("topo/betti{k}_r{}/{layer}", b.radius),
                            Some(*n as f64),
                        );
                    }
                }
                for (k, v) in t.total_persistence.iter() {
                    out.push(format!("topo/total_persistence{k}/{layer}"), Some(*v));
                }
                for (k, v) in t.max_persistence.iter() {
                    out.push(format!("topo/max_persistence{k}/{layer}"), Some(*v));
                }
            }
            if let Some(sp) = &l.spectra {
                spectrum_scalars(&mut out, sp, &layer);
            }
        }
        if let Some(m) = &self.massive {
            for s in m {
                let state = format!("state_{}", padded_index(s.index, m.len()));
                out.push(format!("massive/ratio/{state}"), s.ratio);
                out.push(
                    format!("massive/top1/{state}"),
                    s.top.first().map(|a| a.value),
                );
                out.push(format!("massive/median/{state}"), Some(s.median));
            }
        }
        let e = &self.frame.frame_evidence;
        out.push("frame/sink_head_share".into(), Some(e.sink_head_share()));
        out.push(
            "frame/top_position_share".into(),
            Some(e.top_position().map_or(0.0, |(_, s)| s)),
        );
        out.0
    }
}

/// Mean and spread of one scalar over the sequences that have it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalarSummary {
    /// TensorBoard tag.
    pub tag: String,
    /// Mean over sequences.
    pub mean: f64,
    /// Population standard deviation over sequences.
    pub std: f64,
    /// Number of sequences with a finite value.
    pub count: usize,
}

/// Several probe sequences folded together: every scalar's mean and std by tag, and one
/// frame verdict over all of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Number of reports summarized.
    pub sequences: usize,
    /// One entry per tag, in the order tags first appear.
    pub scalars: Vec<ScalarSummary>,
    /// The verdict over the merged evidence of every sequence.
    #[serde(flatten)]
    pub frame: FrameVerdict,
}

impl Summary {
    /// `(tag, mean)` and `(tag + "/std", std)` pairs for TensorBoard.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        self.scalars
            .iter()
            .flat_map(|s| [(s.tag.clone(), s.mean), (format!("{}/std", s.tag), s.std)])
            .collect()
    }
}

/// Mean and std of every scalar by tag over several reports, plus one frame verdict from
/// their merged evidence (the frame settings of the first report apply).
pub fn summarize(reports: &[AttentionReport]) -> Summary {
    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, Vec<f64>> = HashMap::new();
    let mut evidence = FrameEvidence::default();
    for r in reports {
        for (tag, v) in r.scalars() {
            let entry = values.entry(tag.clone()).or_insert_with(|| {
                order.push(tag);
                Vec::new()
            });
            entry.push(v);
        }
        evidence.merge(&r.frame.frame_evidence);
    }
    let scalars = order
        .into_iter()
        .map(|tag| {
            let v = &values[&tag];
            let (mean, std) = mean_std(v).expect("every tag has a value");
            ScalarSummary {
                tag,
                mean,
                std,
                count: v.len(),
            }
        })
        .collect();
    let (cfg, eps) = reports.first().map_or((FrameConfig::default(), 0.3), |r| {
        (r.frame_config.clone(), r.sink_epsilon)
    });
    Summary {
        sequences: reports.len(),
        scalars,
        frame: classify(evidence, &cfg, eps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_sorts() {
        assert_eq!(padded_index(3, 4), "03");
        assert_eq!(padded_index(7, 100), "07");
        assert_eq!(padded_index(7, 101), "007");
    }
}
