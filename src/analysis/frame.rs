//! The frame-type verdict: does a model (or a run) have one dominant sink position
//! (`centralized`), sink mass spread over several positions (`distributed`), sinks at both
//! ends of the sequence (`bidirectional`), or no sink at all (`none`)?
//!
//! No reference notebook computes this — the paper assigns frame types by architecture — so
//! the rule is sinkscope's own, stated here and in `docs/METRICS.md`, and every verdict
//! carries the counts it was read from.
//!
//! **Sink key of a head.** Key j is a sink of a head when its Gu et al. score α_j exceeds ε
//! (0.3) *and* is at least `baseline_factor` (2) times the score uniform attention would
//! give the same position. The second condition is what makes `none` a real outcome: for
//! short sequences uniform attention alone passes ε (α_0 = 25/48 for T = 4, causal), and
//! anchors.md §6 expects tiny models to sit at that baseline. Only keys that at least half
//! the queries can see are eligible (j ≤ T/2 when causal), because a late key's α averages
//! over a handful of queries.
//!
//! **Rule**, over all (sequence, layer, head) triples:
//! 1. `none` when fewer than `min_head_share` (10 %) of the heads have a sink key;
//! 2. `bidirectional` when the first and the last `end_fraction` (10 %) of the sequence each
//!    hold at least `end_share` (20 %) of the sink keys (only possible for bidirectional
//!    maps: a causal map's late keys are not eligible);
//! 3. `centralized` when one position holds at least `centralized_share` (60 %) of the sink
//!    keys;
//! 4. `distributed` otherwise.

use std::collections::BTreeMap;

use serde::Serialize;

use super::config::FrameConfig;
use super::sink::{uniform_key_score, visible_queries};

/// The four frame types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameType {
    /// One dominant sink position.
    Centralized,
    /// Sink keys spread over several positions.
    Distributed,
    /// Sinks at both ends of the sequence.
    Bidirectional,
    /// No sink beyond what uniform attention would give.
    None,
}

impl std::fmt::Display for FrameType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameType::Centralized => "centralized",
            FrameType::Distributed => "distributed",
            FrameType::Bidirectional => "bidirectional",
            FrameType::None => "none",
        })
    }
}

/// Counts the rule reads. They add up over sequences, so one verdict can cover a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FrameEvidence {
    /// Sequences seen.
    pub sequences: usize,
    /// (sequence, layer, head) triples examined.
    pub heads: usize,
    /// Those with at least one sink key.
    pub sink_heads: usize,
    /// (head, key) sink pairs in total.
    pub sink_keys: usize,
    /// Sink pairs by key position.
    pub positions: BTreeMap<usize, usize>,
    /// Sink pairs in the first `end_fraction` of the sequence.
    pub start_keys: usize,
    /// Sink pairs in the last `end_fraction` of the sequence.
    pub end_keys: usize,
    /// Sum over (sequence, layer) of the first-token mass.
    pub first_token_mass_sum: f64,
    /// Sum over (sequence, layer) of its uniform-attention baseline.
    pub first_token_baseline_sum: f64,
    /// (sequence, layer) pairs in those sums.
    pub layers: usize,
}

/// The verdict with its evidence and a readable account of the rule's steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameVerdict {
    /// The frame type.
    pub frame_type: FrameType,
    /// The counts behind it.
    pub frame_evidence: FrameEvidence,
    /// One line per step of the rule, with the numbers compared.
    pub frame_explanation: Vec<String>,
}

/// Sink keys of one head from its Gu scores α (see the module notes).
pub fn head_sink_keys(
    scores: &[f64],
    causal: bool,
    epsilon: f64,
    baseline_factor: f64,
) -> Vec<usize> {
    let t = scores.len();
    (0..t)
        .filter(|&j| 2 * visible_queries(t, j, causal) >= t)
        .filter(|&j| {
            scores[j] > epsilon && scores[j] >= baseline_factor * uniform_key_score(t, j, causal)
        })
        .collect()
}

/// Width of the start/end windows: ⌈fraction · T⌉, at least one token.
fn end_window(t: usize, fraction: f64) -> usize {
    ((fraction * t as f64).ceil() as usize).clamp(1, t)
}

impl FrameEvidence {
    /// Records one head's sink keys for a sequence of length `t`.
    pub fn add_head(&mut self, keys: &[usize], t: usize, cfg: &FrameConfig) {
        self.heads += 1;
        if !keys.is_empty() {
            self.sink_heads += 1;
        }
        let w = end_window(t, cfg.end_fraction);
        for &j in keys {
            self.sink_keys += 1;
            *self.positions.entry(j).or_insert(0) += 1;
            if j < w {
                self.start_keys += 1;
            }
            if j >= t - w {
                self.end_keys += 1;
            }
        }
    }

    /// Records one layer's first-token mass and its baseline.
    pub fn add_layer(&mut self, first_token_mass: f64, baseline: f64) {
        self.first_token_mass_sum += first_token_mass;
        self.first_token_baseline_sum += baseline;
        self.layers += 1;
    }

    /// Adds another set of counts (another sequence) to these.
    pub fn merge(&mut self, other: &FrameEvidence) {
        self.sequences += other.sequences;
        self.heads += other.heads;
        self.sink_heads += other.sink_heads;
        self.sink_keys += other.sink_keys;
        for (&j, &c) in &other.positions {
            *self.positions.entry(j).or_insert(0) += c;
        }
        self.start_keys += other.start_keys;
        self.end_keys += other.end_keys;
        self.first_token_mass_sum += other.first_token_mass_sum;
        self.first_token_baseline_sum += other.first_token_baseline_sum;
        self.layers += other.layers;
    }

    /// Share of heads with a sink key.
    pub fn sink_head_share(&self) -> f64 {
        if self.heads == 0 {
            0.0
        } else {
            self.sink_heads as f64 / self.heads as f64
        }
    }

    /// The position holding the most sink keys and its share of them.
    pub fn top_position(&self) -> Option<(usize, f64)> {
        let (&j, &c) = self
            .positions
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
        Some((j, c as f64 / self.sink_keys as f64))
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// Applies the rule of the module notes to the evidence.
pub fn classify(evidence: FrameEvidence, cfg: &FrameConfig, epsilon: f64) -> FrameVerdict {
    let mut why = Vec::new();
    if evidence.layers > 0 {
        let mass = evidence.first_token_mass_sum / evidence.layers as f64;
        let base = evidence.first_token_baseline_sum / evidence.layers as f64;
        why.push(format!(
            "first-token mass {mass:.4} against {base:.4} for uniform attention (×{:.2})",
            if base > 0.0 { mass / base } else { f64::NAN }
        ));
    }
    let share = evidence.sink_head_share();
    why.push(format!(
        "{} of {} heads ({}) have a sink key (α > {epsilon} and ≥ {}× uniform); a frame needs {}",
        evidence.sink_heads,
        evidence.heads,
        pct(share),
        cfg.baseline_factor,
        pct(cfg.min_head_share)
    ));
    let verdict = |frame_type, why| FrameVerdict {
        frame_type,
        frame_evidence: evidence.clone(),
        frame_explanation: why,
    };
    if evidence.heads == 0 || share < cfg.min_head_share || evidence.sink_keys == 0 {
        return verdict(FrameType::None, why);
    }
    let total = evidence.sink_keys as f64;
    let (start, end) = (
        evidence.start_keys as f64 / total,
        evidence.end_keys as f64 / total,
    );
    why.push(format!(
        "sequence start holds {} and end {} of the {} sink keys; bidirectional needs {} at each end",
        pct(start),
        pct(end),
        evidence.sink_keys,
        pct(cfg.end_share)
    ));
    if start >= cfg.end_share && end >= cfg.end_share {
        return verdict(FrameType::Bidirectional, why);
    }
    let (top, top_share) = evidence.top_position().expect("sink_keys > 0");
    why.push(format!(
        "position {top} holds {} of the sink keys; centralized needs {}",
        pct(top_share),
        pct(cfg.centralized_share)
    ));
    if top_share >= cfg.centralized_share {
        verdict(FrameType::Centralized, why)
    } else {
        verdict(FrameType::Distributed, why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence_of(heads: &[Vec<usize>], t: usize) -> FrameEvidence {
        let cfg = FrameConfig::default();
        let mut e = FrameEvidence {
            sequences: 1,
            ..Default::default()
        };
        for k in heads {
            e.add_head(k, t, &cfg);
        }
        e
    }

    #[test]
    fn sink_keys_need_epsilon_baseline_and_visibility() {
        // T = 4 causal, uniform attention: α_0 = 25/48 ≈ 0.52 > 0.3 but only 1× baseline
        let uniform = [25.0 / 48.0, 13.0 / 36.0, 7.0 / 24.0, 0.25];
        assert!(head_sink_keys(&uniform, true, 0.3, 2.0).is_empty());
        // T = 8 causal: α_0 = 0.9 ≥ 2 × H_8/8 = 0.68 → sink; α_6 = 0.95 but only 2 of 8
        // queries see key 6 → not eligible
        let mut s = [0.05; 8];
        s[0] = 0.9;
        s[6] = 0.95;
        assert_eq!(head_sink_keys(&s, true, 0.3, 2.0), vec![0]);
        // bidirectional: every key eligible; baseline 1/8 → key 6 counts too
        assert_eq!(head_sink_keys(&s, false, 0.3, 2.0), vec![0, 6]);
    }

    #[test]
    fn the_four_verdicts() {
        let cfg = FrameConfig::default();
        // 10 heads, none sinking → none
        let e = evidence_of(&vec![vec![]; 10], 64);
        assert_eq!(classify(e, &cfg, 0.3).frame_type, FrameType::None);
        // 10 heads, 1 sinking: 10 % ≥ 10 % → a frame; position 0 holds all → centralized
        let mut heads = vec![vec![]; 9];
        heads.push(vec![0]);
        let v = classify(evidence_of(&heads, 64), &cfg, 0.3);
        assert_eq!(v.frame_type, FrameType::Centralized);
        // 20 heads, 1 sinking: 5 % < 10 % → none
        let mut heads = vec![vec![]; 19];
        heads.push(vec![0]);
        assert_eq!(
            classify(evidence_of(&heads, 64), &cfg, 0.3).frame_type,
            FrameType::None
        );
        // sink keys at 3, 9, 17, 30 (one head each) in T = 64: the start window ⌈6.4⌉ = 7
        // holds 1 of 4 (25 %), the end window (≥ 57) none → not bidirectional; the top
        // position holds 25 % < 60 % → distributed
        let v = classify(
            evidence_of(&[vec![3], vec![9], vec![17], vec![30]], 64),
            &cfg,
            0.3,
        );
        assert_eq!(v.frame_type, FrameType::Distributed);
        // keys 0 and 63 in every head: start 50 %, end 50 % → bidirectional
        let v = classify(evidence_of(&vec![vec![0, 63]; 4], 64), &cfg, 0.3);
        assert_eq!(v.frame_type, FrameType::Bidirectional);
        assert_eq!(v.frame_evidence.start_keys, 4);
        assert!(v
            .frame_explanation
            .iter()
            .any(|l| l.contains("start holds 50.0%")));
    }

    #[test]
    fn evidence_merges_across_sequences() {
        let cfg = FrameConfig::default();
        let mut a = evidence_of(&[vec![0], vec![]], 16);
        let b = evidence_of(&[vec![0], vec![5]], 16);
        a.merge(&b);
        assert_eq!(
            (a.sequences, a.heads, a.sink_heads, a.sink_keys),
            (2, 4, 3, 3)
        );
        assert_eq!(a.positions.get(&0), Some(&2));
        assert_eq!(a.top_position(), Some((0, 2.0 / 3.0)));
        assert_eq!(classify(a, &cfg, 0.3).frame_type, FrameType::Centralized);
    }
}
