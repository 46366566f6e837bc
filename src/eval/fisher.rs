//! Empirical Fisher information per layer of a model at rest (the paper's
//! `fisher.ipynb`): F_layer = (1/N) Σ_samples Σ_{θ ∈ layer} ‖∂L/∂θ‖², one sample at a
//! time, L the LM loss (masked-LM for encoders). Training hooks get the same quantity
//! from the training gradients instead.

use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;

use crate::model::{Batch, ForwardOptions, Transformer};
use crate::train::data::HostBatch;
use crate::train::grads::grad_stats;
use crate::train::loss::{lm_loss, DeviceBatch};

/// Mean squared gradient norm per block over `batches` (each one sample). Needs the output
/// head (the loss is computed from its logits): callers leave it out for a head-less
/// checkpoint ([`crate::eval::Subject::head`]).
pub fn fisher_trace<B: AutodiffBackend>(
    model: &Transformer<B>,
    batches: &[HostBatch],
    device: &B::Device,
) -> Vec<f64> {
    let mut sum = vec![0.0; model.blocks.len()];
    for hb in batches {
        let b = DeviceBatch::<B>::new(hb, device);
        let out = model.forward(
            &Batch {
                ids: b.inputs,
                padding: None,
            },
            &ForwardOptions::default(),
        );
        let loss = lm_loss(out.logits, b.targets, b.weights);
        let grads = GradientsParams::from_grads(loss.backward(), model);
        for (s, l) in sum.iter_mut().zip(grad_stats(model, &grads).layer_sq) {
            *s += l;
        }
    }
    let n = batches.len().max(1) as f64;
    sum.into_iter().map(|s| s / n).collect()
}
