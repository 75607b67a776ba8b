//! General networks: a layer as x plus a list of named cores, each with its indices in its own
//! storage order, and every tensor format of the paper's comparison as a constructor of it
//! ([`Format`]; KCP is one of them).
//!
//! In: shapes and a format. Out, through [`Network::new`]: the cores (names, index layouts,
//! sizes), checked as a KCP spec is (every error collected, typed, naming the value), and the
//! network's [`ContractionGraph`], which the e-graph planner, the exhaustive oracle, the dense
//! reference and the interpreter read like a KCP layer's. No format has a planner of its own.

pub mod eval;
pub mod orders;

use std::fmt;

use crate::error::{Error, Errors, Location, Quantity};
pub use crate::graph::Core;
use crate::graph::{ContractionGraph, Index};
use crate::plan::{Plan, Tree};
use crate::rewrite::saturate::Search;
use crate::spec::{limits, validate, Batch, Spec};
use crate::{LoopNest, Options};

/// A tensor format of a layer's weight `W [M, N]`: its cores and how they are joined. Ranks
/// are as the command line writes them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Kronecker CP: `factor.d` `[R, m_d, n_d]`.
    Kcp {
        /// R.
        rank: usize,
    },
    /// Plain CP over all 2D modes: `out.d` `[R, m_d]`, `in.d` `[R, n_d]`.
    Cp {
        /// R.
        rank: usize,
    },
    /// Tensor train (a TT-matrix): `core.d` `[r_d, m_d, n_d, r_{d+1}]`.
    Tt {
        /// r_0 .. r_D, with r_0 = r_D = 1.
        ranks: Vec<usize>,
    },
    /// Tensor ring with separate input and output cores (as TR-LSTM): `in.d`
    /// `[p_d, n_d, p_{d+1}]`, then `out.d` `[p_{D+d}, m_d, p_{D+d+1}]`, with p_{2D} = p_0.
    Tr {
        /// p_0 .. p_{2D-1}.
        ranks: Vec<usize>,
    },
    /// Block term: K blocks, each a Tucker core `[R_1, .., R_D]` and factors `[m_d, n_d, R_d]`,
    /// stacked over the blocks as `block.core` `[K, R_1, .., R_D]` and `block.factor.d`
    /// `[K, m_d, n_d, R_d]` (the blocks' sum is a hyperedge, as KCP's rank is).
    Bt {
        /// K.
        blocks: usize,
        /// R_1 .. R_D.
        ranks: Vec<usize>,
    },
    /// Hierarchical Tucker on a balanced binary tree over the D merged modes, every edge of
    /// rank r: `leaf.d` `[m_d, n_d, r]`, inner nodes `node.a-b` `[r, r, r]` (left child's edge,
    /// right child's, parent's), the root `node.0-{D-1}` `[r, r]`.
    Ht {
        /// r.
        rank: usize,
    },
}

impl Format {
    /// Its name, as `--format` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Kcp { .. } => "kcp",
            Format::Cp { .. } => "cp",
            Format::Tt { .. } => "tt",
            Format::Tr { .. } => "tr",
            Format::Bt { .. } => "bt",
            Format::Ht { .. } => "ht",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |ranks: &[usize]| ranks.iter().map(usize::to_string).collect::<Vec<_>>().join("x");
        match self {
            Format::Kcp { rank } | Format::Cp { rank } | Format::Ht { rank } => {
                write!(f, "{} rank {rank}", self.name())
            }
            Format::Tt { ranks } | Format::Tr { ranks } => write!(f, "{} ranks {}", self.name(), list(ranks)),
            Format::Bt { blocks, ranks } => write!(f, "bt {blocks} blocks, ranks {}", list(ranks)),
        }
    }
}

/// A layer of any format, validated: x `[B, n_1..n_D]` and the format's cores, to y
/// `[B, m_1..m_D]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    format: Format,
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
    batch: Batch,
    cores: Vec<Core>,
    sizes: Vec<(Index, u64)>,
}

/// The most cores a network may have: with x, the operands fit an
/// [`OperandSet`](crate::OperandSet).
pub const MAX_CORES: usize = 15;

impl Network {
    /// Build and check the network of `format` between these shapes, for `batch` rows (a
    /// symbolic batch plans per row). Every problem is reported, each with the value at fault.
    pub fn new(in_shape: &[usize], out_shape: &[usize], format: Format, batch: Batch) -> Result<Network, Errors> {
        // The shapes and the batch are checked as for a KCP layer of rank 1.
        let mut spec = Spec::new(in_shape, out_shape, 1);
        spec.batch = batch;
        let mut errors: Vec<Error> = validate(&spec).err().map(|e| e.into_iter().collect()).unwrap_or_default();
        let modes = in_shape.len();
        let name = format.name();
        let (expected, what) = match &format {
            Format::Tt { .. } => (modes + 1, "r_0 .. r_D"),
            Format::Tr { .. } => (2 * modes, "p_0 .. p_{2D-1}"),
            Format::Bt { .. } => (modes, "R_1 .. R_D"),
            Format::Kcp { .. } | Format::Cp { .. } | Format::Ht { .. } => (0, ""),
        };
        let ranks: Vec<usize> = match &format {
            Format::Kcp { rank } | Format::Cp { rank } | Format::Ht { rank } => {
                if *rank == 0 {
                    errors.push(Error::ZeroRank);
                }
                vec![*rank]
            }
            Format::Bt { blocks, ranks } => {
                if *blocks == 0 {
                    errors.push(Error::ZeroBlocks);
                }
                ranks.clone()
            }
            Format::Tt { ranks } | Format::Tr { ranks } => ranks.clone(),
        };
        if !matches!(format, Format::Kcp { .. } | Format::Cp { .. } | Format::Ht { .. }) {
            if ranks.len() != expected && modes > 0 {
                errors.push(Error::RankCount { format: name, expected, found: ranks.len(), what });
            }
            for (position, _) in ranks.iter().enumerate().filter(|(_, &r)| r == 0) {
                errors.push(Error::ZeroRankAt { position });
            }
        }
        if let Format::Tt { ranks } = &format {
            if let (Some(&first), Some(&last)) = (ranks.first(), ranks.last()) {
                if first != 1 || last != 1 {
                    let position = if first != 1 { 0 } else { ranks.len() - 1 };
                    errors.push(Error::TtRankEnds { first, last, position });
                }
            }
        }
        let cores = core_count(&format, modes);
        if cores > MAX_CORES {
            errors.push(Error::TooManyCores { format: name, modes, cores, max: MAX_CORES });
        }
        if !errors.is_empty() {
            return Err(Errors::new(errors));
        }
        let mut network = Network {
            format: format.clone(),
            in_shape: in_shape.to_vec(),
            out_shape: out_shape.to_vec(),
            batch,
            cores: Vec::new(),
            sizes: Vec::new(),
        };
        network.build();
        // Every step of a plan loops over a subset of the indices: their product bounds its MACs.
        let space = network.sizes.iter().fold(1u128, |p, &(_, s)| p.saturating_mul(u128::from(s)));
        if space > limits::MAX_INDEX_SPACE {
            let error = Error::TooLarge {
                quantity: Quantity::IndexSpace,
                value: space,
                limit: limits::MAX_INDEX_SPACE,
                location: Location::Rank,
            };
            return Err(Errors::new(vec![error]));
        }
        Ok(network)
    }

    /// Lay out the cores and record every index's size.
    fn build(&mut self) {
        let modes = self.in_shape.len();
        let batch = match self.batch {
            Batch::Fixed(b) => b,
            Batch::Symbolic => 1,
        };
        let mut sizes = vec![(Index::Batch, batch as u64)];
        for d in 0..modes {
            sizes.push((Index::Out(d), self.out_shape[d] as u64));
            sizes.push((Index::In(d), self.in_shape[d] as u64));
        }
        let (i, j, t) = (Index::Out, Index::In, Index::Bond);
        let core = Core::named;
        let mut cores = Vec::new();
        match &self.format {
            Format::Kcp { rank } => {
                sizes.push((Index::Rank, *rank as u64));
                cores.extend((0..modes).map(|d| core(format!("factor.{d}"), vec![Index::Rank, i(d), j(d)])));
            }
            Format::Cp { rank } => {
                sizes.push((Index::Rank, *rank as u64));
                cores.extend((0..modes).map(|d| core(format!("out.{d}"), vec![Index::Rank, i(d)])));
                cores.extend((0..modes).map(|d| core(format!("in.{d}"), vec![Index::Rank, j(d)])));
            }
            Format::Tt { ranks } => {
                sizes.extend(ranks.iter().enumerate().map(|(k, &r)| (t(k), r as u64)));
                cores.extend((0..modes).map(|d| core(format!("core.{d}"), vec![t(d), i(d), j(d), t(d + 1)])));
            }
            Format::Tr { ranks } => {
                let ring = 2 * modes;
                sizes.extend(ranks.iter().enumerate().map(|(k, &r)| (t(k), r as u64)));
                cores.extend((0..modes).map(|d| core(format!("in.{d}"), vec![t(d), j(d), t(d + 1)])));
                cores.extend(
                    (0..modes).map(|d| core(format!("out.{d}"), vec![t(modes + d), i(d), t((modes + d + 1) % ring)])),
                );
            }
            Format::Bt { blocks, ranks } => {
                sizes.push((Index::Rank, *blocks as u64));
                sizes.extend(ranks.iter().enumerate().map(|(k, &r)| (t(k), r as u64)));
                // The file holds each block's tensors (`block.k.factor.d`, `block.k.core`).
                let stacked = |part: String, indices: Vec<Index>| Core {
                    name: format!("block.{part}"),
                    indices,
                    tensors: (0..*blocks).map(|k| format!("block.{k}.{part}")).collect(),
                };
                cores.extend((0..modes).map(|d| stacked(format!("factor.{d}"), vec![Index::Rank, i(d), j(d), t(d)])));
                cores.push(stacked("core".into(), std::iter::once(Index::Rank).chain((0..modes).map(t)).collect()));
            }
            Format::Ht { rank } => {
                // One bond per edge of the tree: each node but the root has one to its parent.
                let mut bonds = 0;
                let mut nodes = Vec::new();
                ht_node(0, modes - 1, true, &mut bonds, &mut nodes);
                // A single leaf is the whole weight: its edge (of size 1) joins nothing.
                let size = if modes == 1 { 1 } else { *rank as u64 };
                sizes.extend((0..bonds.max(1)).map(|k| (t(k), size)));
                for (name, indices) in nodes {
                    cores.push(core(name, indices));
                }
            }
        }
        self.sizes = sizes;
        self.cores = cores;
    }

    /// The format.
    pub fn format(&self) -> &Format {
        &self.format
    }

    /// D.
    pub fn modes(&self) -> usize {
        self.in_shape.len()
    }

    /// n_1 .. n_D.
    pub fn in_shape(&self) -> &[usize] {
        &self.in_shape
    }

    /// m_1 .. m_D.
    pub fn out_shape(&self) -> &[usize] {
        &self.out_shape
    }

    /// The batch the network is planned for.
    pub fn batch(&self) -> Batch {
        self.batch
    }

    /// The cores, in operand order (core k is the graph's operand `A{k+1}`).
    pub fn cores(&self) -> &[Core] {
        &self.cores
    }

    /// The size of an index (1 for one the network does not have).
    pub fn size(&self, index: Index) -> usize {
        self.sizes.iter().find(|(i, _)| *i == index).map_or(1, |&(_, s)| s as usize)
    }

    /// The shape of core k, in its storage order.
    pub fn shape(&self, core: usize) -> Vec<usize> {
        self.cores[core].indices.iter().map(|&i| self.size(i)).collect()
    }

    /// N.
    pub fn input_size(&self) -> usize {
        self.in_shape.iter().product()
    }

    /// M.
    pub fn output_size(&self) -> usize {
        self.out_shape.iter().product()
    }

    /// The parameters of the weight: every core's elements (a bias excluded).
    pub fn params(&self) -> u64 {
        (0..self.cores.len()).map(|k| self.shape(k).iter().product::<usize>() as u64).sum()
    }

    /// The terms of the sum that gives one entry of W: every value of the indices that are
    /// not modes (the rank, the blocks, the bonds) together: what random cores are scaled by
    /// (`Weights::random_cores`).
    pub fn terms(&self) -> u64 {
        let mut joins: Vec<Index> = Vec::new();
        for &index in self.cores.iter().flat_map(|c| &c.indices) {
            if !matches!(index, Index::In(_) | Index::Out(_)) && !joins.contains(&index) {
                joins.push(index);
            }
        }
        joins.iter().map(|&i| self.size(i) as u64).product()
    }

    /// The dense weight's parameters, M * N.
    pub fn dense_params(&self) -> u64 {
        self.output_size() as u64 * self.input_size() as u64
    }

    /// dense_params / params.
    pub fn compression_ratio(&self) -> f64 {
        self.dense_params() as f64 / self.params() as f64
    }

    /// The cores as a program reads them: names, shapes in storage order, and the file's
    /// tensors each is read from.
    pub fn core_shapes(&self) -> Vec<kcp_core::CoreShape> {
        crate::loops::cores(&self.graph())
    }

    /// The network's contraction graph: x and the cores (core k as operand `A{k+1}`) to y.
    pub fn graph(&self) -> ContractionGraph {
        ContractionGraph::of_cores(self.modes(), self.cores.clone(), self.sizes.clone())
    }

    /// The cheapest plan, found by the same e-graph search as a KCP layer's (weight-only
    /// pre-products within `options.max_prep_elems`), and what the search did.
    pub fn plan(&self, options: &Options) -> (Plan, Search) {
        let graph = self.graph();
        let (tree, _, search) = crate::rewrite::saturate::plan_tree(&graph, options);
        (Plan::new(&graph, &tree, self.batch, options.max_prep_elems), search)
    }

    /// The cheapest plan lowered to its loop nests: what the generic executor runs (the same
    /// lowering, and so the same micro-kernels, as a KCP layer's, each core read in its own
    /// storage layout).
    pub fn compile(&self, options: &Options) -> Lowered {
        let graph = self.graph();
        let (plan, search) = self.plan(options);
        let nest = crate::loops::lower(&plan, &graph);
        let lanes = crate::loops::interleave(&plan, &graph, &nest);
        Lowered { graph, plan, search, nest, lanes }
    }

    /// A given order as a plan (weight-only steps at load time, within `max_prep_elems`).
    pub fn plan_of(&self, tree: &Tree, max_prep_elems: u64) -> Plan {
        Plan::new(&self.graph(), tree, self.batch, max_prep_elems)
    }
}

/// A network's plan and its loop nests ([`Network::compile`]).
#[derive(Clone, Debug)]
pub struct Lowered {
    /// The network's contraction graph.
    pub graph: ContractionGraph,
    /// The cheapest plan.
    pub plan: Plan,
    /// What the e-graph search did.
    pub search: Search,
    /// The plan lowered to loops, one row at a time.
    pub nest: LoopNest,
    /// The plan lowered for interleaved rows, where that pays.
    pub lanes: Option<LoopNest>,
}

/// The number of cores of a format with D modes.
fn core_count(format: &Format, modes: usize) -> usize {
    match format {
        Format::Kcp { .. } | Format::Tt { .. } => modes,
        Format::Cp { .. } | Format::Tr { .. } => 2 * modes,
        Format::Bt { .. } => modes + 1,
        Format::Ht { .. } => (2 * modes).saturating_sub(1),
    }
}

/// The HT subtree over modes a..=b: pushes its nodes (children first, leaves as `leaf.d`,
/// inner nodes as `node.a-b`) and returns the bond to its parent (`None` for the root). The
/// left child takes the larger half.
fn ht_node(a: usize, b: usize, root: bool, bonds: &mut usize, nodes: &mut Vec<(String, Vec<Index>)>) -> Option<Index> {
    let mut up = || {
        let bond = Index::Bond(*bonds);
        *bonds += 1;
        bond
    };
    if a == b {
        // A leaf has its edge even as the root (D = 1: an edge of size 1 that joins nothing).
        let edge = up();
        nodes.push((format!("leaf.{a}"), vec![Index::Out(a), Index::In(a), edge]));
        return Some(edge);
    }
    let c = a + (b - a + 1).div_ceil(2) - 1;
    let left = ht_node(a, c, false, bonds, nodes);
    let right = ht_node(c + 1, b, false, bonds, nodes);
    let parent = if root { None } else { Some(Index::Bond(std::mem::replace(bonds, *bonds + 1))) };
    let indices = [left, right, parent].into_iter().flatten().collect();
    nodes.push((format!("node.{a}-{b}"), indices));
    parent
}
