//! llama.cpp's SentencePiece-style tokenizer (`llm_tokenizer_spm` in `llama-vocab.cpp`),
//! for GGUF files whose `tokenizer.ggml.model` is `llama`: the file stores the pieces and
//! their scores, not merges, and llama.cpp tokenizes by repeatedly joining the adjacent
//! pair whose joined piece has the highest score (leftmost first on ties). Characters with
//! no piece fall back to byte pieces `<0xXX>`, else to the unknown token.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// The space marker SentencePiece writes in place of ' '.
const SPACE: &str = "\u{2581}";

/// A vocabulary of scored pieces.
#[derive(Clone, Debug)]
pub struct Spm {
    by_piece: HashMap<String, u32>,
    scores: Vec<f32>,
    bytes: Vec<Option<u32>>,
    unk: Option<u32>,
    add_space_prefix: bool,
}

/// A candidate join of two adjacent symbols.
#[derive(Debug)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bigram {
    /// Highest score first, then the leftmost (llama.cpp's `comparator`).
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// A run of the text: bytes `start..start + len`, linked to its neighbours.
#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl Spm {
    /// A vocabulary of `pieces` (id = index) with `scores`; `unk` for characters without a
    /// piece or byte piece; `add_space_prefix` prepends a space as SentencePiece does.
    pub fn new(
        pieces: &[String],
        scores: &[f32],
        unk: Option<u32>,
        add_space_prefix: bool,
    ) -> Self {
        let mut by_piece = HashMap::with_capacity(pieces.len());
        for (id, p) in pieces.iter().enumerate() {
            by_piece.entry(p.clone()).or_insert(id as u32);
        }
        let bytes = (0..=255u8)
            .map(|b| by_piece.get(&format!("<0x{b:02X}>")).copied())
            .collect();
        let mut scores = scores.to_vec();
        scores.resize(pieces.len(), 0.0);
        Self {
            by_piece,
            scores,
            bytes,
            unk,
            add_space_prefix,
        }
    }

    /// Token ids of `text` (no BOS/EOS; the caller adds those).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        if text.is_empty() {
            return Vec::new();
        }
        let prefixed;
        let text = if self.add_space_prefix {
            prefixed = format!(" {text}");
            &prefixed
        } else {
            text
        };
        let text = text.replace(' ', SPACE);
        let n = text.chars().count();
        let mut syms: Vec<Symbol> = text
            .char_indices()
            .enumerate()
            .map(|(i, (start, c))| Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: (i + 1 < n).then_some(i + 1),
            })
            .collect();
        let mut queue = BinaryHeap::new();
        for i in 1..n {
            self.push_bigram(&text, &syms, Some(i - 1), Some(i), &mut queue);
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (syms[b.left], syms[b.right]);
            // Stale: one side was joined into something else since this was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            syms[b.left].len += r.len;
            syms[b.right].len = 0;
            syms[b.left].next = r.next;
            if let Some(next) = r.next {
                syms[next].prev = Some(b.left);
            }
            let left = syms[b.left];
            self.push_bigram(&text, &syms, left.prev, Some(b.left), &mut queue);
            self.push_bigram(&text, &syms, Some(b.left), left.next, &mut queue);
        }
        let mut ids = Vec::new();
        let mut at = Some(0);
        while let Some(i) = at {
            let s = syms[i];
            self.resegment(&text[s.start..s.start + s.len], &mut ids);
            at = s.next;
        }
        ids
    }

    fn push_bigram(
        &self,
        text: &str,
        syms: &[Symbol],
        left: Option<usize>,
        right: Option<usize>,
        queue: &mut BinaryHeap<Bigram>,
    ) {
        let (Some(left), Some(right)) = (left, right) else {
            return;
        };
        let (l, r) = (syms[left], syms[right]);
        let joined = &text[l.start..r.start + r.len];
        if let Some(&id) = self.by_piece.get(joined) {
            queue.push(Bigram {
                score: self.scores[id as usize],
                left,
                right,
                size: joined.len(),
            });
        }
    }

    /// A final symbol: its piece, else its bytes' pieces, else the unknown token per byte.
    fn resegment(&self, piece: &str, ids: &mut Vec<u32>) {
        if let Some(&id) = self.by_piece.get(piece) {
            ids.push(id);
            return;
        }
        for b in piece.bytes() {
            if let Some(id) = self.bytes[b as usize].or(self.unk) {
                ids.push(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(pieces: &[&str]) -> (Vec<String>, Vec<f32>) {
        let p: Vec<String> = pieces.iter().map(|s| s.to_string()).collect();
        let scores = (0..p.len()).map(|i| -(i as f32)).collect();
        (p, scores)
    }

    #[test]
    fn joins_highest_scoring_pairs_first() {
        // "▁ab" can form as ▁a + b or ▁ + ab; ▁a scores higher than ab, so ▁a forms first.
        let (p, s) = vocab(&["<unk>", "▁", "a", "b", "▁a", "ab", "▁ab", "c"]);
        let spm = Spm::new(&p, &s, Some(0), true);
        assert_eq!(spm.encode("ab"), [6]);
        assert_eq!(spm.encode("abc"), [6, 7]);
        assert_eq!(spm.encode("ba"), [1, 3, 2]);
        // No piece and no byte pieces: unknown per byte of 'é' (2 bytes).
        assert_eq!(spm.encode("é"), [1, 0, 0]);
        assert!(spm.encode("").is_empty());
    }

    #[test]
    fn byte_fallback_pieces() {
        let (p, s) = vocab(&["<unk>", "▁", "<0xC3>", "<0xA9>"]);
        let spm = Spm::new(&p, &s, Some(0), false);
        assert_eq!(spm.encode("é"), [2, 3]);
    }
}
