//! The contraction orders that the reference implementations of each format use, written down
//! as trees over the network's operands (core k of [`Network::cores`] is `A{k+1}`), so that a
//! comparison can cost them, and run them, beside the planner's choice. Read from those
//! projects' code:
//!
//! - TT, TT-RNN (Keras) and TensorNet: right to left, x with core D first, then each core
//!   over its input mode and the rank it shares with the last;
//! - TT, tednet: left to right, core 1 first;
//! - TR, tednet: x with the input cores in order (both ring ranks kept), then the output cores,
//!   the last closing the ring;
//! - BT, tednet: x (its modes permuted to the reverse order, so that each matrix product meets
//!   the mode it sums last) with the factors of modes 1, 2, .., D in turn, every Tucker rank
//!   kept, the core last, block by block (the blocks' hyperedge carried along: the same MACs);
//! - BT, BT-RNN (Keras): weight-only `factor1 (x) factor2` times the core, x times that, then
//!   times `factor3 (x) factor4` (for D = 4; computed on every call);
//! - CP, tednet: a loop over the rank, x with each input vector, then the output vectors (the
//!   rank carried along: the same MACs as the loop);
//! - KCP, the paper: modes 1..D ([`Tree::forward`]) and D..1 ([`Tree::reverse`]).
//!
//! HT has no public implementation to follow.
//!
//! [`Network::cores`]: super::Network::cores

use super::{Format, Network};
use crate::graph::Operand;
use crate::plan::Tree;

/// A reference implementation's order for a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Its key in `kcp plan --json`'s `candidates` (`forward`, `reverse`, `tt-rnn`, `tednet`,
    /// `bt-rnn`).
    pub key: &'static str,
    /// Who runs it.
    pub name: &'static str,
    /// The order.
    pub tree: Tree,
}

impl Reference {
    /// Its MACs per call: a reference runs everything on every call, weight-only products
    /// included.
    pub fn macs(&self, network: &Network) -> u64 {
        let plan = network.plan_of(&self.tree, u64::MAX);
        plan.macs() + plan.prep_macs()
    }
}

fn core(k: usize) -> Tree {
    Tree::Leaf(Operand::Factor(k))
}

/// The orders of the reference implementations of the network's format, as the module lists
/// them (none for HT; BT-RNN's for D = 4 only).
pub fn references(network: &Network) -> Vec<Reference> {
    let modes = network.modes();
    let reference = |key, name, tree| Reference { key, name, tree };
    match network.format() {
        Format::Kcp { .. } => vec![
            reference("forward", "the paper, forward", Tree::forward(modes)),
            reference("reverse", "the paper, reverse", Tree::reverse(modes)),
        ],
        Format::Tt { .. } => vec![
            reference("tt-rnn", "TT-RNN", Tree::sequential((0..modes).rev())),
            reference("tednet", "tednet", Tree::sequential(0..modes)),
        ],
        // In cores, then out cores: that is their order in the network.
        Format::Tr { .. } => vec![reference("tednet", "tednet", Tree::sequential(0..2 * modes))],
        // Factors are cores 0..D, the Tucker core is core D.
        Format::Bt { .. } => {
            let mut orders = vec![reference("tednet", "tednet", Tree::sequential((0..=modes).collect::<Vec<_>>()))];
            if modes == 4 {
                let front = Tree::contract(Tree::contract(core(0), core(1)), core(modes));
                let back = Tree::contract(core(2), core(3));
                let tree = Tree::contract(Tree::contract(Tree::Leaf(Operand::Input), front), back);
                orders.push(reference("bt-rnn", "BT-RNN", tree));
            }
            orders
        }
        // Out vectors are cores 0..D, in vectors cores D..2D.
        Format::Cp { .. } => vec![reference("tednet", "tednet", Tree::sequential((modes..2 * modes).chain(0..modes)))],
        Format::Ht { .. } => Vec::new(),
    }
}
