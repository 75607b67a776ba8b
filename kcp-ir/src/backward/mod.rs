//! Backward plans: the gradients of a layer as one multi-output plan.
//!
//! In: the layer's graph and its forward plan. Out: a [`BackwardPlan`], the pairwise
//! contractions that compute, from x, dy = dL/dy and the factors, every dA_d (summed over the
//! batch) and, if asked, dx = dy W (dbias, the column sums of dy, takes no contraction). The
//! gradients share sub-terms, so they are planned together, shared intermediates counted once
//! (the plan is a DAG, its cost the sum of its steps):
//!
//! - a **sweep** in a mode order s_1..s_D: the forward intermediates f_k = x * A_s1 * ... * A_sk
//!   (k < D), kept from the forward pass when it contracted in the same order and they fit
//!   [`crate::Options::max_saved_elems`], recomputed otherwise; the environments of dy,
//!   e_D = dy and e_(k-1) = e_k * A_sk; then dA_sk = f_(k-1) * e_k for every k, and dx = e_1 *
//!   A_s1 summed over the rank. Every order and every choice of kept intermediates is costed;
//! - the gradients **separately**, each planned on its own by exhaustive search
//!   ([`network`]), one after another, each search taking the intermediates the earlier ones
//!   computed for free: planned with nothing shared, their total is the bound no backward plan
//!   may exceed; with the shared intermediates computed once, a candidate (the only one for
//!   another format than KCP).
//!
//! The cheapest candidate wins (per-call MACs, then the elements kept per call).

mod network;
mod print;

use crate::graph::{ContractionGraph, Index, IndexSet, Operand};
use crate::plan::{Phase, Plan, Tree};

pub use network::GradientNetwork;

/// A tensor a backward step reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackwardTensor {
    /// x, `[b, j1..jD]`.
    X,
    /// dy = dL/dy, `[b, i1..iD]`.
    Dy,
    /// A_d.
    Factor(usize),
    /// f_k of the sweep: x contracted with its first k factors, kept by the forward pass.
    Kept(usize),
    /// The result of an earlier step, by its number.
    Temp(usize),
    /// dx, `[b, j1..jD]`.
    Dx,
    /// dA_d, `[r, i_d, j_d]`, accumulated over the batch (broadcast over r when no operand of
    /// its step has r: with one mode, `dA_1[r]` is the same for every r).
    Grad(usize),
}

/// One pairwise contraction of a backward plan.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackwardStep {
    /// The two tensors contracted, with their indices in layout order.
    pub inputs: [(BackwardTensor, IndexSet); 2],
    /// What it writes.
    pub output: BackwardTensor,
    /// The indices of the result, in layout order.
    pub indices: IndexSet,
    /// The indices summed away.
    pub summed: IndexSet,
    /// The step's MACs per call.
    pub macs: u64,
}

/// How a backward plan computes the gradients.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackwardStrategy {
    /// A sweep in this mode order (zero-based), keeping the forward intermediates f_k for the
    /// k in `kept` (and recomputing the others).
    Sweep {
        /// The mode order s_1..s_D.
        order: Vec<usize>,
        /// The k of the f_k the forward pass keeps.
        kept: Vec<usize>,
    },
    /// Every gradient planned on its own.
    Separate,
}

/// The gradients of one layer as one plan.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackwardPlan {
    /// The steps, in execution order.
    pub steps: Vec<BackwardStep>,
    /// How.
    pub strategy: BackwardStrategy,
    /// Whether dx is computed.
    pub dx: bool,
    /// The indices of each kept f_k (for `BackwardTensor::Kept(k)`), by k.
    pub kept_indices: Vec<(usize, IndexSet)>,
    /// MACs per call.
    pub macs: u64,
    /// Elements the forward pass keeps per call.
    pub saved_elems: u64,
    /// MACs per call of the gradients planned separately (each optimal on its own).
    pub separate_macs: u64,
    /// MACs per call of the forward plan.
    pub forward_macs: u64,
}

/// The indices of x and dy, and of A_d.
fn x_indices(graph: &ContractionGraph) -> IndexSet {
    graph.indices(Operand::Input)
}
fn dy_indices(graph: &ContractionGraph) -> IndexSet {
    graph.output_indices()
}
fn factor_indices(graph: &ContractionGraph, d: usize) -> IndexSet {
    graph.indices(Operand::Factor(d))
}
fn grad_indices(graph: &ContractionGraph, d: usize) -> IndexSet {
    factor_indices(graph, d)
}

/// The mode order of a forward plan that contracts x with one factor after another (and has
/// no load-time step), if it does.
fn chain_order(forward: &Plan, modes: usize) -> Option<Vec<usize>> {
    if forward.steps().iter().any(|s| s.phase == Phase::Prep) {
        return None;
    }
    let mut order = Vec::new();
    let mut tree = forward.tree();
    loop {
        match tree {
            Tree::Leaf(Operand::Input) => break,
            Tree::Contract(a, b) => match (a.as_ref(), b.as_ref()) {
                (rest, Tree::Leaf(Operand::Factor(d))) | (Tree::Leaf(Operand::Factor(d)), rest) => {
                    order.push(*d);
                    tree = rest;
                }
                _ => return None,
            },
            Tree::Leaf(_) => return None,
        }
    }
    order.reverse();
    (order.len() == modes).then_some(order)
}

/// Plan the backward pass of a layer whose forward plan is `forward`: the cheapest of every
/// sweep and of the separate plans. `max_saved_elems` bounds what the forward pass keeps, per
/// batch row.
pub fn plan_backward(graph: &ContractionGraph, forward: &Plan, dx: bool, max_saved_elems: u64) -> BackwardPlan {
    let modes = graph.modes();
    let rows = graph.size(Index::Batch).max(1);
    let forward_order = chain_order(forward, modes);
    let (separate_steps, separate_macs) = separate(graph, dx);
    let mut best = BackwardPlan {
        macs: separate_steps.iter().map(|s| s.macs).sum(),
        steps: separate_steps,
        strategy: BackwardStrategy::Separate,
        dx,
        kept_indices: Vec::new(),
        saved_elems: 0,
        separate_macs,
        forward_macs: forward.macs(),
    };
    // Sweeps contract one factor [r, i_d, j_d] per mode: a KCP layer's; another format's
    // gradients are planned separately.
    let sweeps = if is_kcp(graph) { permutations(modes) } else { Vec::new() };
    for order in sweeps {
        // The f_k a forward pass in this order leaves behind (none for another order).
        let keepable: Vec<usize> = if forward_order.as_ref() == Some(&order) { (1..modes).collect() } else { vec![] };
        for mask in 0..1usize << keepable.len() {
            let kept: Vec<usize> =
                keepable.iter().enumerate().filter(|(b, _)| mask & (1 << b) != 0).map(|(_, &k)| k).collect();
            let plan = sweep(graph, &order, &kept, dx);
            if plan.saved_elems > max_saved_elems.saturating_mul(rows) {
                continue;
            }
            if (plan.macs, plan.saved_elems) < (best.macs, best.saved_elems) {
                best = BackwardPlan { separate_macs, forward_macs: forward.macs(), ..plan };
            }
        }
    }
    best
}

/// Whether the network is a KCP layer's: core d is the factor stack `[r, i_d, j_d]`.
pub(crate) fn is_kcp(graph: &ContractionGraph) -> bool {
    graph.cores() == graph.modes()
        && (0..graph.modes()).all(|d| {
            factor_indices(graph, d) == IndexSet::EMPTY.with(Index::Rank).with(Index::Out(d)).with(Index::In(d))
        })
}

/// Every permutation of `0..n`, in lexicographic order.
pub(crate) fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for first in 0..n {
        for rest in permutations(n - 1) {
            let mut p = vec![first];
            p.extend(rest.into_iter().map(|v| if v >= first { v + 1 } else { v }));
            out.push(p);
        }
    }
    out
}

/// Steps under construction.
struct Steps<'a> {
    graph: &'a ContractionGraph,
    steps: Vec<BackwardStep>,
}

impl Steps<'_> {
    /// Contract two tensors into `output` (a new temporary if `None`), keeping `keep` of the
    /// indices they loop over.
    fn push(
        &mut self,
        a: (BackwardTensor, IndexSet),
        b: (BackwardTensor, IndexSet),
        keep: IndexSet,
        output: Option<BackwardTensor>,
    ) -> (BackwardTensor, IndexSet) {
        let loops = a.1.union(b.1);
        let indices = loops.intersection(keep);
        let output = output.unwrap_or(BackwardTensor::Temp(self.steps.len()));
        self.steps.push(BackwardStep {
            inputs: [a, b],
            output,
            indices,
            summed: loops.minus(indices),
            macs: self.graph.volume(loops),
        });
        (output, indices)
    }
}

/// The sweep in `order`, keeping the f_k of `kept`.
fn sweep(graph: &ContractionGraph, order: &[usize], kept: &[usize], dx: bool) -> BackwardPlan {
    let modes = order.len();
    let mut s = Steps { graph, steps: Vec::new() };
    let factor = |d: usize| (BackwardTensor::Factor(d), factor_indices(graph, d));
    // f_k: {b, r, i_s1..i_sk, j_s(k+1)..j_sD}; f_0 = x.
    let f_indices = |k: usize| {
        let mut set = x_indices(graph);
        for &d in &order[..k] {
            set = set.minus(IndexSet::EMPTY.with(Index::In(d))).with(Index::Rank).with(Index::Out(d));
        }
        set
    };
    let mut f: Vec<(BackwardTensor, IndexSet)> = vec![(BackwardTensor::X, x_indices(graph))];
    let mut kept_indices = Vec::new();
    for k in 1..modes {
        if kept.contains(&k) {
            f.push((BackwardTensor::Kept(k), f_indices(k)));
            kept_indices.push((k, f_indices(k)));
        } else {
            let next = s.push(f[k - 1], factor(order[k - 1]), f_indices(k), None);
            f.push(next);
        }
    }
    // e_k, from e_D = dy down, each dA as soon as its environment is there.
    let mut e = (BackwardTensor::Dy, dy_indices(graph));
    for k in (1..=modes).rev() {
        if k < modes {
            let d = order[k];
            let keep = e.1.union(factor_indices(graph, d)).minus(IndexSet::EMPTY.with(Index::Out(d)));
            e = s.push(e, factor(d), keep, None);
        }
        let d = order[k - 1];
        s.push(f[k - 1], e, grad_indices(graph, d), Some(BackwardTensor::Grad(d)));
    }
    if dx {
        s.push(e, factor(order[0]), x_indices(graph), Some(BackwardTensor::Dx));
    }
    let saved_elems = kept_indices.iter().map(|&(_, set)| graph.volume(set)).sum();
    let macs = s.steps.iter().map(|st| st.macs).sum();
    BackwardPlan {
        steps: s.steps,
        strategy: BackwardStrategy::Sweep { order: order.to_vec(), kept: kept.to_vec() },
        dx,
        kept_indices,
        macs,
        saved_elems,
        separate_macs: 0,
        forward_macs: 0,
    }
}

/// The networks of the gradients planned on their own: dA_d from x, dy and the other
/// factors (cores, for any format); dx from dy and every core.
fn networks(graph: &ContractionGraph, dx: bool) -> Vec<(GradientNetwork, BackwardTensor)> {
    let cores = graph.cores();
    let mut networks: Vec<(GradientNetwork, BackwardTensor)> = (0..cores)
        .map(|d| {
            let mut operands = vec![(BackwardTensor::X, x_indices(graph)), (BackwardTensor::Dy, dy_indices(graph))];
            operands
                .extend((0..cores).filter(|&e| e != d).map(|e| (BackwardTensor::Factor(e), factor_indices(graph, e))));
            (GradientNetwork { operands, result: grad_indices(graph, d) }, BackwardTensor::Grad(d))
        })
        .collect();
    if dx {
        let mut operands = vec![(BackwardTensor::Dy, dy_indices(graph))];
        operands.extend((0..cores).map(|e| (BackwardTensor::Factor(e), factor_indices(graph, e))));
        networks.push((GradientNetwork { operands, result: x_indices(graph) }, BackwardTensor::Dx));
    }
    networks
}

/// The total MACs of the gradients planned on their own, by brute force over every order
/// (`GradientNetwork::brute_force`): the oracle of [`separate`], for tests on small layers.
pub fn brute_force_macs(graph: &ContractionGraph, dx: bool) -> u64 {
    networks(graph, dx).iter().map(|(n, _)| n.brute_force(graph)).sum()
}

/// Every gradient planned on its own, each by exhaustive search, one after another: a later
/// gradient's search takes the intermediates an earlier one computed for free (the same
/// operands contracted to the same indices), and its steps reuse them. Returns the steps and
/// the total MACs of the gradients planned each on its own, with nothing shared (the bound a
/// backward plan is held to; the steps' own MACs are at most that).
pub fn separate(graph: &ContractionGraph, dx: bool) -> (Vec<BackwardStep>, u64) {
    let mut s = Steps { graph, steps: Vec::new() };
    let mut total = 0u64;
    // Every temporary so far: the operands it contracts, and the tensor with its indices.
    let mut shared: Vec<(Vec<BackwardTensor>, (BackwardTensor, IndexSet))> = Vec::new();
    for (network, output) in networks(graph, dx) {
        total = total.saturating_add(network.optimal(graph).1);
        // Every network lists its operands in the same relative order (x, dy, cores by
        // number): the operands of a subset name it across networks.
        let operands = |set: usize| -> Vec<BackwardTensor> {
            network.operands.iter().enumerate().filter(|&(k, _)| set & (1 << k) != 0).map(|(_, &(t, _))| t).collect()
        };
        let reused = |shared: &[(Vec<BackwardTensor>, (BackwardTensor, IndexSet))], set: usize, indices: IndexSet| {
            let key = operands(set);
            shared.iter().find(|(k, (_, i))| *k == key && *i == indices).map(|&(_, t)| t)
        };
        let (pairs, _) = network.optimal_reusing(graph, |set, indices| reused(&shared, set, indices).is_some());
        // Each subset's tensor, as the pairs produce it or an earlier network did.
        let mut made: Vec<(usize, (BackwardTensor, IndexSet))> =
            network.operands.iter().enumerate().map(|(k, &op)| (1 << k, op)).collect();
        let last = pairs.len().saturating_sub(1);
        for (n, pair) in pairs.iter().enumerate() {
            let find = |set: usize| {
                made.iter()
                    .find(|(s, _)| *s == set)
                    .map(|&(_, t)| t)
                    .or_else(|| reused(&shared, set, network.open(set)))
            };
            let (Some(a), Some(b)) = (find(pair.a), find(pair.b)) else { continue };
            let out = s.push(a, b, pair.indices, (n == last).then_some(output));
            made.push((pair.a | pair.b, out));
            if n != last {
                shared.push((operands(pair.a | pair.b), out));
            }
        }
    }
    (s.steps, total)
}
