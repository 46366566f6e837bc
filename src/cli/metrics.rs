//! `sinkscope metrics FILE`: every attention metric of one sequence's maps, as a per-layer
//! table with the frame verdict, and optionally the full report as JSON.

use std::path::PathBuf;

use anyhow::{bail, Context};
use rayon::prelude::*;

use crate::analysis::topology::{
    layer_simplex_estimate, too_many_simplices, DEFAULT_MAX_SIMPLICES,
};
use crate::analysis::{analyze, table, AnalysisConfig, AttentionMaps, TopologyMode};
use crate::cli::topo::spinner;
use crate::io::read_attention_file;

/// Topology mode as a command-line value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// D = 1 − (Ā + Āᵀ)/2, zero diagonal (default).
    Symmetric,
    /// ripser.py on 1 − Ā, as the published pipeline (see docs/METRICS.md).
    Paper,
}

/// Arguments of `sinkscope metrics`.
#[derive(clap::Args, Debug, Clone)]
pub struct MetricsArgs {
    /// Attention maps of one sequence: `.npy` (float32/float64, `[L,H,T,T]`, `[H,T,T]` or
    /// `[T,T]`) or `.safetensors` with `attentions` and optionally `hidden_states` [L+1,T,d].
    pub file: PathBuf,
    /// Analyze as causal (decoder) maps instead of detecting it.
    #[arg(long, conflicts_with = "bidirectional")]
    pub causal: bool,
    /// Analyze as bidirectional (encoder) maps instead of detecting it.
    #[arg(long)]
    pub bidirectional: bool,
    /// Write the full report as JSON to OUT (`-` for standard output).
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    /// Analysis settings as a TOML file (keys of `AnalysisConfig`, see docs/METRICS.md).
    #[arg(long, value_name = "TOML")]
    pub config: Option<PathBuf>,
    /// Distance used for persistent homology.
    #[arg(long, value_enum)]
    pub topology_mode: Option<ModeArg>,
    /// Downsample to at most N tokens (evenly spaced) before persistence.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Skip the attention spectra (the slowest part for long sequences).
    #[arg(long)]
    pub no_spectra: bool,
    /// Largest filtration value of the persistence (default: the enclosing radius;
    /// the paper's pipeline takes the whole filtration).
    #[arg(long, value_name = "R")]
    pub threshold: Option<f64>,
    /// Refuse, without a threshold, a layer whose filtration is estimated to hold more
    /// simplices than this (such a computation can run for hours); as `topo`.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SIMPLICES)]
    pub max_simplices: f64,
}

/// The configuration these arguments describe.
pub fn config_of(args: &MetricsArgs) -> anyhow::Result<AnalysisConfig> {
    let mut cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            AnalysisConfig::from_toml(&text).with_context(|| format!("in {}", p.display()))?
        }
        None => AnalysisConfig::default(),
    };
    if args.causal {
        cfg.causal = Some(true);
    }
    if args.bidirectional {
        cfg.causal = Some(false);
    }
    if let Some(m) = args.topology_mode {
        cfg.topology.mode = match m {
            ModeArg::Symmetric => TopologyMode::Symmetric,
            ModeArg::Paper => TopologyMode::Paper,
        };
    }
    if args.max_tokens.is_some() {
        cfg.topology.max_tokens = args.max_tokens;
    }
    if args.no_spectra {
        cfg.spectra = false;
    }
    if args.threshold.is_some() {
        cfg.topology.threshold = args.threshold;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Runs `sinkscope metrics`.
pub fn run(args: &MetricsArgs) -> anyhow::Result<()> {
    let cfg = config_of(args)?;
    let (maps, hidden) = read_attention_file(&args.file)?;
    let bar = topology_estimate(args, &maps, &cfg)?.map(|(layer, points, estimate)| {
        spinner(format!(
            "metrics of {} layers; persistence of {points} points, up to about \
             {estimate:.2e} simplices (layer {layer})",
            maps.layers()
        ))
    });
    let report = analyze(&maps, hidden.as_ref(), None, &cfg);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(out) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        if out.as_os_str() == "-" {
            println!("{json}");
            return Ok(());
        }
        std::fs::write(out, json).with_context(|| format!("cannot write {}", out.display()))?;
    }
    print!("{}", table::render_report(&report));
    Ok(())
}

/// The layer whose persistence is estimated to be the largest, its points and simplex
/// estimate (`None` with topology off), refused as `topo` refuses when it exceeds
/// `--max-simplices` without a threshold.
fn topology_estimate(
    args: &MetricsArgs,
    maps: &AttentionMaps,
    cfg: &AnalysisConfig,
) -> anyhow::Result<Option<(usize, usize, f64)>> {
    if !cfg.topology.enabled || maps.layers() == 0 {
        return Ok(None);
    }
    let t = maps.seq_len();
    let (layer, points, estimate) = (0..maps.layers())
        .into_par_iter()
        .map(|l| {
            let (points, estimate) = layer_simplex_estimate(&maps.head_mean(l), t, &cfg.topology);
            (l, points, estimate)
        })
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .unwrap_or_default();
    let topo = &cfg.topology;
    let refusal = too_many_simplices(
        points,
        topo.maxdim,
        estimate,
        topo.threshold,
        args.max_simplices,
    );
    if let Some(why) = refusal {
        bail!(
            "{}: layer {layer}: {why}; pass --threshold R or --max-tokens N to cut the \
             filtration (or raise --max-simplices)",
            args.file.display()
        );
    }
    Ok(Some((layer, points, estimate)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::npy::write_npy_f32;

    fn args(file: PathBuf) -> MetricsArgs {
        MetricsArgs {
            file,
            causal: false,
            bidirectional: false,
            json: None,
            config: None,
            topology_mode: None,
            max_tokens: None,
            no_spectra: false,
            threshold: None,
            max_simplices: DEFAULT_MAX_SIMPLICES,
        }
    }

    #[test]
    fn writes_the_issue_json() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("a.npy");
        // one layer, two causal heads over T = 3
        let head = [1.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.2, 0.3, 0.5];
        write_npy_f32(&input, &[1, 2, 3, 3], &head.repeat(2)).unwrap();
        let out = dir.path().join("r.json");
        let a = MetricsArgs {
            json: Some(out.clone()),
            ..args(input)
        };
        run(&a).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
        assert_eq!(v["layers"][0]["layer"], 0);
        assert!(v["layers"][0]["fiedler"]["0.001"].is_number());
        assert!(v["layers"][0]["betti"]["1"].is_u64());
        assert!(v["frame_type"].is_string());
    }

    /// The paper's pipeline takes the whole filtration of every token: a long sequence
    /// is refused before the computation with the estimate and the ways out, as `topo`
    /// refuses; a threshold or fewer tokens let it run.
    #[test]
    fn a_filtration_too_large_is_refused_with_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("long.npy");
        let t = 200;
        let uniform_causal: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j <= i { 1.0 / (i + 1) as f32 } else { 0.0 }))
            .collect();
        write_npy_f32(&input, &[1, 1, t, t], &uniform_causal).unwrap();
        let paper = |max_simplices: f64| MetricsArgs {
            topology_mode: Some(ModeArg::Paper),
            no_spectra: true,
            max_simplices,
            ..args(input.clone())
        };
        // C(200, 3) + C(200, 2) + 200 simplices up to dimension 2 (maxdim 1 + 1).
        let complete = 1_313_400.0 + 19_900.0 + 200.0;
        let cfg = config_of(&paper(1e6)).unwrap();
        let (maps, _) = read_attention_file(&input).unwrap();
        let e = topology_estimate(&paper(1e6), &maps, &cfg)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}: layer 0: 200 points", input.display()))
                && e.contains(&format!("about {complete:.2e} simplices"))
                && e.contains("--threshold R or --max-tokens N"),
            "{e}"
        );
        assert!(run(&paper(1e6)).is_err());
        let (_, points, estimate) = topology_estimate(&paper(2e6), &maps, &cfg)
            .unwrap()
            .unwrap();
        assert_eq!(points, 200);
        assert!((estimate - complete).abs() < 1.0, "{estimate}");
        for fix in [
            MetricsArgs {
                threshold: Some(0.5),
                ..paper(1e6)
            },
            MetricsArgs {
                max_tokens: Some(30),
                ..paper(1e6)
            },
        ] {
            let cfg = config_of(&fix).unwrap();
            assert!(topology_estimate(&fix, &maps, &cfg).is_ok());
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("bad.npy");
        write_npy_f32(&input, &[2, 2], &[0.9, 0.0, 0.5, 0.5]).unwrap();
        let e = run(&args(input.clone())).unwrap_err().to_string();
        assert!(e.contains("bad.npy") && e.contains("row 0"), "{e}");
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, "sink_epsilon = 0.3\nsink_epsilom = 1").unwrap();
        let a = MetricsArgs {
            config: Some(cfg),
            ..args(input)
        };
        let e = format!("{:#}", run(&a).unwrap_err());
        assert!(e.contains("sink_epsilom"), "{e}");
    }
}
