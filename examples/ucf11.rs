//! The UCF11 KCP-LSTM: one 160x120x3 video frame (57,600 = 8x20x20x18 inputs) per time step
//! into an LSTM of 256 hidden units whose input-to-hidden weight is rank-4 KCP, on synthetic
//! frames of moving shapes. Prints the compression, the compiled plan, and the time per frame
//! against the same LSTM with a dense input weight (faer GEMM).

use std::time::Instant;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use kcp::{kcp_layer, State};

kcp_layer! {
    /// The UCF11 video LSTM: gates stacked [i, f, g, o] along the last output mode.
    pub struct Ucf11Lstm {
        in_shape: [8, 20, 20, 18],
        out_shape: [4, 4, 4, 16],
        rank: 4,
        cell: lstm,
        hidden: 256,
    }
}

const WIDTH: usize = 160;
const HEIGHT: usize = 120;
const STEPS: usize = 16;

/// `STEPS` frames, `[T, 1, 57600]` (row-major 120x160x3): a red disc bouncing across a blue
/// gradient while a green square slides the other way.
fn frames() -> Vec<f32> {
    let mut x = vec![0.0f32; STEPS * HEIGHT * WIDTH * 3];
    for (t, frame) in x.chunks_exact_mut(HEIGHT * WIDTH * 3).enumerate() {
        let (cx, cy) = (20.0 + 7.5 * t as f32, 60.0 + 35.0 * (t as f32 * 0.6).sin());
        let sx = 140 - 6 * t;
        for (p, px) in frame.chunks_exact_mut(3).enumerate() {
            let (row, col) = (p / WIDTH, p % WIDTH);
            px[2] = 0.2 + 0.6 * row as f32 / HEIGHT as f32;
            if (col as f32 - cx).powi(2) + (row as f32 - cy).powi(2) < 15.0f32.powi(2) {
                px[0] = 1.0;
            }
            if (sx..sx + 18).contains(&col) && (20..38).contains(&row) {
                px[1] = 1.0;
            }
        }
    }
    x
}

fn median_seconds(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn main() {
    let lstm = Ucf11Lstm::random(11);
    let x = frames();
    let hidden = Ucf11Lstm::HIDDEN;
    let recurrent_params = (4 * hidden * hidden + 8 * hidden) as u64;
    println!("KCP-LSTM for UCF11: {} frames of 160x120x3 = {} inputs, hidden {hidden}", STEPS, Ucf11Lstm::IN);
    println!(
        "  input weight: {} parameters instead of {} ({:.0}x compression)",
        Ucf11Lstm::PARAMS,
        Ucf11Lstm::DENSE_PARAMS,
        Ucf11Lstm::DENSE_PARAMS as f64 / Ucf11Lstm::PARAMS as f64
    );
    println!(
        "  whole LSTM (with W_hh and biases): {} parameters instead of {} ({:.0}x)",
        Ucf11Lstm::PARAMS + recurrent_params,
        Ucf11Lstm::DENSE_PARAMS + recurrent_params,
        (Ucf11Lstm::DENSE_PARAMS + recurrent_params) as f64 / (Ucf11Lstm::PARAMS + recurrent_params) as f64
    );
    println!("  input projection plan (per frame):");
    for line in Ucf11Lstm::PLAN.lines() {
        println!("    {line}");
    }
    println!(
        "  MACs per frame: input projection {} (dense {}), recurrent {}",
        Ucf11Lstm::MACS_PER_SAMPLE,
        Ucf11Lstm::DENSE_PARAMS,
        Ucf11Lstm::RECURRENT_MACS_PER_STEP
    );

    // The dense-input LSTM: the same weights, W_ih reconstructed, projected by a faer GEMM.
    let start = Instant::now();
    let input = lstm.input().weights();
    let w_ih = input.dense(&[[4, 4, 8], [4, 4, 20], [4, 4, 20], [4, 16, 18]]);
    let bias_ih = input.bias.clone().unwrap_or_default();
    println!("  (reconstructed the dense 1024x57600 W_ih in {:.2} s)", start.elapsed().as_secs_f64());
    let (n, g) = (Ucf11Lstm::IN, Ucf11Lstm::GATES * hidden);
    let dense_project = |x: &[f32], p: &mut [f32]| -> Result<(), kcp::ShapeError> {
        let rows = x.len() / n;
        let lhs = MatRef::from_row_major_slice(x, rows, n);
        let rhs = MatRef::from_row_major_slice(&w_ih, g, n).transpose();
        for row in p.chunks_exact_mut(g) {
            row.copy_from_slice(&bias_ih);
        }
        matmul(MatMut::from_row_major_slice_mut(p, rows, g), Accum::Add, lhs, rhs, 1.0, Par::Seq);
        Ok(())
    };

    let mut hs_kcp = vec![0.0f32; STEPS * hidden];
    let mut hs_dense = vec![0.0f32; STEPS * hidden];
    let run_kcp = |hs: &mut [f32]| {
        let mut state = Ucf11Lstm::zero_state(1);
        lstm.forward(&x, 1, hs, &mut state).expect("shapes match");
    };
    let run_kcp_par = |hs: &mut [f32]| {
        let mut state = Ucf11Lstm::zero_state(1);
        lstm.forward_par(&x, 1, hs, &mut state).expect("shapes match");
    };
    let run_dense = |hs: &mut [f32]| {
        let mut state = State::zeros(kcp::CellKind::Lstm, 1, hidden);
        lstm.cell().sequence(dense_project, n, &x, 1, hs, &mut state, false).expect("shapes match");
    };
    run_kcp(&mut hs_kcp);
    run_dense(&mut hs_dense);
    let diff: f32 = hs_kcp.iter().zip(&hs_dense).map(|(a, b)| (a - b).powi(2)).sum::<f32>().sqrt();
    let norm: f32 = hs_dense.iter().map(|v| v * v).sum::<f32>().sqrt();
    println!("  hidden states agree with the dense LSTM to a relative error of {:.1e}", diff / norm);

    let per_frame = |seconds: f64| seconds / STEPS as f64 * 1e6;
    let dense = per_frame(median_seconds(5, || run_dense(&mut hs_dense)));
    let kcp = per_frame(median_seconds(21, || run_kcp(&mut hs_kcp)));
    let kcp_par = per_frame(median_seconds(21, || run_kcp_par(&mut hs_kcp)));
    println!("  time per frame (median, {STEPS}-frame sequences, batch 1):");
    println!("    dense-input LSTM (faer, 1 thread)  {dense:9.1} us");
    println!("    KCP-LSTM (generated, 1 thread)     {kcp:9.1} us   {:.0}x faster", dense / kcp);
    println!(
        "    KCP-LSTM (generated, {} threads)    {kcp_par:9.1} us   {:.0}x faster",
        rayon_threads(),
        dense / kcp_par
    );
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
