//! The benchmark table of BENCHMARKS.md: every layer, batch and variant measured side by side
//! in one run. `--json` prints one JSON array of rows `{layer, batch, variant, median_ns, macs,
//! gflops, bytes, bound, roofline_ns}` instead of Markdown (and the peaks on stderr); `--quick`
//! takes fewer samples (a full run then stays under a minute); `--only NAME` measures only the
//! layers whose name contains NAME.
//!
//! Variants: `dense` (faer GEMM on the reconstructed W, one thread), `forward` and `reverse`
//! (the paper's two orders through the generic executor), `generic` (the planned order, generic
//! executor), `generated` and `generated_par` (the `kcp_layer!` kernels). GFLOP/s count 2 FLOP
//! per MAC of each variant's own plan. `peak_gflops` is a one-thread faer SGEMM 1024^3.
//!
//! The roofline of each row: its MACs at `peak_gflops` (twice that for `generated_par` on two
//! threads) against the bytes a call must read or write at least (x, y and the weights, each
//! once; intermediates are assumed to stay in cache) at the bandwidth of the level they fit
//! (L2, L3 or DRAM: a buffer of half the cache, or of 256 MB, summed on one thread or two, in
//! the same run). `bound` says which takes longer, `roofline_ns` how long that is; a row far above its
//! roofline is bound by neither (overhead, or a kernel short of either peak).
//!
//! Then the targets of issue 6, each as a paired comparison of two variants of a layer and batch
//! (generic against the faster paper order, generated against generic, generated_par against
//! generated at batch 256, generated against dense for UCF11 r4 at batch 1): chunks of about
//! 1 ms (at least one call) of each in turn, the order swapped every pair, so that both sides
//! of a pair meet the same state of this shared machine; comparisons with a side on two threads
//! take chunks of about 100 ms (20 with `--quick`), each starting with an untimed call, since
//! the second core runs slowly for a while after idling through the other side's chunk. Each
//! row gives the median speedup over the pairs, an interval of at least 95% confidence for it,
//! and a verdict: `met` (the median reaches the target), `within noise` (only the interval
//! does), `missed`. The interval covers the noise within the run; between runs minutes apart
//! this VM drifts further (see BENCHMARKS.md). After each threads comparison, a reference row
//! pairs FMA-bound work that shares nothing (kcp's micro-kernel on operands in L1) on one
//! thread and on two: how much of a second core the machine gave at that time. With `--json`
//! this table goes to stderr.

use std::time::{Duration, Instant};

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use kcp::__private::{gemm, Gemm};
use kcp::ir::{compile, loops::lower, Options, Plan, Spec, Tree};
use kcp::{kcp_layer, Executor, Weights};

kcp_layer! { struct Ucf11Out4x4x4x16R1 { in_shape: [8, 20, 20, 18], out_shape: [4, 4, 4, 16], rank: 1, bias: true } }
kcp_layer! { struct Ucf11Out4x4x4x16R4 { in_shape: [8, 20, 20, 18], out_shape: [4, 4, 4, 16], rank: 4, bias: true } }
kcp_layer! { struct Ucf11Out4x4x4x16R16 { in_shape: [8, 20, 20, 18], out_shape: [4, 4, 4, 16], rank: 16, bias: true } }
kcp_layer! { struct Ucf11Out16x4x4x4R1 { in_shape: [8, 20, 20, 18], out_shape: [16, 4, 4, 4], rank: 1, bias: true } }
kcp_layer! { struct Ucf11Out16x4x4x4R4 { in_shape: [8, 20, 20, 18], out_shape: [16, 4, 4, 4], rank: 4, bias: true } }
kcp_layer! { struct Ucf11Out16x4x4x4R16 { in_shape: [8, 20, 20, 18], out_shape: [16, 4, 4, 4], rank: 16, bias: true } }
// Speech: 320 = 4x4x5x4 features (e.g. 80 filterbanks x 4 stacked frames) to 4 x 512 LSTM gates.
kcp_layer! { struct SpeechR8 { in_shape: [4, 4, 5, 4], out_shape: [4, 8, 8, 8], rank: 8, bias: true } }
// Small: 64 -> 64, where per-call overheads dominate.
kcp_layer! { struct SmallR2 { in_shape: [4, 4, 4], out_shape: [4, 4, 4], rank: 2, bias: true } }

struct Row {
    layer: String,
    batch: usize,
    variant: &'static str,
    median_ns: f64,
    macs: u64,
    /// Bytes a call reads or writes at least: x, y, the weights.
    bytes: u64,
}

/// The size in bytes of this CPU's data cache of `level` (Linux sysfs), if it says.
fn cache_bytes(level: u32) -> Option<usize> {
    let read = |index: usize, what: &str| {
        std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu0/cache/index{index}/{what}")).ok()
    };
    (0..8).find_map(|index| {
        let data = read(index, "type")?.trim() != "Instruction";
        if read(index, "level")?.trim() != level.to_string() || !data {
            return None;
        }
        let size = read(index, "size")?;
        let size = size.trim();
        let (digits, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit()).unwrap_or(size.len()));
        let scale = match unit {
            "K" => 1 << 10,
            "M" => 1 << 20,
            _ => 1,
        };
        digits.parse::<usize>().ok().map(|n| n * scale)
    })
}

/// What bounds a row from below: its MACs at the compute peak, or its bytes at the bandwidth
/// of the level its working set fits.
struct Peaks {
    gflops: f64,
    /// The memory levels: a working set up to half a cache is read at the bandwidth measured
    /// on a buffer of that size (L2 and L3 from sysfs, else 512 KB and 8 MB), the rest at DRAM's.
    levels: [(&'static str, usize); 3],
    /// GB/s per level, on one thread and on two.
    gbs: [[f64; 2]; 3],
}

impl Peaks {
    fn measure(bench: &Bench, gflops: f64) -> Peaks {
        let (l2, l3) = (cache_bytes(2).unwrap_or(512 << 10), cache_bytes(3).unwrap_or(8 << 20));
        let levels = [("L2", l2 / 2), ("L3", l3 / 2), ("DRAM", 256 << 20)];
        let gbs = levels.map(|(_, size)| [1, 2].map(|threads| read_gbs(bench, size / 4, threads)));
        Peaks { gflops, levels, gbs }
    }

    /// The bandwidths, one line.
    fn describe(&self) -> String {
        let levels: Vec<String> = self
            .levels
            .iter()
            .zip(&self.gbs)
            .map(|((name, size), [one, two])| {
                let size = if *size >= 1 << 20 { format!("{} MB", size >> 20) } else { format!("{} KB", size >> 10) };
                format!("{name} ({size}) {one:.1} / {two:.1}")
            })
            .collect();
        format!("bandwidth in GB/s, one / two threads, a buffer summed: {}", levels.join(", "))
    }

    /// (`"compute"` or the memory level, the longer of the two times in ns) for a row, on two
    /// threads for `generated_par` and one for the rest.
    fn roofline(&self, r: &Row) -> (&'static str, f64) {
        let threads = if r.variant == "generated_par" { 2 } else { 1 };
        let compute = 2.0 * r.macs as f64 / (self.gflops * threads as f64);
        let level = self.levels.iter().position(|&(_, size)| r.bytes as usize <= size).unwrap_or(2);
        let memory = r.bytes as f64 / self.gbs[level][threads - 1];
        if compute >= memory {
            ("compute", compute)
        } else {
            (self.levels[level].0, memory)
        }
    }
}

/// GB/s of summing a buffer of `len` floats, over and over, on `threads` threads (each its
/// half): each timed call reads 64 MB, so that handing work to the second thread is noise.
fn read_gbs(bench: &Bench, len: usize, threads: usize) -> f64 {
    let v = vec![1.0f32; len];
    let passes = ((64 << 20) / (4 * len)).max(1);
    let sum = |v: &[f32]| {
        let mut acc = [0.0f32; 16];
        for _ in 0..passes {
            for chunk in std::hint::black_box(v).chunks_exact(16) {
                acc.iter_mut().zip(chunk).for_each(|(a, x)| *a += x);
            }
        }
        acc.iter().sum::<f32>()
    };
    let (front, back) = v.split_at(len / 2);
    let ns = bench.median_ns(|| {
        let total = if threads == 1 {
            sum(&v)
        } else {
            let (a, b) = rayon::join(|| sum(front), || sum(back));
            a + b
        };
        std::hint::black_box(total);
    });
    (passes * len * 4) as f64 / ns
}

/// The targets of issue 6, each a speedup of one variant over another.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// [`HEADLINE`] at batch 1: generated at least 300x faster than dense.
    OverDense,
    /// Batch 1: generated at least 2x faster than generic.
    GeneratedVsGeneric,
    /// Batch above 1: generated never slower than generic.
    NeverSlower,
    /// Batch 256: generated_par at least 1.7x faster than generated.
    Threads,
    /// The chosen plan never slower than the better paper order (both on the generic executor).
    PlanVsPaper,
    /// Not a target: how much faster two threads run FMA-bound work that shares nothing than
    /// one, measured right after each [`Target::Threads`] comparison: what the machine gave at
    /// that time (a shared VM's second vCPU comes and goes, and may share a physical core's FMA
    /// units with the first).
    Scaling,
}

impl Target {
    const ALL: [Target; 6] = [
        Target::OverDense,
        Target::GeneratedVsGeneric,
        Target::NeverSlower,
        Target::Threads,
        Target::Scaling,
        Target::PlanVsPaper,
    ];

    /// The least speedup that meets it (none for the reference).
    fn goal(self) -> Option<f64> {
        match self {
            Target::OverDense => Some(300.0),
            Target::GeneratedVsGeneric => Some(2.0),
            Target::Threads => Some(1.7),
            Target::NeverSlower | Target::PlanVsPaper => Some(1.0),
            Target::Scaling => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Target::OverDense => "generated >= 300x dense (UCF11 r4, batch 1)",
            Target::GeneratedVsGeneric => "generated >= 2x generic (batch 1)",
            Target::NeverSlower => "generated never slower than generic (batch 16, 256)",
            Target::Threads => "generated_par >= 1.7x generated (batch 256)",
            Target::PlanVsPaper => "plan (generic) never slower than the better paper order",
            Target::Scaling => "reference: two threads over one on FMA-bound work that shares nothing",
        }
    }
}

/// How much faster one variant ran than another in a paired comparison ([`Bench::paired`]).
#[derive(Clone, Copy)]
struct Speedup {
    /// The median over pairs of base time / candidate time.
    median: f64,
    /// A confidence interval of that median of at least 95% (order statistics of the pairs).
    low: f64,
    high: f64,
    pairs: usize,
}

struct Comparison {
    target: Target,
    layer: String,
    batch: usize,
    base: &'static str,
    candidate: &'static str,
    speedup: Speedup,
}

impl Comparison {
    /// `met` (the median reaches the goal), `within noise` (only the interval does) or `missed`;
    /// `reference` for the machine's own scaling.
    fn verdict(&self) -> &'static str {
        let Some(goal) = self.target.goal() else {
            return "reference";
        };
        if self.speedup.median >= goal {
            "met"
        } else if self.speedup.high >= goal {
            "within noise"
        } else {
            "missed"
        }
    }
}

/// The largest 1-based rank `j` such that the `j`-th smallest and the `j`-th largest of `n`
/// samples bound their median with at least 95% confidence: fewer than `j` of `n` samples fall
/// below the median with probability `P(Bin(n, 1/2) <= j - 1)`, which may be at most 2.5%, and
/// likewise above it. 1 (the extremes) when `n` is too small for that (below 6).
fn median_interval_rank(n: usize) -> usize {
    // P(Bin(n, 1/2) <= k), accumulated term by term.
    let mut term = 0.5f64.powi(n as i32);
    let mut below = 0.0;
    let mut rank = 1;
    for k in 0..n / 2 {
        below += term;
        if below > 0.025 {
            break;
        }
        rank = k + 1;
        term *= (n - k) as f64 / (k + 1) as f64;
    }
    rank
}

/// The time of one side's chunk in a paired comparison.
const PAIR_CHUNK: Duration = Duration::from_millis(1);

struct Bench {
    quick: bool,
    /// Measure only the layers whose name contains this.
    only: Option<String>,
    rows: Vec<Row>,
    targets: Vec<Comparison>,
}

impl Bench {
    fn median_ns(&self, mut f: impl FnMut()) -> f64 {
        let (min_runs, budget) =
            if self.quick { (3, Duration::from_millis(40)) } else { (11, Duration::from_millis(300)) };
        let warmup = Instant::now();
        f();
        if self.quick && warmup.elapsed() > budget {
            // Slow calls (dense at batch 256) stream from memory either way: the one will do.
            return warmup.elapsed().as_nanos() as f64;
        }
        let start = Instant::now();
        let mut times = Vec::new();
        while times.len() < min_runs || (start.elapsed() < budget && times.len() < 1000) {
            let t = Instant::now();
            f();
            times.push(t.elapsed().as_nanos() as f64);
        }
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    }

    /// How much faster `candidate` runs than `base`, measured in pairs: chunks of calls (about
    /// [`PAIR_CHUNK`] each, at least one call) of one and then the other, the order swapped
    /// every pair, each chunk timed by the median of its calls. Both see the same state of the
    /// machine within a pair, so a slow spell of this shared VM moves both, not the ratio.
    /// `threads`: one side runs on two threads. Its chunks are then longer ([`Bench::threads_chunk`])
    /// and start with an untimed call: on this VM a second core that idled through the other
    /// side's chunk runs slowly for the first milliseconds (`par_warmup` measures that), which
    /// is not what a comparison of back-to-back speeds is after.
    fn paired(&self, threads: bool, mut base: impl FnMut(), mut candidate: impl FnMut()) -> Speedup {
        let (min_pairs, budget) =
            if self.quick { (6, Duration::from_millis(50)) } else { (15, Duration::from_millis(600)) };
        let time = |f: &mut dyn FnMut()| {
            let t = Instant::now();
            f();
            t.elapsed()
        };
        // Warm both up, sizing their chunks by that call (the table's rows have just run them).
        let length = if threads { self.threads_chunk() } else { PAIR_CHUNK };
        let calls = |f: &mut dyn FnMut()| (length.as_nanos() / time(f).as_nanos().max(1)).clamp(1, 1000) as usize;
        let (base_calls, candidate_calls) = (calls(&mut base), calls(&mut candidate));
        let chunk = |f: &mut dyn FnMut(), calls: usize| {
            if threads {
                f();
            }
            let mut times: Vec<Duration> = (0..calls).map(|_| time(f)).collect();
            times.sort();
            times[calls / 2].as_nanos() as f64
        };
        let start = Instant::now();
        let mut ratios = Vec::new();
        while ratios.len() < min_pairs || (start.elapsed() < budget && ratios.len() < 101) {
            let (b, c) = if ratios.len() % 2 == 0 {
                let b = chunk(&mut base, base_calls);
                (b, chunk(&mut candidate, candidate_calls))
            } else {
                let c = chunk(&mut candidate, candidate_calls);
                (chunk(&mut base, base_calls), c)
            };
            ratios.push(b / c);
        }
        ratios.sort_by(f64::total_cmp);
        let (n, rank) = (ratios.len(), median_interval_rank(ratios.len()));
        let median = if n % 2 == 1 { ratios[n / 2] } else { (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0 };
        Speedup { median, low: ratios[rank - 1], high: ratios[n - rank], pairs: n }
    }

    /// The length of a chunk of a paired comparison on two threads: long enough for the second
    /// core to be at speed for most of it.
    fn threads_chunk(&self) -> Duration {
        Duration::from_millis(if self.quick { 20 } else { 100 })
    }

    fn wants(&self, layer: &str) -> bool {
        self.only.as_deref().is_none_or(|only| layer.contains(only))
    }
}

fn dense_gemm(x: &[f32], w: &[f32], y: &mut [f32], rows: usize, n: usize, m: usize) {
    let lhs = MatRef::from_row_major_slice(x, rows, n);
    let rhs = MatRef::from_row_major_slice(w, m, n).transpose();
    matmul(MatMut::from_row_major_slice_mut(y, rows, m), Accum::Replace, lhs, rhs, 1.0, Par::Seq);
}

/// One way of computing a layer's batch: `run(y)` writes the batch's outputs into `y`.
struct Variant<'a> {
    name: &'static str,
    macs: u64,
    bytes: u64,
    run: Run<'a>,
}

/// How a variant computes a batch: `run(y)`.
type Run<'a> = Box<dyn FnMut(&mut [f32]) + 'a>;

impl<'a> Variant<'a> {
    fn new(name: &'static str, macs: u64, bytes: u64, run: impl FnMut(&mut [f32]) + 'a) -> Variant<'a> {
        Variant { name, macs, bytes, run: Box::new(run) }
    }
}

/// The layer whose batch-1 speed over dense the first target of issue 6 names.
const HEADLINE: &str = "ucf11_out4x4x4x16_r4";

/// Measures every variant of one layer at one batch back to back (the table's rows), then the
/// issue's targets for it as paired comparisons ([`Bench::paired`]).
fn bench_batch(bench: &mut Bench, layer: &str, batch: usize, variants: &mut [Variant], outputs: usize) {
    let (mut y, mut y2) = (vec![0.0f32; outputs], vec![0.0f32; outputs]);
    for v in variants.iter_mut() {
        let median_ns = bench.median_ns(|| (v.run)(&mut y));
        bench.rows.push(Row {
            layer: layer.to_string(),
            batch,
            variant: v.name,
            median_ns,
            macs: v.macs,
            bytes: v.bytes,
        });
    }
    let median = |name: &str| {
        bench.rows.iter().find(|r| r.layer == layer && r.batch == batch && r.variant == name).map(|r| r.median_ns)
    };
    // The better paper order, by this run's medians.
    let paper = match (median("forward"), median("reverse")) {
        (Some(f), Some(r)) if r < f => "reverse",
        _ => "forward",
    };
    // The plan against the paper order through the same executor (generated against generic
    // is the next comparison).
    let mut comparisons = vec![
        (Target::PlanVsPaper, paper, "generic"),
        (if batch == 1 { Target::GeneratedVsGeneric } else { Target::NeverSlower }, "generic", "generated"),
    ];
    if batch == 256 {
        comparisons.push((Target::Threads, "generated", "generated_par"));
        comparisons.push((Target::Scaling, "FMA loop, 1 thread", "FMA loop, 2 threads"));
    }
    if batch == 1 && layer == HEADLINE {
        comparisons.push((Target::OverDense, "dense", "generated"));
    }
    for (target, base, candidate) in comparisons {
        let speedup = if target == Target::Scaling {
            // Sized now: what a millisecond of work is depends on the machine's state.
            let calls = fma_calls_per_chunk();
            bench.paired(true, || _ = fma_loop(calls), || _ = fma_loop_on_two(calls))
        } else {
            let index = |name| variants.iter().position(|v| v.name == name).expect("a variant of every layer");
            let (vb, vc) = two_mut(variants, index(base), index(candidate));
            bench.paired(target == Target::Threads, || (vb.run)(&mut y), || (vc.run)(&mut y2))
        };
        bench.targets.push(Comparison { target, layer: layer.to_string(), batch, base, candidate, speedup });
    }
}

/// Work bound by the FMA units and nothing else, which two threads run in half the time
/// wherever the machine gives them two cores of their own: `calls` products of 16x64 by 64x64
/// through kcp's micro-kernel, on operands of this call that stay in L1.
fn fma_loop(calls: u64) -> f32 {
    let g = Gemm::row_major(16, 64, 64);
    let (w, a, mut out) = (vec![0.5f32; 16 * 64], vec![0.25f32; 64 * 64], vec![0.0f32; 16 * 64]);
    for _ in 0..calls {
        gemm(&mut out, std::hint::black_box(&a), &w, g);
    }
    out[0]
}

/// [`fma_loop`] split over this thread and one of rayon's pool (`forward_par`'s arrangement).
fn fma_loop_on_two(calls: u64) -> f32 {
    let (mut theirs, mut mine) = (0.0, 0.0);
    rayon::in_place_scope(|s| {
        s.spawn(|_| theirs = fma_loop(calls / 2));
        mine = fma_loop(calls - calls / 2);
    });
    theirs + mine
}

/// The products of [`fma_loop`] that take about `PAIR_CHUNK` on this thread.
fn fma_calls_per_chunk() -> u64 {
    let probe = 256;
    fma_loop(probe);
    let t = Instant::now();
    std::hint::black_box(fma_loop(probe));
    let ns = t.elapsed().as_nanos().max(1);
    (u128::from(probe) * PAIR_CHUNK.as_nanos() / ns).max(1) as u64
}

/// Distinct elements `i` and `j` of `v`, both mutable.
fn two_mut<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert_ne!(i, j, "two distinct elements");
    if i < j {
        let (head, tail) = v.split_at_mut(j);
        (&mut head[i], &mut tail[0])
    } else {
        let (head, tail) = v.split_at_mut(i);
        (&mut tail[0], &mut head[j])
    }
}

macro_rules! bench_layer {
    ($bench:expr, $name:literal, $layer:ty, $batches:expr) => {{
        if $bench.wants($name) {
            let layer = <$layer>::random(1);
            let spec = Spec::new(&<$layer>::IN_SHAPE, &<$layer>::OUT_SHAPE, <$layer>::RANK).with_bias(true);
            let c = compile(&spec, &Options::default()).expect("valid spec");
            let weights: Weights = layer.weights().clone();
            let executor = |plan: &Plan| Executor::new(lower(plan, &c.graph), weights.clone()).expect("weights fit");
            let modes = <$layer>::IN_SHAPE.len();
            let mpo = Options::default().max_prep_elems;
            let forward = executor(&Plan::new(&c.graph, &Tree::forward(modes), c.spec.batch(), mpo));
            let reverse = executor(&Plan::new(&c.graph, &Tree::reverse(modes), c.spec.batch(), mpo));
            // The chosen plan as `kcp run` runs it: whole blocks interleaved where it pays.
            let generic = executor(&c.plan).interleaved(c.lanes.clone());
            let w = weights.dense(&<$layer>::FACTOR_SHAPES);
            let (n, m) = (<$layer>::IN, <$layer>::OUT);
            for batch in $batches {
                let x: Vec<f32> = (0..batch * n).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
                let b = batch as u64;
                // x and y once, and the weights: dense W, or the factors and the bias.
                let io = 4 * b * (n + m) as u64;
                let (dense_bytes, kcp) = (io + 4 * (n * m) as u64, io + 4 * (<$layer>::PARAMS + m as u64));
                let x = &x;
                let mut variants = [
                    Variant::new("dense", b * (m * n) as u64, dense_bytes, |y| dense_gemm(x, &w, y, batch, n, m)),
                    Variant::new("forward", b * c.forward.macs(), kcp, |y| forward.forward(x, y).expect("shapes")),
                    Variant::new("reverse", b * c.reverse.macs(), kcp, |y| reverse.forward(x, y).expect("shapes")),
                    Variant::new("generic", b * c.plan.macs(), kcp, |y| generic.forward(x, y).expect("shapes")),
                    Variant::new("generated", b * <$layer>::MACS_PER_SAMPLE, kcp, |y| {
                        layer.forward(x, y).expect("shapes")
                    }),
                    Variant::new("generated_par", b * <$layer>::MACS_PER_SAMPLE, kcp, |y| {
                        layer.forward_par(x, y).expect("shapes")
                    }),
                ];
                bench_batch(&mut $bench, $name, batch, &mut variants, batch * m);
            }
        }
    }};
}

kcp_layer! { struct Ucf11Lstm { in_shape: [8, 20, 20, 18], out_shape: [4, 4, 4, 16], rank: 4, cell: lstm, hidden: 256 } }

fn bench_lstm(bench: &mut Bench) {
    const STEPS: usize = 16;
    let lstm = Ucf11Lstm::random(1);
    let hidden = Ucf11Lstm::HIDDEN;
    let (n, g) = (Ucf11Lstm::IN, 4 * hidden);
    let w = lstm.input().weights().dense(&[[4, 4, 8], [4, 4, 20], [4, 4, 20], [4, 16, 18]]);
    let bias = lstm.input().weights().bias.clone().unwrap_or_default();
    let x: Vec<f32> = (0..STEPS * n).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let mut hs = vec![0.0f32; STEPS * hidden];
    let per_frame = Ucf11Lstm::MACS_PER_SAMPLE + Ucf11Lstm::RECURRENT_MACS_PER_STEP;
    let dense_per_frame = Ucf11Lstm::DENSE_PARAMS + Ucf11Lstm::RECURRENT_MACS_PER_STEP;
    // Per frame: x, h, W_hh and its bias, the input weight (the dense one read once for all
    // STEPS frames) and its bias.
    let frame = 4 * (n + hidden + (g * hidden) + 2 * g) as u64;
    let (dense_bytes, kcp_bytes) = (frame + 4 * Ucf11Lstm::DENSE_PARAMS / STEPS as u64, frame + 4 * Ucf11Lstm::PARAMS);
    let mut run = |variant: &'static str, macs: u64, bytes: u64, f: &mut dyn FnMut(&mut [f32])| {
        let median_ns = bench.median_ns(|| f(&mut hs)) / STEPS as f64;
        let layer = "ucf11_lstm_r4 (per frame)".into();
        bench.rows.push(Row { layer, batch: 1, variant, median_ns, macs, bytes });
    };
    run("dense", dense_per_frame, dense_bytes, &mut |hs| {
        let project = |x: &[f32], p: &mut [f32]| {
            dense_gemm(x, &w, p, x.len() / n, n, g);
            p.chunks_exact_mut(g).for_each(|row| row.iter_mut().zip(&bias).for_each(|(v, b)| *v += b));
            Ok(())
        };
        let mut state = Ucf11Lstm::zero_state(1);
        lstm.cell().sequence(project, n, &x, 1, hs, &mut state, false).expect("shapes");
    });
    run("generated", per_frame, kcp_bytes, &mut |hs| {
        lstm.forward(&x, 1, hs, &mut Ucf11Lstm::zero_state(1)).expect("shapes")
    });
    run("generated_par", per_frame, kcp_bytes, &mut |hs| {
        lstm.forward_par(&x, 1, hs, &mut Ucf11Lstm::zero_state(1)).expect("shapes")
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (json, quick) = (args.iter().any(|a| a == "--json"), args.iter().any(|a| a == "--quick"));
    let only = args.iter().position(|a| a == "--only").and_then(|k| args.get(k + 1)).cloned();
    let mut bench = Bench { quick, only, rows: Vec::new(), targets: Vec::new() };
    let (a, b) = (
        Mat::<f32>::from_fn(1024, 1024, |i, j| ((i + j) % 7) as f32),
        Mat::<f32>::from_fn(1024, 1024, |i, j| ((i * j) % 5) as f32),
    );
    let mut c = Mat::<f32>::zeros(1024, 1024);
    let peak_ns = bench.median_ns(|| matmul(c.as_mut(), Accum::Replace, a.as_ref(), b.as_ref(), 1.0, Par::Seq));
    let peak_gflops = 2.0 * 1024f64.powi(3) / peak_ns;
    let peaks = Peaks::measure(&bench, peak_gflops);
    let batches = [1usize, 16, 256];
    bench_layer!(bench, "ucf11_out4x4x4x16_r1", Ucf11Out4x4x4x16R1, batches);
    bench_layer!(bench, "ucf11_out4x4x4x16_r4", Ucf11Out4x4x4x16R4, batches);
    bench_layer!(bench, "ucf11_out4x4x4x16_r16", Ucf11Out4x4x4x16R16, batches);
    bench_layer!(bench, "ucf11_out16x4x4x4_r1", Ucf11Out16x4x4x4R1, batches);
    bench_layer!(bench, "ucf11_out16x4x4x4_r4", Ucf11Out16x4x4x4R4, batches);
    bench_layer!(bench, "ucf11_out16x4x4x4_r16", Ucf11Out16x4x4x4R16, batches);
    bench_layer!(bench, "speech_320to4x512_r8", SpeechR8, batches);
    bench_layer!(bench, "small_64to64_r2", SmallR2, batches);
    if bench.wants("ucf11_lstm_r4") {
        bench_lstm(&mut bench);
    }

    let gflops = |r: &Row| 2.0 * r.macs as f64 / r.median_ns;
    if json {
        let rows: Vec<serde_json::Value> = bench
            .rows
            .iter()
            .map(|r| {
                let (bound, roofline_ns) = peaks.roofline(r);
                serde_json::json!({"layer": r.layer, "batch": r.batch, "variant": r.variant,
                    "median_ns": r.median_ns.round() as u64, "macs": r.macs, "gflops": gflops(r),
                    "bytes": r.bytes, "bound": bound, "roofline_ns": roofline_ns.round() as u64})
            })
            .collect();
        eprintln!("peak_gflops: {peak_gflops:.1}");
        eprintln!("{}", peaks.describe());
        eprintln!("{}", targets_table(&bench.targets));
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    println!("peak_gflops: {peak_gflops:.1} (one-thread faer SGEMM 1024^3, this run)");
    println!("{}\n", peaks.describe());
    println!("| layer | batch | variant | median | MACs | GFLOP/s | % peak | bound | % of roofline | vs dense | vs generic |");
    println!("|---|---:|---|---:|---:|---:|---:|---|---:|---:|---:|");
    for r in &bench.rows {
        let find = |v: &str| bench.rows.iter().find(|o| o.layer == r.layer && o.batch == r.batch && o.variant == v);
        let ratio = |v: &str| find(v).map_or("".to_string(), |o| format!("{:.1}x", o.median_ns / r.median_ns));
        let time = if r.median_ns >= 1e6 {
            format!("{:.2} ms", r.median_ns / 1e6)
        } else {
            format!("{:.1} us", r.median_ns / 1e3)
        };
        let (bound, roofline_ns) = peaks.roofline(r);
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.0}% | {} | {:.0}% | {} | {} |",
            r.layer,
            r.batch,
            r.variant,
            time,
            r.macs,
            gflops(r),
            100.0 * gflops(r) / peak_gflops,
            bound,
            100.0 * roofline_ns / r.median_ns,
            ratio("dense"),
            ratio("generic"),
        );
    }
    println!("\n{}", targets_table(&bench.targets));
}

/// The paired comparisons as a Markdown table, then a line per target counting its verdicts.
fn targets_table(targets: &[Comparison]) -> String {
    let mut out = String::from(
        "| target | layer | batch | candidate / base | speedup (median) | 95% interval | pairs | verdict |\n\
         |---|---|---:|---|---:|---|---:|---|\n",
    );
    let x = |v: f64| if v >= 10.0 { format!("{v:.0}x") } else { format!("{v:.2}x") };
    for t in targets {
        let s = t.speedup;
        out += &format!(
            "| {} | {} | {} | {} / {} | {} | {} - {} | {} | {} |\n",
            t.target.describe(),
            t.layer,
            t.batch,
            t.candidate,
            t.base,
            x(s.median),
            x(s.low),
            x(s.high),
            s.pairs,
            t.verdict()
        );
    }
    for target in Target::ALL {
        let of: Vec<&Comparison> = targets.iter().filter(|t| t.target == target).collect();
        if of.is_empty() {
            continue;
        }
        if target.goal().is_none() {
            let mut medians: Vec<f64> = of.iter().map(|t| t.speedup.median).collect();
            medians.sort_by(f64::total_cmp);
            let (low, high) = (medians[0], medians[medians.len() - 1]);
            out += &format!("\n{}: {low:.2}x to {high:.2}x", target.describe());
            continue;
        }
        let count = |v: &str| of.iter().filter(|t| t.verdict() == v).count();
        out += &format!(
            "\n{}: met {}, within noise {}, missed {} of {}",
            target.describe(),
            count("met"),
            count("within noise"),
            count("missed"),
            of.len()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::median_interval_rank;

    /// `P(Bin(n, 1/2) <= k) <= 2.5%`, in exact integers.
    fn tail_fits(n: u32, k: u32) -> bool {
        let choose = |i: u32| (0..i).fold(1u128, |c, t| c * u128::from(n - t) / u128::from(t + 1));
        let below: u128 = (0..=k).map(choose).sum();
        below * 40 <= 1u128 << n
    }

    #[test]
    fn the_median_interval_is_the_widest_rank_with_95_percent() {
        for n in 1..=101u32 {
            let j = median_interval_rank(n as usize) as u32;
            if j > 1 || tail_fits(n, 0) {
                assert!(tail_fits(n, j - 1), "n = {n}: rank {j} covers less than 95%");
            }
            assert!(!tail_fits(n, j), "n = {n}: rank {} would still cover 95%", j + 1);
        }
        // Known values: the extremes of 6 (96.9%), the 4th of 15 (96.5%), the 41st of 101 (95.4%).
        assert_eq!([6, 15, 101].map(median_interval_rank), [1, 4, 41]);
    }
}
