//! Evaluation in f64 on small tensors, for tests and tools: an independent dense reference
//! ([`reference`]) and a step-by-step plan interpreter ([`interpret`]). Both take x as `[B, N]`
//! and the factors as `[R, m_d, n_d]`, row-major, and return y as `[B, M]`.

mod backward;
mod interp;
mod reference;

pub use backward::{dense_gradients, interpret_backward, Gradients};
pub use interp::interpret;
pub use reference::{dense_forward, dense_weight};

use kcp_core::Rng;

/// R of a KCP spec (these references are of KCP layers; 0 for another format, whose rank
/// keys are not one rank of Kronecker terms).
fn kcp_rank(spec: &crate::ValidSpec) -> usize {
    match spec.format() {
        crate::network::Format::Kcp { rank } => *rank,
        _ => 0,
    }
}

/// Random factors `[R, m_d, n_d]` for a KCP spec, uniform in [-1, 1).
pub fn random_factors(rng: &mut Rng, spec: &crate::ValidSpec) -> Vec<Vec<f64>> {
    (0..spec.modes()).map(|d| rng.vec(kcp_rank(spec) * spec.out_shape()[d] * spec.in_shape()[d])).collect()
}

/// The Frobenius norm of `a - b` over that of `magnitude`, the same result computed from the
/// absolute values of every input (each element the sum of its terms' absolute values, as
/// [`dense_forward`] or [`dense_gradients`] give it from `|x|`, `|cores|` and `|dy|`): a bound
/// that f32's rounding keeps to whatever the cancellation in a sum, where the error relative to
/// the result itself grows without bound as terms cancel. When `magnitude` is all zero, the
/// norm of `a - b`.
pub fn rounding_error(a: &[f64], b: &[f64], magnitude: &[f64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let norm: f64 = magnitude.iter().map(|y| y * y).sum();
    if norm == 0.0 {
        diff.sqrt()
    } else {
        (diff / norm).sqrt()
    }
}

/// The absolute values, for [`rounding_error`]'s magnitude.
pub fn magnitudes(v: &[f64]) -> Vec<f64> {
    v.iter().map(|e| e.abs()).collect()
}

/// The Frobenius norm of `a - b` over that of `b`; 0 when both are zero.
pub fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    rounding_error(a, b, b)
}

/// Run a row-by-row forward nest keeping the intermediates its backward program reads, then the
/// backward program, row by row: the gradients as the kernels compute them (every dA_d, and dx
/// `[B, N]` if the program writes it).
pub fn run_backward_nest<T: kcp_core::Real>(
    forward: &crate::LoopNest,
    backward: &kcp_core::BackwardProgram,
    x: &[T],
    factors: &[Vec<T>],
    dy: &[T],
    batch: usize,
) -> (Vec<Vec<T>>, Option<Vec<T>>) {
    let (n, m) = (forward.input_size(), forward.output_size());
    let prep = forward.prepare(factors);
    let mut scratch = vec![T::ZERO; 2 * forward.scratch_len];
    let mut y = vec![T::ZERO; m];
    let mut kept = vec![T::ZERO; backward.kept_len()];
    let mut temps = vec![T::ZERO; backward.temps_len()];
    let mut grads: Vec<Vec<T>> = factors.iter().map(|f| vec![T::ZERO; f.len()]).collect();
    let mut dx = vec![T::ZERO; if backward.dx { batch * n } else { 0 }];
    for b in 0..batch {
        let x_row = &x[b * n..][..n];
        forward.run_row_keeping(x_row, &mut y, &mut scratch, factors, &prep, &mut |number, out| {
            backward.keep(number, out, &mut kept);
        });
        let dx_row = if backward.dx { &mut dx[b * n..][..n] } else { &mut [][..] };
        backward.run_row(x_row, &dy[b * m..][..m], &kept, factors, &mut temps, &mut grads, dx_row);
    }
    (grads, backward.dx.then_some(dx))
}

/// Run a loop nest row by row, or block by block of [`LoopNest::lanes`](crate::LoopNest::lanes) interleaved rows (the
/// last block padded with zero rows): the loop-nest interpreter (in f64 for exact checks; in f32
/// it runs the same kernels as a layer).
pub fn run_nest<T: kcp_core::Real>(nest: &crate::LoopNest, x: &[T], factors: &[Vec<T>], batch: usize) -> Vec<T> {
    let (n, m, lanes) = (nest.input_size(), nest.output_size(), nest.lanes);
    let prep = nest.prepare(factors);
    let mut scratch = vec![T::ZERO; 2 * nest.scratch_len];
    let mut y = vec![T::ZERO; batch * m];
    let (mut xt, mut yt) = (vec![T::ZERO; lanes * n], vec![T::ZERO; lanes * m]);
    for (xb, yb) in x.chunks(lanes * n).zip(y.chunks_mut(lanes * m)) {
        // x's rows in as `[N, lanes]`, y's out of `[M, lanes]`.
        xt.fill(T::ZERO);
        yt.fill(T::ZERO);
        for (l, xr) in xb.chunks_exact(n).enumerate() {
            xr.iter().enumerate().for_each(|(j, &v)| xt[j * lanes + l] = v);
        }
        nest.run_row(&xt, &mut yt, &mut scratch, factors, &prep);
        for (l, yr) in yb.chunks_exact_mut(m).enumerate() {
            yr.iter_mut().enumerate().for_each(|(i, v)| *v = yt[i * lanes + l]);
        }
    }
    y
}
