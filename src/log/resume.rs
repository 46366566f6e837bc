//! Cutting a run's logs back to a checkpoint's step, so a resumed run
//! appends without duplicate steps.
//!
//! A run that crashed after its last checkpoint at step N has logged steps
//! past N that the resumed run will log again. Before resuming, call
//! [`truncate_after`] on the TensorBoard folder and [`truncate_jsonl_after`]
//! on `metrics.jsonl` with N, then open the writers.
//!
//! Every rewrite is atomic: the kept content goes to a temporary file in the
//! same folder, is fsynced, renamed over the original, and the folder is
//! fsynced. A crash at any moment leaves either the old file or the new one,
//! and truncating again gives the same result.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use tracing::warn;

use super::event::What;
use super::jsonl::scan_jsonl;
use super::reader::{event_files, scan_event_file, ScannedEvent};
use super::record::write_record;
use super::LogError;
use crate::io::atomic;

/// What a truncation did, for the resume message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TruncateReport {
    /// Events (file headers included) or lines kept.
    pub kept: usize,
    /// Events or lines removed because their step is after N.
    pub removed: usize,
    /// Damaged pieces dropped: the torn last record of an event file, or
    /// JSONL lines that are not JSON (a torn last line). Worth a warning.
    pub damaged: usize,
}

impl TruncateReport {
    fn add(&mut self, other: TruncateReport) {
        self.kept += other.kept;
        self.removed += other.removed;
        self.damaged += other.damaged;
    }
}

/// Rewrites the event files in `dir` so that only events with step ≤ `step`
/// remain (each file keeps its `file_version` header). Files with nothing
/// left but the header are deleted; untouched files are not rewritten. A
/// missing folder means a fresh run: nothing to do.
///
/// A record cut short at the end of a file (a crash mid-write) or damaged in
/// the middle (bad CRC) is dropped, counted in [`TruncateReport::damaged`] and
/// reported with its step where legible; the intact records after it are kept.
/// Call this before opening the resumed run's writer.
pub fn truncate_after(dir: impl AsRef<Path>, step: u64) -> Result<TruncateReport, LogError> {
    let dir = dir.as_ref();
    if !dir.exists() {
        return Ok(TruncateReport::default());
    }
    let mut report = TruncateReport::default();
    for file in event_files(dir)? {
        report.add(truncate_event_file(&file, step)?);
    }
    Ok(report)
}

fn truncate_event_file(path: &Path, step: u64) -> Result<TruncateReport, LogError> {
    let mut report = TruncateReport::default();
    let mut kept = Vec::new();
    let mut has_data = false;
    let (events, damage) = scan_event_file(path)?;
    for d in &damage {
        report.damaged += 1;
        warn!("{d}; skipped it and kept the records after it");
    }
    for ScannedEvent { payload, event } in events {
        let is_header = matches!(event.what, Some(What::FileVersion(_)));
        // A negative step is before any N; u64 steps beyond i64 cannot occur.
        let in_range = u64::try_from(event.step).map_or(true, |s| s <= step);
        if is_header || in_range {
            has_data |= !is_header;
            report.kept += 1;
            kept.push(payload);
        } else {
            report.removed += 1;
        }
    }

    if report.removed == 0 && report.damaged == 0 {
        return Ok(report);
    }
    if has_data {
        replace_atomically(path, |out| {
            kept.iter().try_for_each(|p| write_record(out, p))
        })?;
    } else {
        fs::remove_file(path).map_err(|e| LogError::io("cannot remove", path, e))?;
        atomic::sync_parent(path).map_err(|e| LogError::io("cannot sync folder", path, e))?;
    }
    Ok(report)
}

/// Rewrites `metrics.jsonl` keeping the lines whose `"step"` is ≤ `step`.
/// Lines without a numeric `"step"` (headers, notes) are kept; lines that
/// are not JSON — in practice the torn last line of a crashed run — are
/// dropped and counted in [`TruncateReport::damaged`]. Kept lines are
/// copied byte for byte. A missing file means a fresh run, and something other
/// than a regular file is left alone: nothing to do.
pub fn truncate_jsonl_after(path: impl AsRef<Path>, step: u64) -> Result<TruncateReport, LogError> {
    let path = path.as_ref();
    // A device or pipe in its place (`/dev/null` to keep no metrics) has nothing to
    // cut back, and reading one may never end.
    if fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        warn!("{}: not a regular file; left as it is", path.display());
        return Ok(TruncateReport::default());
    }
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TruncateReport::default()),
        Err(e) => return Err(LogError::io("cannot read", path, e)),
    };
    let mut report = TruncateReport::default();
    let mut kept: Vec<&[u8]> = Vec::new();
    let (lines, damage) = scan_jsonl(path, &bytes);
    for d in &damage {
        report.damaged += 1;
        warn!("{d}");
    }
    for line in lines {
        if step_after(&line.value, step) {
            report.removed += 1;
        } else {
            report.kept += 1;
            kept.push(line.raw);
        }
    }
    // Also rewrite when only a final newline is missing, so appends are safe.
    let complete = bytes.last().is_none_or(|&b| b == b'\n');
    if report.removed > 0 || report.damaged > 0 || !complete {
        replace_atomically(path, |out| {
            kept.iter()
                .try_for_each(|line| out.write_all(line).and_then(|()| out.write_all(b"\n")))
        })?;
    }
    Ok(report)
}

/// Whether a JSON line's `"step"` is a number greater than `step`.
fn step_after(value: &serde_json::Value, step: u64) -> bool {
    let Some(s) = value.get("step") else {
        return false;
    };
    if let Some(s) = s.as_u64() {
        s > step
    } else if let Some(s) = s.as_f64() {
        s > step as f64
    } else {
        false
    }
}

/// Replaces `path` with what `write` produces, atomically ([`crate::io::atomic`]): the
/// temporary name starts with a dot and lacks "tfevents", so neither TensorBoard nor
/// [`event_files`] reads it half-written.
fn replace_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), LogError> {
    atomic::replace_with(path, write).map_err(|e| LogError::io("cannot rewrite", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::reader::{read_events, LoggedValue};
    use crate::log::record::record_at;
    use crate::log::{JsonlWriter, TensorBoardWriter};
    use serde_json::json;
    use std::path::PathBuf;

    /// Two event files, as a run that was already resumed once leaves them.
    fn two_runs(dir: &Path) -> (PathBuf, PathBuf) {
        let mut first = TensorBoardWriter::create(dir).unwrap();
        for step in 0..10 {
            first.add_scalar("loss", step as f64, step).unwrap();
            first.add_histogram("h", &[step as f64, 1.0], step).unwrap();
        }
        first.add_text("recipe", "r", 0).unwrap();
        first.flush().unwrap();
        let mut second = TensorBoardWriter::create(dir).unwrap();
        for step in 10..20 {
            second
                .add_scalars(&[("loss", step as f64), ("lr", 0.1)], step)
                .unwrap();
        }
        second.flush().unwrap();
        (first.path().to_path_buf(), second.path().to_path_buf())
    }

    fn steps_of(dir: &Path, tag: &str) -> Vec<i64> {
        read_events(dir)
            .unwrap()
            .iter()
            .filter(|e| e.value.tag() == Some(tag))
            .map(|e| e.step)
            .collect()
    }

    #[test]
    fn keeps_every_step_up_to_n_and_none_after() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = two_runs(dir.path());
        let report = truncate_after(dir.path(), 12).unwrap();
        assert_eq!(report.removed, 7);
        assert_eq!(report.damaged, 0);
        assert_eq!(steps_of(dir.path(), "loss"), (0..=12).collect::<Vec<_>>());
        assert_eq!(steps_of(dir.path(), "h"), (0..10).collect::<Vec<_>>());
        assert_eq!(steps_of(dir.path(), "recipe"), vec![0]);
        // Both files still start with their header.
        for f in [&first, &second] {
            let events = read_events(f).unwrap();
            assert!(matches!(events[0].value, LoggedValue::FileVersion(_)));
        }
        // Idempotent.
        let again = truncate_after(dir.path(), 12).unwrap();
        assert_eq!((again.removed, again.damaged), (0, 0));
        // No temporary file left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_file_left_with_only_its_header_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = two_runs(dir.path());
        truncate_after(dir.path(), 5).unwrap();
        assert!(first.exists());
        assert!(!second.exists());
        assert_eq!(steps_of(dir.path(), "loss"), (0..=5).collect::<Vec<_>>());
    }

    #[test]
    fn resumed_run_appends_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        two_runs(dir.path());
        truncate_after(dir.path(), 14).unwrap();
        let mut resumed = TensorBoardWriter::create(dir.path()).unwrap();
        for step in 15..18 {
            resumed.add_scalar("loss", step as f64, step).unwrap();
        }
        resumed.flush().unwrap();
        assert_eq!(steps_of(dir.path(), "loss"), (0..18).collect::<Vec<_>>());
    }

    #[test]
    fn a_torn_tail_is_dropped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (_, second) = two_runs(dir.path());
        let bytes = fs::read(&second).unwrap();
        fs::write(&second, &bytes[..bytes.len() - 5]).unwrap();
        let report = truncate_after(dir.path(), 100).unwrap();
        assert_eq!((report.removed, report.damaged), (0, 1));
        assert_eq!(steps_of(dir.path(), "loss"), (0..19).collect::<Vec<_>>());
    }

    #[test]
    fn a_corrupt_record_mid_file_is_skipped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = two_runs(dir.path());
        let clean = fs::read(&first).unwrap();
        let header_end = record_at(&clean, 0).unwrap().1;
        // A payload byte (payload CRC fails) and a length byte (length CRC fails,
        // the scan must find the next record again) of the step-0 scalar record.
        for at in [header_end + 20, header_end + 1] {
            let mut bytes = clean.clone();
            bytes[at] ^= 1;
            fs::write(&first, &bytes).unwrap();
            let report = truncate_after(dir.path(), 100).unwrap();
            assert_eq!(report.damaged, 1, "flip at {at}");
            assert_eq!(steps_of(dir.path(), "loss"), (1..20).collect::<Vec<_>>());
            assert_eq!(steps_of(dir.path(), "h"), (0..10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_missing_folder_or_file_is_a_fresh_run() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            truncate_after(dir.path().join("tb"), 3).unwrap(),
            TruncateReport::default()
        );
        assert_eq!(
            truncate_jsonl_after(dir.path().join("m.jsonl"), 3).unwrap(),
            TruncateReport::default()
        );
    }

    #[test]
    fn jsonl_keeps_steps_up_to_n_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        {
            let mut w = JsonlWriter::open_append(&path).unwrap();
            w.write(&json!({"run": "header"})).unwrap();
            for step in 0..10u64 {
                w.write(&json!({"step": step, "loss": 1.0 / (step + 1) as f64}))
                    .unwrap();
            }
        }
        let before = fs::read_to_string(&path).unwrap();
        let report = truncate_jsonl_after(&path, 4).unwrap();
        assert_eq!(
            report,
            TruncateReport {
                kept: 6,
                removed: 5,
                damaged: 0
            }
        );
        let after = fs::read_to_string(&path).unwrap();
        assert!(before.starts_with(&after));
        assert_eq!(after.lines().count(), 6);

        // Resume: append steps 5.. and check there is exactly one line per step.
        let mut w = JsonlWriter::open_append(&path).unwrap();
        for step in 5..8u64 {
            w.write(&json!({"step": step})).unwrap();
        }
        let steps: Vec<u64> = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64())
            .collect();
        assert_eq!(steps, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn jsonl_torn_line_is_dropped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        fs::write(&path, "{\"step\":1}\n{\"step\":2.0}\n{\"step\":3,\"lo").unwrap();
        let report = truncate_jsonl_after(&path, 10).unwrap();
        assert_eq!(
            report,
            TruncateReport {
                kept: 2,
                removed: 0,
                damaged: 1
            }
        );
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"step\":1}\n{\"step\":2.0}\n"
        );
        let report = truncate_jsonl_after(&path, 1).unwrap();
        assert_eq!(
            report,
            TruncateReport {
                kept: 1,
                removed: 1,
                damaged: 0
            }
        );
    }
}
