//! What the analysis computes and with which parameters.
//!
//! `AnalysisConfig::default()` is the documented default of `docs/METRICS.md`. Recipes embed
//! it as TOML, so every struct here denies unknown keys: a misspelt `sink_epsilon` is an
//! error naming the key, not a silently ignored setting.

use serde::{Deserialize, Serialize};

use super::error::AnalysisError;
use super::topology::{TopologyMode, MAX_DIM};

/// Thresholds τ of the attention graph `B = [Ā > τ]`, as in the paper's `fiedler.ipynb`.
pub const DEFAULT_GRAPH_THRESHOLDS: [f64; 7] = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2];

/// Default of [`AnalysisConfig::spectra_full_max_tokens`].
pub const DEFAULT_SPECTRA_FULL_MAX_TOKENS: usize = 256;

/// Default of [`TopologyConfig::max_tokens`]: Rips persistence in dimension 1 grows with
/// the cube of the tokens (1 s a layer at 1,024 tokens, 8 at 2,048), so longer maps are
/// downsampled to this many evenly spaced tokens, with a note. The paper used 30.
pub const DEFAULT_TOPOLOGY_MAX_TOKENS: usize = 512;

/// Parameters of [`analyze`](super::analyze).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Causal (decoder) or bidirectional maps; `None` detects it from the maps (all
    /// weights above the diagonal zero ⇒ causal).
    pub causal: Option<bool>,
    /// ε of the Gu et al. sink rate: a head sinks on the first token when α_0 > ε.
    pub sink_epsilon: f64,
    /// Percentile q of the column mass defining the sink set S = {j : c_j ≥ P_q(c)}.
    pub sink_percentile: f64,
    /// A head is "specialized" when its top key's score α reaches this value.
    pub specialized_mass: f64,
    /// Thresholds τ of the attention graph.
    pub graph_thresholds: Vec<f64>,
    /// Compute the attention-graph metrics (Fiedler value, centralization, …).
    pub graph: bool,
    /// Compute the attention spectra (eigenvalues, singular values, MP divergence).
    pub spectra: bool,
    /// Compute the spectra of every head, not only of the head mean.
    pub spectra_per_head: bool,
    /// Longest map whose whole spectrum is decomposed (O(T³) per map). Beyond it the
    /// singular gap and stable rank come from the top singular values by Lanczos, and the
    /// whole-spectrum metrics are computed on the leading block of this many tokens
    /// (`full_spectrum_tokens` in the output).
    pub spectra_full_max_tokens: usize,
    /// Emit one TensorBoard scalar per head (`sink/first_token_mass/layer_03/head_07`).
    pub per_head_scalars: bool,
    /// Persistent homology of the attention graph.
    pub topology: TopologyConfig,
    /// The frame-type rule.
    pub frame: FrameConfig,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            causal: None,
            sink_epsilon: 0.3,
            sink_percentile: 90.0,
            specialized_mass: 0.9,
            graph_thresholds: DEFAULT_GRAPH_THRESHOLDS.to_vec(),
            graph: true,
            spectra: true,
            spectra_per_head: true,
            spectra_full_max_tokens: DEFAULT_SPECTRA_FULL_MAX_TOKENS,
            per_head_scalars: true,
            topology: TopologyConfig::default(),
            frame: FrameConfig::default(),
        }
    }
}

/// Persistence on the head-mean attention map of each layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopologyConfig {
    /// Compute it at all.
    pub enabled: bool,
    /// `symmetric` (D = 1 − (Ā + Āᵀ)/2) or `paper` (ripser.py on 1 − Ā).
    pub mode: TopologyMode,
    /// Highest homology dimension (1 by default, at most 4; 2 is already costly).
    pub maxdim: usize,
    /// Downsample to at most this many tokens by evenly spaced indices (the paper used
    /// 30; default [`DEFAULT_TOPOLOGY_MAX_TOKENS`]); `None` (`max_tokens = "all"` in
    /// TOML) keeps every token.
    #[serde(with = "tokens_or_all")]
    pub max_tokens: Option<usize>,
    /// Radii r at which the Betti numbers β_k(r) are reported.
    pub radii: Vec<f64>,
    /// Largest filtration value; `None` is Ripser's default (the enclosing radius).
    pub threshold: Option<f64>,
    /// Keep the full diagrams in the report (they can be large).
    pub keep_diagrams: bool,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            enabled: true,
            mode: TopologyMode::Symmetric,
            maxdim: 1,
            max_tokens: Some(DEFAULT_TOPOLOGY_MAX_TOKENS),
            radii: vec![0.5, 0.9],
            threshold: None,
            keep_diagrams: false,
        }
    }
}

/// Parameters of the frame-type rule (see `frame.rs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrameConfig {
    /// A key is a sink of a head when its score α_j is at least this many times the
    /// uniform-attention score of the same position (on top of α_j > ε).
    pub baseline_factor: f64,
    /// Below this share of heads with a sink the verdict is `none`.
    pub min_head_share: f64,
    /// `centralized` when one position holds at least this share of the sink heads.
    pub centralized_share: f64,
    /// Fraction of the sequence counted as its start or its end.
    pub end_fraction: f64,
    /// `bidirectional` when both ends each hold at least this share of the sink heads.
    pub end_share: f64,
}

impl Default for FrameConfig {
    fn default() -> Self {
        FrameConfig {
            baseline_factor: 2.0,
            min_head_share: 0.1,
            centralized_share: 0.6,
            end_fraction: 0.1,
            end_share: 0.2,
        }
    }
}

/// Parameters of the WeightWatcher-style weight spectra.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpectraConfig {
    /// Skip matrices with fewer eigenvalues (WeightWatcher's `min_evals`, 50).
    pub min_evals: usize,
    /// Skip matrices with more eigenvalues; `None` for no limit (WeightWatcher: 10 000).
    pub max_evals: Option<usize>,
    /// Eigenvalues at or below this are dropped before the power-law fit (1e-5).
    pub evals_thresh: f64,
    /// Compute `rand_distance` (one more SVD of the shuffled matrix).
    pub randomize: bool,
    /// Seed of the shuffle.
    pub seed: u64,
}

impl Default for SpectraConfig {
    fn default() -> Self {
        SpectraConfig {
            min_evals: 50,
            max_evals: None,
            evals_thresh: 1e-5,
            randomize: true,
            seed: 0x5eed,
        }
    }
}

fn check(ok: bool, msg: impl FnOnce() -> String) -> Result<(), AnalysisError> {
    if ok {
        Ok(())
    } else {
        Err(AnalysisError::Config(msg()))
    }
}

impl AnalysisConfig {
    /// Parses a TOML fragment (as embedded in a recipe) and validates it.
    pub fn from_toml(text: &str) -> Result<Self, AnalysisError> {
        let cfg: AnalysisConfig =
            toml::from_str(text).map_err(|e| AnalysisError::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every value against its allowed range.
    pub fn validate(&self) -> Result<(), AnalysisError> {
        check(self.sink_epsilon > 0.0 && self.sink_epsilon < 1.0, || {
            format!("sink_epsilon = {} must lie in (0, 1)", self.sink_epsilon)
        })?;
        check((0.0..=100.0).contains(&self.sink_percentile), || {
            format!(
                "sink_percentile = {} must lie in [0, 100]",
                self.sink_percentile
            )
        })?;
        check(
            self.specialized_mass > 0.0 && self.specialized_mass <= 1.0,
            || {
                format!(
                    "specialized_mass = {} must lie in (0, 1]",
                    self.specialized_mass
                )
            },
        )?;
        for &tau in &self.graph_thresholds {
            check((0.0..1.0).contains(&tau), || {
                format!("graph threshold {tau} must lie in [0, 1)")
            })?;
        }
        check(self.spectra_full_max_tokens >= 2, || {
            format!(
                "spectra_full_max_tokens = {} must be at least 2",
                self.spectra_full_max_tokens
            )
        })?;
        let t = &self.topology;
        check(t.maxdim <= MAX_DIM, || {
            format!("topology.maxdim = {} exceeds {MAX_DIM}", t.maxdim)
        })?;
        check(t.max_tokens.is_none_or(|m| m >= 2), || {
            "topology.max_tokens must be at least 2".to_string()
        })?;
        check(t.radii.iter().all(|r| r.is_finite()), || {
            "topology.radii must be finite".to_string()
        })?;
        check(
            t.threshold.is_none_or(|r| r.is_finite() && r >= 0.0),
            || "topology.threshold must be finite and non-negative".to_string(),
        )?;
        self.frame.validate()
    }
}

impl FrameConfig {
    /// Checks every value against its allowed range.
    pub fn validate(&self) -> Result<(), AnalysisError> {
        check(self.baseline_factor >= 1.0, || {
            format!(
                "frame.baseline_factor = {} must be at least 1",
                self.baseline_factor
            )
        })?;
        for (name, v) in [
            ("min_head_share", self.min_head_share),
            ("centralized_share", self.centralized_share),
            ("end_fraction", self.end_fraction),
            ("end_share", self.end_share),
        ] {
            check(v > 0.0 && v <= 1.0, || {
                format!("frame.{name} = {v} must lie in (0, 1]")
            })?;
        }
        Ok(())
    }
}

/// A token count or `"all"` (no limit), for settings whose default is a limit: TOML
/// has no null, so "no limit" needs a word.
mod tokens_or_all {
    use serde::{Deserialize, Deserializer, Serializer};

    /// `None` as `"all"`, a count as itself.
    pub(super) fn serialize<S: Serializer>(v: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_u64(*n as u64),
            None => s.serialize_str("all"),
        }
    }

    /// A non-negative integer or the string `"all"`.
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(usize),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(Some(n)),
            Raw::Word(w) if w == "all" => Ok(None),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "expected a token count or \"all\", found {w:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = AnalysisConfig::default();
        assert_eq!(c.sink_epsilon, 0.3);
        assert_eq!(c.sink_percentile, 90.0);
        assert_eq!(c.graph_thresholds, DEFAULT_GRAPH_THRESHOLDS.to_vec());
        assert_eq!(c.topology.maxdim, 1);
        assert_eq!(c.topology.mode, TopologyMode::Symmetric);
        assert!(c.validate().is_ok());
        assert_eq!(SpectraConfig::default().min_evals, 50);
    }

    #[test]
    fn toml_partial_and_unknown_keys() {
        let c = AnalysisConfig::from_toml(
            "sink_epsilon = 0.25\ncausal = true\n[topology]\nmode = \"paper\"\nmax_tokens = 30\n",
        )
        .unwrap();
        assert_eq!(c.sink_epsilon, 0.25);
        assert_eq!(c.causal, Some(true));
        assert_eq!(c.topology.mode, TopologyMode::Paper);
        assert_eq!(c.topology.max_tokens, Some(30));
        // the default is a limit; "all" lifts it, any other word is an error naming it
        assert_eq!(
            AnalysisConfig::default().topology.max_tokens,
            Some(DEFAULT_TOPOLOGY_MAX_TOKENS)
        );
        let all = AnalysisConfig::from_toml("[topology]\nmax_tokens = \"all\"\n").unwrap();
        assert_eq!(all.topology.max_tokens, None);
        let e = AnalysisConfig::from_toml("[topology]\nmax_tokens = \"every\"\n").unwrap_err();
        assert!(e.to_string().contains("\"every\""), "{e}");
        assert_eq!(c.topology.maxdim, 1);
        let err = AnalysisConfig::from_toml("sink_epsilom = 0.3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink_epsilom"), "{err}");
        let err = AnalysisConfig::from_toml("[topology]\nmaxdims = 2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("maxdims"), "{err}");
        let err = AnalysisConfig::from_toml("[topology]\nmode = \"sym\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sym"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        assert!(AnalysisConfig::from_toml("sink_epsilon = 1.5").is_err());
        assert!(AnalysisConfig::from_toml("graph_thresholds = [0.1, 2.0]").is_err());
        assert!(AnalysisConfig::from_toml("[topology]\nmaxdim = 9").is_err());
        assert!(AnalysisConfig::from_toml("spectra_full_max_tokens = 1").is_err());
        assert!(AnalysisConfig::from_toml("[frame]\nmin_head_share = 0").is_err());
    }

    #[test]
    fn round_trips_through_toml() {
        let c = AnalysisConfig::default();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(AnalysisConfig::from_toml(&text).unwrap(), c);
    }
}
