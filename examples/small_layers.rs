//! Small layers, where per-call overheads rather than MACs set the speed: the generated
//! `forward` of seven shapes at batches 16 and 256, medians of 31 timed runs, as a Markdown
//! table. (BENCHMARKS.md compares it across commits: the file builds unchanged at 1a645e6.)

use std::time::Instant;

use kcp::kcp_layer;

kcp_layer! { struct S64 { in_shape: [4, 4, 4], out_shape: [4, 4, 4], rank: 2, bias: true } }
kcp_layer! { struct Expanding { in_shape: [2, 3, 4], out_shape: [6, 5, 4], rank: 3, bias: true } }
kcp_layer! { struct SixModes { in_shape: [2, 3, 2, 3, 2, 2], out_shape: [3, 2, 2, 1, 2, 3], rank: 4 } }
kcp_layer! { struct Kt8 { in_shape: [8, 8], out_shape: [8, 8], rank: 4 } }
kcp_layer! { struct Kt16 { in_shape: [16, 16], out_shape: [16, 16], rank: 2 } }
kcp_layer! { struct Three256 { in_shape: [4, 8, 8], out_shape: [4, 8, 8], rank: 2 } }
kcp_layer! { struct Shrinking { in_shape: [8, 8, 8], out_shape: [4, 4, 8], rank: 4 } }

macro_rules! measure {
    ($layer:ty, $name:literal) => {{
        let layer = <$layer>::random(1);
        for batch in [16usize, 256] {
            let (n, m, macs) = (<$layer>::IN, <$layer>::OUT, <$layer>::MACS_PER_SAMPLE as usize);
            let x: Vec<f32> = (0..batch * n).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
            let mut y = vec![0.0f32; batch * m];
            // Enough calls per sample for about 2M MACs.
            let calls = (2_000_000 / (batch * macs)).max(3);
            let mut times: Vec<f64> = (0..31)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..calls {
                        layer.forward(&x, &mut y).expect("shapes");
                    }
                    t.elapsed().as_secs_f64() / calls as f64
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let t = times[times.len() / 2];
            let gflops = 2.0 * (batch * macs) as f64 / t / 1e9;
            println!("| {} | {n} -> {m} | {batch} | {:.2} us | {gflops:.1} |", $name, t * 1e6);
        }
    }};
}

fn main() {
    println!("| layer | N -> M | batch | median | GFLOP/s |\n|---|---|---:|---:|---:|");
    measure!(S64, "[4,4,4] -> [4,4,4] r2");
    measure!(Expanding, "[2,3,4] -> [6,5,4] r3");
    measure!(SixModes, "[2,3,2,3,2,2] -> [3,2,2,1,2,3] r4");
    measure!(Kt8, "[8,8] -> [8,8] r4");
    measure!(Kt16, "[16,16] -> [16,16] r2");
    measure!(Three256, "[4,8,8] -> [4,8,8] r2");
    measure!(Shrinking, "[8,8,8] -> [4,4,8] r4");
}
