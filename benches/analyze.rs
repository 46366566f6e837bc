//! `sinkscope analyze` at real lengths: a SmolLM2-135M-shaped decoder (d 576, 30 layers,
//! 9 query / 3 key-value heads, MLP 1536, vocabulary 49152, RMSNorm, SwiGLU, RoPE) with
//! random weights, one text of T random tokens, the analysis `analyze` runs (every
//! attention metric with the hooks' plan, residuals for the massive activations).
//!
//! Each length runs in a child process of this binary so that its peak resident memory
//! (`VmHWM` of `/proc/self/status`) is its own. Printed per length: wall time of the
//! whole analysis (forward pass included) and peak RSS.
//!
//! The weights are N(0, 0.02²) as `Transformer::init` draws them; the score scale is set
//! to 1 (instead of 1/√64) so that the random maps are peaked and differ between heads,
//! as a trained model's do, rather than almost uniform.
//!
//! Run: `cargo bench --bench analyze` (lengths 128 … 2048), or choose lengths with
//! `SINKSCOPE_BENCH_LENGTHS=256,1024 cargo bench --bench analyze`.

use std::time::Instant;

use burn::backend::Flex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sinkscope::eval::{analyze_streaming, finish};
use sinkscope::hooks::{analysis_hooks, plan_for};
#[path = "common/process.rs"]
mod process;
use process::{run_child, status_bytes};
use sinkscope::model::{MlpKind, ModelConfig, NormKind, PositionConfig, Transformer};

type B = Flex;

const CHILD_ENV: &str = "SINKSCOPE_ANALYZE_BENCH_CHILD";
const LENGTHS_ENV: &str = "SINKSCOPE_BENCH_LENGTHS";
const DEFAULT_LENGTHS: [usize; 5] = [128, 256, 512, 1024, 2048];

fn smollm2_shaped(t: usize) -> ModelConfig {
    ModelConfig {
        vocab_size: 49152,
        d_model: 576,
        n_layers: 30,
        n_heads: 9,
        n_kv_heads: Some(3),
        d_ff: 1536,
        max_seq_len: t.max(2048),
        position: PositionConfig {
            base: 100_000.0,
            ..PositionConfig::default()
        },
        norm: NormKind::Rms,
        mlp: MlpKind::Swiglu,
        attn_scale: Some(1.0),
        ..ModelConfig::default()
    }
}

/// One length, in this process: prints `T seconds forward_seconds peak_bytes`.
fn child(t: usize) {
    let device = Default::default();
    let cfg = smollm2_shaped(t);
    let model = Transformer::<B>::init(&cfg, 7, &device);
    let mut rng = StdRng::seed_from_u64(t as u64);
    let tokens: Vec<u32> = (0..t).map(|_| rng.random_range(0..49152u32)).collect();
    let plan = plan_for(&analysis_hooks(false), Default::default());
    let start = Instant::now();
    let seqs = analyze_streaming(
        &model,
        &[tokens],
        0,
        1,
        true,
        &plan.analysis,
        &device,
        &mut |_| Ok(()),
    )
    .expect("analysis");
    let nulls: Vec<Option<&[f64]>> = seqs.iter().map(|s| s.null_mass.as_deref()).collect();
    let reports = seqs.iter().map(|s| s.report.clone()).collect();
    let ev = finish(None, reports, &nulls, &[], None, &plan).expect("summary");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(ev.reports[0].layers.len(), 30);
    println!(
        "{t} {secs:.3} {}",
        status_bytes("VmHWM").unwrap_or_default()
    );
}

fn main() {
    if let Ok(t) = std::env::var(CHILD_ENV) {
        child(t.parse().expect("child length"));
        return;
    }
    let lengths: Vec<usize> = std::env::var(LENGTHS_ENV)
        .ok()
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().parse().expect("lengths: comma-separated integers"))
                .collect()
        })
        .unwrap_or_else(|| DEFAULT_LENGTHS.to_vec());
    println!("SmolLM2-135M-shaped analysis (30 layers × 9 heads), one text, random weights");
    println!("{:>7} {:>10} {:>12}", "tokens", "time s", "peak RSS GB");
    for t in lengths {
        let Some(f) = run_child(CHILD_ENV, &t.to_string(), &[], &format!("{t} tokens")) else {
            continue;
        };
        let peak: f64 = f[2].parse().unwrap_or(f64::NAN);
        println!("{:>7} {:>10} {:>12.2}", f[0], f[1], peak / 1e9);
    }
}
