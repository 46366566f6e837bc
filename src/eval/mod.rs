//! The one evaluation path: model + probe inputs → captured attention and residuals →
//! analysis. Training hooks, `analyze` on imported models and `ablate` all go through
//! it, so their numbers are computed the same way.

pub mod capture;
pub mod evaluate;

pub use capture::{capture, weight_matrices, NamedMatrix, SequenceCapture};
pub use evaluate::{evaluate, EvalPlan, Evaluation};
