//! One owner per run folder: an exclusive advisory lock on `RUN/.lock` (std's
//! `File::try_lock`, flock on Unix), held for the whole run. The operating system
//! releases it when the process ends in any way, kill -9 included, so no stale lock
//! is ever left; the holder's process id is written into the file so a second
//! process can say who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Lock file inside a run folder.
pub const LOCK_FILE: &str = ".lock";

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock of `run_dir`, or fails naming the folder and the holder's pid.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::file(&path, format!("cannot open lock file: {e}")))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::file(
                    run_dir,
                    format!(
                        "run folder is in use by another sinkscope process (pid {}); wait for it to end or choose another --out",
                        if holder.is_empty() { "unknown" } else { holder }
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::file(&path, format!("cannot lock: {e}")))
            }
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush())
            .map_err(|e| Error::file(&path, format!("cannot write lock file: {e}")))?;
        Ok(Self { _file: file })
    }
}
