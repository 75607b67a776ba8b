//! TT-SVD: fit a tensor train (a TT-matrix, cores `[r_{d-1}, m_d, n_d, r_d]`) to a dense
//! `[M, N]` weight, deterministically (Oseledets, "Tensor-Train Decomposition", 2011).
//!
//! W is rearranged into the D-way tensor whose mode d is the pair `(i_d, j_d)` (as for a KCP
//! fit). Then, for d = 1 .. D-1, the remainder, unfolded as `[r_{d-1} m_d n_d, rest]`, is split
//! by a thin SVD (faer's): its r_d leading left singular vectors are core d, and the singular
//! values times the right singular vectors the next remainder; the last remainder is core D.
//! A rank above what the unfolding holds is padded with zeros (the fit is then exact there).
//! The result is W projected onto nested orthonormal bases, so its error is
//! `||W||^2 - ||W_tt||^2`, and `||W_tt||` is the last core's norm.

use faer::Mat;

use kcp_runtime::Weights;

use super::CompressError;

/// A fitted tensor train.
#[derive(Clone, Debug)]
pub struct TtFit {
    /// The cores `core.0` .. `core.{D-1}`, `[r_{d-1}, m_d, n_d, r_d]` each (no bias).
    pub weights: Weights,
    /// `||W - W_tt||_F / ||W||_F` (0 for a zero W).
    pub relative_error: f64,
}

/// Fit TT cores of ranks `ranks` (r_0 .. r_D, r_0 = r_D = 1: a checked network's) to `w`
/// (`[M, N]` row-major, f32).
pub fn tt_svd(w: &[f32], in_shape: &[usize], out_shape: &[usize], ranks: &[usize]) -> Result<TtFit, CompressError> {
    let (m, n): (usize, usize) = (out_shape.iter().product(), in_shape.iter().product());
    if w.len() != m * n {
        return Err(CompressError::Size { expected: m * n, found: w.len() });
    }
    let modes = in_shape.len();
    let pair: Vec<usize> = in_shape.iter().zip(out_shape).map(|(&n, &m)| m * n).collect();
    let mut rest = interleave(w, in_shape, out_shape);
    let norm2: f64 = rest.iter().map(|v| v * v).sum();
    let mut cores = Vec::with_capacity(modes);
    for d in 0..modes.saturating_sub(1) {
        let rows = ranks[d] * pair[d];
        let cols = rest.len() / rows;
        let unfolding = Mat::from_fn(rows, cols, |r, c| rest[r * cols + c]);
        let svd = unfolding.thin_svd().map_err(|_| CompressError::Svd { core: d })?;
        let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
        let (next, kept) = (ranks[d + 1], ranks[d + 1].min(s.nrows()));
        // core d = U's leading columns, zero past what the unfolding holds.
        let mut core = vec![0.0f64; rows * next];
        for r in 0..rows {
            for k in 0..kept {
                core[r * next + k] = u[(r, k)];
            }
        }
        cores.push(core);
        // The remainder: diag(S) V^T, [next, cols], zero rows past `kept`.
        rest = vec![0.0; next * cols];
        for k in 0..kept {
            for c in 0..cols {
                rest[k * cols + c] = s[k] * v[(c, k)];
            }
        }
    }
    let kept2: f64 = rest.iter().map(|v| v * v).sum();
    cores.push(rest);
    let relative_error = if norm2 == 0.0 { 0.0 } else { ((norm2 - kept2).max(0.0) / norm2).sqrt() };
    let mut factors = Vec::with_capacity(modes);
    for core in cores {
        let core: Vec<f32> = core.iter().map(|&v| v as f32).collect();
        if core.iter().any(|v| !v.is_finite()) {
            return Err(CompressError::Overflow);
        }
        factors.push(core);
    }
    Ok(TtFit { weights: Weights { cores: factors, bias: None }, relative_error })
}

/// W `[M, N]` (rows i_1..i_D, columns j_1..j_D) as the tensor `[m_1 n_1, .., m_D n_D]`, each
/// mode the pair `(i_d, j_d)`, row-major, in f64.
fn interleave(w: &[f32], in_shape: &[usize], out_shape: &[usize]) -> Vec<f64> {
    let modes = in_shape.len();
    let n: usize = in_shape.iter().product();
    let stride = |shape: &[usize], d: usize| shape[d + 1..].iter().product::<usize>();
    let mut out = vec![0.0f64; w.len()];
    for (at, value) in out.iter_mut().enumerate() {
        // Digits of `at` in the pair tensor, the last pair fastest; within a pair, i then j.
        let (mut rest, mut i, mut j) = (at, 0, 0);
        for d in (0..modes).rev() {
            let (jd, id) = (rest % in_shape[d], rest / in_shape[d] % out_shape[d]);
            rest /= in_shape[d] * out_shape[d];
            i += id * stride(out_shape, d);
            j += jd * stride(in_shape, d);
        }
        *value = f64::from(w[i * n + j]);
    }
    out
}
