//! When the training loop logs, evaluates, checkpoints and halts: every N steps
//! (0: never) and, for evaluation and checkpoints, always at the last step, so a
//! finished run always ends with a held-out loss and a checkpoint.

use crate::train::recipe::TrainConfig;

/// The due-ness schedule of a run, read from its `[train]` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cadence {
    /// The last step.
    pub steps: usize,
    /// Training-loss log line every this many steps (0: none).
    pub log_every: usize,
    /// Held-out loss every this many steps (0: only at the end).
    pub eval_every: usize,
    /// Checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
    /// Stop abruptly after this step (a simulated kill).
    pub halt_after: Option<usize>,
}

/// Whether `step` is a multiple of a positive `every`.
fn every(every: usize, step: usize) -> bool {
    every > 0 && step.is_multiple_of(every)
}

impl Cadence {
    /// The schedule `t` configures.
    pub(super) fn of(t: &TrainConfig) -> Self {
        Self {
            steps: t.steps,
            log_every: t.log_every,
            eval_every: t.eval_every,
            checkpoint_every: t.checkpoint_every,
            halt_after: t.halt_after,
        }
    }

    /// A log line after `step`.
    pub(super) fn logs(&self, step: usize) -> bool {
        every(self.log_every, step)
    }

    /// A held-out evaluation after `step`.
    pub(super) fn evaluates(&self, step: usize) -> bool {
        every(self.eval_every, step) || step == self.steps
    }

    /// A checkpoint after `step`.
    pub(super) fn checkpoints(&self, step: usize) -> bool {
        every(self.checkpoint_every, step) || step == self.steps
    }

    /// A halt after `step` (never at the last step, which ends the run anyway).
    pub(super) fn halts_after(&self, step: usize) -> bool {
        self.halt_after == Some(step) && step != self.steps
    }

    /// The step a session that began at `start` ended at: where it halted, else
    /// the last step (or `start`, when the run was already complete).
    pub(super) fn final_step(&self, start: usize, halted_at: Option<usize>) -> usize {
        halted_at.unwrap_or(self.steps.max(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cadence(eval_every: usize, checkpoint_every: usize) -> Cadence {
        Cadence {
            steps: 10,
            log_every: 3,
            eval_every,
            checkpoint_every,
            halt_after: Some(7),
        }
    }

    fn due(f: impl Fn(usize) -> bool) -> Vec<usize> {
        (1..=10).filter(|&s| f(s)).collect()
    }

    #[test]
    fn every_n_steps_and_always_at_the_end() {
        let c = cadence(4, 5);
        assert_eq!(due(|s| c.logs(s)), [3, 6, 9]);
        assert_eq!(due(|s| c.evaluates(s)), [4, 8, 10]);
        assert_eq!(due(|s| c.checkpoints(s)), [5, 10]);
        let c = cadence(0, 0);
        assert_eq!(due(|s| c.evaluates(s)), [10]);
        assert_eq!(due(|s| c.checkpoints(s)), [10]);
        let quiet = Cadence { log_every: 0, ..c };
        assert!(due(|s| quiet.logs(s)).is_empty());
    }

    #[test]
    fn halts_only_before_the_last_step() {
        let c = cadence(0, 0);
        assert_eq!(due(|s| c.halts_after(s)), [7]);
        let at_end = Cadence {
            halt_after: Some(10),
            ..c
        };
        assert!(due(|s| at_end.halts_after(s)).is_empty());
        assert_eq!(c.final_step(0, Some(7)), 7);
        assert_eq!(c.final_step(4, None), 10);
        // A resume of a run already past its (lowered) step count stays where it was.
        assert_eq!(c.final_step(12, None), 12);
    }
}
