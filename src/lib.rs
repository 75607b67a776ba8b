//! kcp: a tensor-algebra compiler that makes Kronecker CP (KCP) compressed layers fast.
//!
//! - [`kcp_layer!`] declares a layer whose forward pass is specialised Rust emitted at compile
//!   time from the planner's chosen plan;
//! - [`ir`] is the compiler itself, for shapes known at run time (with [`Executor`]);
//! - [`compress`] fits KCP factors to a dense weight, [`npy`] reads and writes activations.
//!
//! The rest of this page is the repository's README; its examples are compiled and run as
//! tests.
#![doc = ""]
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub use kcp_ir as ir;
pub use kcp_runtime::{
    isa, set_isa, write_atomically, BackwardKernel, BackwardProgram, Block, Blocks, Buffer, CellGrads, CellKind,
    CoreShape, Cut, Error, Executor, Gemm, Inner, Isa, Kept, Kernel, Loop, NamedTensor, Program, ProgramError,
    Recurrent, RecurrentExecutor, Repeat, Rng, Route, RowSplit, RowsFromA, ShapeError, Split, State, Tape, Threads,
    Trace, Weights, GRAD_PARTS, PAR_MIN_MACS,
};
#[cfg(feature = "files")]
pub use kcp_runtime::{load_recurrent, save, TensorFile};

/// Declare a KCP layer whose forward pass is compiled from the planner's cheapest plan.
///
/// The declaration names the struct and gives its shapes and rank; optional keys are `bias`
/// (default `false`), `threads` (the most threads `forward_par` uses; default all of rayon's
/// pool), for a recurrent layer, `cell: lstm` or `cell: gru` with `hidden: H` (the output
/// shape then multiplies to 4H or 3H, the gates stacked as PyTorch stacks them), and
/// `backward: weights` or `backward: dx` for a training path compiled from the backward plan
/// (`forward_train`, `backward`, `backward_par`, `zero_grads`, `update_weights`; a cell gets
/// `gradients`), the second also computing dL/dx.
///
/// `format: cp | tt | tr | bt | ht` declares a layer of another tensor format (docs/formats.md)
/// with its rank keys in place of `rank`: `cp` and `ht` take `rank: r`, `tt` and `tr` take
/// `ranks: [..]` (TT's r_0..r_D, which start and end with 1; TR's ring p_0..p_{2D-1}), `bt`
/// takes `blocks: K` and `ranks: [R_1, .., R_D]`. Every format's layer has the same API
/// (`from_cores`, the constants `FORMAT`, `CORE_NAMES` and `CORE_SHAPES`; a KCP layer also has
/// `from_factors`, `RANK` and `FACTOR_SHAPES`), and `cell` and `backward` work with every
/// format.
///
/// ```
/// kcp::kcp_layer! {
///     struct TtInput { in_shape: [8, 20, 20, 18], out_shape: [16, 4, 4, 4], format: tt, ranks: [1, 4, 4, 4, 1] }
/// }
/// let layer = TtInput::random(1);
/// let mut y = vec![0.0f32; TtInput::OUT];
/// layer.forward(&vec![0.5; TtInput::IN], &mut y).unwrap();
/// assert_eq!((TtInput::PARAMS, TtInput::CORE_NAMES[0]), (3360, "core.0"));
/// ```
///
/// ```
/// kcp::kcp_layer! {
///     /// The input projection of a small speech model: 256 = 4x8x8 features to 4x64 gates.
///     pub struct Speech {
///         in_shape: [4, 8, 8],
///         out_shape: [4, 8, 8],
///         rank: 2,
///         bias: true,
///     }
/// }
///
/// let layer = Speech::random(1);
/// let x = vec![1.0f32; 3 * Speech::IN];
/// let mut y = vec![0.0f32; 3 * Speech::OUT];
/// layer.forward(&x, &mut y).unwrap();
/// assert_eq!(Speech::FACTOR_SHAPES, [[2, 4, 4], [2, 8, 8], [2, 8, 8]]);
/// assert_eq!(Speech::PARAMS, 2 * (16 + 64 + 64));
/// ```
///
/// # Threads
///
/// A declared layer, like [`Executor`], [`RecurrentExecutor`], [`Weights`] and [`Recurrent`],
/// is `Send + Sync`: share it through an `Arc` and call `forward` and `forward_par` from any
/// number of threads, inside rayon pools of your own too (`forward_par` runs in the pool it is
/// called from, on at most the declaration's `threads`); every call computes the same bits.
/// A [`Trace`] or a [`State`] belongs to one pass and is `Send`. Changing the weights takes
/// `&mut self`, so a training step while another thread runs inference on the same layer does
/// not compile (use a lock, or a copy of the layer per trainer); `tests/concurrency.rs` checks
/// the rest.
///
/// ```compile_fail
/// kcp::kcp_layer! { struct Layer { in_shape: [4, 3], out_shape: [2, 3], rank: 2, backward: weights } }
/// let mut layer = Layer::random(1);
/// std::thread::scope(|s| {
///     s.spawn(|| layer.forward(&[0.5; 12], &mut [0.0; 6]));
///     let grads = Layer::zero_grads();
///     layer.update_weights(|w| w.cores[0][0] += grads.cores[0][0]); // error: `layer` is borrowed
/// });
/// ```
///
/// A mistake in the declaration is a compile error at the offending token:
///
/// ```compile_fail
/// kcp::kcp_layer! { struct Bad { in_shape: [4, 8], out_shape: [4, 0], rank: 2 } }
/// ```
pub use kcp_macros::kcp_layer;

/// Seeded random weights of a layer of any format, as a declared layer's `random` makes them:
/// the network's cores ([`ir::network::Network::init_scales`]: the dense weight's entries of
/// variance 1/N), and a bias of M entries if `bias`.
pub fn random_weights(network: &ir::network::Network, bias: bool, seed: u64) -> Weights {
    let bias = bias.then_some(network.output_size());
    Weights::random(&network.core_shapes(), &network.init_scales(), network.input_size(), bias, seed)
}

#[doc(hidden)]
pub use kcp_runtime::__private;
#[cfg(feature = "compress")]
pub mod compress;
pub mod data;
pub mod npy;
#[cfg(feature = "json")]
pub mod report;
pub mod train;
pub mod tune;
