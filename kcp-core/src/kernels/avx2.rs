//! The AVX2 + FMA micro-kernel of [`gemm`](super::gemm) and the tiled transpose.

use std::arch::x86_64::*;

use super::shape::Swept;
use super::{Blocks, Gemm, Isa, Route};
use crate::tuning::{MR, NARROW_MR, PREFETCH, PREFETCH_MIN_LEN, TALL_MR};

/// The blocked product, each of its repeats.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `out`, `a`, `w` must cover `g.extents()`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn gemm(out: &mut [f32], a: &[f32], w: &[f32], g: Gemm) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        match g.route(Isa::Avx2) {
            Some(Route::Dots(d)) => {
                for ([o, ia, iw], once) in d.products(a.len(), w.len()) {
                    // SAFETY: the extents of `d` are those of `g`.
                    dots(&mut out[o..], &a[ia..], &w[iw..], once);
                }
            }
            Some(Route::Interleaved(_)) => interleaved(out, a, w, g),
            Some(Route::Products { packed, blocks }) => {
                for ([o, ia, iw], once) in g.products(a.len(), w.len()) {
                    // SAFETY: the extents of `g` cover every repeat's.
                    product(&mut out[o..], &a[ia..], &w[iw..], once, packed, blocks);
                }
            }
            // (An AVX-512 route only: `route(Isa::Avx2)` never gives it.)
            Some(Route::Portable | Route::Quads) | None => g.run_portable(out, a, w),
        }
    }
}

/// The repeats of `g` block by block (see [`Gemm::interleaves`]): each block of rows over
/// every product in turn.
///
/// # Safety
/// As for [`gemm`].
#[target_feature(enable = "avx2,fma")]
unsafe fn interleaved(out: &mut [f32], a: &[f32], w: &[f32], g: Gemm) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        let (out, a, w, r) = (out.as_mut_ptr(), a.as_ptr(), w.as_ptr(), g.repeat);
        // Nothing is prefetched (`FETCH` is false, `sweep` null): `end` is not read.
        let (end, none) = (a, std::ptr::null());
        let tall = g.len < 16;
        let mut m = 0;
        while m < g.rows {
            let (o, wm) = (out.add(m * g.out_row), w.add(m * g.w_row));
            let rows = if tall && g.rows - m >= TALL_MR { TALL_MR } else { (g.rows - m).min(MR) };
            for k in 0..r.count {
                let (o, a, wm) = (o.add(k * r.out), a.add(k * r.a), wm.add(k * r.w));
                match rows {
                    1 => columns::<1, false>(o, a, end, wm, &g, none, 0),
                    2 => columns::<2, false>(o, a, end, wm, &g, none, 0),
                    3 => columns::<3, false>(o, a, end, wm, &g, none, 0),
                    MR => columns::<MR, false>(o, a, end, wm, &g, none, 0),
                    _ => columns::<TALL_MR, false>(o, a, end, wm, &g, none, 0),
                }
            }
            m += rows;
        }
    }
}

/// One product, as its route says: `a` packed first if `packed`, then `blocks` (the narrow
/// ones, or the 8-float ones).
///
/// # Safety
/// As for [`gemm`].
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn product(out: &mut [f32], a: &[f32], w: &[f32], g: Gemm, packed: bool, blocks: Blocks) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        if packed {
            // Pack the transposed a into [outer][depth][len], then run the contiguous product.
            // SAFETY: the packed product's extents are those of `a`'s packed copy.
            return g
                .with_packed_a(a, |packed, contiguous| product(out, packed, w, contiguous, false, blocks))
                .unwrap_or_else(|| g.run_portable(out, a, w));
        }
        // Short rows of x stream slowly from DRAM (the hardware prefetcher does not follow
        // them): with a next row there, sweep its slab into L2 line by line meanwhile.
        let swept = g.sweep(a.len(), w.len());
        let slab = swept.map_or(0, |(_, slab)| slab);
        // Prefetches stay inside `a` (they reach into the rest of the batch when `a` goes on
        // past the product): they never fault, but one into an unmapped or untouched page
        // costs a page walk that finds nothing, measured 15 times slower on an 8x64x64
        // product whose `a` ended at the top of the heap.
        let end = a.as_ptr_range().end;
        let (out, a, w) = (out.as_mut_ptr(), a.as_ptr(), w.as_ptr());
        first_lines(a, end, &g);
        if blocks == Blocks::Narrow {
            return narrow(out, a, w, &g);
        }
        // Blocks one vector wide take twice the rows, to keep as many FMA chains in flight.
        let tall = g.len < 16;
        // x supplying many rows of one block of columns: each block of rows sweeps its own
        // rows of the next slab (as on the AVX-512 path).
        let by_rows = matches!(swept, Some((Swept::W, _))) && g.w_col == 1 && g.rows > MR && g.len <= 16;
        let mut m = 0;
        while m < g.rows {
            let (o, wm) = (out.add(m * g.out_row), w.add(m * g.w_row));
            // The next row's slab is swept once, by the first block of rows.
            let sweep = match swept {
                _ if by_rows => {
                    let rows = if tall && g.rows - m >= TALL_MR { TALL_MR } else { MR.min(g.rows - m) };
                    sweep_rows(w.wrapping_add(g.stream + m * g.w_row), rows * g.w_row);
                    std::ptr::null()
                }
                Some((Swept::A, _)) if m == 0 => a.wrapping_add(g.stream),
                Some((Swept::W, _)) if m == 0 => w.wrapping_add(g.stream),
                _ => std::ptr::null(),
            };
            if tall && g.rows - m >= TALL_MR {
                columns::<TALL_MR, false>(o, a, end, wm, &g, sweep, slab);
                m += TALL_MR;
                continue;
            }
            match (g.rows - m, g.len >= PREFETCH_MIN_LEN) {
                (1, false) => columns::<1, false>(o, a, end, wm, &g, sweep, slab),
                (1, true) => columns::<1, true>(o, a, end, wm, &g, sweep, slab),
                (2, false) => columns::<2, false>(o, a, end, wm, &g, sweep, slab),
                (2, true) => columns::<2, true>(o, a, end, wm, &g, sweep, slab),
                (3, false) => columns::<3, false>(o, a, end, wm, &g, sweep, slab),
                (3, true) => columns::<3, true>(o, a, end, wm, &g, sweep, slab),
                (_, false) => columns::<MR, false>(o, a, end, wm, &g, sweep, slab),
                (_, true) => columns::<MR, true>(o, a, end, wm, &g, sweep, slab),
            }
            m += MR;
        }
    }
}

/// Prefetch `len` floats from `from` into L2, a 64-byte line at a time: rows of the next slab
/// of x (inside x, which [`Gemm::sweep`] checked). Both micro-kernels.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn sweep_rows(from: *const f32, len: usize) {
    for line in (0..len).step_by(16) {
        _mm_prefetch::<_MM_HINT_T1>(from.wrapping_add(line).cast());
    }
}

/// Long rows of a are typically fresh input (x) from memory: start the first lines of every
/// row (of the first block of the sum) on their way at once; the blocks prefetch the rest as
/// they go. (The addresses wrap, never `add`: they may lie past `end`.) Both micro-kernels.
///
/// # Safety
/// The CPU must have AVX2 and FMA (a prefetch itself never faults, whatever the address).
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn first_lines(a: *const f32, end: *const f32, g: &Gemm) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        if g.len >= PREFETCH_MIN_LEN {
            for k in 0..g.depth {
                for q in (0..PREFETCH).step_by(16) {
                    prefetch::<_MM_HINT_T0>(a.wrapping_add(k * g.a_row + q), end);
                }
            }
        }
    }
}

/// `R` rows of the product, over all of `len`: blocks of 16 columns, then 8, then the last
/// `len % 8` columns as the last 8 with the lanes already done masked off (masked loads and
/// stores are slow on some CPUs: Zen 1 microcodes them), or by scalars if `len < 4` (runs of
/// 4 to 7 go to [`narrow`]).
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `out`, `a` and `w` must point into buffers that hold every
/// element this part of the product `g` reaches (what [`gemm`]'s caller guarantees for the whole
/// product).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn columns<const R: usize, const FETCH: bool>(
    out: *mut f32,
    a: *const f32,
    end: *const f32,
    w: *const f32,
    g: &Gemm,
    sweep: *const f32,
    slab: usize,
) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        // How far ahead of column q a block prefetches: `PREFETCH` along the row, or, past the
        // row's end, into the same row of the next slab `depth * a_row` further on: a GEMM on x
        // is one of a loop of products that steps through x slab by slab, and this way the next
        // one starts with its rows on their way. (Elsewhere the extra lines are wasted
        // prefetches.) None goes past `end`, the end of `a`: a block whose last prefetch would
        // prefetches nothing, decided once per block (a check per prefetch cost 8-10% on the
        // 4x20x360 products of UCF11).
        let next_slab = g.depth.wrapping_mul(g.a_row).wrapping_add(PREFETCH).wrapping_sub(g.len);
        let span = (g.depth.wrapping_sub(1).wrapping_mul(g.a_row))
            .wrapping_add(g.outer.wrapping_sub(1).wrapping_mul(g.a_outer));
        let ahead = |q: usize| {
            let by = if q + PREFETCH < g.len { PREFETCH } else { next_slab };
            let last = a.wrapping_add(q.wrapping_add(by).wrapping_add(span));
            (FETCH && last < end).then_some(by)
        };
        // The lines of the next row's slab that the block at column q sweeps: `depth` of them,
        // one per summed index, block after block, up to the slab's end (null: none).
        let sweep_at = |q: usize| {
            let line = q / 16 * g.depth * 16;
            if sweep.is_null() || line >= slab {
                std::ptr::null()
            } else {
                sweep.wrapping_add(line)
            }
        };
        let mut q = 0;
        while q + 16 <= g.len {
            fetching_block::<R, 2>(out.add(q), a.add(q), w, g, None, ahead(q), sweep_at(q));
            q += 16;
        }
        if q + 8 <= g.len {
            fetching_block::<R, 1>(out.add(q), a.add(q), w, g, None, ahead(q), sweep_at(q));
            q += 8;
        }
        if q == g.len {
            return;
        }
        if g.len >= 8 {
            let last = g.len - 8;
            fetching_block::<R, 1>(
                out.add(last),
                a.add(last),
                w,
                g,
                Some(last_lanes(g.len - q)),
                ahead(last),
                sweep_at(last),
            );
            return;
        }
        for r in 0..R {
            if g.overwrite {
                for q in q..g.len {
                    *out.add(r * g.out_row + q) = 0.0;
                }
            }
            for (ak, wk) in g.sum() {
                let wv = *w.add(r * g.w_row + wk);
                for q in q..g.len {
                    let o = out.add(r * g.out_row + q);
                    *o = wv.mul_add(*a.add(ak + q), *o);
                }
            }
        }
    }
}

/// A product narrower than a vector of 8 (`4 <= len < 8`): 128-bit blocks of 4 columns,
/// the first at column 0 and, if `len > 4`, the last 4 columns with the lanes already done
/// masked off. Zen 1 runs a 256-bit FMA as two 128-bit halves, so these blocks lose nothing
/// there (half the width elsewhere, still far above scalars); [`NARROW_MR`] rows at a time
/// keep as many FMA chains in flight as the wide blocks do.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `out`, `a` and `w` must point into buffers that hold every
/// element this part of the product `g` reaches (what [`gemm`]'s caller guarantees for the whole
/// product).
#[target_feature(enable = "avx2,fma")]
unsafe fn narrow(out: *mut f32, a: *const f32, w: *const f32, g: &Gemm) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        let mut m = 0;
        while m < g.rows {
            let (o, wm) = (out.add(m * g.out_row), w.add(m * g.w_row));
            match g.rows - m {
                1 => narrow_rows::<1>(o, a, wm, g),
                2 => narrow_rows::<2>(o, a, wm, g),
                3 => narrow_rows::<3>(o, a, wm, g),
                4 => narrow_rows::<4>(o, a, wm, g),
                5 => narrow_rows::<5>(o, a, wm, g),
                6 => narrow_rows::<6>(o, a, wm, g),
                7 => narrow_rows::<7>(o, a, wm, g),
                _ => narrow_rows::<NARROW_MR>(o, a, wm, g),
            }
            m += NARROW_MR;
        }
    }
}

/// `R` rows of a narrow product.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `out`, `a` and `w` must point into buffers that hold every
/// element this part of the product `g` reaches (what [`gemm`]'s caller guarantees for the whole
/// product).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn narrow_rows<const R: usize>(out: *mut f32, a: *const f32, w: *const f32, g: &Gemm) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        block4::<R>(out, a, w, g, None);
        if g.len > 4 {
            let last = g.len - 4;
            let lanes = _mm_setr_epi32(0, 1, 2, 3);
            let keep = _mm_castsi128_ps(_mm_cmpgt_epi32(lanes, _mm_set1_epi32(3 - last as i32)));
            block4::<R>(out.add(last), a.add(last), w, g, Some(keep));
        }
    }
}

/// One `R` x 4 block of `out` in 128-bit registers; `keep` limits what is added to `out`
/// to its lanes.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `out`, `a` and `w` must point into buffers that hold every
/// element this part of the product `g` reaches (what [`gemm`]'s caller guarantees for the whole
/// product).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn block4<const R: usize>(out: *mut f32, a: *const f32, w: *const f32, g: &Gemm, keep: Option<__m128>) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        let mut acc = [_mm_setzero_ps(); R];
        for k2 in 0..g.outer {
            let (a, w) = (a.add(k2 * g.a_outer), w.add(k2 * g.w_outer));
            for k in 0..g.depth {
                let av = _mm_loadu_ps(a.add(k * g.a_row));
                for (r, slot) in acc.iter_mut().enumerate() {
                    *slot = _mm_fmadd_ps(_mm_broadcast_ss(&*w.add(r * g.w_row + k * g.w_col)), av, *slot);
                }
            }
        }
        for (r, &sum) in acc.iter().enumerate() {
            let p = out.add(r * g.out_row);
            let new = match (keep, g.overwrite) {
                (None, true) => sum,
                (None, false) => _mm_add_ps(_mm_loadu_ps(p), sum),
                (Some(keep), true) => _mm_blendv_ps(_mm_loadu_ps(p), sum, keep),
                (Some(keep), false) => _mm_add_ps(_mm_loadu_ps(p), _mm_and_ps(sum, keep)),
            };
            _mm_storeu_ps(p, new);
        }
    }
}

/// The 8 x 8 tiles of [`super::transpose`] in the first `full_rows x full_cols`.
///
/// # Safety
/// The CPU must have AVX2; `full_rows <= rows` and `full_cols <= cols` are multiples of 8,
/// and both slices hold `rows * cols` elements.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn transpose_tiles(
    from: &[f32],
    to: &mut [f32],
    rows: usize,
    cols: usize,
    full_rows: usize,
    full_cols: usize,
) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        let (from, to) = (from.as_ptr(), to.as_mut_ptr());
        for r0 in (0..full_rows).step_by(8) {
            for c0 in (0..full_cols).step_by(8) {
                let row = |k: usize| _mm256_loadu_ps(from.add((r0 + k) * cols + c0));
                // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves.
                let t = [0, 2, 4, 6]
                    .map(|k| (_mm256_unpacklo_ps(row(k), row(k + 1)), _mm256_unpackhi_ps(row(k), row(k + 1))));
                let q = [0, 2].map(|k| {
                    let ((lo0, hi0), (lo1, hi1)) = (t[k], t[k + 1]);
                    [
                        _mm256_shuffle_ps::<0x44>(lo0, lo1),
                        _mm256_shuffle_ps::<0xEE>(lo0, lo1),
                        _mm256_shuffle_ps::<0x44>(hi0, hi1),
                        _mm256_shuffle_ps::<0xEE>(hi0, hi1),
                    ]
                });
                let column = |c: usize| to.add((c0 + c) * rows + r0);
                for (k, (&low, &high)) in q[0].iter().zip(&q[1]).enumerate() {
                    _mm256_storeu_ps(column(k), _mm256_permute2f128_ps::<0x20>(low, high));
                    _mm256_storeu_ps(column(k + 4), _mm256_permute2f128_ps::<0x31>(low, high));
                }
            }
        }
    }
}

/// Prefetches the line of `p` (with hint `HINT`) if it lies before `end`.
///
/// # Safety
/// The CPU must have AVX2 and FMA (a prefetch itself never faults, whatever the address).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn prefetch<const HINT: i32>(p: *const f32, end: *const f32) {
    if p < end {
        _mm_prefetch::<HINT>(p.cast());
    }
}

/// The mask of the last `n` (< 8) lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn last_lanes(n: usize) -> __m256 {
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_castsi256_ps(_mm256_cmpgt_epi32(lanes, _mm256_set1_epi32(7 - n as i32)))
}

/// [`block`], prefetching each row of `a` `ahead` elements past its columns if that is some.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `out`, `a` and `w` must point into buffers that hold every
/// element this part of the product `g` reaches (what [`gemm`]'s caller guarantees for the whole
/// product).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn fetching_block<const R: usize, const V: usize>(
    out: *mut f32,
    a: *const f32,
    w: *const f32,
    g: &Gemm,
    keep: Option<__m256>,
    ahead: Option<usize>,
    sweep: *const f32,
) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        match ahead {
            Some(by) => block::<R, V, true>(out, a, w, g, keep, by, sweep),
            None => block::<R, V, false>(out, a, w, g, keep, 0, sweep),
        }
    }
}

/// One `R` x `8 V` block of `out`, its accumulators in registers; `keep` limits what is
/// added to `out` to its lanes; with `FETCH`, each row of `a` is prefetched `ahead`
/// elements past the block's columns; unless `sweep` is null, the `depth` lines from it
/// are prefetched into L2.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `out`, `a` and `w` must point into buffers that hold every
/// element this part of the product `g` reaches (what [`gemm`]'s caller guarantees for the whole
/// product).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn block<const R: usize, const V: usize, const FETCH: bool>(
    out: *mut f32,
    a: *const f32,
    w: *const f32,
    g: &Gemm,
    keep: Option<__m256>,
    ahead: usize,
    sweep: *const f32,
) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); V]; R];
        for k2 in 0..g.outer {
            let (a, w) = (a.add(k2 * g.a_outer), w.add(k2 * g.w_outer));
            for k in 0..g.depth {
                let ak = a.add(k * g.a_row);
                // The columns a later block reads: from DRAM (a batch of fresh rows of x), the
                // hardware prefetcher does not follow `depth` interleaved short runs.
                if FETCH {
                    _mm_prefetch::<_MM_HINT_T0>(ak.wrapping_add(ahead).cast());
                }
                // (Only products with `outer` = 1 sweep.)
                if !sweep.is_null() {
                    _mm_prefetch::<_MM_HINT_T1>(sweep.wrapping_add(k * 16).cast());
                }
                let mut av = [_mm256_setzero_ps(); V];
                for (v, slot) in av.iter_mut().enumerate() {
                    *slot = _mm256_loadu_ps(ak.add(8 * v));
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let wv = _mm256_broadcast_ss(&*w.add(r * g.w_row + k * g.w_col));
                    for (slot, &x) in row.iter_mut().zip(&av) {
                        *slot = _mm256_fmadd_ps(wv, x, *slot);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, &sum) in row.iter().enumerate() {
                let p = out.add(r * g.out_row + 8 * v);
                let new = match (keep, g.overwrite) {
                    (None, true) => sum,
                    (None, false) => _mm256_add_ps(_mm256_loadu_ps(p), sum),
                    (Some(keep), true) => _mm256_blendv_ps(_mm256_loadu_ps(p), sum, keep),
                    (Some(keep), false) => _mm256_add_ps(_mm256_loadu_ps(p), _mm256_and_ps(sum, keep)),
                };
                _mm256_storeu_ps(p, new);
            }
        }
    }
}

/// A product whose operands are both contiguous along the sum ([`Gemm::dots`]): blocks of
/// up to 4 rows of `w` by 2 columns of `a`, each of the 8 dots a vector accumulator along the
/// sum, summed across lanes at the end (the last few terms of each dot, past whole vectors,
/// one by one: no masked loads).
///
/// # Safety
/// As for [`gemm`].
#[target_feature(enable = "avx2,fma")]
unsafe fn dots(out: &mut [f32], a: &[f32], w: &[f32], g: Gemm) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        let (o, a, w) = (out.as_mut_ptr(), a.as_ptr(), w.as_ptr());
        let mut m = 0;
        while m < g.rows {
            let rows = (g.rows - m).min(MR);
            let mut q = 0;
            while q < g.len {
                let cols = (g.len - q).min(2);
                let (ob, ab, wb) = (o.add(m * g.out_row + q), a.add(q * g.a_col), w.add(m * g.w_row));
                match (rows, cols) {
                    (4, 2) => dot_block::<4, 2>(ob, ab, wb, &g),
                    (4, _) => dot_block::<4, 1>(ob, ab, wb, &g),
                    (3, 2) => dot_block::<3, 2>(ob, ab, wb, &g),
                    (3, _) => dot_block::<3, 1>(ob, ab, wb, &g),
                    (2, 2) => dot_block::<2, 2>(ob, ab, wb, &g),
                    (2, _) => dot_block::<2, 1>(ob, ab, wb, &g),
                    (_, 2) => dot_block::<1, 2>(ob, ab, wb, &g),
                    (_, _) => dot_block::<1, 1>(ob, ab, wb, &g),
                }
                q += cols;
            }
            m += rows;
        }
    }
}

/// One block of `R` rows by `C` columns of [`dots`].
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `out`, `a` and `w` must point into buffers that hold every
/// element this part of the product `g` reaches (what [`gemm`]'s caller guarantees for the whole
/// product).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_block<const R: usize, const C: usize>(out: *mut f32, a: *const f32, w: *const f32, g: &Gemm) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let mut rest = [[0.0f32; C]; R];
        let full = g.depth - g.depth % 8;
        for k2 in 0..g.outer {
            let (a, w) = (a.add(k2 * g.a_outer), w.add(k2 * g.w_outer));
            let mut k = 0;
            while k < full {
                let av: [__m256; C] = std::array::from_fn(|j| _mm256_loadu_ps(a.add(j * g.a_col + k)));
                for (i, row) in acc.iter_mut().enumerate() {
                    let wv = _mm256_loadu_ps(w.add(i * g.w_row + k));
                    for (sum, &v) in row.iter_mut().zip(&av) {
                        *sum = _mm256_fmadd_ps(wv, v, *sum);
                    }
                }
                k += 8;
            }
            for k in full..g.depth {
                for (i, row) in rest.iter_mut().enumerate() {
                    for (j, sum) in row.iter_mut().enumerate() {
                        *sum += *w.add(i * g.w_row + k) * *a.add(j * g.a_col + k);
                    }
                }
            }
        }
        for i in 0..R {
            for j in 0..C {
                // The eight lanes summed: the two halves, then pairs, then the last two.
                let v = acc[i][j];
                let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                let pairs = _mm_add_ps(half, _mm_movehl_ps(half, half));
                let total = _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps::<1>(pairs, pairs))) + rest[i][j];
                let p = out.add(i * g.out_row + j);
                *p = if g.overwrite { total } else { *p + total };
            }
        }
    }
}
