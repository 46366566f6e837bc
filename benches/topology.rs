//! Persistence time of sinkscope's Rust implementation next to C++ Ripser (through the
//! `ripser` crate, which compiles the original `ripser.cpp` with -O3), on the same inputs:
//! attention-sized distance matrices (T = 64, 128, 256, 512 tokens, maxdim 1) and a point
//! cloud on a sphere, whose void needs H2.
//!
//! Run: `cargo bench --bench topology`.
#![allow(
    missing_docs,
    reason = "criterion_group! defines an undocumented `pub fn benches`"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sinkscope::analysis::topology::{attention_input, rips_persistence, RipsInput, TopologyMode};

/// Head mean of `heads` causal softmax maps with a first-token sink, like a small decoder's.
fn attention_mean(t: usize, heads: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut mean = vec![0.0; t * t];
    for _ in 0..heads {
        for i in 0..t {
            let logits: Vec<f64> = (0..=i)
                .map(|j| rng.random::<f64>() * 4.0 + if j == 0 { 2.0 } else { 0.0 })
                .collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
            let sum: f64 = exp.iter().sum();
            for (j, e) in exp.iter().enumerate() {
                mean[i * t + j] += e / sum / heads as f64;
            }
        }
    }
    mean
}

/// The lower triangle in f32, the C++ side's input format.
fn lower_f32(input: &RipsInput) -> Vec<f32> {
    let n = input.len();
    let mut lower = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 1..n {
        for j in 0..i {
            lower.push(input.distance(i, j) as f32);
        }
    }
    lower
}

fn bench_attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("rips_attention_maxdim1");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    for &t in &[64usize, 128, 256, 512] {
        let mean = attention_mean(t, 4, t as u64);
        let tokens: Vec<usize> = (0..t).collect();
        let input = attention_input(&mean, t, &tokens, TopologyMode::Symmetric);
        // the f32-rounded matrix, so that both sides see identical values
        let lower = lower_f32(&input);
        let ours_input =
            RipsInput::lower_triangle(t, &lower.iter().map(|&x| f64::from(x)).collect::<Vec<_>>())
                .expect("valid");
        group.bench_with_input(BenchmarkId::new("sinkscope", t), &t, |b, _| {
            b.iter(|| rips_persistence(black_box(&ours_input), 1, None))
        });
        group.bench_with_input(BenchmarkId::new("ripser_cpp", t), &t, |b, _| {
            b.iter(|| ripser::ripser(black_box(&lower), t, 1, None))
        });
    }
    group.finish();
}

fn bench_sphere_h2(c: &mut Criterion) {
    let mut group = c.benchmark_group("rips_sphere_maxdim2");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    let mut rng = StdRng::seed_from_u64(3);
    let n = 150;
    let mut points = Vec::with_capacity(n * 3);
    for _ in 0..n {
        let v: [f64; 3] = [
            rng.random::<f64>() - 0.5,
            rng.random::<f64>() - 0.5,
            rng.random::<f64>() - 0.5,
        ];
        let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        points.extend(
            v.iter()
                .map(|x| x / norm + 0.02 * (rng.random::<f64>() - 0.5)),
        );
    }
    let cloud = RipsInput::point_cloud(n, 3, &points).expect("valid");
    let lower = lower_f32(&cloud);
    let ours_input =
        RipsInput::lower_triangle(n, &lower.iter().map(|&x| f64::from(x)).collect::<Vec<_>>())
            .expect("valid");
    group.bench_function(BenchmarkId::new("sinkscope", n), |b| {
        b.iter(|| rips_persistence(black_box(&ours_input), 2, None))
    });
    group.bench_function(BenchmarkId::new("ripser_cpp", n), |b| {
        b.iter(|| ripser::ripser(black_box(&lower), n, 2, None))
    });
    group.finish();
}

criterion_group!(benches, bench_attention, bench_sphere_h2);
criterion_main!(benches);
