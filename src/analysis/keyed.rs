//! An insertion-ordered, string-keyed map for JSON output.
//!
//! Per-threshold and per-dimension metrics are written as objects keyed the way the issue
//! specifies (`"0.001"`, `"weighted"`, `"0"`, `"1"`), in the order they were computed — a
//! `BTreeMap` would sort `"0.1"` after `"0.05"` only by luck of the digits.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// `(key, value)` pairs serialized as a JSON object in insertion order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Keyed<V>(pub Vec<(String, V)>);

impl<V> Keyed<V> {
    /// An empty map.
    pub fn new() -> Self {
        Keyed(Vec::new())
    }

    /// Appends an entry.
    pub fn push(&mut self, key: impl Into<String>, value: V) {
        self.0.push((key.into(), value));
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<V: Serialize> Serialize for Keyed<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The key of a threshold, written as Rust prints the f64 (`0.001`, `0.1`, `0.2`).
pub fn threshold_key(tau: f64) -> String {
    format!("{tau}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_formats_thresholds() {
        let mut k = Keyed::new();
        for tau in [0.001, 0.05, 0.1, 0.2] {
            k.push(threshold_key(tau), tau * 2.0);
        }
        k.push("weighted", 1.0);
        assert_eq!(
            serde_json::to_string(&k).unwrap(),
            r#"{"0.001":0.002,"0.05":0.1,"0.1":0.2,"0.2":0.4,"weighted":1.0}"#
        );
        assert_eq!(k.get("0.1"), Some(&0.2));
    }
}
