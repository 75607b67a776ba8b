//! The generic executor: runs any [`Program`] on weights known only at run time. The command line
//! and users with run-time shapes use it; generated kernels are its specialised twins.

use crate::driver::{RowFn, RowKernel};
use crate::{Error, Program, ShapeError, Weights};

/// A KCP layer executed from its program.
#[derive(Clone, Debug)]
pub struct Executor {
    program: Program,
    weights: Weights,
    prep: Vec<Vec<f32>>,
}

impl Executor {
    /// Check the weights against the program and compute its pre-products.
    pub fn new(program: Program, weights: Weights) -> Result<Executor, Error> {
        let bias_len = weights.bias.as_ref().map(|_| program.output_size());
        weights.check(&program.factor_shapes(), bias_len)?;
        let prep = program.prepare(&weights.factors);
        Ok(Executor { program, weights, prep })
    }

    /// The program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The weights.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    fn kernel(&self) -> RowKernel<'_, impl RowFn + '_> {
        RowKernel {
            input: self.program.input_size(),
            output: self.program.output_size(),
            scratch: 2 * self.program.scratch_len,
            macs_per_row: self.program.macs_per_row,
            bias: self.weights.bias.as_deref(),
            row: move |x: &[f32], y: &mut [f32], s: &mut [f32]| {
                self.program.run_row(x, y, s, &self.weights.factors, &self.prep)
            },
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
