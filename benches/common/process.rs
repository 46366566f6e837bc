//! What the benches that measure peak memory share: each measurement runs in a child
//! process of the bench binary (so its peak resident memory is its own), and reads the
//! peak from `/proc/self/status`.

use std::ffi::OsStr;
use std::process::Command;

/// A `/proc/self/status` field in bytes (Linux), e.g. `VmHWM`.
pub(crate) fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs this bench binary again with `env = value` and `args`, and returns the fields
/// of the last line it printed; on failure says so under `label` and returns None.
pub(crate) fn run_child(
    env: &str,
    value: &str,
    args: &[&OsStr],
    label: &str,
) -> Option<Vec<String>> {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .env(env, value)
        .args(args)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().last().filter(|_| out.status.success()) else {
        eprintln!(
            "{label} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    };
    Some(line.split_whitespace().map(str::to_string).collect())
}
