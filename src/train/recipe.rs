//! Recipes: TOML files that fix everything a training run depends on (model,
//! position encoding, data, schedule, checkpoints, seed, output folder), with
//! `--set key=value` overrides and sweeps that turn one recipe into several runs.
//! Every field is documented in `docs/RECIPES.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::train::synthetic::SyntheticConfig;

pub use crate::train::device::DeviceKind;

/// Training arithmetic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Weights, activations, gradients and optimiser state in float32.
    #[default]
    F32,
    /// bfloat16 activations with float32 master weights: refused for now (burn 0.21
    /// offers no mixed-precision autodiff with f32 master weights; see docs/RECIPES.md).
    Bf16,
}

/// The training corpus and how sequences are cut from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// UTF-8 text (`.txt`), JSON lines with a text field (`.jsonl`), either gzipped
    /// (`.gz`). Relative paths are read from the recipe's folder.
    pub train: PathBuf,
    /// Held-out text in the same formats (None: the last `heldout_fraction` of `train`).
    pub heldout: Option<PathBuf>,
    /// Share of `train` held out when `heldout` is not given.
    pub heldout_fraction: f64,
    /// Field holding the text in JSONL files.
    pub text_field: String,
    /// Tokens per training sequence (including the BOS token if any).
    pub seq_len: usize,
    /// Start every sequence with a BOS token (a fixed first token, which the
    /// literature ties to earlier sinks).
    pub bos: bool,
    /// Share of tokens masked for the masked-LM loss of encoders.
    pub mask_prob: f64,
    /// A generated task in place of `train` and `heldout` (`[data.synthetic]`).
    pub synthetic: Option<SyntheticConfig>,
    /// A folder of token shards written by `sinkscope tokenize` (memory-mapped), in
    /// place of `train` and `heldout`.
    pub shards: Option<PathBuf>,
    /// A Hugging Face `tokenizer.json`: tokenizes `train` and `heldout` on the fly
    /// (instead of byte by byte), or names the shards' tokenizer (checked against the
    /// hash they record). The model's vocabulary size follows it.
    pub tokenizer: Option<PathBuf>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            train: PathBuf::from("../datasets/kjv/train.txt.gz"),
            heldout: Some(PathBuf::from("../datasets/kjv/heldout.txt.gz")),
            heldout_fraction: 0.05,
            text_field: "text".into(),
            seq_len: 64,
            bos: false,
            mask_prob: 0.15,
            synthetic: None,
            shards: None,
            tokenizer: None,
        }
    }
}

/// Optimiser, schedule and cadence of evaluations and checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimiser steps.
    pub steps: usize,
    /// Sequences per micro-batch (per step when `accumulate` is 1).
    pub batch_size: usize,
    /// Micro-batches of `batch_size` per optimiser step, gradients summed: a step
    /// of `batch_size × accumulate` sequences in the memory of `batch_size`.
    pub accumulate: usize,
    /// Arithmetic of training: only `"f32"` today (see docs/RECIPES.md).
    pub precision: Precision,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Final learning rate of the cosine decay.
    pub min_lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW β1.
    pub beta1: f64,
    /// AdamW β2.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    pub grad_clip: f64,
    /// Held-out loss every this many steps (0: only at the end).
    pub eval_every: usize,
    /// Held-out batches per evaluation (fixed windows, the same every time).
    pub eval_batches: usize,
    /// Checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
    /// Keep only the newest this many checkpoints (0: keep all).
    pub keep_checkpoints: usize,
    /// Training-loss log line every this many steps.
    pub log_every: usize,
    /// Stop abruptly after this step, without a final checkpoint, as if the process
    /// were killed (for testing resume).
    pub halt_after: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 16,
            accumulate: 1,
            precision: Precision::F32,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 100,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            grad_clip: 1.0,
            eval_every: 100,
            eval_batches: 4,
            checkpoint_every: 500,
            keep_checkpoints: 0,
            log_every: 10,
            halt_after: None,
        }
    }
}

/// A complete, resolved training recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Run name (default: the recipe's file stem).
    #[serde(default)]
    pub name: String,
    /// Seed for initialisation, batch sampling, masking and dropout.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Output folder (default `runs/<name>`), relative to the working directory.
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Where to run.
    #[serde(default)]
    pub device: DeviceKind,
    /// Data parallelism: train on these devices at once (`["cuda:0", "cuda:1"]`), each
    /// taking its share of every step's micro-batches, gradients averaged on the first,
    /// which also evaluates, runs the hooks and writes checkpoints. Empty: `device` alone.
    /// `batch_size` stays per micro-batch, so a step sees `batch_size × accumulate ×
    /// devices` sequences: the same as one device with `accumulate × devices`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceKind>,
    /// The model.
    pub model: ModelConfig,
    /// The data.
    #[serde(default)]
    pub data: DataConfig,
    /// The optimisation.
    #[serde(default)]
    pub train: TrainConfig,
    /// Training-time instrumentation.
    #[serde(default)]
    pub hooks: crate::hooks::HooksConfig,
    /// Folder of the recipe file, against which data paths resolve.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_seed() -> u64 {
    42
}

/// One run of a recipe: its name within a sweep (None for a single run) and recipe.
#[derive(Clone, Debug)]
pub struct Run {
    /// Sub-folder name within the sweep's output folder.
    pub name: Option<String>,
    /// The resolved recipe.
    pub recipe: Recipe,
}

/// A sweep: axes whose values multiply out, plus extra named runs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sweep {
    /// Dotted key → list of values; one run per combination.
    #[serde(default)]
    axes: BTreeMap<String, Vec<toml::Value>>,
    /// Extra runs, each a name and a table of dotted-key overrides.
    #[serde(default)]
    extra: Vec<ExtraRun>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtraRun {
    name: String,
    set: BTreeMap<String, toml::Value>,
}

impl Recipe {
    /// Reads a recipe file, applies `--set` overrides (`key=value`, value in TOML
    /// syntax or a bare string), and expands any `[sweep]` into its runs.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Vec<Run>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::file(path, format!("cannot read recipe: {e}")))?;
        let mut value: toml::Table =
            toml::from_str(&text).map_err(|e| Error::file(path, toml_error(&text, &e)))?;
        for o in overrides {
            let (key, val) = parse_override(o)?;
            set_dotted(&mut value, &key, val).map_err(|m| Error::config("--set", &key, m))?;
        }
        let sweep: Sweep = match value.remove("sweep") {
            Some(v) => serde_path_to_error::deserialize(v).map_err(|e| {
                Error::config(
                    &path.display().to_string(),
                    &format!("sweep.{}", e.path()),
                    e.inner().message().to_string(),
                )
            })?,
            None => Sweep::default(),
        };
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("run")
            .to_string();
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let source = path.display().to_string();
        if let Some((axis, _)) = sweep.axes.iter().find(|(_, values)| values.is_empty()) {
            return Err(Error::config(
                &path.display().to_string(),
                &format!("sweep.axes.{axis}"),
                "has no values, so the sweep would train nothing",
            ));
        }
        let mut runs = Vec::new();
        for (name, sets) in sweep.expand() {
            let mut v = value.clone();
            for (key, val) in sets {
                set_dotted(&mut v, &key, val)
                    .map_err(|m| Error::config(&source, &format!("sweep: {key}"), m))?;
            }
            let mut recipe: Recipe = serde_path_to_error::deserialize(toml::Value::Table(v))
                .map_err(|e| Error::config(&source, &e.path().to_string(), e.inner().message()))?;
            if recipe.name.is_empty() {
                recipe.name = stem.clone();
            }
            recipe.base_dir = base_dir.clone();
            // Data paths become absolute, so checkpoints and reports read from any
            // working directory find the corpus again.
            recipe.data.train = absolute(&recipe.resolve(&recipe.data.train));
            recipe.data.heldout = recipe
                .data
                .heldout
                .as_ref()
                .map(|h| absolute(&recipe.resolve(h)));
            recipe.validate(&source)?;
            if let Some(n) = &name {
                check_run_name(n).map_err(|m| Error::config(&source, "sweep", m))?;
            }
            runs.push(Run { name, recipe });
        }
        Ok(runs)
    }

    /// A data path as given in the recipe, resolved against the recipe's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The devices a step runs on: `devices`, else `device` alone. The first one holds
    /// the model between steps.
    pub fn devices(&self) -> Vec<DeviceKind> {
        if self.devices.is_empty() {
            vec![self.device]
        } else {
            self.devices.clone()
        }
    }

    /// Micro-batches per optimiser step: `accumulate` on each of the devices.
    pub fn micro_batches(&self) -> usize {
        self.train.accumulate * self.devices().len()
    }

    /// The output folder: `out`, else `runs/<name>`.
    pub fn out_dir(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(&self.name))
    }

    fn validate(&self, source: &str) -> Result<()> {
        let t = &self.train;
        let bad = |f: &str, m: &str| Err(Error::config(source, f, m));
        if t.steps == 0 {
            return bad("train.steps", "must be positive");
        }
        if t.batch_size == 0 {
            return bad("train.batch_size", "must be positive");
        }
        if t.accumulate == 0 {
            return bad("train.accumulate", "must be at least 1");
        }
        if t.batch_size
            .checked_mul(t.accumulate)
            .and_then(|n| n.checked_mul(self.devices.len().max(1)))
            .and_then(|n| n.checked_mul(self.data.seq_len))
            .is_none()
        {
            return bad(
                "train.accumulate",
                "batch_size × accumulate × devices × seq_len overflows",
            );
        }
        if let Some(why) = devices_problem(self.device, &self.devices) {
            return bad("devices", &why);
        }
        if t.precision == Precision::Bf16 {
            return bad(
                "train.precision",
                "\"bf16\" is not supported: burn 0.21 has no mixed-precision training with float32 master weights and optimiser state; use \"f32\"",
            );
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return bad("train.lr", "must be a positive finite number");
        }
        // NaN fails every comparison, so each range is written as what must hold.
        let ranges = [
            (
                "train.min_lr",
                t.min_lr,
                t.min_lr >= 0.0 && t.min_lr <= t.lr,
                "[0, lr]",
            ),
            (
                "train.beta1",
                t.beta1,
                (0.0..1.0).contains(&t.beta1),
                "[0, 1)",
            ),
            (
                "train.beta2",
                t.beta2,
                (0.0..1.0).contains(&t.beta2),
                "[0, 1)",
            ),
            (
                "train.eps",
                t.eps,
                t.eps > 0.0 && t.eps.is_finite(),
                "(0, ∞)",
            ),
            (
                "train.weight_decay",
                t.weight_decay,
                t.weight_decay >= 0.0 && t.weight_decay.is_finite(),
                "[0, ∞)",
            ),
            (
                "train.grad_clip",
                t.grad_clip,
                t.grad_clip >= 0.0 && t.grad_clip.is_finite(),
                "[0, ∞) (0: no clipping)",
            ),
        ];
        for (field, value, ok, range) in ranges {
            if !ok {
                return bad(field, &format!("{value} is not in {range}"));
            }
        }
        if t.halt_after == Some(0) {
            return bad(
                "train.halt_after",
                "must be positive (leave it out to run to the end)",
            );
        }
        if self.data.seq_len < 2 {
            return bad("data.seq_len", "must be at least 2");
        }
        if self.data.seq_len > self.model.max_seq_len {
            return bad("data.seq_len", "exceeds model.max_seq_len");
        }
        if !(self.data.mask_prob > 0.0 && self.data.mask_prob < 1.0) {
            return bad("data.mask_prob", "must lie in (0, 1)");
        }
        if let Some(task) = &self.data.synthetic {
            if let Err((field, why)) = task.check() {
                return bad(&format!("data.synthetic.{field}"), &why);
            }
            if task.train_tokens.min(task.heldout_tokens) <= self.data.seq_len {
                return bad(
                    "data.synthetic",
                    "train_tokens and heldout_tokens must exceed data.seq_len",
                );
            }
        }
        if !(self.data.heldout_fraction > 0.0 && self.data.heldout_fraction < 1.0) {
            return bad("data.heldout_fraction", "must lie in (0, 1)");
        }
        if self.data.synthetic.is_some()
            && (self.data.shards.is_some() || self.data.tokenizer.is_some())
        {
            return bad(
                "data.synthetic",
                "a synthetic task has its own vocabulary; drop data.shards and data.tokenizer",
            );
        }
        // The model and every size a run will allocate, checked now, so a bad run of a
        // sweep is refused before the first run starts.
        crate::train::trainer::resolve_model_in(self, source, false)?;
        #[cfg(not(feature = "cuda"))]
        if matches!(self.devices()[0], DeviceKind::Cuda(_)) {
            return bad(
                if self.devices.is_empty() {
                    "device"
                } else {
                    "devices"
                },
                "this build has no CUDA support: rebuild with `--features cuda`",
            );
        }
        Ok(())
    }
}

/// Why a `devices` list cannot be trained on: CPU and GPU mixed (burn moves gradients
/// between devices of one backend only), a GPU named twice, or a `device` that is not
/// the list's first.
fn devices_problem(device: DeviceKind, devices: &[DeviceKind]) -> Option<String> {
    let first = *devices.first()?;
    if device != DeviceKind::default() && device != first {
        return Some(format!(
            "device = \"{device}\" differs from the first of devices (\"{first}\"); set one of the two"
        ));
    }
    let cpu = |d: &DeviceKind| *d == DeviceKind::Cpu;
    if devices.iter().any(cpu) && !devices.iter().all(cpu) {
        return Some("mixes \"cpu\" and CUDA devices; use devices of one kind".into());
    }
    let twice = devices
        .iter()
        .enumerate()
        .find(|&(i, d)| !cpu(d) && devices[..i].contains(d));
    twice.map(|(_, d)| format!("names \"{d}\" twice"))
}

/// `(dotted key, value)` pairs set on one run of a sweep.
type Overrides = Vec<(String, toml::Value)>;

impl Sweep {
    /// (run name, overrides) for each run; one unnamed run without overrides when
    /// the recipe has no sweep.
    fn expand(&self) -> Vec<(Option<String>, Overrides)> {
        let mut combos: Vec<(Vec<String>, Overrides)> = vec![(vec![], vec![])];
        for (key, values) in &self.axes {
            combos = combos
                .into_iter()
                .flat_map(|(names, sets)| {
                    values.iter().map(move |v| {
                        let mut names = names.clone();
                        names.push(value_name(v));
                        let mut sets = sets.clone();
                        sets.push((key.clone(), v.clone()));
                        (names, sets)
                    })
                })
                .collect();
        }
        let mut out: Vec<_> = if self.axes.is_empty() {
            if self.extra.is_empty() {
                vec![(None, vec![])]
            } else {
                vec![]
            }
        } else {
            combos
                .into_iter()
                .map(|(n, s)| (Some(n.join("_")), s))
                .collect()
        };
        out.extend(self.extra.iter().map(|e| {
            (
                Some(e.name.clone()),
                e.set.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            )
        }));
        out
    }
}

/// A TOML syntax error on one line: "not valid TOML at line L, column C: message"
/// (the crate's own rendering spans several lines with a source excerpt).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(
                "not valid TOML at line {line}, column {column}: {}",
                e.message().trim()
            )
        }
        None => format!("not valid TOML: {}", e.message().trim()),
    }
}

/// A run's sub-folder name must stay inside `--out`: a plain name of letters, digits,
/// `-`, `_` and `.`, not `.` or `..` (so `../escaped` or `/tmp/x` is refused).
fn check_run_name(name: &str) -> std::result::Result<(), String> {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || name == "." || name == ".." || !plain {
        return Err(format!(
            "run name `{name}` is not a plain name (letters, digits, `-`, `_`, `.`)"
        ));
    }
    Ok(())
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn value_name(v: &toml::Value) -> String {
    let s = match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Splits `key=value`; the value is read as TOML (`128`, `true`, `"x"`, `[1, 2]`),
/// or taken as a bare string when it is not valid TOML (`rope`).
pub fn parse_override(s: &str) -> Result<(String, toml::Value)> {
    let (key, raw) = s
        .split_once('=')
        .ok_or_else(|| Error::config("--set", s, "expected key=value"))?;
    let key = key.trim().to_string();
    if key.is_empty() {
        return Err(Error::config("--set", s, "empty key"));
    }
    let raw = raw.trim();
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    Ok((key, value))
}

/// Sets `a.b.c = value` in a TOML table, creating intermediate tables.
fn set_dotted(
    table: &mut toml::Table,
    key: &str,
    value: toml::Value,
) -> std::result::Result<(), String> {
    let mut parts = key.split('.').peekable();
    let mut cur = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(part.to_string(), value);
            return Ok(());
        }
        let entry = cur
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is not a table"))?;
    }
    Err("empty key".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("r.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn overrides_and_sweeps() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "[model]\nd_model = 32\nn_heads = 2\n[sweep.axes]\n\"model.position.kind\" = [\"rope\", \"alibi\"]\n\
             [[sweep.extra]]\nname = \"enc\"\nset = { \"model.arch\" = \"encoder\" }\n",
        );
        let runs = Recipe::load(&p, &["model.n_layers=3".into(), "train.lr=0.01".into()]).unwrap();
        let names: Vec<_> = runs.iter().map(|r| r.name.clone().unwrap()).collect();
        assert_eq!(names, ["rope", "alibi", "enc"]);
        assert_eq!(
            runs[1].recipe.model.position.kind,
            crate::model::PositionKind::Alibi
        );
        assert_eq!(runs[2].recipe.model.arch, crate::model::Arch::Encoder);
        assert!(runs
            .iter()
            .all(|r| r.recipe.model.n_layers == 3 && r.recipe.train.lr == 0.01));
        assert_eq!(runs[0].recipe.name, "r");
    }

    #[test]
    fn unknown_key_and_variant_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "[model]\nd_modl = 32\n");
        let e = Recipe::load(&p, &[]).unwrap_err().to_string();
        assert!(e.contains("r.toml") && e.contains("d_modl"), "{e}");
        let p = write(dir.path(), "[model.position]\nkind = \"ropes\"\n");
        let e = Recipe::load(&p, &[]).unwrap_err().to_string();
        assert!(
            e.contains("model.position.kind") && e.contains("ropes"),
            "{e}"
        );
        let p = write(dir.path(), "[model]\n");
        let e = Recipe::load(&p, &["train.nope=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("train") && e.contains("nope"), "{e}");
    }

    #[test]
    fn device_lists_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "devices = [\"cpu\", \"cpu\"]\n[model]\n");
        let run = &Recipe::load(&p, &[]).unwrap()[0].recipe;
        assert_eq!(run.devices(), [DeviceKind::Cpu, DeviceKind::Cpu]);
        assert_eq!(run.micro_batches(), 2);
        let refused = |set: &str| Recipe::load(&p, &[set.into()]).unwrap_err().to_string();
        for (set, says) in [
            ("devices=[\"cpu\", \"cuda:1\"]", "mixes"),
            ("devices=[\"cuda:1\", \"cuda:1\"]", "\"cuda:1\" twice"),
            ("device=\"cuda:2\"", "differs from the first"),
        ] {
            let e = refused(set);
            assert!(
                e.contains("r.toml") && e.contains("devices") && e.contains(says),
                "{set}: {e}"
            );
        }
        // No list: `device` alone, and the recipe serializes as before (no `devices` key).
        let p = write(dir.path(), "[model]\n");
        let one = &Recipe::load(&p, &[]).unwrap()[0].recipe;
        assert_eq!(one.devices(), [DeviceKind::Cpu]);
        assert!(!serde_json::to_string(one).unwrap().contains("devices"));
    }
}
