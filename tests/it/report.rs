//! `sinkscope report` on a 2-run sweep trained here: every figure the Markdown names
//! exists as an SVG with its title, the HTML carries the same SVGs inline, the tables
//! hold both runs with numbers; missing checkpoints and unlogged topology degrade to
//! notes; a folder without runs is an error naming it.

use std::fs;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use sinkscope::hooks::HookRunner;
use sinkscope::model::PositionKind;
use sinkscope::report::{write_report, CollectOptions, ReportOptions};
use sinkscope::train::train;

use crate::common::{tiny_model, tiny_recipe};

type B = Autodiff<Flex>;

/// Trains `rope` and `alibi` for a few steps into `sweep/<kind>`, hooks as shipped.
fn train_sweep(sweep: &Path) {
    for (name, kind) in [("rope", PositionKind::Rope), ("alibi", PositionKind::Alibi)] {
        let mut r = tiny_recipe(tiny_model(kind), 4);
        r.hooks.probes = 2;
        let dir = sweep.join(name);
        let dev = Default::default();
        let mut hooks = HookRunner::<B>::new(&r.hooks, &r, &dir, &dev).unwrap();
        train::<B>(&r, &dir, false, &dev, &mut hooks).unwrap();
    }
}

fn report(dir: &Path, out: &Path, layer: Option<usize>) -> (String, String) {
    let opts = ReportOptions {
        out: Some(out.to_path_buf()),
        collect: CollectOptions {
            layer,
            weight: None,
        },
    };
    let files = write_report(dir, &opts).unwrap();
    assert_eq!(files.markdown, out.join("report.md"));
    let md = fs::read_to_string(&files.markdown).unwrap();
    let html = fs::read_to_string(&files.html).unwrap();
    // the figures the markdown names are exactly the plot files written
    let mut named: Vec<PathBuf> = figures(&md).iter().map(|(_, f)| out.join(f)).collect();
    let mut written = files.plots.clone();
    named.sort();
    written.sort();
    assert_eq!(named, written);
    (md, html)
}

/// `(title, file)` of every `![title](file)` in the markdown.
fn figures(md: &str) -> Vec<(String, String)> {
    md.split("![")
        .skip(1)
        .map(|rest| {
            let (title, after) = rest.split_once("](").expect("image link");
            let (file, _) = after.split_once(')').expect("closed link");
            (title.to_string(), file.to_string())
        })
        .collect()
}

/// The trimmed contents of every `<text>` element.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = t.split_once('>')?.1;
            Some(body.split_once("</text>")?.0.trim().to_string())
        })
        .collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Checks every named figure: an SVG document with its title as text, inlined in the
/// HTML. Returns the files named.
fn check_figures(md: &str, html: &str, out: &Path) -> Vec<String> {
    let figs = figures(md);
    for (title, file) in &figs {
        let path = out.join(file);
        let svg = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} named but unreadable: {e}", path.display()));
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{file}"
        );
        assert!(
            svg.contains("xmlns=\"http://www.w3.org/2000/svg\""),
            "{file}"
        );
        assert_eq!(svg.matches("<svg").count(), 1, "{file}");
        assert!(
            texts(&svg).contains(&xml_escape(title)),
            "{file} lacks its title `{title}` as text"
        );
        assert!(
            html.contains(svg.trim_end()),
            "{file} is not inlined in the HTML"
        );
    }
    assert_eq!(html.matches("<svg").count(), figs.len());
    assert!(
        !html.contains("<img") && !html.contains("src="),
        "HTML must be self-contained"
    );
    assert!(!html.contains("href=\"http") && !html.contains("url(http"));
    figs.into_iter().map(|(_, f)| f).collect()
}

/// Cells of the markdown table row of `run` in the table after `heading`.
fn row(md: &str, heading: &str, run: &str) -> Vec<String> {
    let section = md.split(heading).nth(1).expect("section");
    let table = section
        .split("\n\n")
        .find(|p| p.starts_with('|'))
        .expect("table");
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("| {run} |")))
        .unwrap_or_else(|| panic!("no row for {run} in\n{table}"));
    line.trim_matches('|')
        .split(" | ")
        .map(|c| c.trim().to_string())
        .collect()
}

#[test]
fn report_of_a_two_run_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sweep");
    train_sweep(&sweep);
    let out = tmp.path().join("out");
    let (md, html) = report(&sweep, &out, None);

    let files = check_figures(&md, &html, &out);
    for want in [
        "plots/sink-emergence.svg",
        "plots/betti.svg",
        "plots/fiedler.svg",
        "plots/rope-esd.svg",
        "plots/rope-diagram-layer01.svg",
        "plots/rope-attention-layer01.svg",
        "plots/alibi-esd.svg",
        "plots/alibi-diagram-layer01.svg",
        "plots/alibi-attention-layer01.svg",
    ] {
        assert!(
            files.iter().any(|f| f == want),
            "{want} missing from {files:?}"
        );
    }
    // the sink chart has one series per run, named in its legend
    let sinks = fs::read_to_string(out.join("plots/sink-emergence.svg")).unwrap();
    let labels = texts(&sinks);
    assert!(labels.iter().any(|t| t == "rope") && labels.iter().any(|t| t == "alibi"));

    for run in ["rope", "alibi"] {
        let cells = row(&md, "## Final metrics", run);
        assert_eq!(cells.len(), 14, "{cells:?}");
        assert_eq!(cells[1], "4", "final step: {cells:?}");
        // loss, sink rate, first-token mass, concentration, value-norm ratio, KL, β₀,
        // β₁, both Fiedler values: all logged by the shipped hooks, so plain numbers
        for i in [2, 3, 4, 5, 6, 7, 9, 10, 11, 12] {
            assert!(
                cells[i].parse::<f64>().is_ok(),
                "column {i} of {run}: {cells:?}"
            );
        }
        assert!(
            ["centralized", "distributed", "bidirectional", "none"].contains(&cells[13].as_str())
        );
        let frame = row(&md, "## Frame type", run);
        assert_eq!(frame[2], cells[13]);
        assert!(frame[3].contains("heads"), "evidence lines: {frame:?}");
    }
    // the tiny model's 32 × 32 query weight is below WeightWatcher's 50 eigenvalues
    assert!(md.contains("fewer than the 50 WeightWatcher asks for"));

    // A second report of another layer replaces the first: the plot folder holds
    // exactly the figures the new report names, none of layer 1's.
    let (md0, _) = report(&sweep, &out, Some(0));
    let mut named: Vec<String> = figures(&md0).into_iter().map(|(_, f)| f).collect();
    let mut on_disk: Vec<String> = fs::read_dir(out.join("plots"))
        .unwrap()
        .map(|e| format!("plots/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    named.sort();
    on_disk.sort();
    assert_eq!(named, on_disk);
    assert!(on_disk
        .iter()
        .any(|f| f == "plots/rope-attention-layer00.svg"));
}

#[test]
fn missing_pieces_become_notes_and_a_folder_without_runs_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sweep");
    train_sweep(&sweep);
    // alibi loses its checkpoints; rope's logs lose every topology and graph metric
    fs::remove_dir_all(sweep.join("alibi/checkpoints")).unwrap();
    let metrics = sweep.join("rope/metrics.jsonl");
    let stripped: Vec<String> = fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(s) = v["scalars"].as_object_mut() {
                s.retain(|k, _| !k.starts_with("topo/") && !k.starts_with("graph/"));
            }
            v.to_string()
        })
        .collect();
    fs::write(&metrics, stripped.join("\n") + "\n").unwrap();

    let out = tmp.path().join("out");
    let (md, html) = report(&sweep, &out, Some(7));
    let files = check_figures(&md, &html, &out);
    assert!(
        files.iter().all(|f| !f.starts_with("plots/alibi-")),
        "{files:?}"
    );
    assert!(files
        .iter()
        .any(|f| f == "plots/rope-attention-layer01.svg"));
    assert!(md.contains("no checkpoint: no weight spectrum"), "{md}");
    assert!(
        md.contains("--layer 7 is beyond this model's 2 layers"),
        "{md}"
    );

    // rope's bar counts and Fiedler values come from its checkpoint, marked †
    let rope = row(&md, "## Final metrics", "rope");
    for i in [9, 10, 11, 12] {
        let v = rope[i]
            .strip_suffix('†')
            .unwrap_or_else(|| panic!("{rope:?}"));
        assert!(v.parse::<f64>().is_ok(), "{rope:?}");
    }
    assert!(
        rope[3].parse::<f64>().is_ok(),
        "sink rate stays logged: {rope:?}"
    );
    // alibi keeps every logged number; its held-out loss now comes from TensorBoard
    let alibi = row(&md, "## Final metrics", "alibi");
    for i in [2, 3, 9, 12] {
        assert!(alibi[i].parse::<f64>().is_ok(), "column {i}: {alibi:?}");
    }

    let empty = tmp.path().join("empty");
    fs::create_dir_all(empty.join("plots")).unwrap();
    let err = write_report(&empty, &ReportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&empty.display().to_string()), "{err}");
    assert!(err.contains("neither a run"), "{err}");
}
