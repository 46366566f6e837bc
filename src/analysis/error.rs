//! The one error type of the analysis layer.
//!
//! Every way an input can be unusable has its own variant, carrying the coordinates of the
//! fault, so that a caller (a training hook, an import, a command) can tell the user exactly
//! which layer, head or row is wrong instead of getting a panic or a silent NaN.

use thiserror::Error;

/// Why an input to the analysis layer was rejected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AnalysisError {
    /// The flat buffer does not hold the number of values its shape promises.
    #[error("{what}: expected {expected} values for shape {shape:?}, got {got}")]
    Length {
        /// Which array was being built.
        what: &'static str,
        /// The declared shape.
        shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// Length of the buffer.
        got: usize,
    },
    /// A dimension that must be positive is zero.
    #[error("{what}: dimension `{dim}` is zero")]
    EmptyDimension {
        /// Which array was being built.
        what: &'static str,
        /// Name of the empty dimension.
        dim: &'static str,
    },
    /// An attention map contains NaN or an infinity.
    #[error(
        "attention layer {layer} head {head}: non-finite value {value} at row {row}, column {col}"
    )]
    NonFiniteAttention {
        /// Layer index.
        layer: usize,
        /// Head index.
        head: usize,
        /// Query (row) index.
        row: usize,
        /// Key (column) index.
        col: usize,
        /// The offending value.
        value: f32,
    },
    /// An attention map holds a negative weight.
    #[error(
        "attention layer {layer} head {head}: negative weight {value} at row {row}, column {col}"
    )]
    NegativeAttention {
        /// Layer index.
        layer: usize,
        /// Head index.
        head: usize,
        /// Query (row) index.
        row: usize,
        /// Key (column) index.
        col: usize,
        /// The offending value.
        value: f32,
    },
    /// A row of an attention map is not a probability distribution.
    #[error(
        "attention layer {layer} head {head}: row {row} sums to {sum}, not 1 (tolerance {tolerance})"
    )]
    RowSum {
        /// Layer index.
        layer: usize,
        /// Head index.
        head: usize,
        /// Query (row) index.
        row: usize,
        /// The row sum found.
        sum: f64,
        /// The tolerance allowed.
        tolerance: f64,
    },
    /// A residual-stream array contains NaN or an infinity.
    #[error("hidden states {index}: non-finite value {value} at token {token}, dim {dim}")]
    NonFiniteHidden {
        /// Index in the stack (0 = embeddings output).
        index: usize,
        /// Token position.
        token: usize,
        /// Model dimension.
        dim: usize,
        /// The offending value.
        value: f32,
    },
    /// A value-vector norm is NaN, infinite or negative (a value vector held NaN or ±∞).
    #[error("value norms layer {layer} kv head {kv_head}: bad norm {value} at key {key}")]
    BadValueNorm {
        /// Layer index.
        layer: usize,
        /// Key/value head index.
        kv_head: usize,
        /// Key position.
        key: usize,
        /// The offending norm.
        value: f32,
    },
    /// Hidden states and attention maps disagree on the number of layers or tokens.
    #[error("hidden states do not match the attention maps: {0}")]
    HiddenMismatch(String),
    /// A distance matrix or point cloud given to the persistence code is unusable.
    #[error("persistence input: {0}")]
    RipsInput(String),
    /// A weight matrix given to the spectra code is unusable.
    #[error("weight `{name}`: {problem}")]
    Weight {
        /// Tensor name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A configuration value is out of its allowed range.
    #[error("analysis config: {0}")]
    Config(String),
}

impl AnalysisError {
    /// The same error about layer `layer` of a model, for maps built one layer at a
    /// time (whose own layer index is 0): the user is told where in the model it is.
    pub fn in_layer(mut self, layer: usize) -> Self {
        match &mut self {
            Self::NonFiniteAttention { layer: l, .. }
            | Self::NegativeAttention { layer: l, .. }
            | Self::RowSum { layer: l, .. } => *l += layer,
            _ => {}
        }
        self
    }
}
