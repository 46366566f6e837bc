//! The `sinkscope` command: parses the arguments (`sinkscope::cli`) and runs them,
//! printing any error as one line on stderr with exit status 1, never a backtrace.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A bug must not greet the user with a backtrace: one line, and a non-zero exit.
    // A panic inside a dependency that sinkscope contains (sinkscope::error::contain)
    // becomes an ordinary error naming the file; it must print nothing here.
    std::panic::set_hook(Box::new(|info| {
        if !sinkscope::error::panic_is_contained() {
            eprintln!("sinkscope: internal error: {info}. Please report it.");
        }
    }));
    // When the reader of stdout goes away (`sinkscope spectra … | head -1`), end
    // quietly as other Unix tools do, instead of panicking in `println!`: restore the
    // default action of SIGPIPE, which Rust's runtime sets to "ignore".
    #[cfg(unix)]
    // SAFETY: called once at start-up before any other thread exists; SIG_DFL is a
    // valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    sinkscope::cli::init_logging();
    sinkscope::model::kernels::retain_freed_memory();
    let cli = sinkscope::cli::Cli::parse();
    match sinkscope::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever a dependency's message looks like.
            let message = format!("{e:#}");
            let one_line: Vec<&str> = message
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("error: {}", one_line.join(" "));
            ExitCode::FAILURE
        }
    }
}
