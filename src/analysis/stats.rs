//! Small numerical helpers shared by the metrics: numpy-compatible percentile, mean and
//! standard deviation, median, KL divergence and Gini coefficient.
//!
//! They live in one place so that every metric agrees on the conventions the reference
//! notebooks use (numpy's linear percentile, population standard deviation, natural log).

/// Percentile `q` (0–100) of `values` with linear interpolation, exactly as numpy's default
/// `np.percentile(values, q)` (virtual index `(n-1)·q/100`, numpy's two-sided lerp).
///
/// The sink set of the KL and concentration metrics is `{j : c_j ≥ P90(c)}`; reproducing
/// numpy bit for bit keeps that set identical to the notebooks'. Returns `None` when
/// `values` is empty or holds a NaN.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let q = q.clamp(0.0, 100.0) / 100.0;
    let virtual_index = (sorted.len() - 1) as f64 * q;
    let lo = virtual_index.floor();
    let gamma = virtual_index - lo;
    let lo = lo as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    // numpy's _lerp: a + diff·t, but b − diff·(1 − t) when t ≥ 0.5 (keeps monotonicity).
    Some(if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    })
}

/// Median as numpy computes it (mean of the two middle values for even lengths).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut v = values.to_vec();
    let mid = v.len() / 2;
    let (_, upper, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if v.len() % 2 == 1 {
        Some(upper)
    } else {
        let lower = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(0.5 * (lower + upper))
    }
}

/// Arithmetic mean; `None` for an empty slice.
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        None
    } else {
        Some(values.iter().sum::<f64>() / values.len() as f64)
    }
}

/// Mean and population standard deviation (numpy's `std` with `ddof = 0`).
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    let m = mean(values)?;
    let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / values.len() as f64;
    Some((m, var.sqrt()))
}

/// KL(p ‖ q) in nats, as `scipy.stats.entropy(p, q)` for already-normalized inputs:
/// terms with `p = 0` contribute nothing, a term with `p > 0`, `q = 0` makes it infinite.
pub fn kl_divergence<P, Q>(p: P, q: Q) -> f64
where
    P: IntoIterator<Item = f64>,
    Q: IntoIterator<Item = f64>,
{
    let mut kl = 0.0;
    for (pi, qi) in p.into_iter().zip(q) {
        if pi > 0.0 {
            if qi <= 0.0 {
                return f64::INFINITY;
            }
            kl += pi * (pi / qi).ln();
        }
    }
    kl
}

/// Gini coefficient of non-negative values: 0 when all equal, → 1 when one holds everything.
/// `(Σ_i Σ_j |x_i − x_j|) / (2 n² mean)`, computed on the sorted values in O(n log n).
pub fn gini(values: &[f64]) -> Option<f64> {
    let total: f64 = values.iter().sum();
    if values.is_empty() || total <= 0.0 {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let weighted: f64 = v
        .iter()
        .enumerate()
        .map(|(i, x)| (i as f64 + 1.0) * x)
        .sum();
    Some(2.0 * weighted / (n * total) - (n + 1.0) / n)
}

/// Indices of the largest value (first one on ties); `None` for an empty slice.
pub fn argmax(values: &[f64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &v) in values.iter().enumerate() {
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// `n` evenly spaced indices in `0..len`, as `np.linspace(0, len-1, n).astype(int)`
/// (the paper's downsampling of tokens before persistence). Returns all indices when
/// `n >= len`.
pub fn linspace_indices(len: usize, n: usize) -> Vec<usize> {
    if n >= len || len == 0 {
        return (0..len).collect();
    }
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![0];
    }
    let stop = (len - 1) as f64;
    let step = stop / (n - 1) as f64;
    let mut out: Vec<usize> = (0..n).map(|i| (i as f64 * step) as usize).collect();
    // numpy sets the last sample to `stop` exactly.
    out[n - 1] = len - 1;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        // np.percentile([1, 2, 3, 4], 90): index 3·0.9 = 2.7 → 3 + 0.7·(4 − 3) = 3.7
        assert!((percentile(&[4.0, 1.0, 3.0, 2.0], 90.0).unwrap() - 3.7).abs() < 1e-12);
        // np.percentile([10, 20], 25): index 0.25 → 10 + 0.25·10 = 12.5
        assert!((percentile(&[20.0, 10.0], 25.0).unwrap() - 12.5).abs() < 1e-12);
        // extremes are the min and the max
        assert_eq!(percentile(&[5.0, -1.0, 2.0], 0.0), Some(-1.0));
        assert_eq!(percentile(&[5.0, -1.0, 2.0], 100.0), Some(5.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0, f64::NAN], 50.0), None);
        // 10 values, P90: index 9·0.9 = 8.1 → v8 + 0.1·(v9 − v8) = 9 + 0.1 = 9.1 (values 1..=10)
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert!((percentile(&v, 90.0).unwrap() - 9.1).abs() < 1e-12);
    }

    #[test]
    fn median_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn mean_std_population() {
        // values 2,4,4,4,5,5,7,9: mean 5, population variance 4 → std 2
        let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert!((m - 5.0).abs() < 1e-12 && (s - 2.0).abs() < 1e-12);
    }

    #[test]
    fn kl_known_values() {
        // KL([0.5,0.5] ‖ [0.25,0.75]) = 0.5 ln 2 + 0.5 ln(2/3)
        let expected = 0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln();
        assert!((kl_divergence([0.5, 0.5], [0.25, 0.75]) - expected).abs() < 1e-12);
        assert_eq!(kl_divergence([0.0, 1.0], [0.5, 0.5]), 2f64.ln());
        assert_eq!(kl_divergence([1.0, 0.0], [0.0, 1.0]), f64::INFINITY);
        assert_eq!(kl_divergence([0.3, 0.7], [0.3, 0.7]), 0.0);
    }

    #[test]
    fn gini_extremes() {
        assert_eq!(gini(&[1.0, 1.0, 1.0, 1.0]), Some(0.0));
        // one of four holds everything: Σ|xi − xj| = 2·3·1 = 6; 6 / (2·16·0.25) = 0.75
        assert!((gini(&[0.0, 0.0, 4.0, 0.0]).unwrap() - 0.75).abs() < 1e-12);
        assert_eq!(gini(&[0.0, 0.0]), None);
    }

    #[test]
    fn linspace_like_numpy() {
        // np.linspace(0, 9, 4).astype(int) = [0, 3, 6, 9]
        assert_eq!(linspace_indices(10, 4), vec![0, 3, 6, 9]);
        // np.linspace(0, 63, 30).astype(int)[:5] = [0, 2, 4, 6, 8]; step 63/29 = 2.1724…
        let idx = linspace_indices(64, 30);
        assert_eq!(idx.len(), 30);
        assert_eq!(&idx[..5], &[0, 2, 4, 6, 8]);
        assert_eq!(idx[29], 63);
        assert_eq!(linspace_indices(5, 10), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn argmax_first_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), Some(1));
        assert_eq!(argmax(&[]), None);
    }
}
