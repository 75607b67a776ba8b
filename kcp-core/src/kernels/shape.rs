//! [`Gemm`]: the shape of one small matrix product, and its portable loops.

use super::{axpy, Real};

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
    /// Where `a` is a row of x and the batch goes on after it (the slice of `a` reaches on):
    /// the distance to the same product in the next row (the input size N), whose slab the
    /// micro-kernel then streams into L2 while it computes this one; 0 for none.
    pub stream: usize,
}

impl Gemm {
    /// The most elements of a transposed `a` (`outer * depth * len`) that the micro-kernel packs.
    pub const PACK: usize = 1024;

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
        }
    }

    /// The multiply-adds it does.
    pub fn macs(&self) -> usize {
        self.rows.saturating_mul(self.outer).saturating_mul(self.depth).saturating_mul(self.len)
    }

    /// Whether the product has no multiply-add to do (a dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.rows == 0 || self.depth == 0 || self.len == 0 || self.outer == 0
    }

    /// The lengths `out`, `a` and `w` must at least have; `None` if one overflows `usize`.
    pub(super) fn extents(&self) -> Option<[usize; 3]> {
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

    /// The offsets in `a` and in `w` (before the row's) of each step of the sum, in order.
    #[inline(always)]
    pub(super) fn sum(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.outer).flat_map(move |k2| {
            (0..self.depth).map(move |k| (k * self.a_row + k2 * self.a_outer, k * self.w_col + k2 * self.w_outer))
        })
    }

    /// The portable form: one axpy per (row, summed index), in that order.
    #[inline(always)]
    pub(super) fn run_portable<T: Real>(&self, out: &mut [T], a: &[T], w: &[T]) {
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
