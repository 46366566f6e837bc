//! Token sequences made into language-model loss batches, for the Fisher trace and the
//! ablation experiment: decoders predict every next token, encoders fill a seeded 15%
//! of masked tokens (BERT's rule), so repeated runs compare like with like.

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::error::{Error, Result};
use crate::train::data::{mix, mlm_mask, HostBatch, MaskSpec};

/// One sequence as a `[1, T]` loss batch. `mask_id` is required for encoders; the
/// masking is drawn from `seed` and the sequence's index.
pub fn lm_batch(
    seq: &[u32],
    index: usize,
    causal: bool,
    mask_id: Option<u32>,
    vocab: usize,
    seed: u64,
) -> Result<HostBatch> {
    let t = seq.len();
    if t < 2 {
        return Err(Error::Input(
            "a text needs at least 2 tokens for a loss".into(),
        ));
    }
    let (inputs, targets, weights) = if causal {
        let mut targets = seq[1..].to_vec();
        targets.push(0);
        let mut weights = vec![1.0; t];
        weights[t - 1] = 0.0;
        (seq.to_vec(), targets, weights)
    } else {
        let mask_id = mask_id.ok_or_else(|| {
            Error::Input("the tokenizer has no mask token for a masked-LM loss".into())
        })?;
        let spec = MaskSpec {
            prob: 0.15,
            mask_id,
            random_ids: vocab as u32,
            first: 1,
        };
        let mut rng = StdRng::seed_from_u64(mix(seed, index as u64));
        let (masked, weights) = mlm_mask(seq, &spec, &mut rng);
        (masked, seq.to_vec(), weights)
    };
    Ok(HostBatch {
        batch: 1,
        seq_len: t,
        inputs,
        targets,
        weights,
    })
}
