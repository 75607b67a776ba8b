//! The benchmark table of BENCHMARKS.md: every layer, batch and variant measured side by side
//! in one run. `--json` prints one JSON array of rows `{layer, batch, variant, isa, median_ns,
//! macs, gflops, bytes, bound, roofline_ns}` instead of Markdown (and the peaks on stderr);
//! `--quick` takes fewer samples (a full run then stays under a minute); `--only NAME` measures
//! only the layers whose name contains NAME; `--anchors` adds kcp beside the Python stack
//! (`anchors.rs`, `benches/anchors.py`).
//!
//! Variants: `dense` (faer GEMM on the reconstructed W, one thread), `forward` and `reverse`
//! (the paper's two orders through the generic executor), `generic` (the planned order, generic
//! executor), `generated` and `generated_par` (the `kcp_layer!` kernels), and, on a CPU with
//! AVX-512, `generated_avx2` (the same kernels capped at the AVX2 path). Each row names the path
//! it ran. GFLOP/s count 2 FLOP per MAC of each variant's own plan; "% peak" is against the
//! register-only FMA peak of the row's path (`peak.rs`), per thread.
//!
//! The roofline of each row: its MACs at that peak (twice that for `generated_par` on two
//! threads) against the bytes a call must read or write at least (x, y and the weights, each
//! once; intermediates are assumed to stay in cache) at the bandwidth of the level they fit
//! (L2, L3 or DRAM: a buffer of half the cache, or of 256 MB, summed on one thread or two, in
//! the same run). `bound` says which takes longer, `roofline_ns` how long that is; a row far above its
//! roofline is bound by neither (overhead, or a kernel short of either peak).
//!
//! Then the targets of issues 6 and 17, each as a paired comparison of two variants of a layer
//! and batch (generic against the faster paper order, generated against generic, generated_par
//! against generated at batch 256, generated against dense for UCF11 r4 at batch 1, and for
//! UCF11 r4 generated against generated_avx2): chunks of about
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

mod anchors;
#[path = "../common/machine.rs"]
mod machine;
mod measure;
mod paired;
#[path = "../common/peak.rs"]
mod peak;
mod print;
#[path = "../common/anchors.rs"]
mod python;
mod roofline;
mod training;

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use kcp::ir::{compile, lower, Options, Plan, Spec, Tree};
use kcp::{kcp_layer, set_isa, Executor, Isa, Weights};

use measure::{Bench, Row};
use paired::{fma_calls_per_chunk, fma_loop, fma_loop_on_two, Comparison, Target};
use roofline::Peaks;

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
    /// The kernel path it runs (see [`Row::isa`]).
    isa: &'static str,
    run: Run<'a>,
}

/// How a variant computes a batch: `run(y)`.
type Run<'a> = Box<dyn FnMut(&mut [f32]) + 'a>;

impl<'a> Variant<'a> {
    /// A variant on kcp's kernels, on the path they take by default.
    fn new(name: &'static str, macs: u64, bytes: u64, run: impl FnMut(&mut [f32]) + 'a) -> Variant<'a> {
        Variant { name, macs, bytes, isa: kcp::isa().name(), run: Box::new(run) }
    }

    /// The same with kcp's kernels capped at `path` for each call.
    fn on(path: Isa, name: &'static str, macs: u64, bytes: u64, mut run: impl FnMut(&mut [f32]) + 'a) -> Variant<'a> {
        let run = move |y: &mut [f32]| {
            set_isa(Some(path));
            run(y);
            set_isa(None);
        };
        Variant { name, macs, bytes, isa: path.name(), run: Box::new(run) }
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
            isa: v.isa,
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
    if layer == HEADLINE && variants.iter().any(|v| v.name == "generated_avx2") {
        comparisons.push((Target::Avx512OverAvx2, "generated_avx2", "generated"));
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
            let spec = Spec::new(&<$layer>::IN_SHAPE, &<$layer>::OUT_SHAPE, kcp::ir::Format::kcp(<$layer>::RANK))
                .with_bias(true);
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
                let mut variants = vec![
                    Variant {
                        isa: "faer",
                        ..Variant::new("dense", b * (m * n) as u64, dense_bytes, |y| dense_gemm(x, &w, y, batch, n, m))
                    },
                    Variant::new("forward", b * c.order(&Tree::forward(c.spec.modes())).macs(), kcp, |y| {
                        forward.forward(x, y).expect("shapes")
                    }),
                    Variant::new("reverse", b * c.order(&Tree::reverse(c.spec.modes())).macs(), kcp, |y| {
                        reverse.forward(x, y).expect("shapes")
                    }),
                    Variant::new("generic", b * c.plan.macs(), kcp, |y| generic.forward(x, y).expect("shapes")),
                    Variant::new("generated", b * <$layer>::MACS_PER_SAMPLE, kcp, |y| {
                        layer.forward(x, y).expect("shapes")
                    }),
                    Variant::new("generated_par", b * <$layer>::MACS_PER_SAMPLE, kcp, |y| {
                        layer.forward_par(x, y).expect("shapes")
                    }),
                ];
                // Beside the best path, the AVX2 one (the path of CPUs without AVX-512).
                if Isa::detected() > Isa::Avx2 {
                    variants.push(Variant::on(Isa::Avx2, "generated_avx2", b * <$layer>::MACS_PER_SAMPLE, kcp, |y| {
                        layer.forward(x, y).expect("shapes")
                    }));
                }
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
        let isa = if variant == "dense" { "faer" } else { kcp::isa().name() };
        bench.rows.push(Row { layer, batch: 1, variant, isa, median_ns, macs, bytes });
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
    // The split of `generated`: the input projection (all STEPS frames in one call, as the
    // cell runs it) and the recurrence (W_hh h, the gates and the cell update, step by step).
    let mut proj = vec![0.0f32; STEPS * g];
    let input_bytes = 4 * (n + g) as u64 + 4 * Ucf11Lstm::PARAMS;
    run("generated: input projection", Ucf11Lstm::MACS_PER_SAMPLE, input_bytes, &mut |_| {
        lstm.input().forward(&x, &mut proj).expect("shapes")
    });
    let recurrent_bytes = 4 * (g + hidden + g * hidden + g) as u64;
    run("generated: recurrence", Ucf11Lstm::RECURRENT_MACS_PER_STEP, recurrent_bytes, &mut |hs| {
        lstm.cell().run(&proj, 1, hs, &mut Ucf11Lstm::zero_state(1), false).expect("shapes")
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let (json, quick, anchors) = (flag("--json"), flag("--quick"), flag("--anchors"));
    let only = args.iter().position(|a| a == "--only").and_then(|k| args.get(k + 1)).cloned();
    let mut bench = Bench { quick, only, rows: Vec::new(), targets: Vec::new() };
    let (a, b) = (
        Mat::<f32>::from_fn(1024, 1024, |i, j| ((i + j) % 7) as f32),
        Mat::<f32>::from_fn(1024, 1024, |i, j| ((i * j) % 5) as f32),
    );
    let mut c = Mat::<f32>::zeros(1024, 1024);
    let sgemm_ns = bench.median_ns(|| matmul(c.as_mut(), Accum::Replace, a.as_ref(), b.as_ref(), 1.0, Par::Seq));
    let sgemm_gflops = 2.0 * 1024f64.powi(3) / sgemm_ns;
    let peaks = Peaks::measure(&bench);
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
    if bench.wants(training::LAYER) {
        training::bench_training(&mut bench);
    }

    print::report(&bench.rows, &bench.targets, &peaks, sgemm_gflops, json);
    if anchors {
        match anchors::measure(&bench) {
            Ok(rows) if json => eprintln!("\n{}", python::table(&rows)),
            Ok(rows) => println!("\n{}", python::table(&rows)),
            Err(e) => eprintln!("\nanchors skipped: {e}"),
        }
    }
}
