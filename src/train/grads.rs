//! Per-parameter gradient norms from one backward pass, used twice: the global norm
//! for clipping (burn's own clipping works per tensor, PyTorch's `clip_grad_norm_`
//! on the whole model) and the per-layer empirical Fisher trace ‖∂L/∂θ_layer‖² the
//! training hooks log, with no extra pass.

use burn::module::{ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::model::Transformer;

/// Squared gradient norms of one step, grouped by layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GradStats {
    /// Σ‖g‖² over all parameters.
    pub total_sq: f64,
    /// Σ‖g‖² per block (index = layer).
    pub layer_sq: Vec<f64>,
    /// Σ‖g‖² over parameters outside the blocks (embeddings, final norm, head).
    pub other_sq: f64,
}

impl GradStats {
    /// Global gradient norm.
    pub fn norm(&self) -> f64 {
        self.total_sq.sqrt()
    }
}

struct Collect<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    sums: Vec<(Option<usize>, Tensor<B::InnerBackend, 1>)>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let layer = match self.path.as_slice() {
                [first, idx, ..] if first == "blocks" => idx.parse().ok(),
                _ => None,
            };
            self.sums.push((layer, g.square().sum()));
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads
                .register::<B::InnerBackend, D>(param.id, g * self.factor);
        }
    }
}

/// Gradient norms of `model`'s parameters, read back from the device in one transfer.
pub fn grad_stats<B: AutodiffBackend>(
    model: &Transformer<B>,
    grads: &GradientsParams,
) -> GradStats {
    let mut c = Collect::<B> {
        grads,
        path: Vec::new(),
        sums: Vec::new(),
    };
    model.visit(&mut c);
    let mut stats = GradStats {
        layer_sq: vec![0.0; model.blocks.len()],
        ..Default::default()
    };
    if c.sums.is_empty() {
        return stats;
    }
    let (layers, tensors): (Vec<_>, Vec<_>) = c.sums.into_iter().unzip();
    let values = Tensor::cat(tensors, 0)
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .unwrap_or_default();
    for (layer, v) in layers.into_iter().zip(values) {
        stats.total_sq += v;
        match layer {
            Some(l) if l < stats.layer_sq.len() => stats.layer_sq[l] += v,
            _ => stats.other_sq += v,
        }
    }
    stats
}

/// Scales every gradient so the global norm is at most `max_norm`; returns the factor.
pub fn clip_global_norm<B: AutodiffBackend>(
    model: &Transformer<B>,
    grads: &mut GradientsParams,
    stats: &GradStats,
    max_norm: f64,
) -> f64 {
    let norm = stats.norm();
    if max_norm <= 0.0 || norm <= max_norm || !norm.is_finite() {
        return 1.0;
    }
    let factor = max_norm / (norm + 1e-6);
    model.visit(&mut Scale { grads, factor });
    factor
}
