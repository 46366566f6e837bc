//! Every tag sinkscope logs to TensorBoard and `metrics.jsonl`, named once: the
//! analysis and the hooks write them, the report and `analyze` read them, and a
//! test checks that `docs/HOOKS.md` and `docs/METRICS.md` name them all. A tag typed
//! twice could be renamed in one place only, and a report column would go silently
//! empty.
//!
//! A tag is `family/metric`, then a suffix per layer (`/layer_03`), residual state
//! (`/state_03`) or head (`/head_07`), and `/std` for the spread over the probe
//! sequences. Some metrics carry a parameter in their name: a threshold
//! (`graph/fiedler_0.01`), a homology dimension (`topo/betti1`) or a radius
//! (`topo/betti1_r0.5`). Indices are zero-padded ([`padded_index`]) so tags sort.
//!
//! The analysis layer imports nothing from the rest of the crate, so the names live
//! here rather than beside the hooks.

/// Index `i` of `count` zero-padded to at least two digits, more for ≥ 100, so
/// tags sort (`layer_03`, `layer_007`).
pub fn padded_index(i: usize, count: usize) -> String {
    let width = count.saturating_sub(1).to_string().len().max(2);
    format!("{i:0width$}")
}

/// Families: the part of a tag before its first `/`. A hook logs whole families.
pub mod family {
    /// Sink statistics.
    pub const SINK: &str = "sink";
    /// Frame-type evidence and verdict.
    pub const FRAME: &str = "frame";
    /// Attention-graph metrics.
    pub const GRAPH: &str = "graph";
    /// Persistent homology.
    pub const TOPO: &str = "topo";
    /// Spectra of the attention maps.
    pub const SPECTRA: &str = "spectra";
    /// KL divergences between heads.
    pub const INFO: &str = "info";
    /// Massive activations.
    pub const MASSIVE: &str = "massive";
    /// Empirical Fisher trace per layer (`fisher/layer_NN`).
    pub const FISHER: &str = "fisher";
    /// WeightWatcher columns per weight (`rmt/<column>/<weight>`).
    pub const RMT: &str = "rmt";
    /// Histograms of weight eigenvalues (`esd/<weight>`).
    pub const ESD: &str = "esd";
    /// Attention heatmap images (`attention/layer_NN`).
    pub const ATTENTION: &str = "attention";
    /// Training scalars logged by the loop, not by hooks.
    pub const TRAIN: &str = "train";

    /// Every family, in the order of `docs/HOOKS.md`.
    pub const ALL: [&str; 12] = [
        SINK, FRAME, GRAPH, TOPO, SPECTRA, INFO, MASSIVE, FISHER, RMT, ESD, ATTENTION, TRAIN,
    ];
}

/// Gu et al.'s sink rate (%), per layer and over all layers.
pub const SINK_RATE: &str = "sink/rate";
/// Mean first-token score α₀, per layer (and head) and over all layers.
pub const FIRST_TOKEN_MASS: &str = "sink/first_token_mass";
/// Share of column mass on the sink keys, per layer.
pub const SINK_CONCENTRATION: &str = "sink/concentration";
/// Number of specialized heads, per layer.
pub const SPECIALIZED_HEADS: &str = "sink/specialized_heads";
/// Attention mass on an appended null key, per layer (when the model has one).
pub const NULL_MASS: &str = "sink/null_mass";
/// ‖v‖ of each head's top key over the mean ‖v‖ of the others, mean over heads, per layer.
pub const VALUE_NORM_RATIO: &str = "sink/value_norm_ratio";

/// Share of heads with a sink, over the probe.
pub const FRAME_SINK_HEAD_SHARE: &str = "frame/sink_head_share";
/// Share of sink heads on the most common sink position.
pub const FRAME_TOP_POSITION_SHARE: &str = "frame/top_position_share";
/// The frame verdict as a number (0 none, 1 centralized, 2 distributed, 3 bidirectional).
pub const FRAME_TYPE: &str = "frame/type";

/// Mean KL of the heads from their mean, per layer.
pub const KL: &str = "info/kl";
/// The same KL with the sink columns removed, per layer.
pub const KL_SINK_REMOVED: &str = "info/kl_sink_removed";
/// Attention on the sink keys (%), per layer.
pub const SINK_ATTENTION_PCT: &str = "info/sink_attention_pct";

/// Fiedler value per threshold ([`thresholded`]), per layer.
pub const FIEDLER: &str = "graph/fiedler";
/// λ₃ − λ₂ per threshold, per layer.
pub const FIEDLER_GAP: &str = "graph/fiedler_gap";
/// Degree centralization per threshold, per layer.
pub const CENTRALIZATION: &str = "graph/centralization";
/// Star-likeness per threshold, per layer.
pub const STAR_LIKENESS: &str = "graph/star_likeness";
/// In-degree Gini coefficient per threshold, per layer.
pub const IN_DEGREE_GINI: &str = "graph/in_degree_gini";
/// Edge density per threshold, per layer.
pub const EDGE_DENSITY: &str = "graph/edge_density";

/// The key of a graph metric computed without a threshold, on W = (Ā + Āᵀ)/2:
/// `graph/fiedler_weighted`.
pub const WEIGHTED: &str = "weighted";

/// Bars per homology dimension ([`dimension`]; the paper's "Betti numbers"), per layer.
pub const BETTI: &str = "topo/betti";
/// Total finite persistence per dimension, per layer.
pub const TOTAL_PERSISTENCE: &str = "topo/total_persistence";
/// Largest finite persistence per dimension, per layer.
pub const MAX_PERSISTENCE: &str = "topo/max_persistence";
/// Persistence diagram images, per layer.
pub const DIAGRAM: &str = "topo/diagram";

/// |λ1| / |λ2| of the head-mean map, per layer.
pub const SPECTRAL_GAP: &str = "spectra/spectral_gap";
/// Eigenvalue participation ratio, per layer.
pub const PARTICIPATION_RATIO: &str = "spectra/participation_ratio";
/// σ1 / σ2, per layer.
pub const SINGULAR_GAP: &str = "spectra/singular_gap";
/// Singular-value participation ratio, per layer.
pub const SINGULAR_PARTICIPATION_RATIO: &str = "spectra/singular_participation_ratio";
/// Σσ² / σ1², per layer.
pub const STABLE_RANK: &str = "spectra/stable_rank";
/// KL of the top eigenvalues from the Marchenko–Pastur density, per layer.
pub const MP_KL: &str = "spectra/mp_kl";

/// top1 / median |h|, per residual state.
pub const MASSIVE_RATIO: &str = "massive/ratio";
/// Largest |h|, per residual state.
pub const MASSIVE_TOP1: &str = "massive/top1";
/// Median |h|, per residual state.
pub const MASSIVE_MEDIAN: &str = "massive/median";

/// Training loss of the step.
pub const TRAIN_LOSS: &str = "train/loss";
/// Learning rate of the step.
pub const TRAIN_LR: &str = "train/lr";
/// Training tokens per second.
pub const TRAIN_TOKENS_PER_SEC: &str = "train/tokens_per_sec";
/// Global gradient norm before clipping.
pub const TRAIN_GRAD_NORM: &str = "train/grad_norm";
/// Loss on the held-out windows.
pub const TRAIN_HELDOUT_LOSS: &str = "train/heldout_loss";

/// Every metric above (the families' own per-layer tags aside), for the test that
/// the docs name them and the one that nothing is logged under another name.
pub const METRICS: [&str; 40] = [
    SINK_RATE,
    FIRST_TOKEN_MASS,
    SINK_CONCENTRATION,
    SPECIALIZED_HEADS,
    NULL_MASS,
    VALUE_NORM_RATIO,
    FRAME_SINK_HEAD_SHARE,
    FRAME_TOP_POSITION_SHARE,
    FRAME_TYPE,
    KL,
    KL_SINK_REMOVED,
    SINK_ATTENTION_PCT,
    FIEDLER,
    FIEDLER_GAP,
    CENTRALIZATION,
    STAR_LIKENESS,
    IN_DEGREE_GINI,
    EDGE_DENSITY,
    BETTI,
    TOTAL_PERSISTENCE,
    MAX_PERSISTENCE,
    DIAGRAM,
    SPECTRAL_GAP,
    PARTICIPATION_RATIO,
    SINGULAR_GAP,
    SINGULAR_PARTICIPATION_RATIO,
    STABLE_RANK,
    MP_KL,
    MASSIVE_RATIO,
    MASSIVE_TOP1,
    MASSIVE_MEDIAN,
    TRAIN_LOSS,
    TRAIN_LR,
    TRAIN_TOKENS_PER_SEC,
    TRAIN_GRAD_NORM,
    TRAIN_HELDOUT_LOSS,
    family::FISHER,
    family::RMT,
    family::ESD,
    family::ATTENTION,
];

/// `metric/layer_NN`, layer `layer` of `layers`.
pub fn layer(metric: &str, layer: usize, layers: usize) -> String {
    format!("{metric}/layer_{}", padded_index(layer, layers))
}

/// `metric/state_NN`, residual state `state` of `states`.
pub fn state(metric: &str, state: usize, states: usize) -> String {
    format!("{metric}/state_{}", padded_index(state, states))
}

/// `tag/head_NN`, head `head` of `heads` (after a layer tag).
pub fn head(tag: &str, head: usize, heads: usize) -> String {
    format!("{tag}/head_{}", padded_index(head, heads))
}

/// `tag/std`: the spread of `tag` over the probe sequences.
pub fn std(tag: &str) -> String {
    format!("{tag}/std")
}

/// A graph metric at threshold `key` (`0.01`, or `weighted`): `graph/fiedler_0.01`.
pub fn thresholded(metric: &str, key: &str) -> String {
    format!("{metric}_{key}")
}

/// A topology metric in homology dimension `k`: `topo/betti1`.
pub fn dimension(metric: &str, k: impl std::fmt::Display) -> String {
    format!("{metric}{k}")
}

/// Bars of dimension `k` alive at `radius`: `topo/betti1_r0.5`.
pub fn betti_at(k: impl std::fmt::Display, radius: f64) -> String {
    format!("{BETTI}{k}_r{radius}")
}

/// A WeightWatcher column of one weight: `rmt/alpha/blocks.0.attn.q`.
pub fn rmt(column: &str, weight: &str) -> String {
    format!("{}/{column}/{weight}", family::RMT)
}

/// The eigenvalue histogram of one weight: `esd/blocks.0.attn.q`.
pub fn esd(weight: &str) -> String {
    format!("{}/{weight}", family::ESD)
}

/// Whether `tag` is in `family` (`sink/rate` is in `sink`, `sinks/x` is not).
pub fn in_family(tag: &str, family: &str) -> bool {
    tag.strip_prefix(family).is_some_and(|r| r.starts_with('/'))
}

/// The entry of [`METRICS`] that `tag` was built from: the longest one that is the
/// tag itself or followed by `/`, `_` or a digit (`info/kl_sink_removed/layer_00`
/// is [`KL_SINK_REMOVED`], not [`KL`]).
pub fn metric_of(tag: &str) -> Option<&'static str> {
    METRICS
        .iter()
        .filter(|m| {
            tag.strip_prefix(**m).is_some_and(|rest| {
                rest.is_empty()
                    || rest.starts_with(['/', '_'])
                    || rest.starts_with(char::is_numeric)
            })
        })
        .max_by_key(|m| m.len())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{
        analyze, summarize, AnalysisConfig, AttentionMaps, HiddenStates, TopologyConfig,
    };

    #[test]
    fn padding_sorts() {
        assert_eq!(padded_index(3, 4), "03");
        assert_eq!(padded_index(7, 100), "07");
        assert_eq!(padded_index(7, 101), "007");
    }

    #[test]
    fn builders_pad_and_join() {
        assert_eq!(layer(SINK_RATE, 3, 12), "sink/rate/layer_03");
        assert_eq!(layer(family::FISHER, 7, 101), "fisher/layer_007");
        assert_eq!(state(MASSIVE_RATIO, 2, 5), "massive/ratio/state_02");
        assert_eq!(
            head(&layer(FIRST_TOKEN_MASS, 1, 2), 7, 8),
            "sink/first_token_mass/layer_01/head_07"
        );
        assert_eq!(std("sink/rate/layer_00"), "sink/rate/layer_00/std");
        assert_eq!(thresholded(FIEDLER, "0.01"), "graph/fiedler_0.01");
        assert_eq!(dimension(BETTI, 1), "topo/betti1");
        assert_eq!(betti_at(0, 0.5), "topo/betti0_r0.5");
        assert_eq!(rmt("alpha", "w.q"), "rmt/alpha/w.q");
        assert_eq!(esd("w.q"), "esd/w.q");
        assert!(in_family("sink/rate", family::SINK) && !in_family("sinks/x", family::SINK));
        assert_eq!(
            metric_of("info/kl_sink_removed/layer_00"),
            Some(KL_SINK_REMOVED)
        );
        assert_eq!(metric_of("info/kl/layer_00/std"), Some(KL));
        assert_eq!(
            metric_of("graph/fiedler_gap_0.1/layer_00"),
            Some(FIEDLER_GAP)
        );
        assert_eq!(metric_of("topo/betti1_r0.9/layer_00"), Some(BETTI));
        assert_eq!(metric_of("sink/rates"), None);
    }

    #[test]
    fn every_metric_is_in_its_family_and_named_once() {
        for m in METRICS {
            assert!(
                family::ALL.iter().any(|f| *f == m || in_family(m, f)),
                "{m} is in no family"
            );
            assert_eq!(METRICS.iter().filter(|x| **x == m).count(), 1, "{m} twice");
        }
    }

    /// Everything the analysis can log, switched on, logs under the names above.
    #[test]
    fn the_analysis_logs_only_named_metrics() {
        let (layers, heads, t) = (2, 2, 8);
        let mut values = Vec::new();
        for _ in 0..layers * heads {
            for i in 0..t {
                for j in 0..t {
                    let w = if j == 0 {
                        4.0
                    } else {
                        1.0 + ((i * 7 + j * 3) % 5) as f64
                    };
                    values.push(if j <= i { w } else { 0.0 });
                }
            }
        }
        for row in values.chunks_mut(t) {
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= s);
        }
        let values = values.into_iter().map(|x| x as f32).collect();
        let maps = AttentionMaps::new(layers, heads, t, values).unwrap();
        let dim = 4;
        let hidden = (0..(layers + 1) * t * dim)
            .map(|i| (i % 11) as f32)
            .collect();
        let hidden = HiddenStates::new(layers + 1, t, dim, hidden).unwrap();
        let cfg = AnalysisConfig {
            per_head_scalars: true,
            spectra: true,
            graph: true,
            topology: TopologyConfig {
                enabled: true,
                radii: vec![0.5],
                ..TopologyConfig::default()
            },
            ..AnalysisConfig::default()
        };
        let report = analyze(&maps, Some(&hidden), None, &cfg);
        let summary = summarize(&[report]);
        let tags: Vec<String> = summary.scalars().into_iter().map(|(t, _)| t).collect();
        for family in [family::SINK, family::FRAME, family::GRAPH, family::TOPO] {
            assert!(
                tags.iter().any(|t| in_family(t, family)),
                "no {family}/ tag"
            );
        }
        for family in [family::SPECTRA, family::INFO, family::MASSIVE] {
            assert!(
                tags.iter().any(|t| in_family(t, family)),
                "no {family}/ tag"
            );
        }
        for tag in &tags {
            assert!(
                metric_of(tag).is_some(),
                "`{tag}` is logged under no name of names.rs"
            );
        }
    }
}
