//! Memory budgets: what a model (or a training batch) will need, computed with
//! overflow-checked arithmetic before anything is allocated, against what the machine
//! has free. A size no machine holds (a corrupt `block_count` of 2³²−1, a recipe's
//! `vocab_size = 2^62`) becomes a one-line refusal with the numbers instead of an
//! allocation failure, a "capacity overflow" panic or an abort.

use crate::model::ModelConfig;

/// Bytes per stored value (f32 everywhere on the CPU).
const F32: u64 = 4;

/// Bytes the machine can still give: `MemAvailable` of `/proc/meminfo` (None where
/// that file does not exist, e.g. off Linux; then nothing is refused on that ground).
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// `a · b · …` with overflow as None.
pub fn product(factors: &[u64]) -> Option<u64> {
    factors.iter().try_fold(1u64, |acc, &f| acc.checked_mul(f))
}

/// Sum with overflow as None.
fn sum(terms: &[Option<u64>]) -> Option<u64> {
    terms
        .iter()
        .try_fold(0u64, |acc, t| t.and_then(|t| acc.checked_add(t)))
}

/// Number of parameters of `cfg` (embeddings, blocks, head), or None on overflow.
/// An estimate to within the norms and biases, which do not matter for a budget.
pub fn parameter_count(cfg: &ModelConfig) -> Option<u64> {
    let u = |x: usize| x as u64;
    let (d, v, l) = (u(cfg.d_model), u(cfg.vocab_size), u(cfg.n_layers));
    let q = product(&[u(cfg.n_heads), u(cfg.head_dim())])?;
    let kv = product(&[u(cfg.kv_heads()), u(cfg.head_dim())])?;
    let mlp_mats = if cfg.mlp.is_gated() { 3 } else { 2 };
    let per_block = sum(&[
        product(&[d, q, 2]),
        product(&[d, kv, 2]),
        product(&[d, u(cfg.d_ff), mlp_mats]),
        product(&[d, 4]),
    ])?;
    sum(&[
        product(&[v, d, if cfg.tie_embeddings { 1 } else { 2 }]),
        product(&[u(cfg.max_seq_len), d]),
        product(&[u(cfg.type_vocab_size), d]),
        product(&[per_block, l]),
    ])
}

/// Bytes of `cfg`'s weights in f32.
pub fn model_bytes(cfg: &ModelConfig) -> Option<u64> {
    parameter_count(cfg)?.checked_mul(F32)
}

/// Bytes one forward pass over `batch` sequences of `seq` tokens keeps for the
/// backward pass: per layer the residual-width activations, the MLP's hidden
/// activations and the attention maps, plus the logits.
pub fn activation_bytes(cfg: &ModelConfig, batch: usize, seq: usize) -> Option<u64> {
    let u = |x: usize| x as u64;
    let tokens = product(&[u(batch), u(seq)])?;
    let per_layer = sum(&[
        product(&[tokens, u(cfg.d_model), 12]),
        product(&[tokens, u(cfg.d_ff), 3]),
        product(&[tokens, u(seq), u(cfg.n_heads), 3]),
    ])?;
    sum(&[
        product(&[per_layer, u(cfg.n_layers)]),
        product(&[tokens, u(cfg.vocab_size), 3]),
    ])?
    .checked_mul(F32)
}

/// Bytes training needs: weights, gradients and AdamW's two moments (4× the model)
/// plus a batch's activations.
pub fn training_bytes(cfg: &ModelConfig, batch: usize, seq: usize) -> Option<u64> {
    sum(&[
        model_bytes(cfg).and_then(|b| b.checked_mul(4)),
        activation_bytes(cfg, batch, seq),
    ])
}

/// `n` bytes as "68.7 GB".
pub fn human(n: u64) -> String {
    format!("{:.1} GB", n as f64 / 1e9)
}

/// Checks that `needed` bytes (None: beyond any count) fit in the available memory;
/// the message says what needs how much, e.g. "this model needs 68.7 GB; 23.4 GB
/// available".
pub fn check_fits(what: &str, needed: Option<u64>) -> Result<(), String> {
    check_fits_in(what, needed, available_bytes())
}

fn check_fits_in(what: &str, needed: Option<u64>, available: Option<u64>) -> Result<(), String> {
    match (needed, available) {
        (None, _) => Err(format!(
            "{what} needs more than 18 EB (its sizes overflow a 64-bit count)"
        )),
        (Some(n), Some(a)) if n > a => {
            Err(format!("{what} needs {}; {} available", human(n), human(a)))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_refusals() {
        let text = "MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable:   23400000 kB\n";
        assert_eq!(parse_meminfo(text), Some(23_400_000 * 1024));
        let e = check_fits_in("this model", Some(68_700_000_000), Some(23_400_000_000));
        assert_eq!(
            e.unwrap_err(),
            "this model needs 68.7 GB; 23.4 GB available"
        );
        assert!(check_fits_in("x", None, None)
            .unwrap_err()
            .contains("overflow"));
        assert!(check_fits_in("x", Some(10), Some(11)).is_ok());
    }

    #[test]
    fn counts_a_small_model_and_overflows_a_huge_one() {
        // d=4, v=10, tied, 1 layer, 2 heads of 2, d_ff 8, gelu, max_seq 3:
        // 40 + 12 + 0 + (32 + 32 + 64 + 16).
        let cfg = ModelConfig {
            vocab_size: 10,
            d_model: 4,
            n_layers: 1,
            n_heads: 2,
            d_ff: 8,
            max_seq_len: 3,
            tie_embeddings: true,
            type_vocab_size: 0,
            ..Default::default()
        };
        assert_eq!(parameter_count(&cfg), Some(40 + 12 + 144));
        let huge = ModelConfig {
            vocab_size: 1 << 62,
            ..cfg
        };
        assert_eq!(model_bytes(&huge), None);
    }
}
