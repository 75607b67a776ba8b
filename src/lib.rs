//! kcp: a tensor-algebra compiler that makes Kronecker CP (KCP) compressed layers fast.
//!
//! A KCP weight `W = sum_r A1[r] (x) ... (x) AD[r]` compresses a huge input-to-hidden matrix by
//! 10^4-10^5x; kcp plans the order of the multiplication by e-graph rewriting so that the
//! compressed layer is also the fast one.
//!
//! - [`kcp_layer!`] declares a layer whose forward pass is specialised Rust emitted at compile
//!   time from the planner's chosen plan;
//! - [`ir`] is the compiler itself, for shapes known at run time (with [`Executor`]).

pub use kcp_ir as ir;
pub use kcp_macros::kcp_layer;
pub use kcp_runtime::{
    save, CellKind, Error, Executor, NamedTensor, Program, Recurrent, RecurrentExecutor, ShapeError, State, TensorFile,
    Weights, PAR_MIN_MACS,
};

#[doc(hidden)]
pub use kcp_runtime::__private;
pub mod compress;
pub mod npy;
