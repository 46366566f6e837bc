//! The one evaluation path: model + probe inputs → captured attention and residuals →
//! analysis. Training hooks, `analyze` on imported models and `ablate` all go through
//! it, so their numbers are computed the same way.

pub mod ablation;
pub mod capture;
pub mod evaluate;
pub mod fisher;
pub mod lm;
pub mod subject;

pub use ablation::{ablate, AblationEffect, AblationReport};
pub use capture::{
    capture, capture_layers, visit_weight_matrices, weight_matrices, LayerCapture, NamedMatrix,
    SequenceCapture, SequenceStates,
};
pub use evaluate::{
    analyze_streaming, evaluate, finish, weight_spectra, EvalPlan, Evaluation, LayerMaps,
    StreamedSequence,
};
pub use fisher::fisher_trace;
pub use lm::lm_batch;
pub use subject::{Subject, SubjectTokenizer};
