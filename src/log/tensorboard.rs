//! Writes TensorBoard event files: scalars, histograms, images, text, and the
//! records of the HParams and custom-scalars plugins.
//!
//! One writer owns one file, named like TensorFlow's and PyTorch's
//! (`events.out.tfevents.{unix_secs}.{hostname}.{pid}.{counter}`), so
//! TensorBoard picks it up in any folder it watches, and names sort in the
//! order the files were created (TensorBoard reads them in that order). Events are buffered;
//! [`TensorBoardWriter::flush`] makes them visible and durable.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use super::event::{Event, SummaryValue};
use super::histogram::{linear_histogram, DEFAULT_BUCKETS};
use super::hparams::HParamsPluginData;
use super::image::RgbImage;
use super::layout::Layout;
use super::record::write_record;
use super::LogError;

/// Prefix of every event file name; TensorBoard looks for `tfevents`.
pub const EVENT_FILE_PREFIX: &str = "events.out.tfevents.";

/// Distinguishes files opened by one process within the same second.
static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Appends events to a new event file in a run's TensorBoard folder.
#[derive(Debug)]
pub struct TensorBoardWriter {
    path: PathBuf,
    /// None once a write failed: the file was cut back to `durable` and its
    /// buffer dropped unwritten, so nothing more (not even a drop) adds a torn
    /// record.
    out: Option<BufWriter<File>>,
    /// File length after the last successful flush: whole records only.
    durable: u64,
}

impl TensorBoardWriter {
    /// Creates `dir` if needed and a new event file in it, starting with the
    /// `file_version` event TensorBoard requires. Fails early, naming the
    /// folder, when it cannot be created or written, so a run does not
    /// start training only to lose its logs; a file that could not get its header
    /// (a full disk) is removed again.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| LogError::io("cannot create log folder", dir, e))?;
        let (file, path) = create_unique_file(dir)?;
        Self::start(path, file)
    }

    /// Writes the header event into the new, empty `file` at `path`; removes the
    /// file when that fails.
    fn start(path: PathBuf, file: File) -> Result<Self, LogError> {
        let mut writer = TensorBoardWriter {
            path,
            out: Some(BufWriter::new(file)),
            durable: 0,
        };
        let header = writer
            .write_event(&Event::file_version(wall_time()))
            .and_then(|()| writer.flush());
        if let Err(e) = header {
            let _ = fs::remove_file(&writer.path);
            return Err(e);
        }
        Ok(writer)
    }

    /// The event file this writer appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logs one scalar. TensorBoard stores `simple_value` as a 32-bit float,
    /// so about 7 significant digits survive (JSONL keeps the full f64).
    pub fn add_scalar(&mut self, tag: &str, value: f64, step: u64) -> Result<(), LogError> {
        self.add_values(vec![SummaryValue::scalar(tag, value)], step)
    }

    /// Logs many scalars of one step in a single event, which keeps event
    /// files small when a hook reports dozens of per-layer, per-head metrics.
    pub fn add_scalars<S: AsRef<str>>(
        &mut self,
        values: &[(S, f64)],
        step: u64,
    ) -> Result<(), LogError> {
        if values.is_empty() {
            return Ok(());
        }
        let values = values
            .iter()
            .map(|(tag, v)| SummaryValue::scalar(tag.as_ref(), *v))
            .collect();
        self.add_values(values, step)
    }

    /// Logs a histogram of `values` in [`DEFAULT_BUCKETS`] linear buckets
    /// (see `histogram.rs`); non-finite values are left out.
    pub fn add_histogram(&mut self, tag: &str, values: &[f64], step: u64) -> Result<(), LogError> {
        let histo = linear_histogram(values, DEFAULT_BUCKETS);
        self.add_values(vec![SummaryValue::histogram(tag, histo)], step)
    }

    /// Logs an image, PNG-encoded, for the images dashboard.
    pub fn add_image(&mut self, tag: &str, image: &RgbImage, step: u64) -> Result<(), LogError> {
        let png = image.to_png()?;
        // Sides are bounded by image::MAX_SIDE, so they fit u32.
        let value = SummaryValue::png_image(tag, image.width() as u32, image.height() as u32, png);
        self.add_values(vec![value], step)
    }

    /// Logs markdown text (for example the recipe, fenced as a code block)
    /// for the text dashboard.
    pub fn add_text(&mut self, tag: &str, text: &str, step: u64) -> Result<(), LogError> {
        self.add_values(vec![SummaryValue::text(tag, text)], step)
    }

    /// Logs one record of the HParams plugin (experiment, session start or
    /// session end) under the tag the plugin reads it from. TensorBoard keeps
    /// the first such record of a run, so write each once.
    pub fn add_hparams(&mut self, data: &HParamsPluginData, step: u64) -> Result<(), LogError> {
        self.add_values(vec![data.summary_value()], step)
    }

    /// Logs the custom-scalars layout of this run.
    pub fn add_layout(&mut self, layout: &Layout, step: u64) -> Result<(), LogError> {
        self.add_values(vec![layout.summary_value()], step)
    }

    /// Writes buffered events to the file and fsyncs it, so TensorBoard
    /// sees them and a crash after this point loses none of them. On failure (a
    /// full disk) the file is cut back to its last whole record and the writer
    /// stops: the error names the file, and later calls repeat that it failed.
    pub fn flush(&mut self) -> Result<(), LogError> {
        let out = self.out()?;
        let flushed = out
            .flush()
            .and_then(|()| out.get_ref().sync_data())
            .and_then(|()| out.get_ref().metadata());
        match flushed {
            Ok(meta) => {
                self.durable = meta.len();
                Ok(())
            }
            Err(e) => Err(self.fail("cannot write", e)),
        }
    }

    fn add_values(&mut self, values: Vec<SummaryValue>, step: u64) -> Result<(), LogError> {
        let step = i64::try_from(step).map_err(|_| LogError::StepOutOfRange { step })?;
        self.write_event(&Event::summary(wall_time(), step, values))
    }

    fn write_event(&mut self, event: &Event) -> Result<(), LogError> {
        let payload = event.encode_to_vec();
        let written = write_record(self.out()?, &payload);
        written.map_err(|e| self.fail("cannot write", e))
    }

    /// The open file, or an error once a write has failed.
    fn out(&mut self) -> Result<&mut BufWriter<File>, LogError> {
        self.out.as_mut().ok_or_else(|| {
            LogError::io(
                "cannot write",
                &self.path,
                std::io::Error::other("an earlier write to it failed"),
            )
        })
    }

    /// Stops the writer: drops its buffer unwritten and cuts the file back to its
    /// last whole record (shrinking needs no space), so no torn record is left.
    fn fail(&mut self, action: &'static str, e: std::io::Error) -> LogError {
        if let Some(out) = self.out.take() {
            let (file, _unwritten) = out.into_parts();
            let _ = file.set_len(self.durable);
        }
        LogError::io(action, &self.path, e)
    }
}

impl Drop for TensorBoardWriter {
    /// Best-effort flush: errors cannot be reported from `drop`; call
    /// [`TensorBoardWriter::flush`] to see them. A failed writer writes nothing.
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = self.flush();
        }
    }
}

/// Opens a fresh event file in `dir`, never reusing an existing name (a
/// resumed run in the same second and process gets the next counter).
fn create_unique_file(dir: &Path) -> Result<(File, PathBuf), LogError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let host = hostname();
    let pid = std::process::id();
    loop {
        let counter = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
        // Zero-padded so that names sort in creation order within a second.
        let path = dir.join(format!(
            "{EVENT_FILE_PREFIX}{secs}.{host}.{pid}.{counter:06}"
        ));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(LogError::io("cannot create event file in", dir, e)),
        }
    }
}

/// Seconds since the Unix epoch, TensorBoard's `wall_time`.
fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The machine's name for the file name, without characters that would
/// upset a path; "localhost" when unknown.
fn hostname() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "localhost".to_string()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::event::FILE_VERSION;
    use crate::log::plot::heatmap;
    use crate::log::reader::{read_events, LoggedValue};

    #[test]
    fn everything_written_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let tb = dir.path().join("run/tb");
        let img = heatmap(&[0.0, 0.25, 0.5, 1.0], 2, 2, 3).unwrap();
        let spectrum: Vec<f64> = (1..=50).map(|i| 1.0 / i as f64).collect();
        {
            let mut w = TensorBoardWriter::create(&tb).unwrap();
            assert!(w
                .path()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(EVENT_FILE_PREFIX));
            w.add_text("recipe", "```toml\nlr = 3e-4\n```", 0).unwrap();
            for step in 0..5u64 {
                w.add_scalar("train/loss", 5.0 - step as f64, step).unwrap();
            }
            w.add_scalars(
                &[
                    ("sink/rate".to_string(), 0.25),
                    ("topo/betti1/layer_00".to_string(), 3.0),
                ],
                4,
            )
            .unwrap();
            w.add_scalars::<&str>(&[], 4).unwrap();
            w.add_histogram("rmt/spectrum/blocks.0.attn.q", &spectrum, 4)
                .unwrap();
            w.add_image("attn/layer_00", &img, 4).unwrap();
            w.flush().unwrap();
        }
        let events = read_events(&tb).unwrap();
        assert!(matches!(&events[0].value, LoggedValue::FileVersion(v) if v == FILE_VERSION));
        assert!(events.iter().all(|e| e.wall_time > 1.6e9));

        let losses: Vec<(i64, f32)> = events
            .iter()
            .filter_map(|e| match &e.value {
                LoggedValue::Scalar { tag, value } if tag == "train/loss" => Some((e.step, *value)),
                _ => None,
            })
            .collect();
        assert_eq!(
            losses,
            vec![(0, 5.0), (1, 4.0), (2, 3.0), (3, 2.0), (4, 1.0)]
        );

        let at4: Vec<&LoggedValue> = events
            .iter()
            .filter(|e| e.step == 4)
            .map(|e| &e.value)
            .collect();
        assert!(at4.contains(&&LoggedValue::Scalar {
            tag: "sink/rate".into(),
            value: 0.25
        }));
        assert!(at4.contains(&&LoggedValue::Scalar {
            tag: "topo/betti1/layer_00".into(),
            value: 3.0
        }));
        let histo = at4
            .iter()
            .find_map(|v| match v {
                LoggedValue::Histogram { tag, histogram }
                    if tag == "rmt/spectrum/blocks.0.attn.q" =>
                {
                    Some(histogram)
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(histo, &linear_histogram(&spectrum, DEFAULT_BUCKETS));
        let png = at4
            .iter()
            .find_map(|v| match v {
                LoggedValue::Image {
                    tag,
                    width,
                    height,
                    png,
                } if tag == "attn/layer_00" => {
                    assert_eq!((*width, *height), (6, 6));
                    Some(png)
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(png, &img.to_png().unwrap());
        assert!(events.iter().any(|e| e.step == 0
            && e.value
                == LoggedValue::Text {
                    tag: "recipe".into(),
                    text: "```toml\nlr = 3e-4\n```".into()
                }));
    }

    #[test]
    fn two_writers_never_share_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = TensorBoardWriter::create(dir.path()).unwrap();
        let b = TensorBoardWriter::create(dir.path()).unwrap();
        assert_ne!(a.path(), b.path());
    }

    #[test]
    fn unwritable_folder_is_a_clear_error() {
        // A path below a regular file cannot be a folder, even for root
        // (permission bits would not stop root).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not_a_folder");
        fs::write(&file, b"x").unwrap();
        let target = file.join("tb");
        let err = TensorBoardWriter::create(&target).expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.starts_with("cannot create log folder"), "{msg}");
        assert!(msg.contains(&target.display().to_string()), "{msg}");
    }

    /// /dev/full fails every write with ENOSPC, as a full disk does.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_full_disk_names_the_file_and_leaves_whole_records_only() {
        let full = || OpenOptions::new().write(true).open("/dev/full").unwrap();
        let dir = tempfile::tempdir().unwrap();
        // A new file that cannot take its header is removed again.
        let fresh = dir
            .path()
            .join(format!("{EVENT_FILE_PREFIX}1.host.1.000000"));
        fs::write(&fresh, b"").unwrap();
        let e = TensorBoardWriter::start(fresh.clone(), full()).expect_err("must fail");
        assert!(matches!(e, LogError::DiskFull { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: disk full", fresh.display())),
            "{e}"
        );
        assert!(!fresh.exists());

        // The disk fills up during a run: the flush fails naming the file, later
        // writes fail too, and dropping the writer adds nothing.
        let mut w = TensorBoardWriter::create(dir.path()).unwrap();
        let file = w.path().to_path_buf();
        w.add_scalar("a", 1.0, 1).unwrap();
        w.flush().unwrap();
        let before = fs::read(&file).unwrap();
        w.out = Some(BufWriter::new(full()));
        w.add_scalar("a", 2.0, 2).unwrap();
        let e = w.flush().unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}: disk full", file.display())),
            "{e}"
        );
        let again = w.add_scalar("a", 3.0, 3).unwrap_err().to_string();
        assert!(again.contains("an earlier write to it failed"), "{again}");
        drop(w);
        assert_eq!(fs::read(&file).unwrap(), before);
        let steps: Vec<i64> = read_events(&file).unwrap().iter().map(|e| e.step).collect();
        assert_eq!(steps, [0, 1]);
    }

    #[test]
    fn huge_step_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TensorBoardWriter::create(dir.path()).unwrap();
        let err = w.add_scalar("x", 1.0, u64::MAX).unwrap_err();
        assert!(matches!(err, LogError::StepOutOfRange { .. }));
    }

    #[test]
    fn hostname_is_safe_in_a_file_name() {
        let h = hostname();
        assert!(!h.is_empty());
        assert!(!h.contains('/'));
    }
}
