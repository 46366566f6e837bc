//! The buffers the kernels read and write: contiguous views, uniquely owned storage
//! to overwrite in place, output vectors written once without zeroing, and the sizes
//! of rayon's tasks.
//!
//! Why: flex hands out shared, possibly strided storage and zeroes every fresh
//! buffer; a kernel that writes each output element once needs neither the zeroing
//! nor a copy of an input it may overwrite.

use std::mem::MaybeUninit;

use burn::prelude::*;
use burn_flex::FlexTensor;

/// Elements per rayon task for element-wise kernels (64 KiB of f32).
pub(super) const CHUNK: usize = 1 << 14;

/// Rows per rayon task for row kernels: at least `CHUNK` elements.
pub(super) fn rows_per_task(row_len: usize) -> usize {
    CHUNK.div_ceil(row_len.max(1))
}

/// `t` contiguous from offset 0 (a copy only if it is a strided view).
pub(super) fn contiguous(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

/// `t` as a contiguous buffer owned by the caller alone, to overwrite in place (a
/// copy only when it is shared or strided).
pub(super) fn owned(t: FlexTensor) -> FlexTensor {
    let mut c = t.to_contiguous();
    // `to_contiguous` shares the buffer when no copy is needed: drop the original
    // handle so `c` can be the only one.
    drop(t);
    if c.try_storage_mut::<f32>().is_none() {
        let copy = c.storage::<f32>().to_vec();
        c = with_shape(c.layout().shape().clone(), copy);
    }
    c
}

/// The values of a tensor that came from [`owned`], to overwrite.
pub(super) fn in_place(t: &mut FlexTensor) -> &mut [f32] {
    t.try_storage_mut().expect("owned() made it unique")
}

/// A flex tensor of `shape` holding `values` (row-major).
pub(super) fn with_shape(shape: impl Into<Shape>, values: Vec<f32>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// A vector of `n` elements, each written by `fill`, without zeroing first.
///
/// # Safety
///
/// `fill` must write every one of the `n` elements of the slice it is given before
/// it returns (an element left unwritten would be read as initialised memory).
pub(super) unsafe fn filled(n: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: the capacity is at least `n`, and the caller guarantees that `fill`
    // initialised all `n` elements.
    unsafe { v.set_len(n) };
    v
}

/// Length of `t`'s last dimension (at least 1, so it can size row chunks).
pub(super) fn last_dim(t: &FlexTensor) -> usize {
    let shape = t.layout().shape();
    shape[shape.num_dims() - 1].max(1)
}
