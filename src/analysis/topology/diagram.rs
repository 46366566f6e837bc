//! Persistence diagrams and the summaries reported from them.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// One persistence interval `[birth, death)`; `death` is `+∞` for a class that never dies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// Filtration value at which the class appears.
    pub birth: f64,
    /// Filtration value at which it dies (`f64::INFINITY` if never).
    pub death: f64,
}

impl Bar {
    /// `death − birth` (`+∞` for an essential class).
    pub fn persistence(&self) -> f64 {
        self.death - self.birth
    }

    /// Whether the class is alive at radius `r` (`birth ≤ r < death`).
    pub fn alive_at(&self, r: f64) -> bool {
        self.birth <= r && r < self.death
    }
}

/// Diagrams by dimension: `dims[k]` holds the bars of H_k. Bars of zero persistence are not
/// reported (as Ripser). Order inside a dimension is the order of discovery.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diagrams {
    /// `dims[k]` = bars of dimension k, for k = 0..=maxdim.
    pub dims: Vec<Vec<Bar>>,
}

impl Diagrams {
    /// Bars of dimension `k` (empty if not computed).
    pub fn dim(&self, k: usize) -> &[Bar] {
        self.dims.get(k).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The paper's "Betti number" of dimension k: the number of bars, `len(dgms[k])`.
    pub fn bar_count(&self, k: usize) -> usize {
        self.dim(k).len()
    }

    /// The Betti number β_k(r): classes of dimension k alive at radius r.
    pub fn betti_at(&self, k: usize, r: f64) -> usize {
        self.dim(k).iter().filter(|b| b.alive_at(r)).count()
    }

    /// Sum of the persistence of the finite bars of dimension k.
    pub fn total_persistence(&self, k: usize) -> f64 {
        self.finite(k).map(|b| b.persistence()).sum()
    }

    /// Largest persistence of a finite bar of dimension k (0 if there is none).
    pub fn max_persistence(&self, k: usize) -> f64 {
        self.finite(k).map(|b| b.persistence()).fold(0.0, f64::max)
    }

    /// Mean persistence of the finite bars of dimension k (0 if there is none), as the
    /// paper's `topology.ipynb` reports it.
    pub fn mean_persistence(&self, k: usize) -> f64 {
        let (sum, count) = self
            .finite(k)
            .fold((0.0, 0usize), |(s, c), b| (s + b.persistence(), c + 1));
        if count == 0 {
            0.0
        } else {
            sum / count as f64
        }
    }

    fn finite(&self, k: usize) -> impl Iterator<Item = &Bar> {
        self.dim(k).iter().filter(|b| b.death.is_finite())
    }
}

/// Serializes as `{"0": [[birth, death], …], "1": …}` with `null` for an infinite death,
/// the output of `sinkscope topo`.
impl Serialize for Diagrams {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Bars<'a>(&'a [Bar]);
        impl Serialize for Bars<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for b in self.0 {
                    let death = b.death.is_finite().then_some(b.death);
                    seq.serialize_element(&(b.birth, death))?;
                }
                seq.end()
            }
        }
        let mut map = serializer.serialize_map(Some(self.dims.len()))?;
        for (k, bars) in self.dims.iter().enumerate() {
            map.serialize_entry(&k.to_string(), &Bars(bars))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Diagrams {
        Diagrams {
            dims: vec![
                vec![
                    Bar {
                        birth: 0.0,
                        death: 1.0,
                    },
                    Bar {
                        birth: 0.0,
                        death: 3.0,
                    },
                    Bar {
                        birth: 0.0,
                        death: f64::INFINITY,
                    },
                ],
                vec![Bar {
                    birth: 1.5,
                    death: 2.0,
                }],
            ],
        }
    }

    #[test]
    fn summaries() {
        let d = sample();
        assert_eq!(d.bar_count(0), 3);
        assert_eq!(d.bar_count(2), 0);
        // at r = 1: bars [0,3) and [0,∞) alive; [0,1) has died
        assert_eq!(d.betti_at(0, 1.0), 2);
        assert_eq!(d.betti_at(1, 1.75), 1);
        assert_eq!(d.betti_at(1, 2.0), 0);
        // finite H0 persistence: 1 + 3 = 4, max 3, mean 2
        assert_eq!(d.total_persistence(0), 4.0);
        assert_eq!(d.max_persistence(0), 3.0);
        assert_eq!(d.mean_persistence(0), 2.0);
        assert_eq!(d.mean_persistence(2), 0.0);
    }

    #[test]
    fn json_uses_null_for_infinity() {
        let json = serde_json::to_string(&sample()).unwrap();
        assert_eq!(
            json,
            r#"{"0":[[0.0,1.0],[0.0,3.0],[0.0,null]],"1":[[1.5,2.0]]}"#
        );
    }
}
