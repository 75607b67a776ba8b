//! The innermost operations every kernel is built from: `axpy` (out += w * a over a contiguous
//! run) and `dot`, written so that LLVM vectorises them, and the small matrix product [`gemm`].
//!
//! Which code runs is decided here, at run time, once per call: the AVX2 + FMA micro-kernel
//! (`avx2.rs`) where the CPU has both, else the portable loops ([`Gemm`]'s own). [`dispatch`]
//! does the same for code outside this crate (generated row kernels), so that no caller needs
//! `unsafe`. Every public function is sound for every argument: a [`Gemm`] whose extents do not
//! fit its slices, or overflow, runs the portable (bounds-checked) loops and panics there.

use std::ops::{Add, AddAssign, Mul};

#[cfg(target_arch = "x86_64")]
mod avx2;
mod shape;
#[cfg(test)]
mod tests;

pub use shape::Gemm;

/// The element types kernels run on: f32 in layers, f64 in reference checks.
pub trait Real: Copy + Default + Send + Sync + Add<Output = Self> + Mul<Output = Self> + AddAssign + 'static {
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;

    /// Run a small matrix product (see [`gemm`]); the portable form unless the type has a
    /// faster one.
    #[inline(always)]
    fn gemm(out: &mut [Self], a: &[Self], w: &[Self], g: Gemm) {
        g.run_portable(out, a, w);
    }
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;

    #[inline(always)]
    fn gemm(out: &mut [f32], a: &[f32], w: &[f32], g: Gemm) {
        gemm_f32(out, a, w, g);
    }
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
}

/// Whether the CPU has AVX2 and FMA (the detection is cached by std): what [`gemm`] and
/// [`dispatch`] decide by.
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

/// Run `f` compiled for the best instruction set this CPU has, as far as it is inlined into
/// this call: generated row kernels are `#[inline(always)]` and pass themselves as `f`, so
/// their loops are vectorised for AVX2 + FMA where the CPU has both (a plain `cargo build`
/// targets SSE2 only), and for the baseline elsewhere. This is the one place that enters a
/// `#[target_feature]` function for code outside this crate: generated code stays safe Rust.
#[inline(always)]
pub fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA, the features `with_avx2_fma` is compiled for.
        return unsafe { with_avx2_fma(f) };
    }
    f()
}

/// `f()`, compiled (where inlined) for AVX2 + FMA.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn with_avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    f()
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

/// Run `g` (see [`Gemm`]). On x86_64 with AVX2 and FMA, f32 products run a register-blocked
/// micro-kernel: four rows by sixteen columns of `out` stay in registers while the summed index
/// runs, so each vector of `a` is loaded once per four rows and `out` once per block (eight rows
/// by four columns when `len` is 4 to 7). Other element types and CPUs run one axpy per (row,
/// summed index).
#[inline(always)]
pub fn gemm<T: Real>(out: &mut [T], a: &[T], w: &[T], g: Gemm) {
    T::gemm(out, a, w, g)
}

/// The f32 product: the AVX2 + FMA micro-kernel where the CPU has both and there is work to do
/// (a product with an empty dimension runs the portable loops, which do at most the zeroing
/// that `overwrite` asks for, and form no pointer).
#[inline(always)]
fn gemm_f32(out: &mut [f32], a: &[f32], w: &[f32], g: Gemm) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() && !g.is_empty() {
        let fits = g.extents().is_some_and(|[o, ia, iw]| out.len() >= o && a.len() >= ia && w.len() >= iw);
        if fits {
            // SAFETY: the CPU has AVX2 and FMA (checked above), and every slice is at least as
            // long as the highest index the product touches (`extents`).
            unsafe { avx2::gemm(out, a, w, g) };
            return;
        }
    }
    g.run_portable(out, a, w);
}

/// `to[c * rows + r] = from[r * cols + c]` for a `rows x cols` row-major matrix: how the driver
/// interleaves a block of rows and takes it apart again. With AVX2, tiles of 8 x 8 move as
/// eight vectors each (the edges that do not fill a tile go one element at a time).
///
/// # Panics
/// If `rows * cols` overflows or either slice is shorter.
pub fn transpose(from: &[f32], to: &mut [f32], rows: usize, cols: usize) {
    let len = rows.saturating_mul(cols);
    let (from, to) = (&from[..len], &mut to[..len]);
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        let (full_rows, full_cols) = (rows / 8 * 8, cols / 8 * 8);
        // SAFETY: the CPU has AVX2, and every tile lies within both slices (cut to size above).
        unsafe { avx2::transpose_tiles(from, to, rows, cols, full_rows, full_cols) };
        transpose_scalar(from, to, rows, cols, 0..rows, full_cols..cols);
        transpose_scalar(from, to, rows, cols, full_rows..rows, 0..full_cols);
        return;
    }
    transpose_scalar(from, to, rows, cols, 0..rows, 0..cols);
}

/// The part `row_range x col_range` of [`transpose`], one element at a time.
fn transpose_scalar(
    from: &[f32],
    to: &mut [f32],
    rows: usize,
    cols: usize,
    row_range: std::ops::Range<usize>,
    col_range: std::ops::Range<usize>,
) {
    for r in row_range {
        for c in col_range.clone() {
            to[c * rows + r] = from[r * cols + c];
        }
    }
}
