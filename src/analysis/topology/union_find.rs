//! Union–find with birth times, for the 0-dimensional bars.
//!
//! H0 needs no matrix reduction: sweeping the edges by length and merging components gives
//! every bar (Ripser's `compute_dim_0_pairs`). Each root carries the earliest birth of its
//! component so that vertex birth times (ripser.py's reading of a nonzero diagonal) follow
//! the elder rule: when two components meet, the younger one dies.

/// Disjoint sets over vertices `0..n`, by rank with path compression.
pub(super) struct UnionFind {
    parent: Vec<usize>,
    rank: Vec<u8>,
    birth: Vec<f64>,
}

impl UnionFind {
    /// `n` singletons with the given birth times.
    pub(super) fn new(births: Vec<f64>) -> Self {
        let n = births.len();
        UnionFind {
            parent: (0..n).collect(),
            rank: vec![0; n],
            birth: births,
        }
    }

    /// Root of `x`'s component.
    pub(super) fn find(&mut self, mut x: usize) -> usize {
        let mut root = x;
        while self.parent[root] != root {
            root = self.parent[root];
        }
        while self.parent[x] != root {
            let next = self.parent[x];
            self.parent[x] = root;
            x = next;
        }
        root
    }

    /// Birth time of the component whose root is `root`.
    pub(super) fn birth(&self, root: usize) -> f64 {
        self.birth[root]
    }

    /// Merges the components of two roots; the merged one keeps the earlier birth.
    pub(super) fn link(&mut self, x: usize, y: usize) {
        let (x, y) = (self.find(x), self.find(y));
        if x == y {
            return;
        }
        let birth = self.birth[x].min(self.birth[y]);
        let root = if self.rank[x] > self.rank[y] {
            self.parent[y] = x;
            x
        } else {
            self.parent[x] = y;
            if self.rank[x] == self.rank[y] {
                self.rank[y] += 1;
            }
            y
        };
        self.birth[root] = birth;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_keeps_elder_birth() {
        let mut uf = UnionFind::new(vec![0.5, 0.1, 0.3, 0.0]);
        uf.link(0, 1);
        uf.link(2, 0);
        let r = uf.find(2);
        assert_eq!(uf.find(0), r);
        assert_eq!(uf.find(1), r);
        assert_ne!(uf.find(3), r);
        assert_eq!(uf.birth(r), 0.1);
        uf.link(3, 1);
        let r = uf.find(0);
        assert_eq!(uf.birth(r), 0.0);
    }
}
