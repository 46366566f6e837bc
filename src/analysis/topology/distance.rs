//! What persistence is computed on: a validated, dense, symmetric matrix of edge lengths
//! plus optional vertex birth times.
//!
//! Every accepted input (a distance matrix, a point cloud, or ripser.py's reading of a
//! non-symmetric matrix with a nonzero diagonal) is turned into the same [`RipsInput`]. The
//! matrix is stored in full (n × n, row-major) rather than as Ripser's compressed lower
//! triangle: the coboundary loop then reads one contiguous row per candidate vertex with no
//! branch, which is most of where the time goes. A missing edge is `+∞`.

use crate::analysis::error::AnalysisError;

/// The largest number of points accepted: the full matrix of 40 000 points is 12.8 GB.
pub const MAX_POINTS: usize = 40_000;

/// Input to [`rips_persistence`](super::rips_persistence): a finite metric space given by a
/// distance matrix or a Euclidean point cloud, checked once at construction.
#[derive(Debug, Clone, PartialEq)]
pub struct RipsInput {
    pub(super) n: usize,
    /// n × n edge lengths, symmetric, zero diagonal, `+∞` for an absent edge.
    pub(super) dist: Vec<f64>,
    /// Vertex birth times; `None` means all vertices are born at 0.
    pub(super) births: Option<Vec<f64>>,
    /// Whether "no threshold" means Ripser's enclosing radius (dense inputs) or the whole
    /// filtration (ripser.py's sparse path, which never applies the enclosing radius).
    pub(super) enclosing_radius_default: bool,
}

impl RipsInput {
    /// A full `n × n` distance matrix (row-major). It must be symmetric (within 1e-9
    /// relative; the lower triangle is used, as Ripser reads it), finite, non-negative, with
    /// a zero diagonal.
    pub fn distance_matrix(n: usize, data: &[f64]) -> Result<Self, AnalysisError> {
        check_len(n, n * n, data.len(), "distance matrix")?;
        let mut dist = vec![0.0; n * n];
        for i in 0..n {
            if data[i * n + i] != 0.0 {
                return Err(AnalysisError::RipsInput(format!(
                    "distance matrix diagonal entry ({i}, {i}) is {}, not 0 (a matrix with a \
                     diagonal of birth times is read by `ripser_py_matrix`, the paper mode)",
                    data[i * n + i]
                )));
            }
            for j in 0..i {
                let lower = data[i * n + j];
                let upper = data[j * n + i];
                check_value(lower, i, j)?;
                check_value(upper, j, i)?;
                if (lower - upper).abs() > 1e-9 * lower.abs().max(upper.abs()).max(1.0) {
                    return Err(AnalysisError::RipsInput(format!(
                        "distance matrix is not symmetric: ({i}, {j}) = {lower} but ({j}, {i}) = {upper}"
                    )));
                }
                dist[i * n + j] = clean_zero(lower);
                dist[j * n + i] = clean_zero(lower);
            }
        }
        Ok(RipsInput {
            n,
            dist,
            births: None,
            enclosing_radius_default: true,
        })
    }

    /// Ripser's compressed lower-triangular layout: `d(1,0), d(2,0), d(2,1), d(3,0), …`,
    /// `n(n−1)/2` values.
    pub fn lower_triangle(n: usize, data: &[f64]) -> Result<Self, AnalysisError> {
        check_len(n, n * n.saturating_sub(1) / 2, data.len(), "lower triangle")?;
        let mut dist = vec![0.0; n * n];
        let mut k = 0;
        for i in 1..n {
            for j in 0..i {
                check_value(data[k], i, j)?;
                dist[i * n + j] = clean_zero(data[k]);
                dist[j * n + i] = clean_zero(data[k]);
                k += 1;
            }
        }
        Ok(RipsInput {
            n,
            dist,
            births: None,
            enclosing_radius_default: true,
        })
    }

    /// `n` points of dimension `dim` (row-major), with Euclidean distances.
    pub fn point_cloud(n: usize, dim: usize, data: &[f64]) -> Result<Self, AnalysisError> {
        if dim == 0 && n > 0 {
            return Err(AnalysisError::RipsInput(
                "point cloud has dimension 0".to_string(),
            ));
        }
        check_len(n, n * dim, data.len(), "point cloud")?;
        if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
            return Err(AnalysisError::RipsInput(format!(
                "point {} coordinate {} is {}",
                pos / dim,
                pos % dim,
                data[pos]
            )));
        }
        let mut dist = vec![0.0; n * n];
        for i in 0..n {
            let pi = &data[i * dim..(i + 1) * dim];
            for j in 0..i {
                let pj = &data[j * dim..(j + 1) * dim];
                let d2: f64 = pi.iter().zip(pj).map(|(a, b)| (a - b) * (a - b)).sum();
                let d = d2.sqrt();
                dist[i * n + j] = d;
                dist[j * n + i] = d;
            }
        }
        Ok(RipsInput {
            n,
            dist,
            births: None,
            enclosing_radius_default: true,
        })
    }

    /// A square matrix as ripser.py reads it when its diagonal is not all zero (the
    /// published pipeline's `ripser(1 − Ā, distance_matrix=True)`): ripser.py converts it to
    /// a scipy COO matrix, which keeps only nonzero entries; its C++ side then takes entries
    /// with i < j as edge lengths and the diagonal as vertex birth times, and never applies
    /// the enclosing-radius threshold. So an exact zero above the diagonal is *no edge*, and
    /// everything below the diagonal is ignored. When the diagonal is all zero, ripser.py
    /// takes its dense path instead: the upper triangle as distances, zeros included.
    pub fn ripser_py_matrix(n: usize, data: &[f64]) -> Result<Self, AnalysisError> {
        check_len(n, n * n, data.len(), "matrix")?;
        for i in 0..n {
            for j in 0..n {
                check_value(data[i * n + j], i, j)?;
            }
        }
        Ok(Self::ripser_py_unchecked(n, data))
    }

    /// [`ripser_py_matrix`](Self::ripser_py_matrix) without the checks, for values known to
    /// be finite and non-negative.
    pub(super) fn ripser_py_unchecked(n: usize, data: &[f64]) -> Self {
        let diagonal_nonzero = (0..n).any(|i| data[i * n + i] != 0.0);
        let mut dist = vec![0.0; n * n];
        for i in 0..n {
            for j in (i + 1)..n {
                let v = data[i * n + j];
                let d = if diagonal_nonzero && v == 0.0 {
                    f64::INFINITY
                } else {
                    clean_zero(v)
                };
                dist[i * n + j] = d;
                dist[j * n + i] = d;
            }
        }
        let births = diagonal_nonzero.then(|| (0..n).map(|i| data[i * n + i]).collect());
        RipsInput {
            n,
            dist,
            births,
            enclosing_radius_default: !diagonal_nonzero,
        }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Distance between points `i` and `j` (`+∞` for an absent edge).
    pub fn distance(&self, i: usize, j: usize) -> f64 {
        self.dist[i * self.n + j]
    }

    /// Ripser's default threshold: the enclosing radius min_i max_j d(i, j). Beyond it the
    /// complex is a cone, so no bar is lost by stopping there.
    pub fn enclosing_radius(&self) -> f64 {
        (0..self.n)
            .map(|i| {
                self.dist[i * self.n..(i + 1) * self.n]
                    .iter()
                    .copied()
                    .fold(0.0, f64::max)
            })
            .fold(f64::INFINITY, f64::min)
    }
}

fn check_len(n: usize, expected: usize, got: usize, what: &str) -> Result<(), AnalysisError> {
    if n > MAX_POINTS {
        return Err(AnalysisError::RipsInput(format!(
            "{what} has {n} points; at most {MAX_POINTS} are supported"
        )));
    }
    if expected != got {
        return Err(AnalysisError::RipsInput(format!(
            "{what} for {n} points needs {expected} values, got {got}"
        )));
    }
    Ok(())
}

fn check_value(v: f64, i: usize, j: usize) -> Result<(), AnalysisError> {
    if !v.is_finite() || v < 0.0 {
        return Err(AnalysisError::RipsInput(format!(
            "entry ({i}, {j}) is {v}; distances must be finite and non-negative"
        )));
    }
    Ok(())
}

/// Maps −0.0 to +0.0 so that every stored length has a non-negative sign bit.
fn clean_zero(v: f64) -> f64 {
    if v == 0.0 {
        0.0
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_matrices() {
        assert!(RipsInput::distance_matrix(2, &[0.0, 1.0, 1.0]).is_err());
        assert!(RipsInput::distance_matrix(2, &[0.0, 1.0, 2.0, 0.0]).is_err());
        assert!(RipsInput::distance_matrix(2, &[1.0, 1.0, 1.0, 0.0]).is_err());
        assert!(RipsInput::distance_matrix(2, &[0.0, f64::NAN, f64::NAN, 0.0]).is_err());
        assert!(RipsInput::distance_matrix(2, &[0.0, -1.0, -1.0, 0.0]).is_err());
        assert!(RipsInput::point_cloud(2, 2, &[0.0, 1.0, f64::INFINITY, 0.0]).is_err());
        assert!(RipsInput::lower_triangle(3, &[1.0, 1.0]).is_err());
        let err = RipsInput::distance_matrix(2, &[0.0, 1.0, 2.0, 0.0]).unwrap_err();
        assert!(err.to_string().contains("not symmetric"), "{err}");
    }

    #[test]
    fn point_cloud_distances_and_enclosing_radius() {
        // (0,0), (3,0), (0,4): sides 3, 4, 5. Row maxima 4, 5, 5 → enclosing radius 4.
        let r = RipsInput::point_cloud(3, 2, &[0.0, 0.0, 3.0, 0.0, 0.0, 4.0]).unwrap();
        assert_eq!(r.distance(0, 1), 3.0);
        assert_eq!(r.distance(2, 1), 5.0);
        assert_eq!(r.enclosing_radius(), 4.0);
    }

    #[test]
    fn ripser_py_reads_upper_triangle_and_diagonal() {
        // [[0.5, 0.2, 0.0], [9, 0.1, 0.3], [9, 9, 0]]: edges (0,1) = 0.2, (1,2) = 0.3,
        // (0,2) absent (an exact zero above the diagonal); births 0.5, 0.1, 0.
        let m = [0.5, 0.2, 0.0, 9.0, 0.1, 0.3, 9.0, 9.0, 0.0];
        let r = RipsInput::ripser_py_matrix(3, &m).unwrap();
        assert_eq!(r.distance(1, 0), 0.2);
        assert_eq!(r.distance(2, 1), 0.3);
        assert_eq!(r.distance(0, 2), f64::INFINITY);
        assert_eq!(r.births.as_deref(), Some(&[0.5, 0.1, 0.0][..]));
        assert!(!r.enclosing_radius_default);
        // A zero diagonal takes ripser.py's dense path: zeros are edges of length 0.
        let r = RipsInput::ripser_py_matrix(2, &[0.0, 0.0, 7.0, 0.0]).unwrap();
        assert_eq!(r.distance(0, 1), 0.0);
        assert!(r.births.is_none());
    }
}
