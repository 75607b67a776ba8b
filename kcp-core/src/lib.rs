//! kcp-core: what kcp's compiler (`kcp-ir`) and its runtime (`kcp-runtime`) share, with no
//! dependencies beyond std, so that the proc macro builds none of the runtime's (rayon,
//! safetensors).
//!
//! - [`Program`]: the loop-nest form of a planned layer, the compiler's lowering target, with
//!   its reference execution ([`Program::run_row`]) that the runtime's executor drives;
//! - [`kernels`]: the micro-kernels every program and every generated layer runs;
//! - [`Split`]: one row of a layer cut in two parts for two threads;
//! - [`CellKind`], the recurrent cells, and [`Rng`], the one random number generator.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod backward;
mod cell;
mod check;
pub mod kernels;
mod program;
mod rng;
mod split;
mod tuning;

pub use backward::{BackwardKernel, BackwardProgram, Kept};
pub use cell::CellKind;
pub use check::ProgramError;
pub use kernels::{Block, Blocks, Gemm, Isa, Real, Repeat, Route};
pub use program::{Buffer, CoreShape, Inner, Kernel, Loop, Program, RowsFromA};
pub use rng::Rng;
pub use split::{Cut, RowSplit, Split};
