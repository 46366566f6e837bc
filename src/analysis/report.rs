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
use super::names::{self as tag, layer as at_layer};
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

/// Collects finite values only: TensorBoard cannot plot NaN or ±∞.
struct Scalars(Vec<(String, f64)>);

impl Scalars {
    fn push(&mut self, tag: String, value: Option<f64>) {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            self.0.push((tag, v));
        }
    }
}

fn spectrum_scalars(out: &mut Scalars, s: &MatrixSpectrum, layer: usize, layers: usize) {
    for (name, v) in [
        (tag::SPECTRAL_GAP, s.spectral_gap),
        (tag::PARTICIPATION_RATIO, s.participation_ratio),
        (tag::SINGULAR_GAP, s.singular_gap),
        (
            tag::SINGULAR_PARTICIPATION_RATIO,
            s.singular_participation_ratio,
        ),
        (tag::STABLE_RANK, s.stable_rank),
        (tag::MP_KL, s.mp_kl),
    ] {
        out.push(at_layer(name, layer, layers), v);
    }
}

impl AttentionReport {
    /// Flat `(tag, value)` list for TensorBoard, tags like `sink/rate/layer_03`,
    /// `sink/first_token_mass/layer_03/head_07`, `graph/fiedler_0.01/layer_03`,
    /// `topo/betti1/layer_03` (named in `names.rs`, all listed in `docs/METRICS.md`).
    /// Non-finite values are left out.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let mut out = Scalars(Vec::new());
        out.push(tag::SINK_RATE.into(), Some(self.sink_rate));
        out.push(tag::FIRST_TOKEN_MASS.into(), Some(self.first_token_mass));
        let nl = self.num_layers;
        for l in &self.layers {
            let at = |metric: &str| at_layer(metric, l.layer, nl);
            let s = &l.sink;
            out.push(at(tag::SINK_RATE), Some(s.sink_rate));
            out.push(at(tag::FIRST_TOKEN_MASS), Some(s.first_token_mass));
            out.push(at(tag::SINK_CONCENTRATION), Some(s.sink_concentration));
            out.push(
                at(tag::SPECIALIZED_HEADS),
                Some(s.specialized_heads.len() as f64),
            );
            out.push(at(tag::VALUE_NORM_RATIO), s.value_norm_ratio);
            if self.per_head_scalars {
                for h in &s.heads {
                    out.push(
                        tag::head(&at(tag::FIRST_TOKEN_MASS), h.head, self.num_heads),
                        Some(h.first_token_score),
                    );
                }
            }
            out.push(at(tag::KL), Some(l.info.kl));
            out.push(at(tag::KL_SINK_REMOVED), l.info.kl_sink_removed);
            out.push(at(tag::SINK_ATTENTION_PCT), Some(l.info.sink_attention_pct));
            if let Some(g) = &l.graph {
                for (name, map) in [
                    (tag::FIEDLER, &g.fiedler),
                    (tag::FIEDLER_GAP, &g.fiedler_gap),
                    (tag::CENTRALIZATION, &g.centralization),
                    (tag::STAR_LIKENESS, &g.star_likeness),
                    (tag::IN_DEGREE_GINI, &g.in_degree_gini),
                ] {
                    for (key, v) in map.iter() {
                        out.push(at(&tag::thresholded(name, key)), *v);
                    }
                }
                for (key, v) in g.edge_density.iter() {
                    out.push(at(&tag::thresholded(tag::EDGE_DENSITY, key)), Some(*v));
                }
            }
            if let Some(t) = &l.topology {
                for (k, n) in t.betti.iter() {
                    out.push(at(&tag::dimension(tag::BETTI, k)), Some(*n as f64));
                }
                for b in &t.betti_at {
                    for (k, n) in b.betti.iter() {
                        out.push(at(&tag::betti_at(k, b.radius)), Some(*n as f64));
                    }
                }
                for (k, v) in t.total_persistence.iter() {
                    out.push(at(&tag::dimension(tag::TOTAL_PERSISTENCE, k)), Some(*v));
                }
                for (k, v) in t.max_persistence.iter() {
                    out.push(at(&tag::dimension(tag::MAX_PERSISTENCE, k)), Some(*v));
                }
            }
            if let Some(sp) = &l.spectra {
                spectrum_scalars(&mut out, sp, l.layer, nl);
            }
        }
        if let Some(m) = &self.massive {
            for s in m {
                let at = |metric: &str| tag::state(metric, s.index, m.len());
                out.push(at(tag::MASSIVE_RATIO), s.ratio);
                out.push(at(tag::MASSIVE_TOP1), s.top.first().map(|a| a.value));
                out.push(at(tag::MASSIVE_MEDIAN), Some(s.median));
            }
        }
        let e = &self.frame.frame_evidence;
        out.push(tag::FRAME_SINK_HEAD_SHARE.into(), Some(e.sink_head_share()));
        out.push(
            tag::FRAME_TOP_POSITION_SHARE.into(),
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
            .flat_map(|s| [(s.tag.clone(), s.mean), (tag::std(&s.tag), s.std)])
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
