//! `--anchors`: kcp beside the Python stack that users run KCP layers on today
//! (`benches/anchors.py`: numpy with opt_einsum's optimal path, a tednet-style rank loop, JAX
//! and torch where installed), on the headline layer (UCF11, rank 4), at batch 1, 16 and 256,
//! on one thread and two, from one run: for each, kcp is timed, then one Python process times
//! the same layer (the same factors and x, checked against kcp's y) with that many threads.

use std::path::Path;

use kcp::Weights;

use crate::measure::Bench;
use crate::python::{python, Anchor};
use crate::Ucf11Out4x4x4x16R4 as Layer;

/// Measure every batch and thread count; `Err` (one line) if the Python side cannot run.
pub fn measure(bench: &Bench) -> Result<Vec<Anchor>, String> {
    let dir = std::env::temp_dir().join(format!("kcp-anchors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = measure_in(bench, &dir);
    _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure_in(bench: &Bench, dir: &Path) -> Result<Vec<Anchor>, String> {
    let random = Layer::random(1);
    // No bias: the Python side computes x W^T alone.
    let weights = Weights { bias: Some(vec![0.0; Layer::OUT]), ..random.weights().clone() };
    let layer = Layer::from_weights(weights).map_err(|e| e.to_string())?;
    let write = |name: &str, shape: &[usize], data: &[f32]| {
        kcp::npy::write(&dir.join(name), shape, data).map_err(|e| e.to_string())
    };
    for (d, (factor, shape)) in layer.weights().cores.iter().zip(Layer::FACTOR_SHAPES).enumerate() {
        write(&format!("factor.{d}.npy"), &shape, factor)?;
    }
    let mut anchors = Vec::new();
    for batch in [1, 16, 256] {
        let x: Vec<f32> = (0..batch * Layer::IN).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut y = vec![0.0f32; batch * Layer::OUT];
        layer.forward(&x, &mut y).map_err(|e| e.to_string())?;
        write("x.npy", &[batch, Layer::IN], &x)?;
        write("y.npy", &[batch, Layer::OUT], &y)?;
        for threads in [1, 2] {
            let kcp_ns = bench.median_ns(|| {
                let run = if threads == 1 { Layer::forward } else { Layer::forward_par };
                run(&layer, &x, &mut y).expect("shapes");
            });
            anchors.push(python(dir, "", batch, threads, kcp_ns, bench.quick)?);
        }
    }
    Ok(anchors)
}
