//! The three spectral decompositions the metrics need, through faer, with the parallelism
//! chosen by the caller, and the dot product the iterative solvers share.
//!
//! faer's convenience methods (`Mat::singular_values`, …) read a process-wide parallelism
//! setting. The analysis already runs layers and heads in parallel with rayon, so nested
//! faer parallelism would only oversubscribe the cores; these wrappers pass `Par::Seq`
//! (or a caller's choice, for one big weight matrix) explicitly and leave the global
//! setting alone.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd;
use faer::{Mat, MatRef, Par};

/// Singular values in non-increasing order, or `None` if the decomposition did not
/// converge: the square roots of the eigenvalues of the smaller Gram matrix (AᵀA or
/// AAᵀ).
///
/// Why not an SVD: on the small matrices the hooks decompose at every evaluation
/// (attention maps, weights) faer's SVD spends most of its time in its bidiagonal QR
/// sweeps, and the Gram route takes about half the time. The price is relative
/// accuracy for the smallest values: each is exact to about √ε·σ₁ in absolute terms
/// (1.5e-8·σ₁), which the metrics built on them (sums, ratios of the largest, squares
/// for the empirical spectral density) do not see.
pub fn singular_values(a: MatRef<'_, f64>, par: Par) -> Option<Vec<f64>> {
    let (m, n) = a.shape();
    let k = m.min(n);
    let mut gram = Mat::<f64>::zeros(k, k);
    let (lhs, rhs) = if m >= n {
        (a.transpose(), a)
    } else {
        (a, a.transpose())
    };
    faer::linalg::matmul::matmul(gram.as_mut(), faer::Accum::Replace, lhs, rhs, 1.0, par);
    let eigenvalues = symmetric_eigenvalues(gram.as_ref(), par)?;
    Some(
        eigenvalues
            .iter()
            .rev()
            .map(|&l| l.max(0.0).sqrt())
            .collect(),
    )
}

/// Eigenvalues of a symmetric matrix (lower triangle read), non-decreasing.
pub fn symmetric_eigenvalues(a: MatRef<'_, f64>, par: Par) -> Option<Vec<f64>> {
    let n = a.nrows();
    let mut s = faer::diag::Diag::<f64>::zeros(n);
    let scratch = evd::self_adjoint_evd_scratch::<f64>(
        n,
        evd::ComputeEigenvectors::No,
        par,
        Default::default(),
    );
    let mut buf = MemBuffer::new(scratch);
    evd::self_adjoint_evd(
        a,
        s.as_mut(),
        None,
        par,
        MemStack::new(&mut buf),
        Default::default(),
    )
    .ok()?;
    Some(s.column_vector().iter().copied().collect())
}

/// Eigenvalues (non-decreasing) and eigenvectors (columns, in the same order) of a
/// symmetric matrix (lower triangle read): the small projected problems of
/// [`lanczos`](super::lanczos).
pub fn symmetric_eigen(a: MatRef<'_, f64>, par: Par) -> Option<(Vec<f64>, Mat<f64>)> {
    let n = a.nrows();
    let mut s = faer::diag::Diag::<f64>::zeros(n);
    let mut u = Mat::<f64>::zeros(n, n);
    let scratch = evd::self_adjoint_evd_scratch::<f64>(
        n,
        evd::ComputeEigenvectors::Yes,
        par,
        Default::default(),
    );
    let mut buf = MemBuffer::new(scratch);
    evd::self_adjoint_evd(
        a,
        s.as_mut(),
        Some(u.as_mut()),
        par,
        MemStack::new(&mut buf),
        Default::default(),
    )
    .ok()?;
    Some((s.column_vector().iter().copied().collect(), u))
}

/// Moduli |λ| of the eigenvalues of a general real square matrix (any order).
pub fn eigenvalue_moduli(a: MatRef<'_, f64>, par: Par) -> Option<Vec<f64>> {
    let n = a.nrows();
    let mut re = faer::diag::Diag::<f64>::zeros(n);
    let mut im = faer::diag::Diag::<f64>::zeros(n);
    let scratch = evd::evd_scratch::<f64>(
        n,
        evd::ComputeEigenvectors::No,
        evd::ComputeEigenvectors::No,
        par,
        Default::default(),
    );
    let mut buf = MemBuffer::new(scratch);
    evd::evd_real(
        a,
        re.as_mut(),
        im.as_mut(),
        None,
        None,
        par,
        MemStack::new(&mut buf),
        Default::default(),
    )
    .ok()?;
    Some(
        re.column_vector()
            .iter()
            .zip(im.column_vector().iter())
            .map(|(r, i)| r.hypot(*i))
            .collect(),
    )
}

/// A row-major `rows × cols` buffer as a faer matrix.
pub fn to_mat<T: Copy + Into<f64>>(data: &[T], rows: usize, cols: usize) -> Mat<f64> {
    Mat::from_fn(rows, cols, |i, j| data[i * cols + j].into())
}

/// a · x in f64 (for `f32` or `f64` a) with 32 partial sums: a single running sum is a
/// chain of dependent additions the compiler may not reorder, so it neither vectorizes
/// nor pipelines; 32 are four independent chains of 8-wide vector additions, enough to
/// hide their latency (with 8, one chain, the products of the attention spectra ran at
/// a quarter of the core's speed).
pub fn dot<T: Copy + Into<f64>>(a: &[T], x: &[f64]) -> f64 {
    const LANES: usize = 32;
    let mut acc = [0.0f64; LANES];
    let (a8, a_rest) = a.split_at(a.len() - a.len() % LANES);
    for (ac, xc) in a8.chunks_exact(LANES).zip(x.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += ac[l].into() * xc[l];
        }
    }
    let rest: f64 = a_rest
        .iter()
        .zip(&x[a8.len()..])
        .map(|(&r, xj)| r.into() * xj)
        .sum();
    acc.iter().sum::<f64>() + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_decompositions() {
        // diag(3, 4) rotated by 90°: [[0, -4], [3, 0]] has singular values 4, 3 and
        // eigenvalues ±i·√12, so both moduli are √12.
        let a = to_mat(&[0.0, -4.0, 3.0, 0.0], 2, 2);
        let s = singular_values(a.as_ref(), Par::Seq).unwrap();
        assert!((s[0] - 4.0).abs() < 1e-12 && (s[1] - 3.0).abs() < 1e-12);
        let e = eigenvalue_moduli(a.as_ref(), Par::Seq).unwrap();
        assert!(e.iter().all(|x| (x - 12f64.sqrt()).abs() < 1e-12));
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3
        let b = to_mat(&[2.0, 1.0, 1.0, 2.0], 2, 2);
        let l = symmetric_eigenvalues(b.as_ref(), Par::Seq).unwrap();
        assert!((l[0] - 1.0).abs() < 1e-12 && (l[1] - 3.0).abs() < 1e-12);
    }

    #[test]
    fn blocked_dot_equals_the_plain_sum() {
        // every remainder length around the 32 partial sums, on rows shorter than x
        let x: Vec<f64> = (0..80).map(|i| (i as f64 * 0.37).sin()).collect();
        for n in 0..=70 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f64 = a.iter().zip(&x).map(|(&r, xj)| f64::from(r) * xj).sum();
            assert!((dot(&a, &x) - plain).abs() < 1e-12, "n = {n}");
        }
    }
}
