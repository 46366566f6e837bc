//! The texts `analyze` and `ablate` run on: given on the command line, read from a
//! file (one per paragraph), or by default the run's own probe windows for a sinkscope
//! checkpoint and three public-domain passages for anything else.

use std::path::PathBuf;

use anyhow::Context;
use burn::prelude::Backend;
use clap::Args;

use crate::eval::Subject;
use crate::import::tokenizer::{read_text_file, Encoded};

/// Public-domain English prose used when no text is given.
const DEFAULT_TEXTS: [&str; 3] = [
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep.",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, it was the epoch of belief.",
    "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, I thought I would sail about a little.",
];

/// Where the input texts come from.
#[derive(Args, Debug, Clone)]
pub struct TextArgs {
    /// Text to run on (repeatable). Default: a checkpoint's own probe windows, else
    /// three public-domain passages.
    #[arg(long = "text", value_name = "TEXT")]
    pub texts: Vec<String>,
    /// File of texts, one per paragraph (blank-line separated), UTF-8.
    #[arg(long)]
    pub text_file: Option<PathBuf>,
    /// Keep at most this many tokens of each text.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
}

impl TextArgs {
    /// The texts, in order; `fallback` (a run's probe windows) when none is given.
    pub fn texts(&self, fallback: &[String]) -> anyhow::Result<Vec<String>> {
        let mut out = self.texts.clone();
        if let Some(f) = &self.text_file {
            let text = read_text_file(f)?;
            out.extend(
                text.split("\n\n")
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from),
            );
        }
        if out.is_empty() {
            out = fallback.to_vec();
        }
        if out.is_empty() {
            out = DEFAULT_TEXTS.iter().map(|s| s.to_string()).collect();
        }
        Ok(out)
    }

    /// Each text tokenized by `subject` (special tokens included), cut to `max_len`.
    pub fn encode<B: Backend>(
        &self,
        subject: &Subject<B>,
        texts: &[String],
    ) -> anyhow::Result<Vec<Encoded>> {
        if self.max_len < 2 {
            anyhow::bail!("--max-len must be at least 2");
        }
        let limit = match subject.max_len() {
            Some(m) if m < self.max_len => {
                eprintln!(
                    "note: texts cut to {m} tokens, the size of the model's learned position table"
                );
                m
            }
            _ => self.max_len,
        };
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut e = subject
                    .encode(t)
                    .with_context(|| format!("text {}", i + 1))?;
                e.ids.truncate(limit);
                e.tokens.truncate(limit);
                e.special.truncate(limit);
                if e.ids.len() < 2 {
                    anyhow::bail!("text {} has fewer than 2 tokens", i + 1);
                }
                Ok(e)
            })
            .collect()
    }
}
