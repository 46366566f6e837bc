//! Fixed sinusoidal absolute positions (Vaswani et al. 2017, §3.5).

/// `[seq_len, d]` table: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(same).
pub fn sinusoidal_table(seq_len: usize, d: usize, offset: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(seq_len * d);
    for p in offset..offset + seq_len {
        for c in 0..d {
            let i = (c / 2) as f64;
            let angle = p as f64 / 10_000f64.powf(2.0 * i / d as f64);
            out.push(if c % 2 == 0 { angle.sin() } else { angle.cos() } as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_entries() {
        let t = sinusoidal_table(3, 4, 0);
        // p = 0: sin 0, cos 0, sin 0, cos 0.
        assert_eq!(&t[..4], &[0.0, 1.0, 0.0, 1.0]);
        // p = 2, i = 1: angle = 2 / 10000^(2/4) = 0.02.
        assert!((t[8 + 2] - 0.02f64.sin() as f32).abs() < 1e-7);
        assert!((t[8 + 3] - 0.02f64.cos() as f32).abs() < 1e-7);
        assert!((t[8] - 2f64.sin() as f32).abs() < 1e-7);
    }
}
