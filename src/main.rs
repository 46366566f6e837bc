use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A bug must not greet the user with a backtrace: one line, and a non-zero exit.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("sinkscope: internal error: {info}. Please report it.");
    }));
    sinkscope::cli::init_logging();
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
