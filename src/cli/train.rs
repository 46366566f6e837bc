//! `sinkscope train RECIPE [--out DIR] [--resume] [--set key=value]...`

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;
use clap::Args;

use crate::hooks::HookRunner;
use crate::train::recipe::{DeviceKind, Recipe, Run};
use crate::train::{train_on_devices, Resume, TrainOutcome};

/// Arguments of `sinkscope train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Recipe file (TOML), e.g. recipes/quick.toml.
    pub recipe: PathBuf,
    /// Output folder (default: the recipe's `out`, else runs/<name>). A sweep puts
    /// one sub-folder per run here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue each run from its latest intact checkpoint (same recipe).
    #[arg(long)]
    pub resume: bool,
    /// With --resume: recipe fields (or tables) allowed to differ from the
    /// checkpoint's, e.g. --allow-change train.steps,train.lr; recorded in the run's
    /// history.jsonl. Any other difference is refused.
    #[arg(
        long,
        value_delimiter = ',',
        requires = "resume",
        value_name = "FIELD,..."
    )]
    pub allow_change: Vec<String>,
    /// Override a recipe field, e.g. --set train.steps=500 --set model.position.kind=alibi.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Train only these runs of a sweep (repeatable), e.g. --only rope.
    #[arg(long = "only", value_name = "RUN")]
    pub only: Vec<String>,
}

/// Trains one run on backend `B` with the recipe's hooks logging into `out`.
fn train_on<B: AutodiffBackend>(
    run: &Run,
    sweep: &[Recipe],
    out: &Path,
    args: &TrainArgs,
    devices: Vec<B::Device>,
) -> anyhow::Result<TrainOutcome> {
    let mut hooks = HookRunner::<B>::new(&run.recipe.hooks, &run.recipe, out, &devices[0])?;
    hooks.set_sweep(sweep);
    eprintln!(
        "logs: {} and TensorBoard (view with: tensorboard --logdir {})",
        out.join(crate::log::run_log::METRICS_FILE).display(),
        hooks.tb_dir().display()
    );
    let resume = if args.resume {
        Resume::Latest {
            allow_change: args.allow_change.clone(),
        }
    } else {
        Resume::No
    };
    let outcome = train_on_devices::<B>(&run.recipe, out, resume, &devices, &mut hooks);
    if outcome.is_err() {
        // Best effort: the training error is the one to report.
        let _ = hooks.record_failure();
    }
    Ok(outcome?)
}

fn run_one(
    run: &Run,
    sweep: &[Recipe],
    out: &Path,
    args: &TrainArgs,
) -> anyhow::Result<TrainOutcome> {
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("{}: cannot create output folder: {e}", out.display()))?;
    let _lock = crate::train::lock::RunLock::acquire(out)?;
    let kinds = run.recipe.devices();
    match kinds[0] {
        DeviceKind::Cpu => {
            let devices = vec![Default::default(); kinds.len()];
            train_on::<Autodiff<Flex>>(run, sweep, out, args, devices)
        }
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda(_) => {
            crate::train::device::check(&kinds).map_err(anyhow::Error::msg)?;
            let mut devices = Vec::new();
            for kind in kinds {
                let DeviceKind::Cuda(index) = kind else {
                    anyhow::bail!("devices: \"cpu\" mixed with CUDA devices");
                };
                devices.push(burn::backend::cuda::CudaDevice::new(index));
            }
            train_on::<Autodiff<burn::backend::Cuda>>(run, sweep, out, args, devices)
        }
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda(_) => {
            anyhow::bail!("device = \"cuda\" needs a build with `--features cuda`")
        }
    }
}

/// Trains every run of the recipe, one after another.
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let mut runs = Recipe::load(&args.recipe, &args.set)?;
    // Every run of the sweep, also those `--only` leaves out, so that the HParams
    // records of all runs name the same settings.
    let sweep: Vec<Recipe> = runs.iter().map(|r| r.recipe.clone()).collect();
    if !args.only.is_empty() {
        let names: Vec<&str> = runs.iter().filter_map(|r| r.name.as_deref()).collect();
        if let Some(unknown) = args.only.iter().find(|o| !names.contains(&o.as_str())) {
            anyhow::bail!(
                "{}: --only {unknown}: no such run (the recipe's runs: {})",
                args.recipe.display(),
                if names.is_empty() {
                    "none, it has no sweep".to_string()
                } else {
                    names.join(", ")
                }
            );
        }
        runs.retain(|r| r.name.as_ref().is_some_and(|n| args.only.contains(n)));
    }
    for (i, run) in runs.iter().enumerate() {
        let base = args.out.clone().unwrap_or_else(|| run.recipe.out_dir());
        let out = match &run.name {
            Some(name) => {
                eprintln!("== run {name} ({} of {})", i + 1, runs.len());
                base.join(name)
            }
            None => base,
        };
        let o = run_one(run, &sweep, &out, args)?;
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
