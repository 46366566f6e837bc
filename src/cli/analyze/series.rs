//! `analyze` over a series of checkpoints (Pythia's cached `step1000` revisions, a
//! Trainer's `checkpoint-1000` folders, a sinkscope run's checkpoints): each revision
//! is loaded, analyzed on the same probes by the same function as a single model, logged
//! with step = its training step, and dropped before the next, so `report` and
//! TensorBoard show the series as they show a live run.
//!
//! `--out DIR` is resumable: `DIR/probes.json` records the probe ids chosen at the
//! first revision, `DIR/metrics.jsonl` the revisions done; a rerun skips those, cuts
//! the logs back to the last one recorded (a revision killed half-way left a torn
//! tail) and appends the rest. A revision that cannot be read is named on one line
//! and skipped; the exit code then says so.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{analyze_subject, load_subject, AnalysisLog, AnalyzeArgs, Analyzed, Probes, Setup};
use crate::analysis::names;
use crate::hooks::SessionRecords;
use crate::import::Revision;
use crate::io::atomic;
use crate::log::progress::Progress;
use crate::log::run_log::METRICS_FILE;

/// The probes of a series, inside `--out`.
pub(super) const PROBES_FILE: &str = "probes.json";

/// Analyzes `revisions` (in step order) one after the other.
pub(super) fn run(args: &AnalyzeArgs, revisions: Vec<Revision>) -> anyhow::Result<()> {
    if args.dump.is_some() {
        anyhow::bail!(
            "--dump writes the maps of one model; give one revision's folder (or MODEL@REVISION)"
        );
    }
    let setup = Setup::new(args)?;
    let out = args.out.as_deref();
    let recorded = match out {
        Some(dir) => recorded_steps(&dir.join(METRICS_FILE))?,
        None => BTreeSet::new(),
    };
    let mut probes = match out {
        Some(dir) => read_probes(dir, args)?,
        None => None,
    };
    let todo: Vec<&Revision> = revisions
        .iter()
        .filter(|r| !recorded.contains(&r.step))
        .collect();
    let (first, last) = (&revisions[0], &revisions[revisions.len() - 1]);
    println!(
        "series of {} revisions, {} (step {}) … {} (step {}); {} already recorded, {} to analyze",
        revisions.len(),
        first.name,
        first.step,
        last.name,
        last.step,
        revisions.len() - todo.len(),
        todo.len()
    );
    let mut log: Option<AnalysisLog> = None;
    let mut skipped: Vec<&str> = Vec::new();
    let progress = Progress::new(todo.len() as u64, 0);
    let started = Instant::now();
    for (i, rev) in todo.iter().enumerate() {
        progress.set_message(format!(
            "{} (step {}){}",
            rev.name,
            rev.step,
            time_left(started.elapsed(), i, todo.len())
        ));
        let step = usize::try_from(rev.step).context("step too large")?;
        // Everything about reading and analyzing the revision skips it; failing to
        // write the logs stops the series.
        let analyzed = load_and_analyze(args, &setup, rev, &mut probes);
        match analyzed {
            Err(e) => {
                progress.suspend(|| {
                    eprintln!(
                        "skipped revision {} (step {}): {}",
                        rev.name,
                        rev.step,
                        one_line(&e)
                    )
                });
                skipped.push(&rev.name);
            }
            Ok((analyzed, family, config)) => {
                if let Some(dir) = out {
                    let log = match &mut log {
                        Some(log) => log,
                        None => log.insert(open_log(
                            dir,
                            args,
                            &recorded,
                            step,
                            (&family, &config),
                            &revisions,
                        )?),
                    };
                    log.evaluation(step, &setup.hooks, &analyzed)?;
                }
                progress.suspend(|| println!("{}", summary_line(rev, &analyzed)));
            }
        }
        progress.set_position(i as u64 + 1);
    }
    progress.finish_and_clear();
    if let (Some(log), true) = (&mut log, skipped.is_empty()) {
        log.succeeded(last.step as usize)?;
    }
    if let Some(dir) = out {
        println!(
            "logs: {} (tensorboard --logdir {}; sinkscope report {})",
            dir.join(METRICS_FILE).display(),
            dir.join(crate::log::run_log::TB_DIR).display(),
            dir.display()
        );
    }
    if !skipped.is_empty() {
        anyhow::bail!(
            "{} of {} revisions skipped ({}); a rerun with the same --out retries them",
            skipped.len(),
            revisions.len(),
            skipped.join(", ")
        );
    }
    Ok(())
}

/// Loads one revision, chooses the probes if none are recorded yet (and records them),
/// and analyzes it. The revision is dropped on return.
fn load_and_analyze(
    args: &AnalyzeArgs,
    setup: &Setup,
    rev: &Revision,
    probes: &mut Option<Probes>,
) -> anyhow::Result<(Analyzed, String, crate::model::ModelConfig)> {
    let path = rev
        .location
        .as_ref()
        .map_err(|why| anyhow::anyhow!("{why}"))?;
    let subject = load_subject(args, &path.to_string_lossy())?;
    let probes = match probes {
        Some(p) => p,
        None => {
            let chosen = Probes::choose(&args.input, &subject)?;
            if let Some(dir) = &args.out {
                write_probes(dir, &chosen)?;
            }
            probes.insert(chosen)
        }
    };
    let analyzed = analyze_subject(args, setup, &subject, probes, Some(rev.step as usize))?;
    Ok((analyzed, subject.family, subject.model.config))
}

/// Opens the logs at the first revision analyzed: a fresh series writes the HParams
/// session (model, revision range); a resumed one cuts the logs back to the last step
/// recorded, dropping anything a killed run wrote past it.
fn open_log(
    dir: &Path,
    args: &AnalyzeArgs,
    recorded: &BTreeSet<u64>,
    step: usize,
    (family, config): (&str, &crate::model::ModelConfig),
    revisions: &[Revision],
) -> anyhow::Result<AnalysisLog> {
    let resume_from = recorded.last().map(|&s| s as usize);
    let mut log = AnalysisLog::open(dir, resume_from)?;
    if resume_from.is_none() {
        let (first, last) = (&revisions[0], &revisions[revisions.len() - 1]);
        let session = SessionRecords::series(
            &args.model,
            family,
            config,
            (&first.name, first.step),
            (&last.name, last.step),
            revisions.len(),
        );
        let about = format!(
            "{} ({family}), revisions {} … {} ({})",
            args.model,
            first.name,
            last.name,
            revisions.len()
        );
        log.start(step, &session, &about)?;
    }
    Ok(log)
}

/// Steps with an evaluation in `metrics.jsonl` (a skipped or damaged line does not
/// count); none when the file is absent.
fn recorded_steps(path: &Path) -> anyhow::Result<BTreeSet<u64>> {
    let text = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    Ok(text
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .filter(|v| v.get("scalars").is_some() && v.get("skipped").is_none())
        .filter_map(|v| v.get("step").and_then(serde_json::Value::as_u64))
        .collect())
}

/// The probes recorded in `dir`, if any. Texts given again must be the recorded ones:
/// a series on other probes belongs in another folder.
fn read_probes(dir: &Path, args: &AnalyzeArgs) -> anyhow::Result<Option<Probes>> {
    let path = dir.join(PROBES_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    let probes: Probes = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a probes file", path.display()))?;
    let given = !args.input.texts.is_empty() || args.input.text_file.is_some();
    if given && args.input.texts(&[])? != probes.texts {
        anyhow::bail!(
            "{}: the series in this folder ran on other texts; rerun without --text/--text-file \
             to continue it, or choose another --out",
            path.display()
        );
    }
    Ok(Some(probes))
}

fn write_probes(dir: &Path, probes: &Probes) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create output folder", dir.display()))?;
    let path = dir.join(PROBES_FILE);
    atomic::write_file(&path, &serde_json::to_vec_pretty(probes)?)
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// `, ~3m20s left` from the mean time of the revisions done so far.
fn time_left(elapsed: Duration, done: usize, total: usize) -> String {
    if done == 0 {
        return String::new();
    }
    let left = elapsed.as_secs_f64() / done as f64 * (total - done) as f64;
    let s = left.round() as u64;
    match s {
        0..60 => format!(", ~{s}s left"),
        60..3600 => format!(", ~{}m{:02}s left", s / 60, s % 60),
        _ => format!(", ~{}h{:02}m left", s / 3600, (s % 3600) / 60),
    }
}

/// One line per revision: the mean over layers of the sink rate and first-token mass.
fn summary_line(rev: &Revision, a: &Analyzed) -> String {
    let mean = |prefix: &str| {
        let v: Vec<f64> = a
            .evaluation
            .summary
            .scalars
            .iter()
            .filter(|s| {
                s.tag
                    .strip_prefix(prefix)
                    .is_some_and(|r| r.starts_with("/layer_") && !r[7..].contains('/'))
            })
            .map(|s| s.mean)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    format!(
        "step {:>9} {}: sink rate {:.1} %, first-token mass {:.3} (means over layers)",
        rev.step,
        rev.name,
        mean(names::SINK_RATE),
        mean(names::FIRST_TOKEN_MASS)
    )
}

fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_scales_the_mean_time_per_revision() {
        assert_eq!(time_left(Duration::from_secs(10), 0, 5), "");
        assert_eq!(time_left(Duration::from_secs(10), 2, 5), ", ~15s left");
        assert_eq!(time_left(Duration::from_secs(100), 1, 3), ", ~3m20s left");
        assert_eq!(time_left(Duration::from_secs(3600), 1, 3), ", ~2h00m left");
    }

    #[test]
    fn recorded_steps_ignore_skipped_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        assert!(recorded_steps(&path).unwrap().is_empty());
        std::fs::write(
            &path,
            "{\"step\":20,\"frame\":{},\"scalars\":{\"a\":1}}\n{\"step\":30,\"skipped\":\"x\",\"scalars\":{}}\n{\"step\":100,\"sca",
        )
        .unwrap();
        assert_eq!(recorded_steps(&path).unwrap(), BTreeSet::from([20]));
    }
}
