//! `kcp::tune`: the enumeration of tensorizations against a brute force, the ranks against each
//! format's parameter formula (written here from docs/formats.md), the Pareto front, and a
//! whole small tuning.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use kcp::ir::network::{Format, Network};
use kcp::ir::Batch;
use kcp::tune::{
    factorizations, fitting_formats, front, tensorizations, tune, Candidate, Fit, Tensorization, TuneOptions, FORMATS,
};
use kcp::Threads;

/// Every ordered tuple of `modes` factors of at least 2 with product `n`.
fn ordered(n: usize, modes: usize) -> Vec<Vec<usize>> {
    if modes == 0 {
        return if n == 1 { vec![vec![]] } else { vec![] };
    }
    let mut out = Vec::new();
    for f in 2..=n {
        if n.is_multiple_of(f) {
            for mut rest in ordered(n / f, modes - 1) {
                rest.insert(0, f);
                out.push(rest);
            }
        }
    }
    out
}

/// The brute force: every pairing of an ordered factorization of n with one of m, as the set of
/// its pairs (pairs in any order are the same tensorization).
fn brute_force(n: usize, m: usize, modes: usize) -> BTreeSet<Vec<(usize, usize)>> {
    let mut found = BTreeSet::new();
    for a in ordered(n, modes) {
        for b in ordered(m, modes) {
            let mut pairs: Vec<(usize, usize)> = a.iter().copied().zip(b.iter().copied()).collect();
            pairs.sort_unstable();
            found.insert(pairs);
        }
    }
    found
}

#[test]
fn every_tensorization_is_found_once() {
    for n in [2, 6, 12, 16, 30, 36, 64, 72, 97] {
        for m in [2, 4, 8, 12, 18] {
            for modes in 1..=4 {
                let got = tensorizations(n, m, modes, None, None);
                let as_sets: Vec<Vec<(usize, usize)>> = got
                    .iter()
                    .map(|t| {
                        let mut pairs: Vec<(usize, usize)> =
                            t.in_shape.iter().copied().zip(t.out_shape.iter().copied()).collect();
                        pairs.sort_unstable();
                        pairs
                    })
                    .collect();
                let unique: BTreeSet<_> = as_sets.iter().cloned().collect();
                assert_eq!(unique.len(), as_sets.len(), "{n} x {m}, D {modes}: a tensorization found twice");
                assert_eq!(unique, brute_force(n, m, modes), "{n} x {m}, D {modes}");
                for t in &got {
                    assert_eq!((t.in_size(), t.out_size()), (n, m));
                    assert!(t.in_shape.iter().chain(&t.out_shape).all(|&d| d >= 2));
                }
            }
        }
    }
}

#[test]
fn a_fixed_side_keeps_its_order() {
    // in fixed [4, 3]: every ordered factorization of 12 into two outputs, paired in order.
    let got = tensorizations(12, 12, 2, Some(&[4, 3]), None);
    let outs: BTreeSet<Vec<usize>> = got.iter().map(|t| t.out_shape.clone()).collect();
    assert!(got.iter().all(|t| t.in_shape == [4, 3]));
    assert_eq!(outs, ordered(12, 2).into_iter().collect());
    assert_eq!(got.len(), outs.len());
    // Both fixed: that one.
    assert_eq!(tensorizations(12, 6, 2, Some(&[4, 3]), Some(&[3, 2])).len(), 1);
    // A fixed side of the wrong size or mode count: none.
    assert!(tensorizations(12, 6, 2, Some(&[5, 3]), None).is_empty());
    assert!(tensorizations(12, 6, 3, Some(&[4, 3]), None).is_empty());
    assert!(factorizations(97, 2).is_empty());
}

/// The parameters of a format on a tensorization, from docs/formats.md's core shapes.
fn formula(format: &Format, t: &Tensorization) -> u64 {
    let (n, m, d) = (&t.in_shape, &t.out_shape, t.in_shape.len());
    let nm = |k: usize| (n[k] * m[k]) as u64;
    match format {
        Format::Kcp { rank } => *rank as u64 * (0..d).map(nm).sum::<u64>(),
        Format::Cp { rank } => *rank as u64 * (0..d).map(|k| (n[k] + m[k]) as u64).sum::<u64>(),
        Format::Tt { ranks } => (0..d).map(|k| (ranks[k] * ranks[k + 1]) as u64 * nm(k)).sum(),
        Format::Tr { ranks } => {
            let p = |k: usize| ranks[k % (2 * d)] as u64;
            (0..d).map(|k| p(k) * n[k] as u64 * p(k + 1) + p(d + k) * m[k] as u64 * p(d + k + 1)).sum()
        }
        Format::Bt { blocks, ranks } => {
            let core: u64 = ranks.iter().map(|&r| r as u64).product();
            *blocks as u64 * (core + (0..d).map(|k| nm(k) * ranks[k] as u64).sum::<u64>())
        }
        Format::Ht { rank } => {
            // Leaves [m, n, r]; D - 2 inner nodes [r, r, r]; the root [r, r].
            let r = *rank as u64;
            (0..d).map(|k| nm(k) * r).sum::<u64>() + (d as u64 - 2) * r * r * r + r * r
        }
    }
}

#[test]
fn ranks_fit_the_budget_and_are_the_largest_that_do() {
    let shapes = [
        Tensorization { in_shape: vec![8, 20, 20, 18], out_shape: vec![4, 4, 4, 16] },
        Tensorization { in_shape: vec![6, 5], out_shape: vec![4, 3] },
        Tensorization { in_shape: vec![2, 3, 4, 5, 2], out_shape: vec![2, 2, 3, 2, 2] },
    ];
    for t in &shapes {
        for budget in [50, 400, 3400, 20_000] {
            for name in FORMATS {
                for (format, params, fit) in fitting_formats(name, t, budget) {
                    let what = format!("{format:?} on {t:?}, budget {budget}");
                    assert!(params <= budget, "{what}: {params} parameters");
                    assert_eq!(params, formula(&format, t), "{what}");
                    if fit == Fit::Budget {
                        // One more in the uniform rank breaks the budget.
                        let bigger = match &format {
                            Format::Kcp { rank } => Format::Kcp { rank: rank + 1 },
                            Format::Cp { rank } => Format::Cp { rank: rank + 1 },
                            Format::Ht { rank } => Format::Ht { rank: rank + 1 },
                            Format::Tt { ranks } => Format::Tt {
                                ranks: ranks
                                    .iter()
                                    .enumerate()
                                    .map(|(k, &r)| if k == 0 || k == ranks.len() - 1 { r } else { r + 1 })
                                    .collect(),
                            },
                            Format::Tr { ranks } => Format::Tr { ranks: ranks.iter().map(|r| r + 1).collect() },
                            Format::Bt { blocks, ranks } => {
                                Format::Bt { blocks: *blocks, ranks: ranks.iter().map(|r| r + 1).collect() }
                            }
                        };
                        // (or is past the network's limits).
                        let valid = Network::new(&t.in_shape, &t.out_shape, bigger.clone(), Batch::Symbolic).is_ok();
                        assert!(formula(&bigger, t) > budget || !valid, "{what}: a larger rank fits too");
                    }
                }
            }
        }
    }
}

fn candidate(params: u64, us: f64) -> Candidate {
    Candidate {
        format: Format::Kcp { rank: 1 },
        tensorization: Tensorization { in_shape: vec![2], out_shape: vec![2] },
        params,
        fit: Fit::Budget,
        macs: 0,
        scratch: None,
        us_per_row: Some(us),
    }
}

#[test]
fn the_front_is_every_undominated_point() {
    let points = [(100, 5.0), (200, 4.0), (300, 6.0), (300, 3.0), (50, 1.0), (200, 4.0), (400, 9.0)];
    let candidates: Vec<Candidate> = points.iter().map(|&(p, t)| candidate(p, t)).collect();
    let got = front(&candidates);
    // (300, 3.0) dominates (100, 5.0), (200, 4.0) twice and (300, 6.0); (50, 1.0) and
    // (400, 9.0) are dominated by nothing.
    assert_eq!(got, vec![4, 3, 6]);
}

#[test]
fn a_small_tuning_measures_a_front_within_the_budget() {
    let options = TuneOptions {
        in_size: 60,
        out_size: 12,
        budget: 120,
        batch: 4,
        threads: Threads::ONE,
        formats: FORMATS.iter().map(|s| s.to_string()).collect(),
        modes: 1..=3,
        pad: 0.0,
        in_shape: None,
        out_shape: None,
        // Far more than it takes: nothing is cut short on a slow machine.
        time: Duration::from_secs(600),
        compare: vec![],
    };
    let tuning = tune(&options, |_, _, _| {}).unwrap();
    assert!(!tuning.measured.is_empty() && !tuning.front.is_empty());
    let formats: BTreeSet<&str> = tuning.measured.iter().map(|c| c.format.name()).collect();
    assert_eq!(formats.len(), FORMATS.len(), "every format timed: {formats:?}");
    for c in &tuning.planned {
        assert!(c.params <= options.budget);
        assert_eq!(c.params, formula(&c.format, &c.tensorization));
    }
    for &k in &tuning.front {
        let p = &tuning.measured[k];
        assert!(tuning.measured.iter().all(|q| !(q.params >= p.params
            && q.us_per_row <= p.us_per_row
            && (q.params > p.params || q.us_per_row < p.us_per_row))));
    }
}
