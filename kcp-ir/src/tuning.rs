//! The compiler's tuning constants, in one place: each says what it bounds and where its value
//! comes from. What they cost or save in time is measured in BENCHMARKS.md, not here.

// -- planning (rewrite/, network/) --

/// The most equally cheap plans whose lowerings the planner compares (by the layout model's
/// estimate): enough for every order of three modes of equal sizes; a layer with more equal
/// modes (the corpus's six-mode layers) compares the first eight in the e-graph's order.
pub(crate) const MAX_TIED_PLANS: usize = 8;

// -- the row split (split.rs) --

/// The fewest MACs per row worth cutting over two threads: the runtime's own threshold for
/// threads (`kcp_runtime`'s `PAR_MIN_MACS`), below which a fork and join cost more than half
/// a row saves.
pub(crate) const SPLIT_MIN_MACS: u64 = 1 << 18;
/// The least that a cut's larger part must save of the row's MACs (whole / larger part): the
/// parts run at about the row's rate, and the fork, the join and the sum of the parts' y
/// cost a few microseconds.
pub(crate) const SPLIT_MIN_GAIN: f64 = 1.3;
/// The most cuts lowered to compare their layouts' estimates: each lowering runs a layout
/// search (up to a few tenths of a second for the comparison's HT and BT layers); of the cuts
/// of the UCF11 layers timed one by one (KCP rank 9, TT, TR, CP), the fastest was always among
/// the three of fewest MACs.
pub(crate) const SPLIT_MAX_LOWERED: usize = 3;
/// How many times the fewest MACs a cut's larger part may have and still be lowered to
/// compare: the estimate's differences between cuts of nearly equal MACs (CP's rank cut and
/// its first-mode cut, 2% apart) are what the comparison is for; a cut 1.125x the work of the
/// best would need kernels that much faster.
pub(crate) const SPLIT_LOWERED_WITHIN: f64 = 1.125;

// -- lowering (loops/) --

/// The largest loop that unrolling expands: a loop of at most one vector of the AVX-512 path.
pub(crate) const MAX_UNROLL_EXTENT: usize = 16;
/// The most inner operations one step may unroll to: keeps a step's emitted code within about
/// a hundred statements.
pub(crate) const UNROLL_BUDGET: usize = 64;
/// The widest GEMM (in floats) that emission may write out rather than call: four 16-float
/// vectors (eight of the AVX2 path), whose row sums stay in registers; chosen from the
/// six-mode small layer of the corpus, whose 64-wide products ran faster written out than
/// called (BENCHMARKS.md).
pub(crate) const WRITTEN_OUT_MAX_LEN: usize = 64;
/// The shortest contiguous run that becomes a small GEMM rather than axpys: half an AVX2
/// vector, the narrowest block the micro-kernel has.
pub(crate) const GEMM_MIN_LEN: usize = 4;
/// The rows an interleaved nest runs at once: one 16-float vector of the AVX-512 path, two of
/// the AVX2 one (eight, half a vector, measured slower: BENCHMARKS.md).
pub(crate) const LANES: usize = 16;
/// The most elements (x, y and both scratch buffers) an interleaved block of [`LANES`] rows
/// may touch: 4 MiB, within a core's share of L3; the layers measured above it (the UCF11
/// layers, 5-10 MiB a block) ran slower interleaved.
pub(crate) const LANES_MAX_ELEMS: usize = 1 << 20;
/// The least that interleaving must save of the row nest's estimated time: the estimate is
/// coarse, and a block also pays the transposes of x and y.
pub(crate) const LANES_MIN_SAVING: f64 = 0.1;

// -- the layout search (loops/layout.rs) --

/// The share of the estimated time a layout search must save for its layouts to replace the
/// global order's: the estimate's own uncertainty.
pub(crate) const MIN_SAVING: f64 = 0.1;
/// The most elements a row of a small layer touches: the layers whose nests are bound by
/// their statements (small products, many of them), which the search's estimate does not
/// model; the corpus's small layers, which run interleaved, are within it.
pub(crate) const SMALL_ELEMS: usize = 2048;
/// The most indices whose every order is tried (6! = 720 layouts); a result with more
/// indices, or one whose step would try more than [`MAX_TRIALS`] combinations, is laid out
/// by classes.
pub(crate) const MAX_FREE: usize = 6;
/// The most classes whose every order is tried (4! = 24 layouts); with more, the indices are
/// classed by what the consumer does with them only.
pub(crate) const MAX_CLASSES: usize = 4;
/// The most combinations of layouts (a step's result's and its inputs', or a pair of
/// intermediates') tried at once: bounds a search to well under a second.
pub(crate) const MAX_TRIALS: usize = 100_000;
/// The most rounds of the local search (a backward plan's): it converged within two on every
/// layer measured.
pub(crate) const MAX_ROUNDS: usize = 4;
/// The most combinations of layouts a move of the local search tries for a pair of results.
pub(crate) const MAX_PAIR_TRIALS: usize = 10_000;

// -- the layout search's estimate of a kernel's time, in multiply-adds at the full rate --

/// A call of the micro-kernel: the checks, the dispatch, the set-up of the blocks (about a
/// thousand multiply-adds, the call cost the loop nests are held to: `no_call_is_tiny`).
pub(crate) const ESTIMATE_CALL: f64 = 1000.0;
/// One more product of a call's repeat.
pub(crate) const ESTIMATE_REPEAT: f64 = 50.0;
/// One inner operation of the nest (an axpy, a dot, a written-out product).
pub(crate) const ESTIMATE_OP: f64 = 150.0;
