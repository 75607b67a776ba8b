//! The recurrence of the training example's cells alone (hidden 256, 16 steps, the input
//! projection left out): the taped forward pass (`Recurrent::run_taped`) and backpropagation
//! through time (`Recurrent::backward`), on one thread and on two, per batch.
//!
//! ```sh
//! cargo run --release --example recurrence
//! ```
//!
//! Each cell is the median of 41 runs, microseconds per step; GFLOP/s count 2 FLOP per MAC of
//! `W_hh h` forward (B G H MACs a step) and twice that backward (`W_hh^T da` and `da^T h`).

#[path = "common/machine.rs"]
mod machine;

use std::time::Instant;

use kcp::{CellGrads, CellKind, Recurrent, Rng, State, Threads};

const HIDDEN: usize = 256;
const STEPS: usize = 16;

/// The medians of forward and backward, in microseconds per step, on a pool of `threads`.
fn measure(cell: &Recurrent, batch: usize, threads: usize) -> (f64, f64) {
    let g = cell.kind().gates() * HIDDEN;
    let proj = Rng::new(2).vec_f32(STEPS * batch * g, 1.0);
    let dh = Rng::new(3).vec_f32(STEPS * batch * HIDDEN, 1.0);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
    let (mut forward, mut backward) = (Vec::new(), Vec::new());
    pool.install(|| {
        for _ in 0..41 {
            let mut hs = vec![0.0; STEPS * batch * HIDDEN];
            let mut state = State::zeros(cell.kind(), batch, HIDDEN);
            let start = Instant::now();
            let tape = cell.run_taped(&proj, batch, &mut hs, &mut state, Threads::All).expect("shapes");
            forward.push(start.elapsed().as_secs_f64() * 1e6 / STEPS as f64);
            let (mut grads, mut dproj) = (CellGrads::zeros(cell), vec![0.0; proj.len()]);
            let start = Instant::now();
            cell.backward(&tape, &hs, &dh, &mut dproj, &mut grads).expect("shapes");
            backward.push(start.elapsed().as_secs_f64() * 1e6 / STEPS as f64);
        }
    });
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(forward), median(backward))
}

fn main() {
    println!("{}", machine::describe());
    println!("recurrence alone, hidden {HIDDEN}, {STEPS} steps, medians of 41 runs, us per step (GFLOP/s)\n");
    println!("| cell | batch | forward, 1 thread | backward, 1 thread | forward, 2 threads | backward, 2 threads |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, kind) in [("LSTM", CellKind::Lstm), ("GRU", CellKind::Gru)] {
        let cell = Recurrent::random(kind, HIDDEN, 1);
        let macs = (kind.gates() * HIDDEN * HIDDEN) as f64;
        for batch in [1, 4, 16, 64] {
            let ((f1, b1), (f2, b2)) = (measure(&cell, batch, 1), measure(&cell, batch, 2));
            let gflops = |us: f64, passes: f64| passes * 2.0 * macs * batch as f64 / us / 1e3;
            println!(
                "| {name} | {batch} | {f1:.1} ({:.0}) | {b1:.1} ({:.0}) | {f2:.1} ({:.0}) | {b2:.1} ({:.0}) |",
                gflops(f1, 1.0),
                gflops(b1, 2.0),
                gflops(f2, 1.0),
                gflops(b2, 2.0)
            );
        }
    }
}
