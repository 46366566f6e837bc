//! When hooks evaluate: every N steps, at each checkpoint, or on a log-spaced
//! schedule (0, 1, 2, 4, 8, …) that shows the first steps of sink formation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An evaluation schedule. Written in recipes as `"log"`, `"checkpoint"` or
/// `"every:N"`; every schedule also evaluates at the last step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookSchedule {
    /// Steps 0, 1, 2, 4, 8, 16, …
    LogSpaced,
    /// Whenever a checkpoint is written (and at step 0).
    Checkpoint,
    /// Steps 0, N, 2N, …
    Every(usize),
}

impl HookSchedule {
    /// Whether step `step` (0 = before training) of a `total`-step run with
    /// checkpoints every `checkpoint_every` steps is evaluated.
    pub fn is_due(&self, step: usize, total: usize, checkpoint_every: usize) -> bool {
        if step == 0 || step == total {
            return true;
        }
        match *self {
            Self::LogSpaced => step.is_power_of_two(),
            Self::Checkpoint => checkpoint_every > 0 && step.is_multiple_of(checkpoint_every),
            Self::Every(n) => step.is_multiple_of(n),
        }
    }
}

impl fmt::Display for HookSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LogSpaced => f.write_str("log"),
            Self::Checkpoint => f.write_str("checkpoint"),
            Self::Every(n) => write!(f, "every:{n}"),
        }
    }
}

impl FromStr for HookSchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "log" | "log-spaced" => Ok(Self::LogSpaced),
            "checkpoint" => Ok(Self::Checkpoint),
            other => {
                let n = other
                    .strip_prefix("every:")
                    .ok_or_else(|| format!("unknown schedule `{other}`: expected \"log\", \"checkpoint\" or \"every:N\""))?;
                match n.trim().parse::<usize>() {
                    Ok(n) if n > 0 => Ok(Self::Every(n)),
                    _ => Err(format!(
                        "`{other}`: N in \"every:N\" must be a positive integer"
                    )),
                }
            }
        }
    }
}

impl Serialize for HookSchedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HookSchedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_spaced_steps() {
        let due: Vec<usize> = (0..=100)
            .filter(|&s| HookSchedule::LogSpaced.is_due(s, 100, 0))
            .collect();
        assert_eq!(due, [0, 1, 2, 4, 8, 16, 32, 64, 100]);
    }

    #[test]
    fn every_and_checkpoint() {
        let due: Vec<usize> = (0..=10)
            .filter(|&s| HookSchedule::Every(4).is_due(s, 10, 0))
            .collect();
        assert_eq!(due, [0, 4, 8, 10]);
        let due: Vec<usize> = (0..=10)
            .filter(|&s| HookSchedule::Checkpoint.is_due(s, 10, 3))
            .collect();
        assert_eq!(due, [0, 3, 6, 9, 10]);
    }

    #[test]
    fn parsing() {
        assert_eq!(
            "every:25".parse::<HookSchedule>(),
            Ok(HookSchedule::Every(25))
        );
        assert_eq!("log".parse::<HookSchedule>(), Ok(HookSchedule::LogSpaced));
        for bad in ["every:0", "every:x", "sometimes", "every"] {
            assert!(bad.parse::<HookSchedule>().is_err(), "{bad}");
        }
    }
}
