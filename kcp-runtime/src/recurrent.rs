//! Recurrent cells on a KCP input projection: LSTM and GRU with PyTorch's semantics and weight
//! layout (kcp-notes.md section 3). The input-to-hidden weight is a KCP layer (its bias is
//! `bias_ih`); the hidden-to-hidden weight `weight_hh` `[G*H, H]` is dense, with `bias_hh`.
//!
//! A sequence runs in two phases: one batched KCP call projects all T*B input rows at once, then
//! the recurrence walks the time steps, fusing the dense hidden matvec with the gate
//! nonlinearities row by row, with no allocation per step. Batch rows are independent, so the
//! threaded variant splits them over threads at every step.

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
        let lstm = self.kind == CellKind::Lstm;
        let c_width = if lstm { h } else { 0 };
        for (proj_t, hs_t) in proj.chunks_exact(batch * g).zip(hs.chunks_exact_mut(batch * h)) {
            let rows = proj_t.chunks_exact(g).zip(hs_t.chunks_exact_mut(h)).zip(state.h.chunks_exact_mut(h));
            let step = |((x, out), h_row): ((&[f32], &mut [f32]), &mut [f32]), c_row: &mut [f32]| {
                crate::driver::with_scratch(g, |gates| self.step(x, h_row, c_row, out, gates));
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

    /// One row of one step: `gates = W_hh h + b_hh`, then the cell update, fused.
    fn step(&self, x: &[f32], h_row: &mut [f32], c_row: &mut [f32], out: &mut [f32], gates: &mut [f32]) {
        let hidden = self.hidden;
        for ((gate, w), b) in gates.iter_mut().zip(self.weight_hh.chunks_exact(hidden)).zip(&self.bias_hh) {
            *gate = crate::kernels::dot(w, h_row) + b;
        }
        match self.kind {
            CellKind::Lstm => {
                for k in 0..hidden {
                    let i = sigmoid(x[k] + gates[k]);
                    let f = sigmoid(x[hidden + k] + gates[hidden + k]);
                    let g = (x[2 * hidden + k] + gates[2 * hidden + k]).tanh();
                    let o = sigmoid(x[3 * hidden + k] + gates[3 * hidden + k]);
                    let c = f * c_row[k] + i * g;
                    c_row[k] = c;
                    out[k] = o * c.tanh();
                }
            }
            CellKind::Gru => {
                for k in 0..hidden {
                    let r = sigmoid(x[k] + gates[k]);
                    let z = sigmoid(x[hidden + k] + gates[hidden + k]);
                    let n = (x[2 * hidden + k] + r * gates[2 * hidden + k]).tanh();
                    out[k] = (1.0 - z) * n + z * h_row[k];
                }
            }
        }
        h_row.copy_from_slice(out);
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
