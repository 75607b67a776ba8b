//! The two innermost operations every kernel is built from, written so that LLVM vectorises
//! them: `axpy` (out += w * a over a contiguous run) and `dot`.

use std::ops::{Add, AddAssign, Mul};

/// The element types kernels run on: f32 in layers, f64 in reference checks.
pub trait Real: Copy + Default + Send + Sync + Add<Output = Self> + Mul<Output = Self> + AddAssign + 'static {
    /// Zero.
    const ZERO: Self;
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
}

/// Whether the CPU has AVX2 and FMA. A plain `cargo build` targets SSE2 only; generated row
/// kernels are compiled a second time for AVX2 + FMA and pick that copy when this is true (the
/// detection is cached by std).
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out[k] += w * a[k]` for every k of `out`.
#[inline(always)]
pub fn axpy<T: Real>(out: &mut [T], a: &[T], w: T) {
    let a = &a[..out.len()];
    for (o, &v) in out.iter_mut().zip(a) {
        *o += w * v;
    }
}

/// `sum_k a[k] * b[k]` over the length of `a`, with eight independent partial sums so that the
/// reduction vectorises without reassociating a single chain.
#[inline(always)]
pub fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let b = &b[..a.len()];
    let mut acc = [T::ZERO; 8];
    let (a8, a_tail) = a.split_at(a.len() / 8 * 8);
    let (b8, b_tail) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut sum = T::ZERO;
    for (&x, &y) in a_tail.iter().zip(b_tail) {
        sum += x * y;
    }
    for v in acc {
        sum += v;
    }
    sum
}
