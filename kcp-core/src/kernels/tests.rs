use super::*;
use crate::Rng;

/// The f32 product on every path this CPU has (the micro-kernels) against the portable f64
/// one, over row counts around the blocks of four, eight and sixteen, runs around the vectors
/// of 8 and 16 (including masked tails), padded strides, sums over one index or two,
/// transposed `a` (packed, or too large to pack), adding to `out` or overwriting it (the
/// padding between rows untouched either way), repeated products, every register block of
/// the AVX-512 path, and every dimension 0 on every path (slices exactly as long as the
/// extents, empty where those are 0: no kernel may form a pointer past them).
#[test]
fn gemm_matches_the_portable_product() {
    for isa in Supported::available() {
        products_match_on(isa);
    }
}

/// The f32 product `g` on path `isa` against the portable f64 one, on random operands and a
/// random starting `out` (slices exactly as long as the extents), to within `tolerance`.
fn matches_portable(isa: Supported, g: Gemm, next: &mut impl FnMut() -> f32, tolerance: f64) {
    let [o, ia, iw] = g.extents().unwrap();
    let a: Vec<f32> = (0..ia).map(|_| next()).collect();
    let w: Vec<f32> = (0..iw).map(|_| next()).collect();
    let start: Vec<f32> = (0..o).map(|_| next()).collect();
    let mut out = start.clone();
    gemm_on(isa, &mut out, &a, &w, g);
    let wide = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
    let mut want = wide(&start);
    gemm(&mut want, &wide(&a), &wide(&w), g);
    for (k, (&got, &want)) in out.iter().zip(&want).enumerate() {
        assert!((f64::from(got) - want).abs() < tolerance, "{isa}: {g:?} at {k}: {got} vs {want}");
    }
}

fn products_match_on(isa: Supported) {
    let mut rng = Rng::new(0x2545_f491_4f6c_dd1d);
    let mut next = move || rng.next_f64() as f32 / 2.0;
    let mut blocks = (0..).map(|k: usize| Block { rows: 1 + k % 17, vectors: 1 + k / 17 % 5 });
    for rows in (0..=9).chain([16, 17, 33]) {
        for (depth, outer) in [(0, 1), (1, 0), (0, 0), (1, 1), (2, 1), (5, 1), (2, 3), (5, 2)] {
            let shapes = (0..=40).chain([63, 64, 65, 360]).flat_map(|l| [(l, false), (l, true)]);
            for ((len, transposed), overwrite) in shapes.flat_map(|s| [(s, false), (s, true)]) {
                let (a_row, a_col) = if transposed { (1, depth + 1) } else { (len + depth % 2, 1) };
                let a_outer = if transposed { a_col * len + 1 } else { depth * a_row + 1 };
                let out_row = len + rows % 3;
                // Every third product twice or three times over, one of them summed into the
                // same `out`; the block cycles through every shape (and some out of range).
                let repeat = match (len + rows) % 3 {
                    0 => Repeat::ONCE,
                    1 => Repeat { count: 2, out: 0, a: 3, w: 1 },
                    _ => Repeat { count: 3, out: rows * out_row + 1, a: 5, w: 2 },
                };
                let block = if len % 2 == 0 { blocks.next().unwrap() } else { Block::for_shape(rows, len) };
                let g = Gemm {
                    out_row,
                    a_row,
                    a_col,
                    w_row: outer * (depth + 2),
                    outer,
                    a_outer,
                    w_outer: depth + 2,
                    overwrite,
                    repeat,
                    block,
                    ..Gemm::row_major(rows, depth, len)
                };
                matches_portable(isa, g, &mut next, 1e-5);
            }
        }
    }
}

/// Products whose operands are both contiguous along the sum (a weight's gradient: rows of
/// dots), long enough to run as blocks of dots on every path, against the portable f64 product:
/// blocks of rows and columns and their remainders, sums around the vector widths (masked or
/// scalar tails), an outer sum, repeats that add into the same `out` (folded into the sum) or
/// into other rows, adding or overwriting, and sums long enough to run piece by piece (whole
/// outer steps, one or several to a piece, and inner sums cut into runs).
#[test]
fn dots_match_the_portable_product() {
    // (depth, outer): short and long sums, the last three run piece by piece on AVX-512.
    const SUMS: [(usize, usize); 11] =
        [(32, 1), (33, 1), (47, 1), (360, 1), (18, 2), (9, 4), (40, 3), (2, 1), (360, 8), (90, 41), (1201, 2)];
    let mut rng = Rng::new(0x0D07_5000);
    let mut next = move || rng.next_f64() as f32 / 2.0;
    for isa in Supported::available() {
        for rows in [1, 2, 3, 4, 5, 9, 17] {
            for len in [1, 2, 3, 4, 5, 7, 8, 9, 20] {
                for (depth, outer) in SUMS {
                    let repeats = [
                        Repeat::ONCE,
                        Repeat { count: 5, out: 0, a: 3, w: 2 },
                        Repeat { count: 2, out: rows * len + 3, a: 1, w: 4 },
                    ];
                    for (repeat, overwrite) in repeats.into_iter().flat_map(|r| [(r, false), (r, true)]) {
                        let g = Gemm {
                            out_row: len + 1,
                            a_row: 1,
                            a_col: outer * depth + 2,
                            w_row: outer * depth + 1,
                            w_col: 1,
                            outer,
                            a_outer: depth,
                            w_outer: depth,
                            overwrite,
                            repeat,
                            ..Gemm::row_major(rows, depth, len)
                        };
                        let folds = outer == 1 && repeat.out == 0 && repeat.count > 1 && !overwrite;
                        let sum = depth * outer * if folds { repeat.count } else { 1 };
                        // f32 sums of up to 18,450 terms of |x| < 1/4 (the portable path's one
                        // by one): their rounding grows with the sum.
                        matches_portable(isa, g, &mut next, 1e-4 * (sum as f64 / 360.0).max(1.0));
                        let dots =
                            sum >= Gemm::DOTS_MIN_DEPTH && (rows < Gemm::DOTS_MAX_ROWS || len * sum > Gemm::PACK);
                        assert_eq!(g.dots().is_some(), dots, "{g:?}");
                    }
                }
            }
        }
    }
}

/// The same product on operands placed at every offset within a 64-byte line gives the same
/// bits: no path may sum in an order that depends on where a buffer starts (the gradients of
/// a kept and a recomputed backward pass, or of one thread and two, are compared bit for bit).
#[test]
fn results_do_not_depend_on_where_operands_start() {
    let mut rng = Rng::new(0xA11C_0FF5);
    let mut next = move || rng.next_f64() as f32 - 0.5;
    // Blocks of dots (short and long sums, piece by piece) and a plain product.
    let dots = |rows, depth, outer| Gemm {
        a_row: 1,
        a_col: outer * depth,
        w_row: outer * depth,
        w_col: 1,
        outer,
        a_outer: depth,
        w_outer: depth,
        out_row: 20,
        ..Gemm::row_major(rows, depth, 20)
    };
    let shapes = [dots(4, 360, 8), dots(16, 2048, 1), dots(3, 90, 41), Gemm::row_major(16, 18, 40)];
    for isa in Supported::available() {
        for g in shapes {
            let [o, ia, iw] = g.extents().unwrap();
            let (a, w): (Vec<f32>, Vec<f32>) = ((0..ia).map(|_| next()).collect(), (0..iw).map(|_| next()).collect());
            let mut want = vec![0.0f32; o];
            gemm_on(isa, &mut want, &a, &w, g);
            for shift in 1..16 {
                let placed = |v: &[f32]| [vec![0.0; shift], v.to_vec()].concat();
                let (a2, w2) = (placed(&a), placed(&w));
                let mut got = vec![0.0f32; o];
                gemm_on(isa, &mut got, &a2[shift..], &w2[shift..], g);
                assert!(
                    got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{isa}: {g:?} moved {shift} floats"
                );
            }
        }
    }
}

/// A product that streams the next row of x (the slice of `a` going on past its extent, or
/// not far enough) computes the same as one that does not.
#[test]
fn streaming_the_next_row_changes_nothing() {
    for (rows, depth, len) in [(4, 20, 360), (5, 3, 18), (4, 8, 512), (2, 4, 513)] {
        let slab = depth * len;
        let a: Vec<f32> = (0..3 * slab).map(|v| (v % 17) as f32 - 8.0).collect();
        let w: Vec<f32> = (0..rows * depth).map(|v| (v % 5) as f32 - 2.0).collect();
        let plain = Gemm::row_major(rows, depth, len);
        for isa in Supported::available() {
            let mut want = vec![0.0f32; rows * len];
            gemm_on(isa, &mut want, &a, &w, plain);
            // The next row right after this one, further on, or cut short by the slice.
            for (stream, a_len) in [(slab, 2 * slab), (slab + 7, 3 * slab), (slab, 2 * slab - 1)] {
                let mut got = vec![f32::NAN; rows * len];
                gemm_on(isa, &mut got, &a[..a_len], &w, Gemm { stream, ..plain });
                assert_eq!(got, want, "{isa}: {rows}x{depth}x{len}, stream {stream}, a of {a_len}");
            }
        }
    }
}

/// The same where x supplies the rows (`w`, read with a stride along the sum) and a
/// pre-product the columns: the kernel sweeps `w`'s next row instead, product after product
/// of a repeat that steps through x (the UCF11 CP layer's big step, 8 x 18x400x36), and
/// the result does not change.
#[test]
fn streaming_the_next_row_of_w_changes_nothing() {
    for (rows, depth, len, count) in [(18, 40, 36, 3), (5, 7, 20, 1), (4, 20, 64, 2)] {
        // x's slab per product: `depth` steps of `rows` floats, `count` slabs per row of x.
        let (slab, n) = (depth * rows, depth * rows * count);
        let x: Vec<f32> = (0..3 * n).map(|v| (v % 13) as f32 - 6.0).collect();
        let t: Vec<f32> = (0..depth * len).map(|v| (v % 7) as f32 - 3.0).collect();
        let plain = Gemm {
            out_row: len,
            w_row: 1,
            w_col: rows,
            repeat: Repeat { count, out: rows * len, a: 0, w: slab },
            ..Gemm::row_major(rows, depth, len)
        };
        let swept = Gemm { stream: n, ..plain }.sweep(t.len(), 2 * n);
        assert_eq!(swept, Some((super::shape::Swept::W, slab)), "{rows}x{depth}x{len}");
        for isa in Supported::available() {
            let mut want = vec![0.0f32; count * rows * len];
            gemm_on(isa, &mut want, &t, &x, plain);
            // The next row right after this one, and cut short by the slice.
            for x_len in [2 * n, 2 * n - 1, n + slab] {
                let mut got = vec![f32::NAN; count * rows * len];
                gemm_on(isa, &mut got, &t, &x[..x_len], Gemm { stream: n, ..plain });
                assert_eq!(got, want, "{isa}: {count} x {rows}x{depth}x{len}, x of {x_len}");
            }
        }
    }
}

/// The same where a row of x supplies many rows of one block of columns (`w` with its rows
/// contiguous along the sum, the tensor train's first UCF11 step: 3200 rows of 18 by 16
/// columns of a core, read transposed): each block of rows sweeps its own rows of the next
/// row of x, `a` packed or not, and the result does not change.
#[test]
fn sweeping_the_next_rows_of_w_changes_nothing() {
    for (rows, depth, len, transposed) in
        [(3200, 18, 16, true), (100, 18, 16, false), (37, 5, 12, true), (33, 9, 16, false)]
    {
        let n = rows * depth;
        let x: Vec<f32> = (0..3 * n).map(|v| (v % 11) as f32 - 5.0).collect();
        let core: Vec<f32> = (0..depth * len).map(|v| (v % 7) as f32 - 3.0).collect();
        let (a_row, a_col) = if transposed { (1, depth) } else { (len, 1) };
        let plain = Gemm { a_row, a_col, ..Gemm::row_major(rows, depth, len) };
        assert_eq!(Gemm { stream: n, ..plain }.sweep(core.len(), 2 * n).map(|s| s.0), Some(super::shape::Swept::W));
        for isa in Supported::available() {
            let mut want = vec![0.0f32; rows * len];
            gemm_on(isa, &mut want, &core, &x, plain);
            // The next row right after this one, and cut short by the slice.
            for x_len in [2 * n, 2 * n - 1, n + 1] {
                let mut got = vec![f32::NAN; rows * len];
                gemm_on(isa, &mut got, &core, &x[..x_len], Gemm { stream: n, ..plain });
                assert_eq!(got, want, "{isa}: {rows}x{depth}x{len}, transposed {transposed}, x of {x_len}");
            }
        }
    }
}

/// The tiled transpose against the definition, over sizes around and across the tiles.
#[test]
fn transpose_moves_every_element() {
    for rows in [0, 1, 3, 8, 9, 16, 17] {
        for cols in [0, 1, 7, 8, 12, 24, 64] {
            let from: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let mut to = vec![f32::NAN; rows * cols];
            transpose(&from, &mut to, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(to[c * rows + r], from[r * cols + c], "{rows}x{cols} at ({r}, {c})");
                }
            }
        }
    }
}

/// Strides whose extents overflow, or slices too short, never reach the unchecked kernel:
/// the portable form panics on its first out-of-range index instead.
#[test]
fn gemm_out_of_range_panics() {
    let g = Gemm { out_row: usize::MAX / 2 + 1, w_row: 1, overwrite: false, ..Gemm::row_major(3, 1, 8) };
    assert!(g.extents().is_none());
    assert!(std::panic::catch_unwind(|| gemm(&mut [0.0f32; 24], &[0.0; 8], &[0.0; 3], g)).is_err());
    let short = Gemm { out_row: 8, ..g };
    assert!(std::panic::catch_unwind(|| gemm(&mut [0.0f32; 23], &[0.0; 8], &[0.0; 3], short)).is_err());
}

/// A cap lowers the path, never raises it past what the CPU has (the rule `set_isa` and
/// `KCP_ISA` apply, checked for every CPU and cap without changing this process's path, which
/// other tests share); names round-trip.
#[test]
fn a_cap_lowers_the_path_and_names_round_trip() {
    for detected in Isa::ALL {
        assert_eq!(super::capped(None, detected), detected);
        for cap in Isa::ALL {
            assert_eq!(super::capped(Some(cap), detected), cap.min(detected), "cap {cap} on {detected}");
        }
    }
    for isa in Isa::ALL {
        assert_eq!(Isa::from_name(isa.name()), Some(isa));
    }
    assert_eq!(Isa::from_name("avx-512"), None);
    assert!(Isa::available().all(|isa| isa <= Isa::detected()));
    assert_eq!(Isa::available().last(), Some(Isa::detected()));
}

/// The routes of typical products, on each SIMD path: what the nests print and the kernels run.
#[test]
fn routes_follow_the_shape() {
    use super::{Blocks, Isa, Route};
    let wide = Gemm::row_major(4, 20, 360);
    assert_eq!(wide.route(Isa::Portable), None);
    assert_eq!(wide.route(Isa::Avx2), Some(Route::Products { packed: false, blocks: Blocks::Avx2 }));
    assert_eq!(
        wide.route(Isa::Avx512),
        Some(Route::Products { packed: false, blocks: Blocks::Avx512(wide.block.clamped()) })
    );
    // Rows of 4 to 7 floats: the 128-bit blocks on both paths.
    let narrow = Gemm::row_major(8, 5, 6);
    for isa in [Isa::Avx2, Isa::Avx512] {
        assert_eq!(narrow.route(isa), Some(Route::Products { packed: false, blocks: Blocks::Narrow }));
    }
    // A transposed a: packed, unless too large to pack.
    let transposed = Gemm { a_col: 20, a_row: 1, ..Gemm::row_major(4, 20, 18) };
    assert_eq!(transposed.route(Isa::Avx2), Some(Route::Products { packed: true, blocks: Blocks::Avx2 }));
    let huge = Gemm { a_col: 64, a_row: 1, w_col: 4, w_row: 1, ..Gemm::row_major(4, 64, 64) };
    assert_eq!(huge.route(Isa::Avx512), Some(Route::Portable));
    // Both operands along a long sum, few rows: dots.
    let dots = Gemm { a_col: 256, a_row: 1, w_col: 1, w_row: 256, ..Gemm::row_major(2, 256, 8) };
    assert!(matches!(dots.route(Isa::Avx512), Some(Route::Dots(_))));
    // Short products repeated inside one call: interleaved on AVX2 from 8 floats, on AVX-512
    // from 9 (8 floats run in the AVX2 blocks there).
    let repeated = |len| Gemm { repeat: Repeat { count: 8, out: 64, a: 64, w: 0 }, ..Gemm::row_major(2, 4, len) };
    assert!(matches!(repeated(8).route(Isa::Avx2), Some(Route::Interleaved(Blocks::Avx2))));
    assert!(matches!(repeated(8).route(Isa::Avx512), Some(Route::Products { .. })));
    assert!(matches!(repeated(12).route(Isa::Avx512), Some(Route::Interleaved(Blocks::Avx512(_)))));
    // Rows of exactly 4 floats over the same w, repeated (a tensor train's second UCF11 step):
    // four rows to a vector on AVX-512, the 128-bit blocks on AVX2; not when w moves.
    let quads = Gemm { repeat: Repeat { count: 160, out: 64, a: 320, w: 0 }, ..Gemm::row_major(16, 20, 4) };
    assert_eq!(quads.route(Isa::Avx512), Some(Route::Quads));
    assert_eq!(quads.route(Isa::Avx2), Some(Route::Products { packed: false, blocks: Blocks::Narrow }));
    let moving = Gemm { repeat: Repeat { w: 1, ..quads.repeat }, ..quads };
    assert_eq!(moving.route(Isa::Avx512), Some(Route::Products { packed: false, blocks: Blocks::Narrow }));
}

/// Products four floats wide run four rows to a vector on AVX-512 ([`super::Route::Quads`]),
/// against the portable f64 product: rows around the quads and register blocks (4, 16, and
/// the remainders), sums over one index or two, strided rows of `out`, `a` and `w`, repeats
/// into other rows or summed into the same `out`, adding or overwriting.
#[test]
fn quads_match_the_portable_product() {
    let mut rng = Rng::new(0x0004_4444);
    let mut next = move || rng.next_f64() as f32 / 2.0;
    let mut routed = 0;
    for rows in [4, 5, 7, 8, 12, 13, 16, 17, 31, 33] {
        for (depth, outer) in [(1, 1), (3, 1), (20, 4), (5, 2)] {
            for (count, into_same) in [(8, false), (9, true), (160, false)] {
                for overwrite in [false, true] {
                    let out_row = 4 + rows % 3;
                    let a_row = 4 + 12 * (depth % 2);
                    let a_outer = depth * a_row + 1;
                    let g = Gemm {
                        out_row,
                        a_row,
                        w_row: outer * depth * 2 + 1,
                        w_col: 2,
                        outer,
                        a_outer,
                        w_outer: depth * 2 + 1,
                        overwrite: overwrite && !into_same,
                        repeat: Repeat {
                            count,
                            out: if into_same { 0 } else { rows * out_row + 3 },
                            a: outer * a_outer + 5,
                            w: 0,
                        },
                        ..Gemm::row_major(rows, depth, 4)
                    };
                    let fits = rows.div_ceil(4) * 16 * depth * outer <= crate::tuning::QUADS_MAX_PACKED;
                    let quads = g.route(super::Isa::Avx512) == Some(super::Route::Quads);
                    assert_eq!(quads, fits, "{g:?}");
                    routed += usize::from(quads);
                    for isa in Supported::available() {
                        matches_portable(isa, g, &mut next, 1e-4);
                    }
                }
            }
        }
    }
    assert!(routed >= 200, "only {routed} products ran as quads on AVX-512");
}
