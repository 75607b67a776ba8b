//! Lowering: `Plan` -> loop nest ([`LoopNest`], the runtime's [`Program`] format).
//!
//! The nest runs one batch row at a time (b is the driver's loop; threads split it). Every step
//! becomes a kernel `out[o] += a[ia] * w[iw]`, where `a` usually carries x (or is the first
//! weight of a load-time step) and `w` is a weight, unless the other order gives the longer
//! inner run (`longer_run`: y may share its contiguous run with a pre-product). Cores keep
//! their own storage order, y the global one, and each intermediate the layout [`layout`]
//! chooses for it (the global order unless another runs its producer and consumer faster), so:
//!
//! 1. the innermost operation is an `axpy` over the longest run of trailing indices that `out`
//!    and `a` share and `w` lacks (one contiguous block in both: the modes after the contracted
//!    ones); failing that a `dot` over a summed index last in both `a` and `w`; failing that
//!    a `mul` (elementwise) over the longest run of trailing indices that all three share (a
//!    rank that neither operand sums, as in a CP layer's step that pairs two rank-indexed
//!    tensors); failing that a scalar multiply-add;
//! 2. the other loops run in the output's layout order, the summed ones innermost, so that each
//!    output block is finished while it is in L1; the rank sum of the last step accumulates
//!    straight into y (fused: no rank-sized intermediate of y);
//! 3. adjacent loops that step through memory as one loop would are merged (coalesced); then,
//!    where the axpy run is at least [`GEMM_MIN_LEN`] long and the nest sums over an index, the
//!    summed loop and a loop over rows of the weight become one register-blocked small GEMM
//!    ([`Gemm`]): the accumulators stay in registers over the sum instead of a load and a store of
//!    `out` per multiply-add; likewise a `dot` whose output runs contiguously over an index of
//!    the weight only (the last step: y's last mode) becomes a GEMM whose columns come from the
//!    weight ([`Inner::GemmRowsFromA`]); a GEMM that does the nest's whole sum overwrites its
//!    output, which then needs no zeroing;
//! 4. no tiny calls: the loop directly around a GEMM that is called becomes the GEMM's
//!    [`Repeat`], which the micro-kernel runs inside one call (a call costs about as much as
//!    a thousand multiply-adds: the checks, the dispatch, the setup of the blocks; a step of
//!    128 products of 4x20x18 paid it 128 times per row);
//! 5. the unrolling policy: a small GEMM is written out as its axpys or dots where they fit
//!    [`UNROLL_BUDGET`] (decided here and kept in the nest, where the printer shows it), and the
//!    micro-kernel is called for the others; starting
//!    from the innermost loop, unroll loops of at most [`MAX_UNROLL_EXTENT`] iterations while
//!    the statements of the inner operation times the unrolled extents stay within
//!    [`UNROLL_BUDGET`], which bounds the emitted code to `UNROLL_BUDGET` statements per step;
//!    loops around a GEMM call and outer loops stay loops;
//! 6. per-call intermediates alternate between two scratch buffers of the largest size.
//!
//! [`lower_lanes`] lowers the same plan for `lanes` rows at once, interleaved: the batch index
//! has `lanes` values and sits last in every tensor (the driver transposes x's rows in and y's
//! out). Every step's contiguous run then grows by `lanes`, so the products of a small layer,
//! runs of a few floats per row, become GEMMs whose columns are the rows of the batch: whole
//! vectors instead of one 4-float axpy per weight ([`interleave`] decides when it pays).

use kcp_core::{
    BackwardKernel, BackwardProgram, Buffer, CoreShape, Gemm, Inner, Kernel, Loop, Program, Repeat, RowsFromA,
};

use crate::backward::{BackwardPlan, BackwardStep, BackwardTensor};
use crate::graph::{ContractionGraph, Index, IndexSet, Operand};
use crate::plan::{Phase, Plan, Step, Value};
use crate::tuning::{
    GEMM_MIN_LEN, LANES, LANES_MAX_ELEMS, LANES_MIN_SAVING, MAX_UNROLL_EXTENT, UNROLL_BUDGET, WRITTEN_OUT_MAX_LEN,
};

mod layout;

/// The loop-nest IR: the runtime's program format.
pub type LoopNest = Program;

/// Lower a plan to its loop nest, one batch row at a time.
pub fn lower(plan: &Plan, graph: &ContractionGraph) -> LoopNest {
    lower_lanes(plan, graph, 1)
}

/// Make the products of `nest` that sweep the next row of x (`Gemm::stream`) find it `row`
/// elements on: for a part of a row cut in two, whose own input is a block of the layer's.
pub(crate) fn next_row_at(nest: &mut LoopNest, row: usize) {
    for kernel in &mut nest.call {
        match &mut kernel.inner {
            Inner::Gemm { shape: Gemm { stream, .. }, .. }
            | Inner::GemmRowsFromA { shape: RowsFromA { stream, .. }, .. }
                if *stream != 0 =>
            {
                *stream = row
            }
            _ => {}
        }
    }
}

/// Lower a plan for `lanes` rows at once, the batch index last in every tensor: x is read as
/// `[N, lanes]` and y written as `[M, lanes]` (`lanes` = 1 is [`lower`]).
pub fn lower_lanes(plan: &Plan, graph: &ContractionGraph, lanes: usize) -> LoopNest {
    let size = |index: Index| if index == Index::Batch { lanes } else { graph.size(index) as usize };
    let mut buffers: Vec<Buffer> = Vec::new();
    let (mut prep, mut call, mut prep_lens) = (Vec::new(), Vec::new(), Vec::new());
    let (mut scratch_len, mut ones) = (0, 0);
    // Chosen for one row: the interleaved nest shares the row nest's pre-products.
    let layouts = layout::forward(plan, graph);
    for (n, step) in plan.steps().iter().enumerate() {
        let out_len: usize = step.indices.iter().map(size).product();
        let out = match (step.output, step.phase) {
            (Value::Output, _) => Buffer::Y,
            (_, Phase::Prep) => {
                prep_lens.push(out_len);
                Buffer::Prep(prep_lens.len() - 1)
            }
            (_, Phase::Call) => {
                scratch_len = scratch_len.max(out_len);
                Buffer::Scratch(call.len() % 2)
            }
        };
        buffers.push(out);
        // Each value in its layout: an operand in its own, a result in the one chosen for it.
        let tensor = |(value, indices): (Value, IndexSet)| match value {
            Value::Operand(operand) => (
                match operand {
                    Operand::Input => Buffer::X,
                    Operand::Factor(d) => Buffer::Factor(d),
                },
                graph.layout(operand),
            ),
            Value::Temp(k) => (buffers[k], layouts[k].clone()),
            Value::Output => (Buffer::Y, layout(indices).collect()),
            Value::Ones => (Buffer::Ones, layout(indices).collect()),
        };
        if let Some((_, summed)) = step.inputs.iter().find(|(v, _)| *v == Value::Ones) {
            ones = ones.max(summed.iter().map(size).product());
        }
        let comment = plan.describe_step(step) + &laid_out(step.output, &layouts[n], step.indices);
        let mut kernel = step_kernel(
            step,
            [(out, layouts[n].clone()), tensor(step.inputs[0]), tensor(step.inputs[1])],
            &size,
            comment,
        );
        // A product on x row by row (x supplying its columns or its rows): the next row of
        // the batch is N elements on.
        let on_x = kernel.a == Buffer::X || kernel.w == Buffer::X;
        let next_row = (0..graph.modes()).map(|d| size(Index::In(d))).product();
        match (on_x, lanes, &mut kernel.inner) {
            (true, 1, Inner::Gemm { shape: g, .. }) => g.stream = next_row,
            (true, 1, Inner::GemmRowsFromA { shape: g, .. }) if kernel.a == Buffer::X => g.stream = next_row,
            _ => {}
        }
        match step.phase {
            Phase::Prep => prep.push(kernel),
            Phase::Call => call.push(kernel),
        }
    }
    let rows = plan.batch_rows();
    Program {
        in_shape: (0..graph.modes()).map(|d| size(Index::In(d))).collect(),
        out_shape: (0..graph.modes()).map(|d| size(Index::Out(d))).collect(),
        rank: size(Index::Rank),
        cores: cores(graph),
        ones,
        prep_lens,
        scratch_len,
        prep,
        call,
        macs_per_row: plan.macs() / rows,
        lanes,
    }
}

/// One step of a plan lowered with its tensors in these buffers and layouts (its result, its
/// first input, its second). `a` carries x in a per-call step, and a load-time step takes its
/// inputs in order; the other order wins where its inner operation runs longer (y and a
/// pre-product may share the contiguous run that y and x's side do not).
fn step_kernel(
    step: &Step,
    [out, first, second]: [(Buffer, Vec<Index>); 3],
    size: &dyn Fn(Index) -> usize,
    comment: String,
) -> Kernel {
    let out_len: usize = step.indices.iter().map(size).product();
    let (a, w) = if step.inputs[1].1.contains(Index::Batch) { (second, first) } else { (first, second) };
    let zero = out.0 != Buffer::Y;
    let one = kernel([out.clone(), a.clone(), w.clone()], out_len, zero, size, comment.clone());
    longer_run(one, kernel([out, w, a], out_len, zero, size, comment))
}

/// Lower a backward plan to its loop nests, one batch row at a time, with the same lowering
/// (and so the same micro-kernels) as the forward pass: per row, temporaries and dx are
/// overwritten, every dA_d accumulates. A kept f_k is what the forward program's call kernel
/// k - 1 writes (the backward planner keeps only the intermediates of a forward plan that
/// contracts x with one factor after another, in its own order, and only for a KCP layer,
/// whose intermediates stay in the global order). The other formats' temporaries are laid
/// out as `layout` chooses.
pub fn lower_backward(plan: &BackwardPlan, graph: &ContractionGraph) -> BackwardProgram {
    let size = |index: Index| if index == Index::Batch { 1 } else { graph.size(index) as usize };
    let volume = |set: IndexSet| set.iter().map(size).product::<usize>();
    let layouts = layout::backward(plan, graph);
    let mut steps = Vec::new();
    let mut temp_lens = vec![0; plan.steps.len()];
    for (n, step) in plan.steps.iter().enumerate() {
        // A temporary in the layout chosen for it, a core and its gradient in the core's, every
        // other tensor in the global order.
        let layout_of = |(t, indices): (BackwardTensor, IndexSet)| match t {
            BackwardTensor::Temp(k) => layouts[k].clone(),
            other => backward_layout(graph, other, indices),
        };
        let [first, second] = step.inputs.map(layout_of);
        let mut comment = step.to_string();
        if matches!(step.output, BackwardTensor::Temp(_)) {
            comment += &laid_out(step.output, &layouts[n], step.indices);
        }
        let (kernel, broadcast) = backward_kernel(graph, step, n, [&layouts[n], &first, &second], &size, comment);
        if let Buffer::Temp(_) = kernel.out {
            temp_lens[n] = kernel.out_len;
        }
        steps.push(BackwardKernel { kernel, broadcast });
    }
    let kept = plan.kept_indices.iter().map(|&(k, set)| kcp_core::Kept { k, len: volume(set), from: k - 1 }).collect();
    BackwardProgram {
        in_shape: (0..graph.modes()).map(|d| size(Index::In(d))).collect(),
        out_shape: (0..graph.modes()).map(|d| size(Index::Out(d))).collect(),
        rank: size(Index::Rank),
        cores: cores(graph),
        steps,
        temp_lens,
        kept,
        dx: plan.dx,
        macs_per_row: plan.macs / graph.size(Index::Batch).max(1),
    }
}

/// What a step's line says of its result's layout: nothing in the global order, else
/// `  (t0 laid out [t3,j2,j3,j1,i4,b])`.
fn laid_out(result: impl std::fmt::Display, chosen: &[Index], indices: IndexSet) -> String {
    if chosen.iter().copied().eq(layout(indices)) {
        return String::new();
    }
    let order: Vec<String> = chosen.iter().map(Index::to_string).collect();
    format!("  ({result} laid out [{}])", order.join(","))
}

/// The layout of a tensor of the backward pass that is not a temporary: a core and its
/// gradient in the core's storage order, every other tensor in the global order.
fn backward_layout(graph: &ContractionGraph, tensor: BackwardTensor, indices: IndexSet) -> Vec<Index> {
    match tensor {
        BackwardTensor::Factor(d) | BackwardTensor::Grad(d) => graph.layout(Operand::Factor(d)),
        _ => layout(indices).collect(),
    }
}

/// Backward step `n` lowered with its result and inputs in these layouts (a gradient's result
/// is in its core's, unless it is broadcast over the rank terms: then it is a temporary, and
/// the step says which gradient it goes to). Per row, temporaries and dx are overwritten and
/// every gradient accumulates.
fn backward_kernel(
    graph: &ContractionGraph,
    step: &BackwardStep,
    n: usize,
    [out_layout, first, second]: [&[Index]; 3],
    size: &dyn Fn(Index) -> usize,
    comment: String,
) -> (Kernel, Option<usize>) {
    let buffer = |t: BackwardTensor| match t {
        BackwardTensor::X => Buffer::X,
        BackwardTensor::Dy => Buffer::Dy,
        BackwardTensor::Factor(d) => Buffer::Factor(d),
        BackwardTensor::Kept(k) => Buffer::Kept(k),
        BackwardTensor::Temp(k) => Buffer::Temp(k),
        BackwardTensor::Dx => Buffer::Dx,
        BackwardTensor::Grad(d) => Buffer::Grad(d),
    };
    let broadcast = match step.output {
        BackwardTensor::Grad(d) if !step.indices.contains(Index::Rank) && graph.size(Index::Rank) > 1 => Some(d),
        _ => None,
    };
    let (out, out_layout) = match (step.output, broadcast) {
        (BackwardTensor::Grad(_), Some(_)) => (Buffer::Temp(n), layout(step.indices).collect()),
        (BackwardTensor::Temp(_), _) => (Buffer::Temp(n), out_layout.to_vec()),
        (other, _) => (buffer(other), backward_layout(graph, other, step.indices)),
    };
    let out_len: usize = step.indices.iter().map(size).product();
    let zero = !matches!(out, Buffer::Grad(_));
    let [a, w] = [(step.inputs[0].0, first), (step.inputs[1].0, second)].map(|(t, l)| (buffer(t), l.to_vec()));
    // Either input may be the kernel's `a` (whose run the innermost operation follows): the
    // order that gives the longer contiguous run wins.
    let one = kernel([(out, out_layout.clone()), a.clone(), w.clone()], out_len, zero, size, comment.clone());
    let kernel = longer_run(one, kernel([(out, out_layout), w, a], out_len, zero, size, comment));
    (kernel, broadcast)
}

/// Of the same product lowered with its operands in either order, the one whose inner
/// operation uses the vector units better (`one` on a tie).
fn longer_run(one: Kernel, other: Kernel) -> Kernel {
    if run_score(&other) > run_score(&one) {
        other
    } else {
        one
    }
}

/// How well a kernel's innermost operation uses the vector units: a GEMM's contiguous run
/// (weighted: its sums stay in registers), or an axpy's or a dot's length.
fn run_score(kernel: &Kernel) -> usize {
    match kernel.inner {
        Inner::Gemm { shape, .. } => 4 * shape.len * shape.rows.min(4),
        Inner::GemmRowsFromA { shape, .. } => 4 * shape.len * shape.rows.min(4),
        Inner::Axpy { len } => len,
        // Two loads and a store per vector of multiply-adds.
        Inner::Mul { len } => len / 2,
        // Two loads and a horizontal sum per dot: a quarter of a GEMM's rate at best.
        Inner::Dot { len } => len / 4,
    }
}

/// The plan lowered for [`LANES`] interleaved rows, where that pays: where a block stays
/// within [`LANES_MAX_ELEMS`] and the layout search's estimate of the nests (vector fill,
/// rows in flight, the fixed cost of calls and inner operations, docs/cost-model.md) puts a
/// row of the block at least [`LANES_MIN_SAVING`] below a row of `rows`. `None` otherwise.
/// (Runs of a few floats per row become whole vectors, and the fixed costs are shared by
/// the block's rows; a layer whose rows already run wide products gains little.)
pub fn interleave(plan: &Plan, graph: &ContractionGraph, rows: &LoopNest) -> Option<LoopNest> {
    let elems = LANES * (rows.input_size() + rows.output_size() + 2 * rows.scratch_len);
    if elems > LANES_MAX_ELEMS {
        return None;
    }
    let lanes = lower_lanes(plan, graph, LANES);
    (estimate_per_row(plan, &lanes, LANES) <= (1.0 - LANES_MIN_SAVING) * estimate_per_row(plan, rows, 1))
        .then_some(lanes)
}

/// The layout search's estimate of a row's time under `nest`, a lowering of `plan` for `rows`
/// rows at once, in multiply-adds at the full vector rate (docs/cost-model.md): each per-call
/// kernel's MACs over the efficiency of its inner operation, plus the fixed cost of its calls
/// and inner operations.
pub fn estimate_per_row(plan: &Plan, nest: &LoopNest, rows: usize) -> f64 {
    let steps = plan.steps().iter().filter(|s| s.phase == Phase::Call);
    let time: f64 = nest.call.iter().zip(steps).map(|(k, s)| layout::estimate(k, s.macs as usize * rows)).sum();
    time / rows as f64
}

/// How many statements emission writes for one run of `inner`: one axpy or dot, a written-out
/// GEMM's statements ([`written_out`]), `None` for a GEMM that emission calls.
pub fn statements(inner: &Inner) -> Option<usize> {
    match inner {
        Inner::Axpy { .. } | Inner::Mul { .. } | Inner::Dot { .. } => Some(1),
        Inner::Gemm { written_out: true, .. } | Inner::GemmRowsFromA { written_out: true, .. } => written_out(inner),
        Inner::Gemm { .. } | Inner::GemmRowsFromA { .. } => None,
    }
}

/// The decision to write a GEMM out: for one at most [`WRITTEN_OUT_MAX_LEN`] wide whose
/// `rows x outer x depth` axpys, counted in 8-float vectors (rows from a, at most 8 wide and
/// summing fewer than [`Gemm::DOTS_MIN_DEPTH`] terms: `rows x len` dots), fit [`UNROLL_BUDGET`], those statements (such a product is a few dozen
/// vector FMAs, less than a call costs); `None` for a GEMM to call, and for the other inner
/// operations. The generic executor runs every GEMM through the micro-kernel.
fn written_out(inner: &Inner) -> Option<usize> {
    let n = match inner {
        Inner::Gemm { shape: g, .. } if g.len <= WRITTEN_OUT_MAX_LEN => g.rows * g.outer * g.depth * g.len.div_ceil(8),
        // A long sum runs faster as the kernel's blocks of dots (each load used four times).
        Inner::GemmRowsFromA { shape: g, .. } if g.len <= 8 && g.depth < Gemm::DOTS_MIN_DEPTH => g.rows * g.len,
        _ => return None,
    };
    (n <= UNROLL_BUDGET).then_some(n)
}

/// The indices of a result in memory order: the global order, except that the batch index
/// comes last (with one row per call it has one value, and its place does not matter).
fn layout(of: IndexSet) -> impl Iterator<Item = Index> {
    of.iter().filter(|&i| i != Index::Batch).chain(of.contains(Index::Batch).then_some(Index::Batch))
}

/// Row-major strides of a tensor laid out as `layout` for each index (0 where it lacks it).
fn stride(layout: &[Index], index: Index, size: &dyn Fn(Index) -> usize) -> usize {
    match layout.iter().position(|&i| i == index) {
        Some(at) => layout[at + 1..].iter().map(|&i| size(i)).product(),
        None => 0,
    }
}

/// The indices of a tensor that have more than one value, in memory order.
fn nontrivial(layout: &[Index], size: &dyn Fn(Index) -> usize) -> Vec<Index> {
    layout.iter().copied().filter(|&i| size(i) > 1).collect()
}

/// What the lowered program reads as its weights: each core's name, its shape in storage
/// order, and the file's tensors it is read from.
pub(crate) fn cores(graph: &ContractionGraph) -> Vec<CoreShape> {
    let size = |index: Index| graph.size(index) as usize;
    let shape = |core: &crate::graph::Core| core.indices.iter().map(|&i| size(i)).collect();
    graph
        .core_list()
        .iter()
        .map(|core| CoreShape { name: core.name.clone(), shape: shape(core), tensors: core.tensors.clone() })
        .collect()
}

/// The loop nest of `out (+)= a * w`, each tensor given with its memory layout.
fn kernel(
    [(out, ol), (a, al), (w, wl)]: [(Buffer, Vec<Index>); 3],
    out_len: usize,
    zero: bool,
    size: &dyn Fn(Index) -> usize,
    comment: String,
) -> Kernel {
    let set = |l: &[Index]| l.iter().copied().collect::<IndexSet>();
    let (oi, ai, wi) = (set(&ol), set(&al), set(&wl));
    let (o_list, a_list, w_list) = (nontrivial(&ol, size), nontrivial(&al, size), nontrivial(&wl, size));
    // 1. The innermost operation.
    let mut block: Vec<Index> = o_list
        .iter()
        .rev()
        .zip(a_list.iter().rev())
        .take_while(|(o, a)| o == a && !wi.contains(**o))
        .map(|(o, _)| *o)
        .collect();
    block.reverse();
    // Failing an axpy or a dot: the longest run of trailing indices that all three share, in
    // the same order (an index the product keeps on both sides), as an elementwise product.
    let mut shared: Vec<Index> = o_list
        .iter()
        .rev()
        .zip(a_list.iter().rev())
        .zip(w_list.iter().rev())
        .take_while(|((o, a), w)| o == a && a == w)
        .map(|((o, _), _)| *o)
        .collect();
    shared.reverse();
    let run = |indices: &[Index]| indices.iter().map(|&i| size(i)).product();
    let (inner, taken) = if !block.is_empty() {
        (Inner::Axpy { len: run(&block) }, block)
    } else {
        match (a_list.last(), w_list.last()) {
            (Some(&k), Some(&l)) if k == l && !oi.contains(k) => (Inner::Dot { len: size(k) }, vec![k]),
            _ if !shared.is_empty() => (Inner::Mul { len: run(&shared) }, shared),
            _ => (Inner::Axpy { len: 1 }, Vec::new()),
        }
    };
    // 2. The loops: output indices in the output's layout order (so that indices adjacent
    // there coalesce), then the summed ones.
    let summed = ai.union(wi).minus(oi);
    let order = ol.iter().copied().chain(summed.iter());
    let mut loops: Vec<Loop> = order
        .filter(|&i| size(i) > 1 && !taken.contains(&i))
        .map(|i| Loop {
            index: i.to_string(),
            extent: size(i),
            strides: [stride(&ol, i, size), stride(&al, i, size), stride(&wl, i, size)],
            unroll: false,
        })
        .collect();
    coalesce(&mut loops);
    // A dot continues over the innermost loop where that loop steps through a and w by the
    // dot's length while out stays: one longer dot instead of many short ones.
    let inner = match inner {
        Inner::Dot { mut len } => {
            while let Some(l) = loops.last().filter(|l| l.strides == [0, len, len]) {
                len *= l.extent;
                loops.pop();
            }
            Inner::Dot { len }
        }
        other => other,
    };
    // 3. A mode product whose run is contiguous becomes a register-blocked small GEMM.
    let mut inner = match inner {
        Inner::Axpy { len } if len >= GEMM_MIN_LEN => gemm(&mut loops, len).unwrap_or(inner),
        Inner::Dot { len } => gemm_rows_from_a(&mut loops, len).unwrap_or(inner),
        _ => inner,
    };
    // A GEMM that sums over everything the nest sums over writes each element of out once:
    // it overwrites out, which then needs no zeroing.
    let mut zero = zero;
    if zero && loops.iter().all(|l| l.strides[0] != 0) {
        match &mut inner {
            Inner::Gemm { shape: Gemm { overwrite, .. }, .. }
            | Inner::GemmRowsFromA { shape: RowsFromA { overwrite, .. }, .. } => (*overwrite, zero) = (true, false),
            Inner::Axpy { .. } | Inner::Mul { .. } | Inner::Dot { .. } => {}
        }
    }
    // Whether emission writes a GEMM out or calls the micro-kernel, decided here, once.
    let decided = written_out(&inner).is_some();
    if let Inner::Gemm { written_out, .. } | Inner::GemmRowsFromA { written_out, .. } = &mut inner {
        *written_out = decided;
    }
    // 4. The loop around a called GEMM runs inside the call.
    if !decided {
        repeat_inside(&mut loops, &mut inner);
    }
    // 5. Unrolling, innermost first, within the budget (not around a GEMM call).
    let mut unrolled = statements(&inner).unwrap_or(usize::MAX);
    for l in loops.iter_mut().rev() {
        if l.extent > MAX_UNROLL_EXTENT || unrolled.saturating_mul(l.extent) > UNROLL_BUDGET {
            break;
        }
        unrolled *= l.extent;
        l.unroll = true;
    }
    Kernel { out, out_len, zero, a, w, loops, inner, comment }
}

/// Move the innermost loop around a GEMM into the GEMM, as its [`Repeat`] (nothing for the
/// other inner operations, or with no loop around).
fn repeat_inside(loops: &mut Vec<Loop>, inner: &mut Inner) {
    let repeat = match inner {
        Inner::Gemm { shape: Gemm { repeat, .. }, .. }
        | Inner::GemmRowsFromA { shape: RowsFromA { repeat, .. }, .. } => repeat,
        Inner::Axpy { .. } | Inner::Mul { .. } | Inner::Dot { .. } => return,
    };
    if let Some(Loop { extent, strides: [out, a, w], .. }) = loops.pop() {
        *repeat = Repeat { count: extent, out, a, w };
    }
}

/// Merge each loop with the one it directly encloses where together they step through memory as
/// one loop would (every outer stride is the inner stride times the inner extent): the same
/// offsets in the same order, with fewer, longer loops (and longer rows for a GEMM).
fn coalesce(loops: &mut Vec<Loop>) {
    let mut k = 0;
    while k + 1 < loops.len() {
        let (outer, inner) = (&loops[k], &loops[k + 1]);
        if (0..3).all(|s| outer.strides[s] == inner.strides[s] * inner.extent) {
            let inner = loops.remove(k + 1);
            let outer = &mut loops[k];
            outer.index.push_str(&inner.index);
            outer.extent *= inner.extent;
            outer.strides = inner.strides;
        } else {
            k += 1;
        }
    }
}

/// The loop of largest extent (the outermost of equals) whose strides `[out, a, w]` pass `pick`.
fn largest(loops: &[Loop], pick: impl Fn([usize; 3]) -> bool) -> Option<usize> {
    (0..loops.len()).rev().filter(|&k| pick(loops[k].strides)).max_by_key(|&k| loops[k].extent)
}

/// Take the loops of a small GEMM out of a nest whose inner operation is an axpy of `len`: the
/// largest summed loop (out does not move, a and w do) as its depth, and, if there is one, the
/// largest loop over rows of the weight that `a` lacks (a does not move, out and w do) as its
/// rows. Where the nest sums over two indices that do not coalesce (the rank and a mode, in
/// the last step), the larger of the others becomes the GEMM's outer depth, so that its sums
/// stay in registers over both (for the GEMMs that emission calls). `None` when the nest sums
/// over nothing.
fn gemm(loops: &mut Vec<Loop>, len: usize) -> Option<Inner> {
    let summed = |[o, a, w]: [usize; 3]| o == 0 && a > 0 && w > 0;
    let depth = loops.remove(largest(loops, summed)?);
    let rows = largest(loops, |[o, a, w]| o > 0 && a == 0 && w > 0).map(|k| loops.remove(k));
    let [out_row, _, w_row] = rows.as_ref().map_or([0; 3], |l| l.strides);
    let g = Gemm {
        out_row,
        a_row: depth.strides[1],
        w_row,
        w_col: depth.strides[2],
        overwrite: false,
        ..Gemm::row_major(rows.map_or(1, |l| l.extent), depth.extent, len)
    };
    let gemm = |shape| Inner::Gemm { shape, written_out: false };
    // Products that emission writes out keep their loop: folded, they measured slower
    // (small_64to64_r2 at batch 256, 49.6 -> 57.6 us), or would become calls.
    let Some(k) = largest(loops, summed).filter(|_| written_out(&gemm(g)).is_none()) else { return Some(gemm(g)) };
    let Loop { extent: outer, strides: [_, a_outer, w_outer], .. } = loops.remove(k);
    Some(gemm(Gemm { outer, a_outer, w_outer, ..g }))
}

/// The same for a nest whose inner operation is a dot of `depth` (contiguous in a and w), where
/// out's contiguous index runs over w only: w supplies the columns (read transposed, so packed
/// by the kernel, or, for a long enough sum, read in place as blocks of dots: see
/// [`Gemm::DOTS_MIN_DEPTH`]) and a the rows. `None` when there is no such index of at least
/// [`GEMM_MIN_LEN`], or w's block is too large to pack for a short sum.
fn gemm_rows_from_a(loops: &mut Vec<Loop>, depth: usize) -> Option<Inner> {
    let columns = loops.iter().position(|l| {
        let [o, a, w] = l.strides;
        let fits = l.extent * depth <= Gemm::PACK || depth >= Gemm::DOTS_MIN_DEPTH;
        o == 1 && a == 0 && w > 0 && l.extent >= GEMM_MIN_LEN && fits
    })?;
    let columns = loops.remove(columns);
    let rows = largest(loops, |[o, a, w]| o > 0 && a > 0 && w == 0).map(|k| loops.remove(k));
    let [out_row, a_row, _] = rows.as_ref().map_or([0; 3], |l| l.strides);
    let shape = RowsFromA {
        rows: rows.map_or(1, |l| l.extent),
        depth,
        len: columns.extent,
        out_row,
        a_row,
        w_col: columns.strides[2],
        overwrite: false,
        stream: 0,
        repeat: Repeat::ONCE,
    };
    Some(Inner::GemmRowsFromA { shape, written_out: false })
}
