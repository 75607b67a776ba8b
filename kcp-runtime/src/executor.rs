//! The generic executor: runs any [`Program`] on weights known only at run time. The command line
//! and users with run-time shapes use it; generated kernels are its specialised twins.

use crate::driver::{Lanes, NoHalves, RowFn, RowKernel};
use crate::recurrent::load_recurrent;
use crate::{CellKind, Error, Program, Recurrent, ShapeError, State, Weights};

/// A KCP layer executed from its program.
#[derive(Clone, Debug)]
pub struct Executor {
    program: Program,
    /// The same plan over interleaved rows, run on whole blocks of the batch.
    lanes: Option<Program>,
    weights: Weights,
    prep: Vec<Vec<f32>>,
}

impl Executor {
    /// Check the weights against the program and compute its pre-products.
    pub fn new(program: Program, weights: Weights) -> Result<Executor, Error> {
        let bias_len = weights.bias.as_ref().map(|_| program.output_size());
        weights.check(&program.factor_shapes(), bias_len)?;
        let prep = program.prepare(&weights.factors);
        Ok(Executor { program, lanes: None, weights, prep })
    }

    /// The same executor running whole blocks of rows through `lanes`, the same plan lowered
    /// for interleaved rows (its pre-products must be the same); `None` leaves it row by row.
    ///
    /// # Panics
    /// If `lanes` is not the program's layer (its shapes or pre-products differ) or runs one
    /// row at a time.
    pub fn interleaved(self, lanes: Option<Program>) -> Executor {
        if let Some(lanes) = &lanes {
            assert!(
                lanes.lanes > 1
                    && lanes.factor_shapes() == self.program.factor_shapes()
                    && lanes.prep == self.program.prep,
                "an interleaved program of another layer"
            );
        }
        Executor { lanes, ..self }
    }

    /// The program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The weights.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    fn kernel(&self) -> RowKernel<'_, impl RowFn + '_, NoHalves, impl RowFn + '_> {
        RowKernel {
            input: self.program.input_size(),
            output: self.program.output_size(),
            scratch: 2 * self.program.scratch_len,
            macs_per_row: self.program.macs_per_row,
            bias: self.weights.bias.as_deref(),
            row: move |x: &[f32], y: &mut [f32], s: &mut [f32]| {
                self.program.run_row(x, y, s, &self.weights.factors, &self.prep)
            },
            halves: None,
            lanes: self.lanes.as_ref().map(|lanes| Lanes {
                lanes: lanes.lanes,
                block: move |x: &[f32], y: &mut [f32], s: &mut [f32]| {
                    lanes.run_row(x, y, s, &self.weights.factors, &self.prep)
                },
                scratch: 2 * lanes.scratch_len,
            }),
        }
    }

    /// y = x W^T + b for x `[B, N]` and y `[B, M]`.
    pub fn forward(&self, x: &[f32], y: &mut [f32]) -> Result<(), ShapeError> {
        self.kernel().forward(x, y)
    }

    /// The same, split over threads (`threads` = 0: all of rayon's pool).
    pub fn forward_par(&self, x: &[f32], y: &mut [f32], threads: usize) -> Result<(), ShapeError> {
        self.kernel().forward_par(x, y, threads)
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

    /// Load a layer saved with the names of docs/files.md: `weight_ih.factor.{d}`, `weight_hh`,
    /// `bias_ih`, `bias_hh`.
    pub fn load(
        path: &std::path::Path,
        program: Program,
        kind: CellKind,
        hidden: usize,
    ) -> Result<RecurrentExecutor, Error> {
        let (weights, cell) = load_recurrent(path, &program.factor_shapes(), kind, hidden)?;
        RecurrentExecutor::new(Executor::new(program, weights)?, cell)
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
        let project = |x: &[f32], p: &mut [f32]| self.input.forward_par(x, p, 0);
        self.cell.sequence(project, self.input.program.input_size(), x, batch, hs, state, true)
    }
}
