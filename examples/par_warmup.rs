//! How long `forward_par` takes to reach its speed after the second core has been idle: on a
//! shared VM the first calls after an idle spell run little faster than one thread (the rayon
//! worker's core is slow to wake), and only back-to-back calls reach the two-thread speed that
//! `bench_table` reports. For each idle gap, the median of the first 5 ms of calls, of the next
//! 20 ms, and of 200 ms later, against `forward` on one thread; and first, the cost of handing
//! an empty task to the pool and waiting for it, back to back, when the caller waits by sleeping
//! (rayon's scope alone) and by spinning on a flag (what `forward_par` does first).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kcp::kcp_layer;

kcp_layer! { struct Ucf11R4 { in_shape: [8, 20, 20, 18], out_shape: [4, 4, 4, 16], rank: 4, bias: true } }
kcp_layer! { struct SmallR2 { in_shape: [4, 4, 4], out_shape: [4, 4, 4], rank: 2, bias: true } }

/// Median call time (us) of `f` over calls made during `window`.
fn median_us(window: Duration, f: &mut dyn FnMut()) -> f64 {
    let (start, mut times) = (Instant::now(), Vec::new());
    while start.elapsed() < window || times.is_empty() {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

macro_rules! layer {
    ($name:literal, $layer:ty, $batch:expr) => {{
        let layer = <$layer>::random(1);
        let x: Vec<f32> = (0..$batch * <$layer>::IN).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut y = vec![0.0f32; $batch * <$layer>::OUT];
        let one = median_us(Duration::from_millis(200), &mut || layer.forward(&x, &mut y).expect("shapes"));
        for idle_ms in [0u64, 30, 300] {
            // The second core idles (this thread keeps working, or sleeps) before the first call.
            median_us(Duration::from_millis(100), &mut || layer.forward(&x, &mut y).expect("shapes"));
            std::thread::sleep(Duration::from_millis(idle_ms));
            let mut par = || layer.forward_par(&x, &mut y).expect("shapes");
            let first = median_us(Duration::from_millis(5), &mut par);
            let next = median_us(Duration::from_millis(20), &mut par);
            median_us(Duration::from_millis(200), &mut par);
            let steady = median_us(Duration::from_millis(50), &mut par);
            println!(
                "| {} | {} | {idle_ms} ms | {one:.1} | {first:.1} ({:.2}x) | {next:.1} ({:.2}x) | {steady:.1} ({:.2}x) |",
                $name,
                $batch,
                one / first,
                one / next,
                one / steady
            );
        }
    }};
}

fn main() {
    // What a call on two threads pays at least: handing one task to the pool and waiting for it.
    let sleeping = median_us(Duration::from_millis(300), &mut || rayon::in_place_scope(|s| s.spawn(|_| {})));
    let spinning = median_us(Duration::from_millis(300), &mut || {
        let done = AtomicBool::new(false);
        rayon::in_place_scope(|s| {
            s.spawn(|_| done.store(true, Ordering::Release));
            while !done.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
        })
    });
    println!("handing an empty task to rayon's pool and waiting for it: median {sleeping:.1} us sleeping, {spinning:.1} us spinning\n");
    println!("| layer | batch | idle before | forward us | par, first 5 ms | next 20 ms | after 200 ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    layer!("ucf11_out4x4x4x16_r4", Ucf11R4, 1);
    layer!("ucf11_out4x4x4x16_r4", Ucf11R4, 16);
    layer!("small_64to64_r2", SmallR2, 256);
}
