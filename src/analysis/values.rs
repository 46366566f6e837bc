//! Value-vector norms, and the value-norm ratio of a head's sink key: a sink is a
//! no-op because the key everyone attends to carries a small value vector, so
//! attending to it adds little to the residual stream.
//!
//! Sources: Gu et al., "When Attention Sink Emerges in Language Models: An Empirical
//! View" (arXiv 2410.10781: the sink acts as a key bias whose small value vector does
//! not contribute to the value computation); Guo et al., "Active-Dormant Attention Heads"
//! (arXiv 2410.13835: dormant heads put their mass on a first token whose value state is
//! near zero). The definition below is sinkscope's, stated in
//! `docs/METRICS.md` ("Value-norm ratio").

use super::error::AnalysisError;
use super::maps::check_shape;

/// Per-key value-vector norms ‖v_j‖₂ of one sequence, `[layers, kv_heads, seq_len]`
/// row-major: one norm per key/value head and key position (grouped-query heads share
/// their key/value head's norms). A norm is what the value metrics read, so only norms
/// are kept (one float per key instead of `Dh`).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueNorms {
    layers: usize,
    kv_heads: usize,
    seq_len: usize,
    data: Vec<f32>,
}

impl ValueNorms {
    /// The norms of value vectors `[layers, kv_heads, seq_len, head_dim]` (row-major),
    /// computed in f64. Every value must be finite.
    pub fn from_vectors(
        layers: usize,
        kv_heads: usize,
        seq_len: usize,
        head_dim: usize,
        values: &[f32],
    ) -> Result<Self, AnalysisError> {
        const WHAT: &str = "value vectors [layers, kv_heads, seq_len, head_dim]";
        check_shape(
            WHAT,
            [
                ("layers", layers),
                ("kv_heads", kv_heads),
                ("seq_len", seq_len),
                ("head_dim", head_dim),
            ],
            values.len(),
        )?;
        let data = values
            .chunks_exact(head_dim)
            .map(|v| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt() as f32)
            .collect();
        Self::new(layers, kv_heads, seq_len, data)
    }

    /// Wraps norms `[layers, kv_heads, seq_len]`; each must be finite and non-negative.
    pub fn new(
        layers: usize,
        kv_heads: usize,
        seq_len: usize,
        data: Vec<f32>,
    ) -> Result<Self, AnalysisError> {
        const WHAT: &str = "value norms [layers, kv_heads, seq_len]";
        check_shape(
            WHAT,
            [
                ("layers", layers),
                ("kv_heads", kv_heads),
                ("seq_len", seq_len),
            ],
            data.len(),
        )?;
        if let Some(pos) = data.iter().position(|v| !v.is_finite() || *v < 0.0) {
            return Err(AnalysisError::BadValueNorm {
                layer: pos / (kv_heads * seq_len),
                kv_head: pos / seq_len % kv_heads,
                key: pos % seq_len,
                value: data[pos],
            });
        }
        Ok(Self {
            layers,
            kv_heads,
            seq_len,
            data,
        })
    }

    /// Norms of consecutive layers (with the same heads and length) stacked into one.
    pub fn stack(parts: Vec<ValueNorms>) -> Result<Self, AnalysisError> {
        const WHAT: &str = "stacked value norms";
        let first = parts.first().ok_or(AnalysisError::EmptyDimension {
            what: WHAT,
            dim: "layers",
        })?;
        let (kv_heads, seq_len) = (first.kv_heads, first.seq_len);
        if let Some(bad) = parts
            .iter()
            .find(|p| p.kv_heads != kv_heads || p.seq_len != seq_len)
        {
            return Err(AnalysisError::Length {
                what: WHAT,
                shape: vec![bad.layers, kv_heads, seq_len],
                expected: bad.layers * kv_heads * seq_len,
                got: bad.data.len(),
            });
        }
        let layers = parts.iter().map(|p| p.layers).sum();
        let data = parts.into_iter().flat_map(|p| p.data).collect();
        Ok(Self {
            layers,
            kv_heads,
            seq_len,
            data,
        })
    }

    /// Number of layers L.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Number of key/value heads per layer.
    pub fn kv_heads(&self) -> usize {
        self.kv_heads
    }

    /// Sequence length T.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// The `T` norms of one key/value head of one layer.
    pub fn head(&self, layer: usize, kv_head: usize) -> &[f32] {
        let start = (layer * self.kv_heads + kv_head) * self.seq_len;
        &self.data[start..start + self.seq_len]
    }
}

/// The key/value head that query head `head` of `heads` reads when `kv_heads` divides
/// `heads` (Hugging Face's `repeat_kv`: groups of `heads / kv_heads` consecutive query
/// heads share one).
pub fn kv_head_of(head: usize, heads: usize, kv_heads: usize) -> usize {
    head / (heads / kv_heads)
}

/// ‖v_s‖₂ / mean_{j≠s} ‖v_j‖₂ for the sink key `s` among one key/value head's key
/// norms: below 1 when the sink's value vector is smaller than the others'. `None` with a
/// single key, or when every other value vector is zero.
pub fn value_norm_ratio(norms: &[f32], sink: usize) -> Option<f64> {
    let others = norms.len().checked_sub(1).filter(|&n| n > 0)?;
    let rest: f64 = norms
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != sink)
        .map(|(_, &n)| f64::from(n))
        .sum();
    let mean = rest / others as f64;
    (mean > 0.0).then(|| f64::from(norms[sink]) / mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_and_ratio_by_hand() {
        // one layer, one kv head, 3 keys of dimension 2: v = (0.3, 0.4), (3, 4), (6, 8)
        let v = [0.3, 0.4, 3.0, 4.0, 6.0, 8.0];
        let n = ValueNorms::from_vectors(1, 1, 3, 2, &v).unwrap();
        assert_eq!(n.head(0, 0), &[0.5, 5.0, 10.0]);
        // sink at key 0: 0.5 / mean(5, 10) = 0.5 / 7.5 = 1/15
        let r = value_norm_ratio(n.head(0, 0), 0).unwrap();
        assert!((r - 1.0 / 15.0).abs() < 1e-7, "{r}");
        // sink at key 2: 10 / mean(0.5, 5) = 10 / 2.75
        let r = value_norm_ratio(n.head(0, 0), 2).unwrap();
        assert!((r - 10.0 / 2.75).abs() < 1e-6, "{r}");
        // undefined with one key or with zero vectors elsewhere
        assert_eq!(value_norm_ratio(&[1.0], 0), None);
        assert_eq!(value_norm_ratio(&[1.0, 0.0], 0), None);
    }

    #[test]
    fn grouped_query_heads_share_their_kv_head() {
        // 8 query heads over 2 kv heads: 0..4 read kv 0, 4..8 read kv 1
        let kv: Vec<usize> = (0..8).map(|h| kv_head_of(h, 8, 2)).collect();
        assert_eq!(kv, [0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(kv_head_of(5, 8, 8), 5);
        assert_eq!(kv_head_of(5, 8, 1), 0);
    }

    #[test]
    fn shapes_stack_and_bad_input() {
        let a = ValueNorms::new(1, 2, 3, vec![1.0; 6]).unwrap();
        let b = ValueNorms::new(1, 2, 3, vec![2.0; 6]).unwrap();
        let s = ValueNorms::stack(vec![a.clone(), b]).unwrap();
        assert_eq!((s.layers(), s.kv_heads(), s.seq_len()), (2, 2, 3));
        assert_eq!(s.head(1, 1), &[2.0; 3]);
        let c = ValueNorms::new(1, 1, 3, vec![1.0; 3]).unwrap();
        assert!(ValueNorms::stack(vec![a, c]).is_err());
        assert!(ValueNorms::from_vectors(1, 1, 3, 2, &[0.0; 5]).is_err());
        let err = ValueNorms::from_vectors(1, 2, 2, 1, &[0.0, 1.0, f32::NAN, 1.0]).unwrap_err();
        assert!(err.to_string().contains("kv head 1"), "{err}");
    }
}
