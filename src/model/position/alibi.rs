//! ALiBi: per-head linear biases on attention scores (Press et al. 2022,
//! "Train Short, Test Long"). burn has no ALiBi module, so the slopes and the bias
//! are built here.

/// Head slopes m_h. For H a power of two, m_h = 2^(−8(h+1)/H). Otherwise Press et
/// al.'s rule: the slopes of the largest power of two below H, then every other
/// slope of twice that power, until H are taken.
pub fn slopes(n_heads: usize) -> Vec<f64> {
    fn power_of_two(n: usize) -> Vec<f64> {
        let start = 2f64.powf(-8.0 / n as f64);
        (0..n).map(|i| start.powi(i as i32 + 1)).collect()
    }
    if n_heads == 0 {
        return Vec::new();
    }
    if n_heads.is_power_of_two() {
        return power_of_two(n_heads);
    }
    let closest = 1usize << (usize::BITS - 1 - n_heads.leading_zeros());
    let mut out = power_of_two(closest);
    out.extend(
        slopes(2 * closest)
            .into_iter()
            .step_by(2)
            .take(n_heads - closest),
    );
    out
}

/// The additive score bias `[H, T, T]`: `−m_h · |i − j|`. For causal attention only
/// j ≤ i matters (the rest is masked), where this equals Press et al.'s `m_h (j − i)`.
pub fn bias(n_heads: usize, seq_len: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n_heads * seq_len * seq_len);
    for m in slopes(n_heads) {
        for i in 0..seq_len {
            for j in 0..seq_len {
                out.push((-m * i.abs_diff(j) as f64) as f32);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_for_eight_heads_are_halvings() {
        // Press et al.: for 8 heads, 1/2, 1/4, ..., 1/256.
        let expected: Vec<f64> = (1..=8).map(|k| 1.0 / (1u32 << k) as f64).collect();
        let got = slopes(8);
        assert_eq!(got.len(), 8);
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-15, "{got:?}");
        }
    }

    #[test]
    fn slopes_for_twelve_heads_interleave() {
        // 8 slopes of the 8-head geometry, then slopes 0, 2, 4, 6 of the 16-head one:
        // 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5.
        let mut expected: Vec<f64> = (1..=8).map(|k| 2f64.powi(-k)).collect();
        expected.extend([-0.5, -1.5, -2.5, -3.5].map(|e: f64| 2f64.powf(e)));
        let got = slopes(12);
        assert_eq!(got.len(), 12);
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-15, "{got:?}");
        }
    }

    #[test]
    fn bias_is_distance_times_slope() {
        let b = bias(2, 3);
        // H = 2: slopes 2^(−8/2) = 1/16 and 2^(−16/2) = 1/256.
        assert_eq!(b[0], 0.0);
        assert_eq!(b[2], -2.0 / 16.0); // head 0, (i, j) = (0, 2)
        assert_eq!(b[9 + 3], -1.0 / 256.0); // head 1, (i, j) = (1, 0)
        assert_eq!(b[9 + 4], 0.0); // head 1, diagonal
    }
}
