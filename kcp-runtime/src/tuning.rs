//! The runtime's tuning constants, in one place: each says what it bounds and where its value
//! comes from. What they cost or save in time is measured in BENCHMARKS.md, not here.

/// Below this many MACs per call, threads cost more than they save and a batch runs on the
/// calling thread: about the work of a rayon task's start and join (a few microseconds) many
/// times over.
pub const PAR_MIN_MACS: u64 = 1 << 18;

/// The parts per thread that `forward_par` cuts a batch into, so that a thread that finishes
/// early takes another part (the work per row is the same, the threads' speeds are not).
pub(crate) const PARTS_PER_TASK: usize = 4;

/// The parts a batch's backward pass is cut into when it pays to thread it, whatever the
/// number of threads (each part sums its rows' gradients in its own buffers; the parts are
/// then added in order, so the gradients are the same bits on any number of threads). Sixteen
/// keep two to sixteen threads busy, and cost sixteen copies of the gradients, which are small
/// (a compressed layer's cores).
pub const GRAD_PARTS: usize = 16;
