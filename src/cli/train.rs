//! `sinkscope train RECIPE [--out DIR] [--resume] [--set key=value]...`

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use clap::Args;

use crate::train::recipe::{DeviceKind, Recipe, Run};
use crate::train::{train, NoEvents, TrainOutcome};

/// Arguments of `sinkscope train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Recipe file (TOML), e.g. recipes/quick.toml.
    pub recipe: PathBuf,
    /// Output folder (default: the recipe's `out`, else runs/<name>). A sweep puts
    /// one sub-folder per run here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue each run from its latest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Override a recipe field, e.g. --set train.steps=500 --set model.position.kind=alibi.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

fn run_one(run: &Run, out: PathBuf, resume: bool) -> anyhow::Result<TrainOutcome> {
    let recipe = &run.recipe;
    std::fs::create_dir_all(&out)
        .map_err(|e| anyhow::anyhow!("{}: cannot create output folder: {e}", out.display()))?;
    let outcome = match recipe.device {
        DeviceKind::Cpu => {
            train::<Autodiff<Flex>>(recipe, &out, resume, &Default::default(), &mut NoEvents)?
        }
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => train::<Autodiff<burn::backend::Cuda>>(
            recipe,
            &out,
            resume,
            &Default::default(),
            &mut NoEvents,
        )?,
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => anyhow::bail!("device = \"cuda\" needs a build with `--features cuda`"),
    };
    Ok(outcome)
}

/// Trains every run of the recipe, one after another.
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let runs = Recipe::load(&args.recipe, &args.set)?;
    for run in &runs {
        let base = args.out.clone().unwrap_or_else(|| run.recipe.out_dir());
        let out = match &run.name {
            Some(name) => base.join(name),
            None => base,
        };
        if let Some(name) = &run.name {
            eprintln!(
                "== run {name} ({} of {})",
                runs.iter().position(|r| r.name == run.name).unwrap_or(0) + 1,
                runs.len()
            );
        }
        let o = run_one(run, out.clone(), args.resume)?;
        let fmt = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into());
        println!(
            "{}: step {}{}, train loss {}, held-out loss {}, {:.0} tokens/s",
            out.display(),
            o.step,
            if o.halted { " (halted)" } else { "" },
            fmt(o.train_loss),
            fmt(o.heldout_loss),
            o.tokens_per_sec
        );
        if let Some(c) = &o.last_checkpoint {
            println!("  checkpoint: {}", c.display());
        }
    }
    Ok(())
}
