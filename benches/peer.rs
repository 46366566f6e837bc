//! The Rust side of `benches/torch_peer.py`: the same models and steps, timed the
//! same way (5 warm-up steps, then the median and fastest of 50 or 20), printed in
//! the same format, so the two can be run alternately on a machine whose speed
//! drifts (a shared VM) and compared pair by pair.
//!
//! Run: `cargo bench --bench peer` (criterion's figures: `cargo bench --bench train`).

use std::time::Instant;

mod common;
use common::{model, Trainer};

fn bench(name: &str, d: usize, layers: usize, heads: usize, t: usize, steps: usize) {
    let batch = 16;
    let mut trainer = Trainer::new(&model(d, layers, heads, t), batch);
    for _ in 0..5 {
        trainer.step();
    }
    let mut times: Vec<f64> = (0..steps)
        .map(|_| {
            let start = Instant::now();
            trainer.step();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let (median, fastest) = (times[steps / 2], times[0]);
    println!(
        "{name}: {:.0} tokens/s (median step {:.1} ms, fastest {:.1} ms over {steps}, threads {})",
        (batch * t) as f64 / median,
        median * 1e3,
        fastest * 1e3,
        rayon::current_num_threads()
    );
}

fn main() {
    bench("quick_d64_l2_t64", 64, 2, 4, 64, 50);
    bench("d256_l6_h8_t128", 256, 6, 8, 128, 20);
}
