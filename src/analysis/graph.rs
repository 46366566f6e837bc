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
use rayon::prelude::*;
use serde::Serialize;

use super::keyed::{threshold_key, Keyed};
use super::lanczos::{self, End};
use super::linalg::symmetric_eigenvalues;
use super::shift_invert::ShiftedInverse;
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

/// Below this many tokens the Fiedler values come from a dense decomposition (faster
/// there, and exact); from it on, from shift-invert [`lanczos`](super::lanczos).
pub const ITERATIVE_FROM: usize = 192;

/// Products with (L + σI)⁻¹ one Fiedler computation may spend before it falls back to
/// the dense solver (well beyond what attention graphs need, see `benches/analyze.rs`).
const MAX_PRODUCTS: usize = 4000;

/// A symmetric weight matrix W without its diagonal (self-loops cancel in the
/// Laplacian), as adjacency lists: thresholded graphs are sparse, and even a dense one
/// costs one pass per Laplacian product.
#[derive(Debug)]
pub struct Adjacency {
    t: usize,
    start: Vec<usize>,
    cols: Vec<u32>,
    weights: Vec<f64>,
}

impl Adjacency {
    /// From a weight function over the pairs i ≠ j (called twice per unordered pair,
    /// i > j: once to count each row's entries, once to fill them, so the lists are
    /// built in place without a growing vector per row; zero weights are left out).
    pub fn from_fn(t: usize, weight: impl Fn(usize, usize) -> f64) -> Self {
        let mut count = vec![0usize; t];
        for_pairs(t, |i, j| {
            if weight(i, j) != 0.0 {
                count[i] += 1;
                count[j] += 1;
            }
        });
        let mut start = Vec::with_capacity(t + 1);
        start.push(0);
        for c in &count {
            start.push(start[start.len() - 1] + c);
        }
        let nnz = start[t];
        let (mut cols, mut weights) = (vec![0u32; nnz], vec![0.0f64; nnz]);
        // next free slot of each row; every row's columns come out in increasing order
        let mut next = start[..t].to_vec();
        for_pairs(t, |i, j| {
            let w = weight(i, j);
            if w != 0.0 {
                for (row, col) in [(i, j), (j, i)] {
                    cols[next[row]] = col as u32;
                    weights[next[row]] = w;
                    next[row] += 1;
                }
            }
        });
        Adjacency {
            t,
            start,
            cols,
            weights,
        }
    }

    /// From a dense row-major symmetric `t × t` matrix (its diagonal ignored).
    pub fn from_dense(w: &[f64], t: usize) -> Self {
        Self::from_fn(t, |i, j| w[i * t + j])
    }

    fn row(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let r = self.start[i]..self.start[i + 1];
        self.cols[r.clone()]
            .iter()
            .zip(&self.weights[r])
            .map(|(&j, &w)| (j as usize, w))
    }

    /// Weighted degrees Σ_{j≠i} w_ij, the Laplacian's diagonal.
    fn degrees(&self) -> Vec<f64> {
        (0..self.t)
            .map(|i| self.row(i).map(|(_, w)| w).sum())
            .collect()
    }

    /// Connected components (an edge wherever w_ij > 0), by union-find.
    pub fn components(&self) -> usize {
        self.component_labels().1
    }

    /// Each token's component (a representative token's index) and the number of
    /// components, by union-find.
    fn component_labels(&self) -> (Vec<usize>, usize) {
        let mut parent: Vec<usize> = (0..self.t).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        let mut count = self.t;
        for i in 0..self.t {
            for (j, w) in self.row(i) {
                if j < i && w > 0.0 {
                    let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                    if a != b {
                        parent[a] = b;
                        count -= 1;
                    }
                }
            }
        }
        let labels = (0..self.t).map(|i| root(&mut parent, i)).collect();
        (labels, count)
    }

    /// The dense Laplacian L = diag(Σ_{j≠i} w_ij) − W.
    fn dense_laplacian(&self) -> faer::Mat<f64> {
        let deg = self.degrees();
        let mut lap = faer::Mat::<f64>::zeros(self.t, self.t);
        for i in 0..self.t {
            lap[(i, i)] = deg[i];
            for (j, w) in self.row(i) {
                lap[(i, j)] = -w;
            }
        }
        lap
    }
}

/// Side of the square tiles [`for_pairs`] visits the pairs in.
const TILE: usize = 64;

/// Calls `f(i, j)` for every pair i > j of `0..t`, tile by tile: a weight that reads
/// both (i, j) and (j, i) of a row-major matrix then finds both in cache (row by row,
/// (j, i) walks down a column, a cache miss per pair: 9 % of `analyze` at 2,048 tokens).
/// The order keeps each row's partners increasing: tiles (I, J ≤ I) with I, then J,
/// ascending, and inside a tile i, then j, ascending — row r meets its partners
/// j < r in the tiles left of its diagonal tile, then inside it (j < r before i > r, as
/// i = r comes first), then i > r in the tiles below.
fn for_pairs(t: usize, mut f: impl FnMut(usize, usize)) {
    for ib in (0..t).step_by(TILE) {
        for jb in (0..=ib).step_by(TILE) {
            for i in ib..(ib + TILE).min(t) {
                for j in jb..(jb + TILE).min(i) {
                    f(i, j);
                }
            }
        }
    }
}

/// (λ₂, λ₃ − λ₂) of the Laplacian of a symmetric weight matrix W given as a dense
/// row-major `T × T` buffer; see [`adjacency_fiedler`].
pub fn laplacian_fiedler(w: &[f64], t: usize) -> (Option<f64>, Option<f64>) {
    adjacency_fiedler(&Adjacency::from_dense(w, t))
}

/// (λ₂, λ₃ − λ₂) of the Laplacian of W; `None` where the eigenvalue does not exist
/// (T < 2, T < 3) or the decomposition failed.
///
/// From [`ITERATIVE_FROM`] tokens on, by shift-invert Lanczos
/// ([`ShiftedInverse`]): the largest eigenvalues μ of (L + σI)⁻¹ on the complement of
/// L's null space (one constant vector per component, known exactly from the
/// components), λ = 1/μ − σ. Below, or if that fails, a dense decomposition.
pub fn adjacency_fiedler(adj: &Adjacency) -> (Option<f64>, Option<f64>) {
    let t = adj.t;
    if t < 2 {
        return (None, None);
    }
    // The multiplicity of the Laplacian's eigenvalue 0 is the number of connected
    // components: with three or more, λ₂ = λ₃ = 0 exactly and no decomposition is
    // needed (the usual case at high thresholds, where most tokens are isolated).
    let (labels, components) = adj.component_labels();
    if t >= 3 && components >= 3 {
        return (Some(0.0), Some(0.0));
    }
    let iterative = (t >= ITERATIVE_FROM)
        .then(|| shift_invert_fiedler(adj, &labels))
        .flatten();
    let (l2, l3) = match iterative {
        Some(v) => v,
        None => {
            let Some(eig) = symmetric_eigenvalues(adj.dense_laplacian().as_ref(), Par::Seq) else {
                return (None, None);
            };
            (eig[1], eig.get(2).copied())
        }
    };
    // L is positive semi-definite: a λ₂ of −1e−17 is rounding, report it as 0
    let l2 = l2.max(0.0);
    (Some(l2), l3.map(|l3| (l3 - l2).max(0.0)))
}

/// The Laplacian's null space from each token's component: one unit vector per
/// component, constant on it.
fn null_space(labels: &[usize]) -> Vec<Vec<f64>> {
    let mut reps: Vec<usize> = labels.to_vec();
    reps.sort_unstable();
    reps.dedup();
    reps.iter()
        .map(|&r| {
            let size = labels.iter().filter(|&&l| l == r).count() as f64;
            labels
                .iter()
                .map(|&l| if l == r { 1.0 / size.sqrt() } else { 0.0 })
                .collect()
        })
        .collect()
}

/// (λ₂, λ₃) of a graph with one or two components (T ≥ 3; `labels` its tokens'
/// components) by shift-invert Lanczos; `None` if the factorization or Lanczos fails.
fn shift_invert_fiedler(adj: &Adjacency, labels: &[usize]) -> Option<(f64, Option<f64>)> {
    let t = adj.t;
    let null = null_space(labels);
    let inverse = ShiftedInverse::new(t, &adj.degrees(), |i| adj.row(i), &null)?;
    // with two components λ₂ = 0 exactly and λ₃ is the smallest nonzero eigenvalue
    let zeros = null.len() - 1;
    let mu =
        lanczos::extreme_eigenvalues(t, 2 - zeros, End::Largest, &null, MAX_PRODUCTS, |x, y| {
            inverse.apply(x, y)
        })?;
    let mut lambda: Vec<f64> = vec![0.0; zeros];
    lambda.extend(mu.iter().map(|m| 1.0 / m - inverse.sigma));
    Some((lambda[0], lambda.get(1).copied()))
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
    let fiedler: Vec<(Option<f64>, Option<f64>)> = thresholds
        .par_iter()
        .map(|&tau| {
            let above = |i: usize, j: usize| f64::from(u8::from(mean[i * t + j] > tau));
            adjacency_fiedler(&Adjacency::from_fn(t, |i, j| {
                0.5 * (above(i, j) + above(j, i))
            }))
        })
        .collect();
    for (&tau, (l2, gap)) in thresholds.iter().zip(fiedler) {
        let key = threshold_key(tau);
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
    let (l2, gap) = adjacency_fiedler(&Adjacency::from_fn(t, |i, j| {
        0.5 * (mean[i * t + j] + mean[j * t + i])
    }));
    g.fiedler.push(super::names::WEIGHTED, l2);
    g.fiedler_gap.push(super::names::WEIGHTED, gap);
    g
}

#[cfg(test)]
pub(crate) mod tests {
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
        assert_eq!(Adjacency::from_dense(&w, 5).components(), 3);
        assert_eq!(laplacian_fiedler(&w, 5), (Some(0.0), Some(0.0)));
        // Join 3–4: two components {0,1} and {2,3,4}. Spectrum 0, 0 (two components),
        // then the path P3's 1 and 3 and the edge's 2: λ₂ = 0, λ₃ − λ₂ = 1 (eigen path).
        w[3 * 5 + 4] = 1.0;
        w[4 * 5 + 3] = 1.0;
        assert_eq!(Adjacency::from_dense(&w, 5).components(), 2);
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

    /// A causal attention-like head mean: softmax rows of random logits, a sink on key 0
    /// and a previous-token bump, so that thresholds cut out graphs with twins, isolated
    /// tokens and hubs.
    pub(crate) fn attention_like(t: usize, seed: u64) -> Vec<f64> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut a = vec![0.0; t * t];
        for i in 0..t {
            let row = &mut a[i * t..(i + 1) * t];
            for (j, x) in row.iter_mut().enumerate().take(i + 1) {
                let bonus = if j == 0 {
                    4.0
                } else if j + 1 == i {
                    2.0
                } else {
                    0.0
                };
                *x = (bonus + 2.0 * rng.random::<f64>()).exp();
            }
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= s);
        }
        a
    }

    #[test]
    fn lanczos_fiedler_values_match_the_dense_decomposition() {
        // METRICS.md: from ITERATIVE_FROM tokens on, λ₂ and λ₃ − λ₂ agree with the dense
        // decomposition within 1e-8 · ‖L‖ (Lanczos' residual tolerance is 1e-10 · ‖L‖)
        let (mut checked, mut dense_shifts) = (0, 0);
        for (t, seed) in [(ITERATIVE_FROM, 1), (300, 2), (520, 3)] {
            let mean = attention_like(t, seed);
            let graphs = [0.001, 0.005, 0.02].map(|tau| {
                let above = |i: usize, j: usize| f64::from(u8::from(mean[i * t + j] > tau));
                Adjacency::from_fn(t, |i, j| 0.5 * (above(i, j) + above(j, i)))
            });
            let weighted = Adjacency::from_fn(t, |i, j| 0.5 * (mean[i * t + j] + mean[j * t + i]));
            for adj in graphs.iter().chain([&weighted]) {
                let (l2, gap) = adjacency_fiedler(adj);
                let lap = adj.dense_laplacian();
                let norm = adj.degrees().iter().fold(0.0f64, |a, &d| a.max(2.0 * d));
                let eig = symmetric_eigenvalues(lap.as_ref(), Par::Seq).unwrap();
                if adj.components() >= 3 {
                    continue;
                }
                checked += 1;
                assert!(
                    shift_invert_fiedler(adj, &adj.component_labels().0).is_some(),
                    "t {t}: the iterative path fell back to the dense one"
                );
                let (want2, want_gap) = (eig[1].max(0.0), (eig[2] - eig[1].max(0.0)).max(0.0));
                // the dense factorizations' shift lies below λ₂ and, on these clustered
                // spectra, within 10 % of it (else the products would be the hundreds of
                // a shift near 0)
                let null = null_space(&adj.component_labels().0);
                let inv = ShiftedInverse::new(t, &adj.degrees(), |i| adj.row(i), &null).unwrap();
                if inv.sigma < 0.0 {
                    dense_shifts += 1;
                    assert!(
                        -inv.sigma < want2 && -inv.sigma > 0.9 * want2,
                        "t {t}: {}",
                        inv.sigma
                    );
                }
                let tol = 1e-8 * norm;
                assert!(
                    (l2.unwrap() - want2).abs() <= tol,
                    "t {t}: {l2:?} vs {want2}"
                );
                assert!(
                    (gap.unwrap() - want_gap).abs() <= tol,
                    "t {t}: {gap:?} vs {want_gap}"
                );
            }
        }
        assert!(
            checked >= 8,
            "only {checked} graphs reached the iterative path"
        );
        assert!(
            dense_shifts >= 3,
            "only {dense_shifts} dense shifted factorizations"
        );
    }

    #[test]
    fn two_components_give_a_zero_fiedler_value_and_the_next_one_iteratively() {
        // the weighted graph of an attention-like map with token 7 cut off: λ₂ = 0 exactly,
        // λ₃ the smallest nonzero eigenvalue of the rest
        let t = ITERATIVE_FROM + 8;
        let mean = attention_like(t, 9);
        let adj = Adjacency::from_fn(t, |i, j| {
            if i == 7 || j == 7 {
                0.0
            } else {
                0.5 * (mean[i * t + j] + mean[j * t + i])
            }
        });
        assert_eq!(adj.components(), 2);
        let (l2, l3) = shift_invert_fiedler(&adj, &adj.component_labels().0).unwrap();
        let eig = symmetric_eigenvalues(adj.dense_laplacian().as_ref(), Par::Seq).unwrap();
        assert_eq!(l2, 0.0);
        let l3 = l3.unwrap();
        assert!((l3 - eig[2]).abs() <= 1e-9 * eig[2], "{l3} vs {}", eig[2]);
        assert!(eig[2] > 1e-3, "the rest is connected: {}", eig[2]);
    }

    #[test]
    fn tiled_pairs_keep_every_row_sorted() {
        // every pair once, and each row's partners in increasing order, across tile edges
        for t in [1, 5, TILE, TILE + 3, 3 * TILE - 1] {
            let mut seen = vec![0u8; t * t];
            for_pairs(t, |i, j| {
                assert!(i > j);
                seen[i * t + j] += 1;
            });
            assert!(
                (0..t * t).all(|p| seen[p] == u8::from(p / t > p % t)),
                "t {t}"
            );
            let w = |i: usize, j: usize| ((i * 7 + j * 3) % 5) as f64;
            let adj = Adjacency::from_fn(t, w);
            for i in 0..t {
                let row: Vec<(usize, f64)> = adj.row(i).collect();
                let want: Vec<(usize, f64)> = (0..t)
                    .filter(|&j| j != i)
                    .map(|j| (j, w(i.max(j), i.min(j))))
                    .filter(|&(_, x)| x != 0.0)
                    .collect();
                assert_eq!(row, want, "t {t}, row {i}");
            }
        }
    }

    #[test]
    fn tiny_layers() {
        let g = layer_graph(&[1.0], 1, &[0.1]);
        assert_eq!(g.fiedler.get("0.1"), Some(&None));
        assert_eq!(g.centralization.get("0.1"), Some(&None));
    }
}
