//! The row driver shared by generated kernels and the generic executor: checks slice lengths
//! once, fills y with the bias, and runs a row kernel over every row (or a block kernel over
//! [`Lanes`] rows at a time, interleaved), on this thread or split over batch blocks on rayon's
//! pool. Scratch lives in a per-thread buffer that grows once and is reused, so `forward`
//! allocates nothing after its first call on a thread (`forward_par` allocates its list of
//! batch parts, and rayon its tasks).

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::tuning::{PARTS_PER_TASK, PAR_MIN_MACS};
use crate::{ShapeError, Threads};
use kcp_core::kernels::transpose;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` on a scratch buffer of at least `len` elements owned by this thread.
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < len {
                buffer.resize(len, 0.0);
            }
            f(&mut buffer[..len])
        }
        // Re-entered from inside a kernel: fall back to a fresh buffer.
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// The number of rows of x, checking that y matches.
pub fn rows(x: &[f32], y: &[f32], input: usize, output: usize) -> Result<usize, ShapeError> {
    if input == 0 || !x.len().is_multiple_of(input) {
        return Err(ShapeError::Input { len: x.len(), input });
    }
    let rows = x.len() / input;
    if rows.checked_mul(output) != Some(y.len()) {
        return Err(ShapeError::Output { len: y.len(), rows, output });
    }
    Ok(rows)
}

/// A row kernel: `row(x_row, y_row, scratch)`; `x_row` goes on with the rest of the batch, which
/// the kernel may prefetch but does not compute with.
pub trait RowFn: Fn(&[f32], &mut [f32], &mut [f32]) + Sync {}

impl<F: Fn(&[f32], &mut [f32], &mut [f32]) + Sync> RowFn for F {}

/// A row kernel over one part of a row cut in two (`kcp_core::Split`): `half(k, x_row, y_row,
/// scratch)` adds what part `k` (0 or 1) computes to `y_row`.
pub trait HalfFn: Fn(usize, &[f32], &mut [f32], &mut [f32]) + Sync {}

impl<F: Fn(usize, &[f32], &mut [f32], &mut [f32]) + Sync> HalfFn for F {}

/// What a layer whose rows are not cut passes as its [`RowKernel::halves`].
pub type NoHalves = fn(usize, &[f32], &mut [f32], &mut [f32]);

/// What a layer without an interleaved kernel passes as its [`RowKernel::lanes`].
pub type NoLanes = fn(&[f32], &mut [f32], &mut [f32]);

/// A kernel over `lanes` rows at once, interleaved: `block(x [N, lanes], y [M, lanes], scratch)`
/// (the batch index last; y holds the bias or zeros). The driver transposes rows in and out.
#[derive(Clone, Copy, Debug)]
pub struct Lanes<B> {
    /// The rows per block.
    pub lanes: usize,
    /// The block kernel.
    pub block: B,
    /// Scratch elements a block needs.
    pub scratch: usize,
}

/// A layer's shape and the per-row kernel that computes it.
#[derive(Clone, Copy, Debug)]
pub struct RowKernel<'a, F, H = NoHalves, B = NoLanes> {
    /// N.
    pub input: usize,
    /// M.
    pub output: usize,
    /// Scratch elements a row needs.
    pub scratch: usize,
    /// MACs per row, to decide whether threads pay.
    pub macs_per_row: u64,
    /// The bias, copied into y before the kernel accumulates.
    pub bias: Option<&'a [f32]>,
    /// `row(x_row, y_row, scratch)`.
    pub row: F,
    /// The row cut in two parts, with the scratch either part needs: how
    /// a single row runs on two threads.
    pub halves: Option<(H, usize)>,
    /// The kernel over blocks of interleaved rows, which runs every whole block of a batch (the
    /// rows left over run one at a time).
    pub lanes: Option<Lanes<B>>,
}

impl<F: RowFn, H: HalfFn, B: RowFn> RowKernel<'_, F, H, B> {
    fn fill_bias(&self, y: &mut [f32]) {
        match self.bias {
            Some(bias) => y.copy_from_slice(bias),
            None => y.fill(0.0),
        }
    }

    fn run_rows(&self, x: &[f32], y: &mut [f32]) {
        let (x, y) = match &self.lanes {
            // (Checked by a product first: the divisions that count the blocks cost more than
            // a single small row's call can hide.)
            Some(lanes) if x.len() >= lanes.lanes * self.input => self.run_blocks(lanes, x, y),
            _ => (x, y),
        };
        if x.is_empty() {
            return;
        }
        with_scratch(self.scratch, |scratch| {
            // Each row sees the rest of the batch after it, for the kernels to prefetch.
            for (r, yr) in y.chunks_exact_mut(self.output).enumerate() {
                self.fill_bias(yr);
                (self.row)(&x[r * self.input..], yr, scratch);
            }
        })
    }

    /// The whole blocks of `lanes.lanes` rows of x and y through the block kernel; returns the
    /// rows left over.
    fn run_blocks<'x, 'y>(&self, lanes: &Lanes<B>, x: &'x [f32], y: &'y mut [f32]) -> (&'x [f32], &'y mut [f32]) {
        let (n, m, l) = (self.input, self.output, lanes.lanes);
        let blocks = x.len() / n / l;
        let (x, x_rest) = x.split_at(blocks * l * n);
        let (y, y_rest) = y.split_at_mut(blocks * l * m);
        if blocks > 0 {
            with_scratch(l * (n + m) + lanes.scratch, |s| {
                let (xt, rest) = s.split_at_mut(l * n);
                let (yt, s) = rest.split_at_mut(l * m);
                for (xb, yb) in x.chunks_exact(l * n).zip(y.chunks_exact_mut(l * m)) {
                    transpose(xb, xt, l, n);
                    match self.bias {
                        Some(bias) => fill_lanes(bias, yt, l),
                        None => yt.fill(0.0),
                    }
                    (lanes.block)(xt, yt, s);
                    transpose(yt, yb, m, l);
                }
            });
        }
        (x_rest, y_rest)
    }

    /// y = x W^T + b on this thread.
    pub fn forward(&self, x: &[f32], y: &mut [f32]) -> Result<(), ShapeError> {
        rows(x, y, self.input, self.output)?;
        self.run_rows(x, y);
        Ok(())
    }

    /// One row on two threads, each adding one part of its cut: this thread the first, a
    /// thread of the pool the second (into its own copy of y, added at the end). Both halves'
    /// scratch comes from this thread's buffer.
    fn run_halves(&self, x: &[f32], y: &mut [f32], half: &H, scratch: usize) {
        self.fill_bias(y);
        with_scratch(2 * scratch + self.output, |s| {
            let (s0, rest) = s.split_at_mut(scratch);
            let (s1, other) = rest.split_at_mut(scratch);
            other.fill(0.0);
            crate::fork::pair(|| half(1, x, other, s1), || half(0, x, y, s0));
            for (v, o) in y.iter_mut().zip(other.iter()) {
                *v += o;
            }
        });
    }

    /// y = x W^T + b on the threads `threads` allows of rayon's pool:
    /// the batch cut into [`PARTS_PER_TASK`] parts per thread, which the calling thread takes
    /// from the front and the pool's from the back until they meet (the caller works rather
    /// than blocking while the pool runs: one thread fewer to wake per call); a single row
    /// cut into two parts where the layer has a cut; sequential when the
    /// call is too small to pay for threads.
    pub fn forward_par(&self, x: &[f32], y: &mut [f32], threads: Threads) -> Result<(), ShapeError> {
        let rows = rows(x, y, self.input, self.output)?;
        let threads = threads.count();
        let tasks = threads.min(rows);
        let pays = (rows as u64).saturating_mul(self.macs_per_row) >= PAR_MIN_MACS;
        if let (1, Some((half, scratch)), true) = (rows, &self.halves, pays && threads >= 2) {
            self.run_halves(x, y, half, *scratch);
            return Ok(());
        }
        if tasks < 2 || !pays {
            self.run_rows(x, y);
            return Ok(());
        }
        // Parts of whole blocks of interleaved rows where the layer has them, several per task,
        // claimed one at a time: a pool thread that wakes late finds fewer left instead of a
        // fixed half. A batch of fewer blocks than tasks is cut into parts of rows instead,
        // which run one row at a time: every task gets some (one block on one thread measured
        // slower than its rows on two).
        let unit = self.lanes.as_ref().map_or(1, |l| l.lanes);
        let per_part = rows.div_ceil(tasks * PARTS_PER_TASK);
        let per_part = if rows / unit >= tasks { per_part.next_multiple_of(unit) } else { per_part };
        let parts: Vec<Mutex<(&[f32], &mut [f32])>> =
            x.chunks(per_part * self.input).zip(y.chunks_mut(per_part * self.output)).map(Mutex::new).collect();
        // This thread takes parts from the front, the pool's from the back: while both keep
        // pace, each call gives every thread the same parts as the last, whose x and y are
        // still in its own cache (taken in one turn, they moved between cores call by call).
        let (claimed, from_back) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let run = |part: &Mutex<(&[f32], &mut [f32])>| {
            let mut part = part.lock().unwrap_or_else(PoisonError::into_inner);
            let (x, y) = &mut *part;
            self.run_rows(x, y);
        };
        let theirs = || {
            while claimed.fetch_add(1, Ordering::Relaxed) < parts.len() {
                run(&parts[parts.len() - 1 - from_back.fetch_add(1, Ordering::Relaxed)]);
            }
        };
        let mine = || {
            let mut front = 0;
            while claimed.fetch_add(1, Ordering::Relaxed) < parts.len() {
                run(&parts[front]);
                front += 1;
            }
        };
        crate::fork::join(tasks - 1, theirs, mine);
        Ok(())
    }
}

/// `to[k * lanes + l] = from[k]` for every lane l: a vector repeated across the lanes.
fn fill_lanes(from: &[f32], to: &mut [f32], lanes: usize) {
    for (&v, chunk) in from.iter().zip(to.chunks_exact_mut(lanes)) {
        chunk.fill(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row kernel that adds 1 to its row's output and writes the row's input there: run
    /// twice or not at all, a row shows it.
    fn mark(x: &[f32], y: &mut [f32], _: &mut [f32]) {
        y[0] += 1.0;
        y[1] = x[0];
    }

    #[test]
    fn forward_par_runs_every_row_once() {
        let macs_per_row = PAR_MIN_MACS; // threads pay from a single row on
        let kernel: RowKernel<'_, _> = RowKernel {
            input: 1,
            output: 2,
            scratch: 0,
            macs_per_row,
            bias: None,
            row: mark,
            halves: None,
            lanes: None,
        };
        for threads in 1..=4 {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for rows in [1, 2, 3, 7, 8, 9, 31, 64, 100] {
                let x: Vec<f32> = (0..rows).map(|r| r as f32).collect();
                let want: Vec<f32> = x.iter().flat_map(|&r| [1.0, r]).collect();
                // From a thread of a pool of `threads` (helpers from 0 to 3), and from outside
                // any pool (the global one; the caller spins while it waits).
                let (mut inside, mut outside) = (vec![0.0; 2 * rows], vec![0.0; 2 * rows]);
                pool.install(|| kernel.forward_par(&x, &mut inside, Threads::All)).unwrap();
                kernel.forward_par(&x, &mut outside, Threads::at_most(threads).unwrap()).unwrap();
                assert_eq!(inside, want, "{rows} rows, {threads} threads, inside the pool");
                assert_eq!(outside, want, "{rows} rows, {threads} threads, outside the pool");
            }
        }
    }

    /// `mark` over a block of four interleaved rows: x `[1, 4]`, y `[2, 4]`.
    fn mark_block(x: &[f32], y: &mut [f32], _: &mut [f32]) {
        y[..4].iter_mut().for_each(|v| *v += 1.0);
        y[4..8].copy_from_slice(&x[..4]);
    }

    /// The same with blocks of four interleaved rows: whole blocks where every task gets one,
    /// rows where the batch has fewer blocks than tasks (4 to 7 rows on two threads), and the
    /// rows left over after the blocks.
    #[test]
    fn forward_par_runs_every_row_once_in_blocks() {
        let kernel: RowKernel<'_, _, NoHalves, _> = RowKernel {
            input: 1,
            output: 2,
            scratch: 0,
            macs_per_row: PAR_MIN_MACS,
            bias: None,
            row: mark,
            halves: None,
            lanes: Some(Lanes { lanes: 4, block: mark_block, scratch: 0 }),
        };
        for threads in 1..=3 {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for rows in [1, 3, 4, 5, 7, 8, 9, 12, 17, 33] {
                let x: Vec<f32> = (0..rows).map(|r| r as f32).collect();
                let want: Vec<f32> = x.iter().flat_map(|&r| [1.0, r]).collect();
                let mut y = vec![0.0; 2 * rows];
                pool.install(|| kernel.forward_par(&x, &mut y, Threads::All)).unwrap();
                assert_eq!(y, want, "{rows} rows, {threads} threads");
            }
        }
    }
}
