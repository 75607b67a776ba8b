//! The exhaustive planner: dynamic programming over every subset of the D + 1 operands (the
//! optimal-path algorithm of opt_einsum), with the same cost model as the e-graph. It is the test
//! oracle of the e-graph planner, not the production path.

use super::Tree;
use crate::graph::{ContractionGraph, Operand, OperandSet};
use crate::rewrite::cost::{Cost, StepCost};

/// The cheapest tree over every operand of the graph, and its cost.
pub fn optimal_tree(graph: &ContractionGraph, max_prep_elems: u64) -> (Tree, Cost) {
    let all = graph.all_operands().bits() as usize;
    // best[s]: the cheapest cost of set s and the split that achieves it.
    let mut best: Vec<(Cost, usize)> = vec![(Cost::INFINITE, 0); all + 1];
    for s in 1..=all {
        if s.count_ones() == 1 {
            best[s] = (Cost::ZERO, 0);
            continue;
        }
        for a in splits(s) {
            let b = s & !a;
            let step = StepCost::new(graph, set(a), set(b));
            let cost = step.total(best[a].0, best[b].0, max_prep_elems);
            if cost < best[s].0 {
                best[s] = (cost, a);
            }
        }
    }
    (build(&best, all), best[all].0)
}

/// Every split of the subset `s` (a bit mask) into two non-empty parts, once each: the part
/// that holds the lowest member of `s`.
pub(crate) fn splits(s: usize) -> impl Iterator<Item = usize> {
    let low = s & s.wrapping_neg();
    let mut a = s.wrapping_sub(1) & s;
    std::iter::from_fn(move || {
        while a > 0 {
            let part = a;
            a = (a - 1) & s;
            if part & low != 0 {
                return Some(part);
            }
        }
        None
    })
}

fn set(bits: usize) -> OperandSet {
    OperandSet::from_bits(bits as u16)
}

fn build(best: &[(Cost, usize)], s: usize) -> Tree {
    if s.count_ones() == 1 {
        return Tree::Leaf(Operand::at(s.trailing_zeros() as usize));
    }
    let a = best[s].1;
    Tree::contract(build(best, a), build(best, s & !a))
}
