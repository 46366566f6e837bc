//! WeightWatcher-compatible spectra of weight matrices (`CalculatedContent/WeightWatcher`).
//!
//! For a weight W (N × M after transposing so that N ≥ M) the empirical spectral density
//! is λ = σ(W)², the eigenvalues of WᵀW, unscaled. From it:
//! - `alpha`: power-law exponent by maximum likelihood, xmin chosen by the smallest
//!   Kolmogorov–Smirnov distance `D` (WeightWatcher's own `WWFit`, eigenvalues ≤ 1e-5
//!   dropped first); `sigma` its standard error, `num_pl_spikes` the tail size;
//! - `alpha_weighted` = α·log10 λmax, `log_alpha_norm` = log10 Σλ^α, `log_norm` =
//!   log10 Σλ, `log_spectral_norm` = log10 λmax, `stable_rank` = Σλ / λmax;
//! - a Marchenko–Pastur fit: the ESD rescaled to mean 1, Q = N/M,
//!   bulk_max = (σ_mp (1 + 1/√Q))², spikes above bulk_max + √TW with WeightWatcher's
//!   Tracy–Widom term TW = bulk_max^{2/3} M^{−2/3} / √Q, `mp_softrank` = bulk_max / λmax;
//! - `rand_distance`: Jensen–Shannon distance between the sum-normalized sorted spectra of
//!   W and of W with its entries shuffled (seeded), and `ww_softrank` = λmax(shuffled)/λmax.
//!
//! One deliberate difference: WeightWatcher fits σ_mp by a brute-force search matching a
//! kernel density estimate of the ESD to the MP density; here σ_mp² is the mean of the
//! bulk, iterated until the bulk (eigenvalues below the edge plus margin) is stable — the
//! MP law's own moment condition. `sigma_mp`, `num_spikes` and `mp_softrank` can therefore
//! differ slightly from WeightWatcher's; everything else follows its formulas.

use faer::Par;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use super::config::SpectraConfig;
use super::error::AnalysisError;
use super::linalg::{singular_values, to_mat};
use super::stats::kl_divergence;

/// One row of `sinkscope spectra`, with WeightWatcher's column names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightSpectrum {
    /// Tensor name.
    pub name: String,
    /// Larger dimension.
    #[serde(rename = "N")]
    pub n: usize,
    /// Smaller dimension (= number of eigenvalues).
    #[serde(rename = "M")]
    pub m: usize,
    /// Aspect ratio N / M.
    #[serde(rename = "Q")]
    pub q: f64,
    /// Number of eigenvalues (M).
    pub num_evals: usize,
    /// Σλ (squared Frobenius norm).
    pub norm: f64,
    /// λmax (squared spectral norm), WeightWatcher's `spectral_norm`.
    pub spectral_norm: f64,
    /// Largest singular value.
    pub sv_max: f64,
    /// Smallest singular value.
    pub sv_min: f64,
    /// Power-law exponent of the ESD tail (`None` if fewer than 2 eigenvalues survive the
    /// 1e-5 cut).
    pub alpha: Option<f64>,
    /// Start of the fitted tail.
    pub xmin: Option<f64>,
    /// End of the fitted range (λmax).
    pub xmax: f64,
    /// Kolmogorov–Smirnov distance of the fit.
    #[serde(rename = "D")]
    pub d: Option<f64>,
    /// Standard error of alpha, (α − 1)/√n_tail.
    pub sigma: Option<f64>,
    /// Eigenvalues ≥ xmin.
    pub num_pl_spikes: usize,
    /// α · log10 λmax.
    pub alpha_weighted: Option<f64>,
    /// log10 Σ λ^α.
    pub log_alpha_norm: Option<f64>,
    /// log10 Σλ.
    pub log_norm: f64,
    /// log10 λmax.
    pub log_spectral_norm: f64,
    /// Σλ / λmax.
    pub stable_rank: f64,
    /// Fitted MP scale (on the ESD rescaled to mean 1).
    pub sigma_mp: f64,
    /// MP bulk edge, in the units of λ.
    pub bulk_max: f64,
    /// Eigenvalues above the bulk edge plus the Tracy–Widom margin.
    pub num_spikes: usize,
    /// bulk_max / λmax.
    pub mp_softrank: f64,
    /// Jensen–Shannon distance to the shuffled matrix's spectrum (`None` if not computed).
    pub rand_distance: Option<f64>,
    /// λmax(shuffled) / λmax.
    pub ww_softrank: Option<f64>,
    /// WeightWatcher's reading of alpha: "over-trained" (< 2), "under-trained" (> 6) or "".
    pub warning: String,
    /// The eigenvalues λ, ascending (for histograms; not written to tables).
    #[serde(skip)]
    pub evals: Vec<f64>,
}

/// A power-law fit of the ESD tail (WeightWatcher's `WWFit`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerLawFit {
    /// Exponent α of p(λ) ∝ λ^−α above xmin.
    pub alpha: f64,
    /// Chosen lower bound of the tail.
    pub xmin: f64,
    /// KS distance at that xmin.
    pub d: f64,
    /// (α − 1) / √(tail size).
    pub sigma: f64,
}

/// WeightWatcher's fit on eigenvalues sorted in increasing order: for every candidate xmin
/// = λ_i but the last, α_i = 1 + n / (Σ_{k≥i} ln λ_k − n ln λ_i) with n the tail size,
/// D_i = max_k |1 − (λ_k/λ_i)^{1−α_i} − k/n| when α_i > 1 (else 1); the smallest D_i wins
/// (the first on ties). The range ends at the first occurrence of λmax, as WWFit's
/// `argmin |data − xmax|` does.
pub fn fit_power_law(sorted: &[f64]) -> Option<PowerLawFit> {
    let max = *sorted.last()?;
    let end = sorted.iter().position(|&x| x == max)? + 1;
    let data = &sorted[..end];
    let n_all = data.len();
    if n_all < 2 {
        return None;
    }
    let logs: Vec<f64> = data.iter().map(|x| x.ln()).collect();
    // suffix sums of the logs
    let mut suffix = vec![0.0f64; n_all + 1];
    for i in (0..n_all).rev() {
        suffix[i] = suffix[i + 1] + logs[i];
    }
    let mut best: Option<(usize, f64, f64)> = None;
    for i in 0..n_all - 1 {
        let n = (n_all - i) as f64;
        let alpha = 1.0 + n / (suffix[i] - n * logs[i]);
        let d = if alpha > 1.0 {
            let xmin = data[i];
            data[i..]
                .iter()
                .enumerate()
                .map(|(k, &x)| (1.0 - (x / xmin).powf(1.0 - alpha) - k as f64 / n).abs())
                .fold(0.0, f64::max)
        } else {
            1.0
        };
        if best.is_none_or(|(_, _, bd)| d < bd) {
            best = Some((i, alpha, d));
        }
    }
    let (i, alpha, d) = best?;
    Some(PowerLawFit {
        alpha,
        xmin: data[i],
        d,
        sigma: (alpha - 1.0) / ((n_all - i) as f64).sqrt(),
    })
}

/// A Marchenko–Pastur fit (see the module notes for how σ is fitted).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MpFit {
    /// σ on the ESD rescaled to mean 1.
    pub sigma: f64,
    /// Bulk edge (σ (1 + 1/√Q))², in the units of the input eigenvalues.
    pub bulk_max: f64,
    /// Eigenvalues above bulk_max + √TW.
    pub num_spikes: usize,
    /// bulk_max / λmax.
    pub softrank: f64,
}

/// Fits the MP bulk to eigenvalues of WᵀW (any order) of an N × M matrix, N ≥ M.
pub fn fit_marchenko_pastur(evals: &[f64], n: usize, m: usize) -> Option<MpFit> {
    let total: f64 = evals.iter().sum();
    if evals.is_empty() || total <= 0.0 {
        return None;
    }
    let scale = evals.len() as f64 / total;
    let x: Vec<f64> = evals.iter().map(|l| l * scale).collect();
    let q = n as f64 / m as f64;
    let edge = |s2: f64| s2 * (1.0 + 1.0 / q.sqrt()).powi(2);
    let tw = |bulk: f64| bulk.powf(2.0 / 3.0) * (m as f64).powf(-2.0 / 3.0) / q.sqrt();
    // σ² = mean of the bulk; start from the mean of everything (1 after rescaling) and
    // drop the eigenvalues beyond edge + margin until the mean stops moving.
    let mut s2 = 1.0;
    for _ in 0..100 {
        let cut = edge(s2) + tw(edge(s2)).sqrt();
        let (sum, count) = x
            .iter()
            .filter(|&&v| v <= cut)
            .fold((0.0, 0usize), |(s, c), &v| (s + v, c + 1));
        if count == 0 {
            break;
        }
        let next = sum / count as f64;
        let done = (next - s2).abs() <= 1e-12 * s2;
        s2 = next;
        if done {
            break;
        }
    }
    let bulk = edge(s2);
    let cut = bulk + tw(bulk).sqrt();
    let lmax = x.iter().copied().fold(0.0, f64::max);
    Some(MpFit {
        sigma: s2.sqrt(),
        bulk_max: bulk / scale,
        num_spikes: x.iter().filter(|&&v| v > cut).count(),
        softrank: bulk / lmax,
    })
}

/// Jensen–Shannon distance (natural log) between two non-negative vectors, each first
/// normalized to sum 1: √(½ KL(p‖m) + ½ KL(q‖m)), m = (p + q)/2.
pub fn jensen_shannon_distance(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    let p: Vec<f64> = p.iter().map(|x| x / sp).collect();
    let q: Vec<f64> = q.iter().map(|x| x / sq).collect();
    let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| 0.5 * (a + b)).collect();
    let js = 0.5 * kl_divergence(p.iter().copied(), m.iter().copied())
        + 0.5 * kl_divergence(q.iter().copied(), m.iter().copied());
    js.max(0.0).sqrt()
}

/// Eigenvalues of WᵀW (σ²) of a row-major `rows × cols` matrix, increasing.
pub fn esd(data: &[f32], rows: usize, cols: usize, par: Par) -> Option<Vec<f64>> {
    let sv = singular_values(to_mat(data, rows, cols).as_ref(), par)?;
    let mut evals: Vec<f64> = sv.iter().map(|s| s * s).collect();
    evals.sort_by(f64::total_cmp);
    Some(evals)
}

/// The WeightWatcher row of one weight, or `Ok(None)` when it is skipped: fewer than
/// `min_evals` eigenvalues (1-D tensors included) or more than `max_evals`. Errors on a
/// length mismatch or a non-finite entry. `par` is the parallelism of the SVD (use
/// `Par::Seq` when several weights are processed in parallel).
pub fn weight_spectrum(
    name: &str,
    data: &[f32],
    rows: usize,
    cols: usize,
    cfg: &SpectraConfig,
    par: Par,
) -> Result<Option<WeightSpectrum>, AnalysisError> {
    let fail = |problem: String| AnalysisError::Weight {
        name: name.to_string(),
        problem,
    };
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(fail(format!(
            "shape {rows} × {cols} needs {} values, got {}",
            rows.saturating_mul(cols),
            data.len()
        )));
    }
    if let Some(p) = data.iter().position(|v| !v.is_finite()) {
        return Err(fail(format!(
            "entry ({}, {}) is {}",
            p / cols,
            p % cols,
            data[p]
        )));
    }
    let (n, m) = (rows.max(cols), rows.min(cols));
    if m < cfg.min_evals.max(1) || cfg.max_evals.is_some_and(|x| m > x) {
        return Ok(None);
    }
    let evals = esd(data, rows, cols, par).ok_or_else(|| fail("SVD did not converge".into()))?;
    let norm: f64 = evals.iter().sum();
    let lmax = *evals.last().expect("m ≥ 1");
    let nonzero: Vec<f64> = evals
        .iter()
        .copied()
        .filter(|&l| l > cfg.evals_thresh)
        .collect();
    let fit = fit_power_law(&nonzero);
    let mp = fit_marchenko_pastur(&evals, n, m);
    let (rand_distance, ww_softrank) = if cfg.randomize {
        let mut shuffled = data.to_vec();
        shuffled.shuffle(&mut StdRng::seed_from_u64(cfg.seed));
        let r =
            esd(&shuffled, rows, cols, par).ok_or_else(|| fail("SVD did not converge".into()))?;
        let rmax = *r.last().expect("m ≥ 1");
        (
            Some(jensen_shannon_distance(&evals, &r)),
            (lmax > 0.0).then(|| rmax / lmax),
        )
    } else {
        (None, None)
    };
    let alpha = fit.map(|f| f.alpha);
    let warning = match alpha {
        Some(a) if a < 2.0 => "over-trained",
        Some(a) if a > 6.0 => "under-trained",
        _ => "",
    };
    Ok(Some(WeightSpectrum {
        name: name.to_string(),
        n,
        m,
        q: n as f64 / m as f64,
        num_evals: m,
        norm,
        spectral_norm: lmax,
        sv_max: lmax.sqrt(),
        sv_min: evals[0].sqrt(),
        alpha,
        xmin: fit.map(|f| f.xmin),
        xmax: lmax,
        d: fit.map(|f| f.d),
        sigma: fit.map(|f| f.sigma),
        num_pl_spikes: fit.map_or(0, |f| evals.iter().filter(|&&l| l >= f.xmin).count()),
        alpha_weighted: alpha.map(|a| a * lmax.log10()),
        log_alpha_norm: alpha.map(|a| evals.iter().map(|l| l.powf(a)).sum::<f64>().log10()),
        log_norm: norm.log10(),
        log_spectral_norm: lmax.log10(),
        stable_rank: norm / lmax,
        sigma_mp: mp.map_or(f64::NAN, |f| f.sigma),
        bulk_max: mp.map_or(f64::NAN, |f| f.bulk_max),
        num_spikes: mp.map_or(0, |f| f.num_spikes),
        mp_softrank: mp.map_or(f64::NAN, |f| f.softrank),
        rand_distance,
        ww_softrank,
        warning: warning.to_string(),
        evals,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 200 × 100 matrix of the WeightWatcher reference below (f64 formula, stored f32
    /// as a torch Linear would hold it).
    fn reference_matrix() -> Vec<f32> {
        let (n, m) = (200usize, 100usize);
        let mut w = Vec::with_capacity(n * m);
        for i in 0..n {
            for j in 0..m {
                let (fi, fj) = (i as f64, j as f64);
                let v = (0.37 * fi * fi + 1.3 * fj * fj * 0.01 + 0.11 * fi * fj).sin()
                    + 0.1 * (0.05 * fi - 0.3 * fj).cos()
                    + 3.0 * (0.1 * fi).cos() * (0.2 * fj).sin() / (n as f64).sqrt();
                w.push(v as f32);
            }
        }
        w
    }

    #[test]
    fn matches_weightwatcher_0_7_7() {
        // weightwatcher 0.7.7 on that matrix (torch.nn.Linear(100, 200), analyze(randomize=False,
        // mp_fit=True)):
        //   alpha 9.19839985106805, xmin 224.3238683812698, D 0.10035093528111172,
        //   sigma 2.7327999503560165, num_pl_spikes 9, log_norm 4.0112153205336645,
        //   log_spectral_norm 2.5909443609437597, alpha_weighted 23.832542223830682,
        //   log_alpha_norm 23.884360040202512, stable_rank 26.31909547891774,
        //   sigma_mp 0.9944646779931421, num_spikes 1, mp_softrank 0.7585270257654186
        let cfg = SpectraConfig {
            randomize: false,
            ..SpectraConfig::default()
        };
        let s = weight_spectrum("w", &reference_matrix(), 200, 100, &cfg, Par::Seq)
            .unwrap()
            .unwrap();
        let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * b.abs().max(1.0);
        assert_eq!((s.n, s.m, s.num_evals), (200, 100, 100));
        assert!(
            close(s.alpha.unwrap(), 9.19839985106805, 1e-6),
            "{}",
            s.alpha.unwrap()
        );
        assert!(close(s.xmin.unwrap(), 224.3238683812698, 1e-6));
        assert!(close(s.d.unwrap(), 0.10035093528111172, 1e-6));
        assert!(close(s.sigma.unwrap(), 2.7327999503560165, 1e-6));
        assert_eq!(s.num_pl_spikes, 9);
        assert!(close(s.log_norm, 4.0112153205336645, 1e-9));
        assert!(close(s.log_spectral_norm, 2.5909443609437597, 1e-9));
        assert!(close(s.alpha_weighted.unwrap(), 23.832542223830682, 1e-6));
        assert!(close(s.log_alpha_norm.unwrap(), 23.884360040202512, 1e-6));
        assert!(close(s.stable_rank, 26.31909547891774, 1e-9));
        assert_eq!(s.warning, "under-trained");
        // our σ_mp is fitted differently (module notes); it must land near WeightWatcher's
        assert!(
            (s.sigma_mp - 0.9944646779931421).abs() < 0.05,
            "{}",
            s.sigma_mp
        );
        assert_eq!(s.num_spikes, 1);
        assert!(
            (s.mp_softrank - 0.7585270257654186).abs() < 0.08,
            "{}",
            s.mp_softrank
        );
    }

    #[test]
    fn power_law_fit_recovers_a_pareto_sample() {
        // Quantiles of a Pareto law with α = 3, xmin = 1: x_k = (1 − u_k)^{−1/(α−1)},
        // u_k = k / n. The maximum-likelihood α on the whole sample is close to 3.
        let n = 2000;
        let x: Vec<f64> = (0..n)
            .map(|k| (1.0 - k as f64 / n as f64).powf(-0.5))
            .collect();
        let fit = fit_power_law(&x).unwrap();
        assert!((fit.alpha - 3.0).abs() < 0.1, "{fit:?}");
        assert!(fit.d < 0.05);
        assert!(fit_power_law(&[1.0]).is_none());
    }

    #[test]
    fn jensen_shannon_by_hand() {
        // p = [1, 0], q = [0, 1]: m = [½, ½], KL(p‖m) = ln 2 → JS distance √(ln 2)
        assert!(
            (jensen_shannon_distance(&[1.0, 0.0], &[0.0, 2.0]) - 2f64.ln().sqrt()).abs() < 1e-12
        );
        assert_eq!(jensen_shannon_distance(&[1.0, 2.0], &[2.0, 4.0]), 0.0);
    }

    #[test]
    fn pure_noise_has_no_spikes_and_a_small_rand_distance() {
        // A seeded Gaussian-like matrix (sum of uniforms) is its own shuffle in law.
        use rand::Rng;
        let mut rng = StdRng::seed_from_u64(1);
        let w: Vec<f32> = (0..400 * 100)
            .map(|_| (0..4).map(|_| rng.random::<f32>() - 0.5).sum())
            .collect();
        let s = weight_spectrum("noise", &w, 400, 100, &SpectraConfig::default(), Par::Seq)
            .unwrap()
            .unwrap();
        assert_eq!(s.num_spikes, 0);
        assert!((s.sigma_mp - 1.0).abs() < 0.05, "{}", s.sigma_mp);
        assert!(s.rand_distance.unwrap() < 0.05, "{:?}", s.rand_distance);
        // a rank-one spike on top is found and separates the shuffled spectrum
        let spiked: Vec<f32> = w
            .iter()
            .enumerate()
            .map(|(p, v)| v + 0.5 * ((p / 100) as f32 * 0.05).cos())
            .collect();
        let s = weight_spectrum(
            "spiked",
            &spiked,
            400,
            100,
            &SpectraConfig::default(),
            Par::Seq,
        )
        .unwrap()
        .unwrap();
        assert!(s.num_spikes >= 1);
        assert!(s.mp_softrank < 0.5, "{}", s.mp_softrank);
    }

    #[test]
    fn skips_and_errors() {
        let cfg = SpectraConfig::default();
        // 1-D and too few eigenvalues → skipped
        assert_eq!(
            weight_spectrum("b", &[1.0; 10], 1, 10, &cfg, Par::Seq),
            Ok(None)
        );
        assert_eq!(
            weight_spectrum("w", &[1.0; 49 * 60], 60, 49, &cfg, Par::Seq),
            Ok(None)
        );
        let err = weight_spectrum("w", &[1.0; 10], 3, 4, &cfg, Par::Seq).unwrap_err();
        assert!(err.to_string().contains("needs 12 values"), "{err}");
        let mut d = vec![1.0f32; 60 * 60];
        d[61] = f32::NAN;
        let err = weight_spectrum("w", &d, 60, 60, &cfg, Par::Seq).unwrap_err();
        assert!(err.to_string().contains("(1, 1)"), "{err}");
    }
}
