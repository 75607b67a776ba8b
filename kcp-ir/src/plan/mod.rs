//! Plans: a contraction [`Tree`] linearised into ordered, costed [`Step`]s.
//!
//! In: a tree (from the e-graph, the oracle or one of the paper's named orders) and the graph.
//! Out: a [`Plan`] whose load-time steps come first, then the per-call steps in dependency
//! order, with a stable `Display` that reviews, snapshots and `kcp plan` show.

pub mod oracle;
mod print;

use crate::graph::{ContractionGraph, IndexSet, Operand, OperandSet};
use crate::rewrite::cost::{Cost, StepCost};
use crate::spec::Batch;

/// A pairwise contraction tree over the operands.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Tree {
    /// An operand.
    Leaf(Operand),
    /// The contraction of two subtrees.
    Contract(Box<Tree>, Box<Tree>),
}

impl Tree {
    /// The contraction of two trees.
    pub fn contract(a: Tree, b: Tree) -> Tree {
        Tree::Contract(Box::new(a), Box::new(b))
    }

    /// x contracted with the factors in this mode order, one after another.
    pub fn sequential(modes: impl IntoIterator<Item = usize>) -> Tree {
        modes.into_iter().fold(Tree::Leaf(Operand::Input), |t, d| Tree::contract(t, Tree::Leaf(Operand::Factor(d))))
    }

    /// The paper's forward order: modes 1, 2, ..., D.
    pub fn forward(modes: usize) -> Tree {
        Tree::sequential(0..modes)
    }

    /// The paper's reverse order: modes D, ..., 1.
    pub fn reverse(modes: usize) -> Tree {
        Tree::sequential((0..modes).rev())
    }

    /// The same tree with the operands of every contraction in a canonical order: the side
    /// holding x first, otherwise the side with the lower factor. Contraction commutes, so the
    /// cost is unchanged; plans just read the same way whichever order the search found.
    pub fn canonical(&self) -> Tree {
        match self {
            Tree::Leaf(_) => self.clone(),
            Tree::Contract(a, b) => {
                let key = |t: &Tree| (!t.operands().has_input(), t.operands().bits().trailing_zeros());
                let (a, b) = if key(a) <= key(b) { (a, b) } else { (b, a) };
                Tree::contract(a.canonical(), b.canonical())
            }
        }
    }

    /// The operands below this tree.
    pub fn operands(&self) -> OperandSet {
        match self {
            Tree::Leaf(operand) => OperandSet::single(*operand),
            Tree::Contract(a, b) => a.operands().union(b.operands()),
        }
    }
}

/// What a step reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// An input of the layer.
    Operand(Operand),
    /// The result of an earlier step, by its number in [`Plan::steps`].
    Temp(usize),
    /// y.
    Output,
    /// A tensor of ones over the indices given with it: contracting a weight with it sums the
    /// weight over them (a sum at load time, see [`Step`]).
    Ones,
}

/// When a step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Once, when the weights are loaded: it depends on weights only.
    Prep,
    /// On every call.
    Call,
}

/// One pairwise contraction of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Step {
    /// When it runs.
    pub phase: Phase,
    /// The two tensors contracted, with their indices in layout order.
    pub inputs: [(Value, IndexSet); 2],
    /// What it writes.
    pub output: Value,
    /// The indices of the result, in layout order.
    pub indices: IndexSet,
    /// The result's dimensions, in the order of `indices`.
    pub shape: Vec<u64>,
    /// The indices summed away.
    pub summed: IndexSet,
    /// Every index the step loops over.
    pub loops: IndexSet,
    /// The step's MACs.
    pub macs: u64,
}

/// An ordered contraction plan for one layer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Plan {
    tree: Tree,
    steps: Vec<Step>,
    cost: Cost,
    batch: Batch,
}

impl Plan {
    /// Linearise a tree over every operand of the graph. `max_prep_elems` bounds load-time
    /// intermediates: a tree that breaks it has an infinite [`Plan::cost`].
    pub fn new(graph: &ContractionGraph, tree: &Tree, batch: Batch, max_prep_elems: u64) -> Plan {
        let tree = tree.canonical();
        let mut builder = Builder { graph, steps: Vec::new(), max_prep_elems };
        let (root, cost) = builder.visit(&tree);
        let mut steps = builder.steps;
        if let (Value::Temp(_), Some(step)) = (root, steps.last_mut()) {
            step.output = Value::Output;
        }
        // Load-time steps first; they read nothing computed per call, so the order stays valid.
        let mut order: Vec<usize> = (0..steps.len()).collect();
        order.sort_by_key(|&k| steps[k].phase == Phase::Call);
        let mut renumber = vec![0; steps.len()];
        for (new, &old) in order.iter().enumerate() {
            renumber[old] = new;
        }
        let rename = |value: Value| match value {
            Value::Temp(k) => Value::Temp(renumber[k]),
            other => other,
        };
        let steps = order
            .iter()
            .map(|&old| {
                let mut step = steps[old].clone();
                step.inputs = step.inputs.map(|(v, i)| (rename(v), i));
                step.output = rename(step.output);
                step
            })
            .collect();
        Plan { tree, steps, cost, batch }
    }

    /// The tree the plan linearises, in canonical order.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }
    /// The steps, load-time steps first.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
    /// The full cost: per-call MACs, load-time MACs, tie-break.
    pub fn cost(&self) -> Cost {
        self.cost
    }
    /// MACs per call, for the batch the plan was built for (per row if symbolic).
    pub fn macs(&self) -> u64 {
        self.cost.macs
    }
    /// MACs done once when the weights are loaded.
    pub fn prep_macs(&self) -> u64 {
        self.cost.prep_macs
    }
    /// The rows the per-call costs are for: the known batch, or 1.
    pub fn batch_rows(&self) -> u64 {
        match self.batch {
            Batch::Fixed(b) => b as u64,
            Batch::Symbolic => 1,
        }
    }
    /// The batch the costs are for.
    pub fn batch(&self) -> Batch {
        self.batch
    }
}

struct Builder<'a> {
    graph: &'a ContractionGraph,
    steps: Vec<Step>,
    max_prep_elems: u64,
}

impl Builder<'_> {
    fn visit(&mut self, tree: &Tree) -> (Value, Cost) {
        match tree {
            Tree::Leaf(operand) => (Value::Operand(*operand), Cost::ZERO),
            Tree::Contract(a, b) => {
                let (va, ca) = self.visit(a);
                let (vb, cb) = self.visit(b);
                let (sa, sb) = (a.operands(), b.operands());
                let step = StepCost::new(self.graph, sa, sb);
                let cost = step.total(ca, cb, self.max_prep_elems);
                let mut inputs = [(va, self.graph.open_indices(sa)), (vb, self.graph.open_indices(sb))];
                let (mut loops, mut macs) = (step.loops, step.macs);
                if let Some(p) = step.presum_within(self.max_prep_elems) {
                    // The weight operand summed over its private indices at load time: its
                    // contraction with ones over them.
                    let indices = p.from.minus(p.private);
                    let summed = Value::Temp(self.steps.len());
                    self.steps.push(Step {
                        phase: Phase::Prep,
                        inputs: [inputs[p.side], (Value::Ones, p.private)],
                        output: summed,
                        indices,
                        shape: self.graph.dims(indices),
                        summed: p.private,
                        loops: p.from,
                        macs: p.macs,
                    });
                    inputs[p.side] = (summed, indices);
                    (loops, macs) = (p.loops, p.step_macs);
                }
                let output = Value::Temp(self.steps.len());
                self.steps.push(Step {
                    phase: if step.prep { Phase::Prep } else { Phase::Call },
                    inputs,
                    output,
                    indices: step.result,
                    shape: self.graph.dims(step.result),
                    summed: loops.minus(step.result),
                    loops,
                    macs,
                });
                (output, cost)
            }
        }
    }
}
