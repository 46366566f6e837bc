//! The inverse of a shifted graph Laplacian, (L + σI)⁻¹, as an operator for Lanczos:
//! shift-invert turns the smallest eigenvalues of L into the largest of the inverse,
//! where Lanczos converges at the speed of their *relative* gaps.
//!
//! Why: the Laplacians of attention graphs have their small eigenvalues clustered
//! (0.4960, 0.4962, … under a sink whose degree puts λ_max near T / 2), so plain Lanczos
//! on L needs thousands of products per graph — two seconds for one 1,024-token layer's
//! weighted graph, most of `analyze`'s time at length. On (L + σI)⁻¹ the same cluster is
//! spread over a relative width of 1e-3 instead of 1e-7, and a few dozen products do.
//! The factorizations are faer's Cholesky: dense for dense graphs (the weighted,
//! unthresholded one), sparse with its fill-reducing ordering for thresholded graphs.

use faer::linalg::solvers::Solve;
use faer::sparse::{SparseColMat, Triplet};
use faer::{Mat, MatMut, Side};

/// A factorization of L + σI.
enum Factor {
    Dense(faer::linalg::solvers::Llt<f64>),
    Sparse(faer::sparse::linalg::solvers::Llt<u32, f64>),
}

/// (L + σI)⁻¹ for a Laplacian L = D − W given by its off-diagonal weights.
pub struct ShiftedInverse {
    n: usize,
    factor: Factor,
    /// σ: L + σI is positive definite for any σ > 0 (L is positive semi-definite).
    pub sigma: f64,
}

/// Above this share of nonzero off-diagonal entries the dense factorization is faster
/// than the sparse one (which then fills in anyway).
const DENSE_FROM: f64 = 0.25;

/// σ relative to the largest degree: small enough that the smallest nonzero eigenvalues
/// stay far from σ in relative terms (the convergence speed), large enough that L + σI is
/// positive definite in floating point (rounding perturbs eigenvalues by ~1e-16 · λ_max).
const SHIFT: f64 = 1e-7;

impl ShiftedInverse {
    /// Factors L + σI for the `n × n` Laplacian whose off-diagonal weights `rows(i)` lists
    /// (each unordered pair in both rows) and whose diagonal is `degrees`. `None` when the
    /// factorization fails (it cannot for a true Laplacian; then the caller falls back).
    pub fn new<R: Iterator<Item = (usize, f64)>>(
        n: usize,
        degrees: &[f64],
        rows: impl Fn(usize) -> R,
    ) -> Option<Self> {
        let max_degree = degrees.iter().fold(0.0f64, |a, &d| a.max(d));
        let sigma = SHIFT * max_degree.max(f64::MIN_POSITIVE);
        let nnz: usize = (0..n).map(|i| rows(i).count()).sum();
        let factor = if nnz as f64 >= DENSE_FROM * (n * n) as f64 {
            let mut a = Mat::<f64>::zeros(n, n);
            for i in 0..n {
                a[(i, i)] = degrees[i] + sigma;
                for (j, w) in rows(i) {
                    a[(i, j)] = -w;
                }
            }
            Factor::Dense(a.llt(Side::Lower).ok()?)
        } else {
            // lower triangle only (the side the factorization reads)
            let mut triplets = Vec::with_capacity(nnz / 2 + n);
            for (i, &d) in degrees.iter().enumerate().take(n) {
                triplets.push(Triplet::new(i as u32, i as u32, d + sigma));
                for (j, w) in rows(i).filter(|&(j, _)| j < i) {
                    triplets.push(Triplet::new(i as u32, j as u32, -w));
                }
            }
            let a = SparseColMat::<u32, f64>::try_new_from_triplets(n, n, &triplets).ok()?;
            Factor::Sparse(a.sp_cholesky(Side::Lower).ok()?)
        };
        Some(Self { n, factor, sigma })
    }

    /// y = (L + σI)⁻¹ x.
    pub fn apply(&self, x: &[f64], y: &mut [f64]) {
        y.copy_from_slice(x);
        let rhs = MatMut::from_column_major_slice_mut(y, self.n, 1);
        match &self.factor {
            Factor::Dense(f) => f.solve_in_place(rhs),
            Factor::Sparse(f) => f.solve_in_place(rhs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path 0 – 1 – 2 with weights 1 and 2: L = [[1,−1,0],[−1,3,−2],[0,−2,2]].
    fn path(i: usize) -> std::vec::IntoIter<(usize, f64)> {
        match i {
            0 => vec![(1, 1.0)],
            1 => vec![(0, 1.0), (2, 2.0)],
            _ => vec![(1, 2.0)],
        }
        .into_iter()
    }

    #[test]
    fn inverts_the_shifted_laplacian_dense_and_sparse() {
        let degrees = [1.0, 3.0, 2.0];
        // dense (6 of 9 entries nonzero) …
        let inv = ShiftedInverse::new(3, &degrees, path).unwrap();
        assert!(matches!(inv.factor, Factor::Dense(_)));
        let x = [0.3, -1.2, 0.9];
        let mut y = [0.0; 3];
        inv.apply(&x, &mut y);
        // (L + σI) y must give back x
        let s = inv.sigma;
        let back = [
            (1.0 + s) * y[0] - y[1],
            -y[0] + (3.0 + s) * y[1] - 2.0 * y[2],
            -2.0 * y[1] + (2.0 + s) * y[2],
        ];
        for (b, x) in back.iter().zip(x) {
            assert!((b - x).abs() < 1e-9, "{back:?} vs {x:?}");
        }
        // … and a long path, sparse: L y = x − σ y again
        let n = 50;
        let rows = |i: usize| {
            let mut r = Vec::new();
            if i > 0 {
                r.push((i - 1, 1.0));
            }
            if i + 1 < n {
                r.push((i + 1, 1.0));
            }
            r.into_iter()
        };
        let degrees: Vec<f64> = (0..n).map(|i| rows(i).count() as f64).collect();
        let inv = ShiftedInverse::new(n, &degrees, rows).unwrap();
        assert!(matches!(inv.factor, Factor::Sparse(_)));
        let x: Vec<f64> = (0..n).map(|i| ((i * 7) % 5) as f64 - 2.0).collect();
        let mut y = vec![0.0; n];
        inv.apply(&x, &mut y);
        for i in 0..n {
            let ly: f64 =
                (degrees[i] + inv.sigma) * y[i] - rows(i).map(|(j, w)| w * y[j]).sum::<f64>();
            assert!((ly - x[i]).abs() < 1e-6 * y.iter().fold(1.0f64, |a, v| a.max(v.abs())));
        }
    }
}
