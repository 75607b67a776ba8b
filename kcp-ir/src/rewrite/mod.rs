//! The planner: `ContractionGraph` -> e-graph of every contraction tree -> cheapest [`Tree`].
//!
//! The language has one operator, the pairwise contraction `(* a b)`, over the leaves `x`,
//! `A1`..`AD`. Every e-class carries, as analysis data, the set of operands below it: all terms of
//! a class contract the same operands, so they produce the same tensor (its open indices and
//! sizes follow from the set and the graph), and differ only in cost. Commutativity and
//! associativity (`rules`, compiled with the tests) reach every pairwise contraction tree;
//! [`saturate`] builds the e-graph they saturate to, class by class, and extracts the cheapest
//! tree by the cost model of [`cost`].
//!
//! [`Tree`]: crate::plan::Tree

pub mod cost;
#[cfg(test)]
pub mod rules;
pub mod saturate;

use egg::{define_language, Analysis, DidMerge, EGraph, Id};

use crate::graph::{Operand, OperandSet};

define_language! {
    /// A contraction tree.
    pub enum Contraction {
        "*" = Contract([Id; 2]),
        Leaf(Operand),
    }
}

/// The e-class analysis: the operands a class contracts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Operands;

impl Analysis<Contraction> for Operands {
    type Data = OperandSet;

    fn make(egraph: &mut EGraph<Contraction, Self>, enode: &Contraction, _id: Id) -> OperandSet {
        match enode {
            Contraction::Leaf(operand) => OperandSet::single(*operand),
            Contraction::Contract([a, b]) => egraph[*a].data.union(egraph[*b].data),
        }
    }

    fn merge(&mut self, to: &mut OperandSet, from: OperandSet) -> DidMerge {
        // The rules are sound: equal terms always contract the same operands.
        debug_assert_eq!(*to, from, "merged e-classes over different operands");
        DidMerge(false, false)
    }
}
