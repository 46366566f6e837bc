//! Fused CPU kernels, with their own backward passes, for the hot spots of training
//! on the flex backend.
//!
//! Why: flex evaluates `erf` and `exp` one element at a time on one thread (libm),
//! copies N-dimensional strided views element by element, and burn's autodiff builds
//! softmax, log-softmax and the norms out of five to seven primitive operations each
//! way, every one a pass over memory into a freshly zeroed buffer. Together that was
//! most of a training step's wall time on two cores. Here each is one pass forward
//! and one backward, split across rayon's threads, writing in place where the input
//! is no longer needed, with `exp` and `erf` as branch-free polynomials the compiler
//! vectorises (AVX-512 or AVX2+FMA chosen at run time, no `target-cpu` needed). Row
//! reductions sum in a fixed order, so results do not depend on the thread count.
//!
//! Dispatch is by type at run time so the model stays generic over `Backend`: on
//! `Flex` and `Autodiff<Flex>` with `f32` tensors these kernels run; on any other
//! backend (CUDA, …) the callers' burn operations do, with the same mathematics.
//!
//! The files, one operation each (its public entry point, its autodiff backward, its
//! row kernels and its tests), on shared machinery:
//!
//! - `dispatch.rs`: which backend a tensor lives on; registering a fused operation
//!   with the autodiff graph.
//! - `buffers.rs`: contiguous and uniquely owned storage, outputs written once
//!   without zeroing, rayon task sizes.
//! - `simd.rs`: `multiversion!` (one kernel compiled per instruction set, chosen at
//!   run time), `exp`, row maxima and sums in fixed-order lanes.
//! - `gelu.rs`: exact GELU ([`gelu`]).
//! - `softmax.rs`: the attention softmax with a broadcast bias ([`softmax`]).
//! - `norm.rs`: LayerNorm/RMSNorm normalisation, bare ([`normalize`]) and with
//!   weight and shift ([`norm`]).
//! - `nll.rs`: the per-token loss ([`token_nll`]).
//! - `rotate.rs`: rotary embeddings in the projections' layout ([`rotate`]).
//! - `permute.rs`: materialised permutations of attention heads ([`permute`]).
//! - `matmul.rs`: batched matrix products and linear layers ([`matmul`], [`linear`]).
//! - `adamw.rs`: the AdamW update in one pass ([`adamw`]).
//! - `memory.rs`: keeping freed activations in the process for the next step.
//! - `test_support.rs`: comparisons the tests share.

mod buffers;
mod dispatch;
mod simd;

mod adamw;
mod gelu;
mod matmul;
mod memory;
mod nll;
mod norm;
mod permute;
mod rotate;
mod softmax;

#[cfg(test)]
mod test_support;

pub use adamw::{adamw, adamw_fuses, AdamWStep};
pub use gelu::gelu;
pub use matmul::{linear, matmul};
pub use memory::retain_freed_memory;
pub use nll::token_nll;
pub use norm::{norm, normalize};
pub use permute::permute;
pub use rotate::{rotate, RotationTables};
pub use softmax::softmax;
