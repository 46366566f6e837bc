//! From an attention map to a persistence input, in the two modes sinkscope offers.
//!
//! - `symmetric` (default): S = (Ā + Āᵀ)/2, D = 1 − S with a zero diagonal — a genuine
//!   dissimilarity, so the diagrams describe the attention graph of the layer.
//! - `paper`: D = 1 − Ā as given, read the way ripser.py reads it (upper triangle as edge
//!   lengths, diagonal as vertex births, see [`RipsInput::ripser_py_matrix`]). This
//!   reproduces the published pipeline (arXiv 2508.02546, `topology.ipynb`), including its
//!   artifact: for a causal map every edge has length 1, so H1 is empty and H0 counts the
//!   tokens in every layer.

use serde::{Deserialize, Serialize};

use super::diagram::Diagrams;
use super::distance::RipsInput;
use super::rips_persistence;
use crate::analysis::config::TopologyConfig;
use crate::analysis::keyed::Keyed;
use crate::analysis::stats::linspace_indices;

/// How an attention map is turned into distances before persistence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TopologyMode {
    /// D = 1 − (Ā + Āᵀ)/2, zero diagonal (sinkscope's default).
    #[default]
    Symmetric,
    /// D = 1 − Ā read as ripser.py does (reproduces the paper, artifact included).
    Paper,
}

/// The persistence input of a `t × t` head-mean map restricted to `tokens`.
///
/// Distances are clamped at 0 (a mean weight can exceed 1 by the row-sum tolerance). In
/// `paper` mode they are rounded to f32 first, as ripser.py converts its input to float32.
pub fn attention_input(mean: &[f64], t: usize, tokens: &[usize], mode: TopologyMode) -> RipsInput {
    debug_assert_eq!(mean.len(), t * t);
    let m = tokens.len();
    match mode {
        TopologyMode::Symmetric => {
            let mut dist = vec![0.0; m * m];
            for (a, &i) in tokens.iter().enumerate() {
                for (b, &j) in tokens.iter().enumerate().take(a) {
                    let s = 0.5 * (mean[i * t + j] + mean[j * t + i]);
                    let d = (1.0 - s).max(0.0);
                    dist[a * m + b] = d;
                    dist[b * m + a] = d;
                }
            }
            RipsInput {
                n: m,
                dist,
                births: None,
                enclosing_radius_default: true,
            }
        }
        TopologyMode::Paper => {
            let mut d = Vec::with_capacity(m * m);
            for &i in tokens {
                for &j in tokens {
                    d.push(f64::from((1.0 - mean[i * t + j]).max(0.0) as f32));
                }
            }
            // finite and non-negative by construction
            RipsInput::ripser_py_unchecked(m, &d)
        }
    }
}

/// Betti numbers β_k(r) at one radius.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BettiAt {
    /// The radius r.
    pub radius: f64,
    /// β_k(r) by dimension (`"0"`, `"1"`, …).
    pub betti: Keyed<usize>,
}

/// Persistence summary of one layer's head-mean map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerTopology {
    /// How distances were built.
    pub mode: TopologyMode,
    /// Tokens used after downsampling.
    pub tokens: usize,
    /// The paper's "Betti numbers": bar counts by dimension.
    pub betti: Keyed<usize>,
    /// β_k(r) at the configured radii.
    pub betti_at: Vec<BettiAt>,
    /// Sum of finite persistence by dimension.
    pub total_persistence: Keyed<f64>,
    /// Largest finite persistence by dimension.
    pub max_persistence: Keyed<f64>,
    /// Mean finite persistence by dimension (the paper's statistic).
    pub mean_persistence: Keyed<f64>,
    /// The diagrams themselves, when `keep_diagrams` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagrams: Option<Diagrams>,
}

/// The persistence input [`layer_topology`] builds from a `t × t` head-mean map under
/// `cfg` (downsampling to `max_tokens`, mode), with the tokens kept.
fn layer_input(mean: &[f64], t: usize, cfg: &TopologyConfig) -> (Vec<usize>, RipsInput) {
    let tokens = linspace_indices(t, cfg.max_tokens.map_or(t, |m| m.max(2)));
    let input = attention_input(mean, t, &tokens, cfg.mode);
    (tokens, input)
}

/// The estimated simplices of the filtration [`layer_topology`] would reduce for this
/// map under `cfg` ([`super::estimated_simplices`]), and the number of points, so a
/// caller can refuse a computation that would run for hours before it starts.
pub fn layer_simplex_estimate(mean: &[f64], t: usize, cfg: &TopologyConfig) -> (usize, f64) {
    let (tokens, input) = layer_input(mean, t, cfg);
    let estimate = super::estimated_simplices(&input, cfg.maxdim, cfg.threshold);
    (tokens.len(), estimate)
}

/// Persistence of a `t × t` head-mean map under `cfg` (downsampling, mode, dimensions,
/// threshold) and its summary.
pub fn layer_topology(mean: &[f64], t: usize, cfg: &TopologyConfig) -> LayerTopology {
    let (tokens, input) = layer_input(mean, t, cfg);
    let diagrams = rips_persistence(&input, cfg.maxdim, cfg.threshold);
    let dims = 0..=cfg.maxdim;
    let keyed = |f: &dyn Fn(usize) -> f64| {
        Keyed(
            dims.clone()
                .map(|k| (k.to_string(), f(k)))
                .collect::<Vec<_>>(),
        )
    };
    LayerTopology {
        mode: cfg.mode,
        tokens: tokens.len(),
        betti: Keyed(
            dims.clone()
                .map(|k| (k.to_string(), diagrams.bar_count(k)))
                .collect(),
        ),
        betti_at: cfg
            .radii
            .iter()
            .map(|&r| BettiAt {
                radius: r,
                betti: Keyed(
                    dims.clone()
                        .map(|k| (k.to_string(), diagrams.betti_at(k, r)))
                        .collect(),
                ),
            })
            .collect(),
        total_persistence: keyed(&|k| diagrams.total_persistence(k)),
        max_persistence: keyed(&|k| diagrams.max_persistence(k)),
        mean_persistence: keyed(&|k| diagrams.mean_persistence(k)),
        diagrams: cfg.keep_diagrams.then_some(diagrams),
    }
}

#[cfg(test)]
mod tests {
    use super::super::rips_persistence;
    use super::*;

    /// A causal 3-token map: rows [1,0,0], [.5,.5,0], [.2,.3,.5].
    const CAUSAL: [f64; 9] = [1.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.2, 0.3, 0.5];

    #[test]
    fn symmetric_mode_distances() {
        let r = attention_input(&CAUSAL, 3, &[0, 1, 2], TopologyMode::Symmetric);
        // S(1,0) = (0.5 + 0)/2 = 0.25 → 0.75; S(2,0) = 0.1 → 0.9; S(2,1) = 0.15 → 0.85
        assert!((r.distance(1, 0) - 0.75).abs() < 1e-12);
        assert!((r.distance(0, 2) - 0.9).abs() < 1e-12);
        assert!((r.distance(2, 1) - 0.85).abs() < 1e-12);
        assert_eq!(r.distance(1, 1), 0.0);
    }

    #[test]
    fn paper_mode_reproduces_the_causal_artifact() {
        // Upper triangle of a causal Ā is 0, so every edge is 1 − 0 = 1; births are
        // 1 − Ā_ii = 0, 0.5, 0.5. ripser.py: H0 = three bars — [0.5, 1) twice (the younger
        // components die when the edges at 1 appear) and [0, ∞) — and H1 is empty.
        let r = attention_input(&CAUSAL, 3, &[0, 1, 2], TopologyMode::Paper);
        let d = rips_persistence(&r, 1, None);
        let mut h0: Vec<(f64, f64)> = d.dim(0).iter().map(|b| (b.birth, b.death)).collect();
        h0.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(h0, vec![(0.0, f64::INFINITY), (0.5, 1.0), (0.5, 1.0)]);
        assert!(d.dim(1).is_empty());
    }

    #[test]
    fn layer_summary_of_a_causal_map() {
        // symmetric distances of CAUSAL: d01 = 0.75, d12 = 0.85, d02 = 0.9. Enclosing radius
        // min(0.9, 0.85, 0.9) = 0.85, so the edge at 0.9 is beyond the threshold.
        // H0: [0, 0.75), [0, 0.85), [0, ∞) → 3 bars; H1: none. β_0(0.8) = 2 (two components).
        let cfg = TopologyConfig {
            radii: vec![0.8],
            keep_diagrams: true,
            ..TopologyConfig::default()
        };
        let s = layer_topology(&CAUSAL, 3, &cfg);
        assert_eq!(s.betti.get("0"), Some(&3));
        assert_eq!(s.betti.get("1"), Some(&0));
        assert_eq!(s.betti_at[0].betti.get("0"), Some(&2));
        assert!((s.total_persistence.get("0").unwrap() - 1.6).abs() < 1e-12);
        assert!((s.max_persistence.get("0").unwrap() - 0.85).abs() < 1e-12);
        assert!((s.mean_persistence.get("0").unwrap() - 0.8).abs() < 1e-12);
        assert!(s.diagrams.is_some());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["betti"]["0"], 3);
    }

    #[test]
    fn paper_mode_matches_ripser_py_on_a_bidirectional_map() {
        // ripser.py 0.6.15 on the same matrix (integer weights, so both sides round alike):
        //   T = 12; W[i][j] = (7i + 13j) % 11 + 1 + (20 if j == 0 else 0)
        //   A = (W / W.sum(1, keepdims=True)).astype(np.float32); D = 1 - A
        //   ripser(D, maxdim=1, distance_matrix=True)['dgms']
        let t = 12;
        let mut a = vec![0.0f64; t * t];
        for i in 0..t {
            let w: Vec<f64> = (0..t)
                .map(|j| ((7 * i + 13 * j) % 11 + 1 + if j == 0 { 20 } else { 0 }) as f64)
                .collect();
            let s: f64 = w.iter().sum();
            for j in 0..t {
                a[i * t + j] = f64::from((w[j] / s) as f32);
            }
        }
        let tokens: Vec<usize> = (0..t).collect();
        let d = rips_persistence(
            &attention_input(&a, t, &tokens, TopologyMode::Paper),
            1,
            None,
        );
        let h0 = [
            (0.7586206793785095, f64::INFINITY),
            (0.8854166865348816, 0.8958333134651184),
        ];
        let h1 = [
            (0.8965517282485962, 0.9354838728904724),
            (0.8969072103500366, 0.9278350472450256),
            (0.8977272510528564, 0.9263157844543457),
            (0.9042553305625916, 0.9347826242446899),
            (0.9052631855010986, 0.9278350472450256),
            (0.907216489315033, 0.9195402264595032),
            (0.9139785170555115, 0.9247311949729919),
            (0.9166666865348816, 0.9375),
            (0.9175257682800293, 0.9195402264595032),
            (0.9255319237709045, 0.932584285736084),
        ];
        for (k, want) in [(0, &h0[..]), (1, &h1[..])] {
            let mut got: Vec<(f64, f64)> = d.dim(k).iter().map(|b| (b.birth, b.death)).collect();
            got.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.total_cmp(&y.1)));
            assert_eq!(got.len(), want.len(), "H{k}: {got:?}");
            for (g, w) in got.iter().zip(want) {
                assert!((g.0 - w.0).abs() < 1e-6, "H{k}: {got:?}");
                assert!(g.1 == w.1 || (g.1 - w.1).abs() < 1e-6, "H{k}: {got:?}");
            }
        }
    }

    #[test]
    fn downsampled_tokens_index_the_original_map() {
        let r = attention_input(&CAUSAL, 3, &[0, 2], TopologyMode::Symmetric);
        assert_eq!(r.len(), 2);
        assert!((r.distance(0, 1) - 0.9).abs() < 1e-12);
    }
}
