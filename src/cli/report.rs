//! `sinkscope report RUN_DIR | SWEEP_DIR [--out DIR] [--layer N] [--weight NAME]`

use std::path::PathBuf;

use clap::Args;

use crate::report::{write_report, CollectOptions, ReportOptions};

/// Arguments of `sinkscope report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run folder (from `sinkscope train`) or a sweep folder holding one run per
    /// sub-folder.
    pub dir: PathBuf,
    /// Where report.md, report.html and plots/ go (default: DIR itself).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Layer of the persistence diagram and attention heatmap (default: the last).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Weight whose spectrum is drawn, as a parameter path without `.weight`
    /// (default: the last block's `attn.q`, e.g. blocks.3.attn.q).
    #[arg(long)]
    pub weight: Option<String>,
}

/// Writes the report and prints where it went.
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let opts = ReportOptions {
        out: args.out.clone(),
        collect: CollectOptions {
            layer: args.layer,
            weight: args.weight.clone(),
        },
    };
    let files = write_report(&args.dir, &opts)?;
    println!(
        "report on {} run(s) ({}):",
        files.runs.len(),
        files.runs.join(", ")
    );
    println!("  {}", files.markdown.display());
    println!("  {}", files.html.display());
    println!(
        "  {} plots in {}",
        files.plots.len(),
        files.markdown.with_file_name("plots").display()
    );
    Ok(())
}
