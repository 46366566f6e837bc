//! `sinkscope analyze MODEL [--text T]... [--text-file F] [--max-len N] [--out DIR]
//! [--dump FILE.safetensors] [--fisher] [--weights]`: the training hooks' analysis on a
//! pretrained model (Hugging Face folder, hub id in the local cache, GGUF file) or a
//! sinkscope checkpoint, with the sink tokens named.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use clap::Args;
use serde::Serialize;

use crate::analysis::report::padded_index;
use crate::analysis::{table, AnalysisConfig, AttentionMaps};
use crate::cli::texts::TextArgs;
use crate::eval::{
    analyze_streaming, finish, fisher_trace, lm_batch, weight_matrices, EvalPlan, Evaluation,
    LayerMaps, SequenceCapture, Subject,
};
use crate::hooks::{hparams, registry, run_hooks, tags, HookInput, SessionRecords};
use crate::import::tokenizer::Encoded;
use crate::io::atomic;
use crate::log::RunLog;

/// Arguments of `sinkscope analyze`.
#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// A Hugging Face model folder, a hub id already in the local cache (org/name), a
    /// .gguf file, or a sinkscope checkpoint or run folder.
    pub model: String,
    /// The texts.
    #[command(flatten)]
    pub input: TextArgs,
    /// Write analysis.json, metrics.jsonl and TensorBoard logs here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the first text's input_ids, attentions [L,H,T,T] and hidden_states
    /// [L+1,T,d] (as Hugging Face's output_hidden_states) to this safetensors file.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Add per-layer empirical Fisher information (one backward pass per text).
    #[arg(long)]
    pub fisher: bool,
    /// Add WeightWatcher-style spectra of every 2-D weight (slow for large models).
    #[arg(long)]
    pub weights: bool,
    /// Analysis settings (TOML, the `[hooks.analysis]` keys of docs/METRICS.md).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

/// What `analysis.json` holds.
#[derive(Serialize)]
struct Output<'a> {
    model: &'a str,
    family: &'a str,
    texts: Vec<TextOutput<'a>>,
    evaluation: &'a Evaluation,
}

#[derive(Serialize)]
struct TextOutput<'a> {
    text: &'a str,
    tokens: &'a [String],
    input_ids: &'a [u32],
}

/// Runs the analysis and prints the per-layer summary.
pub fn run(args: &AnalyzeArgs) -> anyhow::Result<()> {
    type B = Autodiff<Flex>;
    let device = Default::default();
    let subject = Subject::<B>::load(&args.model, &device)?;
    if let Some(c) = subject.caveat() {
        eprintln!("note: {c}");
    }
    let texts = args.input.texts(&subject.probe_texts)?;
    let encoded = args.input.encode(&subject, &texts)?;
    let seqs: Vec<Vec<u32>> = encoded.iter().map(|e| e.ids.clone()).collect();
    let inner = subject.model.valid();
    let mut plan = EvalPlan {
        analysis: match &args.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("{}: cannot read", p.display()))?;
                AnalysisConfig::from_toml(&text).with_context(|| p.display().to_string())?
            }
            None => AnalysisConfig::default(),
        },
        ..Default::default()
    };
    let hooks: Vec<_> = registry()
        .into_iter()
        .filter(|h| (args.weights || h.name() != "weights") && h.name() != "fisher")
        .collect();
    for h in &hooks {
        h.plan(&mut plan);
    }
    let weights = if args.weights {
        weight_matrices(&inner)?
    } else {
        Vec::new()
    };
    if args.fisher && !subject.head {
        println!(
            "--fisher needs the output head (the loss), which this checkpoint has not: left out"
        );
    }
    let fisher = if args.fisher && subject.head {
        let cfg = &subject.model.config;
        let batches = seqs
            .iter()
            .enumerate()
            .map(|(i, s)| lm_batch(s, i, cfg.is_causal(), subject.mask_id(), cfg.vocab_size, 0))
            .collect::<crate::Result<Vec<_>>>()?;
        Some(fisher_trace(&subject.model, &batches, &device))
    } else {
        None
    };
    // Layer by layer: each layer's maps are analyzed as soon as the forward pass has
    // them and then dropped. Only the first text's maps are kept: whole for --dump,
    // and as head means (what the heatmap hook reads) for --out.
    let mut dumped: Vec<AttentionMaps> = Vec::new();
    let mut means: Vec<f32> = Vec::new();
    let streamed = analyze_streaming(
        &inner,
        &seqs,
        subject.pad_id(),
        args.batch,
        true,
        &plan.analysis,
        &device,
        &mut |lm: LayerMaps| {
            if lm.sequence == 0 {
                if args.dump.is_some() {
                    dumped.push(lm.maps.clone());
                }
                if args.out.is_some() {
                    means.extend(lm.maps.head_mean(0).iter().map(|&x| x as f32));
                }
            }
            Ok(())
        },
    )?;
    let null_mass: Vec<Option<&[f64]>> = streamed.iter().map(|s| s.null_mass.as_deref()).collect();
    let reports = streamed.iter().map(|s| s.report.clone()).collect();
    let evaluation = finish(None, reports, &null_mass, &weights, fisher, &plan)?;
    let first = &streamed[0];
    let t = first.tokens.len();
    let layers = inner.config.n_layers;

    print!("{}", render(&subject, &encoded, &evaluation));

    if let Some(out) = &args.out {
        // the heatmap hook reads head means only: one "head" per layer carries them
        let probe = [SequenceCapture {
            tokens: first.tokens.clone(),
            maps: AttentionMaps::new(layers, 1, t, std::mem::take(&mut means))?,
            values: None,
            hidden: None,
            final_hidden: None,
            null_mass: None,
        }];
        write_out(
            out,
            args,
            &subject,
            &texts,
            &encoded,
            &evaluation,
            &probe,
            &hooks,
        )?;
    }
    if let Some(path) = &args.dump {
        let seq = SequenceCapture {
            tokens: first.tokens.clone(),
            maps: AttentionMaps::stack(dumped)?,
            values: None,
            hidden: first.hidden.clone(),
            final_hidden: first.final_hidden.clone(),
            null_mass: None,
        };
        dump(path, &encoded[0], &seq)?;
        println!("dump: {}", path.display());
    }
    Ok(())
}

fn render(subject: &Subject<Autodiff<Flex>>, encoded: &[Encoded], ev: &Evaluation) -> String {
    let cfg = &subject.model.config;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "model: {} ({}), {} layers × {} heads ({} kv), {}, position {:?}",
        subject.family,
        subject.source,
        cfg.n_layers,
        cfg.n_heads,
        cfg.kv_heads(),
        if cfg.is_causal() {
            "causal"
        } else {
            "bidirectional"
        },
        cfg.position.kind
    );
    for (i, e) in encoded.iter().enumerate() {
        let shown: Vec<String> = e
            .tokens
            .iter()
            .enumerate()
            .take(24)
            .map(|(p, t)| format!("{p}:{t:?}"))
            .collect();
        let more = if e.tokens.len() > 24 { " …" } else { "" };
        let _ = writeln!(
            s,
            "text {} ({} tokens): {}{more}",
            i + 1,
            e.ids.len(),
            shown.join(" ")
        );
    }
    let stats: BTreeMap<&str, (f64, f64)> = ev
        .summary
        .scalars
        .iter()
        .map(|x| (x.tag.as_str(), (x.mean, x.std)))
        .collect();
    let n = cfg.n_layers;
    let _ = writeln!(
        s,
        "\n{:>5} {:>16} {:>16} {:>9} {:>8} {:>10} {:>12} {:>5} {:>5}  top sink key",
        "layer",
        "sink_rate %",
        "first_tok_mass",
        "conc",
        "kl",
        "kl_no_sink",
        "fiedler_0.01",
        "b0",
        "b1"
    );
    for l in 0..n {
        let tag = |name: &str| format!("{name}/layer_{}", padded_index(l, n));
        let get = |name: &str| stats.get(tag(name).as_str()).copied();
        let pm = |v: Option<(f64, f64)>, prec: usize| match v {
            Some((m, sd)) => format!("{m:.prec$}±{sd:.prec$}"),
            None => "-".into(),
        };
        let one = |v: Option<(f64, f64)>| v.map_or("-".into(), |(m, _)| format!("{m:.4}"));
        let int = |v: Option<(f64, f64)>| v.map_or("-".into(), |(m, _)| format!("{m:.1}"));
        let _ = writeln!(
            s,
            "{:>5} {:>16} {:>16} {:>9} {:>8} {:>10} {:>12} {:>5} {:>5}  {}",
            l,
            pm(get("sink/rate"), 1),
            pm(get("sink/first_token_mass"), 3),
            one(get("sink/concentration")),
            one(get("info/kl")),
            one(get("info/kl_sink_removed")),
            one(get("graph/fiedler_0.01")),
            int(get("topo/betti0")),
            int(get("topo/betti1")),
            top_sink_key(ev, encoded, l)
        );
    }
    if let Some(f) = &ev.fisher {
        let _ = writeln!(
            s,
            "\nFisher trace per layer: {}",
            f.iter()
                .map(|x| format!("{x:.4e}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if !ev.weights.is_empty() {
        let alphas: Vec<f64> = ev.weights.iter().filter_map(|w| w.alpha).collect();
        let mean = alphas.iter().sum::<f64>() / alphas.len().max(1) as f64;
        let _ = writeln!(
            s,
            "\nweight spectra: {} matrices, mean alpha {mean:.3}",
            ev.weights.len()
        );
    }
    s.push('\n');
    s.push_str(&table::render_frame(&ev.summary.frame));
    s
}

/// The key most heads of layer `l` attend to most, over all texts, named by its token.
fn top_sink_key(ev: &Evaluation, encoded: &[Encoded], l: usize) -> String {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    let mut total = 0;
    for r in &ev.reports {
        if let Some(layer) = r.layers.get(l) {
            for h in &layer.sink.heads {
                *counts.entry(h.top_key).or_default() += 1;
                total += 1;
            }
        }
    }
    let Some((&pos, &count)) = counts.iter().max_by_key(|(_, c)| **c) else {
        return "-".into();
    };
    let token = encoded
        .iter()
        .find_map(|e| e.tokens.get(pos))
        .map_or("?".into(), |t| format!("{t:?}"));
    format!("{pos} {token} ({count}/{total} heads)")
}

#[allow(clippy::too_many_arguments)]
fn write_out(
    out: &Path,
    args: &AnalyzeArgs,
    subject: &Subject<Autodiff<Flex>>,
    texts: &[String],
    encoded: &[Encoded],
    ev: &Evaluation,
    probe: &[SequenceCapture],
    hooks: &[Box<dyn crate::hooks::Hook>],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create output folder", out.display()))?;
    let json = Output {
        model: &args.model,
        family: &subject.family,
        texts: texts
            .iter()
            .zip(encoded)
            .map(|(t, e)| TextOutput {
                text: t,
                tokens: &e.tokens,
                input_ids: &e.ids,
            })
            .collect(),
        evaluation: ev,
    };
    let path = out.join("analysis.json");
    atomic::write_file(&path, &serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    let mut log = RunLog::open(out, None)?;
    let input = HookInput {
        evaluation: ev,
        probe,
    };
    let o = run_hooks(hooks, &input);
    let session = SessionRecords::analysis(&args.model, &subject.family, &subject.model.config);
    log.hparams(0, &session.experiment)?;
    log.hparams(0, &session.start)?;
    log.layout(0, &tags::layout(&o, log.filter(), false))?;
    log.evaluation(0, &ev.summary.frame, &o.scalars, &o.histograms, &o.images)?;
    log.text("model", &format!("{} ({})", args.model, subject.family), 0)?;
    log.hparams(0, &hparams::session_succeeded())?;
    log.flush()?;
    println!(
        "wrote {} and logs (tensorboard --logdir {})",
        path.display(),
        log.tb_dir().display()
    );
    Ok(())
}

/// `input_ids` [T] i64, `attentions` [L,H,T,T] f32, `hidden_states` [L+1,T,d] f32 with
/// the last state after the final norm, as Hugging Face's `output_hidden_states`.
fn dump(path: &Path, enc: &Encoded, seq: &SequenceCapture) -> anyhow::Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let (l, h, t) = (seq.maps.layers(), seq.maps.heads(), seq.maps.seq_len());
    let hidden = seq.hidden.as_ref().context("no hidden states captured")?;
    let d = hidden.d_model();
    let mut states: Vec<f32> = Vec::with_capacity((l + 1) * t * d);
    for i in 0..=l {
        match (&seq.final_hidden, i == l) {
            (Some(f), true) => states.extend_from_slice(f),
            _ => states.extend_from_slice(hidden.state(i)),
        }
    }
    let ids: Vec<i64> = enc.ids.iter().map(|&x| x as i64).collect();
    // safetensors is little-endian, as every target sinkscope builds for.
    let views = vec![
        (
            "input_ids",
            TensorView::new(Dtype::I64, vec![t], bytemuck::cast_slice(&ids))?,
        ),
        (
            "attentions",
            TensorView::new(
                Dtype::F32,
                vec![l, h, t, t],
                bytemuck::cast_slice(seq.maps.data()),
            )?,
        ),
        (
            "hidden_states",
            TensorView::new(Dtype::F32, vec![l + 1, t, d], bytemuck::cast_slice(&states))?,
        ),
    ];
    atomic::write_file(path, &safetensors::serialize(views, None)?)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}
