//! The generic executor: runs any [`Program`] on weights known only at run time. The command line
//! and users with run-time shapes use it; generated kernels are its specialised twins.

use rayon::prelude::*;

use crate::bptt::CellGrads;
use crate::driver::{Lanes, NoHalves, RowFn, RowKernel};
use crate::recurrent::load_recurrent;
use crate::{BackwardProgram, CellKind, Error, Program, Recurrent, ShapeError, State, Weights};

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

    /// The gradients of `L = sum(dy * y)` for x `[B, N]` and dy `[B, M]`, by `backward` (the
    /// layer's backward program, `kcp_ir::lower_backward`): returned as weights of the
    /// layer's own shapes (factors, and the bias if the layer has one), dx written to `dx`
    /// (`[B, N]`) if given (the program must compute it). Each row's forward pass runs again
    /// here, keeping the intermediates the backward program reads, so nothing of the forward
    /// pass is stored across rows. The rows are split over `threads` threads (0: all of
    /// rayon's pool), each with its own gradient, summed at the end.
    pub fn gradients(
        &self,
        backward: &BackwardProgram,
        x: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        threads: usize,
    ) -> Result<Weights, ShapeError> {
        let p = &self.program;
        let (n, m) = (p.input_size(), p.output_size());
        if backward.in_shape != p.in_shape || backward.out_shape != p.out_shape || backward.rank != p.rank {
            return Err(ShapeError::Buffer { name: "backward program", len: backward.rank, expected: p.rank });
        }
        if n == 0 || !x.len().is_multiple_of(n) {
            return Err(ShapeError::Input { len: x.len(), input: n });
        }
        let rows = x.len() / n;
        if dy.len() != rows * m {
            return Err(ShapeError::Buffer { name: "dy", len: dy.len(), expected: rows * m });
        }
        let mut none = Vec::new();
        let dx = match dx {
            Some(dx) if backward.dx && dx.len() == x.len() => dx,
            Some(dx) => return Err(ShapeError::Buffer { name: "dx", len: dx.len(), expected: x.len() }),
            None => &mut none[..],
        };
        let threads = if threads == 0 { rayon::current_num_threads() } else { threads }.clamp(1, rows.max(1));
        let chunk = rows.div_ceil(threads).max(1);
        let dx_chunk = if dx.is_empty() { 0 } else { chunk * n };
        let zero = || self.weights.factors.iter().map(|f| vec![0.0f32; f.len()]).collect::<Vec<_>>();
        let run = |(part, dx_part): (usize, &mut [f32])| {
            let (first, last) = (part * chunk, ((part + 1) * chunk).min(rows));
            let mut grads = zero();
            let mut scratch = vec![0.0f32; 2 * p.scratch_len];
            let mut y = vec![0.0f32; m];
            let mut kept: Vec<Vec<f32>> = backward.kept.iter().map(|&(_, len, _)| vec![0.0; len]).collect();
            let mut temps = backward.temps::<f32>();
            for (k, row) in (first..last).enumerate() {
                let x_row = &x[row * n..][..n];
                p.run_row_keeping(
                    x_row,
                    &mut y,
                    &mut scratch,
                    &self.weights.factors,
                    &self.prep,
                    &mut |number, out| {
                        for ((_, _, from), slot) in backward.kept.iter().zip(kept.iter_mut()) {
                            if *from == number {
                                slot.copy_from_slice(out);
                            }
                        }
                    },
                );
                let views: Vec<&[f32]> = kept.iter().map(Vec::as_slice).collect();
                let dx_row = if dx_part.is_empty() { &mut [][..] } else { &mut dx_part[k * n..][..n] };
                let factors = &self.weights.factors;
                backward.run_row(x_row, &dy[row * m..][..m], &views, factors, &mut temps, &mut grads, dx_row);
            }
            grads
        };
        let parts: Vec<(usize, &mut [f32])> = if dx_chunk == 0 {
            (0..rows.div_ceil(chunk)).map(|k| (k, &mut [][..])).collect()
        } else {
            dx.chunks_mut(dx_chunk).enumerate().collect()
        };
        let partial: Vec<Vec<Vec<f32>>> =
            if threads > 1 { parts.into_par_iter().map(run).collect() } else { parts.into_iter().map(run).collect() };
        let mut factors = zero();
        for grads in partial {
            for (total, part) in factors.iter_mut().zip(grads) {
                total.iter_mut().zip(part).for_each(|(t, v)| *t += v);
            }
        }
        let bias = self.weights.bias.as_ref().map(|_| {
            let mut sum = vec![0.0f32; m];
            dy.chunks_exact(m).for_each(|row| sum.iter_mut().zip(row).for_each(|(s, v)| *s += v));
            sum
        });
        Ok(Weights { factors, bias })
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

    /// The gradients of `L = sum over t of sum(dh[t] * h[t])` for x `[T, B, N]` from a zero
    /// state and dh `[T, B, H]`: the forward pass with its tape, backpropagation through time
    /// ([`Recurrent::backward`]), then the input projection's backward over all T*B rows at
    /// once ([`Executor::gradients`], `backward` its program). Returns the projection's
    /// gradients (its bias is `bias_ih`) and the cell's; dx (`[T, B, N]`) if given.
    pub fn gradients(
        &self,
        backward: &BackwardProgram,
        x: &[f32],
        batch: usize,
        dh: &[f32],
        dx: Option<&mut [f32]>,
        threads: usize,
    ) -> Result<(Weights, CellGrads), ShapeError> {
        let (n, hidden, g) =
            (self.input.program.input_size(), self.cell.hidden(), self.cell.kind().gates() * self.cell.hidden());
        let row = batch.saturating_mul(n);
        if batch == 0 || row == 0 || !x.len().is_multiple_of(row) {
            return Err(ShapeError::Sequence { len: x.len(), batch, input: n });
        }
        let steps = x.len() / row;
        if dh.len() != steps * batch * hidden {
            return Err(ShapeError::Buffer { name: "dh", len: dh.len(), expected: steps * batch * hidden });
        }
        let mut proj = vec![0.0f32; steps * batch * g];
        self.input.forward_par(x, &mut proj, threads)?;
        let mut hs = vec![0.0f32; steps * batch * hidden];
        let mut state = State::zeros(self.cell.kind(), batch, hidden);
        let tape = self.cell.run_taped(&proj, batch, &mut hs, &mut state)?;
        let mut cell = CellGrads::zeros(&self.cell);
        let mut dproj = vec![0.0f32; proj.len()];
        self.cell.backward(&tape, &hs, dh, &mut dproj, &mut cell)?;
        let input = self.input.gradients(backward, x, &dproj, dx, threads)?;
        Ok((input, cell))
    }
}
