//! `sinkscope train RECIPE [--out DIR] [--resume] [--set key=value]...`

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;
use clap::Args;

use crate::hooks::HookRunner;
use crate::train::recipe::{DeviceKind, Recipe, Run};
use crate::train::{train, TrainOutcome};

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
    /// Train only these runs of a sweep (repeatable), e.g. --only rope.
    #[arg(long = "only", value_name = "RUN")]
    pub only: Vec<String>,
}

/// Trains one run on backend `B` with the recipe's hooks logging into `out`.
fn train_on<B: AutodiffBackend>(
    run: &Run,
    out: &Path,
    resume: bool,
    device: B::Device,
) -> anyhow::Result<TrainOutcome> {
    let mut hooks = HookRunner::<B>::new(&run.recipe.hooks, &run.recipe, out, &device)?;
    eprintln!(
        "logs: {} and TensorBoard (view with: tensorboard --logdir {})",
        out.join(crate::log::run_log::METRICS_FILE).display(),
        hooks.tb_dir().display()
    );
    Ok(train::<B>(&run.recipe, out, resume, &device, &mut hooks)?)
}

fn run_one(run: &Run, out: &Path, resume: bool) -> anyhow::Result<TrainOutcome> {
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("{}: cannot create output folder: {e}", out.display()))?;
    match run.recipe.device {
        DeviceKind::Cpu => train_on::<Autodiff<Flex>>(run, out, resume, Default::default()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda(index) => {
            crate::train::device::check(run.recipe.device).map_err(anyhow::Error::msg)?;
            let device = burn::backend::cuda::CudaDevice::new(index);
            train_on::<Autodiff<burn::backend::Cuda>>(run, out, resume, device)
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
        let o = run_one(run, &out, args.resume)?;
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
