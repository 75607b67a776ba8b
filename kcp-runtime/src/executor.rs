//! The generic executor: runs any [`Program`] on weights known only at run time. The command line
//! and users with run-time shapes use it; generated kernels are its specialised twins.

use std::sync::OnceLock;

use crate::bptt::CellGrads;
use crate::driver::{HalfFn, Lanes, RowFn, RowKernel};
use crate::training::{BackFn, KeepFn, Trace, TrainKernel};
use crate::{BackwardProgram, Error, Program, Recurrent, ShapeError, Split, State, Threads, Weights};

/// A layer of any format executed from its program.
#[derive(Clone, Debug)]
pub struct Executor {
    program: Program,
    /// The same plan over interleaved rows, run on whole blocks of the batch.
    lanes: Option<Program>,
    weights: Weights,
    prep: Vec<Vec<f32>>,
    /// A single row cut in two parts: how one row runs on two threads.
    split: Option<Box<SplitParts>>,
}

/// A row split of an executor's layer and, from the first row that runs on two threads, each
/// part's executor over its slice of the cores (built then, not with the layer: an executor
/// that never runs a single row on two threads never pays for the parts' pre-products).
#[derive(Clone, Debug)]
struct SplitParts {
    split: Split,
    parts: OnceLock<[Executor; 2]>,
}

impl SplitParts {
    /// The parts' executors, built on first use from `whole`'s weights.
    fn parts(&self, whole: &Executor) -> &[Executor; 2] {
        self.parts.get_or_init(|| {
            [0, 1].map(|k| {
                let program = self.split.parts[k].clone();
                let cores = self.split.row.cores(k, &whole.weights.cores, &whole.program.cores);
                // Checked with the split (`Split::check`): each part's program reads exactly
                // these slices, so its pre-products need no further check.
                let prep = program.prepare(&cores);
                Executor { program, lanes: None, weights: Weights { cores, bias: None }, prep, split: None }
            })
        })
    }
}

impl Executor {
    /// Check the weights against the program and compute its pre-products.
    pub fn new(program: Program, weights: Weights) -> Result<Executor, Error> {
        program.check().map_err(ShapeError::from)?;
        let bias_len = weights.bias.as_ref().map(|_| program.output_size());
        weights.check(&program.cores, bias_len)?;
        let prep = program.prepare(&weights.cores);
        Ok(Executor { program, lanes: None, weights, prep, split: None })
    }

    /// The same executor running whole blocks of rows through `lanes`, the same plan lowered
    /// for interleaved rows (its pre-products must be the same); `None` leaves it row by row.
    ///
    /// # Panics
    /// If `lanes` is not the program's layer (its shapes or pre-products differ), runs one
    /// row at a time, or fails [`Program::check`].
    pub fn interleaved(self, lanes: Option<Program>) -> Executor {
        if let Some(lanes) = &lanes {
            assert!(
                lanes.lanes > 1
                    && lanes.cores == self.program.cores
                    && lanes.prep == self.program.prep
                    && lanes.check().is_ok(),
                "an interleaved program of another layer"
            );
        }
        Executor { lanes, ..self }
    }

    /// The same executor running a single row on two threads as the two parts of `split` (a
    /// cut of this layer's network, `kcp_ir::Compiled::split`), each over its slice of the
    /// cores; `None` runs a row on one thread. The split is checked here; the parts' cores and
    /// pre-products are made when a row first runs on two threads.
    pub fn split(self, split: Option<Split>) -> Result<Executor, Error> {
        let Some(split) = split else {
            return Ok(Executor { split: None, ..self });
        };
        split.check(&self.program).map_err(ShapeError::from)?;
        Ok(Executor { split: Some(Box::new(SplitParts { split, parts: OnceLock::new() })), ..self })
    }

    /// The program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The weights.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The elements of each core.
    fn core_lens(&self) -> Vec<usize> {
        self.program.cores.iter().map(|c| c.len()).collect()
    }

    fn kernel(&self) -> RowKernel<'_, impl RowFn + '_, impl HalfFn + '_, impl RowFn + '_> {
        RowKernel {
            input: self.program.input_size(),
            output: self.program.output_size(),
            scratch: 2 * self.program.scratch_len,
            macs_per_row: self.program.macs_per_row,
            bias: self.weights.bias.as_deref(),
            row: move |x: &[f32], y: &mut [f32], s: &mut [f32]| {
                self.program.run_row(x, y, s, &self.weights.cores, &self.prep)
            },
            halves: self.split.as_deref().map(|split| {
                let row = &split.split.row;
                let half = move |k: usize, x: &[f32], y: &mut [f32], s: &mut [f32]| {
                    let part = &split.parts(self)[k];
                    row.run_part(k, x, y, s, |x, y, s| part.program.run_row(x, y, s, &part.weights.cores, &part.prep))
                };
                (half, split.split.scratch_len(self.program.output_size()))
            }),
            lanes: self.lanes.as_ref().map(|lanes| Lanes {
                lanes: lanes.lanes,
                block: move |x: &[f32], y: &mut [f32], s: &mut [f32]| {
                    lanes.run_row(x, y, s, &self.weights.cores, &self.prep)
                },
                scratch: 2 * lanes.scratch_len,
            }),
        }
    }

    /// y = x W^T + b for x `[B, N]` and y `[B, M]`.
    pub fn forward(&self, x: &[f32], y: &mut [f32]) -> Result<(), ShapeError> {
        self.kernel().forward(x, y)
    }

    /// The same, split over threads.
    pub fn forward_par(&self, x: &[f32], y: &mut [f32], threads: Threads) -> Result<(), ShapeError> {
        self.kernel().forward_par(x, y, threads)
    }

    /// The training kernels of this layer with `backward` (its backward program,
    /// `kcp_ir::lower_backward`); `core_lens` the lengths of its cores.
    fn train_kernel<'a>(
        &'a self,
        backward: &'a BackwardProgram,
        core_lens: &'a [usize],
    ) -> Result<TrainKernel<'a, impl KeepFn + 'a, impl BackFn + 'a>, ShapeError> {
        let p = &self.program;
        if backward.in_shape != p.in_shape || backward.out_shape != p.out_shape {
            return Err(ShapeError::OtherLayer { what: "shapes" });
        }
        if backward.cores != p.cores {
            return Err(ShapeError::OtherLayer { what: "cores" });
        }
        backward.check(p)?;
        let factors = &self.weights.cores;
        Ok(TrainKernel {
            input: p.input_size(),
            output: p.output_size(),
            scratch: 2 * p.scratch_len,
            kept: backward.kept_len(),
            temps: backward.temps_len(),
            dx: backward.dx,
            core_lens,
            bias: self.weights.bias.as_deref(),
            macs_per_row: [p.macs_per_row, backward.macs_per_row],
            keep: move |x: &[f32], y: &mut [f32], s: &mut [f32], kept: &mut [f32]| {
                p.run_row_keeping(x, y, s, factors, &self.prep, &mut |number, out| backward.keep(number, out, kept));
            },
            back: move |x: &[f32], dy: &[f32], kept: &[f32], t: &mut [f32], g: &mut [Vec<f32>], dx: &mut [f32]| {
                backward.run_row(x, dy, kept, factors, t, g, dx);
            },
        })
    }

    /// y = x W^T + b for x `[B, N]`, keeping in `trace` the forward intermediates that
    /// `backward` (the layer's backward program, `kcp_ir::lower_backward`) reads, on the
    /// threads `threads` allows.
    pub fn forward_train(
        &self,
        backward: &BackwardProgram,
        x: &[f32],
        y: &mut [f32],
        trace: &mut Trace,
        threads: Threads,
    ) -> Result<(), Error> {
        let core_lens = self.core_lens();
        let kernel = self.train_kernel(backward, &core_lens)?;
        Ok(kernel.forward(x, y, trace, threads)?)
    }

    /// The backward pass of the last [`Executor::forward_train`] over x (`trace`) for dy
    /// `[B, M]` = dL/dy: dx `[B, N]` written if given (`backward` must compute it), the
    /// gradients of the cores and the bias accumulated into `grads` (shaped like the
    /// weights). `threads` as in `forward_train`; the gradients are the same bits on any number of threads.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        backward: &BackwardProgram,
        x: &[f32],
        dy: &[f32],
        trace: &mut Trace,
        dx: Option<&mut [f32]>,
        grads: &mut Weights,
        threads: Threads,
    ) -> Result<(), Error> {
        let core_lens = self.core_lens();
        let kernel = self.train_kernel(backward, &core_lens)?;
        kernel.backward(x, dy, trace, dx, grads, threads)
    }

    /// The gradients of `L = sum(dy * y)` for x `[B, N]` and dy `[B, M]`: a training forward
    /// pass and the backward pass ([`Executor::forward_train`], [`Executor::backward`]) with a
    /// fresh recomputing trace ([`Trace::recomputing`]: nothing kept across rows), returned as
    /// weights of the layer's own shapes; dx written if given.
    pub fn gradients(
        &self,
        backward: &BackwardProgram,
        x: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        threads: Threads,
    ) -> Result<Weights, Error> {
        let mut trace = Trace::recomputing();
        let (n, m) = (self.program.input_size(), self.program.output_size());
        if n == 0 || !x.len().is_multiple_of(n) {
            return Err(ShapeError::Input { len: x.len(), input: n }.into());
        }
        let mut y = vec![0.0f32; x.len() / n * m];
        self.forward_train(backward, x, &mut y, &mut trace, threads)?;
        let bias = self.weights.bias.as_ref().map(|b| b.len());
        let mut grads = Weights::zeros(&self.program.cores, bias);
        self.backward(backward, x, dy, &mut trace, dx, &mut grads, threads)?;
        Ok(grads)
    }
}

/// A recurrent layer (LSTM or GRU) whose input projection is an [`Executor`].
#[derive(Clone, Debug)]
pub struct RecurrentExecutor {
    input: Executor,
    cell: Recurrent,
}

impl RecurrentExecutor {
    /// The layer from its parts; the projection's output size must be G*H and it must have
    /// a bias (`bias_ih`).
    pub fn new(input: Executor, cell: Recurrent) -> Result<RecurrentExecutor, Error> {
        let gates = cell.kind().gates() * cell.hidden();
        if input.program.output_size() != gates || input.weights.bias.is_none() {
            return Err(Error::TensorShape {
                name: "bias_ih".into(),
                expected: vec![gates],
                found: input.weights.bias.as_ref().map_or(vec![], |b| vec![b.len()]),
            });
        }
        Ok(RecurrentExecutor { input, cell })
    }

    /// The same layer with its input projection running whole blocks of rows through `lanes`
    /// (see [`Executor::interleaved`]).
    pub fn interleaved(self, lanes: Option<Program>) -> RecurrentExecutor {
        RecurrentExecutor { input: self.input.interleaved(lanes), ..self }
    }

    /// The input projection.
    pub fn input(&self) -> &Executor {
        &self.input
    }

    /// The hidden-to-hidden cell.
    pub fn cell(&self) -> &Recurrent {
        &self.cell
    }

    /// Run x `[T, B, N]` from `state` (left final), writing all hidden states to `hs` `[T, B, H]`.
    pub fn forward(&self, x: &[f32], batch: usize, hs: &mut [f32], state: &mut State) -> Result<(), ShapeError> {
        let project = |x: &[f32], p: &mut [f32]| self.input.forward(x, p);
        self.cell.sequence(project, self.input.program.input_size(), x, batch, hs, state, false)
    }

    /// The same, threaded: the projection over T*B rows, the recurrence over batch rows.
    pub fn forward_par(&self, x: &[f32], batch: usize, hs: &mut [f32], state: &mut State) -> Result<(), ShapeError> {
        let project = |x: &[f32], p: &mut [f32]| self.input.forward_par(x, p, Threads::All);
        self.cell.sequence(project, self.input.program.input_size(), x, batch, hs, state, true)
    }

    /// The gradients of `L = sum over t of sum(dh[t] * h[t])` for x `[T, B, N]` from a zero
    /// state and dh `[T, B, H]`: the forward pass with its tape, backpropagation through time
    /// ([`Recurrent::backward`]), then the input projection's backward over all T*B rows at
    /// once ([`Executor::backward`], `backward` its program). Returns the projection's
    /// gradients (its bias is `bias_ih`) and the cell's; dx (`[T, B, N]`) if given.
    pub fn gradients(
        &self,
        backward: &BackwardProgram,
        x: &[f32],
        batch: usize,
        dh: &[f32],
        dx: Option<&mut [f32]>,
        threads: Threads,
    ) -> Result<(Weights, CellGrads), Error> {
        let (n, g) = (self.input.program.input_size(), self.cell.kind().gates() * self.cell.hidden());
        // The trace goes from the projection's forward pass to its backward pass.
        let trace = std::cell::RefCell::new(Trace::recomputing());
        self.cell.sequence_gradients(
            n,
            x,
            batch,
            dh,
            |x, proj| self.input.forward_train(backward, x, proj, &mut trace.borrow_mut(), threads),
            |dproj| {
                let mut input = Weights::zeros(&self.input.program.cores, Some(g));
                self.input.backward(backward, x, dproj, &mut trace.borrow_mut(), dx, &mut input, threads)?;
                Ok(input)
            },
        )
    }
}
