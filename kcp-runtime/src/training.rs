//! The training driver shared by generated layers and the generic executor: a forward pass that
//! keeps, row by row, the forward intermediates a backward program reads (in a [`Trace`]), and
//! the backward pass over the same rows, which writes dx if asked and accumulates the gradients
//! of the cores and the bias into a [`Weights`] (the weights' own shapes and names).
//!
//! Both run on this thread or with the batch split over rayon's pool. A batch large enough to
//! thread is cut, for the backward pass, into parts that do not depend on the number of
//! threads, each summing its rows' gradients in its own buffers, added in order: the gradients
//! are the same bits on one thread or many. The trace holds every buffer they need (kept
//! intermediates, temporaries, each part's own gradients) and
//! grows only when the batch does: after the first call with a batch size, the sequential passes
//! allocate nothing (the threaded ones allocate rayon's tasks).

use rayon::prelude::*;

use crate::driver::{rows, with_scratch};
use crate::tuning::GRAD_PARTS;
use crate::tuning::PAR_MIN_MACS;
use crate::{Error, ShapeError, Threads, Weights};

/// A training forward row: `keep(x_row, y_row, scratch, kept_row)` writes y's row (which holds
/// the bias or zeros) and the row's kept intermediates.
pub trait KeepFn: Fn(&[f32], &mut [f32], &mut [f32], &mut [f32]) + Sync {}

impl<F: Fn(&[f32], &mut [f32], &mut [f32], &mut [f32]) + Sync> KeepFn for F {}

/// A backward row: `back(x_row, dy_row, kept_row, temps, grads, dx_row)` accumulates every dA_d
/// into `grads[d]` and overwrites `dx_row` (empty when dx is not asked for).
pub trait BackFn: Fn(&[f32], &[f32], &[f32], &mut [f32], &mut [Vec<f32>], &mut [f32]) + Sync {}

impl<F: Fn(&[f32], &[f32], &[f32], &mut [f32], &mut [Vec<f32>], &mut [f32]) + Sync> BackFn for F {}

/// What a training forward pass keeps for its backward pass, and the backward pass's working
/// buffers, reused from call to call. One trace serves one layer; a new batch size resizes it.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    rows: usize,
    /// Keep nothing across rows: the backward pass runs each row's forward pass again.
    recompute: bool,
    kept: Vec<f32>,
    parts: Vec<Part>,
}

/// A thread part's working buffers for the backward pass.
#[derive(Clone, Debug, Default)]
struct Part {
    temps: Vec<f32>,
    grads: Vec<Vec<f32>>,
    /// With a recomputing trace: one row's kept intermediates and its y.
    kept_row: Vec<f32>,
    y_row: Vec<f32>,
}

impl Trace {
    /// An empty trace that keeps every row's intermediates; the first forward pass sizes it.
    pub fn new() -> Trace {
        Trace::default()
    }

    /// An empty trace that keeps nothing across rows: the backward pass runs each row's forward
    /// pass again just before its backward row, while what it keeps is still in cache. That
    /// costs one forward pass more, and saves writing and reading back the kept intermediates
    /// of every row (B times the layer's `KEPT_PER_SAMPLE` floats), which for a large batch no
    /// longer fit in cache: measure which is faster for a layer and a batch.
    pub fn recomputing() -> Trace {
        Trace { recompute: true, ..Trace::default() }
    }

    /// The rows of the last forward pass, which the backward pass must be given again.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// A thread part's buffers, borrowed for one backward pass (the first part's gradients are the
/// caller's own).
struct PartMut<'a> {
    temps: &'a mut [f32],
    grads: &'a mut [Vec<f32>],
    kept_row: &'a mut [f32],
    y_row: &'a mut [f32],
}

/// A layer's training kernels and shapes, as generated code and the executor hand them over.
#[derive(Clone, Copy, Debug)]
pub struct TrainKernel<'a, K, G> {
    /// N.
    pub input: usize,
    /// M.
    pub output: usize,
    /// The forward row's scratch elements.
    pub scratch: usize,
    /// The elements kept per row.
    pub kept: usize,
    /// The backward row's temporary elements.
    pub temps: usize,
    /// Whether the backward row writes dx.
    pub dx: bool,
    /// The elements of each core (a KCP layer's factor stack `[R, m_d, n_d]`): the lengths of
    /// its gradients.
    pub core_lens: &'a [usize],
    /// The bias, if the layer has one (its gradient is dy's column sums).
    pub bias: Option<&'a [f32]>,
    /// MACs per row of the forward and of the backward pass (threads only where they pay).
    pub macs_per_row: [u64; 2],
    /// The training forward row.
    pub keep: K,
    /// The backward row.
    pub back: G,
}

impl<K: KeepFn, G: BackFn> TrainKernel<'_, K, G> {
    /// How many parts `threads` cut `rows` rows of `macs` MACs each into.
    fn parts(rows: usize, macs: u64, threads: Threads) -> usize {
        if (rows as u64).saturating_mul(macs) < PAR_MIN_MACS {
            1
        } else {
            threads.count().clamp(1, rows.max(1))
        }
    }

    /// How many parts the backward pass cuts `rows` rows of `macs` MACs each into: a number
    /// that does not depend on the threads, so that the gradients, summed part by part in the
    /// parts' order, are the same bits on any number of threads.
    fn grad_parts(rows: usize, macs: u64) -> usize {
        if (rows as u64).saturating_mul(macs) < PAR_MIN_MACS {
            1
        } else {
            GRAD_PARTS.clamp(1, rows.max(1))
        }
    }

    /// Gradients of the layer's shapes (their values are not checked: they may be anything).
    fn check_grads(&self, grads: &Weights) -> Result<(), ShapeError> {
        let lens = grads.cores.iter().map(Vec::len).chain(grads.bias.as_ref().map(Vec::len));
        let want = self.core_lens.iter().copied().chain(self.bias.map(<[f32]>::len));
        let (count, expected) = (lens.clone().count(), want.clone().count());
        if count != expected {
            return Err(ShapeError::Buffer { name: "grads (tensors)", len: count, expected });
        }
        match lens.zip(want).find(|(len, want)| len != want) {
            Some((len, expected)) => Err(ShapeError::Buffer { name: "grads (a tensor)", len, expected }),
            None => Ok(()),
        }
    }

    /// y = x W^T + b for x `[B, N]`, keeping in `trace` what the backward pass reads; `threads`
    /// as in [`TrainKernel::backward`].
    pub fn forward(&self, x: &[f32], y: &mut [f32], trace: &mut Trace, threads: Threads) -> Result<(), ShapeError> {
        let rows = rows(x, y, self.input, self.output)?;
        let (n, m, k) = (self.input, self.output, self.kept);
        let recompute = trace.recompute;
        let Some(kept_len) = rows.checked_mul(if recompute { 0 } else { k }) else {
            return Err(ShapeError::Buffer { name: "trace (kept intermediates)", len: rows, expected: usize::MAX / k });
        };
        trace.rows = rows;
        trace.kept.resize(kept_len, 0.0);
        let run = |x: &[f32], y: &mut [f32], kept: &mut [f32]| {
            // A recomputing trace's rows all keep into one throwaway row after the scratch.
            with_scratch(self.scratch + if recompute { k } else { 0 }, |s| {
                let (s, row_kept) = s.split_at_mut(self.scratch);
                for (row, y) in y.chunks_exact_mut(m).enumerate() {
                    match self.bias {
                        Some(b) => y.copy_from_slice(b),
                        None => y.fill(0.0),
                    }
                    let kept = if k == 0 || recompute { &mut row_kept[..] } else { &mut kept[row * k..][..k] };
                    (self.keep)(&x[row * n..][..n], y, s, kept);
                }
            });
        };
        let parts = Self::parts(rows, self.macs_per_row[0], threads);
        if parts == 1 {
            run(x, y, &mut trace.kept);
        } else {
            let per = rows.div_ceil(parts);
            let kept: Vec<&mut [f32]> = if k == 0 || recompute {
                (0..parts).map(|_| &mut [][..]).collect()
            } else {
                trace.kept.chunks_mut(per * k).collect()
            };
            x.par_chunks(per * n).zip(y.par_chunks_mut(per * m)).zip(kept).for_each(|((x, y), kept)| run(x, y, kept));
        }
        Ok(())
    }

    /// The backward pass of the last forward pass over x (`trace`): dy `[B, M]`; dx `[B, N]`
    /// overwritten if given (the layer must have been built to compute it); every core's
    /// gradient and the bias's accumulated into `grads`. `threads`: 1 runs on this thread, 0 on
    /// all of rayon's pool, otherwise at most that many (sequential when too small to pay).
    pub fn backward(
        &self,
        x: &[f32],
        dy: &[f32],
        trace: &mut Trace,
        dx: Option<&mut [f32]>,
        grads: &mut Weights,
        threads: Threads,
    ) -> Result<(), Error> {
        let (n, m, k) = (self.input, self.output, self.kept);
        if n == 0 || !x.len().is_multiple_of(n) {
            return Err(ShapeError::Input { len: x.len(), input: n }.into());
        }
        let rows = x.len() / n;
        if rows.checked_mul(m) != Some(dy.len()) {
            let expected = rows.saturating_mul(m);
            return Err(ShapeError::Buffer { name: "dy", len: dy.len(), expected }.into());
        }
        let recompute = trace.recompute;
        if trace.rows != rows || (!recompute && rows.checked_mul(k) != Some(trace.kept.len())) {
            return Err(ShapeError::Buffer {
                name: "trace (rows of the last forward pass)",
                len: trace.rows,
                expected: rows,
            }
            .into());
        }
        self.check_grads(grads)?;
        let mut none = Vec::new();
        let dx: &mut [f32] = match dx {
            Some(dx) if self.dx && dx.len() == x.len() => dx,
            Some(dx) => {
                let expected = if self.dx { x.len() } else { 0 };
                return Err(ShapeError::Buffer { name: "dx", len: dx.len(), expected }.into());
            }
            None => &mut none,
        };
        let parts = Self::grad_parts(rows, self.macs_per_row[1]);
        let temps = self.temps;
        if trace.parts.len() != parts {
            trace.parts.resize_with(parts, Part::default);
        }
        for (number, part) in trace.parts.iter_mut().enumerate() {
            part.temps.resize(temps, 0.0);
            if recompute {
                part.kept_row.resize(k, 0.0);
                part.y_row.resize(m, 0.0);
            }
            // The first part accumulates into `grads` itself.
            if number > 0 && !part.grads.iter().map(Vec::len).eq(self.core_lens.iter().copied()) {
                part.grads = self.core_lens.iter().map(|&len| vec![0.0; len]).collect();
            }
        }
        let run = |x: &[f32], dy: &[f32], kept: &[f32], dx: &mut [f32], part: PartMut<'_>| {
            let PartMut { temps, grads, kept_row, y_row } = part;
            with_scratch(if recompute { self.scratch } else { 0 }, |s| {
                for (row, dy) in dy.chunks_exact(m).enumerate() {
                    let dx = if dx.is_empty() { &mut [][..] } else { &mut dx[row * n..][..n] };
                    let x = &x[row * n..][..n];
                    let kept = if recompute {
                        y_row.fill(0.0);
                        (self.keep)(x, y_row, s, kept_row);
                        &kept_row[..]
                    } else if k == 0 {
                        &[][..]
                    } else {
                        &kept[row * k..][..k]
                    };
                    (self.back)(x, dy, kept, temps, grads, dx);
                }
            });
        };
        let (first, rest) = trace.parts.split_at_mut(1);
        let first = &mut first[0];
        let first = PartMut {
            temps: &mut first.temps,
            grads: &mut grads.cores,
            kept_row: &mut first.kept_row,
            y_row: &mut first.y_row,
        };
        if parts == 1 {
            run(x, dy, &trace.kept, dx, first);
        } else {
            let per = rows.div_ceil(parts);
            let dx_per = if dx.is_empty() { 0 } else { per * n };
            rest.iter_mut().flat_map(|p| p.grads.iter_mut()).for_each(|g| g.fill(0.0));
            let mut own = vec![first];
            own.extend(rest.iter_mut().map(|p| PartMut {
                temps: &mut p.temps,
                grads: &mut p.grads,
                kept_row: &mut p.kept_row,
                y_row: &mut p.y_row,
            }));
            let dx_parts: Vec<&mut [f32]> =
                if dx_per == 0 { (0..parts).map(|_| &mut [][..]).collect() } else { dx.chunks_mut(dx_per).collect() };
            let kept = &trace.kept;
            let one = |(p, (part, dx)): (usize, (PartMut<'_>, &mut [f32]))| {
                let (from, to) = ((p * per).min(rows), ((p + 1) * per).min(rows));
                let kept = if k == 0 || recompute { &[][..] } else { &kept[from * k..to * k] };
                run(&x[from * n..to * n], &dy[from * m..to * m], kept, dx, part);
            };
            // The parts are the same on any number of threads; the threads only share them out.
            let workers = threads.count();
            if workers == 1 {
                own.into_iter().zip(dx_parts).enumerate().for_each(one);
            } else {
                own.into_par_iter().zip(dx_parts).enumerate().with_min_len(parts.div_ceil(workers)).for_each(one);
            }
            for part in rest.iter() {
                for (total, g) in grads.cores.iter_mut().zip(&part.grads) {
                    total.iter_mut().zip(g).for_each(|(t, v)| *t += v);
                }
            }
        }
        if let Some(db) = grads.bias.as_mut() {
            for row in dy.chunks_exact(m) {
                db.iter_mut().zip(row).for_each(|(d, v)| *d += v);
            }
        }
        Ok(())
    }
}
