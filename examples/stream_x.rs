//! How fast the first product of a plan streams x from memory, by the shape of its GEMMs: each
//! of 256 fresh rows of 57,600 floats (59 MB, the UCF11 batch) runs as consecutive slabs of
//! `depth x len`, each one `4 x depth x len` product. The planned rank-1 gate-last UCF11 layer
//! runs 4x20x360 (8 slabs a row), the paper's forward order 4x8x7200 (one slab). Medians of 7.

use std::time::Instant;

use kcp::__private::{gemm, Gemm};

fn main() {
    let (batch, n) = (256, 57_600);
    let x: Vec<f32> = (0..batch * n).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let w = vec![0.1f32; 4 * 40];
    let mut out = vec![0.0f32; 4 * n];
    println!("| product | slabs per row | median | x read at |\n|---|---:|---:|---:|");
    let shapes =
        [(8, 7200), (20, 360), (4, 360), (8, 360), (16, 360), (4, 900), (8, 900), (16, 900), (20, 720), (40, 180)];
    for (depth, len) in shapes {
        let slab = depth * len;
        let g =
            Gemm { rows: 4, depth, len, out_row: len, a_row: len, a_col: 1, w_row: depth, w_col: 1, overwrite: true };
        let mut times: Vec<f64> = (0..7)
            .map(|_| {
                let t = Instant::now();
                for row in x.chunks_exact(n) {
                    for (c, a) in row.chunks_exact(slab).enumerate() {
                        gemm(&mut out[c * 4 * len..], a, &w, g);
                    }
                }
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let t = times[3];
        let rate = (batch * n * 4) as f64 / t / 1e9;
        println!("| 4x{depth}x{len} | {} | {:.2} ms | {rate:.1} GB/s |", n / slab, t * 1e3);
    }
    std::hint::black_box(&out);
}
