//! Training logs: TensorBoard event files and `metrics.jsonl`.
//!
//! A run writes `RUN/tb/events.out.tfevents.*` for people (TensorBoard's
//! scalars, histograms, images and text dashboards) and `RUN/metrics.jsonl`
//! for scripts. Both can be cut back to a checkpoint's step so that a resumed
//! run appends without duplicate or missing steps (`resume.rs`).
//!
//! # Why the event format is written by hand
//!
//! The `tensorboard-rs` crate (0.5.9) is unmaintained, panics on text and
//! histograms (`unimplemented!()`), and pulls protobuf 2.28, which has
//! advisory RUSTSEC-2024-0437. The format itself is small: TFRecord framing
//! with masked CRC32C checksums (`record.rs`, the `crc32c` crate) around
//! `Event` protobufs (`event.rs`, structs deriving `prost::Message` whose
//! field numbers are copied from tensorflow's `.proto` files — no `protoc`,
//! no build script). Our tests pin the bytes against TensorBoard's own
//! Python serializer and read every file back with CRC checks
//! (`reader.rs`).
//!
//! # Damaged logs
//! One lenient reader per format serves resume, the report and the tests: a
//! damaged event record is skipped by finding the next offset where both CRCs of
//! a record hold (`record.rs`, [`record::scan`]), a JSONL line that is not JSON is
//! skipped ([`jsonl::scan_jsonl`]), and each loss is described with its file and
//! step ([`reader::Damage`], [`jsonl::JsonlDamage`]) so callers can warn. A full
//! disk is an error naming the file ([`LogError::DiskFull`]); the writers leave
//! whole records only.
//!
//! # Files
//! - `tensorboard.rs`: [`TensorBoardWriter`].
//! - `event.rs`: the protobuf messages.
//! - `record.rs`: TFRecord framing.
//! - `histogram.rs`: values → `HistogramProto` (linear buckets).
//! - `hparams.rs`: the HParams plugin's records (a run's settings and final
//!   metrics, for comparing the runs of a sweep).
//! - `layout.rs`: the custom-scalars layout (one chart per metric, lines per
//!   layer).
//! - `progress.rs`: [`Progress`], a progress bar on a terminal and plain
//!   periodic lines elsewhere.
//! - `reader.rs`: [`read_event_log`] (lenient, for resume and the report) and
//!   [`read_events`] (strict, for tests).
//! - `resume.rs`: [`truncate_after`], [`truncate_jsonl_after`].
//! - `jsonl.rs`: [`JsonlWriter`].
//! - `image.rs`: [`RgbImage`] and PNG encoding; `plot.rs`: [`heatmap`],
//!   [`scatter`].
//! - `error.rs`: [`LogError`].

pub mod error;
pub mod event;
pub mod histogram;
pub mod hparams;
pub mod image;
pub mod jsonl;
pub mod layout;
pub mod plot;
pub mod progress;
pub mod reader;
pub mod record;
pub mod resume;
pub mod run_log;
pub mod tensorboard;

pub use error::LogError;
pub use image::RgbImage;
pub use jsonl::{scan_jsonl, JsonlDamage, JsonlWriter};
pub use layout::{Category, Chart, Layout};
pub use plot::{heatmap, scale_to_fit, scatter, viridis};
pub use progress::Progress;
pub use reader::{read_event_log, read_events, Damage, EventLog, EventRecord, LoggedValue};
pub use resume::{truncate_after, truncate_jsonl_after, TruncateReport};
pub use run_log::{RunLog, TagFilter};
pub use tensorboard::TensorBoardWriter;
