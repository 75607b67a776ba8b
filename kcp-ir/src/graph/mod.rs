//! The contraction graph: `ValidSpec` -> `ContractionGraph`.
//!
//! The layer's einsum `b j1..jD, r i1 j1, ..., r iD jD -> b i1..iD` as a petgraph graph: the
//! tensors (x, the D factor stacks, y) are nodes and the indices are edges, except r, the
//! hyperedge shared by every factor, which is a hub node joined to each factor. The planner reads
//! the graph through [`ContractionGraph::indices`], [`ContractionGraph::size`] and
//! [`ContractionGraph::open_indices`].

mod index;
mod print;

use petgraph::graph::{NodeIndex, UnGraph};

pub use index::{Index, IndexSet, Operand, OperandSet, ParseOperandError};

use crate::spec::ValidSpec;

/// A node of the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// An input tensor of the contraction.
    Operand(Operand),
    /// y, the result.
    Output,
    /// A hyperedge: the index it stands for joins every neighbour.
    Hyperedge(Index),
}

/// The tensor network of one layer.
#[derive(Clone, Debug)]
pub struct ContractionGraph {
    graph: UnGraph<Node, Index>,
    /// Index sizes, by index, for the cost batch.
    sizes: Vec<(Index, u64)>,
    /// The indices of each operand, by position.
    operand_indices: Vec<IndexSet>,
    output_indices: IndexSet,
}

impl ContractionGraph {
    /// Build the network of a layer. Sizes use [`ValidSpec::cost_batch`] for b.
    pub fn new(spec: &ValidSpec) -> ContractionGraph {
        let mut graph = UnGraph::new_undirected();
        let x = graph.add_node(Node::Operand(Operand::Input));
        let factors: Vec<NodeIndex> =
            (0..spec.modes()).map(|d| graph.add_node(Node::Operand(Operand::Factor(d)))).collect();
        let y = graph.add_node(Node::Output);
        let rank = graph.add_node(Node::Hyperedge(Index::Rank));
        graph.add_edge(x, y, Index::Batch);
        for (d, &factor) in factors.iter().enumerate() {
            graph.add_edge(rank, factor, Index::Rank);
            graph.add_edge(factor, y, Index::Out(d));
            graph.add_edge(x, factor, Index::In(d));
        }
        let mut sizes = vec![(Index::Batch, spec.cost_batch() as u64), (Index::Rank, spec.rank() as u64)];
        for d in 0..spec.modes() {
            sizes.push((Index::Out(d), spec.out_shape()[d] as u64));
            sizes.push((Index::In(d), spec.in_shape()[d] as u64));
        }
        let incident = |node: NodeIndex| graph.edges(node).map(|e| *e.weight()).collect::<IndexSet>();
        let operand_indices = std::iter::once(x).chain(factors.iter().copied()).map(incident).collect();
        let output_indices = incident(y);
        ContractionGraph { graph, sizes, operand_indices, output_indices }
    }

    /// The petgraph graph itself.
    pub fn graph(&self) -> &UnGraph<Node, Index> {
        &self.graph
    }

    /// D + 1: x and the D factor stacks.
    pub fn operand_count(&self) -> usize {
        self.operand_indices.len()
    }

    /// D.
    pub fn modes(&self) -> usize {
        self.operand_count() - 1
    }

    /// The set of every operand.
    pub fn all_operands(&self) -> OperandSet {
        OperandSet::all(self.operand_count())
    }

    /// The indices of one operand, in layout order.
    pub fn indices(&self, operand: Operand) -> IndexSet {
        self.operand_indices[operand.position()]
    }

    /// The indices of y.
    pub fn output_indices(&self) -> IndexSet {
        self.output_indices
    }

    /// The size of an index.
    pub fn size(&self, index: Index) -> u64 {
        self.sizes.iter().find(|(i, _)| *i == index).map_or(1, |&(_, s)| s)
    }

    /// The number of elements of a tensor with these indices.
    pub fn volume(&self, indices: IndexSet) -> u64 {
        indices.iter().map(|i| self.size(i)).product()
    }

    /// The dimensions of a tensor with these indices, in layout order.
    pub fn dims(&self, indices: IndexSet) -> Vec<u64> {
        indices.iter().map(|i| self.size(i)).collect()
    }

    /// The indices of the tensor that contracting `set` produces: for one operand its own; for
    /// several, those of their indices that some other operand or y still needs.
    pub fn open_indices(&self, set: OperandSet) -> IndexSet {
        let mut own = IndexSet::EMPTY;
        let mut rest = self.output_indices;
        for (position, &indices) in self.operand_indices.iter().enumerate() {
            if set.bits() & (1 << position) != 0 {
                own = own.union(indices);
            } else {
                rest = rest.union(indices);
            }
        }
        if set.len() == 1 {
            own
        } else {
            own.intersection(rest)
        }
    }
}
