//! Binomial coefficients for the combinatorial number system.
//!
//! A k-simplex with vertices v_k > … > v_0 gets the index Σ_i C(v_i, i + 1): simplices are
//! never stored, only these integers, and vertices and cofacets are recovered from them
//! (Ripser's `binomial_coeff_table`). The table is laid out row-per-`n` so that C(n, k) and
//! C(n, k + 1), read together in the coboundary loop, share a cache line.

/// Simplex index in the combinatorial number system.
pub(super) type Index = i64;

/// Table of C(n, k) for n ≤ `n_max`, k ≤ `k_max`.
pub(super) struct Binomial {
    stride: usize,
    table: Vec<Index>,
}

impl Binomial {
    /// Builds the table, or `None` when C(n_max, k) overflows an `i64` for some k ≤ k_max
    /// (the simplices of that dimension could not be indexed).
    pub(super) fn new(n_max: usize, k_max: usize) -> Option<Self> {
        let stride = k_max + 1;
        let mut table = vec![0 as Index; (n_max + 1) * stride];
        for n in 0..=n_max {
            table[n * stride] = 1;
            for k in 1..=k_max.min(n) {
                let above = table[(n - 1) * stride + k - 1];
                let left = if k < n {
                    table[(n - 1) * stride + k]
                } else {
                    0
                };
                table[n * stride + k] = above.checked_add(left)?;
            }
        }
        Some(Binomial { stride, table })
    }

    /// C(n, k); zero when k > n. `n` and `k` must lie inside the table.
    #[inline(always)]
    pub(super) fn get(&self, n: Index, k: Index) -> Index {
        debug_assert!(n >= 0 && k >= 0 && (k as usize) < self.stride);
        self.table[n as usize * self.stride + k as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pascal_values() {
        let b = Binomial::new(10, 4).unwrap();
        assert_eq!(b.get(0, 0), 1);
        assert_eq!(b.get(5, 2), 10);
        assert_eq!(b.get(10, 3), 120);
        assert_eq!(b.get(10, 4), 210);
        assert_eq!(b.get(3, 4), 0);
        assert_eq!(b.get(4, 4), 1);
    }

    #[test]
    fn overflow_is_reported() {
        // C(200_000, 5) ≈ 2.7e24 does not fit an i64.
        assert!(Binomial::new(200_000, 5).is_none());
        assert!(Binomial::new(2_000, 3).is_some());
    }
}
