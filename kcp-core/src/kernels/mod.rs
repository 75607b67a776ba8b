//! The innermost operations every kernel is built from: `axpy` (out += w * a over a contiguous
//! run) and `dot`, written so that LLVM vectorises them, and the small matrix product [`gemm`].
//!
//! Which code runs is decided here, at run time, once per call, by [`isa`]: the AVX-512
//! micro-kernel (`avx512.rs`) where the CPU has AVX-512F, the AVX2 + FMA one (`avx2.rs`) where
//! it has those, else the portable loops ([`Gemm`]'s own). The environment variable `KCP_ISA`
//! (`portable`, `avx2` or `avx512`) or [`set_isa`] caps the path, so that benchmarks compare
//! the paths in one run. [`dispatch`] does the same for code outside this crate (generated row
//! kernels), so that no caller needs `unsafe`. Every public function is sound for every
//! argument: a [`Gemm`] whose extents do not fit its slices, or overflow, runs the portable
//! (bounds-checked) loops and panics there.

use std::ops::{Add, AddAssign, Mul};

use std::sync::atomic::{AtomicU8, Ordering};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod shape;
#[cfg(test)]
mod tests;

pub use shape::{Block, Blocks, Gemm, Repeat, Route};

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

    /// [`dot`] as a call compiled for the kernel path in use, for code that is not itself
    /// compiled for it (the generic executor's loops): the same sums, in the same order.
    #[inline(always)]
    fn dot_called(a: &[Self], b: &[Self]) -> Self {
        dot(a, b)
    }
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;

    #[inline(always)]
    fn gemm(out: &mut [f32], a: &[f32], w: &[f32], g: Gemm) {
        gemm_f32(out, a, w, g);
    }

    fn dot_called(a: &[f32], b: &[f32]) -> f32 {
        dispatch(
            #[inline(always)]
            || dot(a, b),
        )
    }
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
}

/// An instruction set that kernels have a path for, in increasing order: each one's CPUs have
/// the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// The portable loops (whatever the compiler targets: SSE2 on x86_64 by default).
    Portable,
    /// AVX2 and FMA: 8-float vectors.
    Avx2,
    /// AVX-512F (with AVX2 and FMA): 16-float vectors, masked tails, 32 registers.
    Avx512,
}

impl Isa {
    /// Every path, in order.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// The best path this CPU has (std caches the detection).
    pub fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                return if has!("avx512f") { Isa::Avx512 } else { Isa::Avx2 };
            }
        }
        Isa::Portable
    }

    /// The paths this CPU can run: [`Isa::Portable`] up to [`Isa::detected`].
    pub fn available() -> impl Iterator<Item = Isa> {
        Isa::ALL.into_iter().filter(|&isa| isa <= Isa::detected())
    }

    /// Its name, as `KCP_ISA` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The path named `name` (as [`Isa::name`] gives it), if any.
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.name() == name)
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The path in use, as `Isa as u8`; [`UNSET`] until the first call of [`isa`] or [`set_isa`].
static SELECTED: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = u8::MAX;

/// The path the kernels take: the best the CPU has, capped by `KCP_ISA` (read at the first
/// call; a name that is not a path is ignored) or by the last [`set_isa`].
#[inline]
pub fn isa() -> Isa {
    match SELECTED.load(Ordering::Relaxed) {
        0 => Isa::Portable,
        1 => Isa::Avx2,
        2 => Isa::Avx512,
        _ => select(std::env::var("KCP_ISA").ok().as_deref().and_then(Isa::from_name)),
    }
}

/// Cap the path the kernels take at `cap` (`None`: the best the CPU has) for the whole
/// process, from the next call on; returns the path that runs, never one the CPU lacks.
/// Results do not depend on it beyond rounding: every path computes the same sums (in another
/// order and rounding: FMA, the dots kernels' lane sums).
pub fn set_isa(cap: Option<Isa>) -> Isa {
    select(cap)
}

/// The path that runs under `cap` on a CPU whose best is `detected`: the cap, never more than
/// the CPU has.
fn capped(cap: Option<Isa>, detected: Isa) -> Isa {
    cap.map_or(detected, |cap| cap.min(detected))
}

#[cold]
fn select(cap: Option<Isa>) -> Isa {
    let isa = capped(cap, Isa::detected());
    SELECTED.store(isa as u8, Ordering::Relaxed);
    isa
}

/// Run `f` compiled for the path [`isa`] selects, as far as it is inlined into this call:
/// generated row kernels are `#[inline(always)]` and pass themselves as `f`, so their loops
/// are vectorised for AVX-512 or AVX2 + FMA where the CPU has them (a plain `cargo build`
/// targets SSE2 only), and for the baseline elsewhere. This is the one place that enters a
/// `#[target_feature]` function for code outside this crate: generated code stays safe Rust.
#[inline(always)]
pub fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    match Supported::selected().isa() {
        // SAFETY: a `Supported` path is one the CPU has; each is compiled for its own.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { with_avx512(f) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { with_avx2_fma(f) },
        _ => f(),
    }
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

/// `f()`, compiled (where inlined) for AVX-512F, AVX2 and FMA.
///
/// # Safety
/// The CPU must have all three.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
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

/// `out[k] += a[k] * w[k]` for every k of `out`: the elementwise product of two runs, added
/// (an index that the result and both operands share, such as a rank that is not summed).
#[inline(always)]
pub fn mul_add<T: Real>(out: &mut [T], a: &[T], w: &[T]) {
    let (a, w) = (&a[..out.len()], &w[..out.len()]);
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(w) {
        *o += x * y;
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

/// Run `g` (see [`Gemm`]). On x86_64, f32 products run a register-blocked micro-kernel: a
/// block of rows by columns of `out` stays in registers while the summed index runs, so each
/// vector of `a` is loaded once per block of rows and `out` once per block: with AVX-512, the
/// block `g.block` (16-float vectors, the last masked); with AVX2, four rows by sixteen
/// columns, eight rows at a time where a product is narrower than sixteen columns (blocks of
/// eight by eight, or eight rows by four when `len` is 4 to 7). Other element types and CPUs run one
/// axpy per (row, summed index).
#[inline(always)]
pub fn gemm<T: Real>(out: &mut [T], a: &[T], w: &[T], g: Gemm) {
    T::gemm(out, a, w, g)
}

/// A path this CPU has, as a value: the capability the SIMD kernels need, which only detection
/// makes ([`Supported::selected`]; the tests also take every available one), so that "this CPU has AVX-512"
/// is a fact a function takes as an argument rather than a promise its callers keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Supported(Isa);

impl Supported {
    /// The path [`isa`] selects (never more than the CPU has: [`select`] caps it).
    #[inline(always)]
    pub(crate) fn selected() -> Supported {
        Supported(isa())
    }

    /// Every path this CPU has (the kernel tests run each).
    #[cfg(test)]
    pub(crate) fn available() -> impl Iterator<Item = Supported> {
        Isa::available().map(Supported)
    }

    /// The path.
    pub(crate) fn isa(self) -> Isa {
        self.0
    }
}

impl std::fmt::Display for Supported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The f32 product on the path [`isa`] selects.
#[inline(always)]
fn gemm_f32(out: &mut [f32], a: &[f32], w: &[f32], g: Gemm) {
    gemm_on(Supported::selected(), out, a, w, g);
}

/// The f32 product on path `path`: a micro-kernel where there is work to do (a product with an
/// empty dimension runs the portable loops, which do at most the zeroing that `overwrite` asks
/// for, and form no pointer).
#[inline(always)]
fn gemm_on(path: Supported, out: &mut [f32], a: &[f32], w: &[f32], g: Gemm) {
    #[cfg(target_arch = "x86_64")]
    if path.isa() > Isa::Portable && !g.is_empty() {
        let fits = g.extents().is_some_and(|[o, ia, iw]| out.len() >= o && a.len() >= ia && w.len() >= iw);
        if fits {
            // SAFETY: the CPU has the path's features (`Supported` is made by detection only),
            // and every slice is at least as long as the highest index the product touches
            // (`extents`).
            unsafe {
                match path.isa() {
                    Isa::Avx512 => avx512::gemm(out, a, w, g),
                    _ => avx2::gemm(out, a, w, g),
                }
            };
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
    if Supported::selected().isa() >= Isa::Avx2 {
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
