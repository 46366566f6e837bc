//! Attention-sink metrics of one layer: Gu et al.'s sink score and sink rate, the
//! first-token mass, the column-mass sink set and its concentration, specialized heads,
//! and (given the value vectors) the value-norm ratio of each head's top key.
//!
//! Sources: Gu et al., "When Attention Sink Emerges in Language Models"
//! (`sail-sg/Attention-Sink`, `eval_sink_open_source.py`) for α_k and the sink rate; the
//! paper's `KL.ipynb` and `rmt.ipynb` (arXiv 2508.02546) for the column-mass sink set;
//! `values.rs` for the value-norm ratio.

use serde::Serialize;

use super::config::AnalysisConfig;
use super::stats::{argmax, percentile};
use super::values::{kv_head_of, value_norm_ratio, ValueNorms};

/// Sink statistics of one head.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadSink {
    /// Head index.
    pub head: usize,
    /// α_0, the Gu et al. score of the first token.
    pub first_token_score: f64,
    /// The key receiving the most attention (largest column sum).
    pub top_key: usize,
    /// α of that key: the mean weight it gets from the queries that can see it.
    pub top_key_score: f64,
    /// Whether `top_key_score` reaches the specialization level (0.9 by default).
    pub specialized: bool,
    /// ‖v_top‖₂ / mean_{j≠top} ‖v_j‖₂ in the key/value head this head reads (None
    /// without value vectors or with a single key).
    pub value_norm_ratio: Option<f64>,
}

/// Sink statistics of one layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSink {
    /// Percentage of heads with α_0 > ε (Gu et al.'s sink rate, per layer).
    pub sink_rate: f64,
    /// Mean over heads of α_0.
    pub first_token_mass: f64,
    /// α_0 of uniform attention over the visible keys: H_T / T causal, 1 / T bidirectional.
    /// A first-token mass near this value means no sink.
    pub first_token_baseline: f64,
    /// Σ_{j∈S} c_j / Σ_j c_j with c_j the column mass over all heads and
    /// S = {j : c_j ≥ P_q(c)}.
    pub sink_concentration: f64,
    /// The sink set S (key positions).
    pub sink_positions: Vec<usize>,
    /// Heads whose top key reaches the specialization level.
    pub specialized_heads: Vec<usize>,
    /// Mean over heads of [`HeadSink::value_norm_ratio`] (over the heads that have one).
    pub value_norm_ratio: Option<f64>,
    /// Per-head detail (serialized by the layer report, next to each head's spectra).
    #[serde(skip)]
    pub heads: Vec<HeadSink>,
}

/// Number of queries that can attend to key `k`: T − k causal, T bidirectional.
pub fn visible_queries(t: usize, k: usize, causal: bool) -> usize {
    if causal {
        t - k
    } else {
        t
    }
}

/// Gu et al.'s score of every key of one `T × T` map: `α_k = Σ_i A[i,k] / n_k`.
pub fn key_scores(map: &[f32], t: usize, causal: bool) -> Vec<f64> {
    let sums = column_sums(map, t);
    sums.iter()
        .enumerate()
        .map(|(k, s)| s / visible_queries(t, k, causal) as f64)
        .collect()
}

/// Σ_i A[i, j] for every key j of one `T × T` map.
pub fn column_sums(map: &[f32], t: usize) -> Vec<f64> {
    let mut sums = vec![0.0f64; t];
    for row in map.chunks_exact(t) {
        for (s, &a) in sums.iter_mut().zip(row) {
            *s += f64::from(a);
        }
    }
    sums
}

/// α_k of uniform attention over the visible keys (each query i spreads 1 over i + 1 keys
/// when causal, T keys otherwise): (1 / (T − k)) Σ_{i≥k} 1/(i + 1) causal, 1 / T
/// bidirectional. For T = 64 and k = 0 that is H_64 / 64 ≈ 0.074, the reading anchors.md
/// reports for tiny sink-free models.
pub fn uniform_key_score(t: usize, k: usize, causal: bool) -> f64 {
    if causal {
        let s: f64 = (k..t).map(|i| 1.0 / (i + 1) as f64).sum();
        s / (t - k) as f64
    } else {
        1.0 / t as f64
    }
}

/// The sink set S = {j : c_j ≥ P_q(c)} of a column-mass vector and its concentration
/// Σ_S c_j / Σ c_j (as `np.percentile` and the notebooks compute them).
pub fn sink_set(mass: &[f64], q: f64) -> (Vec<usize>, f64) {
    let Some(cut) = percentile(mass, q) else {
        return (Vec::new(), 0.0);
    };
    let sinks: Vec<usize> = (0..mass.len()).filter(|&j| mass[j] >= cut).collect();
    let total: f64 = mass.iter().sum();
    let inside: f64 = sinks.iter().map(|&j| mass[j]).sum();
    let concentration = if total > 0.0 { inside / total } else { 0.0 };
    (sinks, concentration)
}

/// Sink metrics of one layer from its `H × T × T` maps, with `cfg`'s ε
/// (`sink_epsilon`), percentile (`sink_percentile`) and specialization level
/// (`specialized_mass`). The value-norm ratios stay `None` until
/// [`LayerSink::add_value_norms`].
pub fn layer_sink(
    layer: &[f32],
    heads: usize,
    t: usize,
    causal: bool,
    cfg: &AnalysisConfig,
) -> LayerSink {
    let mut mass = vec![0.0f64; t];
    let mut head_stats = Vec::with_capacity(heads);
    for (h, map) in layer.chunks_exact(t * t).enumerate() {
        let sums = column_sums(map, t);
        for (m, s) in mass.iter_mut().zip(&sums) {
            *m += s;
        }
        let top_key = argmax(&sums).unwrap_or(0);
        let score = |k: usize| sums[k] / visible_queries(t, k, causal) as f64;
        let top_key_score = score(top_key);
        head_stats.push(HeadSink {
            head: h,
            first_token_score: score(0),
            top_key,
            top_key_score,
            specialized: top_key_score >= cfg.specialized_mass,
            value_norm_ratio: None,
        });
    }
    let sinking = head_stats
        .iter()
        .filter(|h| h.first_token_score > cfg.sink_epsilon)
        .count();
    let first_token_mass =
        head_stats.iter().map(|h| h.first_token_score).sum::<f64>() / heads as f64;
    let (sink_positions, sink_concentration) = sink_set(&mass, cfg.sink_percentile);
    LayerSink {
        sink_rate: 100.0 * sinking as f64 / heads as f64,
        first_token_mass,
        first_token_baseline: uniform_key_score(t, 0, causal),
        sink_concentration,
        sink_positions,
        specialized_heads: head_stats
            .iter()
            .filter(|h| h.specialized)
            .map(|h| h.head)
            .collect(),
        value_norm_ratio: None,
        heads: head_stats,
    }
}

impl LayerSink {
    /// Sets every head's value-norm ratio from layer `layer` of `norms` (query head h
    /// reads key/value head h / (H / Hkv)) and their mean, for maps over `seq_len` keys.
    /// Left `None` when `norms` does not fit these maps (another length, a key/value
    /// head count not dividing H, no such layer).
    pub fn add_value_norms(&mut self, norms: &ValueNorms, layer: usize, seq_len: usize) {
        let (heads, kv) = (self.heads.len(), norms.kv_heads());
        let fits = layer < norms.layers() && norms.seq_len() == seq_len && heads.is_multiple_of(kv);
        if !fits {
            return;
        }
        for h in &mut self.heads {
            let own = norms.head(layer, kv_head_of(h.head, heads, kv));
            h.value_norm_ratio = value_norm_ratio(own, h.top_key);
        }
        let ratios: Vec<f64> = self
            .heads
            .iter()
            .filter_map(|h| h.value_norm_ratio)
            .collect();
        self.value_norm_ratio =
            (!ratios.is_empty()).then(|| ratios.iter().sum::<f64>() / ratios.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two causal heads over T = 4.
    /// Head 0 is a sink head: every query puts 0.7 on key 0 (query 0 puts 1).
    /// Head 1 is uniform over the visible keys.
    fn two_heads() -> Vec<f32> {
        let sink: [f32; 16] = [
            1.0, 0.0, 0.0, 0.0, //
            0.7, 0.3, 0.0, 0.0, //
            0.7, 0.15, 0.15, 0.0, //
            0.7, 0.1, 0.1, 0.1,
        ];
        let third = 1.0 / 3.0;
        let uniform: [f32; 16] = [
            1.0, 0.0, 0.0, 0.0, //
            0.5, 0.5, 0.0, 0.0, //
            third, third, third, 0.0, //
            0.25, 0.25, 0.25, 0.25,
        ];
        [sink, uniform].concat()
    }

    #[test]
    fn gu_scores_by_hand() {
        let maps = two_heads();
        // head 0: column 0 sums to 1 + 0.7·3 = 3.1, seen by 4 queries → α_0 = 0.775;
        // column 3 sums to 0.1, seen by 1 query → α_3 = 0.1
        let a = key_scores(&maps[..16], 4, true);
        assert!((a[0] - 0.775).abs() < 1e-6);
        assert!((a[3] - 0.1).abs() < 1e-6);
        // bidirectional normalisation divides by T = 4 everywhere: α_3 = 0.025
        let b = key_scores(&maps[..16], 4, false);
        assert!((b[3] - 0.025).abs() < 1e-6);
        // head 1 (uniform): α_0 = (1 + 1/2 + 1/3 + 1/4)/4 = 25/48, the causal baseline
        let u = key_scores(&maps[16..], 4, true);
        assert!((u[0] - 25.0 / 48.0).abs() < 1e-6);
        assert!((uniform_key_score(4, 0, true) - 25.0 / 48.0).abs() < 1e-12);
        // k = 2: (1/3 + 1/4) / 2 = 7/24
        assert!((uniform_key_score(4, 2, true) - 7.0 / 24.0).abs() < 1e-12);
        assert!((u[2] - 7.0 / 24.0).abs() < 1e-6);
    }

    #[test]
    fn layer_metrics_by_hand() {
        let cfg = |sink_epsilon, specialized_mass| AnalysisConfig {
            sink_epsilon,
            sink_percentile: 90.0,
            specialized_mass,
            ..AnalysisConfig::default()
        };
        let s = layer_sink(&two_heads(), 2, 4, true, &cfg(0.3, 0.9));
        // α_0: 0.775 and 25/48 ≈ 0.521, both > 0.3 → sink rate 100 %
        assert_eq!(s.sink_rate, 100.0);
        assert!((s.first_token_mass - (0.775 + 25.0 / 48.0) / 2.0).abs() < 1e-6);
        // column mass c = head0 [3.1, 0.55, 0.25, 0.1] + head1 [25/12, 13/12, 7/12, 1/4]
        //   = [5.1833, 1.6333, 0.8333, 0.35]; P90 (index 2.7): 1.6333 + 0.7·(5.1833 − 1.6333)
        //   = 4.1183 → S = {0}; concentration 5.1833 / 8 = 0.6479 (total mass = H·T = 8)
        assert_eq!(s.sink_positions, vec![0]);
        assert!((s.sink_concentration - (3.1 + 25.0 / 12.0) / 8.0).abs() < 1e-6);
        // top keys: key 0 for both; scores 0.775 and 0.521 < 0.9 → no specialized head
        assert_eq!(s.heads[0].top_key, 0);
        assert!(s.specialized_heads.is_empty());
        // with ε = 0.6 only head 0 sinks → 50 %
        let s = layer_sink(&two_heads(), 2, 4, true, &cfg(0.6, 0.7));
        assert_eq!(s.sink_rate, 50.0);
        assert_eq!(s.specialized_heads, vec![0]);
    }

    #[test]
    fn value_norm_ratio_of_each_heads_top_key() {
        // bidirectional, T = 3: head 0 puts 0.8 on key 0, head 1 puts 0.7 on key 2
        let maps: Vec<f32> = [[0.8, 0.1, 0.1]; 3]
            .into_iter()
            .chain([[0.1, 0.2, 0.7]; 3])
            .flatten()
            .collect();
        let cfg = AnalysisConfig::default();
        let sink = layer_sink(&maps, 2, 3, false, &cfg);
        assert_eq!((sink.heads[0].top_key, sink.heads[1].top_key), (0, 2));
        assert_eq!(sink.value_norm_ratio, None);
        // one kv head for both (GQA group of 2): norms 0.5, 2, 4
        // head 0: 0.5 / mean(2, 4) = 1/6; head 1: 4 / mean(0.5, 2) = 3.2
        let mut s = sink.clone();
        s.add_value_norms(
            &ValueNorms::new(1, 1, 3, vec![0.5, 2.0, 4.0]).unwrap(),
            0,
            3,
        );
        assert!((s.heads[0].value_norm_ratio.unwrap() - 1.0 / 6.0).abs() < 1e-12);
        assert!((s.heads[1].value_norm_ratio.unwrap() - 3.2).abs() < 1e-12);
        assert!((s.value_norm_ratio.unwrap() - (1.0 / 6.0 + 3.2) / 2.0).abs() < 1e-12);
        // one kv head each; layer 1 of a two-layer stack: head 1 reads [1, 1, 6] → 6
        let norms =
            ValueNorms::new(2, 2, 3, [[9.0; 6], [0.5, 2.0, 4.0, 1.0, 1.0, 6.0]].concat()).unwrap();
        let mut s = sink.clone();
        s.add_value_norms(&norms, 1, 3);
        assert!((s.heads[1].value_norm_ratio.unwrap() - 6.0).abs() < 1e-12);
        assert!((s.value_norm_ratio.unwrap() - (1.0 / 6.0 + 6.0) / 2.0).abs() < 1e-12);
        // norms of another length, or 3 kv heads for 2 query heads: left out
        for bad in [
            ValueNorms::new(1, 1, 4, vec![1.0; 4]).unwrap(),
            ValueNorms::new(1, 3, 3, vec![1.0; 9]).unwrap(),
        ] {
            let mut s = sink.clone();
            s.add_value_norms(&bad, 0, 3);
            assert_eq!(s.value_norm_ratio, None);
        }
    }

    #[test]
    fn sink_set_ties_take_every_equal_column() {
        // all columns equal → every c_j ≥ P90 → S is everything, concentration 1
        let (s, c) = sink_set(&[2.0, 2.0, 2.0], 90.0);
        assert_eq!(s, vec![0, 1, 2]);
        assert_eq!(c, 1.0);
    }
}
