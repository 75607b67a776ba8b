//! kcp-ir: the compiler behind `kcp_layer!` and the `kcp` command line.
//!
//! [`compile`] is the whole pipeline, one stage per line: a [`Spec`] is validated, turned into
//! a contraction graph, planned by e-graph rewriting into the cheapest [`Plan`], and lowered to a
//! [`LoopNest`]. The result keeps every intermediate so that tests and tools can look at any
//! stage; [`emit_layer`] turns it into the Rust item a `kcp_layer!` expands to.
//!
//! The stages and the conventions they share are described in the repository's `docs/`.

#![warn(missing_docs)]

mod backward;
mod emit;
mod error;
mod eval;
mod graph;
mod loops;
pub mod network;
mod plan;
mod rewrite;
mod spec;

pub use backward::{plan_backward, BackwardPlan, BackwardStep, BackwardStrategy, Tensor};
pub use emit::{emit_layer, emit_network, emit_stub, Item};
pub use error::{Error, Errors, Location, Quantity, Side};
pub use graph::{ContractionGraph, Index, IndexSet, Node, Operand, OperandSet, ParseOperandError};
pub use loops::{lower, lower_backward, lower_lanes, LoopNest};
pub use plan::{Phase, Plan, Step, Tree, Value};
pub use rewrite::cost::Cost;
pub use rewrite::saturate::Search;
pub use spec::{limits, validate, Batch, Cell, CellKind, Spec, ValidSpec};

/// Test tooling: independent references and generators for checking the compiler. Not a
/// stable API; tests, benchmarks and examples use it.
#[doc(hidden)]
pub mod test {
    pub use crate::backward::{brute_force_macs, separate};
    pub use crate::eval::{
        dense_forward, dense_gradients, dense_weight, interpret, interpret_backward, random_factors, relative_error,
        run_backward_nest, run_nest, Gradients,
    };
    pub use crate::plan::oracle::optimal_tree;
    pub use kcp_core::Rng;
}

/// Knobs of the planner. The defaults are what the macro and the command line use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The largest load-time intermediate (a weight-only pre-product), in elements. The default,
    /// 65,536 elements (256 KiB of f32), keeps pre-products cache-resident and rules out
    /// materialising the dense weight of any but small layers.
    pub max_prep_elems: u64,
    /// The e-graph's node limit.
    pub node_limit: usize,
    /// The e-graph's iteration limit.
    pub iter_limit: usize,
    /// The most elements per batch row that a training forward pass keeps for the backward
    /// pass (forward intermediates it would otherwise recompute). The default, 65,536 (256 KiB
    /// of f32 per row), keeps all of the UCF11 layer's.
    pub max_saved_elems: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options { max_prep_elems: 1 << 16, node_limit: 1_000_000, iter_limit: 64, max_saved_elems: 1 << 16 }
    }
}

/// Everything the compiler produced for one spec.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The validated spec.
    pub spec: ValidSpec,
    /// The tensor network.
    pub graph: ContractionGraph,
    /// The chosen plan.
    pub plan: Plan,
    /// The paper's forward order (modes 1..D), for comparison.
    pub forward: Plan,
    /// The paper's reverse order (modes D..1), for comparison.
    pub reverse: Plan,
    /// What the e-graph search did.
    pub search: Search,
    /// The chosen plan lowered to loops.
    pub nest: LoopNest,
    /// The chosen plan lowered for interleaved rows, where that pays ([`loops::interleave`]):
    /// what whole blocks of a batch run.
    pub lanes: Option<LoopNest>,
}

impl Compiled {
    /// The same layer over half of its rank terms (R even, bias and cell dropped): the program
    /// each of two threads runs on one row, on its half of every factor stack. `None` for odd R.
    pub fn half_rank(&self, options: &Options) -> Option<Compiled> {
        let rank = self.spec.rank();
        if !rank.is_multiple_of(2) {
            return None;
        }
        let mut spec = Spec::new(self.spec.in_shape(), self.spec.out_shape(), rank / 2);
        spec.batch = self.spec.batch();
        compile(&spec, options).ok()
    }

    /// The backward plan of the layer (see [`plan_backward`]): every dA_d, and dx if `dx`.
    pub fn backward(&self, options: &Options, dx: bool) -> BackwardPlan {
        plan_backward(&self.graph, &self.plan, dx, options.max_saved_elems)
    }
}

/// The pipeline: validate, build the graph, plan.
pub fn compile(spec: &Spec, options: &Options) -> Result<Compiled, Errors> {
    let spec = validate(spec)?;
    let graph = ContractionGraph::new(&spec);
    let (tree, _, search) = rewrite::saturate::plan_tree(&graph, options);
    let plan = Plan::new(&graph, &tree, spec.batch(), options.max_prep_elems);
    let forward = Plan::new(&graph, &Tree::forward(spec.modes()), spec.batch(), options.max_prep_elems);
    let reverse = Plan::new(&graph, &Tree::reverse(spec.modes()), spec.batch(), options.max_prep_elems);
    let nest = loops::lower(&plan, &graph);
    let lanes = loops::interleave(&plan, &graph, &nest);
    Ok(Compiled { spec, graph, plan, forward, reverse, search, nest, lanes })
}
