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
    /// A weight operand's indices that nothing else has (not the other operand, not the
    /// result): summed once at load time, before the step, instead of on every call.
    pub presum: Option<Presum>,
}

/// A sum over indices private to one weight operand of a per-call step (the rank of a
/// one-mode layer: `y = x (sum_r A[r])^T`), done once when the weights are loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Presum {
    /// Which input of the step (0 or 1) is summed.
    pub side: usize,
    /// Its indices before the sum.
    pub from: IndexSet,
    /// The indices summed away.
    pub private: IndexSet,
    /// The sum's MACs (one per element of the operand).
    pub macs: u64,
    /// The elements of the summed operand.
    pub elems: u64,
    /// The step's loops once the operand is summed.
    pub loops: IndexSet,
    /// The step's MACs once the operand is summed.
    pub step_macs: u64,
}

impl StepCost {
    /// The cost of contracting the subtrees over the operand sets `a` and `b`.
    pub fn new(graph: &ContractionGraph, a: OperandSet, b: OperandSet) -> StepCost {
        let (open_a, open_b) = (graph.open_indices(a), graph.open_indices(b));
        let set = a.union(b);
        let result = graph.open_indices(set);
        let presum = [(0, a, open_a, open_b), (1, b, open_b, open_a)].into_iter().find_map(|(side, s, own, other)| {
            let private = own.minus(other).minus(result);
            let loops = open_a.union(open_b).minus(private);
            (set.has_input() && !s.has_input() && graph.volume(private) > 1).then(|| Presum {
                side,
                from: own,
                private,
                macs: graph.volume(own),
                elems: graph.volume(own.minus(private)),
                loops,
                step_macs: graph.volume(loops),
            })
        });
        let loops = open_a.union(open_b);
        StepCost {
            loops,
            result,
            macs: graph.volume(loops),
            elems: graph.volume(result),
            prep: !set.has_input(),
            presum,
        }
    }

    /// The sum at load time this step takes, if it has one whose result fits the load-time
    /// bound (otherwise every call sums over the private indices itself).
    pub fn presum_within(&self, max_prep_elems: u64) -> Option<Presum> {
        self.presum.filter(|p| p.elems <= max_prep_elems)
    }

    /// The total cost of a tree whose root is this step, given its subtrees' costs.
    pub fn total(&self, a: Cost, b: Cost, max_prep_elems: u64) -> Cost {
        let own = if !self.prep {
            match self.presum_within(max_prep_elems) {
                Some(p) => Cost { macs: p.step_macs, prep_macs: p.macs, scratch: self.elems + p.elems },
                None => Cost { macs: self.macs, prep_macs: 0, scratch: self.elems },
            }
        } else if self.elems <= max_prep_elems {
            Cost { macs: 0, prep_macs: self.macs, scratch: self.elems }
        } else {
            return Cost::INFINITE;
        };
        a.plus(b).plus(own)
    }
}
