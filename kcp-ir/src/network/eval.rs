//! The independent references for a network of any format, in f64: the dense weight (every
//! core contracted at once, by brute force over every value of every index), its forward pass,
//! the gradients of its cores and of x, and a contraction tree evaluated pairwise with each core
//! in its own storage layout.

use kcp_core::Rng;

use super::Network;
use crate::backward::{BackwardPlan, BackwardTensor};
use crate::graph::{ContractionGraph, Index, IndexSet, Operand};
use crate::plan::Tree;

/// A dense tensor: its indices in layout order and its values, row-major.
#[derive(Clone, Debug, PartialEq)]
struct Tensor {
    indices: Vec<Index>,
    data: Vec<f64>,
}

/// The sizes of a network's indices, with `batch` rows.
struct Sizes<'a> {
    network: &'a Network,
    batch: usize,
}

impl Sizes<'_> {
    fn of(&self, index: Index) -> usize {
        if index == Index::Batch {
            self.batch
        } else {
            self.network.size(index)
        }
    }

    /// The position of an assignment in a tensor laid out as `indices`.
    fn offset(&self, indices: &[Index], value: &dyn Fn(Index) -> usize) -> usize {
        indices.iter().fold(0, |at, &i| at * self.of(i) + value(i))
    }

    /// `f` on every assignment of values to `indices`, the last fastest.
    fn for_each(&self, indices: &[Index], mut f: impl FnMut(&dyn Fn(Index) -> usize)) {
        let volume: usize = indices.iter().map(|&i| self.of(i)).product();
        let mut digits = vec![0usize; indices.len()];
        for _ in 0..volume {
            f(&|i: Index| indices.iter().position(|&k| k == i).map_or(0, |p| digits[p]));
            for (k, digit) in digits.iter_mut().enumerate().rev() {
                *digit += 1;
                if *digit < self.of(indices[k]) {
                    break;
                }
                *digit = 0;
            }
        }
    }
}

/// Random cores for a network, each value uniform in [-1, 1).
pub fn random_cores(network: &Network, rng: &mut Rng) -> Vec<Vec<f64>> {
    (0..network.cores().len()).map(|k| rng.vec(network.shape(k).iter().product())).collect()
}

/// The dense weight `W [M, N]` (rows i_1..i_D, columns j_1..j_D, row-major): every core
/// contracted over every index that is not a mode.
pub fn dense_weight(network: &Network, cores: &[Vec<f64>]) -> Vec<f64> {
    let sizes = Sizes { network, batch: 1 };
    let mut all: Vec<Index> = Vec::new();
    for &index in network.cores().iter().flat_map(|core| &core.indices) {
        if !all.contains(&index) {
            all.push(index);
        }
    }
    let modes = network.modes();
    let rows: Vec<Index> = (0..modes).map(Index::Out).collect();
    let columns: Vec<Index> = (0..modes).map(Index::In).collect();
    let n = network.input_size();
    let mut w = vec![0.0; network.output_size() * n];
    sizes.for_each(&all, |value| {
        let term: f64 =
            network.cores().iter().zip(cores).map(|(core, data)| data[sizes.offset(&core.indices, value)]).product();
        w[sizes.offset(&rows, value) * n + sizes.offset(&columns, value)] += term;
    });
    w
}

/// y = x W^T for x `[B, N]`: the dense reference of the forward pass (no bias).
pub fn dense_forward(network: &Network, cores: &[Vec<f64>], x: &[f64], batch: usize) -> Vec<f64> {
    let (m, n) = (network.output_size(), network.input_size());
    let w = dense_weight(network, cores);
    let mut y = vec![0.0; batch * m];
    for b in 0..batch {
        for i in 0..m {
            y[b * m + i] = (0..n).map(|j| x[b * n + j] * w[i * n + j]).sum();
        }
    }
    y
}

/// The gradients of `L = sum(dy * y)` for x `[B, N]` and dy `[B, M]`: every core's (each in its
/// storage layout) and dx `[B, N]` = dy W. L is linear in each core, so dL/dcore_k sums
/// `G[i, j] = sum_b dy[b, i] x[b, j]` times the product of the other cores, over every value of
/// every index (brute force: small networks only).
pub fn dense_gradients(
    network: &Network,
    cores: &[Vec<f64>],
    x: &[f64],
    dy: &[f64],
    batch: usize,
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let sizes = Sizes { network, batch: 1 };
    let (m, n) = (network.output_size(), network.input_size());
    let mut g = vec![0.0; m * n];
    for b in 0..batch {
        for i in 0..m {
            for j in 0..n {
                g[i * n + j] += dy[b * m + i] * x[b * n + j];
            }
        }
    }
    let mut all: Vec<Index> = Vec::new();
    for &index in network.cores().iter().flat_map(|core| &core.indices) {
        if !all.contains(&index) {
            all.push(index);
        }
    }
    let rows: Vec<Index> = (0..network.modes()).map(Index::Out).collect();
    let columns: Vec<Index> = (0..network.modes()).map(Index::In).collect();
    let mut grads: Vec<Vec<f64>> = cores.iter().map(|c| vec![0.0; c.len()]).collect();
    sizes.for_each(&all, |value| {
        let weight = g[sizes.offset(&rows, value) * n + sizes.offset(&columns, value)];
        let values: Vec<f64> =
            network.cores().iter().zip(cores).map(|(core, data)| data[sizes.offset(&core.indices, value)]).collect();
        for (k, core) in network.cores().iter().enumerate() {
            let others: f64 = values.iter().enumerate().filter(|&(l, _)| l != k).map(|(_, v)| v).product();
            grads[k][sizes.offset(&core.indices, value)] += weight * others;
        }
    });
    let w = dense_weight(network, cores);
    let dx = (0..batch * n).map(|at| (0..m).map(|i| dy[at / n * m + i] * w[i * n + at % n]).sum()).collect();
    (grads, dx)
}

/// The tree evaluated pairwise on x `[B, N]`: x and the cores at the leaves in their own
/// layouts, each contraction summing every index that no other operand and not y needs (the
/// graph's open indices), the root read out as y `[B, M]`. The interpreter of any plan.
pub fn interpret(network: &Network, tree: &Tree, x: &[f64], cores: &[Vec<f64>], batch: usize) -> Vec<f64> {
    let sizes = Sizes { network, batch };
    let graph = network.graph();
    let root = evaluate(&sizes, &graph, tree, x, cores);
    let modes = network.modes();
    let y_indices: Vec<Index> = std::iter::once(Index::Batch).chain((0..modes).map(Index::Out)).collect();
    let mut y = vec![0.0; batch * network.output_size()];
    sizes.for_each(&y_indices, |value| {
        y[sizes.offset(&y_indices, value)] = root.data[sizes.offset(&root.indices, value)];
    });
    y
}

fn evaluate(sizes: &Sizes<'_>, graph: &ContractionGraph, tree: &Tree, x: &[f64], cores: &[Vec<f64>]) -> Tensor {
    match tree {
        Tree::Leaf(Operand::Input) => {
            let modes = sizes.network.modes();
            Tensor {
                indices: std::iter::once(Index::Batch).chain((0..modes).map(Index::In)).collect(),
                data: x.to_vec(),
            }
        }
        Tree::Leaf(Operand::Factor(k)) => {
            Tensor { indices: sizes.network.cores()[*k].indices.clone(), data: cores[*k].clone() }
        }
        Tree::Contract(l, r) => {
            let (a, b) = (evaluate(sizes, graph, l, x, cores), evaluate(sizes, graph, r, x, cores));
            contract(sizes, &a, &b, graph.open_indices(l.operands().union(r.operands())))
        }
    }
}

/// `a * b` keeping the indices of `keep` (in the order they first appear in a, then b), summing
/// the others.
fn contract(sizes: &Sizes<'_>, a: &Tensor, b: &Tensor, keep: IndexSet) -> Tensor {
    let mut all = a.indices.clone();
    all.extend(b.indices.iter().filter(|i| !a.indices.contains(i)));
    let indices: Vec<Index> = all.iter().copied().filter(|&i| keep.contains(i)).collect();
    let volume: usize = indices.iter().map(|&i| sizes.of(i)).product();
    let mut out = Tensor { data: vec![0.0; volume], indices };
    sizes.for_each(&all, |value| {
        let o = sizes.offset(&out.indices, value);
        out.data[o] += a.data[sizes.offset(&a.indices, value)] * b.data[sizes.offset(&b.indices, value)];
    });
    out
}

/// A backward plan of the network (`plan_backward`) run step by step, pairwise, on x `[B, N]`
/// and dy `[B, M]`: x, dy and every core in its own layout, each temporary as it comes, no loop
/// nest. Returns every core's gradient (in its storage layout) and dx `[B, N]` if the plan
/// computes it. The plan must keep no forward intermediate (a KCP sweep may; the other
/// formats' plans never do): see `crate::eval::interpret_backward` for those.
pub fn interpret_backward(
    network: &Network,
    plan: &BackwardPlan,
    x: &[f64],
    cores: &[Vec<f64>],
    dy: &[f64],
    batch: usize,
) -> (Vec<Vec<f64>>, Option<Vec<f64>>) {
    let sizes = Sizes { network, batch };
    let modes = network.modes();
    let x_indices: Vec<Index> = std::iter::once(Index::Batch).chain((0..modes).map(Index::In)).collect();
    let dy_indices: Vec<Index> = std::iter::once(Index::Batch).chain((0..modes).map(Index::Out)).collect();
    let mut temps: Vec<Option<Tensor>> = vec![None; plan.steps.len()];
    let mut grads: Vec<Vec<f64>> = cores.iter().map(|c| vec![0.0; c.len()]).collect();
    let mut dx = plan.dx.then(|| vec![0.0; batch * network.input_size()]);
    for (n, step) in plan.steps.iter().enumerate() {
        let read = |t: BackwardTensor| match t {
            BackwardTensor::X => Tensor { indices: x_indices.clone(), data: x.to_vec() },
            BackwardTensor::Dy => Tensor { indices: dy_indices.clone(), data: dy.to_vec() },
            BackwardTensor::Factor(d) => Tensor { indices: network.cores()[d].indices.clone(), data: cores[d].clone() },
            BackwardTensor::Temp(k) => temps[k].clone().unwrap_or(Tensor { indices: Vec::new(), data: vec![0.0] }),
            // Not in the plans this reads.
            BackwardTensor::Kept(_) | BackwardTensor::Grad(_) | BackwardTensor::Dx => {
                Tensor { indices: Vec::new(), data: vec![0.0] }
            }
        };
        let out = contract(&sizes, &read(step.inputs[0].0), &read(step.inputs[1].0), step.indices);
        // Scatter a result into a tensor laid out as `indices`.
        let add = |to: &mut [f64], indices: &[Index]| {
            sizes.for_each(&out.indices, |value| {
                to[sizes.offset(indices, value)] += out.data[sizes.offset(&out.indices, value)];
            });
        };
        match step.output {
            BackwardTensor::Grad(d) => add(&mut grads[d], &network.cores()[d].indices),
            BackwardTensor::Dx => {
                if let Some(dx) = dx.as_mut() {
                    add(dx, &x_indices);
                }
            }
            _ => temps[n] = Some(out),
        }
    }
    (grads, dx)
}
