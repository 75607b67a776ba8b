//! Backpropagation through time for the cells of [`Recurrent`]: a forward pass that keeps what
//! the backward pass needs ([`Tape`]), and the backward pass, which accumulates the gradients of
//! `weight_hh` and `bias_hh` ([`CellGrads`]) and writes the gradient of the projected inputs
//! `proj` (`x W_ih^T + b_ih` for every step), `[T, B, G*H]`: the T*B rows that the KCP input
//! projection's backward then takes as one batch, as its forward took x (and whose column sums
//! are the gradient of `bias_ih`).
//!
//! The equations are PyTorch's (docs/format.md). LSTM, gates i, f, g, o of `a = proj + W_hh h +
//! b_hh`: `c' = f c + i g`, `h' = o tanh(c')`. GRU, `r = s(x_r + W_hr h + b_hr)`, `z = s(x_z +
//! W_hz h + b_hz)`, `n = tanh(x_n + r (W_hn h + b_hn))`, `h' = (1 - z) n + z h`.

use kcp_core::kernels::{dispatch, gemm, Gemm};

use crate::recurrent::{for_blocks, pieces, rows_per_block, tanh_one};
use crate::{CellKind, Error, Recurrent, ShapeError, State, Threads, Weights};

/// What a training forward pass keeps, per step and batch row: the activated gates (`[T, B,
/// G*H]`), the LSTM's cell states after each step (`[T, B, H]`), the GRU's `W_hn h + b_hn`
/// (`[T, B, H]`), and the initial state.
#[derive(Clone, Debug, PartialEq)]
pub struct Tape {
    steps: usize,
    batch: usize,
    gates: Vec<f32>,
    /// LSTM: c after each step; GRU: `W_hn h + b_hn` of each step.
    second: Vec<f32>,
    initial: State,
    /// The threads the pass was given, which the backward pass takes too.
    threads: Threads,
}

/// The gradients of a cell's hidden-to-hidden half, of the shapes of its weights.
#[derive(Clone, Debug, PartialEq)]
pub struct CellGrads {
    /// dL/dW_hh, `[G*H, H]`.
    pub weight_hh: Vec<f32>,
    /// dL/db_hh, `[G*H]`.
    pub bias_hh: Vec<f32>,
}

impl CellGrads {
    /// Zero gradients for `cell`.
    pub fn zeros(cell: &Recurrent) -> CellGrads {
        CellGrads { weight_hh: vec![0.0; cell.weight_hh().len()], bias_hh: vec![0.0; cell.bias_hh().len()] }
    }
}

impl Tape {
    /// The time steps it covers.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The batch rows of each step.
    pub fn batch(&self) -> usize {
        self.batch
    }
}

impl Recurrent {
    /// The gradients of `L = sum over t of sum(dh[t] * h[t])` for x `[T, B, N]` from a zero
    /// state and dh `[T, B, H]`, with any input projection: `project(x, proj)` is its training
    /// forward pass over all T*B rows, `back(dproj)` its backward pass, which returns its
    /// gradients (and writes dx if it was asked to). Between them, the taped recurrence and
    /// backpropagation through time. Returns the projection's gradients and the cell's.
    pub fn sequence_gradients(
        &self,
        input: usize,
        x: &[f32],
        batch: usize,
        dh: &[f32],
        project: impl FnOnce(&[f32], &mut [f32]) -> Result<(), Error>,
        back: impl FnOnce(&[f32]) -> Result<Weights, Error>,
    ) -> Result<(Weights, CellGrads), Error> {
        let (hidden, g) = (self.hidden(), self.kind().gates() * self.hidden());
        let row = batch.saturating_mul(input);
        if batch == 0 || row == 0 || !x.len().is_multiple_of(row) {
            return Err(ShapeError::Sequence { len: x.len(), batch, input }.into());
        }
        let steps = x.len() / row;
        if dh.len() != steps * batch * hidden {
            return Err(ShapeError::Buffer { name: "dh", len: dh.len(), expected: steps * batch * hidden }.into());
        }
        let mut proj = vec![0.0f32; steps * batch * g];
        project(x, &mut proj)?;
        let mut hs = vec![0.0f32; steps * batch * hidden];
        let mut state = State::zeros(self.kind(), batch, hidden);
        let tape = self.run_taped(&proj, batch, &mut hs, &mut state, Threads::All)?;
        let mut cell = CellGrads::zeros(self);
        let mut dproj = vec![0.0f32; proj.len()];
        self.backward(&tape, &hs, dh, &mut dproj, &mut cell)?;
        Ok((back(&dproj)?, cell))
    }

    /// [`Recurrent::run`], keeping what [`Recurrent::backward`] needs: the same hidden states,
    /// to the bit, written to `hs`, and `state` left holding the final state. A step of
    /// [`crate::PAR_MIN_MACS`] or more cuts its rows into a block per thread of `threads` (the
    /// same sums either way), and so does the backward pass of the tape.
    pub fn run_taped(
        &self,
        proj: &[f32],
        batch: usize,
        hs: &mut [f32],
        state: &mut State,
        threads: Threads,
    ) -> Result<Tape, ShapeError> {
        let (h, g) = (self.hidden(), self.kind().gates() * self.hidden());
        let steps = hs.len().checked_div(batch.saturating_mul(h)).unwrap_or(0);
        self.check(steps, batch, hs, state)?;
        let expected = steps * batch * g;
        if proj.len() != expected {
            return Err(ShapeError::Buffer { name: "proj", len: proj.len(), expected });
        }
        let initial = state.clone();
        let (gates, second) = (vec![0.0; steps * batch * g], vec![0.0; steps * batch * h]);
        let mut tape = Tape { steps, batch, gates, second, initial, threads };
        if h == 0 || batch == 0 {
            return Ok(tape);
        }
        let block = rows_per_block(batch, (batch * g * h) as u64, threads);
        for t in 0..steps {
            let rows = t * batch..(t + 1) * batch;
            let blocks = proj[rows.start * g..rows.end * g]
                .chunks(block * g)
                .zip(tape.gates[rows.start * g..rows.end * g].chunks_mut(block * g))
                .zip(hs[rows.start * h..rows.end * h].chunks_mut(block * h))
                .zip(tape.second[rows.start * h..rows.end * h].chunks_mut(block * h))
                .zip(state.h.chunks_mut(block * h).zip(pieces(&mut state.c, block * h)));
            for_blocks(blocks, block < batch, |((((x, gates), out), second), (h, c))| {
                self.step_block(x, h, c, out, gates, Some(second))
            });
        }
        Ok(tape)
    }

    /// Backpropagation through time over a taped sequence: given `dh` (`[T, B, H]`, dL/dh_t of
    /// every step, added to what flows back from later steps) and the hidden states `hs` the
    /// taped pass wrote, accumulate dL/dW_hh and dL/db_hh into `grads` and write dL/dproj to
    /// `dproj` (`[T, B, G*H]`). The gradient of the initial state is not kept
    /// ([`Recurrent::backward_through`] returns it).
    pub fn backward(
        &self,
        tape: &Tape,
        hs: &[f32],
        dh: &[f32],
        dproj: &mut [f32],
        grads: &mut CellGrads,
    ) -> Result<(), ShapeError> {
        self.backward_through(tape, hs, dh, None, dproj, grads).map(|_| ())
    }

    /// [`Recurrent::backward`], with the gradient of the final cell state too (`dc_last`,
    /// `[B, H]`, an LSTM's; None for none), returning the gradient of the initial state (its
    /// `c` empty for a GRU).
    pub fn backward_through(
        &self,
        tape: &Tape,
        hs: &[f32],
        dh: &[f32],
        dc_last: Option<&[f32]>,
        dproj: &mut [f32],
        grads: &mut CellGrads,
    ) -> Result<State, ShapeError> {
        let (hidden, g) = (self.hidden(), self.kind().gates() * self.hidden());
        let (steps, batch) = (tape.steps, tape.batch);
        let lstm = self.kind() == CellKind::Lstm;
        for (name, len, expected) in [
            ("hs", hs.len(), steps * batch * hidden),
            ("dh", dh.len(), steps * batch * hidden),
            ("dproj", dproj.len(), steps * batch * g),
            ("weight_hh gradient", grads.weight_hh.len(), g * hidden),
            ("bias_hh gradient", grads.bias_hh.len(), g),
            ("dc_last", dc_last.map_or(0, <[f32]>::len), if dc_last.is_some() && lstm { batch * hidden } else { 0 }),
        ] {
            if len != expected {
                return Err(ShapeError::Buffer { name, len, expected });
            }
        }
        // What flows back into h and c of the step before, per batch row.
        let mut dh_next = vec![0.0f32; batch * hidden];
        let mut dc_next = match dc_last {
            Some(dc) => dc.to_vec(),
            None => vec![0.0f32; if lstm { batch * hidden } else { 0 }],
        };
        if steps == 0 || batch == 0 || hidden == 0 {
            return Ok(State { h: dh_next, c: dc_next });
        }
        // The gradient of the pre-activations that W_hh h_{t-1} + b_hh enters, per row: an
        // LSTM's is dproj itself; a GRU's candidate gate differs (r scales it).
        let gru = self.kind() == CellKind::Gru;
        let mut da_hh_gru = vec![0.0f32; if gru { steps * batch * g } else { 0 }];
        // Blocks of rows per step, one per thread where the step's work pays for them.
        let block = rows_per_block(batch, (batch * g * hidden) as u64, tape.threads);
        for t in (0..steps).rev() {
            let step = t * batch;
            let da_gru: &mut [f32] = if gru { &mut da_hh_gru[step * g..][..batch * g] } else { &mut [] };
            let blocks = dh_next
                .chunks_mut(block * hidden)
                .zip(pieces(&mut dc_next, block * hidden))
                .zip(dproj[step * g..][..batch * g].chunks_mut(block * g))
                .zip(pieces(da_gru, block * g))
                .enumerate();
            for_blocks(blocks, block < batch, |(k, (((dh_rows, dc_rows), da_rows), da_hh_rows))| {
                // Compiled for the kernel path in use (the gate formulas at its width).
                dispatch(
                    #[inline(always)]
                    || {
                        for (i, dh_row) in dh_rows.chunks_exact_mut(hidden).enumerate() {
                            let (b, row) = (k * block + i, step + k * block + i);
                            dh_row.iter_mut().zip(&dh[row * hidden..][..hidden]).for_each(|(a, d)| *a += d);
                            let gates = &tape.gates[row * g..][..g];
                            let second = &tape.second[row * hidden..][..hidden];
                            let da = &mut da_rows[i * g..][..g];
                            if gru {
                                let h_prev = if t == 0 {
                                    &tape.initial.h[b * hidden..][..hidden]
                                } else {
                                    &hs[(row - batch) * hidden..][..hidden]
                                };
                                gru_step(gates, second, h_prev, dh_row, da, &mut da_hh_rows[i * g..][..g]);
                            } else {
                                let c_prev = if t == 0 {
                                    &tape.initial.c[b * hidden..][..hidden]
                                } else {
                                    &tape.second[(row - batch) * hidden..][..hidden]
                                };
                                lstm_step(gates, second, c_prev, dh_row, &mut dc_rows[i * hidden..][..hidden], da);
                            }
                        }
                    },
                );
                // dh_{t-1} += da_hh W_hh for the block's rows, one product.
                let da_hh = if gru { &*da_hh_rows } else { &*da_rows };
                let rows = dh_rows.len() / hidden;
                gemm(dh_rows, self.weight_hh(), da_hh, Gemm::row_major(rows, g, hidden).adding());
            });
        }
        // dW_hh += sum over rows of da_hh^T h_{t-1}: one product over the rows of the first
        // step (from the initial state) and one over the rest, the rows of dW_hh shared out
        // between the threads.
        let da_hh = if gru { &da_hh_gru[..] } else { &dproj[..] };
        let (first, rest) = da_hh.split_at(batch * g);
        let previous = [(first, &tape.initial.h[..]), (rest, &hs[..hs.len() - batch * hidden])];
        let part = rows_per_block(g, (steps * batch * g * hidden) as u64, tape.threads);
        for_blocks(grads.weight_hh.chunks_mut(part * hidden).enumerate(), part < g, |(k, out)| {
            let rows = out.len() / hidden;
            for (da_hh, h_prev) in previous {
                let depth = h_prev.len() / hidden;
                let product = Gemm { w_row: 1, w_col: g, ..Gemm::row_major(rows, depth, hidden).adding() };
                gemm(out, h_prev, da_hh.get(k * part..).unwrap_or_default(), product);
            }
        });
        for row in da_hh.chunks_exact(g) {
            grads.bias_hh.iter_mut().zip(row).for_each(|(b, d)| *b += d);
        }
        Ok(State { h: dh_next, c: dc_next })
    }
}

/// One LSTM row backwards: from dh (in: dL/dh_t, out: the direct part of dL/dh_{t-1}, which
/// is none: zeroed) and dc (in: from the step after, out: dL/dc_{t-1}), the gradient of the
/// pre-activations into `da`.
#[inline(always)]
fn lstm_step(gates: &[f32], c: &[f32], c_prev: &[f32], dh: &mut [f32], dc: &mut [f32], da: &mut [f32]) {
    let hidden = c.len();
    let (i, rest) = gates.split_at(hidden);
    let (f, rest) = rest.split_at(hidden);
    let (g, o) = rest.split_at(hidden);
    let (da_i, rest) = da.split_at_mut(hidden);
    let (da_f, rest) = rest.split_at_mut(hidden);
    let (da_g, da_o) = rest.split_at_mut(hidden);
    for k in 0..hidden {
        let tanh_c = tanh_one(c[k]);
        let dct = dc[k] + dh[k] * o[k] * (1.0 - tanh_c * tanh_c);
        da_o[k] = dh[k] * tanh_c * o[k] * (1.0 - o[k]);
        da_i[k] = dct * g[k] * i[k] * (1.0 - i[k]);
        da_g[k] = dct * i[k] * (1.0 - g[k] * g[k]);
        da_f[k] = dct * c_prev[k] * f[k] * (1.0 - f[k]);
        dc[k] = dct * f[k];
        dh[k] = 0.0;
    }
}

/// One GRU row backwards: from dh (in: dL/dh_t, out: its direct part through z), the gradient
/// of the projected inputs into `dx` (x_r, x_z, x_n) and of the hidden pre-activations into
/// `da_hh` (W_hr h + b_hr, W_hz h + b_hz, W_hn h + b_hn).
#[inline(always)]
fn gru_step(gates: &[f32], hn: &[f32], h_prev: &[f32], dh: &mut [f32], dx: &mut [f32], da_hh: &mut [f32]) {
    let hidden = hn.len();
    let (r, rest) = gates.split_at(hidden);
    let (z, n) = rest.split_at(hidden);
    for k in 0..hidden {
        let d = dh[k];
        let da_n = d * (1.0 - z[k]) * (1.0 - n[k] * n[k]);
        let da_z = d * (h_prev[k] - n[k]) * z[k] * (1.0 - z[k]);
        let da_r = da_n * hn[k] * r[k] * (1.0 - r[k]);
        dx[k] = da_r;
        dx[hidden + k] = da_z;
        dx[2 * hidden + k] = da_n;
        da_hh[k] = da_r;
        da_hh[hidden + k] = da_z;
        da_hh[2 * hidden + k] = da_n * r[k];
        dh[k] = d * z[k];
    }
}
