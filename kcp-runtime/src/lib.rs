//! kcp-runtime: what kcp's generated kernels link against, and the generic executor.
//!
//! - [`Program`]: the loop-nest form of a planned layer, and [`Executor`], which runs one for
//!   shapes known only at run time;
//! - [`Weights`] and safetensors files;
//! - the row driver (shape checks, bias, batch threading, per-thread scratch) shared by both.
//!
//! Generated code reaches this crate only through `__private`, its one contract with it.

#![warn(missing_docs)]

mod bptt;
mod driver;
mod error;
mod executor;
mod files;
mod fork;
mod recurrent;
mod threads;
mod training;
mod tuning;
#[cfg(feature = "files")]
mod weight_files;
mod weights;

pub use bptt::{CellGrads, Tape};
pub use error::{Error, ShapeError};
pub use executor::{Executor, RecurrentExecutor};
pub use files::write_atomically;
pub use kcp_core::kernels::{isa, set_isa};
pub use kcp_core::{
    BackwardKernel, BackwardProgram, Block, Blocks, Buffer, CellKind, CoreShape, Cut, Gemm, Inner, Isa, Kept, Kernel,
    Loop, Program, ProgramError, Real, Repeat, Rng, Route, RowSplit, RowsFromA, Split,
};
pub use recurrent::{Recurrent, State};
pub use threads::Threads;
pub use training::Trace;
pub use tuning::{GRAD_PARTS, PAR_MIN_MACS};
#[cfg(feature = "files")]
pub use weight_files::{load_recurrent, save, TensorFile};
pub use weights::{kcp_cores, NamedTensor, Weights};

/// What generated code uses. Not a public API: it changes with the code generator.
#[doc(hidden)]
pub mod __private {
    pub use crate::driver::{rows, with_scratch, HalfFn, Lanes, NoHalves, NoLanes, RowFn, RowKernel};
    pub use crate::training::{BackFn, KeepFn, TrainKernel};
    pub use crate::{kcp_cores, CellGrads, CellKind, CoreShape, Error, Recurrent, ShapeError, State, Threads, Weights};
    #[cfg(feature = "files")]
    pub use crate::{load_recurrent, TensorFile};
    pub use crate::{Cut, RowSplit};
    pub use kcp_core::kernels::{axpy, dispatch, dot, gemm, mul_add, Block, Gemm, Repeat};
}
