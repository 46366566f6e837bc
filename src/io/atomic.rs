//! Files replaced all at once: written under a temporary name in the same folder,
//! flushed to disk, renamed over the target, and the folder synced. A reader (or a run
//! killed mid-write) sees the old file or the new one, never half of one.
//!
//! The temporary name starts with a dot and carries only the process id, so tools that
//! scan a folder by name (TensorBoard for `tfevents`, our own readers) skip it.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Replaces `path` with what `write` produces (see the module notes); the temporary
/// file is removed if anything fails.
pub fn replace_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    write(file.writer())?;
    file.commit()
}

/// A file written over time (a dump filled layer by layer) that replaces `path` only
/// when [`AtomicFile::commit`] is called; dropped uncommitted (an error, a panic), its
/// temporary file is removed and `path` is untouched.
#[derive(Debug)]
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts the temporary file for `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        let tmp = temp_path(path);
        let out = BufWriter::new(File::create(&tmp)?);
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            out: Some(out),
        })
    }

    /// Where to write.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.out.as_mut().expect("only commit takes the writer")
    }

    /// Flushes to disk, renames over the target and syncs the folder.
    pub fn commit(mut self) -> io::Result<()> {
        let out = self.out.take().expect("only commit takes the writer");
        let result = (|| {
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            fs::rename(&self.tmp, &self.path)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&self.tmp);
            return Err(e);
        }
        sync_parent(&self.path)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Replaces `path` with `bytes` (see the module notes).
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_with(path, |out| out.write_all(bytes))
}

fn temp_path(path: &Path) -> PathBuf {
    path.with_file_name(format!(".sinkscope-write.{}.tmp", std::process::id()))
}

/// Fsyncs the folder holding `path`, so a rename or removal survives a power cut
/// (Unix; elsewhere folders cannot be opened and this is a no-op).
pub fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_nothing_behind_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("report.md");
        write_file(&p, b"old").unwrap();
        write_file(&p, b"new text").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new text");
        // A writer that fails half-way leaves the old file and no temporary.
        let err = replace_with(&p, |out| {
            out.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(fs::read(&p).unwrap(), b"new text");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("report.md")]);
        // A folder that does not exist is an error, not a panic.
        assert!(write_file(&dir.path().join("missing/x.md"), b"x").is_err());
    }
}
