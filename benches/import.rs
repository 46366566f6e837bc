//! Import cost on a SmolLM2-135M-shaped model (d 576, 30 layers, 9 query / 3 key-value
//! heads, MLP 1536, vocabulary 49152, tied embeddings; ≈ 134.5 M parameters), written with
//! random weights to a temporary folder as a Hugging Face checkpoint: load time (f32 and
//! bf16 files), peak resident memory against the model's f32 size, and tokens/s of the
//! forward pass that captures every attention map and residual.
//!
//! Peak memory is the process's VmHWM, reset (`/proc/self/clear_refs`) after the file is
//! written, so it covers loading plus one forward pass, as an analysis does.
//!
//! Run: `cargo bench --bench import`.
#![allow(
    missing_docs,
    reason = "criterion_group! defines an undocumented `pub fn benches`"
)]

use std::fs::{self, File};
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use burn::backend::Flex;
use burn::prelude::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sinkscope::import::load;
use sinkscope::model::{Batch, ForwardOptions, Taps};

type B = Flex;

const D: usize = 576;
const LAYERS: usize = 30;
const HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = D / HEADS;
const FF: usize = 1536;
const VOCAB: usize = 49152;
/// Tokens per forward pass.
const T: usize = 128;

/// (name, row-major shape, whether it is a norm scale) in checkpoint order.
fn tensors() -> Vec<(String, Vec<usize>, bool)> {
    let mut t = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![VOCAB, D],
        false,
    )];
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        t.push((format!("{p}.input_layernorm.weight"), vec![D], true));
        t.push((
            format!("{p}.self_attn.q_proj.weight"),
            vec![HEADS * HEAD_DIM, D],
            false,
        ));
        t.push((
            format!("{p}.self_attn.k_proj.weight"),
            vec![KV_HEADS * HEAD_DIM, D],
            false,
        ));
        t.push((
            format!("{p}.self_attn.v_proj.weight"),
            vec![KV_HEADS * HEAD_DIM, D],
            false,
        ));
        t.push((
            format!("{p}.self_attn.o_proj.weight"),
            vec![D, HEADS * HEAD_DIM],
            false,
        ));
        t.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![D],
            true,
        ));
        t.push((format!("{p}.mlp.gate_proj.weight"), vec![FF, D], false));
        t.push((format!("{p}.mlp.up_proj.weight"), vec![FF, D], false));
        t.push((format!("{p}.mlp.down_proj.weight"), vec![D, FF], false));
    }
    t.push(("model.norm.weight".to_string(), vec![D], true));
    t
}

/// Writes the checkpoint one tensor at a time (never the whole model in memory), in f32
/// or bf16; returns the parameter count.
fn write_checkpoint(dir: &Path, bf16: bool) -> usize {
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": VOCAB, "hidden_size": D,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "intermediate_size": FF,
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "hidden_act": "silu",
        "rope_theta": 100000.0, "tie_word_embeddings": true,
    });
    fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let tokenizer =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/llama/tokenizer.json");
    fs::copy(tokenizer, dir.join("tokenizer.json")).unwrap();

    let width = if bf16 { 2 } else { 4 };
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    let mut params = 0;
    for (name, shape, _) in tensors() {
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
    for (_, shape, norm) in tensors() {
        let n: usize = shape.iter().product();
        let mut bytes = Vec::with_capacity(n * width);
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
    }
    out.flush().unwrap();
    params
}

/// A `/proc/self/status` field in bytes (Linux), e.g. `VmHWM`.
fn status_bytes(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak-RSS counter; false where the kernel does not allow it.
fn reset_peak() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn batch() -> Batch<B> {
    let ids: Vec<i64> = (0..T as i64).map(|i| (i * 7919) % VOCAB as i64).collect();
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
    let params = write_checkpoint(f32_dir.path(), false);
    report(f32_dir.path(), params, "f32 checkpoint");
    let bf16_dir = tempfile::tempdir().unwrap();
    write_checkpoint(bf16_dir.path(), true);
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

criterion_group!(benches, bench_import);
criterion_main!(benches);
