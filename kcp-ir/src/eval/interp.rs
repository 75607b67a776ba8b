//! The plan interpreter: run a plan's steps one by one on dense f64 tensors laid out in the
//! global index order.

use crate::graph::{ContractionGraph, Index, IndexSet, Operand};
use crate::plan::{Plan, Value};

/// A dense f64 tensor, laid out in the global index order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Dense {
    pub(crate) indices: IndexSet,
    pub(crate) data: Vec<f64>,
}

/// Run `plan` on x (`[batch, N]`) and the factors, returning y (`[batch, M]`).
pub fn interpret(plan: &Plan, graph: &ContractionGraph, x: &[f64], factors: &[Vec<f64>], batch: usize) -> Vec<f64> {
    let size = |index: Index| if index == Index::Batch { batch } else { graph.size(index) as usize };
    let operands: Vec<Dense> = (0..graph.operand_count())
        .map(Operand::at)
        .map(|op| {
            let data = match op {
                Operand::Input => x.to_vec(),
                Operand::Factor(d) => factors[d].clone(),
            };
            Dense { indices: graph.indices(op), data }
        })
        .collect();
    let empty = Dense { indices: IndexSet::EMPTY, data: Vec::new() };
    let ones = |indices: IndexSet| Dense { indices, data: vec![1.0; indices.iter().map(size).product()] };
    // Step k writes t_k (the last writes y), so the results can simply be pushed in order.
    let mut results: Vec<Dense> = Vec::with_capacity(plan.steps().len());
    for step in plan.steps() {
        let unit = step.inputs.iter().find(|(v, _)| *v == Value::Ones).map(|&(_, indices)| ones(indices));
        let [a, b] = step.inputs.map(|(value, _)| match value {
            Value::Operand(op) => &operands[op.position()],
            Value::Temp(k) => &results[k],
            Value::Output => &empty,
            Value::Ones => unit.as_ref().unwrap_or(&empty),
        });
        let result = contract(a, b, step.indices, &size);
        results.push(result);
    }
    results.pop().map_or_else(Vec::new, |y| y.data)
}

/// Row-major strides of `of` over the loop indices `loops` (0 for indices `of` lacks).
fn strides(of: IndexSet, loops: IndexSet, size: &dyn Fn(Index) -> usize) -> Vec<usize> {
    let mut own = vec![0; of.len()];
    let mut stride = 1;
    for (k, index) in of.iter().enumerate().collect::<Vec<_>>().into_iter().rev() {
        own[k] = stride;
        stride *= size(index);
    }
    let position = |index: Index| of.iter().position(|i| i == index);
    loops.iter().map(|index| position(index).map_or(0, |k| own[k])).collect()
}

/// The contraction of `a` and `b` over every index `result` lacks.
pub(crate) fn contract(a: &Dense, b: &Dense, result: IndexSet, size: &dyn Fn(Index) -> usize) -> Dense {
    let loops = a.indices.union(b.indices);
    let dims: Vec<usize> = loops.iter().map(size).collect();
    let (sa, sb, sr) = (strides(a.indices, loops, size), strides(b.indices, loops, size), strides(result, loops, size));
    let volume: usize = result.iter().map(size).product();
    let mut data = vec![0.0; volume];
    let mut counter = vec![0; dims.len()];
    if dims.contains(&0) {
        return Dense { indices: result, data };
    }
    let (mut oa, mut ob, mut or) = (0usize, 0usize, 0usize);
    loop {
        data[or] += a.data[oa] * b.data[ob];
        // Advance the mixed-radix counter, last loop fastest, keeping the offsets in step.
        let mut k = dims.len();
        loop {
            if k == 0 {
                return Dense { indices: result, data };
            }
            k -= 1;
            counter[k] += 1;
            oa += sa[k];
            ob += sb[k];
            or += sr[k];
            if counter[k] < dims[k] {
                break;
            }
            oa -= sa[k] * dims[k];
            ob -= sb[k] * dims[k];
            or -= sr[k] * dims[k];
            counter[k] = 0;
        }
    }
}
