//! Rotary position embeddings applied to the q and k projections in their own
//! layout, `[B·T, n·Dh]`, with the backward pass.
//!
//! Why: in burn's operations a rotation is a product with the partner matrix, two
//! element-wise products with broadcast tables and a sum, each a pass into a fresh
//! buffer, and the same again backward. Here each row is rotated in one pass,
//! reading each feature's partner by index; the backward pass is the same rotation
//! with the sine table read at the partner. The model-level check (against the
//! per-head rotation, both pairings, partial rotary) is in
//! `model::position::rope`'s tests.

use std::mem::MaybeUninit;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops};
use burn::backend::Flex;
use burn::prelude::*;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::buffers::{contiguous, filled, rows_per_task, with_shape};
use super::dispatch::unary_op;
use super::simd::multiversion;

/// Rotates `x` `[B·T, n·Dh]` by `tables`; `other` computes the same on other backends.
pub fn rotate<B: Backend>(
    x: Tensor<B, 2>,
    tables: &Arc<RotationTables>,
    other: impl FnOnce(Tensor<B, 2>) -> Tensor<B, 2>,
) -> Tensor<B, 2> {
    unary_op(
        x,
        RotateBackward,
        |x| {
            let y = rotate_flex(&x, tables, &tables.sin);
            (y, tables.clone())
        },
        other,
    )
}

/// Host tables of a rotation in the projections' layout (see
/// [`crate::model::position::RowRotation`]): `y_i = x_i cos_i + x_{partner_i} sin_i`
/// over a row of `n·Dh` features, tables `[T, n·Dh]`, the sign of the rotation in
/// `sin`.
#[derive(Debug)]
pub struct RotationTables {
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// `sin` read at each feature's partner: the backward pass's table.
    sin_back: Vec<f32>,
    /// Runs `(start, len, δ)` of features whose partner is δ columns away.
    runs: Vec<(usize, usize, isize)>,
    row_len: usize,
}

impl RotationTables {
    /// Tables from `cos` and signed `sin` (`[T, row]`) and each column's partner
    /// column (`partner[partner[i]] == i`; pass-through columns are their own
    /// partner, with `sin` 0).
    pub fn new(cos: Vec<f32>, sin: Vec<f32>, partner: &[usize]) -> Self {
        let row_len = partner.len();
        let sin_back = (0..sin.len())
            .map(|k| sin[k - k % row_len + partner[k % row_len]])
            .collect();
        let mut runs: Vec<(usize, usize, isize)> = Vec::new();
        for (i, &p) in partner.iter().enumerate() {
            let delta = p as isize - i as isize;
            match runs.last_mut() {
                Some((start, len, d)) if *d == delta && *start + *len == i => *len += 1,
                _ => runs.push((i, 1, delta)),
            }
        }
        Self {
            cos,
            sin,
            sin_back,
            runs,
            row_len,
        }
    }
}

/// Backward of [`rotate`]: the same rotation with the partner's table.
#[derive(Debug)]
struct RotateBackward;

impl Backward<Flex, 1> for RotateBackward {
    type State = Arc<RotationTables>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let tables = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            rotate_flex(&g, &tables, &tables.sin_back)
        });
    }
}

/// `x` rotated by `tables`, reading the signed sine table `sin` (the forward's or
/// the backward's).
fn rotate_flex(x: &FlexTensor, tables: &RotationTables, sin: &[f32]) -> FlexTensor {
    let x = contiguous(x);
    let src: &[f32] = x.storage();
    let len = tables.row_len;
    let rows = rows_per_task(len);
    assert_eq!(src.len() % len, 0, "rotate: rows of {len} features");
    // SAFETY: `y` and `src` are cut into the same whole rows (asserted above), and
    // `rotate_rows` writes every element of each row of `y`: the runs of the tables
    // cover the row's features from 0 to `len` (`RotationTables::new`).
    let y = unsafe {
        filled(src.len(), |y| {
            y.par_chunks_mut(rows * len)
                .zip(src.par_chunks(rows * len))
                .enumerate()
                .for_each(|(i, (y, x))| {
                    rotate_rows(x, &tables.cos, sin, &tables.runs, len, i * rows, y)
                })
        })
    };
    with_shape(x.layout().shape().clone(), y)
}

multiversion! {
    /// Rotary embedding of rows of `x` (`[rows, row_len]`, row r at position
    /// `(first_row + r) % positions`): `y_i = x_i cos_i + x_{i+δ} sin_i`, over `runs`
    /// `(start, len, δ)` of features sharing the partner offset δ; the tables are
    /// `[positions, row_len]`.
    fn rotate_rows(
        x: &[f32],
        cos: &[f32],
        sin: &[f32],
        runs: &[(usize, usize, isize)],
        row_len: usize,
        first_row: usize,
        y: &mut [MaybeUninit<f32>],
    ) {
        let positions = cos.len() / row_len;
        for (r, (x, y)) in x.chunks_exact(row_len).zip(y.chunks_exact_mut(row_len)).enumerate() {
            let t = (first_row + r) % positions;
            let (c, s) = (&cos[t * row_len..][..row_len], &sin[t * row_len..][..row_len]);
            for &(start, len, delta) in runs {
                let partner = (start as isize + delta) as usize;
                let (xs, xp) = (&x[start..start + len], &x[partner..partner + len]);
                let (cs, ss) = (&c[start..start + len], &s[start..start + len]);
                for ((((y, &a), &b), &c), &s) in
                    y[start..start + len].iter_mut().zip(xs).zip(xp).zip(cs).zip(ss)
                {
                    y.write(a * c + b * s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_support::{close, values, Ad};

    /// Two heads of 6 features, the first 4 rotated in "rotate_half" pairs and the
    /// last 2 passed through; 7 positions; 3010 rows, so that rows span several
    /// rayon tasks and each task starts at a position other than 0.
    const HEAD: [usize; 6] = [2, 3, 0, 1, 4, 5];
    const T: usize = 7;
    const ROWS: usize = 3010;
    const LEN: usize = 12;

    fn partner() -> Vec<usize> {
        (0..LEN).map(|i| i - i % 6 + HEAD[i % 6]).collect()
    }

    fn table(seed: usize) -> Vec<f32> {
        (0..T * LEN)
            .map(|k| ((k * 31 + seed) % 17) as f32 / 8.0 - 1.0)
            .collect()
    }

    /// The fallback for other backends, never taken here.
    fn no_other<B: Backend>(_: Tensor<B, 2>) -> Tensor<B, 2> {
        unreachable!("a CPU backend")
    }

    #[test]
    fn rotation_and_its_gradient_match_the_formula() {
        let dev = Default::default();
        let p = partner();
        let (cos, sin) = (table(3), table(11));
        let tables = Arc::new(RotationTables::new(cos.clone(), sin.clone(), &p));
        // Runs: per head, δ = +2 over 2 features, −2 over 2, 0 over 2.
        assert_eq!(tables.runs.len(), 6);
        assert_eq!(tables.runs.iter().map(|r| r.1).sum::<usize>(), LEN);
        let xs: Vec<f32> = (0..ROWS * LEN)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.1)
            .collect();
        let gs: Vec<f32> = (0..ROWS * LEN)
            .map(|i| ((i * 13 % 19) as f32 - 9.0) * 0.2)
            .collect();
        // y_i = x_i cos_i + x_{p(i)} sin_i; dx_j = g_j cos_j + g_{p(j)} sin_{p(j)}.
        let (mut want_y, mut want_dx) = (Vec::new(), Vec::new());
        for r in 0..ROWS {
            let (x, g, t) = (&xs[r * LEN..][..LEN], &gs[r * LEN..][..LEN], r % T);
            let (c, s) = (&cos[t * LEN..][..LEN], &sin[t * LEN..][..LEN]);
            for i in 0..LEN {
                want_y.push(x[i] * c[i] + x[p[i]] * s[i]);
                want_dx.push(g[i] * c[i] + g[p[i]] * s[p[i]]);
            }
        }
        let x = Tensor::<Flex, 2>::from_data(TensorData::new(xs.clone(), [ROWS, LEN]), &dev);
        close(values(rotate(x, &tables, no_other)), want_y.clone(), 0.0);
        let x = Tensor::<Ad, 2>::from_data(TensorData::new(xs, [ROWS, LEN]), &dev).require_grad();
        let w = Tensor::<Ad, 2>::from_data(TensorData::new(gs, [ROWS, LEN]), &dev);
        let y = rotate(x.clone(), &tables, no_other);
        close(values(y.clone()), want_y, 0.0);
        let g = (y * w).sum().backward();
        close(values(x.grad(&g).unwrap()), want_dx, 0.0);
    }
}
