//! What the kernels' tests share: comparing values and gradients of a fused graph
//! with burn's own operations.

use burn::prelude::*;

pub(super) use super::dispatch::Ad;

/// The gradients of a backward pass on [`Ad`].
pub(super) type Grads = <Ad as burn::tensor::backend::AutodiffBackend>::Gradients;

/// Asserts `a` and `b` agree element by element within `tol` relative to `b`.
pub(super) fn close(a: Vec<f32>, b: Vec<f32>, tol: f32) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
    }
}

/// The values of `t` in row-major order.
pub(super) fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

/// `p`'s gradient under the fused graph (`g`) against the reference one (`want`).
pub(super) fn same_grad<const D: usize>(p: &Tensor<Ad, D>, g: &Grads, want: &Grads, tol: f32) {
    close(
        values(p.grad(g).unwrap()),
        values(p.grad(want).unwrap()),
        tol,
    );
}
