//! The AVX-512F micro-kernel of [`gemm`](super::gemm): register blocks of `rows` rows by
//! `vectors` 16-float vectors ([`Block`], picked per product shape by the lowering), the last
//! vector of a row masked, so that no tail falls back to narrower code.

use std::arch::x86_64::*;

use super::shape::Swept;
use super::{Block, Blocks, Gemm, Isa, Repeat, Route};
use crate::tuning::{PREFETCH, PREFETCH_MIN_LEN, QUADS_MAX_PACKED};

/// `$body` with `R` and `V` the constants `$rows` and `$vectors` (a block [`Block::clamped`]
/// allows): the register-allocated forms of every block.
macro_rules! dispatch {
    ($rows:expr, $vectors:expr, |R, V| $body:expr) => {
        dispatch!(@ $rows, $vectors, $body;
            1: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16;
            2: 1 2 3 4 5 6 7 8;
            3: 1 2 3 4 5;
            4: 1 2 3 4;)
    };
    (@ $rows:expr, $vectors:expr, $body:expr; $($v:literal: $($r:literal)*;)*) => {{
        const _: () = assert!(Block::ACCUMULATORS == 16 && Block::MAX_VECTORS == 4);
        match ($vectors, $rows) {
            $($(($v, $r) => {
                #[allow(non_snake_case, unused)]
                const R: usize = $r;
                #[allow(non_snake_case, unused)]
                const V: usize = $v;
                $body
            })*)*
            (vectors, rows) => unreachable!("a {rows} x {vectors} block is larger than the registers"),
        }
    }};
}

/// The lanes of a vector.
const LANES: usize = 16;

/// The blocked product, each of its repeats.
///
/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA, and `out`, `a`, `w` must cover `g.extents()`.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn gemm(out: &mut [f32], a: &[f32], w: &[f32], g: Gemm) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        match g.route(Isa::Avx512) {
            Some(Route::Dots(d)) => {
                for ([o, ia, iw], once) in d.products(a.len(), w.len()) {
                    // SAFETY: the extents of `d` are those of `g`.
                    dots(&mut out[o..], &a[ia..], &w[iw..], once);
                }
            }
            Some(Route::Interleaved(_)) => interleaved(out, a, w, g),
            Some(Route::Quads) => quads(out, a, w, g),
            Some(Route::Products { packed, blocks }) => {
                for ([o, ia, iw], once) in g.products(a.len(), w.len()) {
                    // SAFETY: the extents of `g` cover every repeat's.
                    product(&mut out[o..], &a[ia..], &w[iw..], once, packed, blocks);
                }
            }
            Some(Route::Portable) | None => g.run_portable(out, a, w),
        }
    }
}

/// The repeats of `g` block by block: each register block of the product (rows by columns,
/// as [`product`] cuts them) over every product, one after the other.
///
/// # Safety
/// As for [`gemm`].
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn interleaved(out: &mut [f32], a: &[f32], w: &[f32], g: Gemm) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        let (out, a, w) = (out.as_mut_ptr(), a.as_ptr(), w.as_ptr());
        let block = g.block.clamped();
        let width = LANES * block.vectors;
        let mut m = 0;
        while m < g.rows {
            let rows = block.rows.min(g.rows - m);
            let (o, wm) = (out.add(m * g.out_row), w.add(m * g.w_row));
            let mut q = 0;
            while q < g.len {
                let (vectors, last) = cut(g.len - q, width);
                block_over(rows, vectors, o.add(q), a.add(q), wm, &g, last, g.repeat);
                q += LANES * vectors;
            }
            m += rows;
        }
    }
}

/// A product 4 floats wide, four rows to a vector (see [`Route::Quads`]): `w` packed once,
/// each value four times, so that a vector of it holds four rows' values for one term of the
/// sum; each term then costs one 128-bit load of `a`, broadcast to the four lanes, and one
/// FMA per four rows, where the 128-bit blocks take one FMA per row.
///
/// # Safety
/// As for [`gemm`]; `g` is a product [`Gemm::quads`] accepts.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn quads(out: &mut [f32], a: &[f32], w: &[f32], g: Gemm) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        let (quads, terms) = (g.rows.div_ceil(4), g.outer * g.depth);
        // packed[(term * quads + q) * 16 + 4 i + c] = w[row 4q + i, term], zero past the rows:
        // on the stack (Gemm::quads bounds it), every element written.
        let mut buffer = [std::mem::MaybeUninit::<f32>::uninit(); QUADS_MAX_PACKED];
        for k2 in 0..g.outer {
            for k in 0..g.depth {
                let term = k2 * g.depth + k;
                for r in 0..4 * quads {
                    let value = if r < g.rows { w[r * g.w_row + k2 * g.w_outer + k * g.w_col] } else { 0.0 };
                    let at = (term * quads + r / 4) * LANES + 4 * (r % 4);
                    buffer[at..at + 4].iter_mut().for_each(|slot| {
                        slot.write(value);
                    });
                }
            }
        }
        // SAFETY: the loops above wrote each of the first terms * quads * 16 elements.
        let packed = std::slice::from_raw_parts(buffer.as_ptr().cast::<f32>(), terms * quads * LANES);
        let (out, a, packed) = (out.as_mut_ptr(), a.as_ptr(), packed.as_ptr());
        for item in 0..g.repeat.count {
            let (out, a) = (out.add(item * g.repeat.out), a.add(item * g.repeat.a));
            let mut q = 0;
            while q < quads {
                match quads - q {
                    1 => quad_block::<1>(out, a, packed, q, quads, &g),
                    2 => quad_block::<2>(out, a, packed, q, quads, &g),
                    3 => quad_block::<3>(out, a, packed, q, quads, &g),
                    _ => quad_block::<QUADS_PER_BLOCK>(out, a, packed, q, quads, &g),
                }
                q += QUADS_PER_BLOCK;
            }
        }
    }
}

/// The quads of rows a register block of [`quads`] holds: four accumulators, as many FMA
/// chains in flight as the wide blocks keep, and the packed `w` read once per term and block.
const QUADS_PER_BLOCK: usize = 4;

/// `Q` quads of rows from quad `first` (of `quads`) of one product of [`quads`], `packed` its
/// packed `w`.
///
/// # Safety
/// The CPU must have AVX-512F, `out` and `a` must cover the product's extents, and `packed`
/// must hold `outer * depth * quads` vectors.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn quad_block<const Q: usize>(
    out: *mut f32,
    a: *const f32,
    packed: *const f32,
    first: usize,
    quads: usize,
    g: &Gemm,
) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); Q];
        for k2 in 0..g.outer {
            for k in 0..g.depth {
                let term = k2 * g.depth + k;
                let av = _mm512_broadcast_f32x4(_mm_loadu_ps(a.add(k2 * g.a_outer + k * g.a_row)));
                let wq = packed.add((term * quads + first) * LANES);
                for (j, slot) in acc.iter_mut().enumerate() {
                    *slot = _mm512_fmadd_ps(_mm512_loadu_ps(wq.add(j * LANES)), av, *slot);
                }
            }
        }
        for (j, &sum) in acc.iter().enumerate() {
            let rows = [
                _mm512_extractf32x4_ps::<0>(sum),
                _mm512_extractf32x4_ps::<1>(sum),
                _mm512_extractf32x4_ps::<2>(sum),
                _mm512_extractf32x4_ps::<3>(sum),
            ];
            for (i, &row) in rows.iter().enumerate() {
                let r = 4 * (first + j) + i;
                if r >= g.rows {
                    break;
                }
                let p = out.add(r * g.out_row);
                _mm_storeu_ps(p, if g.overwrite { row } else { _mm_add_ps(_mm_loadu_ps(p), row) });
            }
        }
    }
}

/// The next block of columns when `rest` are left, at most `width` wide: its vectors and the
/// mask of its last one.
fn cut(rest: usize, width: usize) -> (usize, __mmask16) {
    let columns = rest.min(width);
    let vectors = columns.div_ceil(LANES);
    let lanes = columns - LANES * (vectors - 1);
    (vectors, if lanes == LANES { u16::MAX } else { (1u16 << lanes) - 1 })
}

/// [`block`] over each product of `items`, in order.
///
/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA, and `out`, `a` and `w` must point into buffers that
/// hold every element this part of the product `g` reaches (what [`gemm`]'s caller guarantees
/// for the whole product).
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn block_over(
    rows: usize,
    vectors: usize,
    out: *mut f32,
    a: *const f32,
    w: *const f32,
    g: &Gemm,
    last: __mmask16,
    items: Repeat,
) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        dispatch!(rows, vectors, |R, V| {
            for k in 0..items.count {
                let (out, a, w) = (out.add(k * items.out), a.add(k * items.a), w.add(k * items.w));
                registers::<R, V>(out, a, w, g, last, None, std::ptr::null());
            }
        });
    }
}

/// One product, as its route says: `a` packed first if `packed`, then `blocks` (the AVX2
/// kernel's for a product of at most [`Gemm::NARROW`] floats a row, half a 16-float vector).
///
/// # Safety
/// As for [`gemm`].
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn product(out: &mut [f32], a: &[f32], w: &[f32], g: Gemm, packed: bool, blocks: Blocks) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        if !matches!(blocks, Blocks::Avx512(_)) {
            // SAFETY: the CPU has AVX2 and FMA (with AVX-512F), the slices cover the extents.
            return super::avx2::product(out, a, w, g, packed, blocks);
        }
        if packed {
            // SAFETY: the packed product's extents are those of `a`'s packed copy.
            return g
                .with_packed_a(a, |packed, contiguous| product(out, packed, w, contiguous, false, blocks))
                .unwrap_or_else(|| g.run_portable(out, a, w));
        }
        // As in the AVX2 kernel: short rows of x with a next row there sweep its slab into L2.
        let swept = g.sweep(a.len(), w.len());
        let slab = swept.map_or(0, |(_, slab)| slab);
        // Prefetches stay inside `a` (see the AVX2 kernel: a prefetch into an untouched page
        // costs a page walk).
        let end = a.as_ptr_range().end;
        let (out, a, w) = (out.as_mut_ptr(), a.as_ptr(), w.as_ptr());
        super::avx2::first_lines(a, end, &g);
        let block = g.block.clamped();
        // x supplying many rows of one block of columns (rows from a row of x): each block of
        // rows sweeps its own rows of the next slab, which the columns' sweep of the first
        // block (a few lines per summed index) would not reach.
        let by_rows = matches!(swept, Some((Swept::W, _)))
            && g.w_col == 1
            && g.rows > block.rows
            && g.len <= LANES * block.vectors;
        let mut m = 0;
        while m < g.rows {
            let rows = block.rows.min(g.rows - m);
            // The next row's slab is swept once, by the first block of rows.
            let sweep = match swept {
                _ if by_rows => {
                    super::avx2::sweep_rows(w.wrapping_add(g.stream + m * g.w_row), rows * g.w_row);
                    std::ptr::null()
                }
                Some((Swept::A, _)) if m == 0 => a.wrapping_add(g.stream),
                Some((Swept::W, _)) if m == 0 => w.wrapping_add(g.stream),
                _ => std::ptr::null(),
            };
            columns(rows, block.vectors, out.add(m * g.out_row), a, end, w.add(m * g.w_row), &g, sweep, slab);
            m += rows;
        }
    }
}

/// `rows` rows of the product over all of `len`: blocks of `vectors` vectors, then the rest
/// in one block of as many vectors as it needs, its last vector masked to the columns left.
///
/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA, and `out`, `a` and `w` must point into buffers that
/// hold every element this part of the product `g` reaches (what [`gemm`]'s caller guarantees
/// for the whole product).
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn columns(
    rows: usize,
    vectors: usize,
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
        // How far ahead of column q a block prefetches (as in the AVX2 kernel: along the row,
        // or past its end into the same row of the next slab), if the block's last prefetch
        // stays inside `a`.
        let fetch = g.len >= PREFETCH_MIN_LEN;
        let next_slab = g.depth.wrapping_mul(g.a_row).wrapping_add(PREFETCH).wrapping_sub(g.len);
        let span = (g.depth.wrapping_sub(1).wrapping_mul(g.a_row))
            .wrapping_add(g.outer.wrapping_sub(1).wrapping_mul(g.a_outer));
        let ahead = |q: usize, vectors: usize| {
            let by = if q + PREFETCH < g.len { PREFETCH } else { next_slab };
            let last = a.wrapping_add(q.wrapping_add(by).wrapping_add(span).wrapping_add(LANES * (vectors - 1)));
            (fetch && last < end).then_some(by)
        };
        // The lines of the next row's slab that the block at column q sweeps (null: none).
        let sweep_at = |q: usize| {
            let line = q / LANES * g.depth * LANES;
            if sweep.is_null() || line >= slab {
                std::ptr::null()
            } else {
                sweep.wrapping_add(line)
            }
        };
        let width = LANES * vectors;
        let mut q = 0;
        while q + width <= g.len {
            block(rows, vectors, out.add(q), a.add(q), w, g, u16::MAX, ahead(q, vectors), sweep_at(q));
            q += width;
        }
        if q < g.len {
            let (tail, last) = cut(g.len - q, width);
            block(rows, tail, out.add(q), a.add(q), w, g, last, ahead(q, tail), sweep_at(q));
        }
    }
}

/// One block of `rows` x `vectors` ([`Block::clamped`] bounds both), dispatched to its
/// register-allocated form.
///
/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA, and `out`, `a` and `w` must point into buffers that
/// hold every element this part of the product `g` reaches (what [`gemm`]'s caller guarantees
/// for the whole product).
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    rows: usize,
    vectors: usize,
    out: *mut f32,
    a: *const f32,
    w: *const f32,
    g: &Gemm,
    last: __mmask16,
    ahead: Option<usize>,
    sweep: *const f32,
) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        dispatch!(rows, vectors, |R, V| registers::<R, V>(out, a, w, g, last, ahead, sweep));
    }
}

/// One `R` x `16 V` block of `out`, its accumulators in registers; `last` masks the lanes of
/// the last vector of each row (loaded, added and stored); with `ahead`, each row of `a` is
/// prefetched that far past the block's columns; unless `sweep` is null, `V` lines per summed
/// index from it are prefetched into L2.
///
/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA, and `out`, `a` and `w` must point into buffers that
/// hold every element this part of the product `g` reaches (what [`gemm`]'s caller guarantees
/// for the whole product).
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn registers<const R: usize, const V: usize>(
    out: *mut f32,
    a: *const f32,
    w: *const f32,
    g: &Gemm,
    last: __mmask16,
    ahead: Option<usize>,
    sweep: *const f32,
) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        let mask = |v: usize| if v + 1 == V { last } else { u16::MAX };
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for k2 in 0..g.outer {
            let (a, w) = (a.add(k2 * g.a_outer), w.add(k2 * g.w_outer));
            for k in 0..g.depth {
                let ak = a.add(k * g.a_row);
                if let Some(by) = ahead {
                    for v in 0..V {
                        _mm_prefetch::<_MM_HINT_T0>(ak.wrapping_add(by + LANES * v).cast());
                    }
                }
                if !sweep.is_null() {
                    for v in 0..V {
                        _mm_prefetch::<_MM_HINT_T1>(sweep.wrapping_add((k * V + v) * LANES).cast());
                    }
                }
                let mut av = [_mm512_setzero_ps(); V];
                for (v, slot) in av.iter_mut().enumerate() {
                    // The first lane of every vector is a column of the product, inside `a`.
                    *slot = _mm512_maskz_loadu_ps(mask(v), ak.add(LANES * v));
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let wv = _mm512_set1_ps(*w.add(r * g.w_row + k * g.w_col));
                    for (slot, &x) in row.iter_mut().zip(&av) {
                        *slot = _mm512_fmadd_ps(wv, x, *slot);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, &sum) in row.iter().enumerate() {
                let p = out.add(r * g.out_row + LANES * v);
                let new = if g.overwrite { sum } else { _mm512_add_ps(_mm512_maskz_loadu_ps(mask(v), p), sum) };
                _mm512_mask_storeu_ps(p, mask(v), new);
            }
        }
    }
}

/// A product whose operands are both contiguous along the sum ([`Gemm::dots`]): blocks of
/// up to 4 rows of `w` by 4 columns of `a`, each of the 16 dots a vector accumulator along the
/// sum (its tail masked), summed across lanes once at the end.
///
/// A short sum runs block by block, each over the whole sum. A long one runs in tiles of
/// [`DOTS_TILE`] dots, the sum piece by piece ([`Pieces`]) over every block of the tile, their
/// accumulators kept in memory between pieces: the rows and columns of a piece are then read
/// from L2 once and reused from L1 by every block of the tile, where block by block the
/// tile's rows were read again for every block of columns (a weight gradient of the UCF11
/// layer reads 4 rows of 2,880 floats five times so, 46 KB each time).
///
/// # Safety
/// As for [`gemm`].
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn dots(out: &mut [f32], a: &[f32], w: &[f32], g: Gemm) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        let (o, a, w) = (out.as_mut_ptr(), a.as_ptr(), w.as_ptr());
        let tail = g.depth % LANES;
        let mask: __mmask16 = if tail == 0 { 0 } else { (1u16 << tail) - 1 };
        let (tile_rows, tile_cols, pieces) = Pieces::of(&g);
        // Written by a piece before the next one reads it (unused where the sum is one piece).
        let mut partial = std::mem::MaybeUninit::<[__m512; DOTS_TILE]>::uninit();
        let partial = partial.as_mut_ptr().cast::<__m512>();
        let mut m0 = 0;
        while m0 < g.rows {
            let tr = (g.rows - m0).min(tile_rows);
            let mut q0 = 0;
            while q0 < g.len {
                let tc = (g.len - q0).min(tile_cols);
                for piece in pieces.iter() {
                    let mut m = 0;
                    while m < tr {
                        let rows = (tr - m).min(4);
                        let mut q = 0;
                        while q < tc {
                            let cols = (tc - q).min(4);
                            let (mm, qq) = (m0 + m, q0 + q);
                            let (ob, ab, wb) = (o.add(mm * g.out_row + qq), a.add(qq * g.a_col), w.add(mm * g.w_row));
                            let acc = Partial { at: partial.add(m * tile_cols + q), row: tile_cols };
                            macro_rules! run {
                                ($r:literal, $c:literal) => {
                                    dot_block::<$r, $c>(ob, ab, wb, &g, mask, &piece, acc)
                                };
                            }
                            match (rows, cols) {
                                (4, 4) => run!(4, 4),
                                (4, 3) => run!(4, 3),
                                (4, 2) => run!(4, 2),
                                (4, _) => run!(4, 1),
                                (3, 4) => run!(3, 4),
                                (3, 3) => run!(3, 3),
                                (3, 2) => run!(3, 2),
                                (3, _) => run!(3, 1),
                                (2, 4) => run!(2, 4),
                                (2, 3) => run!(2, 3),
                                (2, 2) => run!(2, 2),
                                (2, _) => run!(2, 1),
                                (_, 4) => run!(1, 4),
                                (_, 3) => run!(1, 3),
                                (_, 2) => run!(1, 2),
                                (_, _) => run!(1, 1),
                            }
                            q += cols;
                        }
                        m += rows;
                    }
                }
                q0 += tc;
            }
            m0 += tr;
        }
    }
}

/// The most dots a tile of [`dots`] keeps between pieces of the sum: 128 vectors, 8 KiB.
const DOTS_TILE: usize = 128;

/// The floats of a piece's rows and columns that [`dots`] keeps within L1 (32 KiB, Zen 4's
/// L1D; Zen 5's is 48).
const DOTS_PIECE_FLOATS: usize = 8192;

/// A piece of the sum of [`dots`]: outer steps `k2` and, of each, the steps `k` (the masked
/// tail with the last), and whether it is the first piece (its accumulators start at zero) and
/// the last (they are summed into `out`).
#[derive(Clone, Debug)]
struct Piece {
    k2: std::ops::Range<usize>,
    k: std::ops::Range<usize>,
    first: bool,
    last: bool,
}

/// How [`dots`] cuts its sum into [`Piece`]s: `outer_step` outer steps a piece, and of each
/// outer step, runs of `inner_step` (a multiple of the vector width; the last run takes the
/// rest, up to one and a half runs).
#[derive(Clone, Copy, Debug)]
struct Pieces {
    outer: usize,
    depth: usize,
    outer_step: usize,
    inner_step: usize,
}

impl Pieces {
    /// The tile's rows and columns, and the pieces: one, the whole sum, where a row block's
    /// rows over the whole sum fit [`DOTS_PIECE_FLOATS`] (they stay in L1 while the blocks of
    /// columns read them); else pieces whose tile rows and columns fit it, whole outer steps
    /// where the steps are short (as many as fit, at least one), or the inner sum cut into
    /// runs of whole vectors where one step is more than twice what fits.
    fn of(g: &Gemm) -> (usize, usize, Pieces) {
        let (outer, depth) = (g.outer, g.depth);
        if depth.saturating_mul(outer).saturating_mul(g.rows.min(4)) <= DOTS_PIECE_FLOATS {
            return (g.rows, g.len, Pieces { outer, depth, outer_step: outer.max(1), inner_step: depth });
        }
        let rows = g.rows.clamp(1, 16);
        let cols = g.len.clamp(1, DOTS_TILE / rows);
        let fits = ((DOTS_PIECE_FLOATS / (rows + cols)) / LANES * LANES).max(4 * LANES);
        let pieces = if depth <= 2 * fits {
            Pieces { outer, depth, outer_step: (fits / depth.max(1)).max(1), inner_step: depth }
        } else {
            Pieces { outer, depth, outer_step: 1, inner_step: fits }
        };
        (rows, cols, pieces)
    }

    /// The pieces, in order.
    fn iter(self) -> impl Iterator<Item = Piece> {
        let (mut k2, mut k) = (0, 0);
        std::iter::from_fn(move || {
            if k2 >= self.outer {
                return None;
            }
            let k2_end = (k2 + self.outer_step).min(self.outer);
            let rest = self.depth - k;
            let end = if rest <= self.inner_step + self.inner_step / 2 { self.depth } else { k + self.inner_step };
            let piece = Piece {
                k2: k2..k2_end,
                k: k..end,
                first: k2 == 0 && k == 0,
                last: k2_end == self.outer && end == self.depth,
            };
            if end == self.depth {
                (k2, k) = (k2_end, 0);
            } else {
                k = end;
            }
            Some(piece)
        })
    }
}

/// Where a block of [`dots`] keeps its accumulators between pieces: row `i`, column `j` at
/// `at + i * row + j`.
#[derive(Clone, Copy)]
struct Partial {
    at: *mut __m512,
    row: usize,
}

/// One block of `R` rows by `C` columns of [`dots`] over one piece of the sum:
/// `out[i * out_row + j] (+)= sum over the outer and inner sums of w[i * w_row + ..] *
/// a[j * a_col + ..]`, its accumulators from `acc` unless the piece is the first, and into `acc`
/// unless it is the last.
///
/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA, and `out`, `a` and `w` must point into buffers that
/// hold every element this part of the product `g` reaches (what [`gemm`]'s caller guarantees
/// for the whole product); `acc` must hold the block's accumulators unless the piece is the
/// only one.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn dot_block<const R: usize, const C: usize>(
    out: *mut f32,
    a: *const f32,
    w: *const f32,
    g: &Gemm,
    mask: __mmask16,
    piece: &Piece,
    acc: Partial,
) {
    // SAFETY: the function's contract (its `# Safety`) is what these operations need.
    unsafe {
        let kept = |i: usize, j: usize| acc.at.add(i * acc.row + j);
        let mut sums = [[_mm512_setzero_ps(); C]; R];
        if !piece.first {
            for (i, row) in sums.iter_mut().enumerate() {
                for (j, sum) in row.iter_mut().enumerate() {
                    *sum = *kept(i, j);
                }
            }
        }
        let full = piece.k.end.min(g.depth - g.depth % LANES);
        let masked = mask != 0 && piece.k.end == g.depth;
        for k2 in piece.k2.clone() {
            let (a, w) = (a.add(k2 * g.a_outer), w.add(k2 * g.w_outer));
            let mut k = piece.k.start;
            while k < full {
                let av: [__m512; C] = std::array::from_fn(|j| _mm512_loadu_ps(a.add(j * g.a_col + k)));
                for (i, row) in sums.iter_mut().enumerate() {
                    let wv = _mm512_loadu_ps(w.add(i * g.w_row + k));
                    for (sum, &v) in row.iter_mut().zip(&av) {
                        *sum = _mm512_fmadd_ps(wv, v, *sum);
                    }
                }
                k += LANES;
            }
            if masked {
                let av: [__m512; C] = std::array::from_fn(|j| _mm512_maskz_loadu_ps(mask, a.add(j * g.a_col + k)));
                for (i, row) in sums.iter_mut().enumerate() {
                    let wv = _mm512_maskz_loadu_ps(mask, w.add(i * g.w_row + k));
                    for (sum, &v) in row.iter_mut().zip(&av) {
                        *sum = _mm512_fmadd_ps(wv, v, *sum);
                    }
                }
            }
        }
        for (i, row) in sums.iter().enumerate() {
            for (j, &sum) in row.iter().enumerate() {
                if !piece.last {
                    *kept(i, j) = sum;
                    continue;
                }
                let p = out.add(i * g.out_row + j);
                let total = _mm512_reduce_add_ps(sum);
                *p = if g.overwrite { total } else { *p + total };
            }
        }
    }
}
