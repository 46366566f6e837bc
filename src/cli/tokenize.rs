//! `sinkscope tokenize INPUT… --tokenizer T --out DIR`: a corpus into memory-mapped
//! token shards that recipes read with `[data] shards = "DIR"`.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::train::tokenize::{tokenize, TokenizeJob};

/// Arguments of `sinkscope tokenize`.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenizeArgs {
    /// Text (`.txt`: one document per file), JSON lines (`.jsonl`: one document per
    /// line), either optionally gzipped (`.gz`).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The Hugging Face `tokenizer.json` to tokenize with.
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Folder for `train.bin`, `heldout.bin` and `meta.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Every N-th document goes to the held-out stream.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub heldout_every: u64,
    /// Field holding the text in JSON lines.
    #[arg(long, default_value = "text")]
    pub text_field: String,
}

/// Runs `sinkscope tokenize`.
pub fn run(args: &TokenizeArgs) -> anyhow::Result<()> {
    let total: u64 = args
        .inputs
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let job = TokenizeJob {
        inputs: args.inputs.clone(),
        tokenizer: args.tokenizer.clone(),
        out: args.out.clone(),
        heldout_every: args.heldout_every,
        text_field: args.text_field.clone(),
    };
    let started = Instant::now();
    let outcome = tokenize(&job, &|read| bar.set_position(read));
    bar.finish_and_clear();
    let outcome = outcome?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let m = &outcome.meta;
    println!(
        "{}: {} train tokens ({} documents), {} held-out tokens ({} documents), {:?} ids of a {}-token vocabulary",
        args.out.display(),
        m.train_tokens,
        m.train_documents,
        m.heldout_tokens,
        m.heldout_documents,
        m.dtype,
        m.vocab_size
    );
    println!(
        "{:.1} MB of text in {secs:.1} s: {:.2} MB/s, {:.0} tokens/s",
        outcome.text_bytes as f64 / 1e6,
        outcome.text_bytes as f64 / 1e6 / secs,
        (m.train_tokens + m.heldout_tokens) as f64 / secs
    );
    println!(
        "train on it with [data] shards = \"{}\" in a recipe",
        args.out.display()
    );
    Ok(())
}
