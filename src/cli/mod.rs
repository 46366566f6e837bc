//! Command-line interface: argument parsing and one `run` per command. Library
//! errors arrive here typed and leave as a one-line message and a non-zero exit.

pub mod ablate;
pub mod analyze;
pub mod hooks;
pub mod metrics;
pub mod report;
pub mod spectra;
pub mod texts;
pub mod tokenize;
pub mod topo;
pub mod train;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// sinkscope: train transformers with swappable position encodings, watch attention
/// sinks emerge, and analyze pretrained models.
#[derive(Parser, Debug)]
#[command(name = "sinkscope", version, about, long_about = None)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model (or a sweep of models) from a recipe, with hooks logging sink
    /// metrics to TensorBoard and metrics.jsonl.
    Train(train::TrainArgs),
    /// Analyze a pretrained model (Hugging Face folder, cached hub id, GGUF) or a
    /// checkpoint: the training hooks' metrics on given texts, sink tokens named.
    Analyze(analyze::AnalyzeArgs),
    /// Mask key positions out of attention and measure the change in loss, output KL
    /// and attention entropy, per layer and overall.
    Ablate(ablate::AblateArgs),
    /// Sink, graph, topology and information metrics of attention maps in a file.
    Metrics(metrics::MetricsArgs),
    /// Vietoris–Rips persistence diagrams of a distance matrix or point cloud.
    Topo(topo::TopoArgs),
    /// WeightWatcher-style spectra of every 2-D weight of a model.
    Spectra(spectra::SpectraArgs),
    /// Markdown and HTML report with plots of a training run or sweep.
    Report(report::ReportArgs),
    /// Tokenize a corpus with a tokenizer.json into token shards for `[data] shards`.
    Tokenize(tokenize::TokenizeArgs),
    /// List the hooks a recipe can name: what each measures, logs and needs.
    Hooks(hooks::HooksArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => train::run(&args),
        Command::Analyze(args) => analyze::run(&args),
        Command::Ablate(args) => ablate::run(&args),
        Command::Metrics(args) => metrics::run(&args),
        Command::Topo(args) => topo::run(&args),
        Command::Spectra(args) => spectra::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Tokenize(args) => tokenize::run(&args),
        Command::Hooks(args) => hooks::run(&args),
    }
}

/// Sends `tracing` output to stderr at `RUST_LOG`'s level (default `info`), with
/// colour only when stderr is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>), so a log written to a file or a pipe holds no escape
/// codes.
pub fn init_logging() {
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}
