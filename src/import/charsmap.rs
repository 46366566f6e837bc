//! Validates the SentencePiece `precompiled_charsmap` of a tokenizer.json's
//! `Precompiled` normalizer before `tokenizers` reads it.
//!
//! The charsmap is SentencePiece's compiled normalization rules, base64-encoded: a
//! little-endian u32 trie size in bytes, the trie (a darts-clone double array of u32
//! units), then the replacement strings, NUL-terminated UTF-8. `tokenizers` (through
//! `spm_precompiled` 0.1) trusts every part of it: it reserves memory for the trie size
//! before checking it against the data (up to 8 GiB for a junk size, an abort rather
//! than an error when that fails), and walks the trie and slices the strings without
//! bounds checks, so a junk charsmap panics on the first text. Checking the same
//! structure here turns that into an error naming the field; `error::contain` stays
//! the safety net for whatever else a dependency trips over.
//!
//! Real charsmaps pass: darts-clone allocates the array in whole blocks of 256 units,
//! so every byte from a reachable node stays inside it (tested on one SentencePiece
//! compiled, `tests/fixtures/spm/`).

use std::collections::HashSet;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

/// Checks every `Precompiled` normalizer of a tokenizer.json (at the top or inside a
/// `Sequence`, at any depth). The error starts with the JSON path of the field, e.g.
/// `normalizer.normalizers[0].precompiled_charsmap: …`. A file that is not JSON passes:
/// `tokenizers` reports that itself.
pub fn check_tokenizer_json(raw: &[u8]) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(default)]
        normalizer: Value,
    }
    let Ok(head) = serde_json::from_slice::<Head>(raw) else {
        return Ok(());
    };
    let mut todo = vec![("normalizer".to_string(), &head.normalizer)];
    while let Some((path, n)) = todo.pop() {
        match n.get("type").and_then(Value::as_str) {
            Some("Sequence") => {
                let inner = n.get("normalizers").and_then(Value::as_array);
                for (i, m) in inner.into_iter().flatten().enumerate() {
                    todo.push((format!("{path}.normalizers[{i}]"), m));
                }
            }
            Some("Precompiled") => {
                let field = format!("{path}.precompiled_charsmap");
                match n.get("precompiled_charsmap") {
                    Some(Value::String(s)) => check_charsmap(s),
                    _ => Err("missing or not a string (base64 of a SentencePiece charsmap)".into()),
                }
                .map_err(|e| format!("{field}: {e}"))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks one base64 charsmap: it decodes, the trie size is a positive multiple of 4
/// within the data, the strings are UTF-8, and every lookup `spm_precompiled` can make
/// for any input stays inside the trie and lands on the start of a string.
pub fn check_charsmap(b64: &str) -> Result<(), String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("not base64: {e}"))?;
    let Some(head) = bytes.get(..4) else {
        return Err(format!(
            "{} bytes, too short for the 4-byte trie size",
            bytes.len()
        ));
    };
    let trie_size = u32::from_le_bytes(head.try_into().unwrap_or_default()) as usize;
    let rest = &bytes[4..];
    if trie_size > rest.len() {
        return Err(format!(
            "trie size {trie_size} bytes is larger than the {} bytes after it",
            rest.len()
        ));
    }
    if trie_size == 0 || !trie_size.is_multiple_of(4) {
        return Err(format!(
            "trie size {trie_size} bytes is not a positive multiple of 4 (the trie holds 32-bit units)"
        ));
    }
    let (trie, strings) = rest.split_at(trie_size);
    let units: Vec<usize> = trie
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()) as usize)
        .collect();
    let strings = std::str::from_utf8(strings)
        .map_err(|e| format!("the replacement strings after the trie are not UTF-8 ({e})"))?;
    check_trie(&units, strings)
}

/// The fields of a double-array unit, as `spm_precompiled` (after darts-clone) reads
/// them.
fn has_leaf(u: usize) -> bool {
    (u >> 8) & 1 == 1
}
fn value(u: usize) -> usize {
    u & ((1 << 31) - 1)
}
fn label(u: usize) -> usize {
    u & ((1 << 31) | 0xFF)
}
fn offset(u: usize) -> usize {
    (u >> 10) << ((u & (1 << 9)) >> 6)
}

/// Walks every node reachable from the root. From a node at `base`, an input byte `c`
/// (1..=255; a 0 ends the key) reads unit `base ^ c`; when its label is `c`, the child
/// is at `base ^ c ^ offset`, and when it has a leaf, the unit there holds the byte
/// offset of the replacement string.
fn check_trie(units: &[usize], strings: &str) -> Result<(), String> {
    let n = units.len();
    let mut seen = HashSet::new();
    let mut todo = vec![offset(units[0])];
    while let Some(base) = todo.pop() {
        if !seen.insert(base) {
            continue;
        }
        for c in 1..=255usize {
            let pos = base ^ c;
            let Some(&unit) = units.get(pos) else {
                return Err(format!(
                    "trie unit {pos} (byte 0x{c:02x} from node {base}) is past the trie's {n} units"
                ));
            };
            if label(unit) != c {
                continue;
            }
            let child = pos ^ offset(unit);
            if has_leaf(unit) {
                let Some(&leaf) = units.get(child) else {
                    return Err(format!(
                        "trie unit {child} (the leaf of unit {pos}) is past the trie's {n} units"
                    ));
                };
                let v = value(leaf);
                if !strings.is_char_boundary(v) {
                    return Err(format!(
                        "trie unit {child} points at byte {v} of the {} bytes of replacement \
                         strings, not at the start of one",
                        strings.len()
                    ));
                }
            }
            todo.push(child);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn real() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/spm/charsmap.b64"
        );
        let text = std::fs::read_to_string(path).unwrap();
        STANDARD.decode(text.trim()).unwrap()
    }

    fn check(bytes: &[u8]) -> Result<(), String> {
        check_charsmap(&STANDARD.encode(bytes))
    }

    #[test]
    fn a_real_charsmap_passes() {
        let bytes = real();
        assert_eq!(bytes.len(), 1111);
        check(&bytes).unwrap();
    }

    /// Each kind of junk is refused with what is wrong, and every value `tokenizers`
    /// would index with is covered: a size past the data, a misaligned or empty trie,
    /// non-UTF-8 strings, a child block past the array, a leaf value past the strings.
    #[test]
    fn junk_is_refused_saying_what_is_wrong() {
        let bytes = real();
        let set_size = |size: u32| {
            let mut b = bytes.clone();
            b[..4].copy_from_slice(&size.to_le_bytes());
            b
        };
        let cases: Vec<(&str, Result<(), String>)> = vec![
            ("not base64", check_charsmap("@@@")),
            ("too short", check(&[1, 0])),
            ("size past the data", check(&set_size(u32::MAX - 3))),
            ("misaligned", check(&set_size(1022))),
            ("empty trie", check(&set_size(0))),
            ("strings not UTF-8", {
                let mut b = bytes.clone();
                let last = b.len() - 2;
                b[last] = 0xff;
                check(&b)
            }),
            ("root points past the trie", {
                let mut b = bytes.clone();
                // Unit 0's offset field (bits 10..) set high: the root block is gone.
                b[4..8].copy_from_slice(&(0xffff_fc00u32 & !(1 << 9)).to_le_bytes());
                check(&b)
            }),
        ];
        let needles = [
            "not base64",
            "too short",
            "larger than the 1107 bytes",
            "not a positive multiple of 4",
            "not a positive multiple of 4",
            "not UTF-8",
            "past the trie's 256 units",
        ];
        for ((what, got), needle) in cases.into_iter().zip(needles) {
            let e = got.expect_err(what);
            assert!(e.contains(needle), "{what}: {e}");
        }
    }

    /// A leaf value past the strings: find a leaf in the real trie and move it.
    #[test]
    fn a_leaf_past_the_strings_is_refused() {
        let bytes = real();
        let units: Vec<usize> = bytes[4..1028]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as usize)
            .collect();
        // A reachable leaf: breadth-first from the root to the first unit with one.
        let mut todo = std::collections::VecDeque::from([offset(units[0])]);
        let leaf = loop {
            let base = todo.pop_front().expect("the trie has a leaf");
            let children: Vec<(usize, usize)> = (1..=255)
                .map(|c| (base ^ c, units[base ^ c]))
                .filter(|&(p, u)| label(u) == p ^ base)
                .collect();
            if let Some(&(p, u)) = children.iter().find(|&&(_, u)| has_leaf(u)) {
                break p ^ offset(u);
            }
            todo.extend(children.iter().map(|&(p, u)| p ^ offset(u)));
        };
        let mut b = bytes.clone();
        let at = 4 + leaf * 4;
        b[at..at + 4].copy_from_slice(&5000u32.to_le_bytes());
        let e = check(&b).unwrap_err();
        assert!(e.contains("points at byte 5000 of the 83 bytes"), "{e}");
    }

    #[test]
    fn the_field_is_named_at_any_depth() {
        let real = STANDARD.encode(real());
        let json = |normalizer: Value| serde_json::json!({ "normalizer": normalizer }).to_string();
        let good = json(serde_json::json!({"type": "Sequence", "normalizers": [
            {"type": "NFKC"},
            {"type": "Sequence", "normalizers": [{"type": "Precompiled", "precompiled_charsmap": real}]}
        ]}));
        check_tokenizer_json(good.as_bytes()).unwrap();
        let bad = json(serde_json::json!({"type": "Sequence", "normalizers": [
            {"type": "NFKC"},
            {"type": "Sequence", "normalizers": [{"type": "Precompiled", "precompiled_charsmap": "AAAA"}]}
        ]}));
        let e = check_tokenizer_json(bad.as_bytes()).unwrap_err();
        assert!(
            e.starts_with("normalizer.normalizers[1].normalizers[0].precompiled_charsmap: "),
            "{e}"
        );
        let null = json(serde_json::json!({"type": "Precompiled", "precompiled_charsmap": null}));
        let e = check_tokenizer_json(null.as_bytes()).unwrap_err();
        assert!(e.contains("missing or not a string"), "{e}");
        assert!(check_tokenizer_json(b"not json").is_ok());
        assert!(check_tokenizer_json(b"{\"normalizer\": null}").is_ok());
    }
}
