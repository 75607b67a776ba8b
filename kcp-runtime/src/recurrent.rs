//! Recurrent cells on a KCP input projection: LSTM and GRU with PyTorch's semantics and weight
//! layout (docs/format.md). The input-to-hidden weight is a KCP layer (its bias is
//! `bias_ih`); the hidden-to-hidden weight `weight_hh` `[G*H, H]` is dense, with `bias_hh`.
//!
//! A sequence runs in two phases: one batched KCP call projects all T*B input rows at once, then
//! the recurrence walks the time steps: at each, one product of the batch's hidden states with
//! `weight_hh` (register blocks of dots, so that a block of rows reads the weight once), then
//! the gate nonlinearities row by row, with no allocation per step but rayon's tasks. Batch rows
//! are independent, so the threaded variant splits them into a block per thread at every step;
//! a single row splits its hidden units in two instead (each thread reads its half of
//! `weight_hh`, which then can stay in its core's cache from step to step).

use std::sync::{Mutex, PoisonError};

use kcp_core::kernels::{gemm, Gemm, Repeat};

use crate::weights::check_values;
use crate::{CellKind, Error, Rng, ShapeError, Threads};

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

/// `f` on every block: if `parallel`, this thread and as many threads of the current rayon
/// pool as there are blocks besides take blocks in turn ([`crate::fork::join`]: a caller from
/// outside the pool spins briefly for the others instead of sleeping, which a step of tens of
/// microseconds cannot afford); else in turn on this thread.
pub(crate) fn for_blocks<T: Send>(blocks: impl Iterator<Item = T>, parallel: bool, f: impl Fn(T) + Sync) {
    if !parallel {
        blocks.for_each(f);
        return;
    }
    let blocks: Vec<T> = blocks.collect();
    let helpers = blocks.len().saturating_sub(1);
    let queue = Mutex::new(blocks);
    let take = || queue.lock().unwrap_or_else(PoisonError::into_inner).pop();
    let work = || {
        while let Some(block) = take() {
            f(block);
        }
    };
    crate::fork::join(helpers, work, work);
}

/// The rows per block that a step of `batch` rows and `macs` multiply-adds is cut into: one
/// block per thread that `threads` allows where the work pays for the threads
/// ([`crate::tuning::PAR_MIN_MACS`]) and there are rows to share, else the whole batch.
pub(crate) fn rows_per_block(batch: usize, macs: u64, threads: Threads) -> usize {
    let threads = threads.count();
    if threads > 1 && batch > 1 && macs >= crate::tuning::PAR_MIN_MACS {
        batch.div_ceil(threads)
    } else {
        batch
    }
}

/// `values` in pieces of `len`, then empty ones without end: a GRU's (empty) cell state cut as
/// an LSTM's is, so that it zips with the rows.
pub(crate) fn pieces(values: &mut [f32], len: usize) -> impl Iterator<Item = &mut [f32]> {
    values.chunks_mut(len.max(1)).chain(std::iter::repeat_with(|| &mut [][..]))
}

/// The hidden-to-hidden half of a cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Recurrent {
    kind: CellKind,
    hidden: usize,
    weight_hh: Vec<f32>,
    bias_hh: Vec<f32>,
}

/// e^x in f32 without branches, so that loops over it vectorize (libm's `tanhf` took ~23 ns a
/// call here; `exp` and `tanh` were ~27% of the LSTM's one-thread recurrence): x = n ln 2 + r
/// with |r| <= ln 2 / 2 (ln 2 split in two for an exact n ln 2), e^r by Cephes' `expf`
/// polynomial, 2^n built in the exponent bits. Relative error under 1e-7 for |x| < 87; x is clamped to [-87, 88] (no
/// overflow to infinity; NaN stays NaN).
#[inline(always)]
fn exp(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.0, 88.0);
    let t = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = clamped - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5;
    let scale = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    (p * r * r + r + 1.0) * scale
}

/// The logistic function of every element, in place (absolute error under 1e-7).
#[inline(always)]
pub(crate) fn sigmoid(v: &mut [f32]) {
    for x in v {
        *x = 1.0 / (1.0 + exp(-*x));
    }
}

/// tanh of every element, in place, as 1 - 2 / (e^2x + 1) (absolute error under 2e-7).
#[inline(always)]
pub(crate) fn tanh(v: &mut [f32]) {
    for x in v {
        *x = tanh_one(*x);
    }
}

/// tanh of one value, as [`tanh`] computes it.
#[inline(always)]
pub(crate) fn tanh_one(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
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
        let (mut rng, scale) = (Rng::new(seed), 1.0 / (hidden as f64).sqrt());
        let weight_hh = rng.vec_f32(g * hidden, scale);
        let bias_hh = rng.vec_f32(g, scale);
        Recurrent { kind, hidden, weight_hh, bias_hh }
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

    /// `weight_hh` and `bias_hh`, to train them (their lengths are fixed: a slice each).
    pub fn weights_mut(&mut self) -> (&mut [f32], &mut [f32]) {
        (&mut self.weight_hh, &mut self.bias_hh)
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
        if batch == 0 || !x.len().is_multiple_of(row) {
            return Err(ShapeError::Sequence { len: x.len(), batch, input });
        }
        let steps = x.len() / row;
        self.check(steps, batch, hs, state)?;
        let mut proj = vec![0.0; steps * batch * self.kind.gates() * self.hidden];
        project(x, &mut proj)?;
        self.run(&proj, batch, hs, state, parallel)
    }

    /// Check the buffers of a sequence of `steps` x `batch` rows.
    pub fn check(&self, steps: usize, batch: usize, hs: &[f32], state: &State) -> Result<(), ShapeError> {
        let bh = batch.saturating_mul(self.hidden);
        let expect = |name, len: usize, expected| {
            if len == expected {
                Ok(())
            } else {
                Err(ShapeError::Buffer { name, len, expected })
            }
        };
        expect("h_all", hs.len(), steps.saturating_mul(bh))?;
        expect("h", state.h.len(), bh)?;
        expect("c", state.c.len(), if self.kind == CellKind::Lstm { bh } else { 0 })
    }

    /// Run the recurrence over projected inputs `proj` `[T, B, G*H]` (x W_ih^T + b_ih), writing
    /// every hidden state to `hs` `[T, B, H]` and leaving the final state in `state`. The gate
    /// buffer of each row lives in the per-thread scratch, so no step allocates (on threads,
    /// but for rayon's tasks).
    ///
    /// The buffers are checked first: `hs` must hold whole steps of `batch` rows, `proj` as many
    /// steps, and `state` one row per batch row (a [`ShapeError`] names the one that does not).
    pub fn run(
        &self,
        proj: &[f32],
        batch: usize,
        hs: &mut [f32],
        state: &mut State,
        parallel: bool,
    ) -> Result<(), ShapeError> {
        let (h, g) = (self.hidden, self.kind.gates() * self.hidden);
        // Products saturate: no slice holds usize::MAX floats, so an overflow is a mismatch.
        let steps = hs.len().checked_div(batch.saturating_mul(h)).unwrap_or(0);
        self.check(steps, batch, hs, state)?;
        let expected = steps.saturating_mul(batch).saturating_mul(g);
        if proj.len() != expected {
            return Err(ShapeError::Buffer { name: "proj", len: proj.len(), expected });
        }
        if h == 0 || batch == 0 {
            return Ok(()); // Nothing to compute (and no rows to cut the buffers into).
        }
        let split = parallel && batch == 1 && ((g * h) as u64) >= crate::tuning::PAR_MIN_MACS;
        // Blocks of rows per step, one per thread (each block is one product with W_hh).
        let block = if parallel { rows_per_block(batch, (batch * g * h) as u64, Threads::All) } else { batch };
        for (proj_t, hs_t) in proj.chunks_exact(batch * g).zip(hs.chunks_exact_mut(batch * h)) {
            if split {
                // (A GRU's cell state is empty.)
                self.step_halves(proj_t, &state.h, &mut state.c, hs_t);
                state.h.copy_from_slice(hs_t);
                continue;
            }
            let blocks = proj_t
                .chunks(block * g)
                .zip(state.h.chunks_mut(block * h))
                .zip(hs_t.chunks_mut(block * h))
                .zip(pieces(&mut state.c, block * h));
            for_blocks(blocks, block < batch, |(((x, h), out), c)| {
                crate::driver::with_scratch(out.len() / self.hidden * g, |gates| {
                    self.step_block(x, h, c, out, gates, None)
                })
            });
        }
        Ok(())
    }

    /// One step of a block of rows on this thread: their gates' pre-activations into `gates`
    /// (one product with `weight_hh`), then each row's cell update into `out` (and `c`), which
    /// becomes the state `h`; with `tape`, what backpropagation keeps of each row (see
    /// [`Recurrent::units`]).
    pub(crate) fn step_block(
        &self,
        x: &[f32],
        h: &mut [f32],
        c: &mut [f32],
        out: &mut [f32],
        gates: &mut [f32],
        tape: Option<&mut [f32]>,
    ) {
        let (hidden, g) = (self.hidden, self.kind.gates() * self.hidden);
        kcp_core::kernels::dispatch(
            #[inline(always)]
            || {
                self.pre_activations(x, h, gates, 0, hidden);
                let mut tape_rows = tape.map(|t| t.chunks_exact_mut(hidden));
                let rows = gates.chunks_exact_mut(g).zip(x.chunks_exact(g)).zip(h.chunks_exact(hidden));
                for (((gates, x), h_row), (out, c_row)) in rows.zip(out.chunks_exact_mut(hidden).zip(pieces(c, hidden)))
                {
                    let tape_row = tape_rows.as_mut().and_then(Iterator::next);
                    self.units(x, h_row, c_row, out, gates, 0, tape_row);
                }
            },
        );
        h.copy_from_slice(out);
    }

    /// One row of one step on two threads: this thread the first half of the hidden units, a
    /// thread of the pool the second (each computes the same gates as the whole row's product
    /// would, the same sums in the same order, so the result is the same to the bit).
    fn step_halves(&self, x: &[f32], h_prev: &[f32], c_row: &mut [f32], out: &mut [f32]) {
        let (half, gates) = (self.hidden / 2, self.kind.gates());
        let (out0, out1) = out.split_at_mut(half);
        let (c0, c1) = c_row.split_at_mut(c_row.len().min(half));
        let units = |c: &mut [f32], out: &mut [f32], first: usize| {
            kcp_core::kernels::dispatch(
                #[inline(always)]
                || {
                    crate::driver::with_scratch(gates * out.len(), |g| {
                        self.pre_activations(x, h_prev, g, first, out.len());
                        self.units(x, h_prev, c, out, g, first, None);
                    })
                },
            );
        };
        crate::fork::pair(|| units(c1, out1, half), || units(c0, out0, 0));
    }

    /// The gate pre-activations of the hidden units `first..first + len` of the rows of one
    /// step (`gates`: per row, G blocks of `len`; `x`: the rows' projected inputs, `[rows,
    /// G*H]`; `h_prev`: their states, `[rows, H]`): `W_hh h + b_hh`, plus the projected input
    /// where the cell adds it (a GRU's candidate gate adds x after the reset gate scales `W_hn h
    /// + b_hn`). One product for every row and gate: register blocks of dots, so that each
    /// block of rows reads `weight_hh` once, not each row.
    #[inline(always)]
    pub(crate) fn pre_activations(&self, x: &[f32], h_prev: &[f32], gates: &mut [f32], first: usize, len: usize) {
        let (hidden, kinds) = (self.hidden, self.kind.gates());
        let width = kinds * len;
        if width == 0 {
            return;
        }
        let rows = gates.len() / width;
        // W_hh's rows of each gate block transposed (a_col), the gate blocks repeated.
        let product = Gemm {
            out_row: width,
            a_row: 1,
            a_col: hidden,
            repeat: Repeat { count: kinds, out: len, a: hidden * hidden, w: 0 },
            ..Gemm::row_major(rows, hidden, len)
        };
        gemm(gates, &self.weight_hh[first * hidden..], h_prev, product);
        let with_x = if self.kind == CellKind::Gru { 2 } else { kinds };
        for (row, x) in gates.chunks_exact_mut(width).zip(x.chunks_exact(kinds * hidden)) {
            for (q, block) in row.chunks_exact_mut(len).enumerate() {
                let units = q * hidden + first..q * hidden + first + len;
                block.iter_mut().zip(&self.bias_hh[units.clone()]).for_each(|(g, b)| *g += b);
                if q < with_x {
                    block.iter_mut().zip(&x[units]).for_each(|(g, x)| *g += x);
                }
            }
        }
    }

    /// The hidden units `first..first + out.len()` of one row of one step, from their gates'
    /// pre-activations in `gates` (`G * out.len()`, [`Recurrent::pre_activations`]): their
    /// cell update into `out` (and `c`, the same units of the cell state; empty for a GRU),
    /// each nonlinearity one pass over a gate's block.
    /// With `tape`, it also records what backpropagation needs beside the activated gates
    /// (left in `gates`): the LSTM's new cell state, the GRU's `W_hn h + b_hn`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn units(
        &self,
        x: &[f32],
        h_prev: &[f32],
        c: &mut [f32],
        out: &mut [f32],
        gates: &mut [f32],
        first: usize,
        tape: Option<&mut [f32]>,
    ) {
        let (hidden, len) = (self.hidden, out.len());
        match self.kind {
            CellKind::Lstm => {
                let (input_forget, rest) = gates.split_at_mut(2 * len);
                let (g, o) = rest.split_at_mut(len);
                sigmoid(input_forget);
                tanh(g);
                sigmoid(o);
                let (i, f) = input_forget.split_at(len);
                for (((c, f), i), g) in c.iter_mut().zip(f).zip(i).zip(g.iter()) {
                    *c = f * *c + i * g;
                }
                if let Some(tape) = tape {
                    tape.copy_from_slice(c);
                }
                out.copy_from_slice(c);
                tanh(out);
                for (h, o) in out.iter_mut().zip(o.iter()) {
                    *h *= o;
                }
            }
            CellKind::Gru => {
                let (reset_update, n) = gates.split_at_mut(2 * len);
                if let Some(tape) = tape {
                    tape.copy_from_slice(n);
                }
                sigmoid(reset_update);
                let (r, z) = reset_update.split_at(len);
                let x_n = &x[2 * hidden + first..][..len];
                for ((n, x), r) in n.iter_mut().zip(x_n).zip(r) {
                    *n = x + r * *n;
                }
                tanh(n);
                for (((h, n), z), prev) in out.iter_mut().zip(n.iter()).zip(z).zip(&h_prev[first..]) {
                    *h = (1.0 - z) * n + z * prev;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 1/1024 of [-100, 100], and the specials.
    fn points() -> Vec<f32> {
        (-102_400..=102_400).map(|k| k as f32 / 1024.0).chain([f32::INFINITY, f32::NEG_INFINITY]).collect()
    }

    #[test]
    fn exp_is_within_1e7_relative_where_it_does_not_clamp() {
        for x in points().into_iter().filter(|x| x.abs() < 87.0) {
            let want = (x as f64).exp();
            let err = (exp(x) as f64 - want).abs() / want;
            assert!(err < 1e-7, "exp({x}): {} against {want}, relative error {err:e}", exp(x));
        }
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(f32::NEG_INFINITY), exp(-87.0));
    }

    #[test]
    fn sigmoid_and_tanh_are_within_2e7_absolute() {
        let (mut s, mut t) = (points(), points());
        sigmoid(&mut s);
        tanh(&mut t);
        for ((x, s), t) in points().into_iter().zip(s).zip(t) {
            let x = x as f64;
            let (want_s, want_t) = (1.0 / (1.0 + (-x).exp()), x.tanh());
            assert!((s as f64 - want_s).abs() < 1e-7, "sigmoid({x}) = {s}, not {want_s}");
            assert!((t as f64 - want_t).abs() < 2e-7, "tanh({x}) = {t}, not {want_t}");
        }
        let mut nan = [f32::NAN; 2];
        sigmoid(&mut nan[..1]);
        tanh(&mut nan[1..]);
        assert!(nan.iter().all(|v| v.is_nan()));
    }
}
