//! sinkscope: an instrument for attention sinks.
//!
//! - [`model`]: one transformer, configured by data, with swappable position encodings
//!   and attention capture.
//! - [`train`]: recipes, data, the training loop and checkpoints.

pub mod cli;
pub mod error;
pub mod model;
pub mod train;

pub use error::{Error, Result};
