//! Vietoris–Rips persistent homology, written in Rust after Ripser, and its use on
//! attention maps.
//!
//! [`rips_persistence`] takes a [`RipsInput`] (distance matrix, point cloud, or ripser.py's
//! reading of a matrix with a diagonal) and returns the [`Diagrams`] of dimensions
//! `0..=maxdim`, bars of zero persistence left out — the same diagrams as C++ Ripser, which
//! the tests below check on random and degenerate inputs.

mod attention;
mod binomial;
mod diagram;
mod distance;
mod reduction;
mod union_find;

pub use attention::{
    attention_input, layer_simplex_estimate, layer_topology, BettiAt, LayerTopology, TopologyMode,
};
pub use diagram::{Bar, Diagrams};
pub use distance::{RipsInput, MAX_POINTS};
pub use reduction::MAX_DIM;

/// Persistence diagrams of the Vietoris–Rips filtration of `input`, dimensions
/// `0..=maxdim` (at most [`MAX_DIM`]: `dims` has `min(maxdim, MAX_DIM) + 1` entries).
///
/// `threshold`: the largest filtration value considered. `None` means Ripser's default,
/// the enclosing radius, for dense inputs (which loses nothing, see
/// [`RipsInput::enclosing_radius`]), and the whole filtration for ripser.py-style inputs
/// with vertex births (ripser.py's sparse path applies no radius). A NaN counts as `None`.
pub fn rips_persistence(input: &RipsInput, maxdim: usize, threshold: Option<f64>) -> Diagrams {
    reduction::persistence(input, maxdim, effective_threshold(input, threshold))
}

/// The threshold [`rips_persistence`] uses for `threshold`.
fn effective_threshold(input: &RipsInput, threshold: Option<f64>) -> f64 {
    match threshold {
        Some(t) if !t.is_nan() => t.min(f64::MAX),
        _ if input.enclosing_radius_default => input.enclosing_radius().min(f64::MAX),
        _ => f64::MAX,
    }
}

/// Estimated number of simplices of dimensions `0..=maxdim + 1` in the filtration up
/// to the threshold — what the reduction's time and memory grow with — so a
/// computation that would run for hours can be refused before it starts. Counts the
/// edges within the threshold exactly (O(n²)) and, from their density p, the
/// k-simplices as in a random graph of that density: C(n, k+1)·p^C(k+1, 2).
pub fn estimated_simplices(input: &RipsInput, maxdim: usize, threshold: Option<f64>) -> f64 {
    let t = effective_threshold(input, threshold);
    let n = input.len();
    if n < 2 {
        return n as f64;
    }
    let edges = (0..n)
        .map(|i| (0..i).filter(|&j| input.distance(i, j) <= t).count() as f64)
        .sum::<f64>();
    let p = edges / (n as f64 * (n as f64 - 1.0) / 2.0);
    (0..=maxdim.min(MAX_DIM) + 1)
        .map(|k| {
            // C(n, k + 1) in floating point (it overflows u64 for large n).
            let choose = (0..=k).fold(1.0, |c, i| c * (n - i) as f64 / (i + 1) as f64);
            choose * p.powi(((k + 1) * k / 2) as i32)
        })
        .sum()
}

/// The simplex count above which `topo` and `metrics` refuse to start without a
/// threshold (`--max-simplices`): about an hour of reduction and tens of GB.
pub const DEFAULT_MAX_SIMPLICES: f64 = 1e8;

/// Why a filtration of `points` points up to `maxdim`, estimated at `estimate`
/// simplices, should not be started without a threshold: `None` when it fits within
/// `limit` or a threshold already cuts it. The caller adds how to cut it.
pub fn too_many_simplices(
    points: usize,
    maxdim: usize,
    estimate: f64,
    threshold: Option<f64>,
    limit: f64,
) -> Option<String> {
    (threshold.is_none() && estimate > limit).then(|| {
        format!(
            "{points} points up to dimension {maxdim} make about {estimate:.2e} simplices \
             (limit {limit:.0e}): this can take hours"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplex_estimate_is_exact_for_complete_and_empty_complexes() {
        // Four points all within the threshold: 4 + 6 + 4 + 1 simplices up to dim 3.
        let d = [
            0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0,
        ];
        let input = RipsInput::distance_matrix(4, &d).unwrap();
        assert!((estimated_simplices(&input, 2, Some(2.0)) - 15.0).abs() < 1e-9);
        // Threshold below every edge: the vertices alone.
        assert!((estimated_simplices(&input, 2, Some(0.5)) - 4.0).abs() < 1e-9);
    }
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Sorted (birth, death) pairs of one dimension, bars shorter than `tol` left out (a
    /// bar of length 1e-9 in f64 can be exactly 0 in the f32 oracle).
    fn bars(d: &[Bar], tol: f64) -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = d
            .iter()
            .filter(|b| b.persistence() > tol)
            .map(|b| (b.birth, b.death))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        v
    }

    /// Order-free comparison within `tol`: every bar of `a` is matched to a distinct bar
    /// of `b` with both ends within `tol` (infinite deaths must both be infinite).
    fn assert_same_bars(a: &[(f64, f64)], b: &[(f64, f64)], tol: f64, what: &str) {
        assert_eq!(
            a.len(),
            b.len(),
            "{what}: bar counts differ\nours  {a:?}\nripser {b:?}"
        );
        let mut used = vec![false; b.len()];
        for &(ab, ad) in a {
            let close =
                |d1: f64, d2: f64| (d1.is_infinite() && d2.is_infinite()) || (d1 - d2).abs() <= tol;
            let hit = b
                .iter()
                .enumerate()
                .position(|(i, &(bb, bd))| !used[i] && (ab - bb).abs() <= tol && close(ad, bd));
            match hit {
                Some(i) => used[i] = true,
                None => panic!("{what}: bar ({ab}, {ad}) has no match\nours  {a:?}\nripser {b:?}"),
            }
        }
    }

    /// Runs our code and C++ Ripser (f32, through the `ripser` crate) on the same lower
    /// triangle and compares every dimension.
    fn check_against_ripser(
        n: usize,
        lower: &[f32],
        maxdim: usize,
        threshold: Option<f32>,
        what: &str,
    ) {
        let ours_input =
            RipsInput::lower_triangle(n, &lower.iter().map(|&x| f64::from(x)).collect::<Vec<_>>())
                .unwrap();
        let ours = rips_persistence(&ours_input, maxdim, threshold.map(f64::from));
        assert!(
            ours.dims.iter().flatten().all(|b| b.persistence() > 0.0),
            "{what}: a bar of zero persistence was reported"
        );
        let theirs = ripser::ripser(lower, n, maxdim as i32, threshold);
        let scale = lower.iter().fold(1.0f64, |m, &x| m.max(f64::from(x)));
        let tol = 1e-6 * scale;
        for k in 0..=maxdim {
            let t: Vec<Bar> = theirs
                .iter()
                .filter(|b| b.dim == k as i32)
                .map(|b| Bar {
                    birth: f64::from(b.birth),
                    death: f64::from(b.death),
                })
                .collect();
            assert_same_bars(
                &bars(ours.dim(k), tol),
                &bars(&t, tol),
                tol,
                &format!("{what}, H{k}"),
            );
        }
    }

    fn random_points(rng: &mut StdRng, n: usize, dim: usize) -> Vec<f64> {
        (0..n * dim).map(|_| rng.random::<f64>()).collect()
    }

    fn lower_of_points(points: &[f64], n: usize, dim: usize) -> Vec<f32> {
        let r = RipsInput::point_cloud(n, dim, points).unwrap();
        let mut lower = Vec::new();
        for i in 1..n {
            for j in 0..i {
                lower.push(r.distance(i, j) as f32);
            }
        }
        lower
    }

    #[test]
    fn hand_worked_square() {
        // Unit square 0-1-2-3 (sides 1, diagonals √2). H0: three bars [0,1) and [0,∞).
        // H1: the 4-cycle is born at 1 and filled at √2 (the diagonals) → one bar [1, √2),
        // but the enclosing radius is √2, so the threshold still includes the diagonals.
        let s = 2f64.sqrt();
        let m = [
            0.0, 1.0, s, 1.0, //
            1.0, 0.0, 1.0, s, //
            s, 1.0, 0.0, 1.0, //
            1.0, s, 1.0, 0.0,
        ];
        let d = rips_persistence(&RipsInput::distance_matrix(4, &m).unwrap(), 1, None);
        assert_eq!(
            bars(d.dim(0), 0.0),
            vec![(0.0, 1.0), (0.0, 1.0), (0.0, 1.0), (0.0, f64::INFINITY)]
        );
        assert_eq!(bars(d.dim(1), 0.0), vec![(1.0, s)]);
    }

    #[test]
    fn hand_worked_octahedron_has_a_void() {
        // The six points ±e_i: neighbours at √2, antipodes at 2. At √2 the complex is the
        // octahedron's boundary (a 2-sphere); the antipodal edges at 2 fill it. H2 = [√2, 2),
        // H1 empty (every 4-cycle bounds two triangles at √2), H0 five bars [0, √2) + [0, ∞).
        // The enclosing radius is 2 (every point's farthest neighbour is its antipode).
        let mut p = vec![0.0; 18];
        for i in 0..3 {
            p[(2 * i) * 3 + i] = 1.0;
            p[(2 * i + 1) * 3 + i] = -1.0;
        }
        let d = rips_persistence(&RipsInput::point_cloud(6, 3, &p).unwrap(), 2, None);
        let s = 2f64.sqrt();
        assert_eq!(d.bar_count(0), 6);
        assert!(d.dim(1).is_empty());
        let h2 = bars(d.dim(2), 0.0);
        assert_eq!(h2.len(), 1);
        assert!((h2[0].0 - s).abs() < 1e-12 && (h2[0].1 - 2.0).abs() < 1e-12);
    }

    #[test]
    fn tiny_inputs() {
        let empty = RipsInput::distance_matrix(0, &[]).unwrap();
        assert_eq!(rips_persistence(&empty, 1, None).dims, vec![vec![], vec![]]);
        let one = RipsInput::distance_matrix(1, &[0.0]).unwrap();
        let d = rips_persistence(&one, 2, None);
        assert_eq!(bars(d.dim(0), 0.0), vec![(0.0, f64::INFINITY)]);
        assert!(d.dim(1).is_empty() && d.dim(2).is_empty());
        let two = RipsInput::distance_matrix(2, &[0.0, 3.0, 3.0, 0.0]).unwrap();
        let d = rips_persistence(&two, 1, None);
        assert_eq!(bars(d.dim(0), 0.0), vec![(0.0, 3.0), (0.0, f64::INFINITY)]);
    }

    #[test]
    fn maxdim_is_capped() {
        let two = RipsInput::distance_matrix(2, &[0.0, 3.0, 3.0, 0.0]).unwrap();
        assert_eq!(
            rips_persistence(&two, usize::MAX, None).dims.len(),
            MAX_DIM + 1
        );
        // a negative threshold keeps every point apart
        let d = rips_persistence(&two, 1, Some(-1.0));
        assert_eq!(bars(d.dim(0), 0.0), vec![(0.0, f64::INFINITY); 2]);
    }

    #[test]
    fn explicit_threshold_leaves_infinite_bars() {
        // Square of side 1 with threshold 1.2 (< √2): the cycle never fills → [1, ∞).
        let s = 2f64.sqrt();
        let m = [
            0.0, 1.0, s, 1.0, 1.0, 0.0, 1.0, s, s, 1.0, 0.0, 1.0, 1.0, s, 1.0, 0.0,
        ];
        let d = rips_persistence(&RipsInput::distance_matrix(4, &m).unwrap(), 1, Some(1.2));
        assert_eq!(bars(d.dim(1), 0.0), vec![(1.0, f64::INFINITY)]);
        // threshold below every edge: four points that never meet
        let d = rips_persistence(&RipsInput::distance_matrix(4, &m).unwrap(), 1, Some(0.5));
        assert_eq!(d.bar_count(0), 4);
        assert!(d.dim(0).iter().all(|b| b.death.is_infinite()));
    }

    #[test]
    fn differential_random_point_clouds() {
        let mut rng = StdRng::seed_from_u64(7);
        for &(n, dim, maxdim) in &[
            (10, 2, 2),
            (30, 2, 1),
            (40, 3, 2),
            (60, 3, 2),
            (100, 2, 1),
            (150, 4, 1),
        ] {
            for rep in 0..3 {
                let p = random_points(&mut rng, n, dim);
                let lower = lower_of_points(&p, n, dim);
                check_against_ripser(
                    n,
                    &lower,
                    maxdim,
                    None,
                    &format!("cloud n={n} d={dim} #{rep}"),
                );
            }
        }
    }

    #[test]
    fn differential_random_matrices_and_thresholds() {
        // Non-metric random matrices (Rips filtrations need no triangle inequality).
        let mut rng = StdRng::seed_from_u64(11);
        for &(n, maxdim) in &[(20, 2), (50, 2), (80, 1), (120, 1)] {
            let lower: Vec<f32> = (0..n * (n - 1) / 2).map(|_| rng.random::<f32>()).collect();
            check_against_ripser(n, &lower, maxdim, None, &format!("matrix n={n}"));
            check_against_ripser(
                n,
                &lower,
                maxdim,
                Some(0.3),
                &format!("matrix n={n} thr=0.3"),
            );
        }
    }

    #[test]
    fn differential_ties_duplicates_and_zero_distances() {
        let mut rng = StdRng::seed_from_u64(13);
        for &(n, maxdim, levels) in &[
            (12, 2, 2u32),
            (25, 2, 3),
            (40, 2, 4),
            (60, 1, 3),
            (120, 1, 5),
        ] {
            // distances drawn from a handful of values, zero included: massive ties
            let lower: Vec<f32> = (0..n * (n - 1) / 2)
                .map(|_| rng.random_range(0..levels) as f32)
                .collect();
            check_against_ripser(
                n,
                &lower,
                maxdim,
                None,
                &format!("ties n={n} levels={levels}"),
            );
        }
        // duplicate points on an integer grid: zero distances and equal lengths everywhere
        for &(n, maxdim) in &[(20, 2), (50, 2), (150, 1)] {
            let p: Vec<f64> = (0..n * 2)
                .map(|_| f64::from(rng.random_range(0..4u32)))
                .collect();
            let lower = lower_of_points(&p, n, 2);
            check_against_ripser(n, &lower, maxdim, None, &format!("grid duplicates n={n}"));
        }
        // all distances equal, and all zero
        check_against_ripser(15, &vec![1.0; 105], 2, None, "all equal");
        check_against_ripser(15, &vec![0.0; 105], 2, None, "all zero");
    }

    #[test]
    fn differential_attention_like_500() {
        // n = 500 at maxdim 1: a causal softmax map with a first-token sink, symmetrized.
        let mut rng = StdRng::seed_from_u64(17);
        let t = 500;
        let mut a = vec![0.0f64; t * t];
        for i in 0..t {
            let mut row: Vec<f64> = (0..=i)
                .map(|j| (rng.random::<f64>() * 3.0 + if j == 0 { 3.0 } else { 0.0 }).exp())
                .collect();
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= s);
            a[i * t..i * t + i + 1].copy_from_slice(&row);
        }
        let input = attention_input(&a, t, &(0..t).collect::<Vec<_>>(), TopologyMode::Symmetric);
        let mut lower = Vec::new();
        for i in 1..t {
            for j in 0..i {
                lower.push(input.distance(i, j) as f32);
            }
        }
        check_against_ripser(t, &lower, 1, None, "attention n=500");
        // and a 500-point cloud
        let p = random_points(&mut rng, 500, 3);
        check_against_ripser(500, &lower_of_points(&p, 500, 3), 1, None, "cloud n=500");
    }
}
