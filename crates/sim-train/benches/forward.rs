//! Forward throughput of a backbone on the CPU backend, the batch cut into
//! a part per thread as evaluation does it, for scripts/bench_forward.py
//! (which times PyTorch on the same checkpoint):
//!
//!     forward CHECKPOINT SIZE HEADS BATCH REPEATS   → prints images/s as JSON
//!
//! `SIM_BENCH_PARTS=1` runs the batch whole, for comparison.

use burn::prelude::*;
use sim_train::CpuBackend;
use sim_train::model::{LoadOptions, load};
use sim_train::train::batch_parts::BatchParts;
use std::time::Instant;

fn main() {
    sim_train::backend::keep_freed_memory();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [checkpoint, size, heads, batch, repeats] = &args[..] else {
        panic!("usage: forward CHECKPOINT SIZE HEADS BATCH REPEATS");
    };
    let (size, heads, batch, repeats): (usize, usize, usize, usize) = (
        size.parse().unwrap(),
        heads.parse().unwrap(),
        batch.parse().unwrap(),
        repeats.parse().unwrap(),
    );
    let device = Default::default();
    let opts = LoadOptions {
        heads: Some(heads),
        ..LoadOptions::new(size)
    };
    let model = load::<CpuBackend>(checkpoint.as_ref(), &opts, &device)
        .unwrap()
        .model;
    let input = Tensor::<CpuBackend, 4>::random(
        [batch, 3, size, size],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let parts = match std::env::var("SIM_BENCH_PARTS") {
        Ok(n) => BatchParts::new(n.parse().expect("SIM_BENCH_PARTS: a number")),
        Err(_) => BatchParts::per_thread(),
    };
    let run = || {
        parts.run(batch, |rows| {
            let out = model.forward(input.clone().narrow(0, rows.start, rows.len()));
            out.final_tokens.into_data(); // waits for the result
        });
    };
    run(); // warm-up
    let best = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    println!("{{\"images_per_s\": {}}}", batch as f64 / best);
}
