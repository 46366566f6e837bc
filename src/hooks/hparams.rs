//! What a run tells TensorBoard's HParams dashboard: its settings (the main
//! recipe fields and every field its sweep varies) as hyperparameters, and its
//! final metrics (held-out loss, sink rate, first-token mass, frame type) as
//! metric columns, so the runs of a position-encoding sweep compare at a glance.
//!
//! Settings are read from the recipe's own serialization, flattened to the
//! dotted keys `--set` uses (`model.position.kind`), so a field the sweep
//! varies is found whatever its name. The metrics are scalars the hooks
//! already log; the dashboard shows their last value.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::analysis::names;
use crate::log::hparams::{
    dataset_type, status, Experiment, HParamInfo, HParamsData, HParamsPluginData, MetricInfo,
    ProtoValue, SessionEndInfo, SessionStartInfo,
};
use crate::model::ModelConfig;
use crate::train::Recipe;

/// Recipe fields every training run records, with their column titles.
pub const MAIN_TRAINING_HPARAMS: [(&str, &str); 8] = [
    ("model.position.kind", "position"),
    ("model.arch", "arch"),
    ("model.d_model", "d_model"),
    ("model.n_layers", "n_layers"),
    ("model.n_heads", "n_heads"),
    ("train.lr", "lr"),
    ("seed", "seed"),
    ("train.steps", "steps"),
];

/// `(tag, title, description)` of the final metrics of a run's attention.
const ATTENTION_METRICS: [(&str, &str, &str); 3] = [
    (
        names::SINK_RATE,
        "sink rate %",
        "share of heads whose first-token score exceeds ε (Gu et al.), mean over layers",
    ),
    (
        names::FIRST_TOKEN_MASS,
        "first-token mass",
        "mean attention on the first token, over layers and heads",
    ),
    (
        names::FRAME_TYPE,
        "frame type",
        "0 none, 1 centralized, 2 distributed, 3 bidirectional",
    ),
];

/// The HParams records that open a run: the experiment (columns) and the
/// session's start (its values).
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecords {
    /// `_hparams_/experiment`.
    pub experiment: HParamsPluginData,
    /// `_hparams_/session_start_info`.
    pub start: HParamsPluginData,
}

impl SessionRecords {
    /// The records of a training run of `recipe`, one of the runs of `sweep`
    /// (pass all of the sweep's recipes, also when `--only` trains a few, so
    /// every run names the same columns; `&[]` for a run alone).
    pub fn training(recipe: &Recipe, sweep: &[Recipe]) -> Self {
        let own = flatten(recipe);
        let all: Vec<BTreeMap<String, ProtoValue>> = if sweep.is_empty() {
            vec![own.clone()]
        } else {
            sweep.iter().map(flatten).collect()
        };
        let mut columns: Vec<(String, String)> = MAIN_TRAINING_HPARAMS
            .iter()
            .map(|(k, t)| (k.to_string(), t.to_string()))
            .collect();
        for key in varying_keys(&all) {
            if !columns.iter().any(|(k, _)| *k == key) {
                columns.push((key.clone(), key));
            }
        }
        let mut metrics = vec![MetricInfo::scalar(
            names::TRAIN_HELDOUT_LOSS,
            "held-out loss",
            "loss on the held-out windows at the last evaluation",
            dataset_type::VALIDATION,
        )];
        metrics.extend(attention_metrics());
        let description = format!("sinkscope training runs of recipe `{}`", recipe.name);
        Self::new(&columns, &own, &all, metrics, &description)
    }

    /// The records of `sinkscope analyze` on `model` (a path or hub id) of
    /// `family` with configuration `config`.
    pub fn analysis(model: &str, family: &str, config: &ModelConfig) -> Self {
        Self::analyses(model, family, config, &[])
    }

    /// The records of `sinkscope analyze` on a series of checkpoints of `model`:
    /// those of [`SessionRecords::analysis`] plus the revision range (first and last
    /// revision, their steps, how many).
    pub fn series(
        model: &str,
        family: &str,
        config: &ModelConfig,
        first: (&str, u64),
        last: (&str, u64),
        count: usize,
    ) -> Self {
        let extra = [
            ("revisions.first", ProtoValue::string(first.0)),
            ("revisions.last", ProtoValue::string(last.0)),
            ("revisions.first_step", ProtoValue::number(first.1 as f64)),
            ("revisions.last_step", ProtoValue::number(last.1 as f64)),
            ("revisions.count", ProtoValue::number(count as f64)),
        ];
        Self::analyses(model, family, config, &extra)
    }

    fn analyses(
        model: &str,
        family: &str,
        config: &ModelConfig,
        extra: &[(&str, ProtoValue)],
    ) -> Self {
        let mut own: BTreeMap<String, ProtoValue> = flatten(config)
            .into_iter()
            .map(|(k, v)| (format!("model.{k}"), v))
            .collect();
        own.insert("model".into(), ProtoValue::string(model));
        own.insert("family".into(), ProtoValue::string(family));
        own.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let columns: Vec<(String, String)> = [("model", "model"), ("family", "family")]
            .into_iter()
            .chain(extra.iter().map(|(k, _)| (*k, *k)))
            .chain(
                MAIN_TRAINING_HPARAMS
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("model.")),
            )
            .map(|(k, t)| (k.to_string(), t.to_string()))
            .collect();
        let all = [own.clone()];
        let description = "sinkscope analyses of pretrained models and checkpoints";
        Self::new(&columns, &own, &all, attention_metrics(), description)
    }

    fn new(
        columns: &[(String, String)],
        own: &BTreeMap<String, ProtoValue>,
        all: &[BTreeMap<String, ProtoValue>],
        metrics: Vec<MetricInfo>,
        description: &str,
    ) -> Self {
        let now = now_secs();
        let hparam_infos = columns
            .iter()
            .map(|(key, title)| {
                let values: Vec<ProtoValue> =
                    all.iter().filter_map(|m| m.get(key).cloned()).collect();
                HParamInfo::from_values(key, title, &values)
            })
            .collect();
        let hparams = columns
            .iter()
            .filter_map(|(key, _)| own.get(key).map(|v| (key.clone(), v.clone())))
            .collect();
        SessionRecords {
            experiment: HParamsPluginData::new(HParamsData::Experiment(Experiment {
                description: description.to_string(),
                time_created_secs: now,
                hparam_infos,
                metric_infos: metrics,
                ..Default::default()
            })),
            start: HParamsPluginData::new(HParamsData::SessionStartInfo(SessionStartInfo {
                hparams,
                start_time_secs: now,
                ..Default::default()
            })),
        }
    }
}

/// The record that closes a session: [`status::SUCCESS`] or [`status::FAILURE`].
pub fn session_end(end_status: i32) -> HParamsPluginData {
    HParamsPluginData::new(HParamsData::SessionEndInfo(SessionEndInfo {
        status: end_status,
        end_time_secs: now_secs(),
    }))
}

/// A finished run.
pub fn session_succeeded() -> HParamsPluginData {
    session_end(status::SUCCESS)
}

fn attention_metrics() -> Vec<MetricInfo> {
    ATTENTION_METRICS
        .iter()
        .map(|(tag, title, about)| MetricInfo::scalar(tag, title, about, dataset_type::UNKNOWN))
        .collect()
}

/// Keys whose value is not the same in every map (missing counts as different).
fn varying_keys(all: &[BTreeMap<String, ProtoValue>]) -> Vec<String> {
    let mut keys: Vec<&String> = all.iter().flat_map(|m| m.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| {
            let first = all[0].get(*k);
            all.iter().any(|m| m.get(*k) != first)
        })
        .cloned()
        .collect()
}

/// Every leaf of `value`'s TOML form under its dotted key: strings, numbers and
/// booleans as themselves, anything else (arrays, dates) as its TOML text.
fn flatten(value: &impl Serialize) -> BTreeMap<String, ProtoValue> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, ProtoValue>) {
        let value = match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
                return;
            }
            toml::Value::String(s) => ProtoValue::string(s.clone()),
            toml::Value::Integer(i) => ProtoValue::number(*i as f64),
            toml::Value::Float(x) => ProtoValue::number(*x),
            toml::Value::Boolean(b) => ProtoValue::bool(*b),
            other => ProtoValue::string(other.to_string()),
        };
        out.insert(prefix.to_string(), value);
    }
    let mut out = BTreeMap::new();
    if let Ok(v) = toml::Value::try_from(value) {
        walk("", &v, &mut out);
    }
    out
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::hparams::{data_type, Domain, ListValue};

    fn start_info(r: &SessionRecords) -> &SessionStartInfo {
        match &r.start.data {
            Some(HParamsData::SessionStartInfo(s)) => s,
            _ => panic!("not a session start"),
        }
    }

    fn experiment(r: &SessionRecords) -> &Experiment {
        match &r.experiment.data {
            Some(HParamsData::Experiment(e)) => e,
            _ => panic!("not an experiment"),
        }
    }

    fn recipe(kind: &str, d_ff: usize) -> Recipe {
        let text = format!(
            "name = \"s\"\n[model]\nd_model = 32\nn_heads = 2\nd_ff = {d_ff}\n[model.position]\nkind = \"{kind}\"\n"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn a_sweep_records_main_and_varying_settings() {
        let sweep = [
            recipe("rope", 64),
            recipe("alibi", 64),
            recipe("alibi", 128),
        ];
        let r = SessionRecords::training(&sweep[1], &sweep);
        let hp = &start_info(&r).hparams;
        assert_eq!(hp["model.position.kind"].as_str(), Some("alibi"));
        assert_eq!(hp["model.d_model"].as_f64(), Some(32.0));
        assert_eq!(hp["model.d_ff"].as_f64(), Some(64.0), "varies, so recorded");
        assert!(!hp.contains_key("model.norm_eps"), "same in every run");
        let keys: Vec<&str> = hp.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), MAIN_TRAINING_HPARAMS.len() + 1, "{keys:?}");

        let e = experiment(&r);
        let pe = e
            .hparam_infos
            .iter()
            .find(|h| h.name == "model.position.kind")
            .unwrap();
        assert_eq!((pe.r#type, pe.differs), (data_type::STRING, true));
        assert_eq!(
            pe.domain,
            Some(Domain::Discrete(ListValue {
                values: vec![ProtoValue::string("rope"), ProtoValue::string("alibi")]
            }))
        );
        let seed = e.hparam_infos.iter().find(|h| h.name == "seed").unwrap();
        assert!(!seed.differs);
        let tags: Vec<&str> = e
            .metric_infos
            .iter()
            .map(|m| m.name.as_ref().unwrap().tag.as_str())
            .collect();
        assert_eq!(
            tags,
            [
                "train/heldout_loss",
                "sink/rate",
                "sink/first_token_mass",
                "frame/type"
            ]
        );
    }

    #[test]
    fn an_analysis_records_the_model() {
        let cfg = recipe("learned", 64).model;
        let r = SessionRecords::analysis("gpt2", "gpt2", &cfg);
        let hp = &start_info(&r).hparams;
        assert_eq!(hp["model"].as_str(), Some("gpt2"));
        assert_eq!(hp["model.position.kind"].as_str(), Some("learned"));
        assert!(!hp.contains_key("train.lr"));
        assert_eq!(experiment(&r).metric_infos.len(), 3);
    }
}
