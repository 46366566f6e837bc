//! `metrics.jsonl`: one JSON object per line, for scripts (pandas, jq) that
//! should not need to parse TensorBoard's binary format.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::LogError;

/// Appends JSON lines to a file, one complete line per [`JsonlWriter::write`].
#[derive(Debug)]
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
    /// become `null`, as serde_json writes them. When the write fails (a full
    /// disk) the file is cut back to its length before, so no torn line stays.
    pub fn write<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), LogError> {
        let mut line = serde_json::to_vec(value).map_err(|source| LogError::Serialize {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        let before = self.file.metadata().map(|m| m.len());
        let written = self.file.write_all(&line).and_then(|()| self.file.flush());
        written.map_err(|e| {
            if let Ok(len) = before {
                // Shrinking needs no space; appends go to the end, wherever it is.
                let _ = self.file.set_len(len);
            }
            LogError::io("cannot write", &self.path, e)
        })
    }

    /// Fsyncs the file, for durability at checkpoints.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.file
            .sync_data()
            .map_err(|e| LogError::io("cannot sync", &self.path, e))
    }
}

/// An intact line of a JSONL file, as [`scan_jsonl`] finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonlLine<'a> {
    /// 1-based line number.
    pub number: usize,
    /// The line's bytes (no newline), for copying it unchanged.
    pub raw: &'a [u8],
    /// The parsed value.
    pub value: serde_json::Value,
}

/// A damaged line of a JSONL file, skipped, with the step it held when still
/// legible, so a warning can say what was lost.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonlDamage {
    /// The JSONL file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// The `"step":N` the line starts with, when legible.
    pub step: Option<u64>,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for JsonlDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = self
            .step
            .map(|s| format!(" (step {s})"))
            .unwrap_or_default();
        write!(
            f,
            "{}:{}: skipped a damaged line{step}: {}",
            self.path.display(),
            self.line,
            self.problem
        )
    }
}

impl JsonlDamage {
    /// A line of `path` that is JSON of the wrong shape, or not JSON at all.
    pub fn new(path: &Path, line: usize, raw: &[u8], problem: impl std::fmt::Display) -> Self {
        Self {
            path: path.to_path_buf(),
            line,
            step: step_of_damaged_line(raw),
            problem: problem.to_string(),
        }
    }
}

/// Reads JSONL leniently: every line that parses as JSON is kept, every other
/// non-empty line (a torn last line, a damaged one in the middle) is skipped and
/// described. The one JSONL reader of resume and the report.
pub fn scan_jsonl<'a>(path: &Path, bytes: &'a [u8]) -> (Vec<JsonlLine<'a>>, Vec<JsonlDamage>) {
    let mut lines = Vec::new();
    let mut damage = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice(raw) {
            Ok(value) => lines.push(JsonlLine {
                number: i + 1,
                raw,
                value,
            }),
            Err(e) => damage.push(JsonlDamage::new(path, i + 1, raw, e)),
        }
    }
    (lines, damage)
}

/// The `"step":N` of a line that is no longer JSON, if still legible (lines start
/// with it, as [`crate::log::RunLog`] writes them).
fn step_of_damaged_line(line: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(line);
    let rest = &text[text.find("\"step\":")? + 7..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
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
    fn damaged_lines_are_skipped_and_named_with_their_step() {
        let path = Path::new("m.jsonl");
        let bytes =
            b"{\"step\":1}\n\n{\"step\":2,\"x\":[1,\n{\"step\":3}\n\xff\xfe\n{\"step\":4,\"lo";
        let (lines, damage) = scan_jsonl(path, bytes);
        let kept: Vec<(usize, u64)> = lines
            .iter()
            .map(|l| (l.number, l.value["step"].as_u64().unwrap()))
            .collect();
        assert_eq!(kept, [(1, 1), (4, 3)]);
        assert_eq!(lines[1].raw, b"{\"step\":3}");
        let named: Vec<(usize, Option<u64>)> = damage.iter().map(|d| (d.line, d.step)).collect();
        assert_eq!(named, [(3, Some(2)), (5, None), (6, Some(4))]);
        let msg = damage[0].to_string();
        assert!(
            msg.starts_with("m.jsonl:3: skipped a damaged line (step 2): "),
            "{msg}"
        );
    }

    /// /dev/full fails every write with ENOSPC, as a full disk does.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_full_disk_names_the_file() {
        let mut w = JsonlWriter::open_append("/dev/full").unwrap();
        let e = w.write(&json!({"step": 1})).unwrap_err();
        assert!(matches!(e, LogError::DiskFull { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("/dev/full: disk full: cannot write"),
            "{e}"
        );
    }

    #[test]
    fn unwritable_folder_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain_file");
        fs::write(&file, b"x").unwrap();
        let err = JsonlWriter::open_append(file.join("metrics.jsonl")).expect_err("must fail");
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }
}
