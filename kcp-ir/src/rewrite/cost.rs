//! The cost model, in MACs, shared by the e-graph extraction, the exhaustive oracle and the plans.
//!
//! A pairwise contraction of P and Q costs the product of the sizes of every index of P united
//! with Q. A step whose operands hold no x depends on weights only: it runs once, at load time,
//! and counts in `prep_macs`; its result is kept, so its size is bounded by
//! [`Options::max_prep_elems`](crate::Options::max_prep_elems). Costs compare lexicographically:
//! per-call MACs first, then load-time MACs, then the total size of the intermediates (the
//! tie-break that prefers smaller intermediates).

use crate::graph::{ContractionGraph, IndexSet, OperandSet};

/// The cost of a contraction tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost {
    /// MACs per call.
    pub macs: u64,
    /// MACs done once when the weights are loaded.
    pub prep_macs: u64,
    /// Elements of every intermediate (and the result), the tie-break.
    pub scratch: u64,
}

impl Cost {
    /// The cost of a leaf.
    pub const ZERO: Cost = Cost { macs: 0, prep_macs: 0, scratch: 0 };
    /// The cost of a tree that is not allowed (a load-time intermediate over the memory bound).
    pub const INFINITE: Cost = Cost { macs: u64::MAX, prep_macs: u64::MAX, scratch: u64::MAX };

    /// Whether the tree is allowed.
    pub fn is_finite(&self) -> bool {
        *self != Cost::INFINITE
    }

    fn plus(self, other: Cost) -> Cost {
        Cost {
            macs: self.macs.saturating_add(other.macs),
            prep_macs: self.prep_macs.saturating_add(other.prep_macs),
            scratch: self.scratch.saturating_add(other.scratch),
        }
    }
}

/// One pairwise contraction: what it sums, what it produces, what it costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepCost {
    /// Every index the step loops over.
    pub loops: IndexSet,
    /// The indices of the result, in layout order.
    pub result: IndexSet,
    /// The MACs of this step alone.
    pub macs: u64,
    /// The number of elements of the result.
    pub elems: u64,
    /// Whether the step depends on weights only (runs at load time).
    pub prep: bool,
}

impl StepCost {
    /// The cost of contracting the subtrees over the operand sets `a` and `b`.
    pub fn new(graph: &ContractionGraph, a: OperandSet, b: OperandSet) -> StepCost {
        let loops = graph.open_indices(a).union(graph.open_indices(b));
        let set = a.union(b);
        let result = graph.open_indices(set);
        StepCost { loops, result, macs: graph.volume(loops), elems: graph.volume(result), prep: !set.has_input() }
    }

    /// The indices summed away.
    pub fn summed(&self) -> IndexSet {
        self.loops.minus(self.result)
    }

    /// The total cost of a tree whose root is this step, given its subtrees' costs.
    pub fn total(&self, a: Cost, b: Cost, max_prep_elems: u64) -> Cost {
        let own = if !self.prep {
            Cost { macs: self.macs, prep_macs: 0, scratch: self.elems }
        } else if self.elems <= max_prep_elems {
            Cost { macs: 0, prep_macs: self.macs, scratch: self.elems }
        } else {
            return Cost::INFINITE;
        };
        a.plus(b).plus(own)
    }
}
