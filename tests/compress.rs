//! ALS compression recovers exactly low-rank KCP weights, and reports its error truthfully.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kcp::compress::{compress, Options};
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
        let truth = Weights::random(&shapes(&n, &m, r), None, seed);
        let w = truth.dense(&shapes(&n, &m, r));
        let mut sweeps = Vec::new();
        let fit = compress(&w, &n, &m, r, &Options { iters: 500, seed: 7, tol: 1e-12 }, |k, e| sweeps.push((k, e)));
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
    let truth = Weights::random(&shapes(&n, &m, 4), None, 5);
    let w = truth.dense(&shapes(&n, &m, 4));
    let fit = compress(&w, &n, &m, 1, &Options::default(), |_, _| {});
    let actual = relative(&fit.weights.dense(&shapes(&n, &m, 1)), &w);
    assert!(actual > 0.05, "a rank-4 weight cannot fit rank 1 well: {actual}");
    assert!((actual - fit.relative_error).abs() < 1e-4, "reported {} vs actual {actual}", fit.relative_error);
    // Deterministic: the same seed gives the same factors.
    let again = compress(&w, &n, &m, 1, &Options::default(), |_, _| {});
    assert_eq!(again.weights, fit.weights);
}
