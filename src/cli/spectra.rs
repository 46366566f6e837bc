//! `sinkscope spectra FILE | MODEL`: WeightWatcher-style spectra of every 2-D weight, one
//! row per tensor, optionally saved as CSV with WeightWatcher's column names. Reads every
//! format `analyze` reads (through the importer's tensor sources): safetensors and
//! `pytorch_model.bin` files and folders (sharded or not, sentence-transformers included),
//! hub ids in the local cache, and GGUF files (the dequantized weights' spectra, by
//! llama.cpp's tensor names, stored `[out, in]` like Hugging Face's).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use faer::Par;

use crate::analysis::{weight_spectrum, SpectraConfig, WeightSpectrum};
use crate::import::source::left_out_note;

/// Arguments of `sinkscope spectra`.
#[derive(clap::Args, Debug, Clone)]
pub struct SpectraArgs {
    /// A `.safetensors`, `.bin` or `.gguf` file, or a model folder (safetensors or
    /// pytorch_model.bin, sharded or not; sentence-transformers), or a cached hub id.
    pub path: PathBuf,
    /// Write every column to a CSV file.
    #[arg(long, value_name = "OUT")]
    pub csv: Option<PathBuf>,
    /// Skip `rand_distance` (saves one SVD per matrix).
    #[arg(long)]
    pub no_randomize: bool,
    /// Skip matrices with fewer eigenvalues (WeightWatcher's default, 50).
    #[arg(long, default_value_t = 50)]
    pub min_evals: usize,
    /// Skip matrices with more eigenvalues (no limit by default).
    #[arg(long)]
    pub max_evals: Option<usize>,
}

/// CSV columns, WeightWatcher's names.
const COLUMNS: [&str; 27] = [
    "name",
    "N",
    "M",
    "Q",
    "num_evals",
    "norm",
    "spectral_norm",
    "sv_max",
    "sv_min",
    "alpha",
    "xmin",
    "xmax",
    "D",
    "sigma",
    "num_pl_spikes",
    "alpha_weighted",
    "log_alpha_norm",
    "log_norm",
    "log_spectral_norm",
    "stable_rank",
    "sigma_mp",
    "bulk_max",
    "num_spikes",
    "mp_softrank",
    "rand_distance",
    "ww_softrank",
    "warning",
];

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |x| x.to_string())
}

/// One CSV line in the order of `COLUMNS`.
pub fn csv_row(s: &WeightSpectrum) -> String {
    [
        csv_field(&s.name),
        s.n.to_string(),
        s.m.to_string(),
        s.q.to_string(),
        s.num_evals.to_string(),
        s.norm.to_string(),
        s.spectral_norm.to_string(),
        s.sv_max.to_string(),
        s.sv_min.to_string(),
        opt(s.alpha),
        opt(s.xmin),
        s.xmax.to_string(),
        opt(s.d),
        opt(s.sigma),
        s.num_pl_spikes.to_string(),
        opt(s.alpha_weighted),
        opt(s.log_alpha_norm),
        s.log_norm.to_string(),
        s.log_spectral_norm.to_string(),
        s.stable_rank.to_string(),
        s.sigma_mp.to_string(),
        s.bulk_max.to_string(),
        s.num_spikes.to_string(),
        s.mp_softrank.to_string(),
        opt(s.rand_distance),
        opt(s.ww_softrank),
        csv_field(&s.warning),
    ]
    .join(",")
}

fn short(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.3}"))
}

/// A sort key that orders the numbers inside names by value (`blk.2` before `blk.10`),
/// so layers come out in order whatever order the file stores them in.
fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut key = Vec::new();
    let mut text = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut n = u64::from(c as u8 - b'0');
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n.saturating_mul(10).saturating_add(u64::from(d));
                chars.next();
            }
            key.push((std::mem::take(&mut text), n));
        } else {
            text.push(c);
        }
    }
    key.push((text, 0));
    key
}

/// Runs `sinkscope spectra`: matrices one after the other, each SVD using every core.
pub fn run(args: &SpectraArgs) -> anyhow::Result<()> {
    let source = crate::import::open_tensors(&args.path)?;
    let mut names = source.names();
    names.sort_by_key(|n| natural_key(n));
    let (matrices, others): (Vec<String>, Vec<String>) = names
        .into_iter()
        .partition(|n| source.shape(n).is_some_and(|s| s.len() == 2));
    let cfg = SpectraConfig {
        min_evals: args.min_evals,
        max_evals: args.max_evals,
        randomize: !args.no_randomize,
        ..SpectraConfig::default()
    };
    let mut csv = match &args.csv {
        Some(p) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("cannot create {}", p.display()))?,
            );
            writeln!(f, "{}", COLUMNS.join(","))?;
            Some(f)
        }
        None => None,
    };
    println!(
        "{:<48} {:>6} {:>6} {:>8} {:>9} {:>8} {:>8} {:>9} {:>6} {:>8} {:>8}  warning",
        "name",
        "N",
        "M",
        "alpha",
        "alpha_w",
        "log_norm",
        "log_spec",
        "stable_rk",
        "spikes",
        "mp_soft",
        "rand_d"
    );
    let mut skipped = Vec::new();
    for name in &matrices {
        let shape = source.shape(name).unwrap_or_default();
        let data = source.read_f32(name)?;
        let (rows, cols) = (shape[0], shape[1]);
        match weight_spectrum(name, &data, rows, cols, &cfg, Par::rayon(0))? {
            Some(s) => {
                println!(
                    "{:<48} {:>6} {:>6} {:>8} {:>9} {:>8.3} {:>8.3} {:>9.3} {:>6} {:>8.3} {:>8}  {}",
                    s.name,
                    s.n,
                    s.m,
                    short(s.alpha),
                    short(s.alpha_weighted),
                    s.log_norm,
                    s.log_spectral_norm,
                    s.stable_rank,
                    s.num_spikes,
                    s.mp_softrank,
                    short(s.rand_distance),
                    s.warning
                );
                if let Some(f) = csv.as_mut() {
                    writeln!(f, "{}", csv_row(&s))?;
                }
            }
            None => skipped.push(name.clone()),
        }
    }
    if let Some(mut f) = csv {
        f.flush()?;
    }
    if !skipped.is_empty() {
        println!(
            "skipped {} matrices with fewer than {} (or more than the limit of) eigenvalues: {}",
            skipped.len(),
            cfg.min_evals,
            skipped.join(", ")
        );
    }
    if !others.is_empty() {
        println!("{} tensors that are not 2-D were left out", others.len());
    }
    if let Some(note) = left_out_note(source.as_ref()) {
        println!("{note}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::tensor_file::tests::{f32_bytes, write};
    use safetensors::Dtype;

    #[test]
    fn csv_has_one_row_per_matrix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let big: Vec<f32> = (0..80 * 60)
            .map(|i| ((i * 37 % 101) as f32 / 101.0) - 0.5)
            .collect();
        write(
            &p,
            &[
                ("layer.weight", Dtype::F32, vec![80, 60], f32_bytes(&big)),
                (
                    "small.weight",
                    Dtype::F32,
                    vec![10, 10],
                    f32_bytes(&[0.1; 100]),
                ),
                ("layer.bias", Dtype::F32, vec![80], f32_bytes(&[0.0; 80])),
            ],
        );
        let out = dir.path().join("s.csv");
        run(&SpectraArgs {
            path: p,
            csv: Some(out.clone()),
            no_randomize: false,
            min_evals: 50,
            max_evals: None,
        })
        .unwrap();
        let text = std::fs::read_to_string(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].split(',').count(), COLUMNS.len());
        assert!(lines[1].starts_with("layer.weight,80,60,"));
        assert_eq!(lines[1].split(',').count(), COLUMNS.len());
    }

    #[test]
    fn layers_sort_by_number() {
        let mut v = ["blk.10.w", "blk.2.w", "blk.1.w", "a", "blk.2.v"];
        v.sort_by_key(|n| natural_key(n));
        assert_eq!(v, ["a", "blk.1.w", "blk.2.v", "blk.2.w", "blk.10.w"]);
    }

    #[test]
    fn csv_quotes_awkward_names() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("q\"x"), "\"q\"\"x\"");
    }
}
