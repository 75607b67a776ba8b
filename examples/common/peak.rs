//! The compute peak of each kernel path: register-only FMA loops, one thread, the vector width
//! of the path (what no kernel can beat: every operand in registers, as many independent FMA
//! chains as it takes to fill the pipes).

use std::hint::black_box;

use kcp::Isa;

/// Independent accumulators per loop: enough chains for two FMA pipes of latency up to 6.
const CHAINS: usize = 12;
/// Iterations per timed call: 12 * 2^16 FMAs, about 0.3 ms.
const ITERATIONS: u64 = 1 << 16;

/// GFLOP/s of `path`'s register-only FMA loop, if this CPU has the path (none for the
/// portable one, whose width the compiler picks), timed by `median_ns` (the median time of a
/// call of the closure it is given, in nanoseconds).
pub fn fma_peak_gflops(path: Isa, median_ns: impl FnOnce(&mut dyn FnMut()) -> f64) -> Option<f64> {
    if path > Isa::detected() {
        return None;
    }
    let lanes = match path {
        Isa::Portable => return None,
        Isa::Avx2 => 8,
        Isa::Avx512 => 16,
    };
    let ns = median_ns(&mut || _ = black_box(fma_loop(path, ITERATIONS)));
    Some((2 * lanes * CHAINS) as f64 * ITERATIONS as f64 / ns)
}

fn fma_loop(path: Isa, iterations: u64) -> f32 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `fma_peak_gflops` runs a path only if the CPU has it (`Isa::detected`).
    unsafe {
        match path {
            Isa::Avx512 => return avx512(iterations),
            Isa::Avx2 => return avx2(iterations),
            Isa::Portable => {}
        }
    }
    0.0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(iterations: u64) -> f32 {
    use std::arch::x86_64::*;
    let (x, y) = (_mm512_set1_ps(black_box(0.999)), _mm512_set1_ps(black_box(1e-7)));
    let mut acc = [_mm512_set1_ps(black_box(1.0)); CHAINS];
    for _ in 0..iterations {
        for a in &mut acc {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(iterations: u64) -> f32 {
    use std::arch::x86_64::*;
    let (x, y) = (_mm256_set1_ps(black_box(0.999)), _mm256_set1_ps(black_box(1e-7)));
    let mut acc = [_mm256_set1_ps(black_box(1.0)); CHAINS];
    for _ in 0..iterations {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let mut lanes = [0.0f32; 8];
    let mut sum = 0.0;
    for a in acc {
        _mm256_storeu_ps(lanes.as_mut_ptr(), a);
        sum += lanes.iter().sum::<f32>();
    }
    sum
}
