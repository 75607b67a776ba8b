//! The contraction graph: a network of x and cores -> `ContractionGraph`.
//!
//! The layer's einsum `b j1..jD, r i1 j1, ..., r iD jD -> b i1..iD` as a petgraph graph: the
//! tensors (x, the D factor stacks, y) are nodes and the indices are edges, except r, the
//! hyperedge shared by every factor, which is a hub node joined to each factor. Any other
//! network of x and cores (the formats of [`crate::network`]) is built the same way. The planner reads
//! the graph through [`ContractionGraph::indices`], [`ContractionGraph::size`] and
//! [`ContractionGraph::open_indices`].

mod index;
mod print;

use petgraph::graph::{NodeIndex, UnGraph};

pub use index::{Index, IndexSet, Operand, OperandSet, ParseOperandError};

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

/// One core of a layer's weight: its name, its indices in storage order (row-major), and the
/// tensors of a weights file it is read from (one, or one per block, stacked along its first
/// index).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Core {
    /// Its name (without a recurrent layer's `weight_ih.` prefix).
    pub name: String,
    /// Its indices, outermost first.
    pub indices: Vec<Index>,
    /// The file's tensors it is made of, in order.
    pub tensors: Vec<String>,
}

impl Core {
    /// A core read from the file's tensor of its own name.
    pub fn named(name: String, indices: Vec<Index>) -> Core {
        Core { tensors: vec![name.clone()], name, indices }
    }
}

/// The tensor network of one layer.
#[derive(Clone, Debug)]
pub struct ContractionGraph {
    graph: UnGraph<Node, Index>,
    /// Index sizes, by index, for the cost batch.
    sizes: Vec<(Index, u64)>,
    /// The same sizes by the index's bit in an [`IndexSet`] (1 for an index the graph lacks):
    /// the planner takes volumes of index sets hundreds of thousands of times, in a user's
    /// unoptimised proc-macro build too.
    size_of_bit: [u64; 64],
    /// The cores, in operand order.
    cores: Vec<Core>,
    /// The indices of each operand, by position.
    operand_indices: Vec<IndexSet>,
    output_indices: IndexSet,
    /// D.
    modes: usize,
}

impl ContractionGraph {
    /// The network of x (`[b, j_1..j_D]`) and any cores to y (`[b, i_1..i_D]`), with every
    /// index's size: an index held by two tensors is an edge between them, one held by more a
    /// hyperedge (a hub node joined to each). Every format's network is built by this, a KCP
    /// layer's too.
    pub fn of_cores(modes: usize, cores: Vec<Core>, sizes: Vec<(Index, u64)>) -> ContractionGraph {
        let mut graph = UnGraph::new_undirected();
        let x_indices = (0..modes).fold(IndexSet::EMPTY.with(Index::Batch), |s, d| s.with(Index::In(d)));
        let output_indices = (0..modes).fold(IndexSet::EMPTY.with(Index::Batch), |s, d| s.with(Index::Out(d)));
        let operand_indices: Vec<IndexSet> =
            std::iter::once(x_indices).chain(cores.iter().map(|c| c.indices.iter().copied().collect())).collect();
        let mut nodes: Vec<NodeIndex> =
            (0..operand_indices.len()).map(|p| graph.add_node(Node::Operand(Operand::at(p)))).collect();
        let y = graph.add_node(Node::Output);
        nodes.push(y);
        let every = operand_indices.iter().chain([&output_indices]).fold(IndexSet::EMPTY, |a, &b| a.union(b));
        for index in every.iter() {
            let holders: Vec<NodeIndex> = operand_indices
                .iter()
                .chain([&output_indices])
                .zip(&nodes)
                .filter(|(set, _)| set.contains(index))
                .map(|(_, &node)| node)
                .collect();
            match holders.as_slice() {
                [a, b] => {
                    graph.add_edge(*a, *b, index);
                }
                many => {
                    let hub = graph.add_node(Node::Hyperedge(index));
                    for &node in many {
                        graph.add_edge(hub, node, index);
                    }
                }
            }
        }
        let mut size_of_bit = [1; 64];
        for &(index, size) in &sizes {
            size_of_bit[index.bit() as usize] = size;
        }
        ContractionGraph { graph, sizes, size_of_bit, cores, operand_indices, output_indices, modes }
    }

    /// The petgraph graph itself.
    pub fn graph(&self) -> &UnGraph<Node, Index> {
        &self.graph
    }

    /// x and the cores: D + 1 for a KCP layer.
    pub fn operand_count(&self) -> usize {
        self.operand_indices.len()
    }

    /// D, the modes of x and y.
    pub fn modes(&self) -> usize {
        self.modes
    }

    /// The cores: D for a KCP layer, whose cores are its factor stacks.
    pub fn cores(&self) -> usize {
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

    /// The cores, in operand order (core k is operand `A{k+1}`).
    pub fn core_list(&self) -> &[Core] {
        &self.cores
    }

    /// The memory layout of an operand: x's indices in the global order (the batch last),
    /// a core's in its storage order.
    pub fn layout(&self, operand: Operand) -> Vec<Index> {
        match operand {
            Operand::Input => {
                let x = self.indices(operand);
                x.iter().filter(|&i| i != Index::Batch).chain([Index::Batch]).collect()
            }
            Operand::Factor(k) => self.cores[k].indices.clone(),
        }
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
        let (mut bits, mut volume) = (indices.bits(), 1u64);
        while bits != 0 {
            volume *= self.size_of_bit[bits.trailing_zeros() as usize];
            bits &= bits - 1;
        }
        volume
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
        let mut position = 0;
        while position < self.operand_indices.len() {
            let indices = self.operand_indices[position];
            if set.bits() & (1 << position) != 0 {
                own = own.union(indices);
            } else {
                rest = rest.union(indices);
            }
            position += 1;
        }
        if set.len() == 1 {
            own
        } else {
            own.intersection(rest)
        }
    }
}
