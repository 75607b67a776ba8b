//! kcp-ir: the compiler behind `kcp_layer!` and the `kcp` command line.
//!
//! [`compile`] is the whole pipeline, one stage per line, for a layer of any format: a [`Spec`]
//! is validated into the network of its format ([`network`]), planned by e-graph rewriting
//! into the cheapest [`Plan`], and lowered to a [`LoopNest`]. The result keeps every
//! intermediate so that tests and tools can look at any stage; [`emit_layer`] turns it into the
//! Rust item a `kcp_layer!` expands to.
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
mod split;
mod tuning;

pub use backward::{plan_backward, BackwardPlan, BackwardStep, BackwardStrategy, BackwardTensor};
pub use emit::{emit_layer, emit_stub, Backward, Item};
pub use error::{Error, Errors, Location, Quantity, Side};
pub use graph::{ContractionGraph, Index, IndexSet, Node, Operand, OperandSet, ParseOperandError};
pub use loops::{estimate_per_row, lower, lower_backward, lower_lanes, LoopNest};
pub use network::Format;
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
        dense_forward, dense_gradients, dense_weight, interpret, interpret_backward, magnitudes, random_factors,
        relative_error, rounding_error, run_backward_nest, run_nest, Gradients,
    };
    pub use crate::plan::oracle::optimal_tree;
    pub use crate::split::along as split_along;
    pub use kcp_core::Rng;
}

/// Knobs of the planner. The defaults are what the macro and the command line use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The largest load-time intermediate (a weight-only pre-product), in elements. The default,
    /// 65,536 elements (256 KiB of f32), keeps pre-products cache-resident and rules out
    /// materialising the dense weight of any but small layers.
    pub max_prep_elems: u64,
    /// The most e-graph nodes the planner builds (see [`Search::complete`]).
    pub node_limit: usize,
    /// The most elements per batch row that a training forward pass keeps for the backward
    /// pass (forward intermediates it would otherwise recompute). The default, 65,536 (256 KiB
    /// of f32 per row), keeps all of the UCF11 layer's.
    pub max_saved_elems: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options { max_prep_elems: 1 << 16, node_limit: 1_000_000, max_saved_elems: 1 << 16 }
    }
}

/// Everything the compiler produced for one spec, of any format.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The validated spec, with its format's network.
    pub spec: ValidSpec,
    /// The tensor network.
    pub graph: ContractionGraph,
    /// The chosen plan.
    pub plan: Plan,
    /// What the e-graph search did.
    pub search: Search,
    /// The chosen plan lowered to loops.
    pub nest: LoopNest,
    /// The chosen plan lowered for interleaved rows, where that pays (`loops::interleave`):
    /// what whole blocks of a batch run.
    pub lanes: Option<LoopNest>,
    /// A single row cut in two parts for two threads, where a cut pays (the split stage:
    /// which index, and each part's loop nest over its slice of the cores).
    pub split: Option<kcp_core::Split>,
    /// The options it was compiled with.
    pub options: Options,
}

impl Compiled {
    /// The network of x and the format's cores.
    pub fn network(&self) -> &network::Network {
        self.spec.network()
    }

    /// A given order of the same network as a plan (weight-only steps at load time, within the
    /// compile options' `max_prep_elems`): a reference implementation's order, beside the
    /// chosen plan.
    pub fn order(&self, tree: &Tree) -> Plan {
        self.network().plan_of(tree, self.options.max_prep_elems)
    }

    /// The backward plan of the layer (see [`plan_backward`]): every core's gradient, and dx
    /// if `dx`.
    pub fn backward(&self, dx: bool) -> BackwardPlan {
        plan_backward(&self.graph, &self.plan, dx, self.options.max_saved_elems)
    }
}

/// The pipeline, one stage per line: validate (and build the format's network), plan by
/// e-graph rewriting, lower to loop nests (row by row, and interleaved rows where that pays),
/// cut a row in two parts for two threads where that pays.
pub fn compile(spec: &Spec, options: &Options) -> Result<Compiled, Errors> {
    let spec = validate(spec)?;
    let graph = spec.network().graph();
    let (plan, search) = spec.network().plan(options);
    let nest = loops::lower(&plan, &graph);
    let lanes = loops::interleave(&plan, &graph, &nest);
    let split = split::split(spec.network(), &plan, &nest, options);
    Ok(Compiled { spec, graph, plan, search, nest, lanes, split, options: options.clone() })
}
