//! Memory layouts of intermediates: which order each step's result keeps its indices in.
//!
//! The global order (rank and bonds first, then the modes) suits a KCP layer, whose steps each
//! contract x's side with one `[r, i_d, j_d]` factor. The other formats' intermediates carry
//! bonds that the next step sums together with a mode, and modes that a step only passes on;
//! in the global order those runs are split, and a step of 820k MACs becomes 160 calls of a
//! 4-float-wide product (the tensor train's second step). So each intermediate gets the layout
//! under which the steps that write and read it lower best, searched over the plan as a whole:
//!
//! - **Candidates.** Every order of an intermediate's indices (of at most [`MAX_FREE`] indices
//!   of more than one value); with more, the indices fall into classes by where they come from
//!   (the producer's first input, its second, or both) and what the first step reading them
//!   does with them (sums them, shares them with its other input, or passes them on), and a
//!   candidate orders the classes, each class in the order its indices have in a tensor of
//!   fixed layout (a core, x, y, a gradient) next to it, so that they coalesce there.
//! - **Cost.** Each step is lowered as the loop nest would lower it and costed by
//!   [`estimate`]: its MACs at the efficiency of its inner operation, plus what its calls and
//!   inner operations cost beyond that. Load-time steps cost nothing.
//! - **Search.** In a forward plan every intermediate is read by exactly one later step: the
//!   plan is a tree, and dynamic programming over it finds the cheapest assignment exactly
//!   (for the estimate). A backward plan reuses intermediates between gradients; there a local
//!   search from the global order moves one intermediate's layout, then the layouts of an
//!   intermediate and of one it is read into together, while that lowers the estimate.
//!
//! The search keeps the global order unless it saves at least [`MIN_SAVING`] of the estimated
//! time: the estimate is coarse, and the global order's nests are the measured ones. A KCP
//! layer always keeps it: the global order is made for its steps, its nests are the tuned and
//! measured ones, and its backward sweep reads kept forward intermediates in that order. So
//! does a layer small enough to run its rows interleaved: bound by its statements and calls
//! more than by its vectors, it is what the estimate models worst.

use kcp_core::{Buffer, Inner, Kernel};

use crate::backward::{BackwardPlan, BackwardTensor};
use crate::graph::{ContractionGraph, Index, IndexSet, Operand};
use crate::plan::{Phase, Plan, Value};
use crate::tuning::{MAX_CLASSES, MAX_FREE, MAX_PAIR_TRIALS, MAX_ROUNDS, MAX_TRIALS, MIN_SAVING, SMALL_ELEMS};

/// A tensor a step reads or writes, as the search sees it.
#[derive(Clone, Debug)]
pub(super) enum Slot {
    /// A tensor of fixed layout: an operand, y, a gradient, dx.
    Fixed(Vec<Index>),
    /// The result of step k, whose layout the search chooses.
    Result(usize),
}

/// A step as the search sees it: its inputs (with their indices), its result, the indices it
/// loops over, and whether it runs at load time (and so costs nothing per call).
#[derive(Clone, Debug)]
pub(super) struct Node {
    pub inputs: [(Slot, IndexSet); 2],
    pub output: (Slot, IndexSet),
    pub loops: IndexSet,
    pub free: bool,
}

/// The estimated time of step k with its result and inputs in these layouts.
pub(super) type StepCost<'a> = dyn Fn(usize, [&[Index]; 3]) -> f64 + 'a;

/// Each step's result's memory layout (the batch index last, where it has one), by step:
/// the global order for a fixed result, the chosen one for the others.
pub(super) fn choose(nodes: &[Node], size: &dyn Fn(Index) -> usize, cost: &StepCost) -> Vec<Vec<Index>> {
    let global: Vec<Vec<Index>> = nodes
        .iter()
        .map(|n| match &n.output.0 {
            Slot::Fixed(layout) => layout.clone(),
            Slot::Result(_) => super::layout(n.output.1).collect(),
        })
        .collect();
    let mut candidates: Vec<Vec<Vec<Index>>> =
        (0..nodes.len()).map(|k| layouts_of(nodes, k, &global[k], size, true)).collect();
    let readers: Vec<Vec<usize>> = (0..nodes.len()).map(|k| readers(nodes, k)).collect();
    let picks = if readers.iter().all(|r| r.len() <= 1) {
        // Within the budget of trials per step: the largest lists go over to classes first.
        for k in 0..nodes.len() {
            let mut results = vec![k];
            results.extend(nodes[k].inputs.iter().filter_map(|(slot, _)| result(slot)));
            shrink(nodes, &mut candidates, &results, &global, size, MAX_TRIALS);
        }
        tree(nodes, &candidates, &readers, cost)
    } else {
        local(nodes, &mut candidates, &readers, &global, size, cost)
    };
    let estimate =
        |picks: &[usize]| -> f64 { (0..nodes.len()).map(|k| step_estimate(nodes, &candidates, picks, k, cost)).sum() };
    // Candidate 0 is the global order.
    if estimate(&picks) > (1.0 - MIN_SAVING) * estimate(&vec![0; nodes.len()]) {
        return global;
    }
    picks.iter().enumerate().map(|(k, &c)| candidates[k][c].clone()).collect()
}

/// The layouts of a forward plan's results, by step (see the module docs).
pub(super) fn forward(plan: &Plan, graph: &ContractionGraph) -> Vec<Vec<Index>> {
    let steps = plan.steps();
    let global = || steps.iter().map(|s| super::layout(s.indices).collect()).collect();
    let size = sizes(graph);
    let temps = steps.iter().filter(|s| s.phase == Phase::Call && s.output != Value::Output).map(|s| s.indices);
    if crate::backward::is_kcp(graph) || small(graph, temps, &size) {
        return global();
    }
    let slot = |value: Value, indices: IndexSet| match value {
        Value::Operand(operand) => Slot::Fixed(graph.layout(operand)),
        Value::Temp(k) => Slot::Result(k),
        Value::Output | Value::Ones => Slot::Fixed(super::layout(indices).collect()),
    };
    let nodes: Vec<Node> = steps
        .iter()
        .map(|s| Node {
            inputs: s.inputs.map(|(v, indices)| (slot(v, indices), indices)),
            output: (slot(s.output, s.indices), s.indices),
            loops: s.loops,
            free: s.phase == Phase::Prep,
        })
        .collect();
    let cost = |k: usize, [out, first, second]: [&[Index]; 3]| {
        let (step, node) = (&steps[k], &nodes[k]);
        if node.free {
            return 0.0;
        }
        // The buffers play no part in the nest's shape, except that y is not zeroed.
        let buffer = if step.output == Value::Output { Buffer::Y } else { Buffer::Scratch(0) };
        let tensors =
            [(buffer, out.to_vec()), (Buffer::Scratch(1), first.to_vec()), (Buffer::Scratch(1), second.to_vec())];
        let kernel = super::step_kernel(step, tensors, &size, String::new());
        estimate(&kernel, node.loops.iter().map(&size).product())
    };
    choose(&nodes, &size, &cost)
}

/// The layouts of a backward plan's temporaries, by step (a gradient's, dx's in their own).
pub(super) fn backward(plan: &BackwardPlan, graph: &ContractionGraph) -> Vec<Vec<Index>> {
    let size = sizes(graph);
    let slot = |tensor: BackwardTensor, indices: IndexSet| match tensor {
        BackwardTensor::Temp(k) => Slot::Result(k),
        other => Slot::Fixed(super::backward_layout(graph, other, indices)),
    };
    let nodes: Vec<Node> = plan
        .steps
        .iter()
        .map(|s| Node {
            inputs: s.inputs.map(|(t, indices)| (slot(t, indices), indices)),
            output: (slot(s.output, s.indices), s.indices),
            loops: s.inputs[0].1.union(s.inputs[1].1),
            free: false,
        })
        .collect();
    // A KCP layer's backward pass (a sweep may read kept forward intermediates) keeps the
    // global order, as does a small layer's.
    let temps = plan.steps.iter().filter(|s| matches!(s.output, BackwardTensor::Temp(_))).map(|s| s.indices);
    if crate::backward::is_kcp(graph) || small(graph, temps, &size) {
        return nodes.iter().map(|n| super::layout(n.output.1).collect()).collect();
    }
    let cost = |k: usize, layouts: [&[Index]; 3]| {
        let kernel = super::backward_kernel(graph, &plan.steps[k], k, layouts, &size, String::new()).0;
        estimate(&kernel, nodes[k].loops.iter().map(&size).product())
    };
    choose(&nodes, &size, &cost)
}

/// The sizes of one row (the batch index has one value), as a table: the search lowers each
/// step thousands of times.
fn sizes(graph: &ContractionGraph) -> impl Fn(Index) -> usize {
    let mut table = [1; 64];
    for index in graph.indices(Operand::Input).union(graph.output_indices()).iter() {
        table[index.bit() as usize] = graph.size(index) as usize;
    }
    for core in 0..graph.cores() {
        for index in graph.indices(Operand::Factor(core)).iter() {
            table[index.bit() as usize] = graph.size(index) as usize;
        }
    }
    table[Index::Batch.bit() as usize] = 1;
    move |index: Index| table[index.bit() as usize]
}

/// Whether the layer is small: a row of x, y and twice the largest of `temps` (the volumes
/// of the intermediates) within [`SMALL_ELEMS`]. Such a layer is bound by its statements,
/// which the estimate does not model, and keeps the global order (forward and backward
/// alike).
fn small(graph: &ContractionGraph, temps: impl Iterator<Item = IndexSet>, size: &dyn Fn(Index) -> usize) -> bool {
    let volume = |set: IndexSet| set.iter().filter(|&i| i != Index::Batch).map(size).product::<usize>();
    let scratch = temps.map(volume).max().unwrap_or(0);
    let elems = volume(graph.indices(Operand::Input)) + volume(graph.output_indices()) + 2 * scratch;
    elems <= SMALL_ELEMS
}

/// Step k's estimated time with every result in its candidate of `picks`.
fn step_estimate(nodes: &[Node], candidates: &[Vec<Vec<Index>>], picks: &[usize], k: usize, cost: &StepCost) -> f64 {
    let [(s0, _), (s1, _)] = &nodes[k].inputs;
    let input = |slot| slot_layout(slot, candidates, result(slot).map_or(0, |t| picks[t]));
    cost(k, [&candidates[k][picks[k]], input(s0), input(s1)])
}

/// The layout of a step's input: a fixed tensor's own, a result's candidate `c`.
fn slot_layout<'a>(slot: &'a Slot, candidates: &'a [Vec<Vec<Index>>], c: usize) -> &'a [Index] {
    match slot {
        Slot::Fixed(layout) => layout,
        Slot::Result(t) => &candidates[*t][c],
    }
}

/// The step whose result a slot is, if it is one.
fn result(slot: &Slot) -> Option<usize> {
    match slot {
        Slot::Result(k) => Some(*k),
        Slot::Fixed(_) => None,
    }
}

/// The steps that read step k's result.
fn readers(nodes: &[Node], k: usize) -> Vec<usize> {
    (0..nodes.len()).filter(|&n| nodes[n].inputs.iter().any(|(slot, _)| result(slot) == Some(k))).collect()
}

/// Take the largest candidate lists of `results` over to classes until their combinations fit
/// `most` (or none can shrink further).
fn shrink(
    nodes: &[Node],
    candidates: &mut [Vec<Vec<Index>>],
    results: &[usize],
    global: &[Vec<Index>],
    size: &dyn Fn(Index) -> usize,
    most: usize,
) {
    while results.iter().map(|&t| candidates[t].len()).product::<usize>() > most {
        let coarse = results.iter().map(|&t| (t, layouts_of(nodes, t, &global[t], size, false)));
        let Some((t, list)) =
            coarse.filter(|(t, list)| list.len() < candidates[*t].len()).max_by_key(|(t, _)| candidates[*t].len())
        else {
            break;
        };
        candidates[t] = list;
    }
}

/// The exact search over a tree (every result read once): `best[k][c]` is the least estimated
/// time of step k's subtree with its result in candidate c, and the inputs' candidates that give
/// it. Returns each step's candidate.
fn tree(nodes: &[Node], candidates: &[Vec<Vec<Index>>], readers: &[Vec<usize>], cost: &StepCost) -> Vec<usize> {
    let mut best: Vec<Vec<(f64, [usize; 2])>> = Vec::with_capacity(nodes.len());
    for (k, node) in nodes.iter().enumerate() {
        let choices = |slot: &Slot| result(slot).map_or(1, |t| candidates[t].len());
        let [n0, n1] = [choices(&node.inputs[0].0), choices(&node.inputs[1].0)];
        let below = |slot: &Slot, c: usize| result(slot).map_or(0.0, |t| best[t][c].0);
        let row = candidates[k]
            .iter()
            .map(|out| {
                let mut least = (f64::INFINITY, [0, 0]);
                for c0 in 0..n0 {
                    for c1 in 0..n1 {
                        let [(s0, _), (s1, _)] = &node.inputs;
                        let layouts =
                            [out.as_slice(), slot_layout(s0, candidates, c0), slot_layout(s1, candidates, c1)];
                        let total = below(s0, c0) + below(s1, c1) + cost(k, layouts);
                        if total < least.0 {
                            least = (total, [c0, c1]);
                        }
                    }
                }
                least
            })
            .collect();
        best.push(row);
    }
    let mut picks = vec![0; nodes.len()];
    // Every root (a step whose result nobody reads) and its subtree.
    let mut stack: Vec<(usize, usize)> = (0..nodes.len())
        .filter(|&k| readers[k].is_empty())
        .map(|k| {
            let c = (0..best[k].len()).fold(0, |c, d| if best[k][d].0 < best[k][c].0 { d } else { c });
            (k, c)
        })
        .collect();
    while let Some((k, c)) = stack.pop() {
        picks[k] = c;
        for ((slot, _), pick) in nodes[k].inputs.iter().zip(best[k][c].1) {
            if let Some(t) = result(slot) {
                stack.push((t, pick));
            }
        }
    }
    picks
}

/// The local search over a plan whose results may be read more than once: from the global
/// order, move the candidate of one result, then of a result and of one its reader writes
/// together, whenever that lowers the estimate of the steps they touch; at most
/// [`MAX_ROUNDS`] rounds. Returns each step's candidate.
fn local(
    nodes: &[Node],
    candidates: &mut [Vec<Vec<Index>>],
    readers: &[Vec<usize>],
    global: &[Vec<Index>],
    size: &dyn Fn(Index) -> usize,
    cost: &StepCost,
) -> Vec<usize> {
    let mut picks = vec![0; nodes.len()];
    // The pairs moved together: a result and the result of a step that reads it.
    let pairs: Vec<(usize, usize)> = (0..nodes.len())
        .flat_map(|t| readers[t].iter().map(move |&u| (t, u)))
        .filter(|&(_, u)| candidates[u].len() > 1)
        .collect();
    for &(t, u) in &pairs {
        shrink(nodes, candidates, &[t, u], global, size, MAX_PAIR_TRIALS);
    }
    let touched = |results: &[usize]| -> Vec<usize> {
        let mut steps: Vec<usize> =
            results.iter().flat_map(|&t| std::iter::once(t).chain(readers[t].clone())).collect();
        steps.sort_unstable();
        steps.dedup();
        steps
    };
    // Each step's estimate by the candidates of its result and inputs: the moves try the same
    // combinations of a step's layouts many times over.
    let memo = std::cell::RefCell::new(std::collections::HashMap::new());
    let cost_of = |steps: &[usize], picks: &[usize]| -> f64 {
        steps
            .iter()
            .map(|&k| {
                let pick = |slot: &Slot| result(slot).map_or(usize::MAX, |t| picks[t]);
                let key = (k, picks[k], pick(&nodes[k].inputs[0].0), pick(&nodes[k].inputs[1].0));
                if let Some(&known) = memo.borrow().get(&key) {
                    return known;
                }
                let estimate = step_estimate(nodes, candidates, picks, k, cost);
                memo.borrow_mut().insert(key, estimate);
                estimate
            })
            .sum()
    };
    for _ in 0..MAX_ROUNDS {
        let mut moved = false;
        for t in 0..nodes.len() {
            let steps = touched(&[t]);
            let mut trial = picks.clone();
            let mut least = (cost_of(&steps, &picks), picks[t]);
            for c in 0..candidates[t].len() {
                trial[t] = c;
                let total = cost_of(&steps, &trial);
                if total < least.0 {
                    least = (total, c);
                }
            }
            moved |= least.1 != picks[t];
            picks[t] = least.1;
        }
        for &(t, u) in &pairs {
            let steps = touched(&[t, u]);
            let mut trial = picks.clone();
            let mut least = (cost_of(&steps, &picks), picks[t], picks[u]);
            for c in 0..candidates[t].len() {
                for d in 0..candidates[u].len() {
                    (trial[t], trial[u]) = (c, d);
                    let total = cost_of(&steps, &trial);
                    if total < least.0 {
                        least = (total, c, d);
                    }
                }
            }
            moved |= (least.1, least.2) != (picks[t], picks[u]);
            (picks[t], picks[u]) = (least.1, least.2);
        }
        if !moved {
            break;
        }
    }
    picks
}

/// A kernel's estimated time, in multiply-adds at the full vector rate: its `macs` over the
/// efficiency of its inner operation, plus a fixed cost per call of the micro-kernel, per
/// product repeated inside a call, and per inner operation of the nest. The efficiencies are
/// coarse, from the step times of the format layers (16-float vectors filled by the
/// contiguous run; a GEMM needs four rows to keep its FMAs in flight; an axpy loads and
/// stores its output for every multiply-add; a dot ends in a horizontal sum).
pub(super) fn estimate(kernel: &Kernel, macs: usize) -> f64 {
    use crate::tuning::{ESTIMATE_CALL as CALL, ESTIMATE_OP as OP, ESTIMATE_REPEAT as REPEAT};
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
        Inner::Axpy { len } | Inner::Mul { len } => (fill(len) / 4.0, around * OP),
        Inner::Dot { len } => (fill(len) / 2.0, around * OP),
    };
    macs as f64 / efficiency.max(1e-3) + fixed
}

/// The layouts tried for step k's result: the global order first, then every order of its
/// indices or classes (see the module docs); a fixed result has only its own.
fn layouts_of(
    nodes: &[Node],
    k: usize,
    global: &[Index],
    size: &dyn Fn(Index) -> usize,
    fine: bool,
) -> Vec<Vec<Index>> {
    let node = &nodes[k];
    let mut out = vec![global.to_vec()];
    let Slot::Result(_) = node.output.0 else { return out };
    let Some(&first) = readers(nodes, k).first() else { return out };
    let reader = &nodes[first];
    let [(s0, i0), (s1, i1)] = &node.inputs;
    let other = reader.inputs.iter().find(|(slot, _)| result(slot) != Some(k));
    let other_indices = other.map_or(IndexSet::EMPTY, |(_, set)| *set);
    // Tensors of fixed layout next to this one: their orders decide the order within a class.
    let fixed = |slot: &Slot| match slot {
        Slot::Fixed(layout) => Some(layout.clone()),
        Slot::Result(_) => None,
    };
    let mut references: Vec<Vec<Index>> = Vec::new();
    references.extend(other.and_then(|(slot, _)| fixed(slot)));
    references.extend(fixed(&reader.output.0));
    references.extend(fixed(s0));
    references.extend(fixed(s1));
    references.push(global.to_vec());
    let rank = |i: Index| -> Vec<usize> {
        references.iter().map(|r| r.iter().position(|&x| x == i).unwrap_or(usize::MAX)).collect()
    };
    // Indices of one value lie anywhere; the others are laid out.
    let (trivial, indices): (Vec<Index>, Vec<Index>) =
        node.output.1.iter().filter(|&i| i != Index::Batch).partition(|&i| size(i) == 1);
    let classes: Vec<Vec<Index>> = if fine && indices.len() <= MAX_FREE {
        indices.iter().map(|&i| vec![i]).collect()
    } else {
        let role = |i: Index| match (reader.output.1.contains(i), other_indices.contains(i)) {
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
    let batch = node.output.1.contains(Index::Batch).then_some(Index::Batch);
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
