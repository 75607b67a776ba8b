//! ALS compression recovers exactly low-rank KCP weights, and reports its error truthfully.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use kcp::compress::{compress, FitOptions};
use kcp::Weights;

fn relative(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let norm: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (diff / norm).sqrt()
}

fn shapes(n: &[usize], m: &[usize], r: usize) -> Vec<[usize; 3]> {
    n.iter().zip(m).map(|(&n, &m)| [r, m, n]).collect()
}

#[test]
fn recovers_an_exactly_rank_r_weight() {
    for (n, m, r, seed) in [
        (vec![6, 5, 4], vec![3, 4, 2], 3, 1),
        (vec![8, 7], vec![5, 6], 2, 2),
        (vec![4, 1, 3, 2], vec![2, 3, 1, 4], 2, 3),
    ] {
        let truth = common::kcp_random(&shapes(&n, &m, r), None, seed);
        let w = truth.dense(&shapes(&n, &m, r));
        let mut sweeps = Vec::new();
        let fit = compress(&w, &n, &m, r, &FitOptions { iters: 500, seed: 7, tol: 1e-12 }, |k, e| sweeps.push((k, e)))
            .unwrap();
        assert!(fit.relative_error < 1e-4, "{n:?} {m:?} r{r}: reported error {}", fit.relative_error);
        let rebuilt = fit.weights.dense(&shapes(&n, &m, r));
        let actual = relative(&rebuilt, &w);
        assert!(actual < 1e-4, "{n:?} {m:?} r{r}: actual error {actual}");
        assert!((actual - fit.relative_error).abs() < 1e-4, "reported {} vs actual {actual}", fit.relative_error);
        assert_eq!(sweeps.len(), fit.iterations);
    }
}

#[test]
fn reports_the_error_of_a_lower_rank_fit() {
    let (n, m) = (vec![6, 5], vec![4, 3]);
    let truth = common::kcp_random(&shapes(&n, &m, 4), None, 5);
    let w = truth.dense(&shapes(&n, &m, 4));
    let fit = compress(&w, &n, &m, 1, &FitOptions::default(), |_, _| {}).unwrap();
    let actual = relative(&fit.weights.dense(&shapes(&n, &m, 1)), &w);
    assert!(actual > 0.05, "a rank-4 weight cannot fit rank 1 well: {actual}");
    assert!((actual - fit.relative_error).abs() < 1e-4, "reported {} vs actual {actual}", fit.relative_error);
    // Deterministic: the same seed gives the same factors.
    let again = compress(&w, &n, &m, 1, &FitOptions::default(), |_, _| {}).unwrap();
    assert_eq!(again.weights, fit.weights);
}

/// A zero weight has an exact zero factorisation; a weight near f32's largest value fits
/// without overflow; the error reported is that of the factors written, even after no sweep;
/// a rank above the largest useful one is an error, not hours of work.
#[test]
fn degenerate_weights_and_ranks() {
    let (n, m) = (vec![6, 5], vec![4, 3]);
    let zero = compress(&[0.0; 360], &n, &m, 2, &FitOptions::default(), |_, _| {}).unwrap();
    assert_eq!(zero.relative_error, 0.0);
    assert!(zero.weights.cores.iter().flatten().all(|&v| v == 0.0));

    let truth = common::kcp_random(&shapes(&n, &m, 2), None, 9);
    let w = truth.dense(&shapes(&n, &m, 2));
    let peak = w.iter().fold(0.0f32, |p, v| p.max(v.abs()));
    let huge: Vec<f32> = w.iter().map(|v| v / peak * 3e38).collect();
    let fit = compress(&huge, &n, &m, 2, &FitOptions { iters: 300, seed: 1, tol: 1e-12 }, |_, _| {}).unwrap();
    assert!(fit.weights.cores.iter().flatten().all(|v| v.is_finite()));
    // Scaled back down by the square root of the scale per factor, it reconstructs w.
    let down = (3e38 / f64::from(peak)).sqrt();
    let factors = fit.weights.cores.iter().map(|f| f.iter().map(|&v| (v as f64 / down) as f32).collect()).collect();
    let rebuilt = Weights { cores: factors, bias: None }.dense(&shapes(&n, &m, 2));
    let actual = relative(&rebuilt, &w);
    assert!(actual < 1e-3 && fit.relative_error < 1e-3, "actual {actual}, reported {}", fit.relative_error);

    let none = compress(&w, &n, &m, 2, &FitOptions { iters: 0, ..FitOptions::default() }, |_, _| {}).unwrap();
    let actual = relative(&none.weights.dense(&shapes(&n, &m, 2)), &w);
    assert!(actual > 0.5, "random factors fit badly: {actual}");
    assert!((actual - none.relative_error).abs() < 1e-4, "reported {} vs actual {actual}", none.relative_error);

    let error = compress(&w, &n, &m, 8000, &FitOptions::default(), |_, _| {}).unwrap_err();
    assert_eq!(
        error.to_string(),
        "rank 8000 is more than 15, the rank that fits every weight of these shapes exactly (the largest useful rank)"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..proptest::prelude::ProptestConfig::default() })]

    /// Over random shapes, ranks, sweeps and scales from 0 to near f32's largest value: the
    /// factors are finite, and the error reported is the error of the factors returned.
    #[test]
    fn compress_reports_the_error_of_what_it_returns(
        dims in proptest::collection::vec((1usize..4, 1usize..4), 1..4),
        rank in 1usize..4,
        iters in 0usize..6,
        scale in proptest::prop_oneof![proptest::strategy::Just(0.0f64), 1e-30f64..1e3, 1e30f64..3e38],
        seed in 0u64..1000,
    ) {
        let (n, m): (Vec<usize>, Vec<usize>) = dims.into_iter().unzip();
        let size: usize = n.iter().product::<usize>() * m.iter().product::<usize>();
        let w: Vec<f32> = kcp::Rng::new(seed).vec(size).iter().map(|v| (v * scale) as f32).collect();
        match compress(&w, &n, &m, rank, &FitOptions { iters, seed, tol: 1e-12 }, |_, _| {}) {
            Ok(fit) => {
                proptest::prop_assert!(fit.weights.cores.iter().flatten().all(|v| v.is_finite()));
                if scale == 0.0 {
                    proptest::prop_assert_eq!(fit.relative_error, 0.0);
                } else if scale < 1e30 {
                    // Rebuilt in f32 where that cannot overflow.
                    let rebuilt = fit.weights.dense(&shapes(&n, &m, rank));
                    let actual = relative(&rebuilt, &w);
                    proptest::prop_assert!((actual - fit.relative_error).abs() < 1e-3, "reported {} vs actual {}", fit.relative_error, actual);
                }
            }
            Err(e) => proptest::prop_assert!(e.to_string().starts_with("rank "), "{}", e),
        }
    }
}

/// The dense weight of CP cores (`out.d` `[R, m_d]`, then `in.d` `[R, n_d]`), written here.
fn cp_dense(cores: &[Vec<f32>], n: &[usize], m: &[usize], rank: usize) -> Vec<f32> {
    let (big_n, big_m, d) = (n.iter().product::<usize>(), m.iter().product::<usize>(), n.len());
    let digits = |mut v: usize, shape: &[usize]| {
        let mut out = vec![0; shape.len()];
        for k in (0..shape.len()).rev() {
            out[k] = v % shape[k];
            v /= shape[k];
        }
        out
    };
    let mut w = vec![0.0f32; big_m * big_n];
    for row in 0..big_m {
        let i = digits(row, m);
        for col in 0..big_n {
            let j = digits(col, n);
            let mut sum = 0.0f64;
            for r in 0..rank {
                let mut p = 1.0f64;
                for k in 0..d {
                    p *= f64::from(cores[k][r * m[k] + i[k]]) * f64::from(cores[d + k][r * n[k] + j[k]]);
                }
                sum += p;
            }
            w[row * big_n + col] = sum as f32;
        }
    }
    w
}

#[test]
fn cp_recovers_an_exactly_rank_r_weight_and_reports_a_lower_rank_fit() {
    use kcp::compress::compress_cp;
    use kcp::Rng;
    for (n, m, r) in [(vec![6, 5, 4], vec![3, 4, 2], 3), (vec![8, 7], vec![5, 6], 2), (vec![4, 1, 3], vec![2, 3, 1], 2)]
    {
        let mut rng = Rng::new(11);
        let truth: Vec<Vec<f32>> = m.iter().chain(&n).map(|&s| rng.vec_f32(r * s, 1.0)).collect();
        let w = cp_dense(&truth, &n, &m, r);
        let fit = compress_cp(&w, &n, &m, r, &FitOptions { iters: 500, seed: 7, tol: 1e-12 }, |_, _| {}).unwrap();
        let shapes: Vec<usize> = fit.weights.cores.iter().map(Vec::len).collect();
        assert_eq!(shapes, m.iter().chain(&n).map(|&s| r * s).collect::<Vec<_>>());
        let actual = relative(&cp_dense(&fit.weights.cores, &n, &m, r), &w);
        assert!(actual < 1e-4 && fit.relative_error < 1e-4, "{n:?} {m:?} r{r}: {actual} {}", fit.relative_error);
        // Rank 1 of a rank-r weight: a true, larger error, reported as it is.
        let low = compress_cp(&w, &n, &m, 1, &FitOptions::default(), |_, _| {}).unwrap();
        let actual = relative(&cp_dense(&low.weights.cores, &n, &m, 1), &w);
        assert!(actual > 1e-3 && (actual - low.relative_error).abs() < 1e-4, "{actual} vs {}", low.relative_error);
    }
    assert!(compress_cp(&[0.0; 12], &[4, 3], &[1, 1], 13, &FitOptions::default(), |_, _| {}).is_err());
}
