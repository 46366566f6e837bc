//! `sinkscope analyze MODEL [--text T]... [--text-file F] [--max-len N] [--out DIR]
//! [--dump FILE.safetensors] [--fisher] [--weights] [--revisions all|A,B,…]`: the training
//! hooks' analysis on a pretrained model (Hugging Face folder, hub id in the local cache,
//! GGUF file) or a sinkscope checkpoint, with the sink tokens named; or on a series of
//! checkpoints, one revision after the other (`series.rs`).

mod dump;
mod series;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::analysis::names;
use crate::analysis::{table, AnalysisConfig, AttentionMaps};
use crate::cli::texts::TextArgs;
use crate::eval::{
    analyze_streaming, finish, fisher_trace, lm_batch, visit_weight_matrices, weight_spectra,
    EvalPlan, Evaluation, LayerMaps, SequenceCapture, Subject,
};
use crate::hooks::tags::LayoutBuilder;
use crate::hooks::{analysis_hooks, hparams, plan_for, run_hooks, Hook, HookInput, SessionRecords};
use crate::import::tokenizer::Encoded;
use crate::import::Residence;
use crate::io::atomic;
use crate::log::RunLog;
use crate::model::budget;
use dump::Dump;

/// The backend `analyze` runs on (Autodiff for `--fisher`'s backward pass).
type B = Autodiff<Flex>;

/// Arguments of `sinkscope analyze`.
#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// A Hugging Face model folder, a hub id already in the local cache (org/name), a
    /// .gguf file, or a sinkscope checkpoint or run folder. A folder whose subfolders
    /// are checkpoints named with a step (step1000, checkpoint-1000, global_step1000,
    /// step-00000300) is analyzed as a series.
    pub model: String,
    /// The texts.
    #[command(flatten)]
    pub input: TextArgs,
    /// Write analysis.json, metrics.jsonl and TensorBoard logs here (for a series:
    /// probes.json, metrics.jsonl and logs with step = each revision's step; a rerun
    /// with the same folder skips the revisions already recorded).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the first text's input_ids, attentions [L,H,T,T] and hidden_states
    /// [L+1,T,d] (as Hugging Face's output_hidden_states) to this safetensors file.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Add per-layer empirical Fisher information (one backward pass per text). Holds the
    /// model and its gradients in memory (2× its f32 size) instead of reading it block by
    /// block; refused when that does not fit.
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
    /// Analyze a series of checkpoints in step order: `all`, or names or steps
    /// (`step1000,step2000` or `1000,2000`) — the cached revisions of a hub id
    /// (Pythia's `step1000` branches), the step-named subfolders of a folder, or a
    /// sinkscope run's checkpoints.
    #[arg(long, value_name = "all|A,B,…")]
    pub revisions: Option<String>,
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

/// The probe inputs of an analysis: the texts and their tokens. A series chooses them
/// once and records them (`probes.json`), so every revision sees the same ids.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Probes {
    texts: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    tokens: Vec<Vec<String>>,
    special: Vec<Vec<bool>>,
}

impl Probes {
    /// The texts given on the command line, else a sinkscope checkpoint's own probe
    /// windows (the hooks' token ids), else the default passages; tokenized by `subject`.
    fn choose(input: &TextArgs, subject: &Subject<B>) -> anyhow::Result<Self> {
        let given = !input.texts.is_empty() || input.text_file.is_some();
        let (texts, encoded) = if !given && !subject.probe_inputs.is_empty() {
            let mut encoded = subject.probe_inputs.clone();
            for e in &mut encoded {
                e.ids.truncate(input.max_len);
                e.tokens.truncate(input.max_len);
                e.special.truncate(input.max_len);
            }
            (subject.probe_texts.clone(), encoded)
        } else {
            let texts = input.texts(&subject.probe_texts)?;
            let encoded = input.encode(subject, &texts)?;
            (texts, encoded)
        };
        Ok(Self {
            texts,
            input_ids: encoded.iter().map(|e| e.ids.clone()).collect(),
            tokens: encoded.iter().map(|e| e.tokens.clone()).collect(),
            special: encoded.into_iter().map(|e| e.special).collect(),
        })
    }

    /// The probes as [`Encoded`] texts (for the table and analysis.json).
    fn encoded(&self) -> Vec<Encoded> {
        (0..self.input_ids.len())
            .map(|i| Encoded {
                ids: self.input_ids[i].clone(),
                tokens: self.tokens[i].clone(),
                special: self.special[i].clone(),
            })
            .collect()
    }
}

/// What every analysis computes and logs: the plan and the hooks (all but Fisher's,
/// which reads training gradients; the weight spectra only with `--weights`).
struct Setup {
    plan: EvalPlan,
    hooks: Vec<Box<dyn Hook>>,
}

impl Setup {
    fn new(args: &AnalyzeArgs) -> anyhow::Result<Self> {
        let analysis = match &args.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("{}: cannot read", p.display()))?;
                AnalysisConfig::from_toml(&text).with_context(|| p.display().to_string())?
            }
            None => AnalysisConfig::default(),
        };
        let hooks = analysis_hooks(args.weights);
        let plan = plan_for(&hooks, analysis);
        Ok(Self { plan, hooks })
    }
}

/// One model's analysis: the evaluation and the first probe's maps as head means per
/// layer (what the heatmap hook reads); `--dump` is written while it runs.
struct Analyzed {
    evaluation: Evaluation,
    probe: Vec<SequenceCapture>,
}

/// The one analysis of `subject` on `probes`, shared by a single model and every
/// revision of a series: attention layer by layer through the evaluation path, weight
/// spectra and Fisher information as asked.
fn analyze_subject(
    args: &AnalyzeArgs,
    setup: &Setup,
    subject: &Subject<B>,
    probes: &Probes,
    step: Option<usize>,
) -> anyhow::Result<Analyzed> {
    let device = Default::default();
    let vocab = subject.model.config.vocab_size;
    if let Some(&bad) = probes
        .input_ids
        .iter()
        .flatten()
        .find(|&&i| i as usize >= vocab)
    {
        anyhow::bail!("probe token id {bad} is outside the model's vocabulary of {vocab}");
    }
    let seqs = &probes.input_ids;
    let inner = subject.model.valid();
    // Weight spectra a block at a time: for a model whose blocks are read on demand, one
    // block's weights are in memory at once.
    let mut spectra = Vec::new();
    if setup.plan.weights {
        visit_weight_matrices(&inner, &mut |group| {
            spectra.extend(weight_spectra(&group, &setup.plan.spectra)?);
            Ok(())
        })?;
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
    // them and then dropped. Only the first text's maps are kept: written to --dump as
    // they come, and as head means (what the heatmap hook reads) for --out.
    let cfg = &inner.config;
    let mut dump = match &args.dump {
        Some(path) => Some(Dump::create(
            path,
            &seqs[0],
            cfg.n_layers,
            cfg.n_heads,
            cfg.d_model,
        )?),
        None => None,
    };
    let mut means: Vec<f32> = Vec::new();
    let streamed = analyze_streaming(
        &inner,
        seqs,
        subject.pad_id(),
        args.batch,
        true,
        &setup.plan.analysis,
        &device,
        &mut |lm: LayerMaps<'_>| {
            if lm.sequence == 0 {
                if let Some(d) = dump.as_mut() {
                    d.layer(lm.layer, lm.maps)
                        .map_err(|e| crate::Error::Other(format!("{e:#}")))?;
                }
                if args.out.is_some() {
                    means.extend(lm.maps.head_mean(0).iter().map(|&x| x as f32));
                }
            }
            Ok(())
        },
    )
    .with_context(|| format!("{}: the forward pass", subject.source))?;
    let null_mass: Vec<Option<&[f64]>> = streamed.iter().map(|s| s.null_mass.as_deref()).collect();
    let reports = streamed.iter().map(|s| s.report.clone()).collect();
    let mut evaluation = finish(step, reports, &null_mass, &[], fisher, &setup.plan)?;
    evaluation.weights = spectra;
    let first = &streamed[0];
    let t = first.tokens.len();
    let layers = inner.config.n_layers;
    let probe = if args.out.is_some() {
        // the heatmap hook reads head means only: one "head" per layer carries them
        vec![SequenceCapture {
            tokens: first.tokens.clone(),
            maps: AttentionMaps::new(layers, 1, t, means)?,
            values: None,
            hidden: None,
            final_hidden: None,
            null_mass: None,
        }]
    } else {
        Vec::new()
    };
    if let Some(d) = dump {
        d.finish(first.hidden.as_ref(), first.final_hidden.as_deref())?;
    }
    Ok(Analyzed { evaluation, probe })
}

/// The logs of `analyze --out`, written the way the training hooks write theirs
/// (`RunLog`, the hooks' tags, the custom-scalars layout, HParams records): one
/// evaluation at step 0 for a model, one per revision at its step for a series.
struct AnalysisLog {
    log: RunLog,
    layout: LayoutBuilder,
    layout_written: bool,
}

impl AnalysisLog {
    /// Opens the logs in `out`; `resume_from` as [`RunLog::open`].
    fn open(out: &Path, resume_from: Option<usize>) -> anyhow::Result<Self> {
        Ok(Self {
            log: RunLog::open(out, resume_from)?,
            layout: LayoutBuilder::default(),
            layout_written: false,
        })
    }

    /// The HParams session records and the model's name, at the first step.
    fn start(&mut self, step: usize, session: &SessionRecords, about: &str) -> anyhow::Result<()> {
        self.log.hparams(step, &session.experiment)?;
        self.log.hparams(step, &session.start)?;
        self.log.text("model", about, step)?;
        Ok(())
    }

    /// Runs the hooks on one analysis and logs what they give, then syncs: a series
    /// killed after this keeps the revision.
    fn evaluation(
        &mut self,
        step: usize,
        hooks: &[Box<dyn Hook>],
        a: &Analyzed,
    ) -> anyhow::Result<()> {
        let input = HookInput {
            evaluation: &a.evaluation,
            probe: &a.probe,
        };
        let o = run_hooks(hooks, &input);
        if self.layout.add(&o, self.log.filter()) || !self.layout_written {
            self.log.layout(step, &self.layout.layout(false))?;
            self.layout_written = true;
        }
        self.log.evaluation(
            step,
            &a.evaluation.summary.frame,
            &o.scalars,
            &o.histograms,
            &o.images,
        )?;
        self.log.flush()?;
        Ok(())
    }

    /// Marks the session as finished.
    fn succeeded(&mut self, step: usize) -> anyhow::Result<()> {
        self.log.hparams(step, &hparams::session_succeeded())?;
        self.log.flush()?;
        Ok(())
    }
}

/// The subject of `analyze` at `model`. An imported model's blocks are read from the
/// checkpoint as the forward pass reaches them (memory holds one block in f32, so a bf16
/// model larger than its f32 copy fits), except with `--fisher` on a model that has its
/// head: its backward pass needs every weight and its gradient at once, so the model is
/// then held in memory — refused, naming the sizes, when weights and gradients (2× the
/// f32 size) exceed the available memory.
fn load_subject(args: &AnalyzeArgs, model: &str) -> anyhow::Result<Subject<B>> {
    let device = Default::default();
    let subject = Subject::<B>::load_with(model, Residence::OnDemand, &device)?;
    if !(args.fisher && subject.head) || subject.model.on_demand.is_none() {
        return Ok(subject);
    }
    let needed = budget::model_bytes(&subject.model.config).and_then(|b| b.checked_mul(2));
    budget::check_fits("--fisher (every weight and its gradient in f32)", needed).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; without --fisher the analysis reads the model block by block",
            subject.source
        )
    })?;
    drop(subject);
    Ok(Subject::<B>::load_with(
        model,
        Residence::InMemory,
        &device,
    )?)
}

/// Runs the analysis of one model and prints the per-layer summary, or of a series
/// of checkpoints (`--revisions`, or a folder of step-named checkpoints).
pub fn run(args: &AnalyzeArgs) -> anyhow::Result<()> {
    if let Some(revisions) = crate::import::series(&args.model, args.revisions.as_deref())? {
        return series::run(args, revisions);
    }
    let setup = Setup::new(args)?;
    let subject = load_subject(args, &args.model)?;
    if let Some(c) = subject.caveat() {
        eprintln!("note: {c}");
    }
    if args.fisher && !subject.head {
        println!(
            "--fisher needs the output head (the loss), which this checkpoint has not: left out"
        );
    }
    let probes = Probes::choose(&args.input, &subject)?;
    let encoded = probes.encoded();
    let analyzed = analyze_subject(args, &setup, &subject, &probes, None)?;

    print!("{}", render(&subject, &encoded, &analyzed.evaluation));

    if let Some(out) = &args.out {
        write_out(
            out,
            args,
            &subject,
            &probes.texts,
            &encoded,
            &analyzed,
            &setup,
        )?;
    }
    if let Some(path) = &args.dump {
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
        "\n{:>5} {:>16} {:>16} {:>9} {:>8} {:>8} {:>10} {:>12} {:>5} {:>5}  top sink key",
        "layer",
        "sink_rate %",
        "first_tok_mass",
        "conc",
        "v_ratio",
        "kl",
        "kl_no_sink",
        "fiedler_0.01",
        "b0",
        "b1"
    );
    for l in 0..n {
        let get = |name: &str| stats.get(names::layer(name, l, n).as_str()).copied();
        let pm = |v: Option<(f64, f64)>, prec: usize| match v {
            Some((m, sd)) => format!("{m:.prec$}±{sd:.prec$}"),
            None => "-".into(),
        };
        let one = |v: Option<(f64, f64)>| v.map_or("-".into(), |(m, _)| format!("{m:.4}"));
        let int = |v: Option<(f64, f64)>| v.map_or("-".into(), |(m, _)| format!("{m:.1}"));
        let _ = writeln!(
            s,
            "{:>5} {:>16} {:>16} {:>9} {:>8} {:>8} {:>10} {:>12} {:>5} {:>5}  {}",
            l,
            pm(get(names::SINK_RATE), 1),
            pm(get(names::FIRST_TOKEN_MASS), 3),
            one(get(names::SINK_CONCENTRATION)),
            one(get(names::VALUE_NORM_RATIO)),
            one(get(names::KL)),
            one(get(names::KL_SINK_REMOVED)),
            one(get(&names::thresholded(names::FIEDLER, "0.01"))),
            int(get(&names::dimension(names::BETTI, 0))),
            int(get(&names::dimension(names::BETTI, 1))),
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

fn write_out(
    out: &Path,
    args: &AnalyzeArgs,
    subject: &Subject<B>,
    texts: &[String],
    encoded: &[Encoded],
    analyzed: &Analyzed,
    setup: &Setup,
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
        evaluation: &analyzed.evaluation,
    };
    let path = out.join("analysis.json");
    atomic::write_file(&path, &serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    let mut log = AnalysisLog::open(out, None)?;
    let session = SessionRecords::analysis(&args.model, &subject.family, &subject.model.config);
    log.start(0, &session, &format!("{} ({})", args.model, subject.family))?;
    log.evaluation(0, &setup.hooks, analyzed)?;
    log.succeeded(0)?;
    println!(
        "wrote {} and logs (tensorboard --logdir {})",
        path.display(),
        log.log.tb_dir().display()
    );
    Ok(())
}
