//! Compression: fit a rank-R KCP factorisation to a dense `[M, N]` weight (or, in
//! [`compress_cp`], a CP layer's vectors; in [`tt_svd`], a tensor train).
//!
//! W is rearranged into the D-way tensor of docs/format.md, whose mode d is the pair
//! `(i_d, j_d)` of size `m_d n_d`; a rank-R CP decomposition of that tensor is exactly a KCP
//! weight. The CP decomposition is fitted by alternating least squares: for each mode in turn,
//! the factor `U_d` (`[m_d n_d, R]`) solves the normal equations
//! `U_d V = MTTKRP_d`, `V = *_{k != d} U_k^T U_k` (Hadamard product of the Gram matrices), with
//! faer's LU. Init is seeded and deterministic; iteration stops when the relative error changes
//! by less than the tolerance, or at the iteration cap. A CP layer is the same fit over the 2D
//! modes `i_1..i_D, j_1..j_D` of W taken apart.

mod tt;

pub use tt::{tt_svd, TtFit};

use faer::linalg::solvers::Solve;
use faer::Mat;

use kcp_runtime::Rng;
use kcp_runtime::Weights;

/// Knobs of the fit.
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// The most ALS sweeps.
    pub iters: usize,
    /// Seed of the random initial factors.
    pub seed: u64,
    /// Stop once a sweep changes the relative error by less than this.
    pub tol: f64,
}

impl Default for FitOptions {
    fn default() -> FitOptions {
        FitOptions { iters: 100, seed: 0, tol: 1e-9 }
    }
}

/// Why a fit cannot be made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// More rank terms than any tensor of this shape needs.
    #[error(
        "rank {rank} is more than {max}, the rank that fits every weight of these shapes exactly \
         (the largest useful rank)"
    )]
    Rank {
        /// The rank asked for.
        rank: usize,
        /// The largest useful rank: `min_d prod_{k != d} m_k n_k`.
        max: usize,
    },
    /// W and the shapes disagree.
    #[error("the weight has {found} entries, the shapes need {expected}")]
    Size {
        /// M * N.
        expected: usize,
        /// The entries given.
        found: usize,
    },
    /// The fitted factors do not fit f32.
    #[error("the fitted factors overflow f32")]
    Overflow,
    /// An SVD of TT-SVD did not converge.
    #[error("the SVD for TT core {core} did not converge")]
    Svd {
        /// The core whose unfolding it was.
        core: usize,
    },
}

/// The largest useful rank of a KCP fit: the CP rank of any tensor is at most the product of
/// all its dimensions but one, so `min_d prod_{k != d} m_k n_k` terms fit every weight exactly.
pub fn max_rank(in_shape: &[usize], out_shape: &[usize]) -> usize {
    let sizes: Vec<usize> = in_shape.iter().zip(out_shape).map(|(n, m)| n.saturating_mul(*m)).collect();
    largest_useful_rank(&sizes)
}

/// The CP rank that fits every tensor of these mode sizes: the product of all but one.
fn largest_useful_rank(sizes: &[usize]) -> usize {
    (0..sizes.len())
        .map(|d| sizes.iter().enumerate().filter(|(k, _)| *k != d).fold(1usize, |p, (_, s)| p.saturating_mul(*s)))
        .min()
        .unwrap_or(1)
}

/// A fitted factorisation.
#[derive(Clone, Debug)]
pub struct Fit {
    /// The factors `[R, m_d, n_d]` (no bias).
    pub weights: Weights,
    /// `||W - W_kcp||_F / ||W||_F` of the factors returned (0 for a zero W, which they fit
    /// exactly).
    pub relative_error: f64,
    /// ALS sweeps run.
    pub iterations: usize,
}

/// The rearranged tensor: W plus, for each mode, the offset in W of each `(i_d, j_d)` pair.
struct Tensor<'a> {
    w: &'a [f64],
    offsets: Vec<Vec<usize>>,
}

impl Tensor<'_> {
    /// `MTTKRP_d[p, r] = sum over entries of T[.., p, ..] * prod_{k != d} U_k[p_k, r]`, one pass
    /// over W with running partial products (R multiply-adds per entry).
    fn mttkrp(&self, factors: &[Vec<f64>], rank: usize, d: usize) -> Vec<f64> {
        let mut out = vec![0.0; self.offsets[d].len() * rank];
        let mut partial = vec![vec![1.0; rank]; self.offsets.len() + 1];
        self.walk(factors, rank, d, 0, 0, 0, &mut partial, &mut out);
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        factors: &[Vec<f64>],
        rank: usize,
        d: usize,
        mode: usize,
        offset: usize,
        p_d: usize,
        partial: &mut [Vec<f64>],
        out: &mut [f64],
    ) {
        if mode == self.offsets.len() {
            let v = self.w[offset];
            let (row, product) = (&mut out[p_d * rank..][..rank], &partial[mode]);
            row.iter_mut().zip(product).for_each(|(o, p)| *o += v * p);
            return;
        }
        for (p, &off) in self.offsets[mode].iter().enumerate() {
            let (before, after) = partial.split_at_mut(mode + 1);
            let (prev, next) = (&before[mode], &mut after[0]);
            if mode == d {
                next.copy_from_slice(prev);
            } else {
                let u = &factors[mode][p * rank..][..rank];
                next.iter_mut().zip(prev).zip(u).for_each(|((n, a), b)| *n = a * b);
            }
            let p_d = if mode == d { p } else { p_d };
            self.walk(factors, rank, d, mode + 1, offset + off, p_d, partial, out);
        }
    }
}

fn gram(u: &[f64], rank: usize) -> Vec<f64> {
    let mut g = vec![0.0; rank * rank];
    for row in u.chunks_exact(rank) {
        for a in 0..rank {
            for b in 0..rank {
                g[a * rank + b] += row[a] * row[b];
            }
        }
    }
    g
}

/// Fit `w` (`[M, N]` row-major, M and N the products of the shapes) with rank-`rank` KCP
/// factors, calling `progress(sweep, relative_error)` after every sweep. W is fitted scaled to
/// a largest entry of 1 (so that no square overflows) and the scale is shared out over the
/// factors at the end; the error returned is that of the f32 factors returned.
pub fn compress(
    w: &[f32],
    in_shape: &[usize],
    out_shape: &[usize],
    rank: usize,
    options: &FitOptions,
    progress: impl FnMut(usize, f64),
) -> Result<Fit, CompressError> {
    let n = checked(w, in_shape, out_shape, rank, max_rank(in_shape, out_shape))?;
    // Mode d: the pairs (i_d, j_d), i_d major.
    let offsets: Vec<Vec<usize>> = (0..in_shape.len())
        .map(|k| {
            let (mk, nk) = (out_shape[k], in_shape[k]);
            (0..mk * nk).map(|p| (p / nk) * stride(out_shape, k) * n + (p % nk) * stride(in_shape, k)).collect()
        })
        .collect();
    als(w, offsets, rank, options, progress)
}

/// Fit `w` (`[M, N]`) with a rank-`rank` CP layer (the format `cp`: `out.d` `[R, m_d]`, then
/// `in.d` `[R, n_d]`, in the network's order): the same alternating least squares as
/// [`compress`], over the 2D modes i_1..i_D, j_1..j_D of W taken apart.
pub fn compress_cp(
    w: &[f32],
    in_shape: &[usize],
    out_shape: &[usize],
    rank: usize,
    options: &FitOptions,
    progress: impl FnMut(usize, f64),
) -> Result<Fit, CompressError> {
    let sizes: Vec<usize> = out_shape.iter().chain(in_shape).copied().collect();
    let n = checked(w, in_shape, out_shape, rank, largest_useful_rank(&sizes))?;
    let outs = (0..out_shape.len()).map(|k| (0..out_shape[k]).map(|i| i * stride(out_shape, k) * n).collect());
    let ins = (0..in_shape.len()).map(|k| (0..in_shape[k]).map(|j| j * stride(in_shape, k)).collect());
    als(w, outs.chain(ins).collect(), rank, options, progress)
}

/// N, once W's length is M * N and the rank at most `max`.
fn checked(
    w: &[f32],
    in_shape: &[usize],
    out_shape: &[usize],
    rank: usize,
    max: usize,
) -> Result<usize, CompressError> {
    let n: usize = in_shape.iter().product();
    let m: usize = out_shape.iter().product();
    if w.len() != m * n {
        return Err(CompressError::Size { expected: m * n, found: w.len() });
    }
    if rank > max {
        return Err(CompressError::Rank { rank, max });
    }
    Ok(n)
}

/// The row-major stride of mode `k` of `shape`.
fn stride(shape: &[usize], k: usize) -> usize {
    shape[k + 1..].iter().product()
}

/// Alternating least squares: the rank-`rank` CP decomposition of the tensor whose mode d
/// takes the entries of W at `offsets[d]` (every entry of W the sum of one offset per mode),
/// each factor returned `[R, len]` row-major.
fn als(
    w: &[f32],
    offsets: Vec<Vec<usize>>,
    rank: usize,
    options: &FitOptions,
    mut progress: impl FnMut(usize, f64),
) -> Result<Fit, CompressError> {
    let modes = offsets.len();
    let scale = w.iter().fold(0.0f64, |s, &v| s.max(f64::from(v).abs()));
    if scale == 0.0 {
        // A zero weight has an exact factorisation: zero factors.
        let cores = offsets.iter().map(|o| vec![0.0; rank * o.len()]).collect();
        return Ok(Fit { weights: Weights { cores, bias: None }, relative_error: 0.0, iterations: 0 });
    }
    let scaled: Vec<f64> = w.iter().map(|&v| f64::from(v) / scale).collect();
    let w = &scaled[..];
    let tensor = Tensor { w, offsets };
    let norm2: f64 = w.iter().map(|v| v * v).sum();
    let mut rng = Rng::new(options.seed);
    let mut factors: Vec<Vec<f64>> = tensor.offsets.iter().map(|o| rng.vec(o.len() * rank)).collect();
    let (mut error, mut iterations) = (1.0, 0);
    while iterations < options.iters {
        iterations += 1;
        let mut inner = 0.0;
        for d in 0..modes {
            let m = tensor.mttkrp(&factors, rank, d);
            let mut v = vec![1.0; rank * rank];
            for (_, u) in factors.iter().enumerate().filter(|(k, _)| *k != d) {
                v.iter_mut().zip(gram(u, rank)).for_each(|(v, g)| *v *= g);
            }
            let trace: f64 = (0..rank).map(|a| v[a * rank + a]).sum();
            let v =
                Mat::from_fn(rank, rank, |a, b| v[a * rank + b] + if a == b { 1e-12 * trace.max(1e-300) } else { 0.0 });
            let rows = m.len() / rank;
            let rhs = Mat::from_fn(rank, rows, |a, p| m[p * rank + a]);
            let x = v.partial_piv_lu().solve(&rhs);
            let u = &mut factors[d];
            for p in 0..rows {
                for a in 0..rank {
                    u[p * rank + a] = x[(a, p)];
                }
            }
            if d + 1 < modes {
                // Unit columns keep the sweep well scaled; the last mode carries the scale.
                for a in 0..rank {
                    let norm = (0..rows).map(|p| u[p * rank + a].powi(2)).sum::<f64>().sqrt();
                    if norm > 0.0 {
                        (0..rows).for_each(|p| u[p * rank + a] /= norm);
                    }
                }
            } else {
                inner = m.iter().zip(u.iter()).map(|(a, b)| a * b).sum();
            }
        }
        let new_error = relative_error(norm2, inner, &factors, rank);
        progress(iterations, new_error);
        let change = (error - new_error).abs();
        error = new_error;
        if change < options.tol {
            break;
        }
    }
    // The scale shared out over the factors, rounded to f32 as they are written; the error
    // reported is that of these factors.
    let share = scale.powf(1.0 / modes as f64);
    let written: Vec<Vec<f32>> = factors.iter().map(|u| u.iter().map(|&v| (v * share) as f32).collect()).collect();
    if written.iter().flatten().any(|v| !v.is_finite()) {
        return Err(CompressError::Overflow);
    }
    let exact: Vec<Vec<f64>> = written.iter().map(|u| u.iter().map(|&v| f64::from(v) / share).collect()).collect();
    let inner: f64 = tensor.mttkrp(&exact, rank, 0).iter().zip(&exact[0]).map(|(a, b)| a * b).sum();
    let relative_error = relative_error(norm2, inner, &exact, rank);
    let factors = written
        .iter()
        .enumerate()
        .map(|(k, u)| {
            let p = tensor.offsets[k].len();
            (0..rank).flat_map(|r| (0..p).map(move |q| u[q * rank + r])).collect()
        })
        .collect();
    Ok(Fit { weights: Weights { cores: factors, bias: None }, relative_error, iterations })
}

/// `||T - model|| / ||T||` from `||T||^2`, `<T, model>` and the factors `[m_d n_d, R]`.
fn relative_error(norm2: f64, inner: f64, factors: &[Vec<f64>], rank: usize) -> f64 {
    let mut all = vec![1.0; rank * rank];
    for u in factors {
        all.iter_mut().zip(gram(u, rank)).for_each(|(v, g)| *v *= g);
    }
    let model2: f64 = all.iter().sum();
    ((norm2 - 2.0 * inner + model2).max(0.0) / norm2).sqrt()
}
