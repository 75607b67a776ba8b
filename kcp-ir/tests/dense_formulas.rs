//! Every format against its own formula, written here from docs/formats.md and not built from
//! `Network`: the cores' documented shapes (in the documented order) are the shapes the
//! compiler gives them, and the compiled layer (its lowered loop nest, run in f64) computes
//! y = x W^T with W entry by entry from the format's formula; the backward program's gradients
//! are the formula's own derivatives (central differences of a loss that is linear in each
//! core entry, so exact up to rounding). Random shapes with dims and ranks of 1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kcp_ir::network::Format;
use kcp_ir::test::{relative_error, run_backward_nest, run_nest, Rng};
use kcp_ir::{compile, lower_backward, Options, Spec};

/// The big-endian digits of `value` in the mixed radix `shape`.
fn digits(mut value: usize, shape: &[usize]) -> Vec<usize> {
    let mut out = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        out[d] = value % shape[d];
        value /= shape[d];
    }
    out
}

/// Row-major offset of `index` in a tensor of `shape`.
fn at(shape: &[usize], index: &[usize]) -> usize {
    shape.iter().zip(index).fold(0, |o, (&s, &i)| o * s + i)
}

/// A square matrix product of `a` `[r, s]` and `b` `[s, t]`.
fn matmul(a: &[f64], b: &[f64], r: usize, s: usize, t: usize) -> Vec<f64> {
    let mut c = vec![0.0; r * t];
    for i in 0..r {
        for k in 0..s {
            for j in 0..t {
                c[i * t + j] += a[i * s + k] * b[k * t + j];
            }
        }
    }
    c
}

/// The HT tree over modes a..=b as docs/formats.md gives it: children first, the left child
/// taking the larger half. Each entry: (a, b, the split c for an inner node).
fn ht_nodes(a: usize, b: usize, out: &mut Vec<(usize, usize, Option<usize>)>) {
    if a == b {
        out.push((a, b, None));
        return;
    }
    let c = a + (b - a + 1).div_ceil(2) - 1;
    ht_nodes(a, c, out);
    ht_nodes(c + 1, b, out);
    out.push((a, b, Some(c)));
}

/// The cores' shapes, in the documented order.
fn shapes(format: &Format, n: &[usize], m: &[usize]) -> Vec<Vec<usize>> {
    let d = n.len();
    match format {
        Format::Kcp { rank } => (0..d).map(|k| vec![*rank, m[k], n[k]]).collect(),
        Format::Cp { rank } => (0..d).map(|k| vec![*rank, m[k]]).chain((0..d).map(|k| vec![*rank, n[k]])).collect(),
        Format::Tt { ranks } => (0..d).map(|k| vec![ranks[k], m[k], n[k], ranks[k + 1]]).collect(),
        Format::Tr { ranks } => {
            let p = |k: usize| ranks[k % (2 * d)];
            (0..d)
                .map(|k| vec![p(k), n[k], p(k + 1)])
                .chain((0..d).map(|k| vec![p(d + k), m[k], p(d + k + 1)]))
                .collect()
        }
        Format::Bt { blocks, ranks } => (0..d)
            .map(|k| vec![*blocks, m[k], n[k], ranks[k]])
            .chain(std::iter::once(std::iter::once(*blocks).chain(ranks.iter().copied()).collect()))
            .collect(),
        Format::Ht { rank } => {
            let mut nodes = Vec::new();
            ht_nodes(0, d - 1, &mut nodes);
            let r = if d == 1 { 1 } else { *rank };
            nodes
                .iter()
                .map(|&(a, b, split)| match split {
                    None => vec![m[a], n[a], r],
                    Some(_) if a == 0 && b == d - 1 => vec![r, r],
                    Some(_) => vec![r, r, r],
                })
                .collect()
        }
    }
}

/// W[i, j] by the format's formula.
fn entry(format: &Format, cores: &[Vec<f64>], n: &[usize], m: &[usize], i: &[usize], j: &[usize]) -> f64 {
    let d = n.len();
    let s = shapes(format, n, m);
    match format {
        Format::Kcp { rank } => {
            (0..*rank).map(|r| (0..d).map(|k| cores[k][at(&s[k], &[r, i[k], j[k]])]).product::<f64>()).sum()
        }
        Format::Cp { rank } => (0..*rank)
            .map(|r| {
                (0..d)
                    .map(|k| cores[k][at(&s[k], &[r, i[k]])] * cores[d + k][at(&s[d + k], &[r, j[k]])])
                    .product::<f64>()
            })
            .sum(),
        Format::Tt { ranks } => {
            let mut row = vec![1.0];
            for k in 0..d {
                let (a, b) = (ranks[k], ranks[k + 1]);
                let slice: Vec<f64> = (0..a * b).map(|p| cores[k][at(&s[k], &[p / b, i[k], j[k], p % b])]).collect();
                row = matmul(&row, &slice, 1, a, b);
            }
            row[0]
        }
        Format::Tr { ranks } => {
            let p = |k: usize| ranks[k % (2 * d)];
            let mut prod: Vec<f64> = (0..p(0) * p(0)).map(|q| if q / p(0) == q % p(0) { 1.0 } else { 0.0 }).collect();
            for k in 0..2 * d {
                let (a, b) = (p(k), p(k + 1));
                let mode = if k < d { j[k] } else { i[k - d] };
                let slice: Vec<f64> = (0..a * b).map(|q| cores[k][at(&s[k], &[q / b, mode, q % b])]).collect();
                prod = matmul(&prod, &slice, p(0), a, b);
            }
            (0..p(0)).map(|q| prod[q * p(0) + q]).sum()
        }
        Format::Bt { blocks, ranks } => {
            let terms: usize = ranks.iter().product();
            (0..*blocks)
                .map(|kb| {
                    (0..terms)
                        .map(|t| {
                            let c = digits(t, ranks);
                            let core =
                                cores[d][at(&s[d], &std::iter::once(kb).chain(c.iter().copied()).collect::<Vec<_>>())];
                            core * (0..d).map(|k| cores[k][at(&s[k], &[kb, i[k], j[k], c[k]])]).product::<f64>()
                        })
                        .sum::<f64>()
                })
                .sum()
        }
        Format::Ht { .. } => {
            // Each node's value as a vector over its edge to the parent (the root's: one value).
            let mut nodes = Vec::new();
            ht_nodes(0, d - 1, &mut nodes);
            let mut values: Vec<Vec<f64>> = Vec::new();
            let mut by_range: std::collections::HashMap<(usize, usize), usize> = std::collections::HashMap::new();
            for (k, &(a, b, split)) in nodes.iter().enumerate() {
                let shape = &s[k];
                let value = match split {
                    None => (0..shape[2]).map(|t| cores[k][at(shape, &[i[a], j[a], t])]).collect(),
                    Some(c) => {
                        let (left, right) = (&values[by_range[&(a, c)]], &values[by_range[&(c + 1, b)]]);
                        let parent = if shape.len() == 3 { shape[2] } else { 1 };
                        (0..parent)
                            .map(|t| {
                                let mut sum = 0.0;
                                for (l, lv) in left.iter().enumerate() {
                                    for (r, rv) in right.iter().enumerate() {
                                        let index: Vec<usize> =
                                            if shape.len() == 3 { vec![l, r, t] } else { vec![l, r] };
                                        sum += lv * rv * cores[k][at(shape, &index)];
                                    }
                                }
                                sum
                            })
                            .collect()
                    }
                };
                by_range.insert((a, b), values.len());
                values.push(value);
            }
            // One leaf alone is the whole weight, over its edge of size 1.
            values.last().map_or(0.0, |v: &Vec<f64>| v.iter().sum())
        }
    }
}

/// W `[M, N]` by the formula.
fn dense(format: &Format, cores: &[Vec<f64>], n: &[usize], m: &[usize]) -> Vec<f64> {
    let (nn, mm): (usize, usize) = (n.iter().product(), m.iter().product());
    let mut w = vec![0.0; mm * nn];
    for i in 0..mm {
        for j in 0..nn {
            w[i * nn + j] = entry(format, cores, n, m, &digits(i, m), &digits(j, n));
        }
    }
    w
}

fn random_format(rng: &mut Rng, kind: usize, d: usize) -> Format {
    let mut pick = |lo: u64, hi: u64| (lo + rng.next_u64() % (hi - lo + 1)) as usize;
    match kind {
        0 => Format::Kcp { rank: pick(1, 3) },
        1 => Format::Cp { rank: pick(1, 3) },
        2 => {
            let mut ranks: Vec<usize> = (0..=d).map(|_| pick(1, 3)).collect();
            (ranks[0], ranks[d]) = (1, 1);
            Format::Tt { ranks }
        }
        3 => Format::Tr { ranks: (0..2 * d).map(|_| pick(1, 3)).collect() },
        4 => Format::Bt { blocks: pick(1, 2), ranks: (0..d).map(|_| pick(1, 3)).collect() },
        _ => Format::Ht { rank: pick(1, 3) },
    }
}

#[test]
fn every_format_computes_its_formula() {
    let mut rng = Rng::new(0xF0_4D);
    for case in 0..60 {
        let d = 1 + (case / 6) % 3;
        let format = random_format(&mut rng, case % 6, d);
        let n: Vec<usize> = (0..d).map(|_| 1 + (rng.next_u64() % 3) as usize).collect();
        let m: Vec<usize> = (0..d).map(|_| 1 + (rng.next_u64() % 3) as usize).collect();
        let name = format!("{format} {n:?} -> {m:?}");
        let c = compile(&Spec::new(&n, &m, format.clone()).with_batch(3), &Options::default()).unwrap();
        let documented = shapes(&format, &n, &m);
        let compiled: Vec<Vec<usize>> = c.nest.cores.iter().map(|core| core.shape.clone()).collect();
        assert_eq!(compiled, documented, "{name}: the cores' shapes");
        let cores: Vec<Vec<f64>> = documented.iter().map(|s| rng.vec(s.iter().product())).collect();
        let (nn, mm): (usize, usize) = (n.iter().product(), m.iter().product());
        let batch = 3;
        let x = rng.vec(batch * nn);
        let w = dense(&format, &cores, &n, &m);
        let want: Vec<f64> =
            (0..batch * mm).map(|bi| (0..nn).map(|j| x[(bi / mm) * nn + j] * w[(bi % mm) * nn + j]).sum()).collect();
        let got = run_nest(&c.nest, &x, &cores, batch);
        assert!(relative_error(&got, &want) < 1e-12, "{name}: forward off by {}", relative_error(&got, &want));

        // Gradients of L = sum(dy * y): the backward program against the formula's derivatives.
        let dy = rng.vec(batch * mm);
        let loss = |cores: &[Vec<f64>], x: &[f64]| -> f64 {
            let w = dense(&format, cores, &n, &m);
            (0..batch * mm)
                .map(|bi| dy[bi] * (0..nn).map(|j| x[(bi / mm) * nn + j] * w[(bi % mm) * nn + j]).sum::<f64>())
                .sum()
        };
        let program = lower_backward(&c.backward(true), &c.graph);
        let (grads, dx) = run_backward_nest(&c.nest, &program, &x, &cores, &dy, batch);
        let h = 0.5;
        for (k, grad) in grads.iter().enumerate() {
            let fd: Vec<f64> = (0..cores[k].len())
                .map(|e| {
                    let (mut up, mut down) = (cores.to_vec(), cores.to_vec());
                    up[k][e] += h;
                    down[k][e] -= h;
                    (loss(&up, &x) - loss(&down, &x)) / (2.0 * h)
                })
                .collect();
            assert!(
                relative_error(grad, &fd) < 1e-9,
                "{name}: gradient of core {k} off by {}",
                relative_error(grad, &fd)
            );
        }
        let dx = dx.unwrap();
        let fd: Vec<f64> = (0..x.len())
            .map(|e| {
                let (mut up, mut down) = (x.clone(), x.clone());
                up[e] += h;
                down[e] -= h;
                (loss(&cores, &up) - loss(&cores, &down)) / (2.0 * h)
            })
            .collect();
        assert!(relative_error(&dx, &fd) < 1e-9, "{name}: dx off by {}", relative_error(&dx, &fd));
    }
}
