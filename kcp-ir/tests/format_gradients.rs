//! The backward pass of every format: `plan_backward` on a network's graph and plan, lowered
//! by `lower_backward` and run row by row, against an independent oracle: L = sum(dy * y) is
//! linear in each core, so dL/dcore_k sums `G[i, j] = sum_b dy[b, i] x[b, j]` times the product
//! of the other cores over every assignment of every index (brute force), and dx = dy W.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kcp_ir::network::{eval, Format, Network};
use kcp_ir::test::{relative_error, run_backward_nest, Rng};
use kcp_ir::{lower, lower_backward, plan_backward, Batch, Index, Options};

/// dL/dcore_k for every core, by brute force over every index assignment.
fn dense_core_gradients(network: &Network, cores: &[Vec<f64>], x: &[f64], dy: &[f64], batch: usize) -> Vec<Vec<f64>> {
    let (m, n) = (network.output_size(), network.input_size());
    let mut g = vec![0.0; m * n];
    for b in 0..batch {
        for i in 0..m {
            for j in 0..n {
                g[i * n + j] += dy[b * m + i] * x[b * n + j];
            }
        }
    }
    let mut all: Vec<Index> = (0..network.modes()).flat_map(|d| [Index::Out(d), Index::In(d)]).collect();
    for &index in network.cores().iter().flat_map(|c| &c.indices) {
        if !all.contains(&index) {
            all.push(index);
        }
    }
    let offset = |indices: &[Index], digits: &[usize]| {
        indices.iter().fold(0, |at, i| at * network.size(*i) + digits[all.iter().position(|a| a == i).unwrap()])
    };
    let rows: Vec<Index> = (0..network.modes()).map(Index::Out).collect();
    let columns: Vec<Index> = (0..network.modes()).map(Index::In).collect();
    let mut grads: Vec<Vec<f64>> = cores.iter().map(|c| vec![0.0; c.len()]).collect();
    let mut digits = vec![0usize; all.len()];
    let volume: usize = all.iter().map(|&i| network.size(i)).product();
    for _ in 0..volume {
        let weight = g[offset(&rows, &digits) * n + offset(&columns, &digits)];
        let values: Vec<f64> =
            network.cores().iter().zip(cores).map(|(c, data)| data[offset(&c.indices, &digits)]).collect();
        for (k, core) in network.cores().iter().enumerate() {
            let others: f64 = values.iter().enumerate().filter(|&(l, _)| l != k).map(|(_, v)| v).product();
            grads[k][offset(&core.indices, &digits)] += weight * others;
        }
        for (k, digit) in digits.iter_mut().enumerate().rev() {
            *digit += 1;
            if *digit < network.size(all[k]) {
                break;
            }
            *digit = 0;
        }
    }
    grads
}

#[test]
fn every_format_backward_matches_the_oracle() {
    let mut rng = Rng::new(0xBAC);
    let pick = |rng: &mut Rng, lo: u64, hi: u64| (lo + rng.next_u64() % (hi - lo + 1)) as usize;
    for round in 0..3 {
        for modes in 1..=3 {
            let in_shape: Vec<usize> = (0..modes).map(|_| pick(&mut rng, 1, 3)).collect();
            let out_shape: Vec<usize> = (0..modes).map(|_| pick(&mut rng, 1, 3)).collect();
            let mut tt: Vec<usize> = (0..=modes).map(|_| pick(&mut rng, 1, 3)).collect();
            (tt[0], tt[modes]) = (1, 1);
            let formats = [
                Format::Kcp { rank: pick(&mut rng, 1, 3) },
                Format::Cp { rank: pick(&mut rng, 1, 3) },
                Format::Tt { ranks: tt },
                Format::Tr { ranks: (0..2 * modes).map(|_| pick(&mut rng, 1, 3)).collect() },
                Format::Bt { blocks: pick(&mut rng, 1, 2), ranks: (0..modes).map(|_| pick(&mut rng, 1, 3)).collect() },
                Format::Ht { rank: pick(&mut rng, 1, 3) },
            ];
            for format in formats {
                let network = Network::new(&in_shape, &out_shape, format, Batch::Symbolic).unwrap();
                let name = format!("round {round}: {} {in_shape:?} -> {out_shape:?}", network.format());
                let graph = network.graph();
                let (plan, _) = network.plan(&Options::default());
                let cores = eval::random_cores(&network, &mut rng);
                let batch = 3;
                let (x, dy) = (rng.vec(batch * network.input_size()), rng.vec(batch * network.output_size()));
                let want = dense_core_gradients(&network, &cores, &x, &dy, batch);
                for max_saved in [0, 1 << 16] {
                    let backward = plan_backward(&graph, &plan, true, max_saved);
                    let program = lower_backward(&backward, &graph);
                    let (grads, dx) = run_backward_nest(&lower(&plan, &graph), &program, &x, &cores, &dy, batch);
                    for (k, (got, want)) in grads.iter().zip(&want).enumerate() {
                        let error = relative_error(got, want);
                        assert!(error < 1e-10, "{name}, max_saved {max_saved}: core {k} error {error}\n{backward}");
                    }
                    // dx = dy W.
                    let w = eval::dense_weight(&network, &cores);
                    let (m, n) = (network.output_size(), network.input_size());
                    let dx_want: Vec<f64> =
                        (0..batch * n).map(|at| (0..m).map(|i| dy[at / n * m + i] * w[i * n + at % n]).sum()).collect();
                    assert!(relative_error(&dx.unwrap(), &dx_want) < 1e-10, "{name}: dx");
                }
            }
        }
    }
}
