//! The transformer sinkscope trains and imports into: one definition configured by
//! [`ModelConfig`], with the position encoding as a swappable component and a forward
//! pass that hands out the [`Taps`] asked for (attention maps, scores, values,
//! residuals…).

pub mod attention;
pub mod block;
pub mod budget;
pub mod config;
pub mod init;
pub mod kernels;
pub mod mlp;
pub mod norm;
pub mod params;
pub mod position;
pub mod taps;
pub mod transformer;

pub use block::{Block, BlockWeights, OnDemand};
pub use config::{
    Arch, BlockKind, LayerOverride, LayerSpec, MlpKind, ModelConfig, NormKind, PositionConfig,
    PositionKind, QkNorm, SoftmaxKind,
};
pub use taps::{Captured, LayerTaps, Taps};
pub use transformer::{Batch, ForwardOptions, ForwardOutput, KeyAblation, Transformer};
