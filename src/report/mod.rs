//! `sinkscope report`: a run or a sweep turned into `report.md` and a self-contained
//! `report.html`, with the figures a paper draft needs as `plots/*.svg`.
//!
//! - `collect.rs`: reads each run (logs, final checkpoint) and analyses the final
//!   checkpoint on the run's probe;
//! - `document.rs`: what the report says, as blocks, built once;
//! - `plots.rs`: the figures (plotters, SVG);
//! - `markdown.rs`, `html.rs`: the two renderings of the same blocks.
//!
//! Missing pieces (no checkpoint, hooks that logged no topology) become notes in the
//! report; only a folder that holds no run at all is an error.

pub mod collect;
pub mod document;
pub mod html;
pub mod markdown;
pub mod plots;

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::atomic;
pub use collect::CollectOptions;

/// Where the report goes and what it draws.
#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// Output folder (default: the run or sweep folder itself).
    pub out: Option<PathBuf>,
    /// What to draw from each run's final checkpoint.
    pub collect: CollectOptions,
}

/// The files a report wrote, so callers can print or check them.
#[derive(Clone, Debug)]
pub struct ReportFiles {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// Every figure, `plots/*.svg`.
    pub plots: Vec<PathBuf>,
    /// Runs covered, by name.
    pub runs: Vec<String>,
}

/// Each file is replaced whole ([`atomic`]), so a report being rewritten is never
/// seen half-written.
fn write(path: &Path, text: &str) -> Result<()> {
    atomic::write_file(path, text.as_bytes())
        .map_err(|e| Error::file(path, format!("cannot write: {e}")))
}

/// Removes the `.svg` files of `plots_dir` this report did not write (figures of an
/// earlier report with another `--layer` or other runs), so the folder matches the
/// report that names its files. `plots/` belongs to the report; nothing else is removed.
fn remove_stale_plots(plots_dir: &Path, written: &[PathBuf]) -> Result<()> {
    let entries =
        fs::read_dir(plots_dir).map_err(|e| Error::file(plots_dir, format!("cannot list: {e}")))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "svg") && !written.contains(&path) {
            fs::remove_file(&path)
                .map_err(|e| Error::file(&path, format!("cannot remove stale plot: {e}")))?;
        }
    }
    Ok(())
}

/// Reads the run or sweep in `dir` and writes its report (see the module notes).
pub fn write_report(dir: &Path, opts: &ReportOptions) -> Result<ReportFiles> {
    let (sweep, found) = collect::find_runs(dir)?;
    let runs: Vec<collect::RunData> = found
        .iter()
        .map(|(name, path)| collect::collect_run(name, path, &opts.collect))
        .collect();
    let doc = document::build(dir, sweep, &runs);

    let out = opts.out.clone().unwrap_or_else(|| dir.to_path_buf());
    let plots_dir = out.join("plots");
    fs::create_dir_all(&plots_dir)
        .map_err(|e| Error::file(&plots_dir, format!("cannot create: {e}")))?;
    let mut plots = Vec::new();
    for f in doc.figures() {
        let path = out.join(&f.file);
        write(&path, &f.svg)?;
        plots.push(path);
    }
    remove_stale_plots(&plots_dir, &plots)?;
    let files = ReportFiles {
        markdown: out.join("report.md"),
        html: out.join("report.html"),
        plots,
        runs: runs.iter().map(|r| r.name.clone()).collect(),
    };
    write(&files.markdown, &markdown::render(&doc))?;
    write(&files.html, &html::render(&doc))?;
    Ok(files)
}
