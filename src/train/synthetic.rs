//! Synthetic token streams, generated from a seed so that nothing needs to ship: a
//! controlled task on which sinks are known to form in small models.
//!
//! `bigram-backcopy` (Guo et al. 2024, "Active-dormant attention heads: mechanistically
//! demystifying extreme-token phenomena in LLMs", arXiv 2410.13835): tokens follow a
//! fixed random bigram Markov chain, except that the token after a *trigger* copies
//! the token before the trigger. Only the copy needs attention (to the token two back);
//! everywhere else the next token depends on the current one alone, and a transformer
//! learns to park its attention on the first token — an attention sink that forms in a
//! few thousand CPU steps, where natural text at this scale shows none.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::train::data::mix;

/// The synthetic tasks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyntheticKind {
    /// Bigram chain with back-copy after trigger tokens (Guo et al. 2024).
    #[default]
    BigramBackcopy,
}

/// `[data.synthetic]`: a generated stream in place of `data.train` and `data.heldout`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// The task.
    pub kind: SyntheticKind,
    /// Distinct tokens, written as the printable bytes `!`, `"`, `#`, … (at most 94).
    pub vocab: usize,
    /// How many of them are triggers (the first `triggers` tokens).
    pub triggers: usize,
    /// Possible successors of each token in the bigram chain.
    pub successors: usize,
    /// Length of the training stream.
    pub train_tokens: usize,
    /// Length of the held-out stream (same chain, its own draws).
    pub heldout_tokens: usize,
    /// Seeds the chain and the streams (independent of the recipe's seed, so every
    /// run of a sweep sees the same data).
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            kind: SyntheticKind::BigramBackcopy,
            vocab: 64,
            triggers: 3,
            successors: 4,
            train_tokens: 2_000_000,
            heldout_tokens: 100_000,
            seed: 0,
        }
    }
}

/// First byte used for synthetic tokens (`!`), so token names stay readable.
const FIRST_BYTE: u32 = b'!' as u32;
/// Printable ASCII bytes from `!` to `~`.
pub const MAX_VOCAB: usize = 94;

impl SyntheticConfig {
    /// Which field is wrong and why, if any.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(2..=MAX_VOCAB).contains(&self.vocab) {
            return Err(("vocab", format!("must lie in 2..={MAX_VOCAB}")));
        }
        if self.triggers >= self.vocab {
            return Err(("triggers", "must be fewer than vocab".into()));
        }
        if !(1..=self.vocab).contains(&self.successors) {
            return Err(("successors", "must lie in 1..=vocab".into()));
        }
        Ok(())
    }

    /// The (train, held-out) streams as byte-tokenizer ids.
    pub fn streams(&self) -> (Vec<u32>, Vec<u32>) {
        let chain = Chain::new(self);
        (
            chain.stream(self.train_tokens, mix(self.seed, 1)),
            chain.stream(self.heldout_tokens, mix(self.seed, 2)),
        )
    }
}

/// The bigram chain: each token's successors with their cumulative probabilities.
struct Chain {
    next: Vec<Vec<(u32, f64)>>,
    triggers: usize,
}

impl Chain {
    fn new(cfg: &SyntheticConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(mix(cfg.seed, 0));
        let next = (0..cfg.vocab)
            .map(|_| {
                let mut succ: Vec<u32> = Vec::with_capacity(cfg.successors);
                while succ.len() < cfg.successors {
                    let s = rng.random_range(0..cfg.vocab as u32);
                    if !succ.contains(&s) {
                        succ.push(s);
                    }
                }
                let weights: Vec<f64> = succ.iter().map(|_| rng.random::<f64>() + 0.1).collect();
                let total: f64 = weights.iter().sum();
                let mut acc = 0.0;
                succ.into_iter()
                    .zip(weights)
                    .map(|(s, w)| {
                        acc += w / total;
                        (s, acc)
                    })
                    .collect()
            })
            .collect();
        Self {
            next,
            triggers: cfg.triggers,
        }
    }

    fn sample(&self, from: u32, rng: &mut StdRng) -> u32 {
        let row = &self.next[from as usize];
        let u: f64 = rng.random();
        row.iter()
            .find(|(_, c)| u < *c)
            .unwrap_or(&row[row.len() - 1])
            .0
    }

    /// `n` tokens: the chain, with the back-copy after every trigger.
    fn stream(&self, n: usize, seed: u64) -> Vec<u32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out: Vec<u32> = Vec::with_capacity(n);
        while out.len() < n {
            let t = out.len();
            let token = match t {
                0 => rng.random_range(0..self.next.len() as u32),
                _ if t >= 2 && (out[t - 1] as usize) < self.triggers => out[t - 2],
                _ => self.sample(out[t - 1], &mut rng),
            };
            out.push(token);
        }
        out.into_iter().map(|t| t + FIRST_BYTE).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_copy_the_token_before_them_and_the_chain_is_followed() {
        let cfg = SyntheticConfig {
            train_tokens: 20_000,
            heldout_tokens: 1_000,
            ..Default::default()
        };
        let (train, held) = cfg.streams();
        assert_eq!((train.len(), held.len()), (20_000, 1_000));
        let first = FIRST_BYTE;
        let is_trigger = |t: u32| ((t - first) as usize) < cfg.triggers;
        let mut copies = 0;
        let mut successors = vec![std::collections::BTreeSet::new(); cfg.vocab];
        for w in train.windows(3) {
            assert!(w
                .iter()
                .all(|&t| (first..first + cfg.vocab as u32).contains(&t)));
            if is_trigger(w[1]) {
                assert_eq!(
                    w[2], w[0],
                    "the token after a trigger copies the one before"
                );
                copies += 1;
            } else {
                successors[(w[1] - first) as usize].insert(w[2]);
            }
        }
        // Triggers are common enough to learn from (about triggers/vocab of tokens).
        assert!(copies > 20_000 * cfg.triggers / cfg.vocab / 3, "{copies}");
        // Outside copies, every token has at most `successors` distinct successors.
        assert!(successors.iter().all(|s| s.len() <= cfg.successors));
        assert!(successors.iter().any(|s| s.len() > 1));
        // Same seed, same data; another seed, other data.
        assert_eq!(cfg.streams().0, train);
        let other = SyntheticConfig {
            seed: 1,
            ..cfg.clone()
        };
        assert_ne!(other.streams().0, train);
    }

    #[test]
    fn bad_sizes_name_the_field() {
        let bad = |c: SyntheticConfig| c.check().unwrap_err().0;
        let base = SyntheticConfig::default();
        assert_eq!(
            bad(SyntheticConfig {
                vocab: 200,
                ..base.clone()
            }),
            "vocab"
        );
        assert_eq!(
            bad(SyntheticConfig {
                triggers: 64,
                ..base.clone()
            }),
            "triggers"
        );
        assert_eq!(
            bad(SyntheticConfig {
                successors: 0,
                ..base.clone()
            }),
            "successors"
        );
        assert!(base.check().is_ok());
    }
}
