//! TensorBoard's HParams plugin data: which settings a run had and which of its
//! scalars are its final metrics, so the HParams dashboard can compare the runs
//! of a sweep in its table and parallel-coordinates views.
//!
//! The plugin reads three summary values, each a `SummaryMetadata` whose
//! `plugin_data` (plugin `"hparams"`) carries a serialized [`HParamsPluginData`]
//! and whose tensor is an empty float vector (`tensorboard/plugins/hparams/
//! metadata.py`: `PLUGIN_NAME`, `PLUGIN_DATA_VERSION = 0`, `NULL_TENSOR`, the
//! three `*_TAG` constants). The plugin keeps the *first* metadata of a tag in a
//! run, so each record is written once per run and never updated.
//!
//! The messages mirror `tensorboard/plugins/hparams/plugin_data.proto`
//! (`HParamsPluginData`, `SessionStartInfo`, `SessionEndInfo`),
//! `tensorboard/plugins/hparams/api.proto` (`Experiment`, `HParamInfo`,
//! `Interval`, `MetricName`, `MetricInfo`, enums `DataType`, `DatasetType`,
//! `Status`) and `google/protobuf/struct.proto` (`Value`, `ListValue`); the
//! field numbers in `tag = "…"` are copied from those files (cited per field)
//! and checked against the descriptors compiled into TensorBoard 2.21's
//! `api_pb2`/`plugin_data_pb2`, and our tests compare bytes with theirs.

use std::collections::BTreeMap;

use super::event::{Dim, PluginData};
use super::event::{SummaryMetadata, SummaryValue, TensorProto, TensorShapeProto, Value};

/// `metadata.py`: `PLUGIN_NAME = "hparams"`.
pub const PLUGIN_NAME: &str = "hparams";
/// `metadata.py`: `PLUGIN_DATA_VERSION = 0`, the only version the plugin reads.
pub const PLUGIN_DATA_VERSION: i32 = 0;
/// `metadata.py`: `EXPERIMENT_TAG`, the hyperparameters and metrics to show.
pub const EXPERIMENT_TAG: &str = "_hparams_/experiment";
/// `metadata.py`: `SESSION_START_INFO_TAG`, one run's hyperparameter values.
pub const SESSION_START_INFO_TAG: &str = "_hparams_/session_start_info";
/// `metadata.py`: `SESSION_END_INFO_TAG`, how the run ended.
pub const SESSION_END_INFO_TAG: &str = "_hparams_/session_end_info";

/// `types.proto`, `enum DataType`: `DT_FLOAT = 1` (the empty tensor's type).
const DT_FLOAT: i32 = 1;

/// `api.proto`, `enum DataType`.
pub mod data_type {
    /// `DATA_TYPE_UNSET = 0;`
    pub const UNSET: i32 = 0;
    /// `DATA_TYPE_STRING = 1;`
    pub const STRING: i32 = 1;
    /// `DATA_TYPE_BOOL = 2;`
    pub const BOOL: i32 = 2;
    /// `DATA_TYPE_FLOAT64 = 3;`
    pub const FLOAT64: i32 = 3;
}

/// `api.proto`, `enum DatasetType`.
pub mod dataset_type {
    /// `DATASET_UNKNOWN = 0;`
    pub const UNKNOWN: i32 = 0;
    /// `DATASET_TRAINING = 1;`
    pub const TRAINING: i32 = 1;
    /// `DATASET_VALIDATION = 2;`
    pub const VALIDATION: i32 = 2;
}

/// `api.proto`, `enum Status`: how a session ended.
pub mod status {
    /// `STATUS_UNKNOWN = 0;`
    pub const UNKNOWN: i32 = 0;
    /// `STATUS_SUCCESS = 1;`
    pub const SUCCESS: i32 = 1;
    /// `STATUS_FAILURE = 2;`
    pub const FAILURE: i32 = 2;
    /// `STATUS_RUNNING = 3;`
    pub const RUNNING: i32 = 3;
}

/// `plugin_data.proto`, `message HParamsPluginData`: the content of the
/// plugin's `SummaryMetadata.plugin_data`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamsPluginData {
    /// `int32 version = 1;` always [`PLUGIN_DATA_VERSION`].
    #[prost(int32, tag = "1")]
    pub version: i32,
    /// `oneof data { … }`.
    #[prost(oneof = "HParamsData", tags = "2, 3, 4")]
    pub data: Option<HParamsData>,
}

/// `plugin_data.proto`, `HParamsPluginData.oneof data`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HParamsData {
    /// `Experiment experiment = 2;`
    #[prost(message, tag = "2")]
    Experiment(Experiment),
    /// `SessionStartInfo session_start_info = 3;`
    #[prost(message, tag = "3")]
    SessionStartInfo(SessionStartInfo),
    /// `SessionEndInfo session_end_info = 4;`
    #[prost(message, tag = "4")]
    SessionEndInfo(SessionEndInfo),
}

/// `plugin_data.proto`, `message SessionStartInfo`: one run's settings.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionStartInfo {
    /// `map<string, google.protobuf.Value> hparams = 1;` (a BTreeMap, so the
    /// bytes do not depend on hashing).
    #[prost(btree_map = "string, message", tag = "1")]
    pub hparams: BTreeMap<String, ProtoValue>,
    /// `string model_uri = 2;` where the checkpoints are.
    #[prost(string, tag = "2")]
    pub model_uri: String,
    /// `string monitor_url = 3;`
    #[prost(string, tag = "3")]
    pub monitor_url: String,
    /// `string group_name = 4;` empty: the session is its own group.
    #[prost(string, tag = "4")]
    pub group_name: String,
    /// `double start_time_secs = 5;`
    #[prost(double, tag = "5")]
    pub start_time_secs: f64,
}

/// `plugin_data.proto`, `message SessionEndInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionEndInfo {
    /// `Status status = 1;` see [`status`].
    #[prost(int32, tag = "1")]
    pub status: i32,
    /// `double end_time_secs = 2;`
    #[prost(double, tag = "2")]
    pub end_time_secs: f64,
}

/// `api.proto`, `message Experiment`: the columns of the HParams dashboard.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Experiment {
    /// `string description = 1;` markdown.
    #[prost(string, tag = "1")]
    pub description: String,
    /// `string user = 2;`
    #[prost(string, tag = "2")]
    pub user: String,
    /// `double time_created_secs = 3;`
    #[prost(double, tag = "3")]
    pub time_created_secs: f64,
    /// `repeated HParamInfo hparam_infos = 4;`
    #[prost(message, repeated, tag = "4")]
    pub hparam_infos: Vec<HParamInfo>,
    /// `repeated MetricInfo metric_infos = 5;`
    #[prost(message, repeated, tag = "5")]
    pub metric_infos: Vec<MetricInfo>,
    /// `string name = 6;`
    #[prost(string, tag = "6")]
    pub name: String,
}

/// `api.proto`, `message HParamInfo`: one hyperparameter column.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamInfo {
    /// `string name = 1;` the key in [`SessionStartInfo::hparams`].
    #[prost(string, tag = "1")]
    pub name: String,
    /// `string display_name = 2;`
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// `string description = 3;`
    #[prost(string, tag = "3")]
    pub description: String,
    /// `DataType type = 4;` see [`data_type`].
    #[prost(int32, tag = "4")]
    pub r#type: i32,
    /// `oneof domain { … }`: the values the UI offers as filters.
    #[prost(oneof = "Domain", tags = "5, 6")]
    pub domain: Option<Domain>,
    /// `bool differs = 7;` whether the sessions' values differ (the UI lists
    /// those columns first).
    #[prost(bool, tag = "7")]
    pub differs: bool,
}

/// `api.proto`, `HParamInfo.oneof domain`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Domain {
    /// `google.protobuf.ListValue domain_discrete = 5;`
    #[prost(message, tag = "5")]
    Discrete(ListValue),
    /// `Interval domain_interval = 6;`
    #[prost(message, tag = "6")]
    Interval(Interval),
}

/// `api.proto`, `message Interval`: `[min_value, max_value]`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Interval {
    /// `double min_value = 1;`
    #[prost(double, tag = "1")]
    pub min_value: f64,
    /// `double max_value = 2;`
    #[prost(double, tag = "2")]
    pub max_value: f64,
}

/// `api.proto`, `message MetricName`: a scalar tag in the session's run
/// (`group` is a sub-folder of it; empty for the run itself).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricName {
    /// `string group = 1;`
    #[prost(string, tag = "1")]
    pub group: String,
    /// `string tag = 2;`
    #[prost(string, tag = "2")]
    pub tag: String,
}

/// `api.proto`, `message MetricInfo`: one metric column; its value for a
/// session is the last value of that scalar tag.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricInfo {
    /// `MetricName name = 1;`
    #[prost(message, optional, tag = "1")]
    pub name: Option<MetricName>,
    /// `string display_name = 3;`
    #[prost(string, tag = "3")]
    pub display_name: String,
    /// `string description = 4;`
    #[prost(string, tag = "4")]
    pub description: String,
    /// `DatasetType dataset_type = 5;` see [`dataset_type`].
    #[prost(int32, tag = "5")]
    pub dataset_type: i32,
}

/// `struct.proto`, `message Value` (without `struct_value = 5`, which
/// hyperparameters never hold).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoValue {
    /// `oneof kind { … }`.
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 6")]
    pub kind: Option<Kind>,
}

/// `struct.proto`, `Value.oneof kind`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// `NullValue null_value = 1;`
    #[prost(int32, tag = "1")]
    Null(i32),
    /// `double number_value = 2;`
    #[prost(double, tag = "2")]
    Number(f64),
    /// `string string_value = 3;`
    #[prost(string, tag = "3")]
    String(String),
    /// `bool bool_value = 4;`
    #[prost(bool, tag = "4")]
    Bool(bool),
    /// `ListValue list_value = 6;`
    #[prost(message, tag = "6")]
    List(ListValue),
}

/// `struct.proto`, `message ListValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListValue {
    /// `repeated Value values = 1;`
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<ProtoValue>,
}

impl ProtoValue {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Self {
        Self {
            kind: Some(Kind::String(s.into())),
        }
    }

    /// A number value (the plugin's `DATA_TYPE_FLOAT64`).
    pub fn number(x: f64) -> Self {
        Self {
            kind: Some(Kind::Number(x)),
        }
    }

    /// A boolean value.
    pub fn bool(b: bool) -> Self {
        Self {
            kind: Some(Kind::Bool(b)),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Some(Kind::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self.kind {
            Some(Kind::Number(x)) => Some(x),
            _ => None,
        }
    }

    /// The plugin's data type of this value (`UNSET` for null and lists).
    fn data_type(&self) -> i32 {
        match self.kind {
            Some(Kind::String(_)) => data_type::STRING,
            Some(Kind::Number(_)) => data_type::FLOAT64,
            Some(Kind::Bool(_)) => data_type::BOOL,
            _ => data_type::UNSET,
        }
    }
}

impl HParamInfo {
    /// The column of hyperparameter `name` whose sessions hold `values`: its
    /// type (one shared type, else string, as the plugin itself infers it
    /// when no experiment is written), a discrete domain of the distinct
    /// values (strings, booleans) or the interval they span (numbers), and
    /// whether they differ.
    pub fn from_values(name: &str, display_name: &str, values: &[ProtoValue]) -> Self {
        let types: Vec<i32> = values
            .iter()
            .map(ProtoValue::data_type)
            .filter(|&t| t != data_type::UNSET)
            .collect();
        let ty = match types.first() {
            None => data_type::UNSET,
            Some(&t) if types.iter().all(|&u| u == t) => t,
            Some(_) => data_type::STRING,
        };
        let mut distinct: Vec<ProtoValue> = Vec::new();
        for v in values {
            let v = match (ty, &v.kind) {
                (data_type::STRING, Some(Kind::Number(x))) => ProtoValue::string(x.to_string()),
                (data_type::STRING, Some(Kind::Bool(b))) => ProtoValue::string(b.to_string()),
                _ => v.clone(),
            };
            if v.data_type() != data_type::UNSET && !distinct.contains(&v) {
                distinct.push(v);
            }
        }
        let differs = distinct.len() > 1;
        let domain = if ty == data_type::FLOAT64 {
            let xs = distinct.iter().filter_map(ProtoValue::as_f64);
            let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
                (lo.min(x), hi.max(x))
            });
            (lo <= hi).then_some(Domain::Interval(Interval {
                min_value: lo,
                max_value: hi,
            }))
        } else if ty == data_type::UNSET {
            None
        } else {
            Some(Domain::Discrete(ListValue { values: distinct }))
        };
        HParamInfo {
            name: name.to_string(),
            display_name: display_name.to_string(),
            description: String::new(),
            r#type: ty,
            domain,
            differs,
        }
    }
}

impl MetricInfo {
    /// A metric column reading scalar `tag` of the session's own run.
    pub fn scalar(tag: &str, display_name: &str, description: &str, dataset: i32) -> Self {
        MetricInfo {
            name: Some(MetricName {
                group: String::new(),
                tag: tag.to_string(),
            }),
            display_name: display_name.to_string(),
            description: description.to_string(),
            dataset_type: dataset,
        }
    }
}

impl HParamsPluginData {
    /// Wraps `data` at the plugin's version.
    pub fn new(data: HParamsData) -> Self {
        HParamsPluginData {
            version: PLUGIN_DATA_VERSION,
            data: Some(data),
        }
    }

    /// The tag the plugin looks for this record under.
    pub fn tag(&self) -> &'static str {
        match self.data {
            Some(HParamsData::Experiment(_)) => EXPERIMENT_TAG,
            Some(HParamsData::SessionStartInfo(_)) => SESSION_START_INFO_TAG,
            Some(HParamsData::SessionEndInfo(_)) | None => SESSION_END_INFO_TAG,
        }
    }

    /// The summary value TensorBoard's own `hparams` summary writer produces:
    /// the data in the metadata, an empty float tensor as the value.
    pub fn summary_value(&self) -> SummaryValue {
        SummaryValue {
            tag: self.tag().to_string(),
            value: Some(Value::Tensor(TensorProto {
                dtype: DT_FLOAT,
                tensor_shape: Some(TensorShapeProto {
                    dim: vec![Dim { size: 0 }],
                }),
                string_val: Vec::new(),
            })),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: PLUGIN_NAME.to_string(),
                    content: prost::Message::encode_to_vec(self),
                }),
                ..Default::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::event::Event;
    use prost::Message;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn start(hparams: &[(&str, ProtoValue)]) -> HParamsPluginData {
        HParamsPluginData::new(HParamsData::SessionStartInfo(SessionStartInfo {
            hparams: hparams
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            start_time_secs: 2.0,
            ..Default::default()
        }))
    }

    /// Reference bytes from TensorBoard 2.21's Python protos (protobuf 7):
    /// ```python
    /// ssi = plugin_data_pb2.SessionStartInfo(start_time_secs=2.0)
    /// ssi.hparams['model.position.kind'].string_value = 'rope'
    /// d = plugin_data_pb2.HParamsPluginData(version=0, session_start_info=ssi)
    /// v = summary_pb2.Summary.Value(tag=metadata.SESSION_START_INFO_TAG,
    ///     metadata=metadata.create_summary_metadata(d), tensor=metadata.NULL_TENSOR)
    /// event_pb2.Event(wall_time=1.0, step=0,
    ///     summary=summary_pb2.Summary(value=[v])).SerializeToString().hex()
    /// ```
    #[test]
    fn session_start_event_matches_tensorboard_bytes() {
        let data = start(&[("model.position.kind", ProtoValue::string("rope"))]);
        let ev = Event::summary(1.0, 0, vec![data.summary_value()]);
        assert_eq!(
            hex(&ev.encode_to_vec()),
            "09000000000000f03f2a610a5f0a1c5f68706172616d735f2f73657373696f6e5f73746172745f696e666f\
             42060801120212004a370a350a0768706172616d73122a1a280a1d0a136d6f64656c2e706f736974696f6e\
             2e6b696e6412061a04726f7065290000000000000040"
        );
    }

    #[test]
    fn session_end_and_experiment_match_tensorboard_bytes() {
        // HParamsPluginData(session_end_info=SessionEndInfo(status=STATUS_SUCCESS,
        //   end_time_secs=3.0)).SerializeToString().hex()
        let end = HParamsPluginData::new(HParamsData::SessionEndInfo(SessionEndInfo {
            status: status::SUCCESS,
            end_time_secs: 3.0,
        }));
        assert_eq!(hex(&end.encode_to_vec()), "220b0801110000000000000840");

        // exp = api_pb2.Experiment(time_created_secs=1.0)
        // h = exp.hparam_infos.add(name='model.position.kind', display_name='position',
        //     type=DATA_TYPE_STRING, differs=True); h.domain_discrete.extend(['rope', 'alibi'])
        // h2 = exp.hparam_infos.add(name='train.lr', type=DATA_TYPE_FLOAT64)
        // h2.domain_interval.min_value = 0.001; h2.domain_interval.max_value = 0.002
        // exp.metric_infos.add(name=MetricName(tag='train/heldout_loss'),
        //     display_name='held-out loss', dataset_type=DATASET_VALIDATION)
        let pe = HParamInfo::from_values(
            "model.position.kind",
            "position",
            &[
                ProtoValue::string("rope"),
                ProtoValue::string("alibi"),
                ProtoValue::string("rope"),
            ],
        );
        let lr = HParamInfo::from_values(
            "train.lr",
            "",
            &[ProtoValue::number(0.002), ProtoValue::number(0.001)],
        );
        // Two distinct values differ; the Python message above leaves `differs` unset.
        assert!(lr.differs);
        let lr = HParamInfo {
            differs: false,
            ..lr
        };
        let exp = HParamsPluginData::new(HParamsData::Experiment(Experiment {
            time_created_secs: 1.0,
            hparam_infos: vec![pe, lr],
            metric_infos: vec![MetricInfo::scalar(
                "train/heldout_loss",
                "held-out loss",
                "",
                dataset_type::VALIDATION,
            )],
            ..Default::default()
        }));
        assert_eq!(
            hex(&exp.encode_to_vec()),
            "128c0119000000000000f03f22360a136d6f64656c2e706f736974696f6e2e6b696e641208706f73697469\
             6f6e20012a110a061a04726f70650a071a05616c696269380122200a08747261696e2e6c722003321209fc\
             a9f1d24d62503f11fca9f1d24d62603f2a270a141212747261696e2f68656c646f75745f6c6f73731a0d68\
             656c642d6f7574206c6f73732802"
        );
    }

    #[test]
    fn python_map_order_decodes_to_the_same_session() {
        // Python wrote the map entries in insertion order (kind, bos, n_layers);
        // we write them sorted. Both decode to the same message.
        let py = unhex(
            "1a550a1d0a136d6f64656c2e706f736974696f6e2e6b696e6412061a04726f70650a0e0a08646174612e\
             626f73120220010a1b0a0e6d6f64656c2e6e5f6c61796572731209110000000000001040290000000000\
             000040",
        );
        let decoded = HParamsPluginData::decode(py.as_slice()).unwrap();
        let ours = start(&[
            ("model.position.kind", ProtoValue::string("rope")),
            ("data.bos", ProtoValue::bool(true)),
            ("model.n_layers", ProtoValue::number(4.0)),
        ]);
        assert_eq!(decoded, ours);
        assert_eq!(ours.tag(), SESSION_START_INFO_TAG);
    }

    #[test]
    fn column_types_and_domains_follow_the_values() {
        let n = HParamInfo::from_values(
            "model.n_layers",
            "n_layers",
            &[ProtoValue::number(4.0), ProtoValue::number(2.0)],
        );
        assert_eq!(n.r#type, data_type::FLOAT64);
        assert_eq!(
            n.domain,
            Some(Domain::Interval(Interval {
                min_value: 2.0,
                max_value: 4.0
            }))
        );
        assert!(n.differs);
        let same = HParamInfo::from_values("seed", "", &vec![ProtoValue::number(1.0); 3]);
        assert!(!same.differs);
        let mixed =
            HParamInfo::from_values("x", "", &[ProtoValue::number(1.0), ProtoValue::string("a")]);
        assert_eq!(mixed.r#type, data_type::STRING);
        assert_eq!(
            mixed.domain,
            Some(Domain::Discrete(ListValue {
                values: vec![ProtoValue::string("1"), ProtoValue::string("a")]
            }))
        );
        let b = HParamInfo::from_values("b", "", &[ProtoValue::bool(true)]);
        assert_eq!(b.r#type, data_type::BOOL);
        assert_eq!(HParamInfo::from_values("e", "", &[]).domain, None);
    }
}
