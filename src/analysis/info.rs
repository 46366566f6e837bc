//! Information metrics of one layer: how far each head is from the head mean (KL), and how
//! much of that disagreement survives once the sink columns are removed.
//!
//! Source: the paper's `KL.ipynb` (arXiv 2508.02546): rows renormalized, Ā the head mean,
//! `KL_h = mean_i KL(A_h[i,:] ‖ Ā[i,:])` in nats, `kl` the mean over heads. For
//! `kl_sink_removed` the sink columns S (column mass ≥ P90) are zeroed in every head, rows
//! renormalized — uniform over the non-sink keys when a row empties — and the same KL is
//! recomputed on the new mean.

use serde::Serialize;

use super::stats::kl_divergence;

/// Information metrics of one layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerInfo {
    /// Mean over heads of `mean_i KL(A_h[i,:] ‖ Ā[i,:])`, nats.
    pub kl: f64,
    /// The same after removing the sink columns; `None` when every key is a sink (rows
    /// cannot be renormalized, the notebook's NaN).
    pub kl_sink_removed: Option<f64>,
    /// 100 · Σ_{j∈S} c_j / Σ_j c_j (the KL notebook's name for the sink concentration).
    pub sink_attention_pct: f64,
}

/// Mean over heads of the mean row KL to the head mean, for `H × T × T` row-stochastic
/// maps. `None` when a row is all zero (a distribution that does not exist).
pub fn head_mean_kl(maps: &[f64], heads: usize, t: usize) -> Option<f64> {
    let tt = t * t;
    let mut mean = vec![0.0f64; tt];
    for map in maps.chunks_exact(tt) {
        for (m, a) in mean.iter_mut().zip(map) {
            *m += a / heads as f64;
        }
    }
    let mut total = 0.0;
    for map in maps.chunks_exact(tt) {
        let mut head = 0.0;
        for (row, mrow) in map.chunks_exact(t).zip(mean.chunks_exact(t)) {
            if row.iter().sum::<f64>() <= 0.0 {
                return None;
            }
            head += kl_divergence(row.iter().copied(), mrow.iter().copied());
        }
        total += head / t as f64;
    }
    Some(total / heads as f64)
}

/// The maps with the columns in `sinks` zeroed and rows renormalized; a row left empty
/// becomes uniform over the non-sink keys (all T − |S| of them, as the notebook does, even
/// above the diagonal of a causal map), or stays zero if every key is a sink.
pub fn without_sinks(maps: &[f64], t: usize, sinks: &[usize]) -> Vec<f64> {
    let mut is_sink = vec![false; t];
    for &j in sinks {
        is_sink[j] = true;
    }
    let non_sinks = is_sink.iter().filter(|s| !**s).count();
    let mut out = maps.to_vec();
    for row in out.chunks_exact_mut(t) {
        for (a, &s) in row.iter_mut().zip(&is_sink) {
            if s {
                *a = 0.0;
            }
        }
        let sum: f64 = row.iter().sum();
        if sum > 0.0 {
            row.iter_mut().for_each(|a| *a /= sum);
        } else if non_sinks > 0 {
            for (a, &s) in row.iter_mut().zip(&is_sink) {
                *a = if s { 0.0 } else { 1.0 / non_sinks as f64 };
            }
        }
    }
    out
}

/// Σ_j a_j ln a_j over the positive a_j (0 ln 0 = 0), Σ_j a_j l_j, and the same two
/// restricted to the keys where `keep` is 1: one logarithm per weight serves both KLs.
fn row_sums(a: &[f32], l: &[f64], l_kept: &[f64], keep: &[f64]) -> [f64; 4] {
    let mut acc = [0.0f64; 4];
    for (((&a, &l), &lk), &k) in a.iter().zip(l).zip(l_kept).zip(keep) {
        if a > 0.0 {
            let a = f64::from(a);
            let ala = a * a.ln();
            acc[0] += ala;
            acc[1] += a * l;
            acc[2] += ala * k;
            acc[3] += a * k * lk;
        }
    }
    acc
}

/// Information metrics of one layer given its sink set and sink concentration.
///
/// The numbers of [`head_mean_kl`] on the renormalized maps and on [`without_sinks`]
/// of them, computed one query row at a time without an f64 copy of the maps, and
/// from one logarithm per weight: for a row a of sum s, p = a / s and
/// KL(p ‖ m) = (Σ a ln a − Σ a ln m) / s − ln s, and with the sinks removed the same
/// over the non-sink keys with their sum (an empty row, uniform 1/n over n keys, gives
/// −ln n − Σ ln m / n). The two routes agree within 1e-12 nats (rounding).
pub fn layer_info(
    layer: &[f32],
    heads: usize,
    t: usize,
    sinks: &[usize],
    sink_concentration: f64,
) -> LayerInfo {
    // 1 on the keys that stay when the sinks are removed, 0 on the sinks
    let mut keep = vec![1.0f64; t];
    for &j in sinks {
        keep[j] = 0.0;
    }
    let kept = keep.iter().filter(|&&k| k > 0.0).count();
    let hf = heads as f64;
    let (mut mean, mut mean_kept) = (vec![0.0f64; t], vec![0.0f64; t]);
    let (mut log_mean, mut log_kept) = (vec![0.0f64; t], vec![0.0f64; t]);
    let mut row_mass = vec![(0.0f64, 0.0f64); heads];
    let (mut kl_sums, mut removed_sums) = (vec![0.0f64; heads], vec![0.0f64; heads]);
    for i in 0..t {
        let row = |h: usize| &layer[(h * t + i) * t..(h * t + i + 1) * t];
        mean.iter_mut().for_each(|m| *m = 0.0);
        mean_kept.iter_mut().for_each(|m| *m = 0.0);
        // heads whose row (or kept part) is empty: uniform over all (or the kept) keys
        let (mut uniform, mut uniform_kept) = (0usize, 0usize);
        for (h, mass) in row_mass.iter_mut().enumerate() {
            let (mut s, mut sk) = (0.0f64, 0.0f64);
            for (&a, &k) in row(h).iter().zip(&keep) {
                let a = f64::from(a);
                s += a;
                sk += a * k;
            }
            *mass = (s, sk);
            if s > 0.0 {
                let c = 1.0 / (hf * s);
                for (m, &a) in mean.iter_mut().zip(row(h)) {
                    *m += f64::from(a) * c;
                }
            } else {
                uniform += 1;
            }
            if sk > 0.0 {
                let c = 1.0 / (hf * sk);
                for ((m, &a), &k) in mean_kept.iter_mut().zip(row(h)).zip(&keep) {
                    *m += f64::from(a) * k * c;
                }
            } else {
                uniform_kept += 1;
            }
        }
        if uniform > 0 {
            let u = uniform as f64 / (hf * t as f64);
            mean.iter_mut().for_each(|m| *m += u);
        }
        if uniform_kept > 0 && kept > 0 {
            let u = uniform_kept as f64 / (hf * kept as f64);
            for (m, &k) in mean_kept.iter_mut().zip(&keep) {
                *m += u * k;
            }
        }
        // ln of the means where they are positive (elsewhere every head's weight is 0)
        for (l, &m) in log_mean.iter_mut().zip(&mean) {
            *l = if m > 0.0 { m.ln() } else { 0.0 };
        }
        for (l, &m) in log_kept.iter_mut().zip(&mean_kept) {
            *l = if m > 0.0 { m.ln() } else { 0.0 };
        }
        let sum_log = |l: &[f64]| l.iter().zip(&keep).map(|(l, k)| l * k).sum::<f64>();
        let uniform_kl =
            (uniform > 0).then(|| -(t as f64).ln() - log_mean.iter().sum::<f64>() / t as f64);
        let uniform_removed = (uniform_kept > 0 && kept > 0)
            .then(|| -(kept as f64).ln() - sum_log(&log_kept) / kept as f64);
        for (h, &(s, sk)) in row_mass.iter().enumerate() {
            let [ala, alm, ala_kept, alm_kept] = row_sums(row(h), &log_mean, &log_kept, &keep);
            kl_sums[h] += match uniform_kl.filter(|_| s <= 0.0) {
                Some(u) => u,
                None => (ala - alm) / s - s.ln(),
            };
            removed_sums[h] += match uniform_removed.filter(|_| sk <= 0.0) {
                Some(u) => u,
                None => (ala_kept - alm_kept) / sk - sk.ln(),
            };
        }
    }
    let total = |sums: &[f64]| sums.iter().map(|s| s / t as f64).sum::<f64>() / heads as f64;
    LayerInfo {
        kl: total(&kl_sums),
        kl_sink_removed: (kept > 0).then(|| total(&removed_sums)),
        sink_attention_pct: 100.0 * sink_concentration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::sink::{column_sums, sink_set};

    /// Two bidirectional heads over T = 3, every query putting 0.6 on key 0:
    /// head 0 rows [.6,.4,0], [.6,0,.4], [.6,.2,.2]; head 1 rows [.6,0,.4], [.6,.4,0], [.6,.2,.2].
    fn layer() -> Vec<f32> {
        vec![
            0.6, 0.4, 0.0, 0.6, 0.0, 0.4, 0.6, 0.2, 0.2, //
            0.6, 0.0, 0.4, 0.6, 0.4, 0.0, 0.6, 0.2, 0.2,
        ]
    }

    #[test]
    fn kl_and_sink_removal_by_hand() {
        let l = layer();
        // column mass: [3.6, 1.2, 1.2]; P90 of [1.2, 1.2, 3.6] at index 1.8:
        // 3.6 − 2.4·0.2 = 3.12 → S = {0}; concentration 3.6 / 6 = 0.6
        let mut mass = column_sums(&l[..9], 3);
        for (m, s) in mass.iter_mut().zip(column_sums(&l[9..], 3)) {
            *m += s;
        }
        let (sinks, conc) = sink_set(&mass, 90.0);
        assert_eq!(sinks, vec![0]);
        let info = layer_info(&l, 2, 3, &sinks, conc);
        // Ā rows are all [.6, .2, .2]. Rows 0 and 1 of each head: KL = 0.6 ln 1 + 0.4 ln 2;
        // row 2: 0. Per head (2 · 0.4 ln 2)/3, so kl = 0.8 ln 2 / 3.
        assert!((info.kl - 0.8 * 2f64.ln() / 3.0).abs() < 1e-6);
        // Without key 0: head 0 rows [0,1,0], [0,0,1], [0,.5,.5]; head 1 rows [0,0,1],
        // [0,1,0], [0,.5,.5]; Ā rows [0,.5,.5]. KL ln 2, ln 2, 0 per head → 2 ln 2 / 3.
        assert!((info.kl_sink_removed.unwrap() - 2.0 * 2f64.ln() / 3.0).abs() < 1e-6);
        assert!((info.sink_attention_pct - 60.0).abs() < 1e-4);
    }

    #[test]
    fn row_by_row_equals_the_whole_map_computation() {
        // the streaming layer_info gives the numbers of head_mean_kl on the renormalized
        // maps, with and without the sinks, within 1e-12 nats (METRICS.md): rows with
        // zeros, an empty row (uniform), a row whose mass is all on the sinks
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for (heads, t, causal) in [
            (3, 5, false),
            (4, 40, false),
            (2, 130, false),
            (3, 64, true),
        ] {
            let sinks = [0, t / 2];
            let mut layer: Vec<f32> = (0..heads * t * t)
                .map(|p| {
                    let (i, j) = ((p / t) % t, p % t);
                    if p % 7 == 0 || (causal && j > i) {
                        0.0
                    } else {
                        rng.random::<f32>()
                    }
                })
                .collect();
            // head 0 row 1 empty; head 1 row 2 only on the sinks
            layer[t..2 * t].iter_mut().for_each(|a| *a = 0.0);
            for (j, a) in layer[(t + 2) * t..(t + 3) * t].iter_mut().enumerate() {
                *a = if sinks.contains(&j) { 0.5 } else { 0.0 };
            }
            let mut maps: Vec<f64> = layer.iter().map(|&a| f64::from(a)).collect();
            for row in maps.chunks_exact_mut(t) {
                let s: f64 = row.iter().sum();
                row.iter_mut()
                    .for_each(|a| *a = if s > 0.0 { *a / s } else { 1.0 / t as f64 });
            }
            let info = layer_info(&layer, heads, t, &sinks, 0.5);
            let want = head_mean_kl(&maps, heads, t).unwrap();
            assert!((info.kl - want).abs() <= 1e-12, "{} vs {want}", info.kl);
            let want = head_mean_kl(&without_sinks(&maps, t, &sinks), heads, t).unwrap();
            let got = info.kl_sink_removed.unwrap();
            assert!((got - want).abs() <= 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn emptied_rows_become_uniform_over_non_sinks() {
        // row [1, 0, 0] with S = {0} → uniform over keys 1, 2
        let out = without_sinks(&[1.0, 0.0, 0.0], 3, &[0]);
        assert_eq!(out, vec![0.0, 0.5, 0.5]);
        // every key a sink: the row stays empty and the KL is undefined
        let two = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0];
        let info = layer_info(&two.map(|x| x as f32), 2, 2, &[0, 1], 1.0);
        // heads [[1,0],[0,1]] and [[0,1],[1,0]]: Ā = ½ everywhere, every row KL = ln 2
        assert!((info.kl - 2f64.ln()).abs() < 1e-12);
        assert_eq!(info.kl_sink_removed, None);
    }
}
