//! The micro-kernels' tuning constants, in one place: each says what it sets and where its
//! value comes from. What they cost or save in time is measured in BENCHMARKS.md, not here.

/// How far ahead in a row of `a` (in elements) a micro-kernel's block prefetches: two 64-byte
/// lines per row for each of the eight lines a block reads.
pub(crate) const PREFETCH: usize = 128;
/// The shortest rows of `a` that are prefetched: shorter ones are scratch, in cache, where the
/// prefetches only cost issue slots.
pub(crate) const PREFETCH_MIN_LEN: usize = 64;
/// The longest rows of x whose next row's slab is swept into L2 (`Gemm::stream`): longer rows
/// stream well on the hardware prefetcher alone, and measured slower with the sweep.
pub(crate) const STREAM_MAX_LEN: usize = 512;

/// Rows per register block of the AVX2 path: four rows of two 8-float vectors are 8 of its 16
/// registers of accumulators, the rest for the operands.
pub(crate) const MR: usize = 4;
/// Rows per AVX2 register block of a product narrower than 16 (one vector per row), while
/// that many rows are left: eight accumulators, as a wide block has.
pub(crate) const TALL_MR: usize = 8;
/// Rows per AVX2 register block of a narrow product (4 to 7 columns, 128-bit halves): as many
/// FMA chains in flight as the wide blocks keep.
pub(crate) const NARROW_MR: usize = 8;

/// The fewest repeats of a 4-float-wide product that run four rows to an AVX-512 vector
/// (`Route::Quads`): `w` is packed once per call, four floats per value, which costs about
/// what one repeat's FMAs do.
pub(crate) const QUADS_MIN_REPEATS: usize = 8;
/// The most floats of packed `w` the four-rows-to-a-vector route builds, on the stack: 32 KiB,
/// within L1 beside the rows of `a` it streams (the tensor train's second UCF11 step packs
/// 5,120).
pub(crate) const QUADS_MAX_PACKED: usize = 8192;
