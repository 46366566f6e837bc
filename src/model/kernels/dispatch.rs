//! Which backend a tensor lives on, decided by type at run time, and registration of
//! a fused operation with burn's autodiff graph.
//!
//! Why: the model stays generic over `Backend`; only `Flex` and `Autodiff<Flex>` with
//! `f32` tensors take the fused kernels, every other backend (CUDA, …) gets the
//! caller's burn operations. [`split`] takes a tensor apart into one of those three
//! cases, [`plain`] and [`tracked`] put a result back together.

use std::any::Any;

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::backend::BackendTypes;
use burn::tensor::{DType, TensorPrimitive};
use burn_flex::FlexTensor;

/// The CPU backend under autodiff.
pub(super) type Ad = Autodiff<Flex>;
/// A float tensor of [`Ad`] taken apart: the flex tensor and its graph node.
pub(super) type AdTensor = <Ad as BackendTypes>::FloatTensorPrimitive;

/// Moves `x` into a `U` when `T` and `U` are the same type.
pub(super) fn cast<T: 'static, U: 'static>(x: T) -> Result<U, T> {
    let mut slot = Some(x);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>() {
        Some(u) => Ok(u.take().expect("just filled")),
        None => Err(slot.expect("untouched")),
    }
}

/// A tensor of one of the two backends the kernels serve, taken apart.
pub(super) enum Cpu<B: Backend, const D: usize> {
    /// An `f32` tensor of `Flex` (inference).
    Plain(FlexTensor),
    /// An `f32` tensor of `Autodiff<Flex>` (training).
    Tracked(AdTensor),
    /// Anything else, left to burn's operations.
    Other(Tensor<B, D>),
}

impl<B: Backend, const D: usize> Cpu<B, D> {
    /// The tensor put back together, unchanged.
    pub(super) fn join(self) -> Tensor<B, D> {
        match self {
            Cpu::Plain(t) => plain(t),
            Cpu::Tracked(t) => tracked(t),
            Cpu::Other(t) => t,
        }
    }
}

/// `x` taken apart by backend and dtype.
pub(super) fn split<B: Backend, const D: usize>(x: Tensor<B, D>) -> Cpu<B, D> {
    if x.dtype() != DType::F32 {
        return Cpu::Other(x);
    }
    let x = match cast::<_, Tensor<Flex, D>>(x) {
        Ok(t) => return Cpu::Plain(t.into_primitive().tensor()),
        Err(x) => x,
    };
    match cast::<_, Tensor<Ad, D>>(x) {
        Ok(t) => Cpu::Tracked(t.into_primitive().tensor()),
        Err(x) => Cpu::Other(x),
    }
}

/// A flex result as a `Tensor<B, D>`; only called when `B` is `Flex`.
pub(super) fn plain<B: Backend, const D: usize>(t: FlexTensor) -> Tensor<B, D> {
    cast(Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(t)))
        .unwrap_or_else(|_| unreachable!("only called when B is Flex"))
}

/// A tracked result as a `Tensor<B, D>`; only called when `B` is `Autodiff<Flex>`.
pub(super) fn tracked<B: Backend, const D: usize>(t: AdTensor) -> Tensor<B, D> {
    cast(Tensor::<Ad, D>::from_primitive(TensorPrimitive::Float(t)))
        .unwrap_or_else(|_| unreachable!("only called when B is Autodiff<Flex>"))
}

/// A one-input operation on both CPU backends: `forward` computes the output and the
/// state its backward needs; the autodiff node is registered only when tracked.
pub(super) fn unary_op<B, O, const D: usize>(
    x: Tensor<B, D>,
    op: O,
    forward: impl FnOnce(FlexTensor) -> (FlexTensor, O::State),
    other: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D>
where
    B: Backend,
    O: Backward<Flex, 1>,
{
    match split(x) {
        Cpu::Plain(x) => plain(forward(x).0),
        Cpu::Tracked(x) => {
            let node = x.node.clone();
            let (y, state) = forward(x.primitive);
            let out = match op
                .prepare::<NoCheckpointing>([node])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(state, y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            };
            tracked(out)
        }
        Cpu::Other(x) => other(x),
    }
}

/// `y`, computed by `op` from `parents`, registered with the autodiff graph (with the
/// state its backward needs when some parent is tracked).
pub(super) fn record<O, const N: usize>(
    op: O,
    parents: [&AdTensor; N],
    state: O::State,
    y: FlexTensor,
) -> AdTensor
where
    O: Backward<Flex, N>,
{
    match op
        .prepare::<NoCheckpointing>(parents.map(|p| p.node.clone()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}
