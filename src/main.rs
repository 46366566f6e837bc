use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // A bug must not greet the user with a backtrace: one line, and a non-zero exit.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("sinkscope: internal error: {info}. Please report it.");
    }));
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    sinkscope::model::kernels::retain_freed_memory();
    let cli = sinkscope::cli::Cli::parse();
    match sinkscope::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
