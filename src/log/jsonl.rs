//! `metrics.jsonl`: one JSON object per line, for scripts (pandas, jq) that
//! should not need to parse TensorBoard's binary format.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::LogError;

/// Appends JSON lines to a file, one complete line per [`JsonlWriter::write`].
pub struct JsonlWriter {
    path: PathBuf,
    file: File,
}

impl JsonlWriter {
    /// Opens `path` for appending, creating it and its folder if needed, so a
    /// resumed run continues the same file. If the file ends in a torn line
    /// (a crash mid-write), a newline is added first so new lines stay
    /// parseable; `truncate_jsonl_after` removes such a fragment.
    pub fn open_append(path: impl AsRef<Path>) -> Result<Self, LogError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .map_err(|e| LogError::io("cannot create log folder", parent, e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(|e| LogError::io("cannot open", &path, e))?;
        if ends_in_torn_line(&mut file).map_err(|e| LogError::io("cannot read", &path, e))? {
            file.write_all(b"\n")
                .map_err(|e| LogError::io("cannot write", &path, e))?;
        }
        Ok(JsonlWriter { path, file })
    }

    /// The file this writer appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serializes `value` as one line (compact JSON never contains a raw
    /// newline) and hands it to the operating system in a single write, so a
    /// reader never sees half a line from a live run. Non-finite floats
    /// become `null`, as serde_json writes them.
    pub fn write<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), LogError> {
        let mut line = serde_json::to_vec(value).map_err(|source| LogError::Serialize {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .map_err(|e| LogError::io("cannot write", &self.path, e))
    }

    /// Fsyncs the file, for durability at checkpoints.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.file
            .sync_data()
            .map_err(|e| LogError::io("cannot sync", &self.path, e))
    }
}

/// Whether a non-empty file's last byte is something other than a newline.
fn ends_in_torn_line(file: &mut File) -> std::io::Result<bool> {
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn lines(path: &Path) -> Vec<Value> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn writes_one_object_per_line_and_appends_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/metrics.jsonl");
        {
            let mut w = JsonlWriter::open_append(&path).unwrap();
            w.write(&json!({"step": 0, "loss": 2.5})).unwrap();
            w.write(&json!({"step": 1, "note": "multi\nline"})).unwrap();
        }
        let mut w = JsonlWriter::open_append(&path).unwrap();
        w.write(&json!({"step": 2, "loss": f64::NAN})).unwrap();
        w.sync().unwrap();
        let got = lines(&path);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1]["note"], "multi\nline");
        assert_eq!(got[2], json!({"step": 2, "loss": null}));
    }

    #[test]
    fn a_torn_last_line_does_not_swallow_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        fs::write(&path, "{\"step\":0}\n{\"step\":1,\"lo").unwrap();
        let mut w = JsonlWriter::open_append(&path).unwrap();
        w.write(&json!({"step": 1})).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("\n{\"step\":1}\n"), "{text}");
    }

    #[test]
    fn unwritable_folder_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain_file");
        fs::write(&file, b"x").unwrap();
        let err = JsonlWriter::open_append(file.join("metrics.jsonl"))
            .err()
            .expect("must fail");
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }
}
