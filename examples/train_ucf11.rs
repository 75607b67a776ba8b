//! Train a compressed LSTM (the UCF11 input layer, in [8,20,20,18] -> gates [4,4,4,16], hidden
//! 256; KCP rank 4 by default, any format with `--format`) and the same LSTM with a dense input
//! weight on the synthetic UCF11-shaped data set (`kcp::data`), side by side, the way the paper
//! reports them: parameters, compression, test accuracy, time per training epoch and per
//! inference frame.
//!
//! ```sh
//! cargo run --release --example train_ucf11              # the run README and BENCHMARKS.md quote
//! cargo run --release --example train_ucf11 -- --quick   # a few minutes on 2 cores
//! cargo run --release --example train_ucf11 -- --gru    # GRU cells instead
//! cargo run --release --example train_ucf11 -- --format tt --ranks 1x4x4x4x1 --kcp-only
//! ```
//!
//! Options: `--epochs N`, `--rank R`, `--format F` (kcp, cp, tt, tr, bt, ht) with `--rank R`,
//! `--ranks AxBx..` or `--blocks K` as `kcp plan` takes them, `--batch B`, `--lr F`,
//! `--kcp-only` (the compressed model only), `--out DIR` (default `target/train_ucf11`: the
//! learning curves as CSV and SVG, the trained compressed model as safetensors). Both models
//! start from the same seeds, see the same clips in the same order, and train with Adam and
//! gradient clipping; the classifier is a linear layer on the last hidden state. The compressed
//! model's gradients come from its planned backward pass (`Executor::forward_train` and
//! `Executor::backward`), its BPTT from `Recurrent::backward`. Each clip's mean frame is
//! subtracted from its frames (`kcp::data::subtract_mean_frame`): the background goes, the
//! motion stays. `examples/formats.rs --train` trains every format of the comparison so.

#[path = "common/classifier.rs"]
mod classifier;
#[path = "common/peak.rs"]
mod peak;

use std::path::PathBuf;
use std::time::Instant;

use classifier::{
    copy_seconds, frame_time_us, median_seconds, train, Budget, Clips, Epoch, Input, Model, Phases, HIDDEN,
};
use kcp::data::{Split, CLASSES, FRAME, FRAMES};
use kcp::ir::network::{Format, RankArgs, RankKey};
use kcp::{CellKind, NamedTensor};

struct Args {
    quick: bool,
    kind: CellKind,
    budget: Budget,
    format: Format,
    out: PathBuf,
    /// Train the compressed model only.
    kcp_only: bool,
}

fn args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| argv.iter().position(|a| a == flag).and_then(|k| argv.get(k + 1)).cloned();
    let quick = argv.iter().any(|a| a == "--quick");
    let parse = |flag: &str, default: f64| value(flag).and_then(|v| v.parse::<f64>().ok()).unwrap_or(default);
    let list = |flag: &str| -> Result<Vec<usize>, String> {
        let text = value(flag).ok_or_else(|| format!("this format needs {flag}"))?;
        text.split('x').map(|v| v.parse().map_err(|_| format!("{flag} {text}: not a list like 1x4x4x1"))).collect()
    };
    let name = value("--format").unwrap_or_else(|| "kcp".into());
    let entry = Format::entry(&name).ok_or_else(|| format!("unknown format {name}: {}", Format::names()))?;
    let ranks = if entry.takes(RankKey::Ranks) { Some(list("--ranks")?) } else { None };
    let (rank, blocks) = (parse("--rank", 4.0) as usize, parse("--blocks", 1.0) as usize);
    let format = entry.make(RankArgs { rank: Some(rank), ranks, blocks: Some(blocks) });
    Ok(Args {
        quick,
        kind: if argv.iter().any(|a| a == "--gru") { CellKind::Gru } else { CellKind::Lstm },
        budget: Budget {
            epochs: parse("--epochs", if quick { 3.0 } else { 12.0 }) as usize,
            batch: parse("--batch", 16.0) as usize,
            lr: parse("--lr", 2e-3) as f32,
        },
        format,
        out: value("--out").map_or_else(|| PathBuf::from("target/train_ucf11"), PathBuf::from),
        kcp_only: argv.iter().any(|a| a == "--kcp-only"),
    })
}

fn plot(path: &std::path::Path, curves: &[(&str, &[Epoch])]) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(450);
    let epochs = curves.iter().map(|(_, e)| e.len()).max().unwrap_or(1) as f32;
    let top = curves.iter().flat_map(|(_, e)| e.iter().map(|e| e.loss)).fold(0.1f32, f32::max);
    let mut loss = ChartBuilder::on(&left)
        .caption("train loss", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(1f32..epochs.max(2.0), 0f32..top * 1.05)?;
    loss.configure_mesh().x_desc("epoch").draw()?;
    let mut acc = ChartBuilder::on(&right)
        .caption("test accuracy (%)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(1f32..epochs.max(2.0), 0f32..100f32)?;
    acc.configure_mesh().x_desc("epoch").draw()?;
    for (k, (name, e)) in curves.iter().enumerate() {
        let colour = Palette99::pick(k).to_rgba();
        let points =
            |f: fn(&Epoch) -> f32| e.iter().enumerate().map(move |(i, e)| (i as f32 + 1.0, f(e))).collect::<Vec<_>>();
        loss.draw_series(LineSeries::new(points(|e| e.loss), colour.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        acc.draw_series(LineSeries::new(points(|e| 100.0 * e.accuracy), colour.stroke_width(2)))?;
    }
    acc.draw_series(LineSeries::new(
        vec![(1.0, 100.0 / CLASSES as f32), (epochs.max(2.0), 100.0 / CLASSES as f32)],
        BLACK.mix(0.3),
    ))?;
    loss.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

/// Where each model's epochs went, phase by phase, beside the floor: the plans' MACs at the
/// FMA peak measured here on every thread, and the batches' values copied once.
fn print_phases(models: &[(&Model, &Vec<Epoch>)], clips: usize, batch: usize) {
    let median_ns = |f: &mut dyn FnMut()| {
        let mut times: Vec<f64> = (0..21)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_nanos() as f64
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let Some(one) = peak::fma_peak_gflops(kcp::isa(), median_ns) else {
        println!("\n(no floor: the {} path has no FMA peak to measure)", kcp::isa());
        return;
    };
    let threads = rayon::current_num_threads();
    let gflops = one * threads as f64;
    let copy = copy_seconds(FRAMES * batch * FRAME) * clips.div_ceil(batch) as f64;
    println!("\nwhere an epoch goes (the mean epoch), against its floor: the plans' MACs at the {} FMA peak, {one:.1} GFLOP/s on each of {threads} threads, and the batches copied once", kcp::isa());
    for (model, curve) in models.iter().filter(|(_, curve)| !curve.is_empty()) {
        let floor = Phases { data: copy, ..model.floor((clips * FRAMES) as u64, gflops) };
        let phases = Phases::mean(curve);
        println!(
            "  {}: {:.2} s, floor {:.2} s ({:.1}x): {}",
            model.name,
            phases.total(),
            floor.total(),
            phases.total() / floor.total(),
            phases.describe(&floor)
        );
    }
}

fn main() {
    let args = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("train_ucf11: {message}");
            std::process::exit(2);
        }
    };
    let kind_name = match args.kind {
        CellKind::Lstm => "LSTM",
        CellKind::Gru => "GRU",
    };
    let gates = args.kind.gates();
    let (train_len, test_len) = if args.quick { (330, 110) } else { (Split::TRAIN.len, Split::TEST.len) };
    println!("UCF11-shaped moving shapes: {train_len} training and {test_len} test clips of {FRAMES} frames of 160x120x3, {CLASSES} classes");
    let budget = &args.budget;
    println!(
        "{kind_name}, hidden {HIDDEN}, input weight {}, batch {}, Adam lr {}, {} epochs",
        args.format, budget.batch, budget.lr, budget.epochs
    );
    let start = Instant::now();
    let train_set = Clips::generate(Split::TRAIN, train_len, "train set");
    let test_set = Clips::generate(Split::TEST, test_len, "test set");
    println!("  generated the clips in {:.1} s", start.elapsed().as_secs_f64());

    let out_shape = [gates, 4, 4, 16];
    let g = gates * HIDDEN;
    let input = Input::compressed(args.format.clone(), &out_shape, 1);
    if let Input::Compressed { program, backward, .. } = &input {
        println!(
            "  compressed input projection: {} MACs per frame forward, {} backward",
            program.macs_per_row, backward.macs_per_row
        );
    }
    let name = args.format.name().to_uppercase();
    let mut compressed = Model::new(&name, input, args.kind, 0);
    let mut dense = Model::new("dense", Input::dense(g, 1), args.kind, 0);
    let compressed_curve = train(&mut compressed, &train_set, &test_set, budget);
    let dense_curve = if args.kcp_only { Vec::new() } else { train(&mut dense, &train_set, &test_set, budget) };
    print_phases(&[(&compressed, &compressed_curve), (&dense, &dense_curve)], train_len, budget.batch);

    std::fs::create_dir_all(&args.out).ok();
    let mut csv = String::from("model,epoch,train_loss,test_accuracy,seconds\n");
    for (model, curve) in [(args.format.name(), &compressed_curve), ("dense", &dense_curve)] {
        for (k, e) in curve.iter().enumerate() {
            csv += &format!("{model},{},{:.6},{:.4},{:.2}\n", k + 1, e.loss, e.accuracy, e.seconds);
        }
    }
    let csv_path = args.out.join("curves.csv");
    let svg_path = args.out.join("curves.svg");
    if let Err(e) = std::fs::write(&csv_path, csv) {
        eprintln!("cannot write {}: {e}", csv_path.display());
    }
    if let Err(e) = plot(&svg_path, &[(&name, &compressed_curve), ("dense", &dense_curve)]) {
        eprintln!("cannot plot {}: {e}", svg_path.display());
    }
    if let Input::Compressed { weights, program, .. } = &compressed.input {
        let mut tensors = kcp::Weights { bias: None, ..weights.clone() }.tensors("weight_ih.", &program.cores);
        tensors.push(NamedTensor::new("bias_ih", vec![g], weights.bias.clone().unwrap_or_default()));
        tensors.push(NamedTensor::new("weight_hh", vec![g, HIDDEN], compressed.cell.weight_hh().to_vec()));
        tensors.push(NamedTensor::new("bias_hh", vec![g], compressed.cell.bias_hh().to_vec()));
        tensors.extend(compressed.head.named("head."));
        let path = args.out.join(format!("{}_model.safetensors", args.format.name()));
        if let Err(e) = kcp::save(&path, &tensors) {
            eprintln!("cannot save {}: {e}", path.display());
        }
    }

    let ((ih, all), (dense_ih, dense_all)) = (compressed.params(), dense.params());
    println!("\n| {kind_name} | W_ih parameters | model parameters | compression (W_ih) | test accuracy | s per epoch | us per frame |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let rows = [(&compressed, &compressed_curve, ih, all), (&dense, &dense_curve, dense_ih, dense_all)];
    // Not --kcp-only's untrained dense model.
    for (model, curve, ih, all) in rows.into_iter().filter(|row| !row.1.is_empty()) {
        println!(
            "| {} | {ih} | {all} | {:.0}x | {:.1}% | {:.1} | {:.1} |",
            model.name,
            dense_ih as f64 / ih as f64,
            100.0 * curve.last().map_or(0.0, |e| e.accuracy),
            median_seconds(curve),
            frame_time_us(model, &test_set)
        );
    }
    println!("\nchance: {:.1}%; the curves: {} and {}", 100.0 / CLASSES as f64, csv_path.display(), svg_path.display());
}
