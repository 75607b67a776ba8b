//! The paper's comparison on the UCF11 layer (in [8,20,20,18], out [16,4,4,4]: the gates of a
//! 256-unit LSTM in the first output mode) at the matched parameter budgets of docs/formats.md:
//! parameters, compression, the MACs per frame of kcp's plan, the MACs of the orders the
//! reference implementations of each format use (docs/formats.md says whose), and the measured
//! time per frame of kcp's plan at batch 1, 16 and 256 on one thread and on two, with the time
//! of the first reference order run through the same kernels beside it (batch 1 and 16); the
//! MACs per frame of the planned backward pass; with `--train`, the test accuracy of an LSTM
//! classifier with each format's input weight on the synthetic UCF11-shaped set (`kcp::data`)
//! after the same training budget, and its training time per epoch.
//!
//! ```sh
//! cargo run --release --example formats                 # a Markdown table; target/formats.csv
//! cargo run --release --example formats -- --json       # the same rows as JSON
//! cargo run --release --example formats -- --quick      # fewer samples
//! cargo run --release --example formats -- --csv F.csv  # the CSV elsewhere
//! cargo run --release --example formats -- --train      # and train each format (12 epochs of
//!                                                       # 1,100 clips each; --epochs N)
//! cargo run --release --example formats -- --quick --train   # 3 epochs of 330 clips
//! cargo run --release --example formats -- --train --seeds 3 --only kcp,tt
//! cargo run --release --example formats -- --anchors   # and the Python stack on each network
//! ```
//!
//! `--anchors` times the Python stack people would run each format on (`benches/anchors.py`:
//! numpy with opt_einsum's optimal path over the whole network, JAX's and torch's einsum where
//! installed) on the same cores and x, one process per batch and thread count, right after
//! kcp's times of that network (needs `pip install numpy opt_einsum threadpoolctl`).
//!
//! `--seeds K` trains each format from K initialisations (seed s: the input weight from 1 + 3s,
//! the cell from 2 + 3s, the head from 3 + 3s; the clips' order stays) and reports the mean
//! test accuracy with its range; `--only F,G` keeps the formats of those names (kcp, cp, tt,
//! tr, bt, ht).
//!
//! Every format runs through the same generic executor (`kcp::Executor`: the lowered plan, the
//! same micro-kernels; the `kcp_layer!` kernels of a KCP layer are faster still). Times are
//! medians over chunks of calls of about 2 ms each, for about 0.4 s per cell (0.1 s with
//! `--quick`), the formats measured one after another in one run; GFLOP/s count 2 FLOP per MAC
//! of the plan. Training is `examples/train_ucf11.rs`'s (the same module): every model starts
//! from the same seeds, sees the same clips in the same order, with Adam (lr 2e-3), clipping,
//! batch 16, hidden 256; the input weight's cores start as its `kcp_layer!`'s `random` would.

// The training of examples/train_ucf11.rs, of which this example uses the compressed models.
#[allow(dead_code)]
#[path = "common/classifier.rs"]
mod classifier;

#[path = "common/anchors.rs"]
mod anchors;
#[path = "common/machine.rs"]
mod machine;

use std::time::{Duration, Instant};

use classifier::{median_seconds, train, Budget, Clips, Input, Model};
use kcp::data::Split;
use kcp::ir::network::{orders, Format, Network};
use kcp::ir::{lower, plan_backward, Batch, Index, LoopNest, Options};
use kcp::{CellKind, Executor, Threads, Weights};

const IN_SHAPE: [usize; 4] = [8, 20, 20, 18];
const OUT_SHAPE: [usize; 4] = [16, 4, 4, 4];
const BATCHES: [usize; 3] = [1, 16, 256];
const THREADS: [usize; 2] = [1, 2];
/// Where the CSV goes without `--csv`: beside the build, out of the source tree.
const DEFAULT_CSV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/formats.csv");

/// One format's row: what it costs on paper and what it took.
struct Row {
    format: Format,
    params: u64,
    compression: f64,
    planned_macs: u64,
    optimal: bool,
    references: Vec<(&'static str, u64)>,
    /// Per batch and thread count: microseconds per frame of kcp's plan.
    us_per_frame: Vec<(usize, usize, f64)>,
    /// Per batch, one thread: microseconds per frame of the first reference order, if any.
    reference_us_per_frame: Vec<(usize, f64)>,
    /// MACs per frame of the planned backward pass (the cores' gradients, no dx).
    backward_macs: u64,
    /// With `--train`: the test accuracy after the budget from each seed, and the median
    /// seconds per epoch (of the first seed's run).
    trained: Option<(Vec<f32>, f64)>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let csv = args.iter().position(|a| a == "--csv").and_then(|k| args.get(k + 1)).map_or(DEFAULT_CSV, |s| s);
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|k| args.get(k + 1));
    let epochs = value("--epochs").and_then(|v| v.parse().ok());
    let seeds: u64 = value("--seeds").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let only: Option<Vec<&str>> = value("--only").map(|v| v.split(',').collect());
    let with_anchors = args.iter().any(|a| a == "--anchors");
    let (mut anchor_rows, mut anchors_failed) = (Vec::new(), None);
    let budget = args.iter().any(|a| a == "--train").then(|| Budget {
        epochs: epochs.unwrap_or(if quick { 3 } else { 12 }),
        batch: 16,
        lr: 2e-3,
    });
    let clips = budget.as_ref().map(|_| {
        let (train_len, test_len) = if quick { (330, 110) } else { (Split::TRAIN.len, Split::TEST.len) };
        (Clips::generate(Split::TRAIN, train_len, "train set"), Clips::generate(Split::TEST, test_len, "test set"))
    });
    let formats = [
        Format::Kcp { rank: 9 },
        Format::Kcp { rank: 1 },
        Format::Tt { ranks: vec![1, 4, 4, 4, 1] },
        Format::Tr { ranks: vec![6; 8] },
        Format::Bt { blocks: 2, ranks: vec![4; 4] },
        Format::Cp { rank: 36 },
        Format::Ht { rank: 7 },
    ];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a pool of two threads");
    let mut rows = Vec::new();
    for format in formats.into_iter().filter(|f| only.as_ref().is_none_or(|names| names.contains(&f.name()))) {
        let network = match Network::new(&IN_SHAPE, &OUT_SHAPE, format.clone(), Batch::Symbolic) {
            Ok(network) => network,
            Err(e) => {
                eprintln!("{format}: {e}");
                std::process::exit(2);
            }
        };
        let lowered = kcp::ir::compile(&network.spec(), &Options::default()).expect("a valid network");
        let references = orders::references(&network);
        let weights = random_weights(&network);
        let executor = |nest: LoopNest, lanes, split| {
            let executor = Executor::new(nest, weights.clone()).expect("the cores fit their program");
            executor.interleaved(lanes).split(split).expect("the split fits its layer")
        };
        let planned = executor(lowered.nest.clone(), lowered.lanes.clone(), lowered.split.clone());
        // The reference order as it runs there: everything on every call.
        let reference =
            references.first().map(|r| executor(lower(&network.plan_of(&r.tree, 0), &lowered.graph), None, None));
        let (mut us_per_frame, mut reference_us_per_frame) = (Vec::new(), Vec::new());
        for batch in BATCHES {
            let x: Vec<f32> =
                (0..batch * network.input_size()).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
            let mut y = vec![0.0f32; batch * network.output_size()];
            for threads in THREADS {
                let ns = pool.install(|| {
                    median_ns(quick, || {
                        planned
                            .forward_par(&x, &mut y, Threads::at_most(threads).expect("a thread"))
                            .expect("shapes fit")
                    })
                });
                us_per_frame.push((batch, threads, ns / 1e3 / batch as f64));
            }
            // At batch 256 the slowest references take a minute per call: batch 1 and 16 only.
            if let (Some(reference), true) = (&reference, batch <= 16) {
                let ns = median_ns(quick, || reference.forward(&x, &mut y).expect("shapes fit"));
                reference_us_per_frame.push((batch, ns / 1e3 / batch as f64));
            }
            eprint!(".");
        }
        if with_anchors && anchors_failed.is_none() {
            match python_anchors(&network, &planned, &us_per_frame, quick) {
                Ok(rows) => anchor_rows.extend(rows),
                Err(e) => anchors_failed = Some(e),
            }
        }
        let backward = plan_backward(&lowered.graph, &lowered.plan, false, Options::default().max_saved_elems);
        let trained = budget.as_ref().zip(clips.as_ref()).map(|(budget, (train_set, test_set))| {
            let curves: Vec<_> = (0..seeds)
                .map(|seed| {
                    let input = Input::compressed(format.clone(), &OUT_SHAPE, 1 + 3 * seed);
                    let mut model = Model::new(&format.to_string(), input, CellKind::Lstm, seed);
                    train(&mut model, train_set, test_set, budget)
                })
                .collect();
            let accuracies = curves.iter().map(|c| c.last().map_or(f32::NAN, |e| e.accuracy)).collect();
            (accuracies, median_seconds(&curves[0]))
        });
        rows.push(Row {
            backward_macs: backward.macs,
            trained,
            params: network.params(),
            compression: network.compression_ratio(),
            planned_macs: lowered.plan.macs(),
            optimal: lowered.search.complete,
            references: references.iter().map(|r| (r.name, r.macs(&network))).collect(),
            us_per_frame,
            reference_us_per_frame,
            format,
        });
    }
    eprintln!();
    if let Err(e) = std::fs::write(csv, to_csv(&rows)) {
        eprintln!("cannot write {csv}: {e}");
        std::process::exit(2);
    }
    if json {
        println!("{}", to_json(&rows));
    } else {
        print_table(&rows, budget.as_ref().zip(clips.as_ref().map(|c| c.0.len())), seeds);
        println!("\n(CSV: {csv})");
    }
    if let Some(e) = anchors_failed {
        eprintln!("\nanchors skipped: {e}");
    } else if with_anchors {
        println!("\nThe Python stack on each network (microseconds per call; in brackets, its time over kcp's):\n");
        println!("{}", anchors::table(&anchor_rows));
    }
}

/// `--anchors` for one network: its cores, each batch's x and kcp's y, and the einsum of x and
/// the cores into y written for `benches/anchors.py`, run once per batch and thread count
/// beside kcp's median of that cell (`us_per_frame`).
fn python_anchors(
    network: &Network,
    planned: &Executor,
    us_per_frame: &[(usize, usize, f64)],
    quick: bool,
) -> Result<Vec<anchors::Anchor>, String> {
    let name = network.format().to_string();
    let dir = std::env::temp_dir().join(format!("kcp-formats-{}-{}", std::process::id(), network.format().name()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |file: &str, shape: &[usize], data: &[f32]| {
        kcp::npy::write(&dir.join(file), shape, data).map_err(|e| e.to_string())
    };
    let run = || -> Result<Vec<anchors::Anchor>, String> {
        for (k, (core, data)) in planned.program().cores.iter().zip(&planned.weights().cores).enumerate() {
            write(&format!("factor.{k}.npy"), &core.shape, data)?;
        }
        std::fs::write(dir.join("equation.txt"), einsum(network)).map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        for batch in BATCHES {
            let x: Vec<f32> =
                (0..batch * network.input_size()).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
            let mut y = vec![0.0f32; batch * network.output_size()];
            planned.forward(&x, &mut y).map_err(|e| e.to_string())?;
            let x_shape: Vec<usize> = std::iter::once(batch).chain(network.in_shape().iter().copied()).collect();
            write("x.npy", &x_shape, &x)?;
            write("y.npy", &[batch, network.output_size()], &y)?;
            for threads in THREADS {
                let us = us_per_frame.iter().find(|&&(b, t, _)| b == batch && t == threads).map_or(f64::NAN, |c| c.2);
                rows.push(anchors::python(&dir, &name, batch, threads, us * 1e3 * batch as f64, quick)?);
            }
        }
        Ok(rows)
    };
    let result = run();
    _ = std::fs::remove_dir_all(&dir);
    result
}

/// The network as one einsum: x `[b, j_1..j_D]` and every core in its storage order into
/// y `[b, i_1..i_D]`, a letter per index.
fn einsum(network: &Network) -> String {
    let modes = network.modes();
    let x: Vec<Index> = std::iter::once(Index::Batch).chain((0..modes).map(Index::In)).collect();
    let y: Vec<Index> = std::iter::once(Index::Batch).chain((0..modes).map(Index::Out)).collect();
    let mut letters: Vec<Index> = Vec::new();
    let mut term = |indices: &[Index]| -> String {
        indices
            .iter()
            .map(|&i| {
                let at = letters.iter().position(|&l| l == i).unwrap_or_else(|| {
                    letters.push(i);
                    letters.len() - 1
                });
                char::from(if at < 26 { b'a' + at as u8 } else { b'A' + (at - 26) as u8 })
            })
            .collect()
    };
    let inputs: Vec<String> =
        std::iter::once(term(&x)).chain(network.cores().iter().map(|core| term(&core.indices))).collect();
    format!("{}->{}", inputs.join(","), term(&y))
}

/// Seeded random cores for the network (the values do not change the time), and no bias.
fn random_weights(network: &Network) -> Weights {
    kcp::random_weights(network, false, 16)
}

/// The median time of one call of `f`, in nanoseconds: calls in chunks of about 2 ms, the median
/// chunk over about 0.4 s (0.1 s with `quick`) divided by its calls.
fn median_ns(quick: bool, mut f: impl FnMut()) -> f64 {
    let warmup = Instant::now();
    f();
    let one = warmup.elapsed().max(Duration::from_nanos(100));
    let calls = (Duration::from_millis(2).as_nanos() / one.as_nanos()).clamp(1, 10_000) as usize;
    let budget = Duration::from_millis(if quick { 100 } else { 400 });
    let start = Instant::now();
    let mut chunks = Vec::new();
    while chunks.len() < 5 || start.elapsed() < budget {
        let t = Instant::now();
        for _ in 0..calls {
            f();
        }
        chunks.push(t.elapsed().as_nanos() as f64 / calls as f64);
    }
    chunks.sort_by(f64::total_cmp);
    chunks[chunks.len() / 2]
}

/// Test accuracies as a percentage: one seed's, or the mean of several and their range.
fn percent(accuracies: &[f32]) -> String {
    let mean = accuracies.iter().sum::<f32>() / accuracies.len().max(1) as f32;
    let (lo, hi) = accuracies.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &a| (lo.min(a), hi.max(a)));
    match accuracies.len() {
        1 => format!("{:.1}%", 100.0 * mean),
        _ => format!("{:.1}% ({:.1}-{:.1})", 100.0 * mean, 100.0 * lo, 100.0 * hi),
    }
}

fn us(row: &Row, batch: usize, threads: usize) -> f64 {
    row.us_per_frame.iter().find(|&&(b, t, _)| b == batch && t == threads).map_or(f64::NAN, |&(_, _, us)| us)
}

fn gflops(macs: u64, us: f64) -> f64 {
    2.0 * macs as f64 / us / 1e3
}

/// The tables; `trained`: the budget and the training clips, if the formats were trained.
fn print_table(rows: &[Row], trained: Option<(&Budget, usize)>, seeds: u64) {
    println!("{}\n", machine::describe());
    println!("| format | parameters | compression | kcp's plan, MACs per frame | reference orders, MACs per frame |");
    println!("|---|---:|---:|---:|---|");
    for row in rows {
        let macs = row.planned_macs;
        let refs: Vec<String> = row
            .references
            .iter()
            .map(|(name, m)| format!("{name} {:.2}M ({:.1}x kcp's)", *m as f64 / 1e6, *m as f64 / macs as f64))
            .collect();
        let refs = if refs.is_empty() { "(no public code)".to_string() } else { refs.join("; ") };
        println!("| {} | {} | {:.0}x | {:.3}M | {refs} |", row.format, row.params, row.compression, macs as f64 / 1e6);
    }
    println!();
    println!("Time per frame of kcp's plan (generic executor), microseconds, and GFLOP/s on its MACs:");
    println!();
    let head: Vec<String> = BATCHES.iter().flat_map(|b| THREADS.map(|t| format!("b{b}, {t}T"))).collect();
    println!("| format | {} | first reference order, 1T, b1 / b16 |", head.join(" | "));
    println!("|---|{}---|", "---:|".repeat(head.len()));
    for row in rows {
        let cells: Vec<String> = BATCHES
            .iter()
            .flat_map(|&b| THREADS.map(|t| (b, t)))
            .map(|(b, t)| format!("{:.1} ({:.0})", us(row, b, t), gflops(row.planned_macs, us(row, b, t))))
            .collect();
        let reference = match row.references.first() {
            Some((name, _)) => {
                let times: Vec<String> = row.reference_us_per_frame.iter().map(|(_, us)| format!("{us:.1}")).collect();
                format!("{name}: {}", times.join(" / "))
            }
            None => "-".into(),
        };
        println!("| {} | {} | {reference} |", row.format, cells.join(" | "));
    }
    println!();
    match trained {
        Some((budget, clips)) => println!(
            "Training: an LSTM (hidden 256) on each input weight, {} epochs of {clips} clips, batch {}, Adam lr {}, {seeds} seed(s):",
            budget.epochs, budget.batch, budget.lr
        ),
        None => println!("Training (accuracy with --train):"),
    }
    println!();
    println!("| format | backward MACs per frame | x forward | test accuracy | s per epoch |");
    println!("|---|---:|---:|---:|---:|");
    for row in rows {
        let (accuracy, seconds) = match &row.trained {
            Some((accuracies, seconds)) => (percent(accuracies), format!("{seconds:.1}")),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {:.3}M | {:.2} | {accuracy} | {seconds} |",
            row.format,
            row.backward_macs as f64 / 1e6,
            row.backward_macs as f64 / row.planned_macs as f64
        );
    }
}

fn to_csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "format,params,compression,planned_macs,backward_macs,test_accuracy,s_per_epoch,batch,threads,us_per_frame,gflops\n",
    );
    for row in rows {
        let (accuracy, seconds) = row.trained.as_ref().map_or((String::new(), String::new()), |(a, s)| {
            (a.iter().map(|a| format!("{a:.4}")).collect::<Vec<_>>().join(";"), format!("{s:.2}"))
        });
        for &(batch, threads, us) in &row.us_per_frame {
            out += &format!(
                "{},{},{:.1},{},{},{accuracy},{seconds},{batch},{threads},{us:.3},{:.2}\n",
                row.format,
                row.params,
                row.compression,
                row.planned_macs,
                row.backward_macs,
                gflops(row.planned_macs, us)
            );
        }
    }
    out
}

fn to_json(rows: &[Row]) -> serde_json::Value {
    let objects = rows.iter().map(|row| {
        let refs: Vec<serde_json::Value> =
            row.references.iter().map(|(name, m)| serde_json::json!({ "name": name, "macs": m })).collect();
        let times: Vec<serde_json::Value> = row
            .us_per_frame
            .iter()
            .map(|&(batch, threads, us)| serde_json::json!({ "batch": batch, "threads": threads, "us_per_frame": us }))
            .collect();
        let reference_times: Vec<serde_json::Value> = row
            .reference_us_per_frame
            .iter()
            .map(|&(batch, us)| serde_json::json!({ "batch": batch, "threads": 1, "us_per_frame": us }))
            .collect();
        serde_json::json!({
            "format": row.format.to_string(),
            "params": row.params,
            "compression": row.compression,
            "planned_macs": row.planned_macs,
            "optimal": row.optimal,
            "references": refs,
            "backward_macs": row.backward_macs,
            "test_accuracy": row.trained.as_ref().map(|(a, _)| a),
            "s_per_epoch": row.trained.as_ref().map(|(_, s)| s),
            "times": times,
            "reference_times": reference_times,
        })
    });
    serde_json::Value::Array(objects.collect())
}
