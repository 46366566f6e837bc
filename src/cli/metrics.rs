//! `sinkscope metrics FILE`: every attention metric of one sequence's maps, as a per-layer
//! table with the frame verdict, and optionally the full report as JSON.

use std::path::PathBuf;

use anyhow::Context;

use crate::analysis::{analyze, table, AnalysisConfig, TopologyMode};
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
    cfg.validate()?;
    Ok(cfg)
}

/// Runs `sinkscope metrics`.
pub fn run(args: &MetricsArgs) -> anyhow::Result<()> {
    let cfg = config_of(args)?;
    let (maps, hidden) = read_attention_file(&args.file)?;
    let report = analyze(&maps, hidden.as_ref(), None, &cfg);
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
