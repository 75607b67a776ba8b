//! Memory layouts of intermediates: which order each step's result keeps its indices in.
//!
//! The global order (rank and bonds first, then the modes) suits a KCP layer, whose steps each
//! contract x's side with one `[r, i_d, j_d]` factor. The other formats' intermediates carry
//! bonds that the next step sums together with a mode, and modes that a step only passes on;
//! in the global order those runs are split, and a step of 920k MACs becomes 160 calls of a
//! 4-float-wide product (the tensor train's second step). So each intermediate gets the layout
//! under which its producer and its consumer lower best, searched over the plan as a whole:
//!
//! - **Candidates.** An intermediate's indices fall into classes by where they come from (the
//!   producer's first input, its second, or both) and what the consumer does with them (sums
//!   them, shares them with its other input, or passes them to its result). A candidate lays
//!   the classes out in some order, each class in the order its indices have in a tensor of
//!   fixed layout (a core, x or y) next to it, so that they coalesce there.
//! - **Cost.** Each step is lowered as the loop nest would lower it ([`super::step_kernel`])
//!   and costed by [`estimate`]: its MACs at the efficiency of its inner operation, plus what
//!   its calls and inner operations cost beyond that. Load-time steps cost nothing.
//! - **Search.** Every intermediate is read by exactly one later step, so the plan is a tree
//!   and dynamic programming over it finds the cheapest assignment exactly (for the estimate).
//!
//! The search keeps the global order unless it saves at least [`MIN_SAVING`] of the estimated
//! time: the estimate is coarse, and the global order's nests are the measured ones. A KCP
//! layer always keeps it: the global order is made for its steps, its nests are the tuned and
//! measured ones, and its backward sweep reads kept forward intermediates in that order. So
//! does a layer small enough to run its rows interleaved: bound by its statements and calls
//! more than by its vectors, it is what the estimate models worst.

use kcp_core::{Buffer, Inner, Kernel};

use crate::graph::{ContractionGraph, Index, IndexSet, Operand};
use crate::plan::{Phase, Plan, Step, Value};

/// The share of the estimated time a layout search must save for its layouts to replace the
/// global order's.
pub const MIN_SAVING: f64 = 0.1;

/// The most indices whose every order is tried (120 layouts); a result with more indices, or
/// one whose step would try more than [`MAX_TRIALS`] combinations, is laid out by classes.
const MAX_FREE: usize = 6;
/// The most classes whose every order is tried (24 layouts); with more, the indices are
/// classed by what the consumer does with them only.
const MAX_CLASSES: usize = 4;
/// The most combinations of layouts (its result's and its inputs') tried for one step.
const MAX_TRIALS: usize = 100_000;

/// Each step's result's memory layout (the batch index last, where it has one), by step.
pub(super) fn choose(plan: &Plan, graph: &ContractionGraph, size: &dyn Fn(Index) -> usize) -> Vec<Vec<Index>> {
    // The sizes as a table: the search lowers each step thousands of times.
    let mut table = [1; 64];
    for index in plan.steps().iter().flat_map(|s| s.loops.iter()) {
        table[index.bit() as usize] = size(index);
    }
    let size = &|index: Index| table[index.bit() as usize];
    let steps = plan.steps();
    let global: Vec<Vec<Index>> = steps.iter().map(|s| super::layout(s.indices).collect()).collect();
    if crate::backward::is_kcp(graph) || may_interleave(plan, graph, size) {
        return global;
    }
    let mut candidates: Vec<Vec<Vec<Index>>> =
        (0..steps.len()).map(|k| layouts_of(plan, graph, k, &global[k], size, true)).collect();
    // Within the budget of trials per step: the largest lists go over to classes first.
    for (k, step) in steps.iter().enumerate() {
        let mut tensors = vec![k];
        tensors.extend(step.inputs.iter().filter_map(|&(v, _)| if let Value::Temp(t) = v { Some(t) } else { None }));
        while tensors.iter().map(|&t| candidates[t].len()).product::<usize>() > MAX_TRIALS {
            let coarse = tensors.iter().map(|&t| (t, layouts_of(plan, graph, t, &global[t], size, false)));
            let Some((t, list)) =
                coarse.filter(|(t, list)| list.len() < candidates[*t].len()).max_by_key(|(t, _)| candidates[*t].len())
            else {
                break;
            };
            candidates[t] = list;
        }
    }
    // best[k][c]: the least estimated time of step k's subtree with its result in layout c,
    // and the candidates of its inputs that give it.
    let mut best: Vec<Vec<(f64, [usize; 2])>> = Vec::with_capacity(steps.len());
    for (k, step) in steps.iter().enumerate() {
        let choices = |v: Value| match v {
            Value::Temp(t) => candidates[t].len(),
            _ => 1,
        };
        let [n0, n1] = step.inputs.map(|(v, _)| choices(v));
        let mut row = Vec::with_capacity(candidates[k].len());
        for out in &candidates[k] {
            let mut least = (f64::INFINITY, [0, 0]);
            for c0 in 0..n0 {
                for c1 in 0..n1 {
                    let [l0, l1] = [(step.inputs[0], c0), (step.inputs[1], c1)]
                        .map(|((v, indices), c)| layout_of(graph, &candidates, v, indices, c));
                    let below: f64 = [(step.inputs[0].0, c0), (step.inputs[1].0, c1)]
                        .iter()
                        .map(|&(v, c)| if let Value::Temp(t) = v { best[t][c].0 } else { 0.0 })
                        .sum();
                    let cost = below + step_cost(step, [out.clone(), l0, l1], size);
                    if cost < least.0 {
                        least = (cost, [c0, c1]);
                    }
                }
            }
            row.push(least);
        }
        best.push(row);
    }
    let Some(root) = steps.len().checked_sub(1) else { return global };
    // Candidate 0 is the global order: the cost of keeping it everywhere.
    let kept = global_cost(plan, &global, size);
    let (found, _) = best[root].iter().enumerate().fold(
        (f64::INFINITY, 0),
        |acc, (c, &(cost, _))| {
            if cost < acc.0 {
                (cost, c)
            } else {
                acc
            }
        },
    );
    if found > (1.0 - MIN_SAVING) * kept {
        return global;
    }
    let mut chosen = global;
    let mut stack = vec![(root, best[root].iter().position(|&(cost, _)| cost == found).unwrap_or(0))];
    while let Some((k, c)) = stack.pop() {
        chosen[k] = candidates[k][c].clone();
        for (input, pick) in steps[k].inputs.iter().zip(best[k][c].1) {
            if let Value::Temp(t) = input.0 {
                stack.push((t, pick));
            }
        }
    }
    chosen
}

/// Whether the layer is small enough for [`super::interleave`] to run its rows interleaved
/// (a block of [`super::LANES`] rows within [`super::LANES_MAX_ELEMS`]): such a layer is bound
/// by its statements, which the estimate does not model, and keeps the global order.
fn may_interleave(plan: &Plan, graph: &ContractionGraph, size: &dyn Fn(Index) -> usize) -> bool {
    let volume = |set: IndexSet| set.iter().filter(|&i| i != Index::Batch).map(size).product::<usize>();
    let scratch = plan
        .steps()
        .iter()
        .filter(|s| s.phase == Phase::Call && s.output != Value::Output)
        .map(|s| volume(s.indices))
        .max()
        .unwrap_or(0);
    let elems = volume(graph.indices(Operand::Input)) + volume(graph.output_indices()) + 2 * scratch;
    super::LANES * elems <= super::LANES_MAX_ELEMS
}

/// The estimated time of the plan with every result in the global order.
fn global_cost(plan: &Plan, global: &[Vec<Index>], size: &dyn Fn(Index) -> usize) -> f64 {
    let layout = |(v, indices): (Value, IndexSet)| match v {
        Value::Temp(t) => global[t].clone(),
        _ => super::layout(indices).collect(),
    };
    plan.steps()
        .iter()
        .enumerate()
        .map(|(k, step)| step_cost(step, [global[k].clone(), layout(step.inputs[0]), layout(step.inputs[1])], size))
        .sum()
}

/// The layout of a step's input: an operand's own, a result's candidate `c`, or the global
/// order (y, ones).
fn layout_of(
    graph: &ContractionGraph,
    candidates: &[Vec<Vec<Index>>],
    v: Value,
    indices: IndexSet,
    c: usize,
) -> Vec<Index> {
    match v {
        Value::Operand(operand) => graph.layout(operand),
        Value::Temp(t) => candidates[t][c].clone(),
        Value::Output | Value::Ones => super::layout(indices).collect(),
    }
}

/// The estimated time of one step with these layouts (out, first input, second input); a
/// load-time step is free.
fn step_cost(step: &Step, [out, first, second]: [Vec<Index>; 3], size: &dyn Fn(Index) -> usize) -> f64 {
    if step.phase == Phase::Prep {
        return 0.0;
    }
    // The buffers play no part in the nest's shape, except that y is not zeroed.
    let buffer = if step.output == Value::Output { Buffer::Y } else { Buffer::Scratch(0) };
    let tensors = [(buffer, out), (Buffer::Scratch(1), first), (Buffer::Scratch(1), second)];
    let kernel = super::step_kernel(step, tensors, size, String::new());
    let macs: usize = step.loops.iter().map(size).product();
    estimate(&kernel, macs)
}

/// A kernel's estimated time, in multiply-adds at the full vector rate: its `macs` over the
/// efficiency of its inner operation, plus a fixed cost per call of the micro-kernel, per
/// product repeated inside a call, and per inner operation of the nest. The efficiencies are
/// coarse, from the step times of the format layers (16-float vectors filled by the
/// contiguous run; a GEMM needs four rows to keep its FMAs in flight; an axpy loads and
/// stores its output for every multiply-add; a dot ends in a horizontal sum).
fn estimate(kernel: &Kernel, macs: usize) -> f64 {
    /// A call of the micro-kernel: the checks, the dispatch, the set-up of the blocks.
    const CALL: f64 = 1000.0;
    /// One more product of a call's repeat.
    const REPEAT: f64 = 50.0;
    /// One inner operation of the nest (an axpy, a dot, a written-out product).
    const OP: f64 = 150.0;
    let fill = |len: usize| len as f64 / (16 * len.div_ceil(16)).max(1) as f64;
    let rows = |rows: usize| rows.min(4) as f64 / 4.0;
    let depth = |depth: usize| depth as f64 / (depth + 4) as f64;
    let around: f64 = kernel.loops.iter().map(|l| l.extent as f64).product();
    let (efficiency, fixed) = match kernel.inner {
        Inner::Gemm { shape: g, written_out } => {
            let fixed = if written_out { around * OP } else { around * (CALL + REPEAT * g.repeat.count as f64) };
            (fill(g.len) * rows(g.rows) * depth(g.depth * g.outer), fixed)
        }
        Inner::GemmRowsFromA { shape: g, written_out } => {
            let fixed = if written_out { around * OP } else { around * (CALL + REPEAT * g.repeat.count as f64) };
            (fill(g.len) * rows(g.rows) * depth(g.depth), fixed)
        }
        Inner::Axpy { len } => (fill(len) / 4.0, around * OP),
        Inner::Dot { len } => (fill(len) / 2.0, around * OP),
    };
    macs as f64 / efficiency.max(1e-3) + fixed
}

/// The layouts tried for step `k`'s result: the global order first, then every order of its
/// classes (see the module docs); y has only its own.
fn layouts_of(
    plan: &Plan,
    graph: &ContractionGraph,
    k: usize,
    global: &[Index],
    size: &dyn Fn(Index) -> usize,
    fine: bool,
) -> Vec<Vec<Index>> {
    let steps = plan.steps();
    let step = &steps[k];
    let mut out = vec![global.to_vec()];
    if step.output == Value::Output {
        return out;
    }
    let Some(consumer) = steps.iter().find(|s| s.inputs.iter().any(|&(v, _)| v == Value::Temp(k))) else {
        return out;
    };
    let [(v0, i0), (v1, i1)] = step.inputs;
    let other = consumer.inputs.iter().find(|&&(v, _)| v != Value::Temp(k)).copied();
    let other_indices = other.map_or(IndexSet::EMPTY, |(_, set)| set);
    // Tensors of fixed layout next to this one: their orders decide the order within a class.
    let fixed_layout = |v: Value, indices: IndexSet| match v {
        Value::Operand(operand) => Some(graph.layout(operand)),
        Value::Output => Some(super::layout(indices).collect()),
        Value::Temp(_) | Value::Ones => None,
    };
    let mut references: Vec<Vec<Index>> = Vec::new();
    references.extend(other.and_then(|(v, set)| fixed_layout(v, set)));
    if consumer.output == Value::Output {
        references.push(super::layout(consumer.indices).collect());
    }
    references.extend(fixed_layout(v0, i0));
    references.extend(fixed_layout(v1, i1));
    references.push(global.to_vec());
    let rank = |i: Index| -> Vec<usize> {
        references.iter().map(|r| r.iter().position(|&x| x == i).unwrap_or(usize::MAX)).collect()
    };
    // Indices of one value lie anywhere; the others are laid out.
    let (trivial, indices): (Vec<Index>, Vec<Index>) =
        step.indices.iter().filter(|&i| i != Index::Batch).partition(|&i| size(i) == 1);
    let classes: Vec<Vec<Index>> = if fine && indices.len() <= MAX_FREE {
        indices.iter().map(|&i| vec![i]).collect()
    } else {
        let role = |i: Index| match (consumer.indices.contains(i), other_indices.contains(i)) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 2,
        };
        let source = |i: Index| match (i0.contains(i), i1.contains(i)) {
            (true, false) => 0,
            (false, true) => 1,
            _ => 2,
        };
        let classes_by = |key: &dyn Fn(Index) -> usize| -> Vec<Vec<Index>> {
            let mut classes: Vec<Vec<Index>> = Vec::new();
            for key_value in 0..9 {
                let mut class: Vec<Index> = indices.iter().copied().filter(|&i| key(i) == key_value).collect();
                class.sort_by_key(|&i| rank(i));
                if !class.is_empty() {
                    classes.push(class);
                }
            }
            classes
        };
        let classes = classes_by(&|i| 3 * source(i) + role(i));
        if classes.len() > MAX_CLASSES {
            classes_by(&role)
        } else {
            classes
        }
    };
    let batch = step.indices.contains(Index::Batch).then_some(Index::Batch);
    for order in crate::backward::permutations(classes.len()) {
        let layout: Vec<Index> = trivial
            .iter()
            .copied()
            .chain(order.iter().flat_map(|&c| classes[c].iter().copied()))
            .chain(batch)
            .collect();
        if !out.contains(&layout) {
            out.push(layout);
        }
    }
    out
}
