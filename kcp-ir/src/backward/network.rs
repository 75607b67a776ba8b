//! General contraction networks of the backward pass: a handful of tensors over the layer's
//! indices and the indices of the result, planned exhaustively (dynamic programming over every
//! subset, the optimal-path algorithm of opt_einsum, with the forward pass's cost: the volume of
//! the indices a pairwise contraction loops over). It plans each gradient on its own, which is
//! both a candidate of the backward planner and the bound it is tested against.

use crate::graph::{ContractionGraph, IndexSet};
use crate::plan::oracle::splits;

use super::BackwardTensor;

/// A network: its operands (tensor and indices) and the indices of its result.
#[derive(Clone, Debug)]
pub struct GradientNetwork {
    pub operands: Vec<(BackwardTensor, IndexSet)>,
    pub result: IndexSet,
}

/// A pairwise contraction of a planned network: operand subsets `a` and `b` (bit masks over
/// `GradientNetwork::operands`) and the indices of what it produces.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    pub indices: IndexSet,
}

impl GradientNetwork {
    /// The indices a contraction of the operands in `set` keeps: those some other operand or the
    /// result still needs.
    pub(super) fn open(&self, set: usize) -> IndexSet {
        let (mut own, mut rest) = (IndexSet::EMPTY, self.result);
        for (k, &(_, indices)) in self.operands.iter().enumerate() {
            if set & (1 << k) != 0 {
                own = own.union(indices);
            } else {
                rest = rest.union(indices);
            }
        }
        if set.count_ones() == 1 {
            own
        } else {
            own.intersection(rest)
        }
    }

    /// The cheapest order: its pairwise contractions in execution order (the last produces the
    /// result, restricted to the result's indices), and their total MACs.
    pub fn optimal(&self, graph: &ContractionGraph) -> (Vec<Pair>, u64) {
        self.optimal_reusing(graph, |_, _| false)
    }

    /// The cheapest order when the operand subsets for which `made(subset, indices)` holds
    /// (indices: what the subset's tensor keeps) are there already and cost nothing: another
    /// gradient's plan computed the same tensor. The pairs skip those subsets' own steps.
    pub fn optimal_reusing(
        &self,
        graph: &ContractionGraph,
        made: impl Fn(usize, IndexSet) -> bool,
    ) -> (Vec<Pair>, u64) {
        let all = (1usize << self.operands.len()) - 1;
        // (cost, split); split 0: a leaf or a reused tensor.
        let mut best: Vec<(u64, usize)> = vec![(u64::MAX, 0); all + 1];
        for s in 1..=all {
            if s.count_ones() == 1 || (s != all && made(s, self.open(s))) {
                best[s] = (0, 0);
                continue;
            }
            for a in splits(s) {
                let b = s & !a;
                let macs = graph.volume(self.open(a).union(self.open(b)));
                let cost = best[a].0.saturating_add(best[b].0).saturating_add(macs);
                if cost < best[s].0 {
                    best[s] = (cost, a);
                }
            }
        }
        let mut pairs = Vec::new();
        self.collect(&best, all, &mut pairs);
        (pairs, best[all].0)
    }

    /// The cheapest total by brute force, independently of [`GradientNetwork::optimal`]: every
    /// sequence of pairwise merges of the current tensors, each merge keeping the indices the
    /// other tensors or the result still need. Exponential: for tests on small networks.
    pub fn brute_force(&self, graph: &ContractionGraph) -> u64 {
        fn go(tensors: &[IndexSet], result: IndexSet, graph: &ContractionGraph) -> u64 {
            if tensors.len() <= 1 {
                return 0;
            }
            let mut best = u64::MAX;
            for a in 0..tensors.len() {
                for b in a + 1..tensors.len() {
                    let rest: Vec<IndexSet> =
                        tensors.iter().enumerate().filter(|&(k, _)| k != a && k != b).map(|(_, &t)| t).collect();
                    let needed = rest.iter().fold(result, |acc, &t| acc.union(t));
                    let loops = tensors[a].union(tensors[b]);
                    let mut next = rest;
                    next.push(loops.intersection(needed));
                    best = best.min(graph.volume(loops).saturating_add(go(&next, result, graph)));
                }
            }
            best
        }
        let tensors: Vec<IndexSet> = self.operands.iter().map(|&(_, i)| i).collect();
        go(&tensors, self.result, graph)
    }

    fn collect(&self, best: &[(u64, usize)], s: usize, out: &mut Vec<Pair>) {
        let a = best[s].1;
        if a == 0 {
            return;
        }
        let b = s & !a;
        self.collect(best, a, out);
        self.collect(best, b, out);
        let loops = self.open(a).union(self.open(b));
        let indices = if s == (1 << self.operands.len()) - 1 { self.result.intersection(loops) } else { self.open(s) };
        out.push(Pair { a, b, indices });
    }
}
