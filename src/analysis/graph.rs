//! The attention graph of a layer: thresholded head-mean attention as a directed graph,
//! its degree centralization and the Fiedler value of its Laplacian.
//!
//! Source: the paper's `fiedler.ipynb` and `laplacian.ipynb` (arXiv 2508.02546). For each
//! threshold τ, `B = [Ā > τ]` is a directed graph with self-loops; in-degree d_j = Σ_i B_ij.
//! The Laplacian is that of W = (B + Bᵀ)/2, L = diag(rowsum W) − W (self-loops cancel).
//! Difference from the notebooks: they keep only tokens that have an edge; sinkscope keeps
//! all T tokens, so an isolated token makes the Fiedler value 0 (the graph is then
//! disconnected, which is what λ₂ = 0 means).

use faer::Par;
use serde::Serialize;

use super::keyed::{threshold_key, Keyed};
use super::linalg::{symmetric_eigenvalues, to_mat};
use super::stats::gini;

/// Graph metrics of one layer, keyed by threshold (`"0.001"`, …) and, for the spectral
/// ones, also `"weighted"` (W = (Ā + Āᵀ)/2, no threshold).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerGraph {
    /// λ₂ of the Laplacian (algebraic connectivity).
    pub fiedler: Keyed<Option<f64>>,
    /// λ₃ − λ₂.
    pub fiedler_gap: Keyed<Option<f64>>,
    /// Freeman degree centralization Σ_j (d_max − d_j) / (T − 1)².
    pub centralization: Keyed<Option<f64>>,
    /// d_max / (T − 1) (can exceed 1: self-loops count).
    pub star_likeness: Keyed<Option<f64>>,
    /// Gini coefficient of the in-degrees.
    pub in_degree_gini: Keyed<Option<f64>>,
    /// Share of the T² ordered pairs (i, j) with Ā_ij > τ.
    pub edge_density: Keyed<f64>,
}

/// In-degrees of `B = [Ā > τ]` (self-loops included).
pub fn in_degrees(mean: &[f64], t: usize, tau: f64) -> Vec<usize> {
    let mut d = vec![0usize; t];
    for row in mean.chunks_exact(t) {
        for (dj, &a) in d.iter_mut().zip(row) {
            if a > tau {
                *dj += 1;
            }
        }
    }
    d
}

/// Σ_j (d_max − d_j) / (T − 1)²; `None` for T < 2.
pub fn centralization(degrees: &[usize]) -> Option<f64> {
    let t = degrees.len();
    if t < 2 {
        return None;
    }
    let max = *degrees.iter().max()?;
    let spread: usize = degrees.iter().map(|&d| max - d).sum();
    Some(spread as f64 / ((t - 1) * (t - 1)) as f64)
}

/// (λ₂, λ₃ − λ₂) of the Laplacian of a symmetric weight matrix W (`T × T`); `None` where
/// the eigenvalue does not exist (T < 2, T < 3) or the decomposition failed.
pub fn laplacian_fiedler(w: &[f64], t: usize) -> (Option<f64>, Option<f64>) {
    if t < 2 {
        return (None, None);
    }
    // The multiplicity of the Laplacian's eigenvalue 0 is the number of connected
    // components: with three or more, λ₂ = λ₃ = 0 exactly and no decomposition is
    // needed (the usual case at high thresholds, where most tokens are isolated).
    if t >= 3 && components(w, t) >= 3 {
        return (Some(0.0), Some(0.0));
    }
    let lap = to_mat(
        &(0..t * t)
            .map(|p| {
                let (i, j) = (p / t, p % t);
                if i == j {
                    w[i * t..(i + 1) * t]
                        .iter()
                        .enumerate()
                        .filter(|&(k, _)| k != i)
                        .map(|(_, x)| x)
                        .sum()
                } else {
                    -w[p]
                }
            })
            .collect::<Vec<f64>>(),
        t,
        t,
    );
    let Some(eig) = symmetric_eigenvalues(lap.as_ref(), Par::Seq) else {
        return (None, None);
    };
    // L is positive semi-definite: a λ₂ of −1e−17 is rounding, report it as 0
    let l2 = eig[1].max(0.0);
    (Some(l2), eig.get(2).map(|l3| (l3 - l2).max(0.0)))
}

/// Connected components of the graph with an edge wherever `w[i, j] > 0` (union-find).
fn components(w: &[f64], t: usize) -> usize {
    let mut parent: Vec<usize> = (0..t).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut count = t;
    for i in 0..t {
        for j in 0..i {
            if w[i * t + j] > 0.0 || w[j * t + i] > 0.0 {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                if a != b {
                    parent[a] = b;
                    count -= 1;
                }
            }
        }
    }
    count
}

/// All graph metrics of one layer from its head mean Ā.
pub fn layer_graph(mean: &[f64], t: usize, thresholds: &[f64]) -> LayerGraph {
    let mut g = LayerGraph {
        fiedler: Keyed::new(),
        fiedler_gap: Keyed::new(),
        centralization: Keyed::new(),
        star_likeness: Keyed::new(),
        in_degree_gini: Keyed::new(),
        edge_density: Keyed::new(),
    };
    for &tau in thresholds {
        let key = threshold_key(tau);
        let w: Vec<f64> = (0..t * t)
            .map(|p| {
                let (i, j) = (p / t, p % t);
                0.5 * (f64::from(u8::from(mean[p] > tau))
                    + f64::from(u8::from(mean[j * t + i] > tau)))
            })
            .collect();
        let (l2, gap) = laplacian_fiedler(&w, t);
        let deg = in_degrees(mean, t, tau);
        let degf: Vec<f64> = deg.iter().map(|&d| d as f64).collect();
        let max = deg.iter().copied().max().unwrap_or(0);
        g.fiedler.push(key.clone(), l2);
        g.fiedler_gap.push(key.clone(), gap);
        g.centralization.push(key.clone(), centralization(&deg));
        g.star_likeness
            .push(key.clone(), (t >= 2).then(|| max as f64 / (t - 1) as f64));
        g.in_degree_gini.push(key.clone(), gini(&degf));
        g.edge_density
            .push(key, deg.iter().sum::<usize>() as f64 / (t * t) as f64);
    }
    let w: Vec<f64> = (0..t * t)
        .map(|p| 0.5 * (mean[p] + mean[(p % t) * t + p / t]))
        .collect();
    let (l2, gap) = laplacian_fiedler(&w, t);
    g.fiedler.push("weighted", l2);
    g.fiedler_gap.push("weighted", gap);
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every query attends only to token 0: a star on 3 nodes.
    const STAR: [f64; 9] = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

    #[test]
    fn star_by_hand() {
        // τ = 0.5: B has column 0 full (self-loop included): in-degrees [3, 0, 0].
        // centralization = ((3−3) + (3−0) + (3−0)) / (3−1)² = 6/4 = 1.5; star-likeness 3/2;
        // Gini([3,0,0]) = Σ|xi−xj| / (2·n²·mean) = 12 / (2·9·1) = 2/3; density 3/9.
        // W = (B + Bᵀ)/2 has W01 = W02 = 0.5: L = [[1,−.5,−.5],[−.5,.5,0],[−.5,0,.5]], half the
        // Laplacian of the star K1,2 (eigenvalues 0, 1, 3) → 0, 0.5, 1.5: λ₂ = 0.5, gap 1.
        let g = layer_graph(&STAR, 3, &[0.5]);
        assert_eq!(in_degrees(&STAR, 3, 0.5), vec![3, 0, 0]);
        assert_eq!(g.centralization.get("0.5"), Some(&Some(1.5)));
        assert_eq!(g.star_likeness.get("0.5"), Some(&Some(1.5)));
        assert!((g.in_degree_gini.get("0.5").unwrap().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((g.edge_density.get("0.5").unwrap() - 1.0 / 3.0).abs() < 1e-12);
        let l2 = g.fiedler.get("0.5").unwrap().unwrap();
        let gap = g.fiedler_gap.get("0.5").unwrap().unwrap();
        assert!((l2 - 0.5).abs() < 1e-12 && (gap - 1.0).abs() < 1e-12);
        // weighted: (Ā + Āᵀ)/2 has the same off-diagonal 0.5s → same spectrum
        assert!((g.fiedler.get("weighted").unwrap().unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn component_count_matches_the_spectrum() {
        // T = 5, edges 0–1 and 2–3 (weight 1), token 4 isolated: three components, so the
        // Laplacian's spectrum is 0, 0, 0, 2, 2 and λ₂ = λ₃ − λ₂ = 0 without decomposing.
        let mut w = vec![0.0; 25];
        for (i, j) in [(0, 1), (2, 3)] {
            w[i * 5 + j] = 1.0;
            w[j * 5 + i] = 1.0;
        }
        assert_eq!(components(&w, 5), 3);
        assert_eq!(laplacian_fiedler(&w, 5), (Some(0.0), Some(0.0)));
        // Join 3–4: two components {0,1} and {2,3,4}. Spectrum 0, 0 (two components),
        // then the path P3's 1 and 3 and the edge's 2: λ₂ = 0, λ₃ − λ₂ = 1 (eigen path).
        w[3 * 5 + 4] = 1.0;
        w[4 * 5 + 3] = 1.0;
        assert_eq!(components(&w, 5), 2);
        let (l2, gap) = laplacian_fiedler(&w, 5);
        assert!(l2.unwrap().abs() < 1e-12);
        assert!((gap.unwrap() - 1.0).abs() < 1e-12, "{gap:?}");
    }

    #[test]
    fn disconnected_graph_has_zero_fiedler() {
        // identity attention: no edge between distinct tokens; all in-degrees 1 → 0 spread
        let id = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let g = layer_graph(&id, 3, &[0.1]);
        assert!(g.fiedler.get("0.1").unwrap().unwrap().abs() < 1e-12);
        assert_eq!(g.centralization.get("0.1"), Some(&Some(0.0)));
        // a complete graph K3 with unit weights: Laplacian eigenvalues 0, 3, 3 → λ₂ = 3
        let full = [1.0; 9];
        let g = layer_graph(&full, 3, &[0.5]);
        assert!((g.fiedler.get("0.5").unwrap().unwrap() - 3.0).abs() < 1e-12);
        assert!(g.fiedler_gap.get("0.5").unwrap().unwrap().abs() < 1e-12);
    }

    #[test]
    fn tiny_layers() {
        let g = layer_graph(&[1.0], 1, &[0.1]);
        assert_eq!(g.fiedler.get("0.1"), Some(&None));
        assert_eq!(g.centralization.get("0.1"), Some(&None));
    }
}
