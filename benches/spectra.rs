//! Time of the weight spectra for a 4096 × 4096 matrix (the size of a 7B model's
//! attention projections): the singular values through faer, then the WeightWatcher fits.
//! Also the attention spectra of one 512 × 512 map.
//!
//! Run: `cargo bench --bench spectra`.
#![allow(
    missing_docs,
    reason = "criterion_group! defines an undocumented `pub fn benches`"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use faer::Par;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sinkscope::analysis::attn_spectra::matrix_spectrum;
use sinkscope::analysis::{weight_spectrum, SpectraConfig};

fn bench_weight_4096(c: &mut Criterion) {
    let n = 4096;
    let mut rng = StdRng::seed_from_u64(5);
    let w: Vec<f32> = (0..n * n).map(|_| rng.random::<f32>() - 0.5).collect();
    let cfg = SpectraConfig {
        randomize: false,
        ..SpectraConfig::default()
    };
    let mut group = c.benchmark_group("weight_spectrum_4096x4096");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    group.bench_function("all_cores", |b| {
        b.iter(|| weight_spectrum("w", black_box(&w), n, n, &cfg, Par::rayon(0)))
    });
    group.finish();
}

fn bench_attention_512(c: &mut Criterion) {
    let t = 512;
    let mut rng = StdRng::seed_from_u64(6);
    let mut a = vec![0.0f64; t * t];
    for i in 0..t {
        let row: Vec<f64> = (0..t).map(|_| rng.random::<f64>().exp()).collect();
        let s: f64 = row.iter().sum();
        for j in 0..t {
            a[i * t + j] = row[j] / s;
        }
    }
    let mut group = c.benchmark_group("attention_spectrum_512");
    group.sample_size(10);
    group.bench_function("bidirectional", |b| {
        b.iter(|| matrix_spectrum(black_box(&a), t, false, t))
    });
    group.finish();
}

criterion_group!(benches, bench_weight_4096, bench_attention_512);
criterion_main!(benches);
