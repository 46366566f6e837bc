//! Training throughput (tokens/s of full optimiser steps: forward, backward, global
//! clipping, AdamW) on the CPU backend, and the cost of one hook evaluation next to
//! one training step.
//!
//! Models: the quick recipe's decoder (d 64, 2 layers, 4 heads, T 64, batch 16) and a
//! d 256, 6-layer, 8-head decoder at T 128, batch 16. The PyTorch eager peer for the
//! same models is `benches/torch_peer.py`.
//!
//! Run: `cargo bench --bench train`; `cargo bench --bench peer` prints the same
//! steps' median in `torch_peer.py`'s format, to run alternately with it.
#![allow(
    missing_docs,
    reason = "criterion_group! defines an undocumented `pub fn benches`"
)]

use std::time::Duration;

use burn::module::AutodiffModule;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sinkscope::eval::{capture, evaluate, weight_matrices, EvalPlan};
use sinkscope::hooks::registry;
use sinkscope::model::Transformer;
use sinkscope::train::data::bytes;

mod common;
use common::{corpus, model, Trainer, B};

fn bench_training(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(15));
    for (name, cfg, batch) in [
        ("quick_d64_l2_t64", model(64, 2, 4, 64), 16),
        ("d256_l6_h8_t128", model(256, 6, 8, 128), 16),
    ] {
        let mut trainer = Trainer::new(&cfg, batch);
        group.throughput(Throughput::Elements((batch * cfg.max_seq_len) as u64));
        group.bench_function(BenchmarkId::new("tokens", name), |b| {
            b.iter(|| trainer.step())
        });
    }
    group.finish();
}

/// One evaluation with every default hook (capture on the probe, analysis, weights)
/// on the quick model and the quick recipe's 4 probe windows: compare with one quick
/// training step above. The quick recipe's log-spaced schedule evaluates 11 times in
/// 300 steps.
fn bench_hook_evaluation(c: &mut Criterion) {
    let cfg = model(64, 2, 4, 64);
    let data = corpus(64);
    let dev = Default::default();
    let inner = Transformer::<B>::init(&cfg, 1, &dev).valid();
    let probe = data.probe_inputs(4);
    let mut plan = EvalPlan::default();
    for h in registry() {
        h.plan(&mut plan);
    }
    let mut group = c.benchmark_group("hooks");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("quick_evaluation_all_hooks", |b| {
        b.iter(|| {
            let captured = capture(&inner, &probe, bytes::PAD, true, &dev).unwrap();
            let weights = weight_matrices(&inner).unwrap();
            evaluate(Some(1), &captured, &weights, None, &plan).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_training, bench_hook_evaluation);
criterion_main!(benches);
