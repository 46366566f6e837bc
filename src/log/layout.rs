//! TensorBoard's custom-scalars layout: charts whose lines are many tags, so a
//! metric over all layers is one chart instead of one card per layer.
//!
//! The plugin reads a rank-0 `DT_STRING` tensor holding a serialized
//! [`Layout`] under the tag `custom_scalars__config__`, with plugin metadata
//! `"custom_scalars"` (`tensorboard/plugins/custom_scalar/metadata.py`:
//! `CONFIG_SUMMARY_TAG`, `PLUGIN_NAME`; the value as `summary.py`'s `pb` and
//! PyTorch's `custom_scalars` build it). When several runs carry a layout the
//! plugin merges them by category title, dropping duplicate charts, so every
//! run of a sweep can write its own.
//!
//! The messages mirror `tensorboard/plugins/custom_scalar/layout.proto`
//! (`Layout`, `Category`, `Chart`, `MultilineChartContent`); field numbers are
//! copied from it and checked against TensorBoard 2.21's `layout_pb2`.
//! A chart's tags are Python regular expressions matched from the start of the
//! tag (`custom_scalars_plugin.py`, `regex.match`); we anchor both ends.

use super::event::{
    PluginData, SummaryMetadata, SummaryValue, TensorProto, TensorShapeProto, Value, DT_STRING,
};

/// `metadata.py`: `PLUGIN_NAME = "custom_scalars"`.
pub const PLUGIN_NAME: &str = "custom_scalars";
/// `metadata.py`: `CONFIG_SUMMARY_TAG`, the tag the layout is stored under.
pub const CONFIG_TAG: &str = "custom_scalars__config__";

/// `layout.proto`, `message Layout`: the whole custom-scalars page.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Layout {
    /// `int32 version = 1;` 0 is the only version.
    #[prost(int32, tag = "1")]
    pub version: i32,
    /// `repeated Category category = 2;` rendered top to bottom.
    #[prost(message, repeated, tag = "2")]
    pub category: Vec<Category>,
}

/// `layout.proto`, `message Category`: a collapsible group of charts.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Category {
    /// `string title = 1;`
    #[prost(string, tag = "1")]
    pub title: String,
    /// `repeated Chart chart = 2;`
    #[prost(message, repeated, tag = "2")]
    pub chart: Vec<Chart>,
    /// `bool closed = 3;` collapsed when the page opens.
    #[prost(bool, tag = "3")]
    pub closed: bool,
}

/// `layout.proto`, `message Chart`. Of `oneof content` only
/// `MultilineChartContent multiline = 2;` is modelled (`margin = 3` is skipped
/// when decoding a layout another tool wrote).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chart {
    /// `string title = 1;`
    #[prost(string, tag = "1")]
    pub title: String,
    /// `MultilineChartContent multiline = 2;` (a member of `oneof content`).
    #[prost(message, optional, tag = "2")]
    pub multiline: Option<MultilineChartContent>,
}

/// `layout.proto`, `message MultilineChartContent`: one line per matching
/// (run, tag).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MultilineChartContent {
    /// `repeated string tag = 1;` regular expressions.
    #[prost(string, repeated, tag = "1")]
    pub tag: Vec<String>,
}

impl Chart {
    /// A line chart of every tag matching one of `patterns`.
    pub fn multiline(title: &str, patterns: Vec<String>) -> Self {
        Chart {
            title: title.to_string(),
            multiline: Some(MultilineChartContent { tag: patterns }),
        }
    }

    /// The chart's regular expressions.
    pub fn patterns(&self) -> &[String] {
        self.multiline.as_ref().map_or(&[], |m| m.tag.as_slice())
    }
}

impl Category {
    /// A category with one chart per *series* of `tags`: tags that differ only
    /// in their last index (`sink/rate/layer_00`, `sink/rate/layer_01`, … or
    /// `rmt/alpha/blocks.0.attn.q`, `rmt/alpha/blocks.1.attn.q`, …) share a
    /// chart whose lines are the indices; a tag without an index gets a chart
    /// of its own. Charts keep the order in which their first tag comes.
    pub fn of_series<S: AsRef<str>>(title: &str, closed: bool, tags: &[S]) -> Self {
        let mut chart: Vec<Chart> = Vec::new();
        for tag in tags {
            let (title, pattern) = series_of(tag.as_ref());
            if !chart.iter().any(|c| c.patterns() == [pattern.as_str()]) {
                chart.push(Chart::multiline(&title, vec![pattern]));
            }
        }
        Category {
            title: title.to_string(),
            chart,
            closed,
        }
    }
}

impl Layout {
    /// The layout's categories, version 0.
    pub fn new(category: Vec<Category>) -> Self {
        Layout {
            version: 0,
            category,
        }
    }

    /// The summary value the plugin reads: the serialized layout as a rank-0
    /// string tensor under [`CONFIG_TAG`].
    pub fn summary_value(&self) -> SummaryValue {
        SummaryValue {
            tag: CONFIG_TAG.to_string(),
            value: Some(Value::Tensor(TensorProto {
                dtype: DT_STRING,
                tensor_shape: Some(TensorShapeProto { dim: Vec::new() }),
                string_val: vec![prost::Message::encode_to_vec(self)],
            })),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: PLUGIN_NAME.to_string(),
                    content: Vec::new(),
                }),
                ..Default::default()
            }),
        }
    }
}

/// The chart title and anchored pattern of the series `tag` belongs to: its
/// last index replaced by `*` in the title and by `\d+` in the pattern.
///
/// An index is a path component `word_<digits>` (`layer_03`, `state_00`,
/// `head_07`) or a dot-separated run of digits after a word
/// (`blocks.2.attn.q`). Digits elsewhere (`fiedler_0.01`, `betti1`) are part
/// of the metric's name.
pub fn series_of(tag: &str) -> (String, String) {
    match last_index(tag) {
        Some((start, end)) => (
            format!("{}*{}", &tag[..start], &tag[end..]),
            format!("^{}\\d+{}$", escape(&tag[..start]), escape(&tag[end..])),
        ),
        None => (tag.to_string(), format!("^{}$", escape(tag))),
    }
}

/// Byte range of the digits of the last index in `tag`, if any.
fn last_index(tag: &str) -> Option<(usize, usize)> {
    let mut found = None;
    let mut offset = 0;
    for component in tag.split('/') {
        // `word_<digits>` as a whole component.
        if let Some((word, digits)) = component.rsplit_once('_') {
            if is_word(word) && is_digits(digits) {
                let end = offset + component.len();
                found = Some((end - digits.len(), end));
            }
        }
        // `<word>.<digits>` segments inside a dotted component.
        let mut seg_offset = offset;
        let mut prev: Option<&str> = None;
        for seg in component.split('.') {
            if prev.is_some_and(is_word) && is_digits(seg) {
                found = Some((seg_offset, seg_offset + seg.len()));
            }
            prev = Some(seg);
            seg_offset += seg.len() + 1;
        }
        offset += component.len() + 1;
    }
    found
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic() || c == '_')
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// `s` with Python regular-expression metacharacters escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::event::Event;
    use prost::Message;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn series_collapse_the_last_index_only() {
        let cases = [
            (
                "sink/rate/layer_03",
                "sink/rate/layer_*",
                r"^sink/rate/layer_\d+$",
            ),
            (
                "graph/fiedler_0.01/layer_12",
                "graph/fiedler_0.01/layer_*",
                r"^graph/fiedler_0\.01/layer_\d+$",
            ),
            (
                "topo/betti1_r0.5/layer_0",
                "topo/betti1_r0.5/layer_*",
                r"^topo/betti1_r0\.5/layer_\d+$",
            ),
            (
                "rmt/alpha/blocks.2.attn.q",
                "rmt/alpha/blocks.*.attn.q",
                r"^rmt/alpha/blocks\.\d+\.attn\.q$",
            ),
            (
                "sink/first_token_mass/layer_03/head_07",
                "sink/first_token_mass/layer_03/head_*",
                r"^sink/first_token_mass/layer_03/head_\d+$",
            ),
            (
                "sink/rate/layer_03/std",
                "sink/rate/layer_*/std",
                r"^sink/rate/layer_\d+/std$",
            ),
            (
                "massive/ratio/state_04",
                "massive/ratio/state_*",
                r"^massive/ratio/state_\d+$",
            ),
            ("sink/rate", "sink/rate", r"^sink/rate$"),
            ("rmt/alpha/embed", "rmt/alpha/embed", r"^rmt/alpha/embed$"),
            (
                "topo/betti1/layer_x1",
                "topo/betti1/layer_x1",
                r"^topo/betti1/layer_x1$",
            ),
        ];
        for (tag, title, pattern) in cases {
            assert_eq!(series_of(tag), (title.into(), pattern.into()), "{tag}");
        }
    }

    #[test]
    fn one_chart_per_metric_whose_lines_are_the_layers() {
        let tags = [
            "sink/rate",
            "sink/rate/layer_00",
            "sink/concentration/layer_00",
            "sink/rate/layer_01",
            "sink/concentration/layer_01",
        ];
        let c = Category::of_series("sinks", false, &tags);
        let charts: Vec<(&str, &[String])> = c
            .chart
            .iter()
            .map(|c| (c.title.as_str(), c.patterns()))
            .collect();
        assert_eq!(
            charts,
            vec![
                ("sink/rate", &[r"^sink/rate$".to_string()][..]),
                (
                    "sink/rate/layer_*",
                    &[r"^sink/rate/layer_\d+$".to_string()][..]
                ),
                (
                    "sink/concentration/layer_*",
                    &[r"^sink/concentration/layer_\d+$".to_string()][..]
                ),
            ]
        );
    }

    /// Bytes from TensorBoard 2.21's `layout_pb2` and `summary_pb2`:
    /// ```python
    /// lay = layout_pb2.Layout(category=[layout_pb2.Category(title='sinks', chart=[
    ///     layout_pb2.Chart(title='sink/rate/layer_*', multiline=
    ///         layout_pb2.MultilineChartContent(tag=[r'^sink/rate/layer_\d+$']))])])
    /// t = tensor_pb2.TensorProto(dtype=7, string_val=[lay.SerializeToString()],
    ///     tensor_shape=tensor_shape_pb2.TensorShapeProto())
    /// v = summary_pb2.Summary.Value(tag=metadata.CONFIG_SUMMARY_TAG,
    ///     metadata=metadata.create_summary_metadata(), tensor=t)
    /// event_pb2.Event(wall_time=1.0, step=0,
    ///     summary=summary_pb2.Summary(value=[v])).SerializeToString().hex()
    /// ```
    #[test]
    fn layout_event_matches_tensorboard_bytes() {
        let layout = Layout::new(vec![Category::of_series(
            "sinks",
            false,
            &["sink/rate/layer_00", "sink/rate/layer_01"],
        )]);
        let ev = Event::summary(1.0, 0, vec![layout.summary_value()]);
        assert_eq!(
            hex(&ev.encode_to_vec()),
            "09000000000000f03f2a6f0a6d0a18637573746f6d5f7363616c6172735f5f636f6e6669675f5f423d0807\
             1200423712350a0573696e6b73122c0a1173696e6b2f726174652f6c617965725f2a12170a155e73696e6b\
             2f726174652f6c617965725f5c642b244a120a100a0e637573746f6d5f7363616c617273"
        );
        // A closed category, as Python writes it (`closed=True` is field 3).
        let closed = Layout::new(vec![Category {
            title: "graph".into(),
            chart: vec![],
            closed: true,
        }]);
        assert_eq!(hex(&closed.encode_to_vec()), "12090a0567726170681801");
    }
}
