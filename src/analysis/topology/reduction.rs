//! Vietoris–Rips persistence by cohomology with clearing, after Bauer's Ripser
//! (`Ripser/ripser`, `ripser.cpp`; "Ripser: efficient computation of Vietoris–Rips
//! persistence barcodes", 2021).
//!
//! Why by hand: the one maintained implementation is C++ (the `ripser` crate only wraps it,
//! f32 only, without vertex births), and the pure-Rust crates are young and unaudited. For
//! attention-sized inputs (T ≤ 512 tokens, dimension ≤ 2) Ripser's ideas fit in this file,
//! and the tests compare every diagram against the C++ original.
//!
//! The design follows Ripser step for step, with its names:
//! - simplices are never stored: a simplex is its index in the combinatorial number system
//!   ([`Binomial`]), and its cofacets are enumerated on the fly ([`Cofacets`]);
//! - H0 comes from union–find over the edges sorted by length (`compute_dim_0_pairs`);
//! - higher dimensions reduce the *coboundary* matrix column by column, in reverse
//!   filtration order, over Z/2 (`compute_pairs`);
//! - clearing: a simplex that was the pivot of a column in dimension d is a death simplex,
//!   so it is never a column in dimension d + 1 (`assemble_columns_to_reduce`);
//! - apparent and emergent pairs (zero-persistence pairs recognisable from a simplex's
//!   first equal-diameter cofacet) are skipped without any reduction;
//! - the threshold defaults to the enclosing radius (see [`RipsInput::enclosing_radius`]).
//!
//! Filtration order: by diameter, then by *decreasing* simplex index; columns are reduced
//! from the last simplex to the first, and a column's pivot is its earliest cofacet.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::binomial::{Binomial, Index};
use super::diagram::{Bar, Diagrams};
use super::distance::RipsInput;
use super::union_find::UnionFind;

/// Highest homology dimension computed.
pub const MAX_DIM: usize = 4;
/// Most vertices of any simplex the algorithm touches: cofacets of `MAX_DIM`-simplices.
const MAX_VERTICES: usize = MAX_DIM + 2;

/// A simplex with its filtration value (Ripser's `diameter_entry_t` over Z/2).
#[derive(Clone, Copy, Debug)]
struct Simplex {
    diameter: f64,
    index: Index,
}

impl PartialEq for Simplex {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Simplex {}
impl PartialOrd for Simplex {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
/// Max-heap order: the greatest is the smallest diameter, then the largest index — the
/// pivot (earliest cofacet in the filtration) of a coboundary column.
impl Ord for Simplex {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .diameter
            .total_cmp(&self.diameter)
            .then(self.index.cmp(&other.index))
    }
}

/// Sort key of the columns to reduce: decreasing diameter, then increasing index
/// (Ripser's `greater_diameter_or_smaller_index`).
fn reverse_filtration_order(a: &Simplex, b: &Simplex) -> Ordering {
    b.diameter
        .total_cmp(&a.diameter)
        .then(a.index.cmp(&b.index))
}

/// Multiplicative hash for simplex indices (the default SipHash costs more than the
/// reduction step it guards).
#[derive(Default)]
struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i64(&mut self, i: i64) {
        self.0 = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Pivot simplex index → the column (position in the columns to reduce) that owns it.
type PivotMap = HashMap<Index, usize, BuildHasherDefault<IndexHasher>>;

/// The columns of the reduction matrix V, minus their diagonal (Ripser's
/// `compressed_sparse_matrix`).
#[derive(Default)]
struct ReductionMatrix {
    bounds: Vec<usize>,
    entries: Vec<Simplex>,
}

impl ReductionMatrix {
    fn append_column(&mut self) {
        self.bounds.push(self.entries.len());
    }
    fn push(&mut self, s: Simplex) {
        self.entries.push(s);
        *self.bounds.last_mut().expect("a column was appended") += 1;
    }
    fn column(&self, i: usize) -> &[Simplex] {
        let start = if i == 0 { 0 } else { self.bounds[i - 1] };
        &self.entries[start..self.bounds[i]]
    }
}

/// Pops the pivot of a working column (a heap holding each entry with multiplicity): equal
/// entries cancel in pairs over Z/2.
fn pop_pivot(column: &mut BinaryHeap<Simplex>) -> Option<Simplex> {
    while let Some(pivot) = column.pop() {
        match column.peek() {
            Some(top) if top.index == pivot.index => {
                column.pop();
            }
            _ => return Some(pivot),
        }
    }
    None
}

/// The pivot of a working column, left in place.
fn get_pivot(column: &mut BinaryHeap<Simplex>) -> Option<Simplex> {
    let pivot = pop_pivot(column);
    if let Some(p) = pivot {
        column.push(p);
    }
    pivot
}

/// Everything the reduction reads: the metric, the threshold, the binomial table.
struct Rips<'a> {
    n: usize,
    dist: &'a [f64],
    threshold: f64,
    dim_max: usize,
    binomial: Binomial,
}

/// Enumerates the cofacets of a simplex in decreasing index order, computing each
/// cofacet's index and diameter from the simplex's (Ripser's
/// `simplex_coboundary_enumerator`).
struct Cofacets<'a> {
    rips: &'a Rips<'a>,
    idx_below: Index,
    idx_above: Index,
    j: Index,
    k: Index,
    vertices: [usize; MAX_VERTICES],
    len: usize,
    diameter: f64,
}

impl<'a> Cofacets<'a> {
    fn new(rips: &'a Rips<'a>, simplex: Simplex, dim: usize) -> Self {
        let mut vertices = [0; MAX_VERTICES];
        rips.vertices_of(simplex.index, dim, &mut vertices[..=dim]);
        Cofacets {
            rips,
            idx_below: simplex.index,
            idx_above: 0,
            j: rips.n as Index - 1,
            k: dim as Index + 1,
            vertices,
            len: dim + 1,
            diameter: simplex.diameter,
        }
    }

    /// Whether another cofacet follows; with `all_cofacets = false`, only the cofacets
    /// whose new vertex exceeds every vertex of the simplex (each simplex of the next
    /// dimension is then produced exactly once, from its facet without its top vertex).
    #[inline(always)]
    fn has_next(&self, all_cofacets: bool) -> bool {
        self.j >= self.k
            && (all_cofacets || self.rips.binomial.get(self.j, self.k) > self.idx_below)
    }

    #[inline(always)]
    fn next(&mut self) -> Simplex {
        let b = &self.rips.binomial;
        loop {
            let c = b.get(self.j, self.k);
            if c > self.idx_below {
                break;
            }
            self.idx_below -= c;
            self.idx_above += b.get(self.j, self.k + 1);
            self.j -= 1;
            self.k -= 1;
        }
        let n = self.rips.n;
        let row = &self.rips.dist[self.j as usize * n..(self.j as usize + 1) * n];
        let mut diameter = self.diameter;
        for &v in &self.vertices[..self.len] {
            let d = row[v];
            if d > diameter {
                diameter = d;
            }
        }
        let index = self.idx_above + b.get(self.j, self.k + 1) + self.idx_below;
        self.j -= 1;
        Simplex { diameter, index }
    }
}

impl<'a> Rips<'a> {
    /// Largest vertex v ≤ `top` with C(v, k) ≤ `idx` (binary search, Ripser's `get_max`).
    #[inline]
    fn max_vertex(&self, idx: Index, k: Index, mut top: Index) -> Index {
        let bottom = k - 1;
        if self.binomial.get(top, k) > idx {
            let mut count = top - bottom;
            while count > 0 {
                let step = count >> 1;
                let mid = top - step;
                if self.binomial.get(mid, k) > idx {
                    top = mid - 1;
                    count -= step + 1;
                } else {
                    count = step;
                }
            }
        }
        top
    }

    /// Vertices of a `dim`-simplex, in decreasing order.
    #[inline]
    fn vertices_of(&self, mut idx: Index, dim: usize, out: &mut [usize]) {
        let mut top = self.n as Index - 1;
        for (pos, k) in (2..=dim as Index + 1).rev().enumerate() {
            top = self.max_vertex(idx, k, top);
            out[pos] = top as usize;
            idx -= self.binomial.get(top, k);
        }
        out[dim] = idx as usize;
    }

    /// All edges up to the threshold.
    fn edges(&self) -> Vec<Simplex> {
        let n = self.n;
        let mut edges = Vec::with_capacity(n * n.saturating_sub(1) / 2);
        for i in 1..n {
            let base = self.binomial.get(i as Index, 2);
            let row = &self.dist[i * n..i * n + i];
            for (j, &d) in row.iter().enumerate() {
                if d <= self.threshold {
                    edges.push(Simplex {
                        diameter: d,
                        index: base + j as Index,
                    });
                }
            }
        }
        edges
    }

    /// The facet of equal diameter with the smallest index — the homology pivot — if any
    /// (Ripser's `get_zero_pivot_facet`). Facets come in increasing index order, by
    /// removing the largest vertex first.
    fn zero_pivot_facet(&self, simplex: Simplex, dim: usize) -> Option<Simplex> {
        let mut v = [0usize; MAX_VERTICES];
        self.vertices_of(simplex.index, dim, &mut v[..=dim]);
        let n = self.n;
        for removed in 0..=dim {
            let mut index: Index = 0;
            let mut diameter = f64::NEG_INFINITY;
            let mut pos = 0;
            for (i, &vi) in v[..=dim].iter().enumerate() {
                if i == removed {
                    continue;
                }
                index += self.binomial.get(vi as Index, (dim - pos) as Index);
                for &vj in &v[i + 1..=dim] {
                    if vj != v[removed] {
                        let d = self.dist[vi * n + vj];
                        if d > diameter {
                            diameter = d;
                        }
                    }
                }
                pos += 1;
            }
            if dim == 1 {
                // a vertex: its filtration value plays no role outside H0
                diameter = 0.0;
            }
            if diameter == simplex.diameter {
                return Some(Simplex { diameter, index });
            }
        }
        None
    }

    /// The first cofacet of equal diameter, i.e. the cohomology pivot of the unreduced
    /// coboundary, if any (Ripser's `get_zero_pivot_cofacet`).
    fn zero_pivot_cofacet(&self, simplex: Simplex, dim: usize) -> Option<Simplex> {
        let mut cofacets = Cofacets::new(self, simplex, dim);
        while cofacets.has_next(true) {
            let c = cofacets.next();
            if c.diameter == simplex.diameter {
                return Some(c);
            }
        }
        None
    }

    /// `simplex`'s facet when the two form an apparent pair of persistence zero.
    fn zero_apparent_facet(&self, simplex: Simplex, dim: usize) -> Option<Simplex> {
        let facet = self.zero_pivot_facet(simplex, dim)?;
        let back = self.zero_pivot_cofacet(facet, dim - 1)?;
        (back.index == simplex.index).then_some(facet)
    }

    /// `simplex`'s cofacet when the two form an apparent pair of persistence zero.
    fn zero_apparent_cofacet(&self, simplex: Simplex, dim: usize) -> Option<Simplex> {
        let cofacet = self.zero_pivot_cofacet(simplex, dim)?;
        let back = self.zero_pivot_facet(cofacet, dim + 1)?;
        (back.index == simplex.index).then_some(cofacet)
    }

    fn is_in_zero_apparent_pair(&self, simplex: Simplex, dim: usize) -> bool {
        self.zero_apparent_cofacet(simplex, dim).is_some()
            || self.zero_apparent_facet(simplex, dim).is_some()
    }

    /// H0 by union–find; returns the edges (the 1-simplices, for the next dimension) and
    /// the edges that close a cycle (the columns of dimension 1).
    fn compute_dim_0_pairs(
        &self,
        births: Vec<f64>,
        bars: &mut Vec<Bar>,
    ) -> (Vec<Simplex>, Vec<Simplex>) {
        let mut sets = UnionFind::new(births);
        let mut edges = self.edges();
        // increasing diameter, ties by decreasing index: the filtration order
        edges.sort_unstable_by(|a, b| reverse_filtration_order(b, a));
        let mut columns = Vec::new();
        for &e in &edges {
            let i = self.max_vertex(e.index, 2, self.n as Index - 1);
            let j = e.index - self.binomial.get(i, 2);
            let (u, v) = (sets.find(i as usize), sets.find(j as usize));
            if u != v {
                // elder rule: the younger component dies
                let birth = sets.birth(u).max(sets.birth(v));
                if e.diameter > birth {
                    bars.push(Bar {
                        birth,
                        death: e.diameter,
                    });
                }
                sets.link(u, v);
            } else if self.dim_max > 0 && self.zero_apparent_cofacet(e, 1).is_none() {
                columns.push(e);
            }
        }
        columns.reverse();
        for x in 0..self.n {
            if sets.find(x) == x {
                bars.push(Bar {
                    birth: sets.birth(x),
                    death: f64::INFINITY,
                });
            }
        }
        (edges, columns)
    }

    /// Pushes `simplex` onto the working reduction column and its coboundary onto the
    /// working coboundary.
    fn add_simplex_coboundary(
        &self,
        simplex: Simplex,
        dim: usize,
        reduction: &mut BinaryHeap<Simplex>,
        coboundary: &mut BinaryHeap<Simplex>,
    ) {
        reduction.push(simplex);
        let mut cofacets = Cofacets::new(self, simplex, dim);
        while cofacets.has_next(true) {
            let c = cofacets.next();
            if c.diameter <= self.threshold {
                coboundary.push(c);
            }
        }
    }

    /// Fills the working coboundary of a new column and returns its pivot, short-cutting an
    /// emergent pair: when the first equal-diameter cofacet is nobody's pivot yet and not in
    /// an apparent pair, it is the pivot and no reduction is needed.
    fn init_coboundary_and_get_pivot(
        &self,
        simplex: Simplex,
        dim: usize,
        coboundary: &mut BinaryHeap<Simplex>,
        pivots: &PivotMap,
        scratch: &mut Vec<Simplex>,
    ) -> Option<Simplex> {
        let mut check_for_emergent_pair = true;
        scratch.clear();
        let mut cofacets = Cofacets::new(self, simplex, dim);
        while cofacets.has_next(true) {
            let c = cofacets.next();
            if c.diameter <= self.threshold {
                scratch.push(c);
                if check_for_emergent_pair && c.diameter == simplex.diameter {
                    if !pivots.contains_key(&c.index)
                        && self.zero_apparent_facet(c, dim + 1).is_none()
                    {
                        return Some(c);
                    }
                    check_for_emergent_pair = false;
                }
            }
        }
        coboundary.extend(scratch.iter().copied());
        get_pivot(coboundary)
    }

    /// Reduces the coboundary columns of dimension `dim` (Ripser's `compute_pairs`).
    fn compute_pairs(
        &self,
        columns: &[Simplex],
        pivots: &mut PivotMap,
        dim: usize,
        bars: &mut Vec<Bar>,
    ) {
        let mut reduction_matrix = ReductionMatrix::default();
        let mut working_reduction = BinaryHeap::new();
        let mut working_coboundary = BinaryHeap::new();
        let mut scratch = Vec::new();
        for (index_column, &column) in columns.iter().enumerate() {
            reduction_matrix.append_column();
            working_reduction.clear();
            working_coboundary.clear();
            let mut pivot = self.init_coboundary_and_get_pivot(
                column,
                dim,
                &mut working_coboundary,
                pivots,
                &mut scratch,
            );
            loop {
                let Some(p) = pivot else {
                    bars.push(Bar {
                        birth: column.diameter,
                        death: f64::INFINITY,
                    });
                    break;
                };
                if let Some(&other) = pivots.get(&p.index) {
                    self.add_simplex_coboundary(
                        columns[other],
                        dim,
                        &mut working_reduction,
                        &mut working_coboundary,
                    );
                    for &s in reduction_matrix.column(other) {
                        self.add_simplex_coboundary(
                            s,
                            dim,
                            &mut working_reduction,
                            &mut working_coboundary,
                        );
                    }
                    pivot = get_pivot(&mut working_coboundary);
                } else if let Some(e) = self.zero_apparent_facet(p, dim + 1) {
                    self.add_simplex_coboundary(
                        e,
                        dim,
                        &mut working_reduction,
                        &mut working_coboundary,
                    );
                    pivot = get_pivot(&mut working_coboundary);
                } else {
                    if p.diameter > column.diameter {
                        bars.push(Bar {
                            birth: column.diameter,
                            death: p.diameter,
                        });
                    }
                    pivots.insert(p.index, index_column);
                    while let Some(e) = pop_pivot(&mut working_reduction) {
                        reduction_matrix.push(e);
                    }
                    break;
                }
            }
        }
    }

    /// The columns of dimension `dim`: every `dim`-simplex up to the threshold that is not
    /// a pivot of dimension `dim − 1` (clearing) nor in an apparent pair. `simplices` holds
    /// the (`dim` − 1)-simplices and is replaced by the `dim`-simplices.
    fn assemble_columns_to_reduce(
        &self,
        simplices: &mut Vec<Simplex>,
        pivots: &PivotMap,
        dim: usize,
    ) -> Vec<Simplex> {
        let mut columns = Vec::new();
        let mut next_simplices = Vec::new();
        for &simplex in simplices.iter() {
            let mut cofacets = Cofacets::new(self, simplex, dim - 1);
            while cofacets.has_next(false) {
                let c = cofacets.next();
                if c.diameter <= self.threshold {
                    if dim < self.dim_max {
                        next_simplices.push(c);
                    }
                    if !pivots.contains_key(&c.index) && !self.is_in_zero_apparent_pair(c, dim) {
                        columns.push(c);
                    }
                }
            }
        }
        *simplices = next_simplices;
        columns.sort_unstable_by(reverse_filtration_order);
        columns
    }
}

/// Persistence diagrams of dimensions `0..=min(maxdim, MAX_DIM)` of the Rips filtration
/// of `input` up to `threshold` (`f64::MAX` for no limit). Dimensions above `n − 2`, or
/// whose simplices cannot be indexed in 64 bits, come back empty.
pub(super) fn persistence(input: &RipsInput, maxdim: usize, threshold: f64) -> Diagrams {
    let n = input.n;
    let maxdim = maxdim.min(MAX_DIM);
    let mut diagrams = Diagrams {
        dims: vec![Vec::new(); maxdim + 1],
    };
    if n == 0 {
        return diagrams;
    }
    let mut dim_max = maxdim.min(MAX_DIM).min(n.saturating_sub(2));
    let binomial = loop {
        match Binomial::new(n, dim_max + 2) {
            Some(b) => break b,
            None if dim_max > 0 => dim_max -= 1,
            None => return diagrams,
        }
    };
    let rips = Rips {
        n,
        dist: &input.dist,
        threshold,
        dim_max,
        binomial,
    };
    let births = input.births.clone().unwrap_or_else(|| vec![0.0; n]);
    let (mut simplices, mut columns) = rips.compute_dim_0_pairs(births, &mut diagrams.dims[0]);
    for dim in 1..=dim_max {
        let mut pivots = PivotMap::default();
        pivots.reserve(columns.len());
        rips.compute_pairs(&columns, &mut pivots, dim, &mut diagrams.dims[dim]);
        if dim < dim_max {
            columns = rips.assemble_columns_to_reduce(&mut simplices, &pivots, dim + 1);
        }
    }
    diagrams
}
