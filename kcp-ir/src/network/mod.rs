//! General networks: a layer as x plus a list of named cores, each with its indices in its own
//! storage order, and every tensor format of the paper's comparison as a constructor of it
//! ([`Format`]; KCP is one of them).
//!
//! In: shapes and a format. Out, through [`Network::new`]: the cores (names, index layouts,
//! sizes), checked as a KCP spec is (every error collected, typed, naming the value), and the
//! network's [`ContractionGraph`], which the e-graph planner, the exhaustive oracle, the dense
//! reference and the interpreter read like a KCP layer's. No format has a planner of its own.

pub mod eval;
mod format;
pub mod orders;

use crate::error::Errors;
pub use crate::graph::Core;
use crate::graph::{ContractionGraph, Index};
use crate::plan::{Plan, Tree};
use crate::spec::{validate, Batch, Spec};
pub use format::{Format, FormatEntry, KeyMismatch, RankArgs, RankKey, RankList, FORMATS};

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
    /// symbolic batch plans per row): [`validate`] of a layer without bias or cell. Every
    /// problem is reported, each with the value at fault.
    pub fn new(in_shape: &[usize], out_shape: &[usize], format: Format, batch: Batch) -> Result<Network, Errors> {
        let mut spec = Spec::new(in_shape, out_shape, format);
        spec.batch = batch;
        validate(&spec).map(|valid| valid.network().clone())
    }

    /// The network of shapes and a format that [`validate`] checked (it calls this).
    pub(crate) fn build(in_shape: &[usize], out_shape: &[usize], format: &Format, batch: Batch) -> Network {
        let mut network = Network {
            format: format.clone(),
            in_shape: in_shape.to_vec(),
            out_shape: out_shape.to_vec(),
            batch,
            cores: Vec::new(),
            sizes: Vec::new(),
        };
        network.lay_out();
        network
    }

    /// The product of every index's size (saturating): it bounds the MACs of every step.
    pub(crate) fn index_space(&self) -> u128 {
        self.sizes.iter().fold(1u128, |p, &(_, s)| p.saturating_mul(u128::from(s)))
    }

    /// Lay out the cores and record every index's size.
    fn lay_out(&mut self) {
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

    /// The spec of a layer of this network (no bias, no cell): what [`compile`](crate::compile)
    /// takes.
    pub fn spec(&self) -> Spec {
        let mut spec = Spec::new(&self.in_shape, &self.out_shape, self.format.clone());
        spec.batch = self.batch;
        spec
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

    /// The scale of each core's seeded random values (uniform in +-scale), chosen so that
    /// the dense weight's entries have variance 1/N: an entry of W is a sum of
    /// [`terms`](Network::terms) products of one entry of each of the K cores. KCP scales each
    /// factor by its own input mode, `sqrt(3 / n_d) R^(-1/2D)`; the other formats every core
    /// alike, `sqrt(3) (N terms)^(-1/2K)`.
    pub fn init_scales(&self) -> Vec<f64> {
        let k = self.cores.len().max(1) as f64;
        match self.format {
            Format::Kcp { rank } => {
                self.in_shape.iter().map(|&n| (3.0 / n as f64).sqrt() * (rank as f64).powf(-0.5 / k)).collect()
            }
            _ => {
                let scale = 3f64.sqrt() * (1.0 / (self.input_size() as f64 * self.terms().max(1) as f64)).powf(0.5 / k);
                vec![scale; self.cores.len()]
            }
        }
    }

    /// The same network with `index` cut to `size` values: a part of a row split
    /// ([`crate::split`]), whose cores are the layer's sliced along the index.
    pub(crate) fn restricted(&self, index: Index, size: usize) -> Network {
        let mut part = self.clone();
        for entry in part.sizes.iter_mut().filter(|(i, _)| *i == index) {
            entry.1 = size as u64;
        }
        match index {
            Index::In(d) => part.in_shape[d] = size,
            Index::Out(d) => part.out_shape[d] = size,
            Index::Batch | Index::Rank | Index::Bond(_) => {}
        }
        part
    }

    /// Every index with its size.
    pub(crate) fn sizes(&self) -> &[(Index, u64)] {
        &self.sizes
    }

    /// The plan stage of [`compile`](crate::compile): the cheapest plan, found by e-graph
    /// rewriting (weight-only pre-products within `options.max_prep_elems`), and what the
    /// search did. Of equally cheap plans (up to eight, `tuning::MAX_TIED_PLANS`), the one
    /// whose lowered loop nest the layout model estimates fastest
    /// ([`estimate_per_row`](crate::loops::estimate_per_row)), the first of equals: equally
    /// cheap orders differ in the layouts of their intermediates and so in how long their
    /// products' rows are (the UCF11 rank-4 layer's two orders of its equal modes 2 and 3 run
    /// 2x apart).
    pub fn plan(&self, options: &crate::Options) -> (Plan, crate::Search) {
        let graph = self.graph();
        let (trees, _, search) = crate::rewrite::saturate::plan_trees(&graph, options, crate::tuning::MAX_TIED_PLANS);
        let plans = trees.iter().map(|tree| Plan::new(&graph, tree, self.batch, options.max_prep_elems));
        let estimate = |plan: &Plan| crate::loops::estimate_per_row(plan, &crate::loops::lower(plan, &graph), 1);
        let best =
            plans.map(|plan| (estimate(&plan), plan)).reduce(|best, next| if next.0 < best.0 { next } else { best });
        // The e-graph holds the paper's orders, so it always has a cheapest tree; the forward
        // order stands in should that ever fail.
        let plan = best.map_or_else(|| self.plan_of(&Tree::forward(self.cores.len()), options.max_prep_elems), |b| b.1);
        (plan, search)
    }

    /// A given order as a plan (weight-only steps at load time, within `max_prep_elems`).
    pub fn plan_of(&self, tree: &Tree, max_prep_elems: u64) -> Plan {
        Plan::new(&self.graph(), tree, self.batch, max_prep_elems)
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
