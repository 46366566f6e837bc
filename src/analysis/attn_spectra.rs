//! Spectra of attention matrices: eigenvalue and singular-value gaps, participation ratios,
//! stable rank and the divergence of the top of the spectrum from the Marchenko–Pastur law.
//!
//! Source: the paper's `rmt.ipynb` (arXiv 2508.02546), which applies these to attention
//! maps (per head and head mean), not to weights. For a causal (lower-triangular) map the
//! eigenvalues are its diagonal, read directly and flagged in the output
//! (`eigen_from_diagonal`): the "eigenvalue" metrics of a decoder are then statements about
//! how much each token attends to itself.

use faer::Par;
use serde::Serialize;

use super::lanczos::{self, End};
use super::linalg::{dot, eigenvalue_moduli, singular_values, to_mat};

/// Aspect ratio γ of the Marchenko–Pastur density the notebook compares with (its square
/// matrices would give γ = 1, a singular density; it uses 0.99).
pub const MP_GAMMA: f64 = 0.99;
/// Number of largest |λ| the notebook keeps for the comparison.
pub const MP_TOP_EIGENVALUES: usize = 10;
/// Histogram bins of that comparison.
pub const MP_BINS: usize = 20;

/// Spectral summary of one `T × T` attention matrix. Values that divide by zero are
/// `+∞` (written as `null` in JSON); `None` when undefined (T < 2, decomposition failure).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatrixSpectrum {
    /// The eigenvalues are the diagonal (causal map), not a general decomposition.
    pub eigen_from_diagonal: bool,
    /// Tokens of the leading block the whole-spectrum metrics were computed on: T, or
    /// the cap `spectra_full_max_tokens` when the map is longer (see [`matrix_spectrum`]).
    pub full_spectrum_tokens: usize,
    /// |λ1| / |λ2| (moduli sorted in decreasing order).
    pub spectral_gap: Option<f64>,
    /// (Σ|λ|)² / Σ|λ|².
    pub participation_ratio: Option<f64>,
    /// σ1 / σ2.
    pub singular_gap: Option<f64>,
    /// (Σσ)² / Σσ².
    pub singular_participation_ratio: Option<f64>,
    /// Σσ² / σ1².
    pub stable_rank: Option<f64>,
    /// KL(histogram of the top-10 |λ|, mean-normalized ‖ MP density with γ = 0.99), nats.
    pub mp_kl: Option<f64>,
}

/// `values[0] / values[1]` of a decreasing list (`+∞` when the second is 0).
fn gap(values: &[f64]) -> Option<f64> {
    (values.len() >= 2).then(|| values[0] / values[1])
}

/// (Σx)² / Σx², 0 for an all-zero list (as the notebook).
fn participation(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let s: f64 = values.iter().sum();
    let s2: f64 = values.iter().map(|x| x * x).sum();
    Some(if s2 > 0.0 { s * s / s2 } else { 0.0 })
}

/// The (first, last) edges numpy's `histogram` uses: min and max of `values`, widened
/// by 0.5 each way when they coincide. Shared by [`histogram_counts`] and the MP fit's
/// bin centres so both see the same bins.
fn histogram_range(values: &[f64]) -> (f64, f64) {
    let (first, last) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if first == last {
        (first - 0.5, last + 0.5)
    } else {
        (first, last)
    }
}

/// Counts of `np.histogram(values, bins)`: equal-width bins over [min, max] (widened by
/// ±0.5 when all values are equal), the last bin closed, with numpy's edge corrections.
pub fn histogram_counts(values: &[f64], bins: usize) -> Option<Vec<usize>> {
    if values.is_empty() || bins == 0 || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let (first, last) = histogram_range(values);
    let step = (last - first) / bins as f64;
    let edge = |i: usize| {
        if i == bins {
            last
        } else {
            i as f64 * step + first
        }
    };
    let mut counts = vec![0usize; bins];
    for &v in values {
        let mut i = (((v - first) / (last - first)) * bins as f64) as usize;
        if i == bins {
            i -= 1;
        }
        if v < edge(i) {
            i -= 1;
        }
        if v >= edge(i + 1) && i != bins - 1 {
            i += 1;
        }
        counts[i] += 1;
    }
    Some(counts)
}

/// Marchenko–Pastur density with ratio γ and unit variance:
/// √((b − x)(x − a)) / (2π γ x) on [a, b] = [(1 − √γ)², (1 + √γ)²], 0 elsewhere.
pub fn mp_density(x: f64, gamma: f64) -> f64 {
    let a = (1.0 - gamma.sqrt()).powi(2);
    let b = (1.0 + gamma.sqrt()).powi(2);
    if x >= a && x <= b {
        ((b - x) * (x - a)).sqrt() / (2.0 * std::f64::consts::PI * gamma * x)
    } else {
        0.0
    }
}

/// The notebook's `compute_marchenko_pastur_distance` on moduli sorted in decreasing order:
/// keep the top 10, divide by their mean, histogram in 20 bins, evaluate the MP density at
/// the bin centres, normalize both to sum 1 and return KL(hist ‖ MP) (`+∞` when the
/// histogram has mass where the density is 0). `None` for fewer than 2 values or a zero
/// mean.
pub fn mp_kl(moduli_desc: &[f64]) -> Option<f64> {
    let top = &moduli_desc[..moduli_desc.len().min(MP_TOP_EIGENVALUES)];
    if top.len() < 2 {
        return None;
    }
    let mean = top.iter().sum::<f64>() / top.len() as f64;
    if mean <= 0.0 {
        return None;
    }
    let normalized: Vec<f64> = top.iter().map(|x| x / mean).collect();
    let counts = histogram_counts(&normalized, MP_BINS)?;
    let (first, last) = histogram_range(&normalized);
    let step = (last - first) / MP_BINS as f64;
    let density: Vec<f64> = (0..MP_BINS)
        .map(|i| mp_density(first + (i as f64 + 0.5) * step, MP_GAMMA))
        .collect();
    let dsum: f64 = density.iter().sum();
    if dsum <= 0.0 {
        return None;
    }
    let n = top.len() as f64;
    Some(super::stats::kl_divergence(
        counts.iter().map(|&c| c as f64 / n),
        density.iter().map(|d| d / dsum),
    ))
}

/// Products with AᵀA one top-singular-value computation may spend before it falls back
/// to the dense solver.
const MAX_PRODUCTS: usize = 2000;

/// The `k` largest singular values of the `t × t` row-major matrix `a` (lower triangular
/// when `triangular`), non-increasing: the square roots of the largest eigenvalues of
/// AᵀA by Lanczos, exact to 1e-10 · σ₁² in σ²; `None` if Lanczos did not converge.
pub fn top_singular_values<T: Copy + Into<f64>>(
    a: &[T],
    t: usize,
    triangular: bool,
    k: usize,
) -> Option<Vec<f64>> {
    let eig = lanczos::extreme_eigenvalues(t, k, End::Largest, &[], MAX_PRODUCTS, |x, y| {
        // y = Aᵀ(Ax) = Σᵢ (aᵢ · x) aᵢ over the rows aᵢ, in one pass over A: each row is
        // used twice while it is in cache (only the lower triangle of a causal map)
        y.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..t {
            let row = &a[i * t..i * t + if triangular { i + 1 } else { t }];
            let s = dot(row, x);
            for (yj, &r) in y.iter_mut().zip(row) {
                *yj += r.into() * s;
            }
        }
    })?;
    Some(eig.iter().map(|&l| l.max(0.0).sqrt()).collect())
}

/// Σσ² / σ₁² (0 for a zero matrix).
fn stable_rank_of(frobenius2: f64, s0: f64) -> f64 {
    if s0 > 0.0 {
        frobenius2 / (s0 * s0)
    } else {
        0.0
    }
}

/// Spectral summary of a `T × T` matrix (row-major). `triangular`: the matrix is lower
/// triangular, so its eigenvalues are its diagonal.
///
/// Up to `full_max` tokens every metric reads the whole spectrum of the dense
/// decompositions. Beyond it (the cost is O(T³) per map), the singular gap and the stable
/// rank come from the two largest singular values by Lanczos ([`top_singular_values`])
/// and ‖A‖²_F, while the metrics that need a whole spectrum (the singular participation
/// ratio; for a non-triangular map also the eigenvalue gap, participation ratio and MP
/// divergence) are computed on the leading `full_max × full_max` block — for a causal
/// map exactly the attention map of the first `full_max` tokens. `full_spectrum_tokens`
/// says which.
pub fn matrix_spectrum<T: Copy + Into<f64>>(
    a: &[T],
    t: usize,
    triangular: bool,
    full_max: usize,
) -> MatrixSpectrum {
    let n = t.min(full_max.max(2));
    let block = |i: usize, j: usize| a[i * t + j].into();
    let mat = faer::Mat::from_fn(n, n, block);
    let mut moduli = if triangular {
        Some((0..t).map(|i| block(i, i).abs()).collect::<Vec<f64>>())
    } else {
        eigenvalue_moduli(mat.as_ref(), Par::Seq)
    };
    if let Some(m) = moduli.as_mut() {
        m.sort_by(|x, y| y.total_cmp(x));
    }
    let sv = singular_values(mat.as_ref(), Par::Seq);
    drop(mat);
    let (singular_gap, stable_rank) = if n == t {
        (
            sv.as_deref().and_then(gap),
            sv.as_ref().and_then(|s| {
                let s0 = *s.first()?;
                Some(stable_rank_of(s.iter().map(|x| x * x).sum(), s0))
            }),
        )
    } else {
        let frobenius2: f64 = a.iter().map(|&x| x.into().powi(2)).sum();
        match top_singular_values(a, t, triangular, 2)
            .or_else(|| singular_values(to_mat(a, t, t).as_ref(), Par::Seq))
        {
            Some(top) => (gap(&top), Some(stable_rank_of(frobenius2, top[0]))),
            None => (None, None),
        }
    };
    MatrixSpectrum {
        eigen_from_diagonal: triangular,
        full_spectrum_tokens: n.min(t),
        spectral_gap: moduli.as_deref().and_then(gap),
        participation_ratio: moduli.as_deref().and_then(participation),
        singular_gap,
        singular_participation_ratio: sv.as_deref().and_then(participation),
        stable_rank,
        mp_kl: moduli.as_deref().and_then(mp_kl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_map_by_hand() {
        // A = [[1,0],[.5,.5]]: eigenvalues = diagonal 1, 0.5 → gap 2, PR (1.5)²/1.25 = 1.8.
        // AᵀA = [[1.25,.25],[.25,.25]]: trace 1.5, det 0.25 → σ² = 0.75 ± √0.3125
        // → σ1² = 1.309017, σ2² = 0.190983; stable rank 1.5 / 1.309017 = 1.145898.
        let s = matrix_spectrum(&[1.0, 0.0, 0.5, 0.5], 2, true, 256);
        assert!(s.eigen_from_diagonal);
        assert!((s.spectral_gap.unwrap() - 2.0).abs() < 1e-12);
        assert!((s.participation_ratio.unwrap() - 1.8).abs() < 1e-12);
        let (s1, s2) = (
            (0.75 + 0.3125f64.sqrt()).sqrt(),
            (0.75 - 0.3125f64.sqrt()).sqrt(),
        );
        assert!((s.singular_gap.unwrap() - s1 / s2).abs() < 1e-9);
        assert!((s.stable_rank.unwrap() - 1.5 / (s1 * s1)).abs() < 1e-9);
        let pr = (s1 + s2).powi(2) / 1.5;
        assert!((s.singular_participation_ratio.unwrap() - pr).abs() < 1e-9);
    }

    #[test]
    fn general_eigenvalues_match_the_diagonal_route() {
        // the same triangular matrix through the general eigensolver
        let a = [1.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.2, 0.3, 0.5];
        let d = matrix_spectrum(&a, 3, true, 256);
        let g = matrix_spectrum(&a, 3, false, 256);
        assert!((d.spectral_gap.unwrap() - g.spectral_gap.unwrap()).abs() < 1e-9);
        assert!((d.participation_ratio.unwrap() - g.participation_ratio.unwrap()).abs() < 1e-9);
        // [[.5,.5],[.5,.5]]: eigenvalues 1 and 0 (to rounding) → a gap beyond 1e12
        let u = matrix_spectrum(&[0.5f64, 0.5, 0.5, 0.5], 2, false, 256);
        assert!(u.spectral_gap.unwrap() > 1e12);
        assert!((u.participation_ratio.unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn capped_spectra_match_the_dense_path() {
        // METRICS.md: beyond spectra_full_max_tokens the singular gap and stable rank (by
        // Lanczos) agree with the dense decomposition of the whole map within 1e-7 relative;
        // the whole-spectrum metrics equal the dense ones of the leading block
        use crate::analysis::graph::tests::attention_like;
        for (t, cap, seed) in [(96, 40, 1), (300, 128, 2), (520, 256, 3)] {
            let causal = attention_like(t, seed);
            // a bidirectional map: the causal one plus its transpose, rows renormalized
            let mut bidir: Vec<f64> = (0..t * t)
                .map(|p| causal[p] + causal[(p % t) * t + p / t])
                .collect();
            for row in bidir.chunks_exact_mut(t) {
                let s: f64 = row.iter().sum();
                row.iter_mut().for_each(|x| *x /= s);
            }
            for (a, triangular) in [(&causal, true), (&bidir, false)] {
                let f32s: Vec<f32> = a.iter().map(|&x| x as f32).collect();
                let dense = matrix_spectrum(&f32s, t, triangular, t);
                let capped = matrix_spectrum(&f32s, t, triangular, cap);
                assert_eq!(
                    (dense.full_spectrum_tokens, capped.full_spectrum_tokens),
                    (t, cap)
                );
                let close = |x: Option<f64>, y: Option<f64>, rel: f64| {
                    let (x, y) = (x.unwrap(), y.unwrap());
                    assert!((x - y).abs() <= rel * y.abs(), "t {t}: {x} vs {y}");
                };
                close(capped.singular_gap, dense.singular_gap, 1e-7);
                close(capped.stable_rank, dense.stable_rank, 1e-7);
                let block: Vec<f32> = (0..cap * cap)
                    .map(|p| f32s[(p / cap) * t + p % cap])
                    .collect();
                let head = matrix_spectrum(&block, cap, triangular, cap);
                assert_eq!(
                    capped.singular_participation_ratio,
                    head.singular_participation_ratio
                );
                if triangular {
                    // the diagonal is read whole: no cap on the eigenvalue metrics
                    assert_eq!(capped.spectral_gap, dense.spectral_gap);
                    assert_eq!(capped.participation_ratio, dense.participation_ratio);
                    assert_eq!(capped.mp_kl, dense.mp_kl);
                } else {
                    assert_eq!(capped.participation_ratio, head.participation_ratio);
                    assert_eq!(capped.mp_kl, head.mp_kl);
                }
            }
        }
    }

    #[test]
    fn histogram_like_numpy() {
        // np.histogram([0, 1, 1, 2, 3], bins=3)[0] = [1, 2, 2] (edges 0, 1, 2, 3; last bin closed)
        assert_eq!(
            histogram_counts(&[0.0, 1.0, 1.0, 2.0, 3.0], 3),
            Some(vec![1, 2, 2])
        );
        // all equal: range widened to [0.5, 1.5], 1.0 falls in the middle bin of 3 (edges
        // 0.5, 0.833, 1.167, 1.5)
        assert_eq!(histogram_counts(&[1.0, 1.0], 3), Some(vec![0, 2, 0]));
        // np.histogram([0.1, 0.2, 0.3], bins=2) = [1, 2]: edges 0.1, 0.2, 0.3 and 0.2 → bin 1
        assert_eq!(histogram_counts(&[0.1, 0.2, 0.3], 2), Some(vec![1, 2]));
    }

    #[test]
    fn mp_kl_matches_scipy() {
        // Reference from numpy/scipy, the notebook's own code:
        //   e = np.array([3., 1., .5, .25]); x = e / e.mean()
        //   h, edges = np.histogram(x, bins=20, density=True); c = (edges[:-1] + edges[1:]) / 2
        //   mp = MP density(c, 0.99); scipy.stats.entropy(h / h.sum(), mp / mp.sum())
        //   → 1.3855136688937408
        let kl = mp_kl(&[3.0, 1.0, 0.5, 0.25]).unwrap();
        assert!((kl - 1.3855136688937408).abs() < 1e-9, "{kl}");
        assert_eq!(mp_kl(&[1.0]), None);
        assert_eq!(mp_kl(&[0.0, 0.0]), None);
        // MP density integrates to 1 on its support (midpoint rule, 200 000 cells)
        let (a, b) = (
            (1.0 - 0.99f64.sqrt()).powi(2),
            (1.0 + 0.99f64.sqrt()).powi(2),
        );
        let n = 200_000;
        let h = (b - a) / n as f64;
        let integral: f64 = (0..n)
            .map(|i| mp_density(a + (i as f64 + 0.5) * h, 0.99) * h)
            .sum();
        assert!((integral - 1.0).abs() < 1e-3, "{integral}");
    }
}
