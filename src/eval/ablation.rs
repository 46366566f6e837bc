//! The reference-token ablation experiment: mask key positions out of attention and
//! measure what the model loses — the change in LM loss, the KL divergence between
//! output distributions with and without the mask, the shift in attention entropy and the
//! change of the last hidden states. Per chosen layer (ablating that layer alone) and
//! overall (all chosen layers at once). A checkpoint without its output head has no loss
//! and no output distribution: for it only the entropy shift and the hidden-state change
//! are measured.

use burn::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{Batch, ForwardOptions, KeyAblation, Taps, Transformer};
use crate::train::data::HostBatch;

/// The effect of one ablation, averaged over the sequences.
#[derive(Clone, Debug, Serialize)]
pub struct AblationEffect {
    /// Layers masked (all chosen layers for the overall effect).
    pub layers: Vec<usize>,
    /// LM loss without the mask (nats per predicted token); None without the output head.
    pub loss: Option<f64>,
    /// LM loss with the mask.
    pub loss_ablated: Option<f64>,
    /// `loss_ablated − loss`.
    pub delta_loss: Option<f64>,
    /// Mean over predicted positions of KL(p ‖ p_ablated) between output distributions
    /// (nats); None without the output head.
    pub kl: Option<f64>,
    /// Mean over positions of ‖h' − h‖ / ‖h‖ for the last hidden states h (what the head
    /// reads: after the final norm where the model has one) with (h') and without the mask.
    pub hidden_change: f64,
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
    /// `[T, V]` log-probabilities (None without the output head).
    logp: Option<Vec<f64>>,
    /// Per layer, mean attention-row entropy.
    entropy: Vec<f64>,
    /// `[T, d]` last hidden states.
    hidden: Vec<f32>,
}

fn run<B: Backend>(
    model: &Transformer<B>,
    head: bool,
    hb: &HostBatch,
    ablation: Option<KeyAblation>,
    device: &B::Device,
) -> Result<Pass> {
    let ids: Vec<i64> = hb.inputs.iter().map(|&x| x as i64).collect();
    let batch = Batch {
        ids: Tensor::from_data(TensorData::new(ids, [1, hb.seq_len]), device),
        padding: None,
    };
    let out = model.try_forward(
        &batch,
        &ForwardOptions {
            taps: Taps::PROBS | Taps::RESIDUALS,
            ablation,
        },
    )?;
    let host = |d: TensorData| {
        d.convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| Error::Device(format!("cannot read back from the device: {e:?}")))
    };
    let logp = if head {
        let lp = host(burn::tensor::activation::log_softmax(out.logits, 2).into_data())?;
        Some(lp.into_iter().map(f64::from).collect())
    } else {
        None
    };
    let captured = out.captured;
    let last = captured
        .final_hidden
        .or_else(|| captured.residuals.last().cloned())
        .ok_or_else(|| Error::Internal("the forward pass returned no hidden states".into()))?;
    let hidden = host(last.into_data())?;
    let t = hb.seq_len;
    let mut entropy = Vec::with_capacity(captured.probs.len());
    for a in captured.probs {
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
        logp,
        entropy,
        hidden,
    })
}

/// Mean over positions of ‖h − r‖ / ‖r‖ between the rows of two `[T, d]` hidden states.
fn hidden_change(h: &[f32], reference: &[f32], t: usize) -> f64 {
    let d = reference.len() / t.max(1);
    let total: f64 = h
        .chunks(d)
        .zip(reference.chunks(d))
        .map(|(a, r)| {
            let diff: f64 = a
                .iter()
                .zip(r)
                .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                .sum();
            let norm: f64 = r.iter().map(|&y| f64::from(y).powi(2)).sum();
            (diff / norm.max(1e-30)).sqrt()
        })
        .sum();
    total / t.max(1) as f64
}

/// Weighted mean NLL and, against a reference pass, the weighted mean KL(ref ‖ this).
fn loss_and_kl(hb: &HostBatch, pass: &[f64], reference: &[f64]) -> (f64, f64) {
    let v = pass.len() / hb.seq_len;
    let (mut loss, mut kl, mut w) = (0.0, 0.0, 0.0);
    for (i, (&target, &wi)) in hb.targets.iter().zip(&hb.weights).enumerate() {
        if wi == 0.0 {
            continue;
        }
        let wi = wi as f64;
        let p = &pass[i * v..(i + 1) * v];
        let r = &reference[i * v..(i + 1) * v];
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
    /// Sums of loss, ablated loss and KL (None without the head).
    head: Option<(f64, f64, f64)>,
    hidden_change: f64,
    entropy: Vec<f64>,
    entropy_ablated: Vec<f64>,
}

impl Acc {
    fn add(&mut self, hb: &HostBatch, base: &Pass, ablated: &Pass) {
        if let (Some(b), Some(a)) = (&base.logp, &ablated.logp) {
            let (l0, _) = loss_and_kl(hb, b, b);
            let (l1, kl) = loss_and_kl(hb, a, b);
            let s = self.head.get_or_insert((0.0, 0.0, 0.0));
            s.0 += l0;
            s.1 += l1;
            s.2 += kl;
        }
        self.hidden_change += hidden_change(&ablated.hidden, &base.hidden, hb.seq_len);
        add_into(&mut self.entropy, &base.entropy);
        add_into(&mut self.entropy_ablated, &ablated.entropy);
    }

    fn finish(self, layers: Vec<usize>, n: usize) -> AblationEffect {
        let n = n.max(1) as f64;
        let entropy: Vec<f64> = self.entropy.iter().map(|x| x / n).collect();
        let entropy_ablated: Vec<f64> = self.entropy_ablated.iter().map(|x| x / n).collect();
        AblationEffect {
            layers,
            loss: self.head.map(|h| h.0 / n),
            loss_ablated: self.head.map(|h| h.1 / n),
            delta_loss: self.head.map(|h| (h.1 - h.0) / n),
            kl: self.head.map(|h| h.2 / n),
            hidden_change: self.hidden_change / n,
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
/// `head`: whether the model has its output head (loss and KL are measured only then).
pub fn ablate<B: Backend>(
    model: &Transformer<B>,
    head: bool,
    batches: &[HostBatch],
    positions: &[usize],
    layers: Option<Vec<usize>>,
    heads: Option<Vec<usize>>,
    device: &B::Device,
) -> Result<AblationReport> {
    let n_layers = model.config.n_layers;
    let chosen = layers.unwrap_or_else(|| (0..n_layers).collect());
    if let Some(&bad) = chosen.iter().find(|&&l| l >= n_layers) {
        return Err(Error::config(
            "ablate",
            "layers",
            format!("layer {bad} does not exist (the model has {n_layers})"),
        ));
    }
    if let Some(&bad) = heads.iter().flatten().find(|&&h| h >= model.config.n_heads) {
        return Err(Error::config(
            "ablate",
            "heads",
            format!(
                "head {bad} does not exist (the model has {})",
                model.config.n_heads
            ),
        ));
    }
    let spec = |layers: Vec<usize>| KeyAblation {
        positions: positions.to_vec(),
        layers: Some(layers),
        heads: heads.clone(),
    };
    let mut overall = Acc::default();
    let mut per_layer: Vec<Acc> = chosen.iter().map(|_| Acc::default()).collect();
    for hb in batches {
        let base = run(model, head, hb, None, device)?;
        overall.add(
            hb,
            &base,
            &run(model, head, hb, Some(spec(chosen.clone())), device)?,
        );
        for (acc, &l) in per_layer.iter_mut().zip(&chosen) {
            acc.add(
                hb,
                &base,
                &run(model, head, hb, Some(spec(vec![l])), device)?,
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_change_is_the_mean_relative_row_distance() {
        // Row 0: r = (3, 4), h = (3, 4) → 0. Row 1: r = (1, 0), h = (1, 2) → 2.
        let r = [3.0, 4.0, 1.0, 0.0];
        let h = [3.0, 4.0, 1.0, 2.0];
        assert!((hidden_change(&h, &r, 2) - 1.0).abs() < 1e-12);
        assert_eq!(hidden_change(&r, &r, 2), 0.0);
    }
}
