//! The inputs of the analysis: attention maps and residual-stream activations of one
//! sequence, as plain `f32` buffers, validated once at construction.
//!
//! Everything downstream assumes what `new` checks here (shape, finiteness, non-negative
//! rows summing to 1), so the metrics themselves never have to guard against NaN or a
//! truncated buffer.

use rayon::prelude::*;

use super::error::AnalysisError;

/// Rows may deviate from summing to 1 by this much (f16/bf16 softmax outputs are off by a
/// few 1e-4 on long rows).
pub const ROW_SUM_TOLERANCE: f64 = 1e-3;

/// Weights above the diagonal at or below this count as zero when detecting causality
/// (a masked softmax gives exact zeros; this only absorbs conversion noise).
pub const CAUSAL_TOLERANCE: f32 = 1e-7;

/// Attention maps of one sequence, `[layers, heads, seq_len, seq_len]` row-major; row i is
/// query i and sums to 1. Causal maps are zero above the diagonal.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionMaps {
    layers: usize,
    heads: usize,
    seq_len: usize,
    data: Vec<f32>,
    causal: bool,
}

fn shape_len(what: &'static str, shape: &[usize]) -> Result<usize, AnalysisError> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| AnalysisError::Length {
            what,
            shape: shape.to_vec(),
            expected: usize::MAX,
            got: 0,
        })
}

/// Checks a named shape against a buffer of `got` values: no dimension 0, no overflow,
/// and the product equal to `got`. Each error names `what` and the problem.
pub(super) fn check_shape<const N: usize>(
    what: &'static str,
    dims: [(&'static str, usize); N],
    got: usize,
) -> Result<(), AnalysisError> {
    if let Some((dim, _)) = dims.iter().find(|&&(_, value)| value == 0) {
        return Err(AnalysisError::EmptyDimension { what, dim });
    }
    let shape: Vec<usize> = dims.iter().map(|&(_, v)| v).collect();
    let expected = shape_len(what, &shape)?;
    if got != expected {
        return Err(AnalysisError::Length {
            what,
            shape,
            expected,
            got,
        });
    }
    Ok(())
}

impl AttentionMaps {
    /// Validates and wraps `[layers, heads, seq_len, seq_len]` maps: the length must match,
    /// every weight must be finite and non-negative, every row must sum to 1 within
    /// [`ROW_SUM_TOLERANCE`]. The error names the layer, head and row at fault.
    pub fn new(
        layers: usize,
        heads: usize,
        seq_len: usize,
        data: Vec<f32>,
    ) -> Result<Self, AnalysisError> {
        const WHAT: &str = "attention maps [layers, heads, seq_len, seq_len]";
        check_shape(
            WHAT,
            [
                ("layers", layers),
                ("heads", heads),
                ("seq_len", seq_len),
                ("seq_len", seq_len),
            ],
            data.len(),
        )?;
        let t = seq_len;
        let mut causal = true;
        for (m, map) in data.chunks_exact(t * t).enumerate() {
            let (layer, head) = (m / heads, m % heads);
            for (row, values) in map.chunks_exact(t).enumerate() {
                let mut sum = 0.0f64;
                for (col, &value) in values.iter().enumerate() {
                    if !value.is_finite() {
                        return Err(AnalysisError::NonFiniteAttention {
                            layer,
                            head,
                            row,
                            col,
                            value,
                        });
                    }
                    if value < 0.0 {
                        return Err(AnalysisError::NegativeAttention {
                            layer,
                            head,
                            row,
                            col,
                            value,
                        });
                    }
                    if col > row && value > CAUSAL_TOLERANCE {
                        causal = false;
                    }
                    sum += f64::from(value);
                }
                if (sum - 1.0).abs() > ROW_SUM_TOLERANCE {
                    return Err(AnalysisError::RowSum {
                        layer,
                        head,
                        row,
                        sum,
                        tolerance: ROW_SUM_TOLERANCE,
                    });
                }
            }
        }
        Ok(AttentionMaps {
            layers,
            heads,
            seq_len,
            data,
            causal,
        })
    }

    /// Maps of consecutive layers (each already validated, with the same heads and
    /// length) stacked into one, without checking the rows again.
    pub fn stack(parts: Vec<AttentionMaps>) -> Result<Self, AnalysisError> {
        const WHAT: &str = "stacked attention maps";
        let first = parts.first().ok_or(AnalysisError::EmptyDimension {
            what: WHAT,
            dim: "layers",
        })?;
        let (heads, seq_len) = (first.heads, first.seq_len);
        let layers: usize = parts.iter().map(|p| p.layers).sum();
        if let Some(bad) = parts
            .iter()
            .find(|p| p.heads != heads || p.seq_len != seq_len)
        {
            return Err(AnalysisError::Length {
                what: WHAT,
                shape: vec![bad.layers, heads, seq_len, seq_len],
                expected: bad.layers * heads * seq_len * seq_len,
                got: bad.data.len(),
            });
        }
        let causal = parts.iter().all(|p| p.causal);
        let mut data = Vec::with_capacity(layers * heads * seq_len * seq_len);
        for p in parts {
            data.extend_from_slice(&p.data);
        }
        Ok(AttentionMaps {
            layers,
            heads,
            seq_len,
            data,
            causal,
        })
    }

    /// Number of layers L.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Number of heads H per layer.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Sequence length T.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// The `T × T` map of one head, row-major.
    pub fn head(&self, layer: usize, head: usize) -> &[f32] {
        let tt = self.seq_len * self.seq_len;
        let start = (layer * self.heads + head) * tt;
        &self.data[start..start + tt]
    }

    /// The `H × T × T` maps of one layer.
    pub fn layer(&self, layer: usize) -> &[f32] {
        let size = self.heads * self.seq_len * self.seq_len;
        &self.data[layer * size..(layer + 1) * size]
    }

    /// Whether every map is zero above the diagonal (detected at construction).
    pub fn is_causal(&self) -> bool {
        self.causal
    }

    /// The head mean Ā of a layer, `T × T` in f64 (most graph and topology metrics read it).
    ///
    /// Rows in parallel: every layer's metrics wait for it, and most of its time is the
    /// first touch of a fresh 33 MB buffer at 2,048 tokens (page faults), which the
    /// cores then share. Each entry is summed over the heads in order, as serially.
    pub fn head_mean(&self, layer: usize) -> Vec<f64> {
        let t = self.seq_len;
        let tt = t * t;
        let maps = self.layer(layer);
        let inv = 1.0 / self.heads as f64;
        let mut mean = vec![0.0f64; tt];
        mean.par_chunks_mut(t.max(1))
            .enumerate()
            .for_each(|(i, row)| {
                for map in maps.chunks_exact(tt) {
                    for (m, &a) in row.iter_mut().zip(&map[i * t..(i + 1) * t]) {
                        *m += f64::from(a);
                    }
                }
                row.iter_mut().for_each(|m| *m *= inv);
            });
        mean
    }

    /// The whole buffer, `[L, H, T, T]` row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
}

/// Residual-stream activations of one sequence, `[n, seq_len, d_model]` row-major, where
/// entry 0 is the embedding output and entry l + 1 the output of block l (n = L + 1, as
/// Hugging Face's `output_hidden_states`).
#[derive(Debug, Clone, PartialEq)]
pub struct HiddenStates {
    n: usize,
    seq_len: usize,
    d_model: usize,
    data: Vec<f32>,
}

impl HiddenStates {
    /// Validates the length and that every value is finite.
    pub fn new(
        n: usize,
        seq_len: usize,
        d_model: usize,
        data: Vec<f32>,
    ) -> Result<Self, AnalysisError> {
        const WHAT: &str = "hidden states [n, seq_len, d_model]";
        check_shape(
            WHAT,
            [("n", n), ("seq_len", seq_len), ("d_model", d_model)],
            data.len(),
        )?;
        if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
            return Err(AnalysisError::NonFiniteHidden {
                index: pos / (seq_len * d_model),
                token: pos / d_model % seq_len,
                dim: pos % d_model,
                value: data[pos],
            });
        }
        Ok(HiddenStates {
            n,
            seq_len,
            d_model,
            data,
        })
    }

    /// Number of stacked states (L + 1).
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always false: construction rejects an empty stack.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Sequence length T.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Model width d.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// The `T × d` activations of entry `index`.
    pub fn state(&self, index: usize) -> &[f32] {
        let size = self.seq_len * self.d_model;
        &self.data[index * size..(index + 1) * size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_layer_map_names_its_layer_in_the_model() {
        let mut data = vec![0.5f32; 2 * 2 * 2];
        data[5] = f32::NAN; // head 1, row 0, column 1
        let e = AttentionMaps::new(1, 2, 2, data).unwrap_err();
        assert!(e.to_string().starts_with("attention layer 0 head 1"), "{e}");
        let e = e.in_layer(5).to_string();
        assert!(
            e.starts_with("attention layer 5 head 1") && e.contains("row 0, column 1"),
            "{e}"
        );
    }

    fn causal_2x2() -> Vec<f32> {
        vec![1.0, 0.0, 0.5, 0.5]
    }

    #[test]
    fn accepts_valid_maps_and_detects_causality() {
        let m = AttentionMaps::new(1, 2, 2, [causal_2x2(), causal_2x2()].concat()).unwrap();
        assert!(m.is_causal());
        assert_eq!(m.head(0, 1), &[1.0, 0.0, 0.5, 0.5]);
        let b = AttentionMaps::new(1, 1, 2, vec![0.5, 0.5, 0.5, 0.5]).unwrap();
        assert!(!b.is_causal());
        // mean of [[1,0],[.5,.5]] and [[.5,.5],[.5,.5]] = [[.75,.25],[.5,.5]]
        let m = AttentionMaps::new(1, 2, 2, [causal_2x2(), vec![0.5; 4]].concat()).unwrap();
        assert_eq!(m.head_mean(0), vec![0.75, 0.25, 0.5, 0.5]);
    }

    #[test]
    fn stacking_layers_keeps_data_and_causality() {
        let a = AttentionMaps::new(1, 1, 2, causal_2x2()).unwrap();
        let b = AttentionMaps::new(1, 1, 2, vec![0.5; 4]).unwrap();
        let s = AttentionMaps::stack(vec![a.clone(), a.clone()]).unwrap();
        assert_eq!((s.layers(), s.is_causal()), (2, true));
        assert_eq!(s.head(1, 0), a.head(0, 0));
        let s = AttentionMaps::stack(vec![a.clone(), b]).unwrap();
        assert!(!s.is_causal());
        assert_eq!(s.head(1, 0), &[0.5; 4]);
        let other = AttentionMaps::new(1, 2, 2, [causal_2x2(), causal_2x2()].concat()).unwrap();
        assert!(AttentionMaps::stack(vec![a, other]).is_err());
        assert!(AttentionMaps::stack(Vec::new()).is_err());
    }

    #[test]
    fn rejects_bad_maps_with_location() {
        let err = AttentionMaps::new(1, 1, 2, vec![1.0, 0.0, 0.5]).unwrap_err();
        assert!(matches!(
            err,
            AnalysisError::Length {
                expected: 4,
                got: 3,
                ..
            }
        ));
        let err = AttentionMaps::new(0, 1, 2, vec![]).unwrap_err();
        assert!(matches!(
            err,
            AnalysisError::EmptyDimension { dim: "layers", .. }
        ));
        let mut d = [causal_2x2(), causal_2x2()].concat();
        d[6] = f32::NAN;
        let err = AttentionMaps::new(1, 2, 2, d).unwrap_err();
        assert!(matches!(
            err,
            AnalysisError::NonFiniteAttention {
                layer: 0,
                head: 1,
                row: 1,
                col: 0,
                ..
            }
        ));
        let mut d = causal_2x2();
        d[3] = f32::INFINITY;
        let msg = AttentionMaps::new(1, 1, 2, d).unwrap_err().to_string();
        assert!(msg.contains("row 1, column 1"), "{msg}");
        let err = AttentionMaps::new(1, 1, 2, vec![1.0, 0.0, 0.5, 0.4]).unwrap_err();
        assert!(matches!(
            err,
            AnalysisError::RowSum {
                layer: 0,
                head: 0,
                row: 1,
                ..
            }
        ));
        let err = AttentionMaps::new(1, 1, 2, vec![1.2, -0.2, 0.5, 0.5]).unwrap_err();
        assert!(matches!(
            err,
            AnalysisError::NegativeAttention { col: 1, .. }
        ));
        // within tolerance
        assert!(AttentionMaps::new(1, 1, 2, vec![1.0005, 0.0, 0.5, 0.5]).is_ok());
    }

    #[test]
    fn hidden_states_validation() {
        let h = HiddenStates::new(2, 1, 2, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(h.state(1), &[3.0, 4.0]);
        let err = HiddenStates::new(2, 1, 2, vec![1.0, 2.0, f32::NAN, 4.0]).unwrap_err();
        assert!(matches!(
            err,
            AnalysisError::NonFiniteHidden {
                index: 1,
                token: 0,
                dim: 0,
                ..
            }
        ));
        assert!(HiddenStates::new(2, 1, 2, vec![1.0]).is_err());
    }
}
