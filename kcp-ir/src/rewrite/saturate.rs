//! Saturation and extraction: seed an e-graph with the paper's two orders, grow it with the
//! rules under node and iteration limits, and extract the cheapest tree.
//!
//! For D + 1 operands the saturated e-graph has one class per non-empty operand subset and one
//! node per ordered split of each, 3^(D+1) - 2^(D+2) + 1 contraction nodes in all (18,660 for
//! D = 8), so the default limits let it saturate for every D up to [`MAX_MODES`]: extraction is
//! then exactly optimal. The runner stops as soon as the e-graph holds all of that
//! ([`is_complete`]), one round of matching before egg would see that nothing changes. Should a
//! limit stop it first, the result is the cheapest tree found, which is never worse than either
//! seed order.
//!
//! [`MAX_MODES`]: crate::spec::limits::MAX_MODES

use egg::{CostFunction, EGraph, Extractor, Id, Language, RecExpr, Runner, SimpleScheduler, StopReason};

use super::cost::{Cost, StepCost};
use super::{rules::rules, Contraction, Operands};
use crate::graph::ContractionGraph;
use crate::plan::Tree;
use crate::Options;

/// What the search did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Search {
    /// Whether the e-graph saturated, which makes the extracted tree optimal.
    pub saturated: bool,
    /// Rule-application iterations run.
    pub iterations: usize,
    /// E-classes at the end.
    pub classes: usize,
    /// E-nodes at the end.
    pub nodes: usize,
}

/// Why the runner stopped when the e-graph holds every tree (see [`is_complete`]).
const COMPLETE: &str = "every ordered split of every operand subset is there";

/// Whether the e-graph over `operands` operands holds every pairwise contraction tree: one
/// class per non-empty subset of the operands and, besides the leaves, one node per ordered
/// split of each (3^n - 2^(n+1) + 1 in all). No rule can add anything more: it is saturated,
/// and the last round of matching, which would find every match already there, is skipped
/// (the most expensive round: eleven operands plan in 6.7 s instead of 9.3).
fn is_complete(egraph: &EGraph<Contraction, Operands>, operands: usize) -> bool {
    let n = operands as u32;
    let splits = 3usize.pow(n) + 1 - 2usize.pow(n + 1);
    egraph.number_of_classes() == (1 << n) - 1 && egraph.total_number_of_nodes() == splits + operands
}

/// The cost of an e-node, read off the operand sets of its children.
struct MacCost<'a> {
    egraph: &'a EGraph<Contraction, Operands>,
    graph: &'a ContractionGraph,
    max_prep_elems: u64,
}

impl CostFunction<Contraction> for MacCost<'_> {
    type Cost = Cost;

    fn cost<C: FnMut(Id) -> Cost>(&mut self, enode: &Contraction, mut costs: C) -> Cost {
        match enode {
            Contraction::Leaf(_) => Cost::ZERO,
            Contraction::Contract([a, b]) => {
                let step = StepCost::new(self.graph, self.egraph[*a].data, self.egraph[*b].data);
                step.total(costs(*a), costs(*b), self.max_prep_elems)
            }
        }
    }
}

fn add_tree(egraph: &mut EGraph<Contraction, Operands>, tree: &Tree) -> Id {
    match tree {
        Tree::Leaf(operand) => egraph.add(Contraction::Leaf(*operand)),
        Tree::Contract(a, b) => {
            let (a, b) = (add_tree(egraph, a), add_tree(egraph, b));
            egraph.add(Contraction::Contract([a, b]))
        }
    }
}

fn to_tree(expr: &RecExpr<Contraction>, id: Id) -> Tree {
    match &expr[id] {
        Contraction::Leaf(operand) => Tree::Leaf(*operand),
        node => {
            let children = node.children();
            Tree::contract(to_tree(expr, children[0]), to_tree(expr, children[1]))
        }
    }
}

/// Find the cheapest contraction tree of the graph (of any network: the seeds contract x with
/// the cores in their order and in reverse).
pub fn plan_tree(graph: &ContractionGraph, options: &Options) -> (Tree, Cost, Search) {
    let mut egraph = EGraph::new(Operands);
    let forward = add_tree(&mut egraph, &Tree::forward(graph.cores()));
    let reverse = add_tree(&mut egraph, &Tree::reverse(graph.cores()));
    egraph.union(forward, reverse);
    egraph.rebuild();
    let operands = graph.cores() + 1;
    let runner = Runner::default()
        .with_egraph(egraph)
        .with_node_limit(options.node_limit)
        .with_iter_limit(options.iter_limit)
        .with_time_limit(std::time::Duration::MAX)
        .with_scheduler(SimpleScheduler)
        .with_hook(move |runner| if is_complete(&runner.egraph, operands) { Err(COMPLETE.to_string()) } else { Ok(()) })
        .run(&rules());
    let root = runner.egraph.find(forward);
    let search = Search {
        saturated: match &runner.stop_reason {
            Some(StopReason::Saturated) => true,
            Some(StopReason::Other(reason)) => reason == COMPLETE,
            _ => false,
        },
        iterations: runner.iterations.len(),
        classes: runner.egraph.number_of_classes(),
        nodes: runner.egraph.total_number_of_nodes(),
    };
    let cost_function = MacCost { egraph: &runner.egraph, graph, max_prep_elems: options.max_prep_elems };
    let extractor = Extractor::new(&runner.egraph, cost_function);
    let (cost, expr) = extractor.find_best(root);
    (to_tree(&expr, expr.root()), cost, search)
}
