//! A few eigenvalues at one end of a symmetric operator: thick-restart Lanczos with full
//! reorthogonalization (Wu & Simon, SIAM J. Matrix Anal. Appl. 22, 2000), the iterative
//! route of the Fiedler values and the top singular values when the maps are long.
//!
//! Why by hand: the metrics need two or three eigenvalues of T × T operators (a graph
//! Laplacian, a Gram matrix AᵀA), where a dense decomposition costs O(T³) and this
//! O(T² · steps). The crates that offer a partial eigensolver pull a second linear-algebra
//! stack (nalgebra for `lanczos`, ndarray for `linfa-linalg`) or a Fortran ARPACK; faer
//! 0.24 has none. The small projected problems go through faer.
//!
//! Convergence: a Ritz pair (θ, x) is accepted when ‖Ax − θx‖ ≤ `tol` · ‖A‖, with ‖A‖
//! estimated by the largest |θ| seen; for a symmetric operator the eigenvalue error is
//! then at most `tol` · ‖A‖ (and usually far less, ≈ residual² / gap). The basis is
//! orthogonalized twice against every previous vector (classical Gram–Schmidt, "twice is
//! enough"), so no spurious copies of converged values appear.

use faer::Par;

use super::linalg::{dot, symmetric_eigen};

/// Which end of the spectrum is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The smallest (algebraic) eigenvalues, returned in increasing order.
    Smallest,
    /// The largest (algebraic) eigenvalues, returned in decreasing order.
    Largest,
}

/// Relative residual tolerance of [`extreme_eigenvalues`]: eigenvalues are exact to
/// 1e-10 · ‖A‖ (documented in `docs/METRICS.md`).
pub const TOLERANCE: f64 = 1e-10;

/// Most Krylov vectors kept at once before a restart.
const MAX_BASIS: usize = 96;

/// Ritz vectors kept beyond the wanted ones at a restart (they speed up convergence of
/// the wanted ones).
const EXTRA_KEPT: usize = 24;

/// Deterministic start vector in (−0.5, 0.5): a fixed linear congruential sequence per
/// `seed`, so the same input gives the same digits on every run.
fn start_vector(n: usize, seed: u64) -> Vec<f64> {
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0xd1b5_4a32_d192_ed03);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect()
}

fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Removes from `w` its components along `locked` and `basis` (together orthonormal),
/// both in each of two passes — removing the basis alone after the locked vectors would
/// bring back, step after step, the rounding-level locked components of the basis;
/// returns the coefficients removed along `basis`.
fn orthogonalize(w: &mut [f64], locked: &[Vec<f64>], basis: &[Vec<f64>]) -> Vec<f64> {
    let mut total = vec![0.0; basis.len()];
    for _ in 0..2 {
        for v in locked {
            let h = dot(v, w);
            axpy(w, -h, v);
        }
        for (t, v) in total.iter_mut().zip(basis) {
            let h = dot(v, w);
            axpy(w, -h, v);
            *t += h;
        }
    }
    total
}

/// Eigenpairs found by one Lanczos run.
struct Found {
    values: Vec<f64>,
    vectors: Vec<Vec<f64>>,
    /// Largest |θ| seen (the estimate of ‖A‖).
    scale: f64,
}

/// Operator state shared by the runs: the product and its count.
struct Operator<F> {
    n: usize,
    apply: F,
    products: usize,
    max_products: usize,
}

/// One thick-restart Lanczos run from the start vector of `seed`, in the complement of
/// `locked`: the `k` converged Ritz pairs nearest `end`, or every Ritz pair when the
/// Krylov space became invariant first (then fewer than `k` may come back). With a
/// `bound`, the run also stops, returning no pair, as soon as the Ritz value nearest the
/// end is shown to lie beyond the bound: it and its residual r put an eigenvalue in
/// [θ − r, θ + r], all of it further from the end than `bound` (a search for a missed
/// value needs that, not 1e-10 accuracy). `None` when the complement is empty, the
/// product budget ran out, or a projected decomposition failed.
fn run<F: FnMut(&[f64], &mut [f64])>(
    op: &mut Operator<F>,
    k: usize,
    end: End,
    locked: &[Vec<f64>],
    seed: u64,
    bound: Option<f64>,
) -> Option<Found> {
    let n = op.n;
    let room = n.checked_sub(locked.len()).filter(|&r| r > 0)?;
    let max_basis = MAX_BASIS.max(k + EXTRA_KEPT + 1).min(room);
    let mut v0 = start_vector(n, seed);
    orthogonalize(&mut v0, locked, &[]);
    let norm = dot(&v0, &v0).sqrt();
    if norm <= 1e-8 {
        return None;
    }
    v0.iter_mut().for_each(|x| *x /= norm);
    let mut basis: Vec<Vec<f64>> = vec![v0];
    // projected matrix H = VᵀAV, row-major max_basis × max_basis (the leading
    // basis.len() block is the current one)
    let mut h = vec![0.0f64; max_basis * max_basis];
    let mut w = vec![0.0f64; n];
    let mut scale = 0.0f64;
    loop {
        let j = basis.len() - 1;
        (op.apply)(&basis[j], &mut w);
        op.products += 1;
        let coef = orthogonalize(&mut w, locked, &basis);
        for (i, &c) in coef.iter().enumerate() {
            h[i * max_basis + j] = c;
            h[j * max_basis + i] = c;
            scale = scale.max(c.abs());
        }
        let beta = dot(&w, &w).sqrt();
        let m = basis.len();
        let full = m == max_basis;
        // the Krylov space is invariant: its Ritz pairs are exact
        let exhausted = beta <= 64.0 * f64::EPSILON * scale || m == room;
        if !(full || exhausted || (m >= k && m.is_multiple_of(4))) {
            w.iter_mut().for_each(|x| *x /= beta);
            basis.push(std::mem::replace(&mut w, vec![0.0; n]));
            continue;
        }
        let proj = faer::Mat::from_fn(m, m, |r, c| h[r * max_basis + c]);
        let (theta, s) = symmetric_eigen(proj.as_ref(), Par::Seq)?;
        scale = scale.max(theta.iter().fold(0.0f64, |a, t| a.max(t.abs())));
        // indices nearest the wanted end first (theta is increasing)
        let order: Vec<usize> = match end {
            End::Smallest => (0..m).collect(),
            End::Largest => (0..m).rev().collect(),
        };
        let ritz_vector = |i: usize| {
            let mut y = vec![0.0; n];
            for (r, v) in basis.iter().enumerate() {
                axpy(&mut y, s[(r, i)], v);
            }
            y
        };
        let take = if exhausted { m } else { k };
        let converged = m >= k
            && order[..k]
                .iter()
                .all(|&i| beta * s[(m - 1, i)].abs() <= TOLERANCE * scale);
        let beyond = bound.is_some_and(|b| {
            let r = beta * s[(m - 1, order[0])].abs();
            !nearer(end, theta[order[0]] - end_sign(end) * r, b)
        });
        if beyond && !exhausted {
            return Some(Found {
                values: Vec::new(),
                vectors: Vec::new(),
                scale,
            });
        }
        if exhausted || converged {
            return Some(Found {
                values: order[..take].iter().map(|&i| theta[i]).collect(),
                vectors: order[..take].iter().map(|&i| ritz_vector(i)).collect(),
                scale,
            });
        }
        if op.products >= op.max_products {
            return None;
        }
        w.iter_mut().for_each(|x| *x /= beta);
        let next = std::mem::replace(&mut w, vec![0.0; n]);
        if full {
            // thick restart: keep the Ritz vectors nearest the wanted end, then the residual
            let keep = (k + EXTRA_KEPT).min(m - 1);
            let kept: Vec<Vec<f64>> = order[..keep].iter().map(|&i| ritz_vector(i)).collect();
            h.iter_mut().for_each(|x| *x = 0.0);
            for (p, &i) in order[..keep].iter().enumerate() {
                h[p * max_basis + p] = theta[i];
            }
            basis = kept;
        }
        basis.push(next);
    }
}

/// The `k` eigenvalues at `end` of the symmetric `n × n` operator `apply` (`apply(x, y)`
/// sets y = Ax) restricted to the orthogonal complement of `deflate` (orthonormal
/// eigenvectors of A to leave out, e.g. the constant vector of a Laplacian), counted with
/// multiplicity.
///
/// A single Krylov space sees each distinct eigenvalue once, and attention graphs have
/// many repeated ones (twin tokens with the same neighbours). So the converged pairs are
/// locked and a run from a fresh start vector looks in their complement: if it finds a
/// value nearer the end than the k-th found so far (a repeated or missed eigenvalue), it
/// joins the list and the search repeats; otherwise the list is final.
///
/// `None` when the complement has fewer than `k` dimensions, when the iterations did not
/// converge within `max_products` products, or on a failed projected decomposition: the
/// caller then falls back to a dense solver.
pub fn extreme_eigenvalues(
    n: usize,
    k: usize,
    end: End,
    deflate: &[Vec<f64>],
    max_products: usize,
    apply: impl FnMut(&[f64], &mut [f64]),
) -> Option<Vec<f64>> {
    if k == 0 || n < k + deflate.len() {
        return None;
    }
    let mut op = Operator {
        n,
        apply,
        products: 0,
        max_products,
    };
    let mut locked = deflate.to_vec();
    let mut values: Vec<f64> = Vec::new();
    let mut scale = 0.0f64;
    for seed in 0.. {
        let want = if values.len() < k {
            k - values.len()
        } else {
            1
        };
        // once k values are known, a run only has to tell whether a value nearer the
        // end than the k-th was missed
        let bound = (values.len() >= k).then(|| values[k - 1] - end_sign(end) * TOLERANCE * scale);
        let Some(found) = run(&mut op, want, end, &locked, seed, bound) else {
            if op.products >= op.max_products {
                tracing::debug!(n, k, "Lanczos did not converge; dense fallback");
            }
            return None;
        };
        scale = scale.max(found.scale);
        if let Some(b) = bound {
            if !found.values.iter().any(|&v| nearer(end, v, b)) {
                break;
            }
        }
        values.extend(&found.values);
        values.sort_by(|a, b| match end {
            End::Smallest => a.total_cmp(b),
            End::Largest => b.total_cmp(a),
        });
        locked.extend(found.vectors);
        if locked.len() >= n {
            break;
        }
    }
    (values.len() >= k).then(|| values[..k].to_vec())
}

/// `a` is nearer the `end` of the spectrum than `b`.
fn nearer(end: End, a: f64, b: f64) -> bool {
    match end {
        End::Smallest => a < b,
        End::Largest => a > b,
    }
}

/// +1 for the smallest end, −1 for the largest: the direction away from the end.
fn end_sign(end: End) -> f64 {
    match end {
        End::Smallest => 1.0,
        End::Largest => -1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::linalg::{symmetric_eigenvalues, to_mat};

    fn dense_apply(a: &[f64], n: usize) -> impl FnMut(&[f64], &mut [f64]) + '_ {
        move |x, y| {
            for (i, yi) in y.iter_mut().enumerate() {
                *yi = dot(&a[i * n..(i + 1) * n], x);
            }
        }
    }

    /// A symmetric matrix with a known clustered spectrum: Q diag(λ) Qᵀ for a Householder Q.
    fn with_spectrum(lambda: &[f64]) -> Vec<f64> {
        let n = lambda.len();
        let mut u = start_vector(n, 99);
        let nu = dot(&u, &u).sqrt();
        u.iter_mut().for_each(|x| *x /= nu);
        // Q = I − 2uuᵀ
        let q = |i: usize, j: usize| f64::from(u8::from(i == j)) - 2.0 * u[i] * u[j];
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|l| q(i, l) * lambda[l] * q(j, l)).sum();
            }
        }
        a
    }

    #[test]
    fn both_ends_match_the_dense_solver() {
        for n in [12, 60, 200] {
            let lambda: Vec<f64> = (0..n)
                .map(|i| ((i * 37) % n) as f64 / n as f64 + if i % 5 == 0 { 0.001 } else { 0.0 })
                .collect();
            let a = with_spectrum(&lambda);
            let dense = symmetric_eigenvalues(to_mat(&a, n, n).as_ref(), Par::Seq).unwrap();
            let small =
                extreme_eigenvalues(n, 3, End::Smallest, &[], 100_000, dense_apply(&a, n)).unwrap();
            let large =
                extreme_eigenvalues(n, 2, End::Largest, &[], 100_000, dense_apply(&a, n)).unwrap();
            for (i, v) in small.iter().enumerate() {
                assert!((v - dense[i]).abs() < 1e-9, "n {n}: {small:?} vs {dense:?}");
            }
            for (i, v) in large.iter().enumerate() {
                assert!((v - dense[n - 1 - i]).abs() < 1e-9, "n {n}: {large:?}");
            }
        }
    }

    #[test]
    fn deflation_and_degenerate_cases() {
        // path graph P_n Laplacian: eigenvalues 2 − 2cos(πk/n), k = 0 … n−1, constant
        // eigenvector for k = 0
        let n = 90;
        let mut l = vec![0.0; n * n];
        for i in 0..n - 1 {
            l[i * n + i + 1] = -1.0;
            l[(i + 1) * n + i] = -1.0;
            l[i * n + i] += 1.0;
            l[(i + 1) * n + i + 1] += 1.0;
        }
        let ones = vec![1.0 / (n as f64).sqrt(); n];
        let got =
            extreme_eigenvalues(n, 2, End::Smallest, &[ones], 100_000, dense_apply(&l, n)).unwrap();
        for (k, v) in [1.0, 2.0].iter().zip(&got) {
            let want = 2.0 - 2.0 * (std::f64::consts::PI * k / n as f64).cos();
            assert!((v - want).abs() < 1e-9, "{got:?}");
        }
        // the identity: every Krylov space is invariant after one vector; the repeated
        // eigenvalue is still counted with its multiplicity
        let id: Vec<f64> = (0..n * n)
            .map(|p| f64::from(u8::from(p % (n + 1) == 0)))
            .collect();
        let got = extreme_eigenvalues(n, 3, End::Largest, &[], 1000, dense_apply(&id, n)).unwrap();
        assert!(got.iter().all(|v| (v - 1.0).abs() < 1e-12), "{got:?}");
        // star K(1, n−1): Laplacian spectrum 0, 1 (n − 2 times), n; without the constant
        // vector the two smallest are 1 and 1, and the two largest n and 1
        let mut star = vec![0.0; n * n];
        for i in 1..n {
            star[i] = -1.0;
            star[i * n] = -1.0;
            star[i * n + i] = 1.0;
        }
        star[0] = (n - 1) as f64;
        let ones = vec![1.0 / (n as f64).sqrt(); n];
        let got = extreme_eigenvalues(
            n,
            2,
            End::Smallest,
            std::slice::from_ref(&ones),
            100_000,
            dense_apply(&star, n),
        )
        .unwrap();
        assert!(
            (got[0] - 1.0).abs() < 1e-9 && (got[1] - 1.0).abs() < 1e-9,
            "{got:?}"
        );
        let got = extreme_eigenvalues(n, 2, End::Largest, &[ones], 100_000, dense_apply(&star, n))
            .unwrap();
        assert!(
            (got[0] - n as f64).abs() < 1e-9 && (got[1] - 1.0).abs() < 1e-9,
            "{got:?}"
        );
        // too few dimensions, and a product budget too small to converge
        assert_eq!(
            extreme_eigenvalues(2, 3, End::Largest, &[], 10, |_, _| {}),
            None
        );
        let lambda: Vec<f64> = (0..300).map(|i| (i as f64).sqrt()).collect();
        let a = with_spectrum(&lambda);
        assert_eq!(
            extreme_eigenvalues(300, 2, End::Smallest, &[], 5, dense_apply(&a, 300)),
            None
        );
    }
}
