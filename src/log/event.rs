//! The protobuf messages of TensorBoard's event files, written by hand.
//!
//! These structs mirror only the fields sinkscope writes or reads of
//! tensorflow's protos, as stored in `tensorflow/tensorboard` under
//! `tensorboard/compat/proto/`: `event.proto`, `summary.proto`,
//! `histogram.proto`, `tensor.proto`, `tensor_shape.proto` and `types.proto`.
//! The field numbers in the `tag = "…"` attributes are copied from those
//! files (cited per field); the names are the proto names in snake case.
//! Fields we leave out are skipped by prost when decoding, so files written
//! by other tools still decode.
//!
//! Deriving `prost::Message` on hand-written structs needs no `protoc` and no
//! build script.

/// `types.proto`, `enum DataType`: `DT_STRING = 7`.
pub const DT_STRING: i32 = 7;

/// `summary.proto`, `Summary.Image.colorspace`: `3 - RGB`.
pub const COLORSPACE_RGB: i32 = 3;

/// The `file_version` TensorBoard expects in the first event of a file
/// (`event.proto`: "Current version is \"brain.Event:2\"").
pub const FILE_VERSION: &str = "brain.Event:2";

/// Name of TensorBoard's text plugin (`tensorboard/plugins/text/metadata.py`,
/// `PLUGIN_NAME = 'text'`).
pub const TEXT_PLUGIN: &str = "text";

/// `event.proto`, `message Event`: one record of an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// `double wall_time = 1;` seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// `int64 step = 2;` the global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// `oneof what` (only the members we use).
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

/// `event.proto`, `Event.oneof what`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// `string file_version = 3;` first event of every file.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// `Summary summary = 5;`
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `summary.proto`, `message Summary`: the values logged at one step.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// `repeated Value value = 1;`
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `summary.proto`, `message Summary.Value`: one tagged value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// `string tag = 1;`
    #[prost(string, tag = "1")]
    pub tag: String,
    /// `oneof value` (only the members we use).
    #[prost(oneof = "Value", tags = "2, 4, 5, 8")]
    pub value: Option<Value>,
    /// `SummaryMetadata metadata = 9;` which plugin reads this value.
    /// (Declared after `value` so prost writes fields in field-number order,
    /// byte for byte as TensorFlow's own serializer does.)
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
}

/// `summary.proto`, `Summary.Value.oneof value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    /// `float simple_value = 2;` a scalar for the scalars dashboard.
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    /// `Image image = 4;`
    #[prost(message, tag = "4")]
    Image(SummaryImage),
    /// `HistogramProto histo = 5;`
    #[prost(message, tag = "5")]
    Histo(HistogramProto),
    /// `TensorProto tensor = 8;` used for text.
    #[prost(message, tag = "8")]
    Tensor(TensorProto),
}

/// `summary.proto`, `message Summary.Image`: an encoded image.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryImage {
    /// `int32 height = 1;`
    #[prost(int32, tag = "1")]
    pub height: i32,
    /// `int32 width = 2;`
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// `int32 colorspace = 3;` 3 is RGB.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    /// `bytes encoded_image_string = 4;` PNG bytes here.
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// `summary.proto`, `message SummaryMetadata`: ties a value to a plugin.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    /// `PluginData plugin_data = 1;`
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
    /// `string display_name = 2;`
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// `string summary_description = 3;`
    #[prost(string, tag = "3")]
    pub summary_description: String,
}

/// `summary.proto`, `message SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    /// `string plugin_name = 1;`
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    /// `bytes content = 2;` plugin-specific; the text plugin's
    /// `TextPluginData(version=0)` serializes to no bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// `histogram.proto`, `message HistogramProto`. Bucket `i` counts values in
/// `(bucket_limit[i-1], bucket_limit[i]]` (the first from `-DBL_MAX`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HistogramProto {
    /// `double min = 1;`
    #[prost(double, tag = "1")]
    pub min: f64,
    /// `double max = 2;`
    #[prost(double, tag = "2")]
    pub max: f64,
    /// `double num = 3;` number of values.
    #[prost(double, tag = "3")]
    pub num: f64,
    /// `double sum = 4;`
    #[prost(double, tag = "4")]
    pub sum: f64,
    /// `double sum_squares = 5;`
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    /// `repeated double bucket_limit = 6 [packed = true];` right edges.
    #[prost(double, repeated, packed = "true", tag = "6")]
    pub bucket_limit: Vec<f64>,
    /// `repeated double bucket = 7 [packed = true];` counts.
    #[prost(double, repeated, packed = "true", tag = "7")]
    pub bucket: Vec<f64>,
}

/// `tensor.proto`, `message TensorProto` (only what a string tensor needs).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// `DataType dtype = 1;` see [`DT_STRING`].
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    /// `TensorShapeProto tensor_shape = 2;`
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    /// `repeated bytes string_val = 8;` values for `DT_STRING`.
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

/// `tensor_shape.proto`, `message TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// `repeated Dim dim = 2;` no dims is a scalar (rank 0).
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
}

/// `tensor_shape.proto`, `message TensorShapeProto.Dim`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dim {
    /// `int64 size = 1;`
    #[prost(int64, tag = "1")]
    pub size: i64,
}

impl Event {
    /// The first event of every file, which TensorBoard uses to recognise
    /// the file format.
    pub fn file_version(wall_time: f64) -> Self {
        Event {
            wall_time,
            step: 0,
            what: Some(What::FileVersion(FILE_VERSION.to_string())),
        }
    }

    /// An event carrying `values` at `step`.
    pub fn summary(wall_time: f64, step: i64, values: Vec<SummaryValue>) -> Self {
        Event {
            wall_time,
            step,
            what: Some(What::Summary(Summary { value: values })),
        }
    }
}

impl SummaryValue {
    /// A scalar for the scalars dashboard (`simple_value` is a 32-bit float).
    pub fn scalar(tag: &str, value: f64) -> Self {
        Self::plain(tag, Value::SimpleValue(value as f32))
    }

    /// A histogram for the histograms and distributions dashboards.
    pub fn histogram(tag: &str, histo: HistogramProto) -> Self {
        Self::plain(tag, Value::Histo(histo))
    }

    /// An RGB PNG image for the images dashboard.
    pub fn png_image(tag: &str, width: u32, height: u32, png: Vec<u8>) -> Self {
        Self::plain(
            tag,
            Value::Image(SummaryImage {
                height: i32::try_from(height).unwrap_or(i32::MAX),
                width: i32::try_from(width).unwrap_or(i32::MAX),
                colorspace: COLORSPACE_RGB,
                encoded_image_string: png,
            }),
        )
    }

    /// Markdown text for the text dashboard: a rank-0 `DT_STRING` tensor
    /// tagged for the text plugin (a rank-0 tensor is rendered as one
    /// markdown block; rank 1 would be rendered as a table).
    pub fn text(tag: &str, text: &str) -> Self {
        SummaryValue {
            tag: tag.to_string(),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: TEXT_PLUGIN.to_string(),
                    content: Vec::new(),
                }),
                ..Default::default()
            }),
            value: Some(Value::Tensor(TensorProto {
                dtype: DT_STRING,
                tensor_shape: Some(TensorShapeProto { dim: Vec::new() }),
                string_val: vec![text.as_bytes().to_vec()],
            })),
        }
    }

    fn plain(tag: &str, value: Value) -> Self {
        SummaryValue {
            tag: tag.to_string(),
            metadata: None,
            value: Some(value),
        }
    }

    /// The plugin named in this value's metadata, if any.
    pub fn plugin_name(&self) -> Option<&str> {
        self.metadata
            .as_ref()
            .and_then(|m| m.plugin_data.as_ref())
            .map(|p| p.plugin_name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Bytes of `Event(wall_time=1.5, step=0, file_version="brain.Event:2")`
    /// as serialized by TensorBoard 2.21's Python `event_pb2` (protobuf 7.36),
    /// `ev.SerializeToString().hex()`.
    const FILE_VERSION_EVENT_HEX: &str = "09000000000000f83f1a0d627261696e2e4576656e743a32";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn file_version_event_matches_tensorflow_bytes() {
        let bytes = Event::file_version(1.5).encode_to_vec();
        assert_eq!(hex(&bytes), FILE_VERSION_EVENT_HEX);
    }

    #[test]
    fn scalar_event_matches_tensorflow_bytes() {
        // Event(wall_time=2.0, step=7, summary=Summary(value=[
        //   Summary.Value(tag="loss", simple_value=0.5)])), from Python.
        let ev = Event::summary(2.0, 7, vec![SummaryValue::scalar("loss", 0.5)]);
        assert_eq!(
            hex(&ev.encode_to_vec()),
            "09000000000000004010072a0d0a0b0a046c6f7373150000003f"
        );
    }

    #[test]
    fn text_event_matches_tensorflow_bytes() {
        // Event(wall_time=1.0, step=3, summary=Summary(value=[Summary.Value(
        //   tag="t", metadata=SummaryMetadata(plugin_data=PluginData(
        //   plugin_name="text")), tensor=TensorProto(dtype=7,
        //   tensor_shape=TensorShapeProto(), string_val=[b"hi"]))])), from Python.
        let ev = Event::summary(1.0, 3, vec![SummaryValue::text("t", "hi")]);
        assert_eq!(
            hex(&ev.encode_to_vec()),
            "09000000000000f03f10032a190a170a0174420808071200420268694a080a060a0474657874"
        );
        let back = Event::decode(ev.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, ev);
        let Some(What::Summary(s)) = back.what else {
            panic!("no summary")
        };
        assert_eq!(s.value[0].plugin_name(), Some("text"));
    }

    #[test]
    fn unknown_fields_are_skipped() {
        // An Event with graph_def (field 4, bytes) and source_metadata
        // (field 10): fields we do not model must not break decoding.
        let mut bytes = Event::file_version(1.0).encode_to_vec();
        bytes.extend_from_slice(&[0x22, 0x02, 0xaa, 0xbb]);
        bytes.extend_from_slice(&[0x52, 0x02, 0x0a, 0x00]);
        let ev = Event::decode(bytes.as_slice()).unwrap();
        assert_eq!(ev.wall_time, 1.0);
    }
}
