//! Reads event files back: framing checked with both CRCs, each `Event`
//! decoded and flattened into one [`EventRecord`] per logged value.
//!
//! One lenient reader: a damaged record is skipped and described (file, byte
//! offset, the step lost) and the intact records after it are kept. Resume (which
//! steps are already logged?), the report (what did the run log?) and the tests
//! (does what we wrote say what we meant? — strictly, via [`read_events`]) all read
//! through it.

use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;

use super::event::{Event, HistogramProto, SummaryValue, Value, What, DT_STRING, TEXT_PLUGIN};
use super::hparams::{self, HParamsPluginData};
use super::layout::{self, Layout};
use super::record::{scan, Flaw, Piece};
use super::tensorboard::EVENT_FILE_PREFIX;
use super::LogError;

/// One logged value with the time and step of its event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Seconds since the Unix epoch when the event was written.
    pub wall_time: f64,
    /// The event's step.
    pub step: i64,
    /// What was logged.
    pub value: LoggedValue,
}

/// The kinds of value sinkscope writes, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum LoggedValue {
    /// The header event of a file (`"brain.Event:2"`).
    FileVersion(String),
    /// A scalar (`simple_value`, 32-bit).
    Scalar {
        /// Tag.
        tag: String,
        /// Value.
        value: f32,
    },
    /// A histogram.
    Histogram {
        /// Tag.
        tag: String,
        /// Buckets and moments as written.
        histogram: HistogramProto,
    },
    /// An encoded image.
    Image {
        /// Tag.
        tag: String,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// The encoded bytes (PNG for images sinkscope writes).
        png: Vec<u8>,
    },
    /// Text for the text plugin.
    Text {
        /// Tag.
        tag: String,
        /// The markdown text.
        text: String,
    },
    /// A record of the HParams plugin: the experiment, a session's start
    /// (its hyperparameters) or its end (its status).
    HParams {
        /// Tag (`_hparams_/…`).
        tag: String,
        /// The decoded plugin data.
        data: HParamsPluginData,
    },
    /// The custom-scalars layout.
    Layout {
        /// Tag (`custom_scalars__config__`).
        tag: String,
        /// The decoded layout.
        layout: Layout,
    },
    /// A value of a kind sinkscope does not write (from another tool), or a
    /// plugin record whose content does not decode.
    Other {
        /// Tag.
        tag: String,
    },
}

impl LoggedValue {
    /// The tag, for every kind except the file header.
    pub fn tag(&self) -> Option<&str> {
        match self {
            LoggedValue::FileVersion(_) => None,
            LoggedValue::Scalar { tag, .. }
            | LoggedValue::Histogram { tag, .. }
            | LoggedValue::Image { tag, .. }
            | LoggedValue::Text { tag, .. }
            | LoggedValue::HParams { tag, .. }
            | LoggedValue::Layout { tag, .. }
            | LoggedValue::Other { tag } => Some(tag),
        }
    }
}

/// The event files of a TensorBoard folder, in name order, which is the
/// order they were written in (names start with the creation time).
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>, LogError> {
    let entries = fs::read_dir(dir).map_err(|e| LogError::io("cannot list log folder", dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("cannot list log folder", dir, e))?;
        let is_event_file = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(EVENT_FILE_PREFIX));
        if is_event_file && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Why a stretch of an event file was skipped.
#[derive(Debug, Clone, PartialEq)]
pub enum DamageKind {
    /// A CRC does not match (bytes changed on disk, or garbage in the file).
    Corrupt(Flaw),
    /// The file ends inside a record: a crash while writing, or a file still being
    /// written.
    CutShort(Flaw),
    /// The framing is intact but the payload is not an `Event`.
    Undecodable(prost::DecodeError),
}

/// A damaged record of an event file, skipped by the reader, with what is known of
/// the step it held, so a warning can say what was lost.
#[derive(Debug, Clone, PartialEq)]
pub struct Damage {
    /// The event file.
    pub path: PathBuf,
    /// Byte offset where the damaged record starts.
    pub offset: u64,
    /// Bytes skipped.
    pub len: u64,
    /// What is wrong.
    pub kind: DamageKind,
    /// The step the damaged record names, when its payload still decodes.
    pub step: Option<i64>,
    /// Step of the last intact event before it in the file, if any.
    pub after: Option<i64>,
    /// Step of the first intact event after it in the file, if any.
    pub before: Option<i64>,
}

impl Damage {
    /// Which step was lost, in words: the record's own step when legible, else the
    /// steps of its intact neighbours.
    pub fn lost_step(&self) -> String {
        match (self.step, self.after, self.before) {
            (Some(s), _, _) => format!("step {s}"),
            (None, Some(a), Some(b)) if a == b => format!("step {a}"),
            (None, Some(a), Some(b)) => format!("a step from {a} to {b}"),
            (None, Some(a), None) => format!("a step from {a} on"),
            (None, None, Some(b)) => format!("a step up to {b}"),
            (None, None, None) => "step unknown".into(),
        }
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (path, offset, lost) = (self.path.display(), self.offset, self.lost_step());
        match &self.kind {
            DamageKind::Corrupt(flaw) => write!(
                f,
                "{path}: damaged record at byte offset {offset} ({flaw}; {} bytes skipped; {lost})",
                self.len
            ),
            DamageKind::CutShort(flaw) => write!(
                f,
                "{path}: record cut short at byte offset {offset} (end of file; {flaw}; {lost})"
            ),
            DamageKind::Undecodable(e) => write!(
                f,
                "{path}: cannot decode the event at byte offset {offset} ({e}; {lost})"
            ),
        }
    }
}

/// What the reader found in event files: every intact value, and every damaged
/// record it skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventLog {
    /// The values of the intact events, in file order.
    pub events: Vec<EventRecord>,
    /// The records skipped, in file order.
    pub damage: Vec<Damage>,
}

/// One intact event of a file and the raw record it came from.
pub(crate) struct ScannedEvent {
    /// The record's payload, for rewriting the file byte for byte.
    pub payload: Vec<u8>,
    /// The decoded event.
    pub event: Event,
}

/// Reads an event file leniently: each damaged record (bad CRC, cut short, not an
/// `Event`) is skipped and described, and the intact records after it are kept. The
/// one reader behind [`read_events`], [`read_event_log`] and resume. Fails only when
/// the file cannot be read.
pub(crate) fn scan_event_file(path: &Path) -> Result<(Vec<ScannedEvent>, Vec<Damage>), LogError> {
    let bytes = fs::read(path).map_err(|e| LogError::io("cannot read", path, e))?;
    let mut events: Vec<ScannedEvent> = Vec::new();
    let mut damage: Vec<Damage> = Vec::new();
    // Damage from `waiting` on has yet to learn the step of the next intact event.
    let mut waiting = 0;
    let mut last_step = None;
    for piece in scan(&bytes) {
        let (offset, len, kind, step) = match piece {
            Piece::Record { offset, payload } => match Event::decode(payload) {
                Ok(event) => {
                    if !matches!(event.what, Some(What::FileVersion(_))) {
                        for d in &mut damage[waiting..] {
                            d.before = Some(event.step);
                        }
                        waiting = damage.len();
                        last_step = Some(event.step);
                    }
                    events.push(ScannedEvent {
                        payload: payload.to_vec(),
                        event,
                    });
                    continue;
                }
                Err(e) => (
                    offset,
                    payload.len() as u64 + 16,
                    DamageKind::Undecodable(e),
                    None,
                ),
            },
            Piece::Damaged { offset, len, flaw } => {
                let kind = if flaw.is_cut() && offset + len == bytes.len() as u64 {
                    DamageKind::CutShort(flaw)
                } else {
                    DamageKind::Corrupt(flaw)
                };
                (offset, len, kind, own_step(&bytes, offset, len, flaw))
            }
        };
        damage.push(Damage {
            path: path.to_path_buf(),
            offset,
            len,
            kind,
            step,
            after: last_step,
            before: None,
        });
    }
    Ok((events, damage))
}

/// The step a damaged record names, when its length is sound and its payload still
/// decodes as an `Event` (a changed byte in a value, not in the step).
fn own_step(bytes: &[u8], offset: u64, len: u64, flaw: Flaw) -> Option<i64> {
    if flaw != Flaw::PayloadCrc {
        return None;
    }
    let start = usize::try_from(offset).ok()? + 12;
    let end = usize::try_from(offset + len).ok()?.checked_sub(4)?;
    let event = Event::decode(bytes.get(start..end)?).ok()?;
    (!matches!(event.what, Some(What::FileVersion(_)))).then_some(event.step)
}

/// Every intact value in an event file, or in all event files of a folder (in file
/// order), and each damaged record skipped on the way; see [`scan_event_file`].
/// Callers warn about [`EventLog::damage`], naming the file and the step lost.
pub fn read_event_log(path_or_dir: impl AsRef<Path>) -> Result<EventLog, LogError> {
    let path = path_or_dir.as_ref();
    let files = if path.is_dir() {
        event_files(path)?
    } else {
        vec![path.to_path_buf()]
    };
    let mut log = EventLog::default();
    for file in &files {
        let (events, damage) = scan_event_file(file)?;
        for e in events {
            flatten(e.event, &mut log.events);
        }
        log.damage.extend(damage);
    }
    Ok(log)
}

/// Every value in an event file, or in all event files of a folder, strictly: the
/// first damaged record is an error naming the file, the byte offset and the step
/// lost. For tests and tools that must see a file whole; the report and resume use
/// [`read_event_log`].
pub fn read_events(path_or_dir: impl AsRef<Path>) -> Result<Vec<EventRecord>, LogError> {
    let log = read_event_log(path_or_dir)?;
    match log.damage.into_iter().next() {
        Some(d) => Err(LogError::Damaged(Box::new(d))),
        None => Ok(log.events),
    }
}

/// Appends one [`EventRecord`] per value of `event` to `out`.
fn flatten(event: Event, out: &mut Vec<EventRecord>) {
    let (wall_time, step) = (event.wall_time, event.step);
    let values = match event.what {
        Some(What::FileVersion(v)) => vec![LoggedValue::FileVersion(v)],
        Some(What::Summary(s)) => s.value.into_iter().map(logged_value).collect(),
        None => Vec::new(),
    };
    out.extend(values.into_iter().map(|value| EventRecord {
        wall_time,
        step,
        value,
    }));
}

fn logged_value(v: SummaryValue) -> LoggedValue {
    let plugin = v.plugin_name().map(str::to_string);
    let is_text = plugin.as_deref() == Some(TEXT_PLUGIN);
    if plugin.as_deref() == Some(hparams::PLUGIN_NAME) {
        let content = v.metadata.and_then(|m| m.plugin_data).map(|p| p.content);
        return match content.map(|c| HParamsPluginData::decode(c.as_slice())) {
            Some(Ok(data)) => LoggedValue::HParams { tag: v.tag, data },
            _ => LoggedValue::Other { tag: v.tag },
        };
    }
    let tag = v.tag;
    match v.value {
        Some(Value::Tensor(t)) if plugin.as_deref() == Some(layout::PLUGIN_NAME) => {
            match t.string_val.first().map(|b| Layout::decode(b.as_slice())) {
                Some(Ok(layout)) => LoggedValue::Layout { tag, layout },
                _ => LoggedValue::Other { tag },
            }
        }
        Some(Value::SimpleValue(value)) => LoggedValue::Scalar { tag, value },
        Some(Value::Histo(histogram)) => LoggedValue::Histogram { tag, histogram },
        Some(Value::Image(img)) => LoggedValue::Image {
            tag,
            width: u32::try_from(img.width).unwrap_or(0),
            height: u32::try_from(img.height).unwrap_or(0),
            png: img.encoded_image_string,
        },
        // TensorFlow writes the text plugin's metadata only on a tag's first
        // value, so a string tensor alone also counts as text.
        Some(Value::Tensor(t)) if is_text || t.dtype == DT_STRING => {
            let parts: Vec<String> = t
                .string_val
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            LoggedValue::Text {
                tag,
                text: parts.join("\n"),
            }
        }
        _ => LoggedValue::Other { tag },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::TensorBoardWriter;

    fn written_file(dir: &Path) -> PathBuf {
        let mut w = TensorBoardWriter::create(dir).unwrap();
        w.add_scalar("a", 1.0, 1).unwrap();
        w.add_text("b", "hello", 2).unwrap();
        w.add_scalar("a", 3.0, 3).unwrap();
        w.flush().unwrap();
        w.path().to_path_buf()
    }

    #[test]
    fn reads_a_single_file_and_a_folder_alike() {
        let dir = tempfile::tempdir().unwrap();
        let file = written_file(dir.path());
        fs::write(dir.path().join("notes.txt"), b"not an event file").unwrap();
        let from_file = read_events(&file).unwrap();
        let from_dir = read_events(dir.path()).unwrap();
        assert_eq!(from_file, from_dir);
        let tags: Vec<(i64, Option<&str>)> =
            from_file.iter().map(|e| (e.step, e.value.tag())).collect();
        assert_eq!(
            tags,
            vec![(0, None), (1, Some("a")), (2, Some("b")), (3, Some("a"))]
        );
    }

    /// Byte offsets where the records of `file` start.
    fn record_starts(file: &Path) -> Vec<usize> {
        let bytes = fs::read(file).unwrap();
        let mut starts = vec![0];
        while let Ok((_, end)) = crate::log::record::record_at(&bytes, *starts.last().unwrap()) {
            starts.push(end);
        }
        starts.pop();
        starts
    }

    #[test]
    fn a_corrupt_byte_is_reported_with_file_offset_and_step() {
        let dir = tempfile::tempdir().unwrap();
        let file = written_file(dir.path());
        let starts = record_starts(&file);
        let clean = fs::read(&file).unwrap();
        // A payload byte of the step-1 record (its step still legible), then a
        // length byte (its step known only from its neighbours).
        for (at, lost) in [
            (starts[1] + 20, "step 1"),
            (starts[1] + 1, "a step up to 2"),
        ] {
            let mut bytes = clean.clone();
            bytes[at] ^= 0xff;
            fs::write(&file, &bytes).unwrap();

            let err = read_events(&file).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(&err, LogError::Damaged(d) if d.offset == starts[1] as u64
                    && matches!(d.kind, DamageKind::Corrupt(_))),
                "{msg}"
            );
            assert!(
                msg.starts_with(&format!(
                    "{}: damaged record at byte offset {}",
                    file.display(),
                    starts[1]
                )),
                "{msg}"
            );
            assert!(msg.contains(lost), "{msg}");

            // The lenient reader keeps every other value.
            let log = read_event_log(&file).unwrap();
            let steps: Vec<i64> = log.events.iter().map(|e| e.step).collect();
            assert_eq!(steps, [0, 2, 3]);
            assert_eq!(log.damage.len(), 1);
            assert_eq!(log.damage[0].lost_step(), lost);
        }
    }

    #[test]
    fn a_cut_file_is_reported_as_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let file = written_file(dir.path());
        let bytes = fs::read(&file).unwrap();
        fs::write(&file, &bytes[..bytes.len() - 3]).unwrap();
        let err = read_events(&file).unwrap_err();
        assert!(
            matches!(&err, LogError::Damaged(d) if matches!(d.kind, DamageKind::CutShort(_))),
            "{err}"
        );
        assert!(err.to_string().contains("a step from 2 on"), "{err}");
        let log = read_event_log(&file).unwrap();
        assert_eq!(log.events.len(), 3);
    }

    #[test]
    fn intact_framing_around_garbage_is_an_undecodable_record() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("{EVENT_FILE_PREFIX}0.x"));
        let mut bytes = Vec::new();
        crate::log::record::write_record(&mut bytes, &[0xff, 0xff, 0xff]).unwrap();
        fs::write(&file, &bytes).unwrap();
        let err = read_events(&file).unwrap_err();
        assert!(
            matches!(&err, LogError::Damaged(d) if d.offset == 0
                && matches!(d.kind, DamageKind::Undecodable(_))),
            "{err}"
        );
    }

    /// Damage in two files of a folder: each is named, every intact value is kept.
    #[test]
    fn a_folder_keeps_what_is_intact_in_each_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = written_file(dir.path());
        let b = written_file(dir.path());
        for f in [&a, &b] {
            let mut bytes = fs::read(f).unwrap();
            let at = record_starts(f)[2] + 14;
            bytes[at] ^= 1;
            fs::write(f, bytes).unwrap();
        }
        let log = read_event_log(dir.path()).unwrap();
        let paths: Vec<&Path> = log.damage.iter().map(|d| d.path.as_path()).collect();
        assert_eq!(paths, [a.as_path(), b.as_path()]);
        assert_eq!(log.events.len(), 6);
        assert!(log.damage.iter().all(|d| d.lost_step() == "step 2"));
    }

    #[test]
    fn a_missing_path_names_it() {
        let err = read_events("/nonexistent/sinkscope/tb").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/sinkscope/tb"),
            "{err}"
        );
    }
}
