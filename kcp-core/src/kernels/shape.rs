//! [`Gemm`]: the shape of one small matrix product, and its portable loops.

use super::{axpy, Isa, Real};
use crate::tuning::{PREFETCH_MIN_LEN, QUADS_MAX_PACKED, QUADS_MIN_REPEATS, STREAM_MAX_LEN};

/// The operand of a product whose next row is swept into L2 ([`Gemm::sweep`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Swept {
    A,
    W,
}

/// The shape of a small matrix product, the register-blocked form of a mode product:
/// `out[m * out_row + q] += sum_{k2, k} w[m * w_row + k * w_col + k2 * w_outer] *
/// a[k * a_row + k2 * a_outer + q * a_col]` for `m < rows`, `k2 < outer`, `k < depth`,
/// `q < len` (q runs over contiguous memory in `out`, and in `a` when `a_col` is 1). The sum
/// runs over two indices where they cannot be one (`outer` = 1: one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gemm {
    /// Rows of `out` (a free index of the weight that `a` lacks).
    pub rows: usize,
    /// The summed index (the inner one of two).
    pub depth: usize,
    /// The contiguous run shared by `out` and `a`.
    pub len: usize,
    /// Stride of `out` per row.
    pub out_row: usize,
    /// Stride of `a` per step of the summed index.
    pub a_row: usize,
    /// Stride of `a` per column: 1, or a transposed `a` that the kernel first packs (at most
    /// [`Gemm::PACK`] elements).
    pub a_col: usize,
    /// Stride of `w` per row.
    pub w_row: usize,
    /// Stride of `w` per step of the summed index.
    pub w_col: usize,
    /// The outer summed index: the sum runs over `outer` blocks of `depth` steps.
    pub outer: usize,
    /// Stride of `a` per step of the outer summed index.
    pub a_outer: usize,
    /// Stride of `w` per step of the outer summed index.
    pub w_outer: usize,
    /// Whether the product overwrites the rows of `out` instead of adding to them.
    pub overwrite: bool,
    /// Where `a` or `w` is a row of x and the batch goes on after it (its slice reaches on):
    /// the distance to the same product in the next row (the input size N), whose slab the
    /// micro-kernel then streams into L2 while it computes this one (`Gemm::sweep`); 0 for
    /// none.
    pub stream: usize,
    /// How often the product is done, each time at other offsets: the loop around it that
    /// would otherwise be as many calls.
    pub repeat: Repeat,
    /// The register block of the AVX-512 path (the lowering picks it, [`Block::for_shape`]).
    pub block: Block,
}

/// A loop around a product that the kernel runs inside one call: `count` products, the
/// `k`-th at `k * out`, `k * a` and `k * w` further on in its three operands. The products run
/// in order, so that a repeat whose `out` stride is 0 sums them (each one adds to `out`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repeat {
    /// How many products.
    pub count: usize,
    /// Stride of `out` per product.
    pub out: usize,
    /// Stride of `a` per product.
    pub a: usize,
    /// Stride of `w` per product.
    pub w: usize,
}

impl Repeat {
    /// One product.
    pub const ONCE: Repeat = Repeat { count: 1, out: 0, a: 0, w: 0 };

    /// The offsets into `out`, `a` and `w` of each product, in order.
    #[inline(always)]
    pub(super) fn offsets(self) -> impl Iterator<Item = [usize; 3]> {
        (0..self.count).map(move |k| [k * self.out, k * self.a, k * self.w])
    }
}

/// The register block of the AVX-512 micro-kernel: `rows` rows of `out` by `vectors` vectors
/// of 16 floats, `rows * vectors` accumulators (at most [`Block::ACCUMULATORS`] of the 32
/// registers; the rest hold a's vectors and w's broadcast). Any value is sound: the kernel
/// runs the nearest block it has ([`Block::clamped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Block {
    /// Rows of `out` per block.
    pub rows: usize,
    /// 16-float vectors per row of the block.
    pub vectors: usize,
}

impl Block {
    /// The most accumulators a block keeps in registers.
    pub const ACCUMULATORS: usize = 16;
    /// The most vectors per row of a block.
    pub const MAX_VECTORS: usize = 4;

    /// The block for a product of `rows` rows of `len` floats: as many vectors as the row
    /// fills (up to four: a, then, stays one load per vector per summed index, and each
    /// broadcast of w feeds four FMAs), and as many rows as the accumulators allow, so that
    /// short rows (a product of 18 floats: two vectors, the second masked) and narrow ones
    /// (16 floats: one vector, sixteen rows) keep as many FMA chains in flight as long ones.
    pub fn for_shape(rows: usize, len: usize) -> Block {
        let vectors = len.div_ceil(16).clamp(1, Block::MAX_VECTORS);
        Block { rows: rows.clamp(1, Block::ACCUMULATORS / vectors), vectors }.clamped()
    }

    /// The block the kernel runs for this one: vectors in 1..=4, rows in 1..=16 / vectors.
    pub fn clamped(self) -> Block {
        let vectors = self.vectors.clamp(1, Block::MAX_VECTORS);
        Block { rows: self.rows.clamp(1, Block::ACCUMULATORS / vectors), vectors }
    }
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.rows, 16 * self.vectors)
    }
}

/// How a SIMD path's micro-kernel runs a called product. It follows from the product's shape
/// alone ([`Gemm::route`]), which the lowering fixes: the kernels dispatch on it, and a loop
/// nest prints it, so what a nest says is what runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// Register blocks of dot products along the sum, both operands contiguous along it: the
    /// product as [`Gemm::dots`] recasts it.
    Dots(Gemm),
    /// The repeats block by block: each register block over every product in turn (short
    /// products repeated inside the call).
    Interleaved(Blocks),
    /// Each product on its own, `a` first packed into contiguous rows where it is transposed.
    Products {
        /// Whether `a` is packed first.
        packed: bool,
        /// The register blocks.
        blocks: Blocks,
    },
    /// Products exactly 4 floats wide, repeated over the same `w`, on the AVX-512 path: four
    /// rows to a 16-float vector (its lanes 4i..4i+3 the columns of row i), `w` packed once
    /// per call with each value four times.
    Quads,
    /// The portable loops: a transposed `a` larger than [`Gemm::PACK`].
    Portable,
}

/// The register blocks a route runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Blocks {
    /// The AVX-512 blocks, of this shape ([`Block::clamped`]).
    Avx512(Block),
    /// The AVX2 blocks of 8-float vectors (on the AVX-512 path too, for products of at most
    /// [`Gemm::NARROW`] floats a row, which a 16-float vector would half fill).
    Avx2,
    /// The AVX2 128-bit blocks of 4 columns, for rows of 4 to 7 floats.
    Narrow,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Dots(_) => f.write_str("dots"),
            Route::Interleaved(blocks) => write!(f, "interleaved, {blocks}"),
            Route::Products { packed: true, blocks } => write!(f, "packed, {blocks}"),
            Route::Products { packed: false, blocks } => write!(f, "{blocks}"),
            Route::Quads => f.write_str("4 rows to a vector, w packed"),
            Route::Portable => f.write_str("portable loops"),
        }
    }
}

impl std::fmt::Display for Blocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocks::Avx512(block) => write!(f, "block {block}"),
            Blocks::Avx2 => f.write_str("8-float blocks"),
            Blocks::Narrow => f.write_str("4-float blocks"),
        }
    }
}

impl Gemm {
    /// How the micro-kernel of `isa` runs this product (`None` on the portable path, which has
    /// no micro-kernel): dots where both operands run along the sum and it is long, the repeats
    /// interleaved where they are short products, otherwise each product on its own, packed
    /// first where `a` is transposed, in the blocks its row length suits.
    pub fn route(&self, isa: Isa) -> Option<Route> {
        let (interleave_from, blocks) = match isa {
            Isa::Portable => return None,
            Isa::Avx2 => (8, if (4..8).contains(&self.len) { Blocks::Narrow } else { Blocks::Avx2 }),
            Isa::Avx512 => {
                let blocks = match self.len {
                    len if len > Gemm::NARROW => Blocks::Avx512(self.block.clamped()),
                    4..=7 => Blocks::Narrow,
                    _ => Blocks::Avx2,
                };
                (Gemm::NARROW + 1, blocks)
            }
        };
        if let Some(dots) = self.dots() {
            return Some(Route::Dots(dots));
        }
        if self.interleaves(interleave_from..PREFETCH_MIN_LEN) {
            return Some(Route::Interleaved(blocks));
        }
        if isa == Isa::Avx512 && self.quads() {
            return Some(Route::Quads);
        }
        if self.a_col != 1 && self.outer.saturating_mul(self.depth).saturating_mul(self.len) > Gemm::PACK {
            return Some(Route::Portable);
        }
        Some(Route::Products { packed: self.a_col != 1, blocks })
    }

    /// The most elements of a transposed `a` (`outer * depth * len`) that the micro-kernel packs.
    pub const PACK: usize = 1024;

    /// Whether the AVX-512 path runs the product four rows to a vector ([`Route::Quads`]):
    /// rows of exactly 4 floats, `a` contiguous along them, every repeat over the same `w`, at
    /// least [`QUADS_MIN_REPEATS`] of them (the packing of `w`, once per call, is then a small
    /// part of the work), and `w` packed within [`QUADS_MAX_PACKED`] floats (in L1).
    pub(crate) fn quads(&self) -> bool {
        let packed = self.rows.div_ceil(4).saturating_mul(16).saturating_mul(self.depth).saturating_mul(self.outer);
        self.len == 4
            && self.a_col == 1
            && self.rows >= 4
            && self.stream == 0
            && self.repeat.w == 0
            && self.repeat.count >= QUADS_MIN_REPEATS
            && packed <= QUADS_MAX_PACKED
    }
    /// The shortest sum over which a product whose operands are both contiguous along it (a
    /// transposed `a` with `a_row` = 1, and `w_col` = 1: rows of dots, as a weight's gradient
    /// is) runs as register blocks of dots, vectorised along the sum, instead of packing `a`.
    pub const DOTS_MIN_DEPTH: usize = 32;
    /// The fewest rows with which such a product whose transposed `a` fits [`Gemm::PACK`] still
    /// runs packed: packing is then a small part of its work (one element per `rows` MACs) and
    /// its rows fill the register blocks (the UCF11 layer's last step, 64 rows of sums of 18,
    /// ran 5-18% slower per layer as dots).
    pub const DOTS_MAX_ROWS: usize = 16;
    /// The widest products (`len`) that run on 8-float vectors on the AVX-512 path too (and
    /// ignore [`Gemm::block`]): a 16-float vector would be half idle.
    pub const NARROW: usize = 8;

    /// The plain row-major product `out [rows, len] = w [rows, depth] * a [depth, len]`, all
    /// three contiguous, overwriting `out`, streaming nothing.
    pub fn row_major(rows: usize, depth: usize, len: usize) -> Gemm {
        Gemm {
            rows,
            depth,
            len,
            out_row: len,
            a_row: len,
            a_col: 1,
            w_row: depth,
            w_col: 1,
            outer: 1,
            a_outer: 0,
            w_outer: 0,
            overwrite: true,
            stream: 0,
            repeat: Repeat::ONCE,
            block: Block::for_shape(rows, len),
        }
    }

    /// The same product, added to `out` instead of overwriting it.
    pub fn adding(self) -> Gemm {
        Gemm { overwrite: false, ..self }
    }

    /// The multiply-adds it does.
    pub fn macs(&self) -> usize {
        self.rows
            .saturating_mul(self.outer)
            .saturating_mul(self.depth)
            .saturating_mul(self.len)
            .saturating_mul(self.repeat.count)
    }

    /// Whether the product has no multiply-add to do (a dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.rows == 0 || self.depth == 0 || self.len == 0 || self.outer == 0 || self.repeat.count == 0
    }

    /// One of the products of [`Gemm::repeat`].
    pub(super) fn once(&self) -> Gemm {
        Gemm { repeat: Repeat::ONCE, ..*self }
    }

    /// The operand whose next row's slab the micro-kernels sweep into L2 while they compute
    /// this product (`a` of `a_len` elements, `w` of `w_len`), and the slab's length: a short
    /// row of x with a next row there, whose slab the operand's slice reaches (short rows
    /// stream slowly from DRAM: the hardware prefetcher does not follow them). x is `a` where
    /// it supplies the columns, `w` where it supplies the rows (a product whose columns run
    /// over a rank held by a pre-product); `a` is asked first.
    pub(super) fn sweep(&self, a_len: usize, w_len: usize) -> Option<(Swept, usize)> {
        if self.stream == 0 || self.outer != 1 || self.len > STREAM_MAX_LEN {
            return None;
        }
        let reaches = |slab: usize, len: usize| self.stream.checked_add(slab).is_some_and(|end| len >= end);
        let a_slab = self.depth.saturating_mul(self.a_row);
        let w_slab = self.depth.saturating_mul(self.w_col).max(self.rows.saturating_mul(self.w_row));
        if reaches(a_slab, a_len) {
            Some((Swept::A, a_slab))
        } else if reaches(w_slab, w_len) {
            Some((Swept::W, w_slab))
        } else {
            None
        }
    }

    /// The product as the micro-kernels run it in blocks of dots (see
    /// [`Gemm::DOTS_MIN_DEPTH`] and [`Gemm::DOTS_MAX_ROWS`]), if they do: both operands
    /// contiguous along the sum, and a repeat that adds into the same `out` folded into the
    /// outer sum (a weight's gradient summed over a mode that is not contiguous: many short
    /// dots become a few long ones).
    pub fn dots(&self) -> Option<Gemm> {
        if self.a_col == 1 || self.a_row != 1 || self.w_col != 1 {
            return None;
        }
        let r = self.repeat;
        let g = if self.outer == 1 && r.count > 1 && r.out == 0 && !self.overwrite {
            Gemm { outer: r.count, a_outer: r.a, w_outer: r.w, repeat: Repeat::ONCE, ..*self }
        } else {
            *self
        };
        let long = g.depth.saturating_mul(g.outer) >= Gemm::DOTS_MIN_DEPTH;
        let packs = g.len.saturating_mul(g.depth).saturating_mul(g.outer) <= Gemm::PACK;
        (long && (g.rows < Gemm::DOTS_MAX_ROWS || !packs)).then_some(g)
    }

    /// Whether a kernel may run the repeats block by block, each register block over every
    /// product in turn (dispatched once for all of them): short products (`len` in
    /// `lens`, too short to prefetch or stream), contiguous in `a`, whose outputs are disjoint
    /// or the same, so that the order in which blocks are written does not matter. Their fixed
    /// cost per product would otherwise weigh as much as their FMAs.
    pub(super) fn interleaves(&self, lens: std::ops::Range<usize>) -> bool {
        let r = self.repeat;
        let extent = self.out_row.saturating_mul(self.rows.saturating_sub(1)).saturating_add(self.len);
        r.count > 1
            && lens.contains(&self.len)
            && self.a_col == 1
            && self.stream == 0
            && (r.out == 0 || r.out >= extent)
    }

    /// The products of [`Gemm::repeat`] on operands of `a_len` and `w_len` elements, in order:
    /// the offsets into `out`, `a` and `w`, and the product (which streams the next row only
    /// where the swept operand is new: a repeat that reads the same slab again has it swept
    /// already).
    #[inline(always)]
    pub(super) fn products(&self, a_len: usize, w_len: usize) -> impl Iterator<Item = ([usize; 3], Gemm)> {
        let moves = match self.sweep(a_len, w_len) {
            Some((Swept::A, _)) => self.repeat.a != 0,
            Some((Swept::W, _)) => self.repeat.w != 0,
            None => false,
        };
        let (first, again) = (self.once(), Gemm { stream: if moves { self.stream } else { 0 }, ..self.once() });
        self.repeat.offsets().enumerate().map(move |(k, at)| (at, if k == 0 { first } else { again }))
    }

    /// The lengths `out`, `a` and `w` must at least have; `None` if one overflows `usize`.
    pub(crate) fn extents(&self) -> Option<[usize; 3]> {
        let [out, a, w] = self.once().extents_once()?;
        let r = self.repeat;
        if r.count == 0 {
            return Some([0; 3]);
        }
        // Each extent that is not empty grows by its stride per further product.
        let grow = |extent: usize, stride: usize| {
            if extent == 0 {
                Some(0)
            } else {
                stride.checked_mul(r.count - 1)?.checked_add(extent)
            }
        };
        Some([grow(out, r.out)?, grow(a, r.a)?, grow(w, r.w)?])
    }

    /// [`Gemm::extents`] of one product.
    fn extents_once(&self) -> Option<[usize; 3]> {
        if self.rows == 0 || self.len == 0 {
            return Some([0; 3]);
        }
        // `last + sum of stride * (extent - 1)`, checked.
        let term = |stride: usize, extent: usize| stride.checked_mul(extent - 1);
        let out = term(self.out_row, self.rows)?.checked_add(self.len)?;
        if self.depth == 0 || self.outer == 0 {
            return Some([out, 0, 0]);
        }
        let span = |[s0, s1, s2]: [(usize, usize); 3]| {
            term(s0.0, s0.1)?.checked_add(term(s1.0, s1.1)?)?.checked_add(term(s2.0, s2.1)?)?.checked_add(1)
        };
        let a = span([(self.a_row, self.depth), (self.a_outer, self.outer), (self.a_col, self.len)])?;
        let w = span([(self.w_row, self.rows), (self.w_col, self.depth), (self.w_outer, self.outer)])?;
        Some([out, a, w])
    }

    /// Run `f` on `a` packed contiguous (`[outer][depth][len]`) with the product that reads it
    /// so, for a transposed `a` (`a_col` > 1) of at most [`Gemm::PACK`] elements; `None` for
    /// one larger (the caller runs the portable loops). One product (not its repeat).
    #[inline(always)]
    pub(super) fn with_packed_a<R>(&self, a: &[f32], f: impl FnOnce(&[f32], Gemm) -> R) -> Option<R> {
        let steps = self.outer.saturating_mul(self.depth);
        let len = steps.checked_mul(self.len).filter(|&n| n <= Gemm::PACK)?;
        // Only the `len` elements written are read: no need to zero the rest (zeroing 4 KiB
        // costs as much as a small product).
        let mut packed = [std::mem::MaybeUninit::<f32>::uninit(); Gemm::PACK];
        for k2 in 0..self.outer {
            for k in 0..self.depth {
                let (to, from) = ((k2 * self.depth + k) * self.len, k * self.a_row + k2 * self.a_outer);
                for (q, slot) in packed[to..to + self.len].iter_mut().enumerate() {
                    slot.write(a[from + q * self.a_col]);
                }
            }
        }
        // SAFETY: the loops above wrote each of the first `len` = outer * depth * len elements.
        let packed = unsafe { std::slice::from_raw_parts(packed.as_ptr().cast::<f32>(), len) };
        // `stream` stays: `w` may be the row of x (a sweep of the packed `a` stays inside it).
        let contiguous = Gemm { a_row: self.len, a_outer: self.depth * self.len, a_col: 1, ..self.once() };
        Some(f(packed, contiguous))
    }

    /// The offsets in `a` and in `w` (before the row's) of each step of the sum, in order.
    #[inline(always)]
    pub(super) fn sum(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.outer).flat_map(move |k2| {
            (0..self.depth).map(move |k| (k * self.a_row + k2 * self.a_outer, k * self.w_col + k2 * self.w_outer))
        })
    }

    /// The portable form: one axpy per (row, summed index), in that order, product after
    /// product.
    #[inline(always)]
    pub(super) fn run_portable<T: Real>(&self, out: &mut [T], a: &[T], w: &[T]) {
        // (An operand the product does not read may be shorter than its offsets.)
        for ([o, ia, iw], once) in self.products(a.len(), w.len()) {
            let (a, w) = (a.get(ia..).unwrap_or_default(), w.get(iw..).unwrap_or_default());
            once.run_portable_once(out.get_mut(o..).unwrap_or_default(), a, w);
        }
    }

    #[inline(always)]
    fn run_portable_once<T: Real>(&self, out: &mut [T], a: &[T], w: &[T]) {
        if self.len == 0 {
            return;
        }
        for m in 0..self.rows {
            let row = &mut out[m * self.out_row..][..self.len];
            if self.overwrite {
                row.fill(T::ZERO);
            }
            for (ak, wk) in self.sum() {
                let (a, wv) = (&a[ak..], w[m * self.w_row + wk]);
                if self.a_col == 1 {
                    axpy(row, a, wv);
                } else {
                    for (q, o) in row.iter_mut().enumerate() {
                        *o += wv * a[q * self.a_col];
                    }
                }
            }
        }
    }
}
