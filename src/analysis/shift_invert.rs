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

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::linalg::solvers::Solve;
use faer::sparse::{SparseColMat, Triplet};
use faer::{Mat, MatMut, Par, Side};

/// A factorization of L + σI (dense: of L + α Σ_c u_c u_cᵀ + σI, see
/// [`ShiftedInverse::new`]).
#[derive(Debug)]
enum Factor {
    /// The lower Cholesky factor, in the lower triangle.
    Dense(Mat<f64>),
    Sparse(faer::sparse::linalg::solvers::Llt<u32, f64>),
}

/// (L + σI)⁻¹ for a Laplacian L = D − W given by its off-diagonal weights, on the
/// complement of L's null space.
#[derive(Debug)]
pub struct ShiftedInverse {
    n: usize,
    factor: Factor,
    /// σ: the eigenvalue λ of L is 1/μ − σ for the eigenvalue μ of the inverse. Positive
    /// and tiny for a sparse factorization (L + σI is positive definite for any σ > 0);
    /// for a dense one, minus a shift just below λ₂ (the dense matrix has L's null space
    /// moved out of the way, so L + σI is positive definite while −σ < λ₂).
    pub sigma: f64,
}

/// From this share of nonzero off-diagonal entries on, the dense factorization (with its
/// shift near λ₂) is faster than the sparse one: at 2,048 tokens a graph with a quarter
/// of the pairs as edges (τ = 0.001) fills its sparse factor in and needed 150–200
/// products with σ ≈ 0.
const DENSE_FROM: f64 = 0.1;

/// σ relative to the largest degree: small enough that the smallest nonzero eigenvalues
/// stay far from σ in relative terms (the convergence speed), large enough that L + σI is
/// positive definite in floating point (rounding perturbs eigenvalues by ~1e-16 · λ_max).
const SHIFT: f64 = 1e-7;

/// Shifts tried for a dense factorization, as fractions of the way from the upper bound
/// on λ₂ down to 0: the first whose matrix is positive definite (it is below λ₂) is
/// taken; the last, 0, always is.
const MARGINS: [f64; 6] = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0];

impl ShiftedInverse {
    /// Factors L + σI for the `n × n` Laplacian whose off-diagonal weights `rows(i)` lists
    /// (each unordered pair in both rows), whose diagonal is `degrees` and whose null
    /// space has the orthonormal basis `null` (one constant unit vector per connected
    /// component). `None` when the factorization fails (it cannot for a true Laplacian;
    /// then the caller falls back).
    ///
    /// Sparse graphs: σ = 1e-7 · the largest degree. Dense graphs (the weighted one) have
    /// their smallest nonzero eigenvalues clustered around 1/2 (0.4960, 0.4962, …), so
    /// that the inverse with σ ≈ 0 still needs about 500 Lanczos products at 2,048 tokens;
    /// there the matrix factored is M = L + α Σ_c u_c u_cᵀ − sI with α = 2 · the largest
    /// degree (L's null space moved to α, its other eigenpairs unchanged) and s just below
    /// λ₂: the Rayleigh quotient of each token's indicator (projected off the null
    /// space) bounds λ₂ from above (Fiedler's d_min · n / (n − 1) on a connected graph),
    /// and s is lowered from that bound until the Cholesky factorization succeeds — which
    /// proves s < λ₂ (M is positive definite iff every eigenvalue of L off its null space
    /// exceeds s). The cluster's eigenvalues λ − s are then spread over orders of
    /// magnitude, and Lanczos converges in a few dozen products.
    pub fn new<R: Iterator<Item = (usize, f64)>>(
        n: usize,
        degrees: &[f64],
        rows: impl Fn(usize) -> R,
        null: &[Vec<f64>],
    ) -> Option<Self> {
        let max_degree = degrees.iter().fold(0.0f64, |a, &d| a.max(d));
        let nnz: usize = (0..n).map(|i| rows(i).count()).sum();
        if nnz as f64 >= DENSE_FROM * (n * n) as f64 {
            return Self::dense(n, degrees, rows, null, max_degree);
        }
        let sigma = SHIFT * max_degree.max(f64::MIN_POSITIVE);
        // lower triangle only (the side the factorization reads)
        let mut triplets = Vec::with_capacity(nnz / 2 + n);
        for (i, &d) in degrees.iter().enumerate().take(n) {
            triplets.push(Triplet::new(i as u32, i as u32, d + sigma));
            for (j, w) in rows(i).filter(|&(j, _)| j < i) {
                triplets.push(Triplet::new(i as u32, j as u32, -w));
            }
        }
        let a = SparseColMat::<u32, f64>::try_new_from_triplets(n, n, &triplets).ok()?;
        let factor = Factor::Sparse(a.sp_cholesky(Side::Lower).ok()?);
        Some(Self { n, factor, sigma })
    }

    /// The dense factorization of M = L + α Σ_c u_c u_cᵀ − sI with s just below λ₂ (see
    /// [`new`](Self::new)).
    fn dense<R: Iterator<Item = (usize, f64)>>(
        n: usize,
        degrees: &[f64],
        rows: impl Fn(usize) -> R,
        null: &[Vec<f64>],
        max_degree: f64,
    ) -> Option<Self> {
        let alpha = 2.0 * max_degree.max(f64::MIN_POSITIVE);
        // xᵀLx / xᵀx for x = e_i minus its projection on the null space: d_i / (1 − Σ u_c,i²)
        let bound = (0..n)
            .filter_map(|i| {
                let off = 1.0 - null.iter().map(|u| u[i] * u[i]).sum::<f64>();
                (off > 1e-12).then(|| degrees[i] / off)
            })
            .fold(f64::INFINITY, f64::min);
        let bound = if bound.is_finite() { bound } else { 0.0 };
        let mut a = Mat::<f64>::zeros(n, n);
        let mut buf = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(
            n,
            Par::Seq,
            Default::default(),
        ));
        for margin in MARGINS {
            let s = bound * (1.0 - margin);
            // lower triangle, column by column (W is symmetric: row j lists column j):
            // the part the factorization reads and writes
            for j in 0..n {
                let col = &mut a.col_mut(j).try_as_col_major_mut()?.as_slice_mut()[j..];
                col.iter_mut().for_each(|x| *x = 0.0);
                for u in null {
                    let c = alpha * u[j];
                    for (x, &ui) in col.iter_mut().zip(&u[j..]) {
                        *x += c * ui;
                    }
                }
                col[0] += degrees[j] - s;
                for (i, w) in rows(j).filter(|&(i, _)| i > j) {
                    col[i - j] -= w;
                }
            }
            let factored = llt::factor::cholesky_in_place(
                a.as_mut(),
                Default::default(),
                Par::Seq,
                MemStack::new(&mut buf),
                Default::default(),
            );
            if factored.is_ok() {
                return Some(Self {
                    n,
                    factor: Factor::Dense(a),
                    sigma: -s,
                });
            }
        }
        None
    }

    /// y = (L + σI)⁻¹ x.
    pub fn apply(&self, x: &[f64], y: &mut [f64]) {
        y.copy_from_slice(x);
        let rhs = MatMut::from_column_major_slice_mut(y, self.n, 1);
        match &self.factor {
            Factor::Dense(l) => llt::solve::solve_in_place(
                l.as_ref(),
                rhs,
                Par::Seq,
                MemStack::new(&mut MemBuffer::new(faer::dyn_stack::StackReq::EMPTY)),
            ),
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
        let ones = vec![vec![1.0 / 3f64.sqrt(); 3]];
        // dense (6 of 9 entries nonzero) …
        let inv = ShiftedInverse::new(3, &degrees, path, &ones).unwrap();
        assert!(matches!(inv.factor, Factor::Dense(_)));
        // L's eigenvalues are 0 and 3 ± √3 (λ₂ = 1.268). Fiedler's bound is 1 · 3/2;
        // 1.5 · 0.997 down to 1.5 · 0.9 are above λ₂ (the factorization fails), 1.5 · 0.7
        // is the shift taken
        assert!((-inv.sigma - 1.05).abs() < 1e-12, "{}", inv.sigma);
        // on the complement of the constant vector, (L + σI) y must give back x
        let x = [0.3, -1.2, 0.9];
        let mut y = [0.0; 3];
        inv.apply(&x, &mut y);
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
        let ones = vec![vec![1.0 / (n as f64).sqrt(); n]];
        let inv = ShiftedInverse::new(n, &degrees, rows, &ones).unwrap();
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
