//! Changed recipes on resume: a resumed run must be the run that was started, so any
//! difference between the checkpoint's recipe and the new one is refused, listing the
//! fields, unless the user names it as intended (`--resume --allow-change
//! train.steps,train.lr`). Allowed changes are appended, with their step, to the run's
//! `history.jsonl`, so the run says what it was trained with and from when.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::train::recipe::Recipe;

/// The run's history file: one JSON line per accepted recipe change.
pub const HISTORY_FILE: &str = "history.jsonl";

/// Fields that describe how this process runs, not what the run is: a simulated
/// kill (`train.halt_after`) and the output folder.
const NOT_PART_OF_THE_RUN: [&str; 2] = ["train.halt_after", "out"];

/// Dotted field → value of a recipe, leaves only.
fn flatten(recipe: &Recipe) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        "",
        &serde_json::to_value(recipe).unwrap_or(Value::Null),
        &mut out,
    );
    out
}

/// Fields that differ between two recipes, as (field, old, new).
pub fn differences(old: &Recipe, new: &Recipe) -> Vec<(String, Value, Value)> {
    let (a, b) = (flatten(old), flatten(new));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !NOT_PART_OF_THE_RUN.contains(&k.as_str()))
        .filter_map(|k| {
            let (x, y) = (
                a.get(k).cloned().unwrap_or(Value::Null),
                b.get(k).cloned().unwrap_or(Value::Null),
            );
            (x != y).then(|| (k.clone(), x, y))
        })
        .collect()
}

/// Refuses a resume whose recipe differs from the checkpoint's in fields not in
/// `allowed` (a field or a table of fields); records allowed changes in
/// `run_dir/history.jsonl`.
pub fn check_changes(
    run_dir: &Path,
    old: &Recipe,
    new: &Recipe,
    step: usize,
    allowed: &[String],
) -> Result<()> {
    let diffs = differences(old, new);
    if diffs.is_empty() {
        return Ok(());
    }
    let refused: Vec<String> = diffs
        .iter()
        .filter(|(k, _, _)| {
            !allowed
                .iter()
                .any(|a| a == k || k.starts_with(&format!("{a}.")))
        })
        .map(|(k, x, y)| format!("{k} ({x} -> {y})"))
        .collect();
    if !refused.is_empty() {
        return Err(Error::file(
            run_dir,
            format!(
                "the recipe differs from the checkpoint's in {}; resume with the same recipe, or name intended changes with --allow-change {}",
                refused.join(", "),
                diffs.iter().map(|d| d.0.as_str()).collect::<Vec<_>>().join(",")
            ),
        ));
    }
    let changes: Vec<Value> = diffs
        .iter()
        .map(|(k, x, y)| json!({"field": k, "from": x, "to": y}))
        .collect();
    let line = json!({"step": step, "event": "resume", "changes": changes});
    let path = run_dir.join(HISTORY_FILE);
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(&line.to_string());
    text.push('\n');
    crate::io::atomic::write_file(&path, text.as_bytes())
        .map_err(|e| Error::file(&path, format!("cannot write: {e}")))?;
    tracing::info!(step, changes = %line["changes"], "recipe changed on resume (recorded in {HISTORY_FILE})");
    Ok(())
}
