//! The reference-token ablation experiment: mask key positions out of attention and
//! measure what the model loses — the change in LM loss, the KL divergence between
//! output distributions with and without the mask, and the shift in attention entropy.
//! Per chosen layer (ablating that layer alone) and overall (all chosen layers at once).

use burn::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{Batch, ForwardOptions, KeyAblation, Transformer};
use crate::train::data::HostBatch;

/// The effect of one ablation, averaged over the sequences.
#[derive(Clone, Debug, Serialize)]
pub struct AblationEffect {
    /// Layers masked (all chosen layers for the overall effect).
    pub layers: Vec<usize>,
    /// LM loss without the mask (nats per predicted token).
    pub loss: f64,
    /// LM loss with the mask.
    pub loss_ablated: f64,
    /// `loss_ablated − loss`.
    pub delta_loss: f64,
    /// Mean over predicted positions of KL(p ‖ p_ablated) between output distributions (nats).
    pub kl: f64,
    /// Per layer, mean attention-row entropy without the mask (nats).
    pub entropy: Vec<f64>,
    /// Per layer, with the mask.
    pub entropy_ablated: Vec<f64>,
    /// Per layer, `entropy_ablated − entropy`.
    pub entropy_shift: Vec<f64>,
}

/// Every effect of one ablation experiment.
#[derive(Clone, Debug, Serialize)]
pub struct AblationReport {
    /// Masked key positions.
    pub positions: Vec<usize>,
    /// Masked heads (None: all).
    pub heads: Option<Vec<usize>>,
    /// Sequences averaged.
    pub sequences: usize,
    /// All chosen layers masked together.
    pub overall: AblationEffect,
    /// Each chosen layer masked alone.
    pub per_layer: Vec<AblationEffect>,
}

/// Host-side results of one forward pass.
struct Pass {
    /// `[T, V]` log-probabilities.
    logp: Vec<f64>,
    /// Per layer, mean attention-row entropy.
    entropy: Vec<f64>,
}

fn run<B: Backend>(
    model: &Transformer<B>,
    hb: &HostBatch,
    ablation: Option<KeyAblation>,
    device: &B::Device,
) -> Result<Pass> {
    let ids: Vec<i64> = hb.inputs.iter().map(|&x| x as i64).collect();
    let batch = Batch {
        ids: Tensor::from_data(TensorData::new(ids, [1, hb.seq_len]), device),
        padding: None,
    };
    let out = model.forward(
        &batch,
        &ForwardOptions {
            attentions: true,
            residuals: false,
            ablation,
        },
    );
    let host = |d: TensorData| {
        d.convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| Error::Other(format!("cannot read back from the device: {e:?}")))
    };
    let logits = host(burn::tensor::activation::log_softmax(out.logits, 2).into_data())?;
    let t = hb.seq_len;
    let mut entropy = Vec::with_capacity(out.attentions.len());
    for a in out.attentions {
        let a = host(a.into_data())?;
        let rows = a.len() / t;
        let total: f64 = a
            .chunks(t)
            .map(|row| {
                row.iter()
                    .filter(|&&p| p > 0.0)
                    .map(|&p| -(p as f64) * (p as f64).ln())
                    .sum::<f64>()
            })
            .sum();
        entropy.push(total / rows as f64);
    }
    Ok(Pass {
        logp: logits.into_iter().map(f64::from).collect(),
        entropy,
    })
}

/// Weighted mean NLL and, against a reference pass, the weighted mean KL(ref ‖ this).
fn loss_and_kl(hb: &HostBatch, pass: &Pass, reference: &Pass) -> (f64, f64) {
    let v = pass.logp.len() / hb.seq_len;
    let (mut loss, mut kl, mut w) = (0.0, 0.0, 0.0);
    for (i, (&target, &wi)) in hb.targets.iter().zip(&hb.weights).enumerate() {
        if wi == 0.0 {
            continue;
        }
        let wi = wi as f64;
        let p = &pass.logp[i * v..(i + 1) * v];
        let r = &reference.logp[i * v..(i + 1) * v];
        loss -= wi * p[target as usize];
        kl += wi
            * r.iter()
                .zip(p)
                .map(|(&lr, &lp)| lr.exp() * (lr - lp))
                .sum::<f64>();
        w += wi;
    }
    (loss / w.max(1e-12), kl / w.max(1e-12))
}

#[derive(Default)]
struct Acc {
    loss: f64,
    loss_ablated: f64,
    kl: f64,
    entropy: Vec<f64>,
    entropy_ablated: Vec<f64>,
}

impl Acc {
    fn add(&mut self, hb: &HostBatch, base: &Pass, ablated: &Pass) {
        let (l0, _) = loss_and_kl(hb, base, base);
        let (l1, kl) = loss_and_kl(hb, ablated, base);
        self.loss += l0;
        self.loss_ablated += l1;
        self.kl += kl;
        add_into(&mut self.entropy, &base.entropy);
        add_into(&mut self.entropy_ablated, &ablated.entropy);
    }

    fn finish(self, layers: Vec<usize>, n: usize) -> AblationEffect {
        let n = n.max(1) as f64;
        let entropy: Vec<f64> = self.entropy.iter().map(|x| x / n).collect();
        let entropy_ablated: Vec<f64> = self.entropy_ablated.iter().map(|x| x / n).collect();
        AblationEffect {
            layers,
            loss: self.loss / n,
            loss_ablated: self.loss_ablated / n,
            delta_loss: (self.loss_ablated - self.loss) / n,
            kl: self.kl / n,
            entropy_shift: entropy_ablated
                .iter()
                .zip(&entropy)
                .map(|(a, b)| a - b)
                .collect(),
            entropy,
            entropy_ablated,
        }
    }
}

fn add_into(acc: &mut Vec<f64>, x: &[f64]) {
    if acc.is_empty() {
        acc.resize(x.len(), 0.0);
    }
    acc.iter_mut().zip(x).for_each(|(a, b)| *a += b);
}

/// Masks `positions` (in `layers`, default all; `heads`, default all) and measures the
/// effect on each loss batch (one sequence each, from [`crate::eval::lm::lm_batch`]).
pub fn ablate<B: Backend>(
    model: &Transformer<B>,
    batches: &[HostBatch],
    positions: &[usize],
    layers: Option<Vec<usize>>,
    heads: Option<Vec<usize>>,
    device: &B::Device,
) -> Result<AblationReport> {
    let n_layers = model.config.n_layers;
    let chosen = layers.unwrap_or_else(|| (0..n_layers).collect());
    if let Some(&bad) = chosen.iter().find(|&&l| l >= n_layers) {
        return Err(Error::Other(format!(
            "layer {bad} does not exist (the model has {n_layers})"
        )));
    }
    if let Some(&bad) = heads.iter().flatten().find(|&&h| h >= model.config.n_heads) {
        return Err(Error::Other(format!(
            "head {bad} does not exist (the model has {})",
            model.config.n_heads
        )));
    }
    let spec = |layers: Vec<usize>| KeyAblation {
        positions: positions.to_vec(),
        layers: Some(layers),
        heads: heads.clone(),
    };
    let mut overall = Acc::default();
    let mut per_layer: Vec<Acc> = chosen.iter().map(|_| Acc::default()).collect();
    for hb in batches {
        let base = run(model, hb, None, device)?;
        overall.add(
            hb,
            &base,
            &run(model, hb, Some(spec(chosen.clone())), device)?,
        );
        for (acc, &l) in per_layer.iter_mut().zip(&chosen) {
            acc.add(hb, &base, &run(model, hb, Some(spec(vec![l])), device)?);
        }
    }
    let n = batches.len();
    Ok(AblationReport {
        positions: positions.to_vec(),
        heads,
        sequences: n,
        overall: overall.finish(chosen.clone(), n),
        per_layer: per_layer
            .into_iter()
            .zip(&chosen)
            .map(|(a, &l)| a.finish(vec![l], n))
            .collect(),
    })
}
