//! The steps that turn a stored tensor into a sinkscope parameter: transposing PyTorch's
//! `[out, in]` into burn's `[in, out]`, cutting fused q/k/v tensors apart, Gemma's `1 + w`,
//! and llama.cpp's q/k un-permutation.
//!
//! Each step knows its effect on the shape, so a plan is checked against the model before
//! any data is read, and an error can say exactly which conversion did not fit.

use std::fmt;
use std::ops::Range;

use rayon::prelude::*;

use crate::import::gguf::unpermute_qk_rows;

/// One conversion step on a row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `[r, c]` → `[c, r]`: a PyTorch/GGUF `Linear` weight `[out, in]` into burn's `[in, out]`.
    Transpose,
    /// Keep these blocks of rows (axis 0), in order: the per-head pieces of a fused QKV.
    Rows(Vec<Range<usize>>),
    /// Keep columns `start..end` of a 2-D tensor: one part of GPT-2's Conv1D `c_attn`.
    Cols(Range<usize>),
    /// `w` → `1 + w`: Gemma's RMSNorm scale, folded into the weight.
    AddOne,
    /// `w` → `w − 1`: undoes llama.cpp's converter, which stores Gemma's norms as `1 + w`.
    SubOne,
    /// Undo llama.cpp's rotary row permutation with this many heads.
    Unpermute(usize),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Transpose => f.write_str("transpose"),
            Op::Rows(blocks) => {
                let rows: usize = blocks.iter().map(|r| r.len()).sum();
                write!(f, "take {rows} rows in {} block(s)", blocks.len())
            }
            Op::Cols(r) => write!(f, "take columns {}..{}", r.start, r.end),
            Op::AddOne => f.write_str("add 1"),
            Op::SubOne => f.write_str("subtract 1"),
            Op::Unpermute(h) => write!(f, "un-permute rows over {h} heads"),
        }
    }
}

/// The steps as one readable phrase ("transpose", "take columns 0..32, …", "as stored").
pub fn describe(ops: &[Op]) -> String {
    if ops.is_empty() {
        return "as stored".into();
    }
    ops.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The shape `ops` turn `shape` into, or why they cannot apply to it.
pub fn derive_shape(shape: &[usize], ops: &[Op]) -> Result<Vec<usize>, String> {
    let mut shape = shape.to_vec();
    for op in ops {
        match op {
            Op::Transpose => {
                let [r, c] = shape[..] else {
                    return Err(format!("cannot transpose a rank-{} tensor", shape.len()));
                };
                shape = vec![c, r];
            }
            Op::Rows(blocks) => {
                let Some(&rows) = shape.first() else {
                    return Err("a scalar has no rows".into());
                };
                if let Some(bad) = blocks.iter().find(|b| b.end > rows || b.start > b.end) {
                    return Err(format!(
                        "rows {}..{} lie outside {rows}",
                        bad.start, bad.end
                    ));
                }
                shape[0] = blocks.iter().map(|b| b.len()).sum();
            }
            Op::Cols(cols) => {
                let [r, c] = shape[..] else {
                    return Err(format!(
                        "cannot take columns of a rank-{} tensor",
                        shape.len()
                    ));
                };
                if cols.end > c || cols.start > cols.end {
                    return Err(format!(
                        "columns {}..{} lie outside {c}",
                        cols.start, cols.end
                    ));
                }
                shape = vec![r, cols.len()];
            }
            Op::AddOne | Op::SubOne => {}
            Op::Unpermute(heads) => {
                let rows = shape.first().copied().unwrap_or(0);
                if *heads == 0 || rows % (2 * heads) != 0 {
                    return Err(format!(
                        "{rows} rows do not split into {heads} heads of an even size"
                    ));
                }
            }
        }
    }
    Ok(shape)
}

/// Applies `ops` to `data` of row-major `shape`; the result's shape is [`derive_shape`]'s.
pub fn apply(
    mut data: Vec<f32>,
    mut shape: Vec<usize>,
    ops: &[Op],
) -> Result<(Vec<f32>, Vec<usize>), String> {
    for op in ops {
        let next = derive_shape(&shape, std::slice::from_ref(op))?;
        data = match op {
            Op::Transpose => transpose(&data, shape[0], shape[1]),
            Op::Rows(blocks) => {
                let row: usize = shape[1..].iter().product();
                let mut out = Vec::with_capacity(next.iter().product());
                for b in blocks {
                    out.extend_from_slice(&data[b.start * row..b.end * row]);
                }
                out
            }
            Op::Cols(cols) => data
                .chunks_exact(shape[1].max(1))
                .flat_map(|row| row[cols.clone()].iter().copied())
                .collect(),
            Op::AddOne => {
                data.iter_mut().for_each(|w| *w += 1.0);
                data
            }
            Op::SubOne => {
                data.iter_mut().for_each(|w| *w -= 1.0);
                data
            }
            Op::Unpermute(heads) => {
                unpermute_qk_rows(&data, &shape, *heads).map_err(|e| e.to_string())?
            }
        };
        shape = next;
    }
    Ok((data, shape))
}

/// Row-major `[r, c]` → `[c, r]`, in cache-friendly tiles, bands of output rows side by
/// side (every block weight of an imported model is transposed when the block is read, so
/// this is most of the cost of reading one).
fn transpose(data: &[f32], r: usize, c: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0.0f32; data.len()];
    if data.is_empty() {
        return out;
    }
    // Output rows j0..j0 + TILE (input columns), a TILE × TILE tile at a time: read as
    // contiguous input rows into a buffer, written as contiguous output rows (strides of
    // a power of two would otherwise map every access to one cache set).
    out.par_chunks_mut(TILE * r)
        .enumerate()
        .for_each(|(band, dst)| {
            let j0 = band * TILE;
            let width = dst.len() / r;
            let mut tile = [[0.0f32; TILE]; TILE];
            for i0 in (0..r).step_by(TILE) {
                let height = TILE.min(r - i0);
                for (ii, row) in tile.iter_mut().enumerate().take(height) {
                    let start = (i0 + ii) * c + j0;
                    row[..width].copy_from_slice(&data[start..start + width]);
                }
                for jj in 0..width {
                    let out_row = &mut dst[jj * r + i0..jj * r + i0 + height];
                    for (ii, o) in out_row.iter_mut().enumerate() {
                        *o = tile[ii][jj];
                    }
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_and_slices_by_hand() {
        // [[0, 1, 2], [3, 4, 5]]
        let data: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let (t, s) = apply(data.clone(), vec![2, 3], &[Op::Transpose]).unwrap();
        assert_eq!(s, [3, 2]);
        assert_eq!(t, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let (c, s) = apply(data.clone(), vec![2, 3], &[Op::Cols(1..3)]).unwrap();
        assert_eq!(s, [2, 2]);
        assert_eq!(c, [1.0, 2.0, 4.0, 5.0]);
        let (r, s) = apply(data, vec![2, 3], &[Op::Rows(vec![1..2, 0..1])]).unwrap();
        assert_eq!(s, [2, 3]);
        assert_eq!(r, [3.0, 4.0, 5.0, 0.0, 1.0, 2.0]);
        let (b, s) = apply(vec![0.5, -1.0], vec![2], &[Op::AddOne]).unwrap();
        assert_eq!((b, s), (vec![1.5, 0.0], vec![2]));
    }

    #[test]
    fn large_transpose_matches_the_definition() {
        // Neither side a multiple of the tile, single rows and columns, whole tiles.
        for (r, c) in [(137, 70), (1, 45), (45, 1), (32, 64), (0, 3)] {
            let data: Vec<f32> = (0..r * c).map(|v| v as f32).collect();
            let t = transpose(&data, r, c);
            assert_eq!(t.len(), data.len());
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(t[j * r + i], data[i * c + j], "[{r}, {c}] at ({i}, {j})");
                }
            }
        }
    }

    #[test]
    #[allow(
        clippy::single_range_in_vec_init,
        reason = "one block of rows, on purpose"
    )]
    fn steps_that_do_not_fit_are_reported() {
        assert!(derive_shape(&[4], &[Op::Transpose]).is_err());
        assert!(derive_shape(&[4, 6], &[Op::Cols(4..8)]).is_err());
        assert!(derive_shape(&[4, 6], &[Op::Rows(vec![2..5])]).is_err());
        assert!(derive_shape(&[6, 2], &[Op::Unpermute(2)]).is_err());
        assert_eq!(
            derive_shape(&[12, 4], &[Op::Rows(vec![0..2, 6..8]), Op::Transpose]).unwrap(),
            [4, 4]
        );
    }
}
