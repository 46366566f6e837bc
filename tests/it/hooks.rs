//! Training hooks: TensorBoard files TensorBoard can read with the documented tags,
//! schedules, a slow worker losing nothing, resume without duplicates, bad settings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use sinkscope::hooks::{registry, Backlog, Hook, HookInput, HookOutput, HookRunner, HookSchedule};
use sinkscope::log::{read_events, LoggedValue};
use sinkscope::model::PositionKind;
use sinkscope::train::recipe::Recipe;
use sinkscope::train::train;

use crate::common::{tiny_model, tiny_recipe};

type B = Autodiff<Flex>;

fn recipe(steps: usize, schedule: HookSchedule) -> Recipe {
    let mut r = tiny_recipe(tiny_model(PositionKind::Rope), steps);
    r.hooks.schedule = schedule;
    r.hooks.probes = 2;
    r.train.log_every = 1;
    r.train.eval_every = 5;
    r
}

fn run(
    r: &Recipe,
    dir: &Path,
    resume: bool,
    hooks: Option<Vec<Box<dyn Hook>>>,
) -> sinkscope::Result<()> {
    let dev = Default::default();
    let mut runner = match hooks {
        Some(h) => HookRunner::<B>::with_hooks(h, &r.hooks, r, dir, &dev)?,
        None => HookRunner::<B>::new(&r.hooks, r, dir, &dev)?,
    };
    train::<B>(r, dir, resume, &dev, &mut runner).map(|_| ())
}

/// (step, skipped) of every line of metrics.jsonl.
fn jsonl_steps(dir: &Path) -> Vec<(usize, bool)> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["step"].as_u64().unwrap() as usize,
                v.get("skipped").is_some(),
            )
        })
        .collect()
}

/// Tag → steps at which it was logged, by kind.
fn tags(dir: &Path) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for e in read_events(dir.join("tb")).unwrap() {
        let tag = match &e.value {
            LoggedValue::Scalar { tag, .. } => format!("scalar:{tag}"),
            LoggedValue::Histogram { tag, .. } => format!("histogram:{tag}"),
            LoggedValue::Image { tag, .. } => format!("image:{tag}"),
            LoggedValue::Text { tag, .. } => format!("text:{tag}"),
            _ => continue,
        };
        out.entry(tag).or_default().push(e.step);
    }
    out
}

#[test]
fn event_files_carry_the_documented_tags() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = recipe(6, HookSchedule::Every(3));
    // Wide enough for weight spectra (WeightWatcher skips matrices with < 50 eigenvalues).
    r.model.d_model = 64;
    r.model.d_ff = 128;
    run(&r, dir.path(), false, None).unwrap();
    let t = tags(dir.path());
    for tag in [
        "scalar:train/loss",
        "scalar:train/lr",
        "scalar:train/tokens_per_sec",
        "scalar:train/heldout_loss",
        "scalar:sink/rate/layer_00",
        "scalar:sink/first_token_mass/layer_01",
        "scalar:sink/concentration/layer_00",
        "scalar:info/kl/layer_01",
        "scalar:graph/fiedler_0.01/layer_00",
        "scalar:graph/centralization_0.1/layer_01",
        "scalar:topo/betti0/layer_00",
        "scalar:topo/betti1/layer_01",
        "scalar:spectra/participation_ratio/layer_00",
        "scalar:massive/ratio/state_00",
        "scalar:rmt/alpha/blocks.0.attn.q",
        "scalar:rmt/log_norm/embed",
        "scalar:fisher/layer_01",
        "histogram:esd/blocks.1.mlp.up",
        "image:attention/layer_01",
        "image:topo/diagram/layer_00",
        "text:recipe",
    ] {
        assert!(
            t.contains_key(tag),
            "missing {tag}; have {:?}",
            t.keys().filter(|k| !k.contains("/std")).collect::<Vec<_>>()
        );
    }
    assert_eq!(t["scalar:sink/rate/layer_00"], [0, 3, 6]);
    assert_eq!(
        t["scalar:fisher/layer_00"],
        [3, 6],
        "no gradients before step 1"
    );
    assert_eq!(t["scalar:train/loss"], [1, 2, 3, 4, 5, 6]);
    let steps: Vec<usize> = jsonl_steps(dir.path())
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, [0, 3, 6]);
}

#[test]
fn log_spaced_schedule_reaches_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = recipe(10, HookSchedule::LogSpaced);
    r.hooks.run = vec!["sinks".into()];
    run(&r, dir.path(), false, None).unwrap();
    let steps: Vec<usize> = jsonl_steps(dir.path())
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, [0, 1, 2, 4, 8, 10]);
}

/// A hook that takes its time, to back the queue up.
struct Slow;
impl Hook for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }
    fn about(&self) -> &'static str {
        "sleeps"
    }
    fn run(&self, _: &HookInput<'_>, out: &mut HookOutput) {
        std::thread::sleep(Duration::from_millis(150));
        out.scalars.push(("slow/done".into(), 1.0));
    }
}

#[test]
fn slow_worker_loses_no_evaluation() {
    let mut r = recipe(8, HookSchedule::Every(1));
    r.hooks.queue = 1;
    r.hooks.run = vec!["sinks".into()];
    let dir = tempfile::tempdir().unwrap();
    run(&r, dir.path(), false, Some(vec![Box::new(Slow)])).unwrap();
    assert_eq!(
        jsonl_steps(dir.path()),
        (0..=8).map(|s| (s, false)).collect::<Vec<_>>()
    );

    // With on_backlog = "skip", training does not wait, but every scheduled step still
    // leaves a line: evaluated or marked skipped.
    r.hooks.on_backlog = Backlog::Skip;
    let dir = tempfile::tempdir().unwrap();
    run(&r, dir.path(), false, Some(vec![Box::new(Slow)])).unwrap();
    let lines = jsonl_steps(dir.path());
    let steps: BTreeSet<usize> = lines.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, (0..=8).collect(), "{lines:?}");
    assert_eq!(lines.len(), 9, "{lines:?}");
    assert!(
        lines.iter().any(|(_, skipped)| *skipped),
        "nothing was skipped: {lines:?}"
    );
}

#[test]
fn resumed_run_appends_without_duplicates() {
    let mut r = recipe(12, HookSchedule::Every(2));
    r.hooks.run = vec!["sinks".into(), "fisher".into()];
    r.train.checkpoint_every = 4;
    let dir = tempfile::tempdir().unwrap();
    let mut killed = r.clone();
    killed.train.halt_after = Some(7);
    run(&killed, dir.path(), false, None).unwrap();
    // The halted run logged steps 5–7 past its last checkpoint (4); resume redoes them.
    run(&r, dir.path(), true, None).unwrap();
    let t = tags(dir.path());
    assert_eq!(t["scalar:train/loss"], (1..=12).collect::<Vec<i64>>());
    assert_eq!(t["scalar:sink/rate/layer_00"], [0, 2, 4, 6, 8, 10, 12]);
    assert_eq!(t["text:recipe"], [0]);
    let steps: Vec<usize> = jsonl_steps(dir.path())
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, [0, 2, 4, 6, 8, 10, 12]);
}

#[test]
fn bad_hook_settings_are_named() {
    let dev = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let mut r = recipe(2, HookSchedule::LogSpaced);
    r.hooks.run = vec!["sinks".into(), "sinkz".into()];
    let e = HookRunner::<B>::new(&r.hooks, &r, dir.path(), &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("hooks.run") && e.contains("sinkz") && e.contains("topology"),
        "{e}"
    );

    let p = dir.path().join("r.toml");
    std::fs::write(
        &p,
        "[model]\nd_model = 32\n[hooks]\nschedule = \"every:0\"\n",
    )
    .unwrap();
    let e = Recipe::load(&p, &[]).unwrap_err().to_string();
    assert!(e.contains("hooks.schedule") && e.contains("every:0"), "{e}");
    std::fs::write(&p, "[model]\nd_model = 32\n[hooks]\nrun_these = []\n").unwrap();
    let e = Recipe::load(&p, &[]).unwrap_err().to_string();
    assert!(e.contains("run_these"), "{e}");

    // A log folder that cannot be created fails before the first step.
    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(run_dir.join("tb"), "not a folder").unwrap();
    let r = recipe(2, HookSchedule::LogSpaced);
    let e = run(&r, &run_dir, false, None).unwrap_err().to_string();
    assert!(e.contains("tb"), "{e}");
    assert!(!run_dir.join("checkpoints").exists());
    assert_eq!(registry().len(), 10);
}
