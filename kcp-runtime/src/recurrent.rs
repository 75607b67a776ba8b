//! Recurrent cells on a KCP input projection: LSTM and GRU with PyTorch's semantics and weight
//! layout (kcp-notes.md section 3). The input-to-hidden weight is a KCP layer (its bias is
//! `bias_ih`); the hidden-to-hidden weight `weight_hh` `[G*H, H]` is dense, with `bias_hh`.
//!
//! A sequence runs in two phases: one batched KCP call projects all T*B input rows at once, then
//! the recurrence walks the time steps, fusing the dense hidden matvec with the gate
//! nonlinearities row by row, with no allocation per step. Batch rows are independent, so the
//! threaded variant splits them over threads at every step; a single row splits its hidden
//! units in two instead (each thread reads its half of `weight_hh`, which then can stay in its
//! core's cache from step to step).

use rayon::prelude::*;

use crate::weights::{check_values, uniform, TensorFile};
use crate::{Error, ShapeError};

/// Which cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// Gates `[i, f, g, o]`, state (h, c).
    Lstm,
    /// Gates `[r, z, n]`, state h.
    Gru,
}

impl CellKind {
    /// G, the number of gates stacked along the projection's output.
    pub fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }
}

/// The recurrent state of a batch: h `[B, H]`, and c `[B, H]` for an LSTM (empty for a GRU).
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    /// Hidden state.
    pub h: Vec<f32>,
    /// Cell state (LSTM only).
    pub c: Vec<f32>,
}

impl State {
    /// The zero state of a batch.
    pub fn zeros(kind: CellKind, batch: usize, hidden: usize) -> State {
        let c = if kind == CellKind::Lstm { vec![0.0; batch * hidden] } else { Vec::new() };
        State { h: vec![0.0; batch * hidden], c }
    }
}

/// The hidden-to-hidden half of a cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Recurrent {
    kind: CellKind,
    hidden: usize,
    weight_hh: Vec<f32>,
    bias_hh: Vec<f32>,
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

impl Recurrent {
    /// A cell from `weight_hh` `[G*H, H]` and `bias_hh` `[G*H]`.
    pub fn new(kind: CellKind, hidden: usize, weight_hh: Vec<f32>, bias_hh: Vec<f32>) -> Result<Recurrent, Error> {
        let g = kind.gates() * hidden;
        check_values("weight_hh", &weight_hh, &[g, hidden])?;
        check_values("bias_hh", &bias_hh, &[g])?;
        Ok(Recurrent { kind, hidden, weight_hh, bias_hh })
    }

    /// A seeded random cell, uniform in ±1/sqrt(H) like PyTorch's initialisation.
    pub fn random(kind: CellKind, hidden: usize, seed: u64) -> Recurrent {
        let g = kind.gates() * hidden;
        let (mut state, scale) = (seed, 1.0 / (hidden as f64).sqrt());
        let weight_hh = (0..g * hidden).map(|_| uniform(&mut state, scale)).collect();
        let bias_hh = (0..g).map(|_| uniform(&mut state, scale)).collect();
        Recurrent { kind, hidden, weight_hh, bias_hh }
    }

    /// Read `{prefix}weight_hh` and `{prefix}bias_hh` from a weight file.
    pub fn load(file: &TensorFile, prefix: &str, kind: CellKind, hidden: usize) -> Result<Recurrent, Error> {
        let g = kind.gates() * hidden;
        let weight_hh = file.tensor(&format!("{prefix}weight_hh"), &[g, hidden])?;
        let bias_hh = file.tensor(&format!("{prefix}bias_hh"), &[g])?;
        Recurrent::new(kind, hidden, weight_hh, bias_hh)
    }

    /// The cell kind.
    pub fn kind(&self) -> CellKind {
        self.kind
    }
    /// H.
    pub fn hidden(&self) -> usize {
        self.hidden
    }
    /// `weight_hh`, `[G*H, H]`.
    pub fn weight_hh(&self) -> &[f32] {
        &self.weight_hh
    }
    /// `bias_hh`, `[G*H]`.
    pub fn bias_hh(&self) -> &[f32] {
        &self.bias_hh
    }

    /// Run a whole sequence: x `[T, B, N]` projected in one call of `project` (x W_ih^T + b_ih
    /// for T*B rows), then the recurrence from `state` (left holding the final state), every
    /// hidden state written to `hs` `[T, B, H]`.
    #[allow(clippy::too_many_arguments)] // the buffers of a sequence, each checked
    pub fn sequence(
        &self,
        project: impl FnOnce(&[f32], &mut [f32]) -> Result<(), ShapeError>,
        input: usize,
        x: &[f32],
        batch: usize,
        hs: &mut [f32],
        state: &mut State,
        parallel: bool,
    ) -> Result<(), ShapeError> {
        let row = batch * input;
        if batch == 0 || x.len() % row != 0 {
            return Err(ShapeError::Sequence { len: x.len(), batch, input });
        }
        let steps = x.len() / row;
        self.check(steps, batch, hs, state)?;
        let mut proj = vec![0.0; steps * batch * self.kind.gates() * self.hidden];
        project(x, &mut proj)?;
        self.run(&proj, batch, hs, state, parallel);
        Ok(())
    }

    /// Check the buffers of a sequence of `steps` x `batch` rows.
    pub fn check(&self, steps: usize, batch: usize, hs: &[f32], state: &State) -> Result<(), ShapeError> {
        let bh = batch * self.hidden;
        let expect = |name, len: usize, expected| {
            if len == expected {
                Ok(())
            } else {
                Err(ShapeError::Buffer { name, len, expected })
            }
        };
        expect("h_all", hs.len(), steps * bh)?;
        expect("h", state.h.len(), bh)?;
        expect("c", state.c.len(), if self.kind == CellKind::Lstm { bh } else { 0 })
    }

    /// Run the recurrence over projected inputs `proj` `[T, B, G*H]` (x W_ih^T + b_ih), writing
    /// every hidden state to `hs` `[T, B, H]` and leaving the final state in `state`. The gate
    /// buffer of each row lives in the per-thread scratch, so no step allocates.
    pub fn run(&self, proj: &[f32], batch: usize, hs: &mut [f32], state: &mut State, parallel: bool) {
        let (h, g) = (self.hidden, self.kind.gates() * self.hidden);
        if h == 0 || batch == 0 {
            return; // Nothing to compute (and no rows to cut the buffers into).
        }
        let lstm = self.kind == CellKind::Lstm;
        let c_width = if lstm { h } else { 0 };
        for (proj_t, hs_t) in proj.chunks_exact(batch * g).zip(hs.chunks_exact_mut(batch * h)) {
            let rows = proj_t.chunks_exact(g).zip(hs_t.chunks_exact_mut(h)).zip(state.h.chunks_exact_mut(h));
            let split = parallel && batch == 1 && ((g * h) as u64) >= crate::driver::PAR_MIN_MACS;
            let step = |((x, out), h_row): ((&[f32], &mut [f32]), &mut [f32]), c_row: &mut [f32]| {
                if split {
                    self.step_halves(x, h_row, c_row, out);
                } else {
                    crate::driver::with_scratch(g, |gates| self.units(x, h_row, c_row, out, gates, 0));
                }
                h_row.copy_from_slice(out);
            };
            if lstm {
                let rows = rows.zip(state.c.chunks_exact_mut(c_width));
                if parallel && batch > 1 {
                    rows.par_bridge().for_each(|(row, c)| step(row, c));
                } else {
                    rows.for_each(|(row, c)| step(row, c));
                }
            } else if parallel && batch > 1 {
                rows.par_bridge().for_each(|row| step(row, &mut []));
            } else {
                rows.for_each(|row| step(row, &mut []));
            }
        }
    }

    /// One row of one step on two threads: this thread the first half of the hidden units, a
    /// thread of the pool the second (each computes the same gates as [`Recurrent::units`] over
    /// the whole row would, so the result is the same to the bit).
    fn step_halves(&self, x: &[f32], h_prev: &[f32], c_row: &mut [f32], out: &mut [f32]) {
        let (half, gates) = (self.hidden / 2, self.kind.gates());
        let (out0, out1) = out.split_at_mut(half);
        let (c0, c1) = c_row.split_at_mut(c_row.len().min(half));
        let units = |c: &mut [f32], out: &mut [f32], first: usize| {
            crate::driver::with_scratch(gates * out.len(), |g| self.units(x, h_prev, c, out, g, first));
        };
        crate::fork::pair(|| units(c1, out1, half), || units(c0, out0, 0));
    }

    /// The hidden units `first..first + out.len()` of one row of one step: their gates
    /// (`W_hh h + b_hh`, into `gates`, `G * out.len()`), then their cell update into `out` (and
    /// `c`, the same units of the cell state; empty for a GRU), fused.
    fn units(&self, x: &[f32], h_prev: &[f32], c: &mut [f32], out: &mut [f32], gates: &mut [f32], first: usize) {
        let (hidden, len) = (self.hidden, out.len());
        for (q, block) in gates.chunks_exact_mut(len).enumerate() {
            let rows = q * hidden + first..q * hidden + first + len;
            let weights = self.weight_hh[rows.start * hidden..rows.end * hidden].chunks_exact(hidden);
            for ((gate, w), b) in block.iter_mut().zip(weights).zip(&self.bias_hh[rows]) {
                *gate = crate::kernels::dot(w, h_prev) + b;
            }
        }
        let gate = |q: usize, j: usize| x[q * hidden + first + j] + gates[q * len + j];
        match self.kind {
            CellKind::Lstm => {
                for j in 0..len {
                    let (i, f, g, o) =
                        (sigmoid(gate(0, j)), sigmoid(gate(1, j)), gate(2, j).tanh(), sigmoid(gate(3, j)));
                    let cell = f * c[j] + i * g;
                    c[j] = cell;
                    out[j] = o * cell.tanh();
                }
            }
            CellKind::Gru => {
                for j in 0..len {
                    let (r, z) = (sigmoid(gate(0, j)), sigmoid(gate(1, j)));
                    let n = (x[2 * hidden + first + j] + r * gates[2 * len + j]).tanh();
                    out[j] = (1.0 - z) * n + z * h_prev[first + j];
                }
            }
        }
    }
}

/// Read a recurrent layer's weights with kcp-notes.md's names: `weight_ih.factor.{d}` (shapes
/// `factor_shapes`), `bias_ih`, `weight_hh` and `bias_hh`.
pub fn load_recurrent(
    path: &std::path::Path,
    factor_shapes: &[[usize; 3]],
    kind: CellKind,
    hidden: usize,
) -> Result<(crate::Weights, Recurrent), Error> {
    let gates = kind.gates() * hidden;
    let weights = crate::Weights::load(path, "weight_ih.", factor_shapes, None)?;
    let file = TensorFile::read(path)?;
    let bias = file.tensor("bias_ih", &[gates])?;
    let cell = Recurrent::load(&file, "", kind, hidden)?;
    Ok((crate::Weights { factors: weights.factors, bias: Some(bias) }, cell))
}
