//! `sinkscope topo FILE.npy`: persistence diagrams of a distance matrix or a point cloud,
//! printed as `{"diagrams": {"0": [[birth, death], …], …}}` (`null` for an infinite death).

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::analysis::topology::{
    estimated_simplices, too_many_simplices, DEFAULT_MAX_SIMPLICES, MAX_DIM,
};
use crate::analysis::{rips_persistence, Diagrams, RipsInput};
use crate::io::read_npy;

/// Arguments of `sinkscope topo`.
#[derive(clap::Args, Debug, Clone)]
pub struct TopoArgs {
    /// A square distance matrix [n, n] (symmetric, zero diagonal), or with `--points` a
    /// point cloud [n, d]; float32 or float64 `.npy`.
    pub file: PathBuf,
    /// Read the file as a Euclidean point cloud instead of a distance matrix.
    #[arg(long, conflicts_with = "paper")]
    pub points: bool,
    /// Read the matrix as ripser.py does when its diagonal is nonzero: upper triangle as
    /// edge lengths, diagonal as birth times (the paper's pipeline).
    #[arg(long)]
    pub paper: bool,
    /// Highest homology dimension.
    #[arg(long, default_value_t = 1)]
    pub maxdim: usize,
    /// Largest filtration value (default: the enclosing radius, as Ripser).
    #[arg(long, value_name = "R")]
    pub threshold: Option<f64>,
    /// Refuse, without --threshold, a filtration estimated to hold more simplices than
    /// this (such a computation can run for hours).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SIMPLICES)]
    pub max_simplices: f64,
}

#[derive(Serialize)]
struct Output {
    diagrams: Diagrams,
}

/// The persistence input the arguments describe.
pub fn input_of(args: &TopoArgs) -> anyhow::Result<RipsInput> {
    let array = read_npy(&args.file)?;
    let shape = array.shape.clone();
    let data = array.into_f64();
    let what = |e| anyhow::anyhow!("{}: {e}", args.file.display());
    match (shape.as_slice(), args.points) {
        (&[n, d], true) => RipsInput::point_cloud(n, d, &data).map_err(what),
        (&[n, m], false) if n == m => if args.paper {
            RipsInput::ripser_py_matrix(n, &data)
        } else {
            RipsInput::distance_matrix(n, &data)
        }
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}{}",
                args.file.display(),
                if args.paper { "" } else { " (use --paper for ripser.py's reading of such a matrix)" }
            )
        }),
        (&[n, m], false) => bail!(
            "{}: a distance matrix must be square, this one is {n} × {m} (use --points for a point cloud)",
            args.file.display()
        ),
        (s, _) => bail!("{}: expected a 2-D array, got shape {s:?}", args.file.display()),
    }
}

/// Runs `sinkscope topo`.
pub fn run(args: &TopoArgs) -> anyhow::Result<()> {
    if args.maxdim > MAX_DIM {
        bail!("--maxdim {} exceeds the supported {MAX_DIM}", args.maxdim);
    }
    if let Some(t) = args.threshold {
        if !t.is_finite() || t < 0.0 {
            bail!("--threshold must be finite and non-negative, got {t}");
        }
    }
    let input = input_of(args).context("reading the persistence input")?;
    let estimate = estimated_simplices(&input, args.maxdim, args.threshold);
    let refusal = too_many_simplices(
        input.len(),
        args.maxdim,
        estimate,
        args.threshold,
        args.max_simplices,
    );
    if let Some(why) = refusal {
        bail!(
            "{}: {why}; pass --threshold R to cut the filtration (or raise --max-simplices)",
            args.file.display()
        );
    }
    let bar = spinner(format!(
        "persistence of {} points, about {estimate:.2e} simplices",
        input.len()
    ));
    let diagrams = rips_persistence(&input, args.maxdim, args.threshold);
    bar.finish_and_clear();
    println!("{}", serde_json::to_string(&Output { diagrams })?);
    Ok(())
}

/// A spinner with the elapsed time and `message` on stderr, for a long persistence
/// computation (`topo`, `metrics`); `finish_and_clear` removes it.
pub(crate) fn spinner(message: String) -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::npy::write_npy_f32;

    fn args(file: PathBuf) -> TopoArgs {
        TopoArgs {
            file,
            points: false,
            paper: false,
            maxdim: 1,
            threshold: None,
            max_simplices: 1e8,
        }
    }

    #[test]
    fn matrices_and_points() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.npy");
        // square of side 1 as points → H1 bar [1, √2)
        write_npy_f32(&p, &[4, 2], &[0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0]).unwrap();
        let d = rips_persistence(
            &input_of(&TopoArgs {
                points: true,
                ..args(p.clone())
            })
            .unwrap(),
            1,
            None,
        );
        assert_eq!(d.bar_count(1), 1);
        // the same file as a distance matrix is not square
        let e = input_of(&args(p.clone())).unwrap_err().to_string();
        assert!(e.contains("must be square"), "{e}");
        // an asymmetric matrix points to --paper
        write_npy_f32(&p, &[2, 2], &[0.0, 1.0, 2.0, 0.0]).unwrap();
        let e = input_of(&args(p.clone())).unwrap_err().to_string();
        assert!(e.contains("--paper") && e.contains("d.npy"), "{e}");
        assert!(input_of(&TopoArgs {
            paper: true,
            ..args(p.clone())
        })
        .is_ok());
        assert!(run(&TopoArgs {
            maxdim: 9,
            ..args(p)
        })
        .is_err());
    }
}
