//! Reads event files back: framing checked with both CRCs, each `Event`
//! decoded and flattened into one [`EventRecord`] per logged value.
//!
//! Used by our tests (does what we wrote say what we meant?) and by resume
//! (which steps are already logged?).

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use prost::Message;

use super::event::{Event, HistogramProto, SummaryValue, Value, What, DT_STRING, TEXT_PLUGIN};
use super::hparams::{self, HParamsPluginData};
use super::layout::{self, Layout};
use super::record::{Record, RecordReader};
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

/// Every value in an event file, or in all event files of a folder (in
/// file order), with an error naming the file and byte offset at the first
/// corrupt, truncated or undecodable record.
pub fn read_events(path_or_dir: impl AsRef<Path>) -> Result<Vec<EventRecord>, LogError> {
    let path = path_or_dir.as_ref();
    let files = if path.is_dir() {
        event_files(path)?
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    for file in &files {
        let mut reader = open_records(file)?;
        while let Some(record) = reader.next_record()? {
            flatten(decode_event(file, &record)?, &mut out);
        }
    }
    Ok(out)
}

/// A record reader over `path`, buffered.
pub(crate) fn open_records(path: &Path) -> Result<RecordReader<BufReader<File>>, LogError> {
    let file = File::open(path).map_err(|e| LogError::io("cannot open", path, e))?;
    Ok(RecordReader::new(BufReader::new(file), path))
}

/// Decodes a record's payload as an `Event`, naming file and offset on
/// failure.
pub(crate) fn decode_event(path: &Path, record: &Record) -> Result<Event, LogError> {
    Event::decode(record.payload.as_slice()).map_err(|source| LogError::Decode {
        path: path.to_path_buf(),
        offset: record.offset,
        source,
    })
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

    #[test]
    fn a_corrupt_byte_is_reported_with_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let file = written_file(dir.path());
        let mut bytes = fs::read(&file).unwrap();
        // Find the second record's start (end of the file_version record).
        let mut r = RecordReader::new(bytes.as_slice(), &file);
        let first = r.next_record().unwrap().unwrap();
        let second_start = first.end() as usize;
        bytes[second_start + 14] ^= 0xff; // inside the second payload
        fs::write(&file, &bytes).unwrap();

        let err = read_events(&file).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, LogError::Corrupt { offset, .. } if offset == second_start as u64),
            "{msg}"
        );
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("byte offset {second_start}")),
            "{msg}"
        );
    }

    #[test]
    fn a_cut_file_is_reported_as_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let file = written_file(dir.path());
        let bytes = fs::read(&file).unwrap();
        fs::write(&file, &bytes[..bytes.len() - 3]).unwrap();
        let err = read_events(&file).unwrap_err();
        assert!(matches!(err, LogError::Truncated { .. }), "{err}");
    }

    #[test]
    fn intact_framing_around_garbage_is_a_decode_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("{EVENT_FILE_PREFIX}0.x"));
        let mut bytes = Vec::new();
        crate::log::record::write_record(&mut bytes, &[0xff, 0xff, 0xff]).unwrap();
        fs::write(&file, &bytes).unwrap();
        let err = read_events(&file).unwrap_err();
        assert!(matches!(err, LogError::Decode { offset: 0, .. }), "{err}");
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
