//! How fast the first product of a plan streams x from memory, by the shape of its GEMMs: each
//! of 256 fresh rows of 57,600 floats (59 MB, the UCF11 batch) runs as consecutive slabs of
//! `depth x len`, each one `4 x depth x len` product. The planned rank-1 gate-last UCF11 layer
//! runs 4x20x360 (8 slabs a row), the paper's forward order 4x8x7200 (one slab). Each shape runs
//! without and with `Gemm::stream` (the next row's slab swept into L2 meanwhile; the
//! micro-kernel does it for rows of at most 512 floats). Medians of 7. (The memory's own limit,
//! on one thread and two, is `bench_table`'s bandwidth line.)

use std::time::Instant;

use kcp::__private::{gemm, Gemm};

fn main() {
    let (batch, n) = (256, 57_600);
    let x: Vec<f32> = (0..batch * n).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let w = vec![0.1f32; 4 * 40];
    let mut out = vec![0.0f32; 4 * n];
    println!("| product | slabs per row | median, no stream | x read at | median, stream | x read at |");
    println!("|---|---:|---:|---:|---:|---:|");
    let shapes =
        [(8, 7200), (20, 360), (4, 360), (8, 360), (16, 360), (4, 900), (8, 900), (16, 900), (20, 720), (40, 180)];
    for (depth, len) in shapes {
        let slab = depth * len;
        let mut cells = Vec::new();
        for stream in [0, n] {
            let g = Gemm { stream, ..Gemm::row_major(4, depth, len) };
            let mut times: Vec<f64> = (0..7)
                .map(|_| {
                    let t = Instant::now();
                    for row in 0..batch {
                        for c in 0..n / slab {
                            // The rest of the batch from this slab on, as a layer passes it.
                            gemm(&mut out[c * 4 * len..], &x[row * n + c * slab..], &w, g);
                        }
                    }
                    t.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let t = times[3];
            cells.push(format!("{:.2} ms | {:.1} GB/s", t * 1e3, (batch * n * 4) as f64 / t / 1e9));
        }
        println!("| 4x{depth}x{len} | {} | {} | {} |", n / slab, cells[0], cells[1]);
    }
    std::hint::black_box(&out);
}
