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

/// The shape of a small matrix product `out[i, q] += sum_j w[i, j] * a[j, q]` for i < rows,
/// j < depth, q < len, all strides in elements (q is contiguous in out and a).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gemm {
    /// Rows of out (the weight's free index).
    pub rows: usize,
    /// The summed index.
    pub depth: usize,
    /// The contiguous run of out and a.
    pub len: usize,
    /// Stride of out per row.
    pub out_row: usize,
    /// Stride of a per step of the summed index.
    pub a_row: usize,
    /// Strides of w per row and per step of the summed index.
    pub w_row: usize,
    /// Strides of w per step of the summed index.
    pub w_col: usize,
}

/// `out[i*out_row + q] += sum_j w[i*w_row + j*w_col] * a[j*a_row + q]`: four rows of out at a
/// time stay in registers while the summed index runs, so each run of `a` is loaded once per
/// four rows instead of once per row.
#[inline(always)]
pub fn gemm<T: Real>(out: &mut [T], a: &[T], w: &[T], g: Gemm) {
    let mut i = 0;
    while i + 4 <= g.rows {
        gemm_rows::<T, 4>(out, a, w, g, i);
        i += 4;
    }
    while i < g.rows {
        gemm_rows::<T, 1>(out, a, w, g, i);
        i += 1;
    }
}

#[inline(always)]
fn gemm_rows<T: Real, const R: usize>(out: &mut [T], a: &[T], w: &[T], g: Gemm, i0: usize) {
    const CHUNK: usize = 16;
    let mut q = 0;
    // Full chunks: fixed-size arrays, so the inner loops have no bounds checks and vectorise.
    while q + CHUNK <= g.len {
        let mut acc = [[T::ZERO; CHUNK]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            row.copy_from_slice(&out[(i0 + r) * g.out_row + q..][..CHUNK]);
        }
        for j in 0..g.depth {
            let Ok(av) = <&[T; CHUNK]>::try_from(&a[j * g.a_row + q..][..CHUNK]) else { return };
            for (r, row) in acc.iter_mut().enumerate() {
                let wv = w[(i0 + r) * g.w_row + j * g.w_col];
                for k in 0..CHUNK {
                    row[k] += wv * av[k];
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            out[(i0 + r) * g.out_row + q..][..CHUNK].copy_from_slice(row);
        }
        q += CHUNK;
    }
    // The tail, row by row.
    if q < g.len {
        for r in 0..R {
            let row = &mut out[(i0 + r) * g.out_row + q..][..g.len - q];
            for j in 0..g.depth {
                axpy(row, &a[j * g.a_row + q..], w[(i0 + r) * g.w_row + j * g.w_col]);
            }
        }
    }
}
