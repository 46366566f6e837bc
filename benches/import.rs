//! Import cost on a SmolLM2-135M-shaped model (d 576, 30 layers, 9 query / 3 key-value
//! heads, MLP 1536, vocabulary 49152, tied embeddings; ≈ 134.5 M parameters), written with
//! random weights to a temporary folder as a Hugging Face checkpoint: load time (f32 and
//! bf16 files), peak resident memory against the model's f32 size, and tokens/s of the
//! forward pass that captures every attention map and residual.
//!
//! Peak memory is the process's VmHWM, reset (`/proc/self/clear_refs`) after the file is
//! written, so it covers loading plus one forward pass, as an analysis does.
//!
//! Then **a checkpoint larger than its f32 copy should need**: a Llama-shaped bf16
//! checkpoint written by this bench (never shipped), analyzed as `sinkscope analyze` does
//! (`Subject::load_with` + `analyze_streaming`, 128 tokens, the hooks' plan) twice, each in
//! its own child process so its peak RSS (VmHWM) is its own: "in memory" (every weight
//! converted to f32 at load, as `analyze` did before blocks were read on demand, and as
//! `analyze --fisher` still does) and "on demand" (what `analyze` does: each block read
//! from the memory-mapped file when the forward pass reaches it). Printed: load and
//! analysis time, peak RSS and peak RSS / f32 size. The size is chosen with
//! `SINKSCOPE_BIGLOAD`: `1b` (default: d 2048, 16 layers, 32/8 heads, MLP 8192, vocabulary
//! 32000, untied head; 1.1 B parameters, a 2.2 GB file), `8b` (Llama 3 8B: d 4096, 32
//! layers, 32/8 heads, MLP 14336, vocabulary 128256; a 16 GB file), `off`. The file goes
//! to a temporary folder under `SINKSCOPE_BIGLOAD_DIR` (default the system's) and is
//! deleted at the end. The in-memory run is skipped when the f32 copy would not fit in
//! 80 % of the available memory (it would only be killed).
//!
//! Run: `cargo bench --bench import`; `SINKSCOPE_BIGLOAD=8b cargo bench --bench import`.
#![allow(
    missing_docs,
    reason = "criterion_group! defines an undocumented `pub fn benches`"
)]

use std::fs::{self, File};
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::prelude::*;
use criterion::{criterion_group, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sinkscope::eval::{analyze_streaming, Subject};
use sinkscope::hooks::{analysis_hooks, plan_for};
use sinkscope::import::{load, Residence};
use sinkscope::model::budget::available_bytes;
use sinkscope::model::{Batch, ForwardOptions, Taps};

#[path = "common/process.rs"]
mod process;
use process::{run_child, status_bytes};

type B = Flex;

/// A Llama-shaped checkpoint.
#[derive(Clone, Copy, Debug)]
struct Shape {
    d: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    ff: usize,
    vocab: usize,
    tied: bool,
}

impl Shape {
    fn head_dim(&self) -> usize {
        self.d / self.heads
    }
}

/// SmolLM2-135M.
const SMOLLM2: Shape = Shape {
    d: 576,
    layers: 30,
    heads: 9,
    kv_heads: 3,
    ff: 1536,
    vocab: 49152,
    tied: true,
};

/// The default large checkpoint: 1.1 B parameters, 4.4 GB in f32.
const BIG_1B: Shape = Shape {
    d: 2048,
    layers: 16,
    heads: 32,
    kv_heads: 8,
    ff: 8192,
    vocab: 32000,
    tied: false,
};

/// Llama 3 8B: 8.0 B parameters, 32 GB in f32.
const LLAMA3_8B: Shape = Shape {
    d: 4096,
    layers: 32,
    heads: 32,
    kv_heads: 8,
    ff: 14336,
    vocab: 128256,
    tied: false,
};

/// Tokens per forward pass.
const T: usize = 128;

/// (name, row-major shape, whether it is a norm scale) in checkpoint order.
fn tensors(s: &Shape) -> Vec<(String, Vec<usize>, bool)> {
    let (d, hd) = (s.d, s.head_dim());
    let mut t = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![s.vocab, d],
        false,
    )];
    for i in 0..s.layers {
        let p = format!("model.layers.{i}");
        t.push((format!("{p}.input_layernorm.weight"), vec![d], true));
        t.push((
            format!("{p}.self_attn.q_proj.weight"),
            vec![s.heads * hd, d],
            false,
        ));
        t.push((
            format!("{p}.self_attn.k_proj.weight"),
            vec![s.kv_heads * hd, d],
            false,
        ));
        t.push((
            format!("{p}.self_attn.v_proj.weight"),
            vec![s.kv_heads * hd, d],
            false,
        ));
        t.push((
            format!("{p}.self_attn.o_proj.weight"),
            vec![d, s.heads * hd],
            false,
        ));
        t.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![d],
            true,
        ));
        t.push((format!("{p}.mlp.gate_proj.weight"), vec![s.ff, d], false));
        t.push((format!("{p}.mlp.up_proj.weight"), vec![s.ff, d], false));
        t.push((format!("{p}.mlp.down_proj.weight"), vec![d, s.ff], false));
    }
    t.push(("model.norm.weight".to_string(), vec![d], true));
    if !s.tied {
        t.push(("lm_head.weight".to_string(), vec![s.vocab, d], false));
    }
    t
}

/// Writes the checkpoint a slice of a tensor at a time (never the whole model in memory),
/// in f32 or bf16; returns the parameter count.
fn write_checkpoint(dir: &Path, s: &Shape, bf16: bool) -> usize {
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": s.vocab, "hidden_size": s.d,
        "num_hidden_layers": s.layers, "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads, "intermediate_size": s.ff,
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "hidden_act": "silu",
        "rope_theta": 100000.0, "tie_word_embeddings": s.tied,
    });
    fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let tokenizer =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/llama/tokenizer.json");
    fs::copy(tokenizer, dir.join("tokenizer.json")).unwrap();

    let width = if bf16 { 2 } else { 4 };
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    let mut params = 0;
    for (name, shape, _) in tensors(s) {
        let n: usize = shape.iter().product();
        header.insert(
            name,
            serde_json::json!({
                "dtype": if bf16 { "BF16" } else { "F32" },
                "shape": shape,
                "data_offsets": [offset, offset + n * width],
            }),
        );
        offset += n * width;
        params += n;
    }
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = BufWriter::new(File::create(dir.join("model.safetensors")).unwrap());
    out.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    out.write_all(&header).unwrap();
    let mut rng = StdRng::seed_from_u64(135);
    const CHUNK: usize = 1 << 20;
    let mut bytes = Vec::with_capacity(CHUNK * width);
    for (_, shape, norm) in tensors(s) {
        let mut left: usize = shape.iter().product();
        while left > 0 {
            let n = left.min(CHUNK);
            bytes.clear();
            for _ in 0..n {
                let v: f32 = if norm {
                    1.0 + 0.1 * (rng.random::<f32>() - 0.5)
                } else {
                    0.04 * (rng.random::<f32>() - 0.5)
                };
                if bf16 {
                    bytes.extend(half::bf16::from_f32(v).to_bits().to_le_bytes());
                } else {
                    bytes.extend(v.to_le_bytes());
                }
            }
            out.write_all(&bytes).unwrap();
            left -= n;
        }
    }
    out.flush().unwrap();
    params
}

/// Resets the peak-RSS counter; false where the kernel does not allow it.
fn reset_peak() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `T` token ids spread over a vocabulary of `vocab`.
fn ids(vocab: usize) -> Vec<u32> {
    (0..T).map(|i| ((i * 7919) % vocab) as u32).collect()
}

fn batch() -> Batch<B> {
    let ids: Vec<i64> = ids(SMOLLM2.vocab).into_iter().map(i64::from).collect();
    Batch {
        ids: Tensor::from_data(TensorData::new(ids, [1, T]), &Default::default()),
        padding: None,
    }
}

fn capture_all() -> ForwardOptions {
    ForwardOptions::capture(Taps::PROBS | Taps::RESIDUALS)
}

/// One load and one capturing forward pass, with peak memory, printed as the headline.
fn report(dir: &Path, params: usize, label: &str) {
    let f32_bytes = params as u64 * 4;
    let peak_known = reset_peak();
    let start = Instant::now();
    let m = load::<B>(dir.to_str().unwrap(), &Default::default()).unwrap();
    let load_s = start.elapsed().as_secs_f64();
    let after_load = status_bytes("VmHWM");
    let start = Instant::now();
    let out = m.model.forward(&batch(), &capture_all());
    let _ = black_box(out.logits.into_data());
    let fwd_s = start.elapsed().as_secs_f64();
    let after_fwd = status_bytes("VmHWM");
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let ratio = |b: Option<u64>| b.map_or(f64::NAN, |b| b as f64 / f32_bytes as f64);
    eprintln!(
        "[{label}] {:.1} M params, f32 size {:.3} GiB; load {:.2} s; peak RSS after load \
         {:.3} GiB ({:.2}× f32), after a T={T} capturing forward {:.3} GiB ({:.2}× f32){}; \
         forward {:.2} s = {:.0} tokens/s",
        params as f64 / 1e6,
        gib(f32_bytes),
        load_s,
        gib(after_load.unwrap_or(0)),
        ratio(after_load),
        gib(after_fwd.unwrap_or(0)),
        ratio(after_fwd),
        if peak_known {
            ""
        } else {
            " (peak not reset: includes writing)"
        },
        fwd_s,
        T as f64 / fwd_s,
    );
}

fn bench_import(c: &mut Criterion) {
    let f32_dir = tempfile::tempdir().unwrap();
    let params = write_checkpoint(f32_dir.path(), &SMOLLM2, false);
    report(f32_dir.path(), params, "f32 checkpoint");
    let bf16_dir = tempfile::tempdir().unwrap();
    write_checkpoint(bf16_dir.path(), &SMOLLM2, true);
    report(bf16_dir.path(), params, "bf16 checkpoint");

    let mut group = c.benchmark_group("import_smollm2_135m_shape");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    for (label, dir) in [("load_f32", &f32_dir), ("load_bf16", &bf16_dir)] {
        let path = dir.path().to_str().unwrap().to_string();
        group.bench_function(label, |b| {
            b.iter(|| load::<B>(&path, &Default::default()).unwrap())
        });
    }
    let m = load::<B>(f32_dir.path().to_str().unwrap(), &Default::default()).unwrap();
    let input = batch();
    group.throughput(Throughput::Elements(T as u64));
    group.bench_function("forward_capture_attentions_t128", |b| {
        b.iter(|| {
            let out = m.model.forward(black_box(&input), &capture_all());
            black_box(out.logits.into_data())
        })
    });
    group.finish();
}

const CHILD_ENV: &str = "SINKSCOPE_BIGLOAD_CHILD";
const SIZE_ENV: &str = "SINKSCOPE_BIGLOAD";
const DIR_ENV: &str = "SINKSCOPE_BIGLOAD_DIR";

/// One analysis of the checkpoint in `dir` in this process, as `analyze` runs it:
/// prints `load_s analysis_s peak_after_load_bytes peak_bytes`.
fn child(residence: Residence, dir: &str) {
    sinkscope::model::kernels::retain_freed_memory();
    let device = Default::default();
    let start = Instant::now();
    let subject = Subject::<Autodiff<Flex>>::load_with(dir, residence, &device).unwrap();
    let load_s = start.elapsed().as_secs_f64();
    let after_load = status_bytes("VmHWM").unwrap_or_default();
    let start = Instant::now();
    let inner = subject.model.valid();
    let plan = plan_for(&analysis_hooks(false), Default::default());
    let seqs = analyze_streaming(
        &inner,
        &[ids(inner.config.vocab_size)],
        0,
        8,
        true,
        &plan.analysis,
        &device,
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_eq!(seqs[0].report.layers.len(), inner.config.n_layers);
    let analysis_s = start.elapsed().as_secs_f64();
    let peak = status_bytes("VmHWM").unwrap_or_default();
    println!("{load_s:.2} {analysis_s:.2} {after_load} {peak}");
}

/// Writes the large bf16 checkpoint, analyzes it in memory and on demand (each in a child
/// process), prints the figures and deletes the file.
fn big_checkpoint() {
    let size = std::env::var(SIZE_ENV).unwrap_or_else(|_| "1b".into());
    let (label, shape) = match size.as_str() {
        "off" | "0" => return,
        "8b" => ("Llama-3-8B-shaped", LLAMA3_8B),
        "1b" => ("1.1B Llama-shaped", BIG_1B),
        other => panic!("{SIZE_ENV}={other}: use 1b, 8b or off"),
    };
    let dir = match std::env::var_os(DIR_ENV) {
        Some(base) => tempfile::tempdir_in(base),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let start = Instant::now();
    let params = write_checkpoint(dir.path(), &shape, true);
    let f32_bytes = params as f64 * 4.0;
    let gb = |b: f64| b / 1e9;
    eprintln!(
        "[{label} bf16 checkpoint] {:.2} B params, file {:.1} GB, f32 copy {:.1} GB \
         (written in {:.0} s)",
        params as f64 / 1e9,
        gb(params as f64 * 2.0),
        gb(f32_bytes),
        start.elapsed().as_secs_f64()
    );
    let available = available_bytes().unwrap_or(u64::MAX);
    for (mode, name) in [("on_demand", "on demand"), ("in_memory", "in memory")] {
        if mode == "in_memory" && f32_bytes > 0.8 * available as f64 {
            eprintln!(
                "[{label}, {name}] skipped: the f32 copy ({:.1} GB) exceeds 80 % of the \
                 available memory ({:.1} GB)",
                gb(f32_bytes),
                gb(available as f64)
            );
            continue;
        }
        let label = format!("[{label}, {name}]");
        let Some(f) = run_child(CHILD_ENV, mode, &[dir.path().as_os_str()], &label) else {
            continue;
        };
        let f: Vec<f64> = f.iter().map(|x| x.parse().unwrap_or(f64::NAN)).collect();
        eprintln!(
            "{label} load {:.1} s, analysis of {T} tokens {:.1} s; peak RSS after \
             load {:.2} GB ({:.2}× f32), after the analysis {:.2} GB ({:.2}× f32)",
            f[0],
            f[1],
            gb(f[2]),
            f[2] / f32_bytes,
            gb(f[3]),
            f[3] / f32_bytes
        );
    }
}

criterion_group!(benches, bench_import);

fn main() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        let residence = match mode.as_str() {
            "in_memory" => Residence::InMemory,
            _ => Residence::OnDemand,
        };
        let dir = std::env::args().nth(1).expect("checkpoint folder");
        child(residence, &dir);
        return;
    }
    big_checkpoint();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
