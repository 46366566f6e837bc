//! `sinkscope ablate MODEL | CHECKPOINT [--positions 0] [--layers …] [--heads …]`:
//! the reference-token ablation experiment on a pretrained model or a checkpoint.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use burn::backend::Flex;
use clap::Args;

use crate::cli::texts::TextArgs;
use crate::eval::{ablate, lm_batch, AblationReport, Subject};
use crate::import::Residence;
use crate::model::budget;

/// Arguments of `sinkscope ablate`.
#[derive(Args, Debug)]
pub struct AblateArgs {
    /// A Hugging Face model folder, cached hub id, .gguf file, or a sinkscope
    /// checkpoint or run folder.
    pub model: String,
    /// Key positions to mask out of attention (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub positions: Vec<usize>,
    /// Layers where the mask applies (default: all).
    #[arg(long, value_delimiter = ',')]
    pub layers: Option<Vec<usize>>,
    /// Heads where the mask applies (default: all).
    #[arg(long, value_delimiter = ',')]
    pub heads: Option<Vec<usize>>,
    /// The texts.
    #[command(flatten)]
    pub input: TextArgs,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Seed of the masked-LM masking (encoders).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The subject of `ablate`. Ablation runs a forward pass per text and layer (plus two),
/// so an imported model is held in memory when its f32 copy takes at most half the
/// available memory; a larger one has its blocks read from the checkpoint as each pass
/// reaches them (slower: every pass reads the blocks again), with a note.
fn load_subject(model: &str) -> anyhow::Result<Subject<Flex>> {
    let device = Default::default();
    let subject = Subject::<Flex>::load_with(model, Residence::OnDemand, &device)?;
    if subject.model.on_demand.is_none() {
        return Ok(subject);
    }
    let needed = budget::model_bytes(&subject.model.config).and_then(|b| b.checked_mul(2));
    let fits = match (needed, budget::available_bytes()) {
        (Some(n), Some(a)) => n <= a,
        (needed, None) => needed.is_some(),
        (None, Some(_)) => false,
    };
    if !fits {
        eprintln!(
            "note: {}: the model's f32 copy does not fit twice in the available memory; its \
             blocks are read from the checkpoint on every forward pass (slower)",
            subject.source
        );
        return Ok(subject);
    }
    drop(subject);
    Ok(Subject::<Flex>::load_with(
        model,
        Residence::InMemory,
        &device,
    )?)
}

/// Runs the experiment and prints its table.
pub fn run(args: &AblateArgs) -> anyhow::Result<()> {
    let device = Default::default();
    let subject = load_subject(&args.model)?;
    let texts = args.input.texts(&subject.probe_texts)?;
    let encoded = args.input.encode(&subject, &texts)?;
    let cfg = &subject.model.config;
    let batches = encoded
        .iter()
        .enumerate()
        .map(|(i, e)| {
            lm_batch(
                &e.ids,
                i,
                cfg.is_causal(),
                subject.mask_id(),
                cfg.vocab_size,
                args.seed,
            )
        })
        .collect::<crate::Result<Vec<_>>>()?;
    let report = ablate(
        &subject.model,
        subject.head,
        &batches,
        &args.positions,
        args.layers.clone(),
        args.heads.clone(),
        &device,
    )?;
    let names: Vec<String> = args
        .positions
        .iter()
        .map(|&p| {
            format!(
                "{p}:{}",
                encoded[0]
                    .tokens
                    .get(p)
                    .map_or("-".into(), |t| format!("{t:?}"))
            )
        })
        .collect();
    println!("model: {} ({})", subject.family, subject.source);
    println!(
        "masking key positions [{}] in layers {} and heads {}, over {} texts ({} loss)",
        names.join(", "),
        args.layers
            .as_ref()
            .map_or("all".into(), |l| format!("{l:?}")),
        args.heads
            .as_ref()
            .map_or("all".into(), |h| format!("{h:?}")),
        report.sequences,
        if cfg.is_causal() {
            "next-token"
        } else {
            "masked-token"
        }
    );
    if !subject.head {
        println!(
            "the checkpoint has no output head: loss and output KL need it and are left out; \
             the attention-entropy shift and the change of the last hidden states are reported"
        );
    }
    print!("{}", render(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("{}: cannot write", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn render(r: &AblationReport) -> String {
    let mut s = format!(
        "{:>10} {:>10} {:>10} {:>10} {:>12} {:>14} {:>12}\n",
        "masked in", "loss", "ablated", "Δloss", "KL(p‖p')", "mean ΔH(attn)", "Δh_last"
    );
    let cell = |v: Option<f64>, f: fn(f64) -> String| v.map_or("-".to_string(), f);
    let mut row = |name: String, e: &crate::eval::AblationEffect| {
        let mean_shift = e.entropy_shift.iter().sum::<f64>() / e.entropy_shift.len().max(1) as f64;
        let _ = writeln!(
            s,
            "{name:>10} {:>10} {:>10} {:>10} {:>12} {:>+14.4} {:>12.4e}",
            cell(e.loss, |x| format!("{x:.4}")),
            cell(e.loss_ablated, |x| format!("{x:.4}")),
            cell(e.delta_loss, |x| format!("{x:+.4}")),
            cell(e.kl, |x| format!("{x:.4e}")),
            mean_shift,
            e.hidden_change
        );
    };
    row("all".into(), &r.overall);
    for e in &r.per_layer {
        row(format!("layer {}", e.layers[0]), e);
    }
    let _ = writeln!(
        s,
        "attention entropy per layer with everything masked (nats, before → after):"
    );
    for (l, (a, b)) in r
        .overall
        .entropy
        .iter()
        .zip(&r.overall.entropy_ablated)
        .enumerate()
    {
        let _ = writeln!(s, "  layer {l:>3}: {a:.4} → {b:.4} ({:+.4})", b - a);
    }
    s
}
