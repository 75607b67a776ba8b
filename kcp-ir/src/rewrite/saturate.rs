//! The saturated e-graph, built directly, and its cheapest tree.
//!
//! The rules ([`rules`](super::rules::rules)) reach every pairwise contraction tree, so the
//! e-graph they saturate has one class per non-empty operand subset and, in each, one node per
//! split of the subset into two parts. Matching the rules round after round to get there is what
//! made planning slow: eleven operands (CP or TR at D = 5) took seconds optimised and a minute in
//! a user's unoptimised proc-macro build. So the planner builds that e-graph itself, class by
//! class in order of operand subsets (a subset's parts come before it), with one node per
//! unordered split (contraction commutes, and a [`Plan`](crate::plan::Plan) orders a step's
//! operands canonically anyway). The tests check that it is exactly the e-graph the rules
//! saturate (`rules_saturate_to_the_built_egraph`).
//!
//! Two things keep it small, neither of which changes the result:
//!
//! - **The bound.** The paper's two orders (x contracted with the cores in order and in
//!   reverse) go in first; the cheaper one's per-call MACs bound the optimum. A node whose own
//!   step costs more per call can be in no tree as cheap as that, so it is left out.
//! - **The node limit.** Should the e-graph reach [`Options::node_limit`] nodes it stops
//!   growing; the seeds are in it, so extraction still returns a tree never worse than either,
//!   and [`Search::complete`] says the plan may not be optimal. No layer within the spec limits
//!   that the tests and docs use comes near it.
//!
//! Extraction walks the classes in the same subset order, so each class's children are costed
//! before it, and keeps each class's cheapest nodes by [`Cost`]. Equally cheap trees are common
//! (two modes of the same sizes can be contracted in either order) and they do not run equally
//! fast: their intermediates' layouts differ, and with them how long the products' rows are.
//! So extraction returns the cheapest trees, up to a bound, in a fixed order (splits by the
//! operand set of the part holding the lowest operand, the larger set as a bit mask first), and
//! [`Network::plan`](crate::network::Network::plan) lets the lowering choose among them. Plans
//! are the same on every run and every machine.

use std::collections::HashMap;

use egg::{EGraph, Id};

use super::cost::{Cost, StepCost};
use super::{Contraction, Operands};
use crate::graph::{ContractionGraph, Operand, OperandSet};
use crate::plan::oracle::splits;
use crate::plan::Tree;
use crate::Options;

/// What the search did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Search {
    /// Whether the e-graph holds every tree that can be the cheapest (no limit stopped it):
    /// then the extracted tree is optimal.
    pub complete: bool,
    /// E-classes: the operand subsets that some kept node contracts.
    pub classes: usize,
    /// E-nodes, leaves included.
    pub nodes: usize,
    /// Splits left out by the bound (their own step costs more per call than a seed order).
    pub pruned: usize,
}

/// The e-graph of the contraction trees over every operand of `graph`, and the class of each
/// operand subset (by bit mask; `None` where no tree was kept).
pub(crate) struct Built {
    pub(crate) egraph: EGraph<Contraction, Operands>,
    pub(crate) class: Vec<Option<Id>>,
    pub(crate) search: Search,
}

/// Build the e-graph: the seed trees, then every split of every subset whose own step costs at
/// most `bound` MACs per call (`u64::MAX`: every split), up to `node_limit` nodes.
pub(crate) fn build(
    graph: &ContractionGraph,
    seeds: &[Tree],
    bound: u64,
    node_limit: usize,
    max_prep_elems: u64,
) -> Built {
    let operands = graph.operand_count();
    let mut egraph = EGraph::new(Operands);
    let mut class: Vec<Option<Id>> = vec![None; 1 << operands];
    for seed in seeds {
        add_tree(&mut egraph, &mut class, seed);
    }
    // egg counts its nodes class by class: count them here.
    let (mut complete, mut pruned, mut nodes) = (true, 0, egraph.total_number_of_nodes());
    'subsets: for s in 1..1usize << operands {
        if s.count_ones() == 1 {
            if class[s].is_none() {
                let id = egraph.add(Contraction::Leaf(Operand::at(s.trailing_zeros() as usize)));
                join(&mut egraph, &mut class, s, id);
                nodes += 1;
            }
            continue;
        }
        for a in splits(s) {
            let b = s & !a;
            let (Some(ca), Some(cb)) = (class[a], class[b]) else { continue };
            let own = StepCost::new(graph, set(a), set(b)).total(Cost::ZERO, Cost::ZERO, max_prep_elems);
            if !own.is_finite() || own.macs > bound {
                pruned += 1;
                continue;
            }
            if nodes >= node_limit {
                complete = false;
                break 'subsets;
            }
            let (ca, cb) = (egraph.find(ca), egraph.find(cb));
            let id = egraph.add(Contraction::Contract([ca, cb]));
            join(&mut egraph, &mut class, s, id);
            nodes += 1;
        }
    }
    egraph.rebuild();
    let search =
        Search { complete, classes: egraph.number_of_classes(), nodes: egraph.total_number_of_nodes(), pruned };
    Built { egraph, class, search }
}

/// Put a node's class `id` into the class of its operand subset `set`.
fn join(egraph: &mut EGraph<Contraction, Operands>, class: &mut [Option<Id>], set: usize, id: Id) {
    match class[set] {
        Some(c) => {
            egraph.union(c, id);
        }
        None => class[set] = Some(id),
    }
}

/// Add a tree, recording the class of each subtree's operand set.
fn add_tree(egraph: &mut EGraph<Contraction, Operands>, class: &mut [Option<Id>], tree: &Tree) -> Id {
    let id = match tree {
        Tree::Leaf(operand) => egraph.add(Contraction::Leaf(*operand)),
        Tree::Contract(a, b) => {
            let (a, b) = (add_tree(egraph, class, a), add_tree(egraph, class, b));
            egraph.add(Contraction::Contract([a, b]))
        }
    };
    join(egraph, class, tree.operands().bits() as usize, id);
    id
}

fn set(bits: usize) -> OperandSet {
    OperandSet::from_bits(bits as u16)
}

/// The cost of a whole tree.
pub(crate) fn tree_cost(graph: &ContractionGraph, tree: &Tree, max_prep_elems: u64) -> Cost {
    match tree {
        Tree::Leaf(_) => Cost::ZERO,
        Tree::Contract(a, b) => StepCost::new(graph, a.operands(), b.operands()).total(
            tree_cost(graph, a, max_prep_elems),
            tree_cost(graph, b, max_prep_elems),
            max_prep_elems,
        ),
    }
}

/// The cheapest trees of the e-graph's root class (every operand), at most `max_trees` of them,
/// and their cost: each class's cheapest nodes, classes in subset order (see the module's doc
/// for the order of equally cheap ones).
fn extract(graph: &ContractionGraph, built: &Built, max_prep_elems: u64, max_trees: usize) -> (Vec<Tree>, Cost) {
    let egraph = &built.egraph;
    let all = graph.all_operands().bits() as usize;
    // best[s]: the cheapest cost of subset s and the parts holding the lowest operand of every
    // split that achieves it, the larger part first.
    let mut best: Vec<(Cost, Vec<usize>)> = vec![(Cost::INFINITE, Vec::new()); all + 1];
    for s in 1..=all {
        let Some(id) = built.class[s] else { continue };
        if s.count_ones() == 1 {
            best[s].0 = Cost::ZERO;
            continue;
        }
        for node in &egraph[egraph.find(id)].nodes {
            let Contraction::Contract([a, b]) = node else { continue };
            let (a, b) = (egraph[*a].data.bits() as usize, egraph[*b].data.bits() as usize);
            // The part holding the lowest operand first (a seed may have added the other way).
            let (a, b) = if a & s & s.wrapping_neg() != 0 { (a, b) } else { (b, a) };
            let cost = StepCost::new(graph, set(a), set(b)).total(best[a].0, best[b].0, max_prep_elems);
            if cost < best[s].0 {
                best[s] = (cost, vec![a]);
            } else if cost == best[s].0 && cost.is_finite() {
                best[s].1.push(a);
            }
        }
        best[s].1.sort_unstable_by(|x, y| y.cmp(x));
    }
    let mut memo = HashMap::new();
    (trees(&best, all, max_trees, &mut memo), best[all].0)
}

/// The first `max` of the cheapest trees of subset `s`, in the order of their splits.
fn trees(best: &[(Cost, Vec<usize>)], s: usize, max: usize, memo: &mut HashMap<usize, Vec<Tree>>) -> Vec<Tree> {
    if s.count_ones() == 1 {
        return vec![Tree::Leaf(Operand::at(s.trailing_zeros() as usize))];
    }
    if let Some(known) = memo.get(&s) {
        return known.clone();
    }
    let mut found = Vec::new();
    'splits: for &a in &best[s].1 {
        let (left, right) = (trees(best, a, max, memo), trees(best, s & !a, max, memo));
        for l in &left {
            for r in &right {
                if found.len() == max {
                    break 'splits;
                }
                found.push(Tree::contract(l.clone(), r.clone()));
            }
        }
    }
    memo.insert(s, found.clone());
    found
}

/// The cheapest contraction trees of the graph (of any network: the seeds contract x with the
/// cores in their order and in reverse): all of them if there are at most `max_trees`, else the
/// first `max_trees` in the order of the module's doc; their cost; what the search did.
pub fn plan_trees(graph: &ContractionGraph, options: &Options, max_trees: usize) -> (Vec<Tree>, Cost, Search) {
    let seeds = [Tree::forward(graph.cores()), Tree::reverse(graph.cores())];
    let bound = seeds.iter().map(|t| tree_cost(graph, t, options.max_prep_elems).macs).min().unwrap_or(u64::MAX);
    let built = build(graph, &seeds, bound, options.node_limit, options.max_prep_elems);
    let (trees, cost) = extract(graph, &built, options.max_prep_elems, max_trees.max(1));
    (trees, cost, built.search)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use egg::{Runner, SimpleScheduler};

    use super::*;
    use crate::network::Format;
    use crate::rewrite::rules::rules;
    use crate::{validate, Spec};

    /// Each class's operand set with the unordered pairs of operand sets its nodes contract.
    type Shape = BTreeMap<u16, BTreeSet<(u16, u16)>>;

    fn shape(egraph: &EGraph<Contraction, Operands>) -> Shape {
        egraph
            .classes()
            .map(|class| {
                let pairs = class
                    .nodes
                    .iter()
                    .filter_map(|node| match node {
                        Contraction::Contract([a, b]) => {
                            let (a, b) = (egraph[*a].data.bits(), egraph[*b].data.bits());
                            Some((a.min(b), a.max(b)))
                        }
                        Contraction::Leaf(_) => None,
                    })
                    .collect();
                (class.data.bits(), pairs)
            })
            .collect()
    }

    /// The built e-graph, unbounded, is exactly what the rules saturate the seeds to: the same
    /// classes, each with the same splits (up to commutation, which the rules add and the
    /// built e-graph leaves to the plan's canonical order).
    #[test]
    fn rules_saturate_to_the_built_egraph() {
        let formats = [
            (1, Format::kcp(2)),
            (2, Format::kcp(2)),
            (3, Format::kcp(3)),
            (4, Format::kcp(2)),
            (2, Format::Cp { rank: 2 }),
            (3, Format::Tt { ranks: vec![1, 2, 2, 1] }),
            (2, Format::Tr { ranks: vec![2; 4] }),
            (3, Format::Ht { rank: 2 }),
            (2, Format::Bt { blocks: 2, ranks: vec![2; 2] }),
        ];
        for (d, format) in formats {
            let spec = Spec::new(&vec![3; d], &vec![2; d], format.clone());
            let graph = validate(&spec).unwrap().network().graph();
            let seeds = [Tree::forward(graph.cores()), Tree::reverse(graph.cores())];
            let built = build(&graph, &seeds, u64::MAX, usize::MAX, u64::MAX);
            assert!(built.search.complete);
            assert_eq!(built.search.pruned, 0);
            let mut egraph = EGraph::new(Operands);
            let mut class = vec![None; 1 << graph.operand_count()];
            for seed in &seeds {
                add_tree(&mut egraph, &mut class, seed);
            }
            egraph.rebuild();
            let runner = Runner::default()
                .with_egraph(egraph)
                .with_node_limit(usize::MAX)
                .with_iter_limit(usize::MAX)
                .with_time_limit(std::time::Duration::MAX)
                .with_scheduler(SimpleScheduler)
                .run(&rules());
            assert!(matches!(runner.stop_reason, Some(egg::StopReason::Saturated)), "{format:?}");
            let operands = graph.operand_count() as u32;
            assert_eq!(runner.egraph.number_of_classes(), (1 << operands) - 1, "{format:?}");
            assert_eq!(shape(&runner.egraph), shape(&built.egraph), "{format:?} at D = {d}");
            // Unordered splits: (3^n - 2^(n+1) + 1) / 2 contraction nodes, and the leaves.
            let splits = (3usize.pow(operands) + 1 - 2usize.pow(operands + 1)) / 2;
            assert_eq!(built.search.nodes, splits + operands as usize, "{format:?}");
        }
    }

    /// The bound leaves out only what cannot be in the cheapest tree: the bounded and the
    /// unbounded e-graph give the same tree, and the bound does leave splits out.
    #[test]
    fn the_bound_changes_nothing_but_the_size() {
        let spec = Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], Format::kcp(4));
        let graph = validate(&spec).unwrap().network().graph();
        let options = Options::default();
        let (trees, cost, search) = plan_trees(&graph, &options, 64);
        let seeds = [Tree::forward(graph.cores()), Tree::reverse(graph.cores())];
        let all = build(&graph, &seeds, u64::MAX, usize::MAX, options.max_prep_elems);
        assert_eq!((trees.clone(), cost), extract(&graph, &all, options.max_prep_elems, 64));
        // Modes 2 and 3 have the same sizes: two cheapest trees, which differ in their order.
        assert_eq!(trees.len(), 2, "{trees:?}");
        assert!(search.complete && search.pruned > 0 && search.nodes < all.search.nodes, "{search:?}");
    }

    /// A node limit below the full e-graph still gives a tree no worse than the seeds.
    #[test]
    fn a_node_limit_keeps_the_seeds() {
        let spec = Spec::new(&[2, 3, 2, 2, 2], &[2, 2, 2, 2, 2], Format::Cp { rank: 4 });
        let graph = validate(&spec).unwrap().network().graph();
        let options = Options { node_limit: 100, ..Options::default() };
        let (trees, cost, search) = plan_trees(&graph, &options, 1);
        let tree = &trees[0];
        assert!(!search.complete && search.nodes <= 100 + 2 * graph.operand_count(), "{search:?}");
        let forward = tree_cost(&graph, &Tree::forward(graph.cores()), options.max_prep_elems);
        let reverse = tree_cost(&graph, &Tree::reverse(graph.cores()), options.max_prep_elems);
        assert!(cost <= forward.min(reverse));
        assert_eq!(tree_cost(&graph, tree, options.max_prep_elems), cost);
    }
}
