//! Massive activations in the residual stream (Sun et al., `locuslab/massive-activations`):
//! per layer the three largest |h| over all (token, dim), the median |h|, and their ratio.
//! A few activations thousands of times the median are the residual-stream face of a sink.

use rayon::prelude::*;
use serde::Serialize;

use super::maps::HiddenStates;
use super::stats::median;

/// One large activation and where it sits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activation {
    /// |h|.
    pub value: f64,
    /// Token position.
    pub token: usize,
    /// Model dimension.
    pub dim: usize,
}

/// Massive-activation statistics of one residual-stream state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MassiveLayer {
    /// Index in the stack: 0 = embedding output, l + 1 = output of block l.
    pub index: usize,
    /// The three largest |h| (fewer if the state is smaller), largest first; ties keep the
    /// earlier (token, dim).
    pub top: Vec<Activation>,
    /// Median |h| over all tokens and dimensions.
    pub median: f64,
    /// `top[0] / median` (`None` when the median is 0).
    pub ratio: Option<f64>,
}

/// The three largest of `abs` (fewer if shorter) as (value, position), largest first,
/// ties to the earlier position: one pass, as a stable descending sort would order
/// them (a sort of every position's index was a tenth of `analyze`'s time at 2,048
/// tokens).
fn top3(abs: &[f64]) -> Vec<(f64, usize)> {
    let mut top: Vec<(f64, usize)> = Vec::with_capacity(4);
    for (p, &v) in abs.iter().enumerate() {
        if top.len() == 3 && v.total_cmp(&top[2].0).is_le() {
            continue;
        }
        let at = top
            .iter()
            .position(|&(t, _)| v.total_cmp(&t).is_gt())
            .unwrap_or(top.len());
        top.insert(at, (v, p));
        top.truncate(3);
    }
    top
}

/// Massive-activation statistics of every state of the stack (states in parallel).
pub fn massive_activations(hidden: &HiddenStates) -> Vec<MassiveLayer> {
    let d = hidden.d_model();
    (0..hidden.len())
        .into_par_iter()
        .map(|index| {
            let abs: Vec<f64> = hidden
                .state(index)
                .iter()
                .map(|v| f64::from(v.abs()))
                .collect();
            let top = top3(&abs)
                .into_iter()
                .map(|(value, p)| Activation {
                    value,
                    token: p / d,
                    dim: p % d,
                })
                .collect::<Vec<_>>();
            let median = median(&abs).unwrap_or(0.0);
            let ratio = (median > 0.0).then(|| top[0].value / median);
            MassiveLayer {
                index,
                top,
                median,
                ratio,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top3_median_ratio_by_hand() {
        // state 0: 2 tokens × 3 dims, |h| = [1, 2, 3, 4, 100, 5]
        //   top-3: 100 at (1, 1), 5 at (1, 2), 4 at (1, 0); median of
        //   [1, 2, 3, 4, 5, 100] = (3 + 4)/2 = 3.5; ratio 100 / 3.5
        // state 1: all zeros → median 0, no ratio
        let h = HiddenStates::new(
            2,
            2,
            3,
            vec![
                1.0, -2.0, 3.0, -4.0, 100.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            ],
        )
        .unwrap();
        let m = massive_activations(&h);
        assert_eq!(
            m[0].top[0],
            Activation {
                value: 100.0,
                token: 1,
                dim: 1
            }
        );
        assert_eq!(
            m[0].top[1],
            Activation {
                value: 5.0,
                token: 1,
                dim: 2
            }
        );
        assert_eq!(
            m[0].top[2],
            Activation {
                value: 4.0,
                token: 1,
                dim: 0
            }
        );
        assert_eq!(m[0].median, 3.5);
        assert!((m[0].ratio.unwrap() - 100.0 / 3.5).abs() < 1e-12);
        assert_eq!(m[1].ratio, None);
        assert_eq!(m[1].top[0].token, 0);
    }

    #[test]
    fn top3_equals_a_stable_descending_sort() {
        // many ties (values on a coarse grid), lengths around 3
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for n in [0, 1, 2, 3, 4, 7, 50, 1000] {
            let abs: Vec<f64> = (0..n)
                .map(|_| f64::from(rng.random_range(0..6u8)))
                .collect();
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| abs[b].total_cmp(&abs[a]));
            let want: Vec<(f64, usize)> = order.iter().take(3).map(|&p| (abs[p], p)).collect();
            assert_eq!(top3(&abs), want, "n = {n}");
        }
    }
}
