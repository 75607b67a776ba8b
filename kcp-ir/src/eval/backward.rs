//! The backward plan interpreter and the dense reference of the gradients, in f64.

use super::interp::{contract, Dense};
use super::reference::dense_weight;
use crate::backward::{BackwardPlan, BackwardStrategy, BackwardTensor};
use crate::graph::{ContractionGraph, Index, IndexSet, Operand};
use crate::ValidSpec;

/// The gradients of a layer for a batch: dx `[B, N]` (if computed), every dA_d `[R, m_d, n_d]`
/// and dbias `[M]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients {
    /// dL/dx.
    pub dx: Option<Vec<f64>>,
    /// dL/dA_d.
    pub cores: Vec<Vec<f64>>,
    /// dL/dbias.
    pub bias: Vec<f64>,
}

/// Run a backward plan step by step on x `[B, N]`, the factors and dy `[B, M]`. The kept
/// forward intermediates are made here from x, in the sweep's order.
pub fn interpret_backward(
    plan: &BackwardPlan,
    graph: &ContractionGraph,
    x: &[f64],
    factors: &[Vec<f64>],
    dy: &[f64],
    batch: usize,
) -> Gradients {
    let size = |index: Index| if index == Index::Batch { batch } else { graph.size(index) as usize };
    let operand = |t: BackwardTensor| -> Option<Dense> {
        match t {
            BackwardTensor::X => Some(Dense { indices: graph.indices(Operand::Input), data: x.to_vec() }),
            BackwardTensor::Dy => Some(Dense { indices: graph.output_indices(), data: dy.to_vec() }),
            BackwardTensor::Factor(d) => {
                Some(Dense { indices: graph.indices(Operand::Factor(d)), data: factors[d].clone() })
            }
            _ => None,
        }
    };
    let mut kept: Vec<(usize, Dense)> = Vec::new();
    if let BackwardStrategy::Sweep { order, kept: ks } = &plan.strategy {
        for &k in ks {
            // f_k: x contracted with the sweep's first k factors, each summing its j.
            let mut f = operand(BackwardTensor::X).unwrap_or_default();
            for &d in &order[..k] {
                let a = operand(BackwardTensor::Factor(d)).unwrap_or_default();
                let keep = f.indices.union(a.indices).minus(IndexSet::EMPTY.with(Index::In(d)));
                f = contract(&f, &a, keep, &size);
            }
            kept.push((k, f));
        }
    }
    let mut temps: Vec<(usize, Dense)> = Vec::new();
    let mut grads: Vec<Vec<f64>> = factors.iter().map(|f| vec![0.0; f.len()]).collect();
    let mut dx = None;
    for (n, step) in plan.steps.iter().enumerate() {
        let read = |t: BackwardTensor| -> Dense {
            match t {
                BackwardTensor::Kept(k) => kept.iter().find(|(j, _)| *j == k).map(|(_, f)| f.clone()),
                BackwardTensor::Temp(k) => temps.iter().find(|(j, _)| *j == k).map(|(_, f)| f.clone()),
                other => operand(other),
            }
            .unwrap_or_default()
        };
        let (a, b) = (read(step.inputs[0].0), read(step.inputs[1].0));
        let result = contract(&a, &b, step.indices, &size);
        match step.output {
            BackwardTensor::Temp(_) => temps.push((n, result)),
            BackwardTensor::Dx => dx = Some(result.data),
            BackwardTensor::Grad(d) => {
                // Broadcast over the rank when the step had none (one mode).
                let per_rank = result.data.len();
                for (g, v) in grads[d].iter_mut().zip(result.data.iter().cycle()) {
                    *g += v;
                }
                debug_assert!(per_rank > 0 && grads[d].len().is_multiple_of(per_rank));
            }
            _ => {}
        }
    }
    let m = graph.volume(graph.output_indices().minus(IndexSet::EMPTY.with(Index::Batch))) as usize;
    let mut bias = vec![0.0; m];
    for row in dy.chunks_exact(m.max(1)) {
        bias.iter_mut().zip(row).for_each(|(b, v)| *b += v);
    }
    Gradients { dx, cores: grads, bias }
}

/// The gradients of `L = sum(dy * y)` by the dense weight: dW = dy^T x, then `dA_d[r]` by W's
/// multilinearity (dW contracted with every other factor of term r), dx = dy W, dbias the
/// column sums of dy. Shares nothing with the planner.
pub fn dense_gradients(spec: &ValidSpec, factors: &[Vec<f64>], x: &[f64], dy: &[f64], batch: usize) -> Gradients {
    let (m, n, rank) = (spec.output_size(), spec.input_size(), super::kcp_rank(spec));
    let (ms, ns) = (spec.out_shape(), spec.in_shape());
    let w = dense_weight(spec, factors);
    let mut dw = vec![0.0; m * n];
    for b in 0..batch {
        for i in 0..m {
            for j in 0..n {
                dw[i * n + j] += dy[b * m + i] * x[b * n + j];
            }
        }
    }
    let mut grads: Vec<Vec<f64>> = factors.iter().map(|f| vec![0.0; f.len()]).collect();
    let (mut id, mut jd) = (vec![0; ms.len()], vec![0; ns.len()]);
    for i in 0..m {
        digits(i, ms, &mut id);
        for j in 0..n {
            digits(j, ns, &mut jd);
            for r in 0..rank {
                let entry = |d: usize| factors[d][(r * ms[d] + id[d]) * ns[d] + jd[d]];
                for d in 0..ms.len() {
                    let others: f64 = (0..ms.len()).filter(|&e| e != d).map(entry).product();
                    grads[d][(r * ms[d] + id[d]) * ns[d] + jd[d]] += dw[i * n + j] * others;
                }
            }
        }
    }
    let mut dx = vec![0.0; batch * n];
    for b in 0..batch {
        for j in 0..n {
            dx[b * n + j] = (0..m).map(|i| dy[b * m + i] * w[i * n + j]).sum();
        }
    }
    let mut bias = vec![0.0; m];
    for b in 0..batch {
        for i in 0..m {
            bias[i] += dy[b * m + i];
        }
    }
    Gradients { dx: Some(dx), cores: grads, bias }
}

fn digits(mut value: usize, shape: &[usize], out: &mut [usize]) {
    for d in (0..shape.len()).rev() {
        out[d] = value % shape[d];
        value /= shape[d];
    }
}
