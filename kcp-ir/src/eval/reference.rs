//! The dense reference: reconstruct W = sum_r A1[r] (x) ... (x) AD[r] in f64, then y = x W^T.
//! It shares nothing with the planner, so it can check it.

use crate::ValidSpec;

/// W as `[M, N]` row-major: `W[i, j] = sum_r prod_d A_d[r, i_d, j_d]`, multi-indices big-endian.
pub fn dense_weight(spec: &ValidSpec, factors: &[Vec<f64>]) -> Vec<f64> {
    let (m, n) = (spec.output_size(), spec.input_size());
    let (ms, ns) = (spec.out_shape(), spec.in_shape());
    let mut w = vec![0.0; m * n];
    let mut i_digits = vec![0; spec.modes()];
    let mut j_digits = vec![0; spec.modes()];
    for i in 0..m {
        digits(i, ms, &mut i_digits);
        for j in 0..n {
            digits(j, ns, &mut j_digits);
            w[i * n + j] = (0..super::kcp_rank(spec))
                .map(|r| {
                    (0..spec.modes())
                        .map(|d| factors[d][(r * ms[d] + i_digits[d]) * ns[d] + j_digits[d]])
                        .product::<f64>()
                })
                .sum();
        }
    }
    w
}

/// y = x W^T for x of `batch` rows.
pub fn dense_forward(spec: &ValidSpec, factors: &[Vec<f64>], x: &[f64], batch: usize) -> Vec<f64> {
    let (m, n) = (spec.output_size(), spec.input_size());
    let w = dense_weight(spec, factors);
    let mut y = vec![0.0; batch * m];
    for b in 0..batch {
        for i in 0..m {
            y[b * m + i] = (0..n).map(|j| x[b * n + j] * w[i * n + j]).sum();
        }
    }
    y
}

/// The big-endian digits of `value` in the mixed radix `shape`.
fn digits(mut value: usize, shape: &[usize], out: &mut [usize]) {
    for d in (0..shape.len()).rev() {
        out[d] = value % shape[d];
        value /= shape[d];
    }
}
