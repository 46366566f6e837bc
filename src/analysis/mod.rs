//! sinkscope's measurement layer: attention sinks, the attention graph, persistent
//! homology, attention and weight spectra, information metrics and the frame-type verdict,
//! over plain `f32`/`f64` buffers.
//!
//! Nothing here knows about burn, files or the CLI: training hooks, imported models and
//! arrays on disk all reach the same functions. Layers (and heads, for the spectra) run in
//! parallel with rayon; linear algebra goes through faer, always sequential inside a rayon
//! task (see `linalg.rs`). Every metric, its source and its default are in
//! `docs/METRICS.md`.
//!
//! Entry points: [`analyze`] one sequence's maps into an [`AttentionReport`],
//! [`summarize`] several reports, [`weight_spectrum`] one weight matrix,
//! [`rips_persistence`] any distance matrix or point cloud.

pub mod attn_spectra;
pub mod config;
pub mod error;
pub mod frame;
pub mod graph;
pub mod info;
pub mod keyed;
pub mod lanczos;
pub mod linalg;
pub mod maps;
pub mod massive;
pub mod names;
pub mod report;
pub mod shift_invert;
pub mod sink;
pub mod stats;
pub mod table;
pub mod topology;
pub mod values;
pub mod weights;

use rayon::prelude::*;

pub use attn_spectra::MatrixSpectrum;
pub use config::{AnalysisConfig, FrameConfig, SpectraConfig, TopologyConfig};
pub use error::AnalysisError;
pub use frame::{FrameEvidence, FrameType, FrameVerdict};
pub use maps::{AttentionMaps, HiddenStates};
pub use report::{summarize, AttentionReport, HeadReport, LayerReport, Summary};
pub use topology::{rips_persistence, Bar, Diagrams, RipsInput, TopologyMode};
pub use values::ValueNorms;
pub use weights::{weight_spectrum, WeightSpectrum};

/// Every metric of one sequence's attention maps (and residual stream and value-vector
/// norms, if given).
///
/// `cfg` should have passed [`AnalysisConfig::validate`]; out-of-range values are clamped
/// where a metric needs it rather than failing here. Causality is `cfg.causal`, or
/// detected from the maps when `None`.
pub fn analyze(
    maps: &AttentionMaps,
    hidden: Option<&HiddenStates>,
    values: Option<&ValueNorms>,
    cfg: &AnalysisConfig,
) -> AttentionReport {
    let detected = maps.is_causal();
    let causal = cfg.causal.unwrap_or(detected);
    let layers: Vec<LayerReport> = (0..maps.layers())
        .into_par_iter()
        .map(|l| analyze_layer(maps, l, l, causal, detected, values, cfg))
        .collect();
    assemble(layers, maps.heads(), maps.seq_len(), detected, hidden, cfg)
}

/// The metrics of layer `l` of `maps` (and of `values`, indexed alike), reported as
/// layer `index` (a streaming caller hands one layer at a time, each as its own
/// [`AttentionMaps`] and [`ValueNorms`]). `causal`: analyze as a causal map;
/// `triangular`: the maps are zero above the diagonal, so their eigenvalues are their
/// diagonal.
pub fn analyze_layer(
    maps: &AttentionMaps,
    l: usize,
    index: usize,
    causal: bool,
    triangular: bool,
    values: Option<&ValueNorms>,
    cfg: &AnalysisConfig,
) -> LayerReport {
    let (h, t) = (maps.heads(), maps.seq_len());
    let layer = maps.layer(l);
    let mean = maps.head_mean(l);
    let mut sink = sink::layer_sink(layer, h, t, causal, cfg);
    if let Some(v) = values {
        sink.add_value_norms(v, l, t);
    }
    let full_max = cfg.spectra_full_max_tokens;
    // the layer-wide parts and the heads are independent: rayon runs them side by side
    let ((info, graph), (topology, spectra)) = rayon::join(
        || {
            rayon::join(
                || info::layer_info(layer, h, t, &sink.sink_positions, sink.sink_concentration),
                || {
                    cfg.graph
                        .then(|| graph::layer_graph(&mean, t, &cfg.graph_thresholds))
                },
            )
        },
        || {
            rayon::join(
                || {
                    cfg.topology
                        .enabled
                        .then(|| topology::layer_topology(&mean, t, &cfg.topology))
                },
                || {
                    cfg.spectra
                        .then(|| attn_spectra::matrix_spectrum(&mean, t, triangular, full_max))
                },
            )
        },
    );
    let heads = sink
        .heads
        .par_iter()
        .map(|hs| {
            let map = maps.head(l, hs.head);
            let scores = sink::key_scores(map, t, causal);
            let spectra = (cfg.spectra && cfg.spectra_per_head)
                .then(|| attn_spectra::matrix_spectrum(map, t, triangular, full_max));
            HeadReport {
                sink: hs.clone(),
                sink_keys: frame::head_sink_keys(
                    &scores,
                    causal,
                    cfg.sink_epsilon,
                    cfg.frame.baseline_factor,
                ),
                spectra,
            }
        })
        .collect();
    LayerReport {
        layer: index,
        betti: topology.as_ref().map(|tp| tp.betti.clone()),
        sink,
        info,
        graph,
        topology,
        spectra,
        heads,
    }
}

/// One sequence's report from its layers' reports (in layer order), all of `heads`
/// heads over `seq_len` tokens. `detected`: every map was zero above the diagonal.
pub fn assemble(
    layers: Vec<LayerReport>,
    heads: usize,
    seq_len: usize,
    detected: bool,
    hidden: Option<&HiddenStates>,
    cfg: &AnalysisConfig,
) -> AttentionReport {
    let causal = cfg.causal.unwrap_or(detected);
    let mut notes = Vec::new();
    if causal && !detected {
        notes.push(
            "analyzed as causal as configured, but some weights above the diagonal are nonzero"
                .to_string(),
        );
    }
    if !causal && detected && seq_len > 1 {
        notes.push(
            "analyzed as bidirectional as configured, but every map is zero above the diagonal"
                .to_string(),
        );
    }
    if cfg.spectra && seq_len > cfg.spectra_full_max_tokens {
        notes.push(format!(
            "spectra: {seq_len} tokens exceed spectra_full_max_tokens = {}: singular gap and \
             stable rank by Lanczos on the whole map; singular participation ratio{} on the \
             first {} tokens (full_spectrum_tokens)",
            cfg.spectra_full_max_tokens,
            if detected {
                ""
            } else {
                ", eigenvalue gap, participation ratio and MP divergence"
            },
            cfg.spectra_full_max_tokens
        ));
    }
    if let Some(m) = cfg
        .topology
        .max_tokens
        .filter(|&m| cfg.topology.enabled && seq_len > m)
    {
        notes.push(format!(
            "topology: {seq_len} tokens downsampled to {m} evenly spaced ones \
             (topology.max_tokens; \"all\" keeps every token, at a cost cubic in the length)"
        ));
    }
    let massive = hidden.map(|h| {
        if h.len() != layers.len() + 1 || h.seq_len() != seq_len {
            notes.push(format!(
                "hidden states are [{}, {}, {}], expected [{}, {}, d] for these maps",
                h.len(),
                h.seq_len(),
                h.d_model(),
                layers.len() + 1,
                seq_len
            ));
        }
        massive::massive_activations(h)
    });
    let mut evidence = FrameEvidence {
        sequences: 1,
        ..Default::default()
    };
    for l in &layers {
        evidence.add_layer(l.sink.first_token_mass, l.sink.first_token_baseline);
        for h in &l.heads {
            evidence.add_head(&h.sink_keys, seq_len, &cfg.frame);
        }
    }
    let nl = layers.len() as f64;
    AttentionReport {
        causal,
        causal_detected: detected,
        num_layers: layers.len(),
        num_heads: heads,
        seq_len,
        // every layer has H heads, so the mean of the per-layer values is the overall one
        sink_rate: layers.iter().map(|l| l.sink.sink_rate).sum::<f64>() / nl,
        first_token_mass: layers.iter().map(|l| l.sink.first_token_mass).sum::<f64>() / nl,
        layers,
        massive,
        frame: frame::classify(evidence, &cfg.frame, cfg.sink_epsilon),
        notes,
        per_head_scalars: cfg.per_head_scalars,
        frame_config: cfg.frame.clone(),
        sink_epsilon: cfg.sink_epsilon,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[layers, heads, t, t]` softmax maps from a logit function (causal: −∞ above the
    /// diagonal).
    fn maps_from(
        layers: usize,
        heads: usize,
        t: usize,
        causal: bool,
        logit: impl Fn(usize, usize, usize, usize) -> f64,
    ) -> AttentionMaps {
        let mut data = Vec::with_capacity(layers * heads * t * t);
        for l in 0..layers {
            for h in 0..heads {
                for i in 0..t {
                    let row: Vec<f64> = (0..t)
                        .map(|j| {
                            if causal && j > i {
                                0.0
                            } else {
                                logit(l, h, i, j).exp()
                            }
                        })
                        .collect();
                    let s: f64 = row.iter().sum();
                    data.extend(row.iter().map(|x| (x / s) as f32));
                }
            }
        }
        AttentionMaps::new(layers, heads, t, data).unwrap()
    }

    /// A deterministic "noise" in [0, 1) so maps are not perfectly regular.
    fn jitter(a: usize, b: usize, c: usize, d: usize) -> f64 {
        ((a * 7919 + b * 104_729 + c * 1_299_709 + d * 15_485_863) % 1000) as f64 / 1000.0
    }

    #[test]
    fn first_token_sink_is_centralized_and_serializes_to_the_issue_shape() {
        // every head puts logit +6 on key 0: α_0 ≈ 1 in every head
        let maps = maps_from(2, 4, 16, true, |l, h, i, j| {
            if j == 0 {
                6.0
            } else {
                jitter(l, h, i, j)
            }
        });
        let r = analyze(&maps, None, None, &AnalysisConfig::default());
        assert!(r.causal && r.causal_detected);
        assert_eq!(r.frame.frame_type, FrameType::Centralized);
        for l in &r.layers {
            assert_eq!(l.sink.sink_rate, 100.0);
            assert!(l.sink.first_token_mass > 0.9);
            assert_eq!(l.sink.sink_positions[0], 0);
            assert!(l.heads.iter().all(|h| h.sink_keys == vec![0]));
        }
        let json = serde_json::to_value(&r).unwrap();
        let l0 = &json["layers"][0];
        for key in [
            "layer",
            "sink_rate",
            "first_token_mass",
            "sink_concentration",
            "kl",
            "kl_sink_removed",
        ] {
            assert!(l0[key].is_number(), "{key}: {}", l0[key]);
        }
        assert!(l0["fiedler"]["0.001"].is_number());
        assert!(l0["fiedler"]["weighted"].is_number());
        assert!(l0["centralization"]["0.2"].is_number());
        assert!(l0["betti"]["0"].is_u64() && l0["betti"]["1"].is_u64());
        assert_eq!(json["frame_type"], "centralized");
        assert!(json["heads"].is_null() && l0["heads"][3]["first_token_score"].is_number());
    }

    #[test]
    fn uniform_causal_attention_has_no_sink() {
        // anchors.md §6: a sink-free model reads the uniform baseline, H_64/64 ≈ 0.074
        let maps = maps_from(3, 4, 64, true, |_, _, _, _| 0.0);
        let r = analyze(&maps, None, None, &AnalysisConfig::default());
        assert_eq!(r.frame.frame_type, FrameType::None);
        let baseline: f64 = (1..=64).map(|i| 1.0 / i as f64).sum::<f64>() / 64.0;
        for l in &r.layers {
            assert!((l.sink.first_token_mass - baseline).abs() < 1e-6);
            assert_eq!(l.sink.sink_rate, 0.0);
            // identical heads: every head equals the mean
            assert!(l.info.kl.abs() < 1e-9);
        }
    }

    #[test]
    fn cls_and_sep_sinks_are_bidirectional() {
        // bidirectional maps, half the heads sink on token 0, half on the last token
        let t = 20;
        let maps = maps_from(2, 4, t, false, |l, h, i, j| {
            let sink = if h % 2 == 0 { 0 } else { t - 1 };
            if j == sink {
                5.0
            } else {
                jitter(l, h, i, j)
            }
        });
        let r = analyze(&maps, None, None, &AnalysisConfig::default());
        assert!(!r.causal);
        assert_eq!(r.frame.frame_type, FrameType::Bidirectional);
    }

    #[test]
    fn sinks_at_several_positions_are_distributed() {
        // each head sinks on a different early key (0, 2, 4, 6)
        let maps = maps_from(1, 4, 32, true, |l, h, i, j| {
            if j == 2 * h && i >= j {
                6.0
            } else {
                jitter(l, h, i, j)
            }
        });
        let r = analyze(&maps, None, None, &AnalysisConfig::default());
        assert_eq!(r.frame.frame_type, FrameType::Distributed, "{:?}", r.frame);
        // only head 0 sinks on the first token: Gu's rate over the layer is 25 %
        assert_eq!(r.sink_rate, 25.0);
    }

    #[test]
    fn scalars_tags_and_summary() {
        let sink = maps_from(2, 4, 16, true, |l, h, i, j| {
            if j == 0 {
                6.0
            } else {
                jitter(l, h, i, j)
            }
        });
        let flat = maps_from(2, 4, 16, true, |_, _, _, _| 0.0);
        let cfg = AnalysisConfig::default();
        let (a, b) = (
            analyze(&sink, None, None, &cfg),
            analyze(&flat, None, None, &cfg),
        );
        let tags: Vec<String> = a.scalars().into_iter().map(|(t, _)| t).collect();
        for want in [
            "sink/rate/layer_00",
            "sink/first_token_mass/layer_01",
            "sink/first_token_mass/layer_01/head_03",
            "graph/fiedler_0.01/layer_00",
            "graph/fiedler_weighted/layer_01",
            "graph/centralization_0.001/layer_00",
            "topo/betti1/layer_00",
            "info/kl_sink_removed/layer_01",
            "spectra/stable_rank/layer_00",
        ] {
            assert!(tags.iter().any(|t| t == want), "missing {want}");
        }
        assert!(a.scalars().iter().all(|(_, v)| v.is_finite()));
        assert_eq!(a.sink_rate, 100.0);
        assert!(tags.iter().any(|t| t == "sink/rate"));
        // sink rate 100 and 0 → mean 50, population std 50
        let s = summarize(&[a, b]);
        assert_eq!(s.sequences, 2);
        let rate = s
            .scalars
            .iter()
            .find(|x| x.tag == "sink/rate/layer_00")
            .unwrap();
        assert_eq!((rate.mean, rate.std, rate.count), (50.0, 50.0, 2));
        // merged evidence: 8 of 16 heads sink on key 0 → centralized
        assert_eq!(s.frame.frame_evidence.heads, 16);
        assert_eq!(s.frame.frame_evidence.sink_heads, 8);
        assert_eq!(s.frame.frame_type, FrameType::Centralized);
        assert!(s
            .scalars()
            .iter()
            .any(|(t, _)| t == "sink/rate/layer_00/std"));
    }

    #[test]
    fn forced_causality_hidden_states_and_disabled_parts() {
        let maps = maps_from(2, 2, 8, false, jitter);
        let cfg = AnalysisConfig {
            causal: Some(true),
            graph: false,
            spectra: false,
            topology: TopologyConfig {
                enabled: false,
                ..TopologyConfig::default()
            },
            ..AnalysisConfig::default()
        };
        let hidden = HiddenStates::new(3, 8, 4, (0..96).map(|x| x as f32).collect()).unwrap();
        let r = analyze(&maps, Some(&hidden), None, &cfg);
        assert!(r.causal && !r.causal_detected);
        assert!(r.notes[0].contains("causal"));
        assert_eq!(r.massive.as_ref().unwrap().len(), 3);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["layers"][0]["betti"].is_null());
        assert!(json["layers"][0].get("fiedler").is_none());
        // wrong stack height is noted, not fatal
        let short = HiddenStates::new(2, 8, 4, vec![1.0; 64]).unwrap();
        let r = analyze(&maps, Some(&short), None, &cfg);
        assert!(r.notes.iter().any(|n| n.contains("hidden states")));
    }

    #[test]
    fn one_and_two_tokens_do_not_panic() {
        for t in [1, 2] {
            for causal in [true, false] {
                let maps = maps_from(1, 2, t, causal, jitter);
                let r = analyze(&maps, None, None, &AnalysisConfig::default());
                assert_eq!(r.layers.len(), 1);
                let _ = r.scalars();
                serde_json::to_string(&r).unwrap();
            }
        }
        let s = summarize(&[]);
        assert_eq!((s.sequences, s.frame.frame_type), (0, FrameType::None));
    }

    #[test]
    fn paper_mode_on_a_causal_model_shows_the_artifact() {
        // anchors.md §1: ripser.py on 1 − Ā of a causal map gives H0 = number of tokens in
        // every layer and an empty H1
        let maps = maps_from(3, 2, 40, true, |l, h, i, j| jitter(l, h, i, j) * 3.0);
        let cfg = AnalysisConfig {
            topology: TopologyConfig {
                mode: TopologyMode::Paper,
                max_tokens: Some(30),
                ..TopologyConfig::default()
            },
            ..AnalysisConfig::default()
        };
        let r = analyze(&maps, None, None, &cfg);
        for l in &r.layers {
            let b = l.betti.as_ref().unwrap();
            assert_eq!(b.get("0"), Some(&30));
            assert_eq!(b.get("1"), Some(&0));
        }
    }
}
