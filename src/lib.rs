//! sinkscope: an instrument for attention sinks.
//!
//! - [`model`]: one transformer, configured by data, with swappable position encodings
//!   and attention capture.
//! - [`train`]: recipes, data, the training loop and checkpoints.
//! - [`log`]: TensorBoard event files and JSONL metrics.
//! - [`import`]: Hugging Face and GGUF weights.

pub mod analysis;
pub mod cli;
pub mod error;
pub mod eval;
pub mod hooks;
pub mod import;
pub mod io;
pub mod log;
pub mod model;
pub mod report;
pub mod train;

pub use error::{Error, Result};
