//! Train a KCP-LSTM (the UCF11 input layer, in [8,20,20,18] -> gates [4,4,4,16], hidden 256)
//! and the same LSTM with a dense input weight on the synthetic UCF11-shaped data set
//! (`kcp::data`), side by side, the way the paper reports them: parameters, compression, test
//! accuracy, time per training epoch and per inference frame.
//!
//! ```sh
//! cargo run --release --example train_ucf11              # the run README and BENCHMARKS.md quote
//! cargo run --release --example train_ucf11 -- --quick   # a few minutes on 2 cores
//! cargo run --release --example train_ucf11 -- --gru    # GRU cells instead
//! ```
//!
//! Options: `--epochs N`, `--rank R`, `--batch B`, `--lr F`, `--kcp-only`, `--out DIR` (default
//! `target/train_ucf11`: the learning curves as CSV and SVG, the trained KCP model as
//! safetensors). Both models start from the same seeds, see the same clips in the same order,
//! and train with Adam and gradient clipping; the classifier is a linear layer on the last
//! hidden state. The KCP model's gradients come from the planned backward pass
//! (`Executor::forward_train` and `Executor::backward`), its BPTT from `Recurrent::backward`.
//! Each clip's mean frame is subtracted from its frames (`kcp::data::subtract_mean_frame`):
//! the background goes, the motion stays.

use std::path::PathBuf;
use std::time::Instant;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use indicatif::{ProgressBar, ProgressStyle};
use kcp::data::{mean_frame, Split, CLASSES, CLIP, FRAME, FRAMES};
use kcp::ir::{compile, lower_backward, Options, Spec};
use kcp::train::{accuracy, clip_grad_norm, softmax_cross_entropy, Adam, Linear, Parameters};
use kcp::{BackwardProgram, CellGrads, CellKind, Executor, Program, Recurrent, Rng, State, Trace, Weights};
use rayon::prelude::*;

const IN_SHAPE: [usize; 4] = [8, 20, 20, 18];
const HIDDEN: usize = 256;

struct Args {
    quick: bool,
    kind: CellKind,
    epochs: usize,
    rank: usize,
    batch: usize,
    lr: f32,
    out: PathBuf,
    /// Train the KCP model only.
    kcp_only: bool,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| argv.iter().position(|a| a == flag).and_then(|k| argv.get(k + 1)).cloned();
    let quick = argv.iter().any(|a| a == "--quick");
    let parse = |flag: &str, default: f64| value(flag).and_then(|v| v.parse::<f64>().ok()).unwrap_or(default);
    Args {
        quick,
        kind: if argv.iter().any(|a| a == "--gru") { CellKind::Gru } else { CellKind::Lstm },
        epochs: parse("--epochs", if quick { 3.0 } else { 12.0 }) as usize,
        rank: parse("--rank", 4.0) as usize,
        batch: parse("--batch", 16.0) as usize,
        lr: parse("--lr", 2e-3) as f32,
        out: value("--out").map_or_else(|| PathBuf::from("target/train_ucf11"), PathBuf::from),
        kcp_only: argv.iter().any(|a| a == "--kcp-only"),
    }
}

/// A split generated once, stored as bytes (a clip is 921,600 values in [0, 1]; 8 bits keep
/// the set at 1 GB instead of 4), with each clip's mean frame (of those bytes' values).
struct Clips {
    data: Vec<u8>,
    means: Vec<f32>,
    labels: Vec<usize>,
}

impl Clips {
    fn generate(split: Split, len: usize, what: &str) -> Clips {
        let bar = bar(len as u64, what);
        let clips: Vec<(Vec<u8>, Vec<f32>, usize)> = (0..len)
            .into_par_iter()
            .map(|k| {
                let (clip, label) = split.clip(k);
                let bytes: Vec<u8> = clip.iter().map(|&v| (v * 255.0).round() as u8).collect();
                let stored: Vec<f32> = bytes.iter().map(|&p| f32::from(p) / 255.0).collect();
                bar.inc(1);
                (bytes, mean_frame(&stored), label)
            })
            .collect();
        bar.finish_and_clear();
        let labels = clips.iter().map(|c| c.2).collect();
        let means = clips.iter().flat_map(|c| c.1.iter().copied()).collect();
        Clips { data: clips.into_iter().flat_map(|c| c.0).collect(), means, labels }
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    /// Clips `ids` as x `[T, B, N]`, time major, each clip's mean frame subtracted (as
    /// [`kcp::data::subtract_mean_frame`] does, from the mean kept at generation): one pass,
    /// frame by frame in parallel, into `x` (reused from batch to batch: a fresh 59 MB buffer
    /// costs more in page faults than filling it).
    fn batch<'a>(&self, ids: &[usize], x: &'a mut Vec<f32>) -> &'a [f32] {
        let b = ids.len();
        x.resize(FRAMES * b * FRAME, 0.0);
        x.par_chunks_mut(b * FRAME).enumerate().for_each(|(t, rows)| {
            for (row, &k) in rows.chunks_exact_mut(FRAME).zip(ids) {
                let pixels = &self.data[k * CLIP + t * FRAME..][..FRAME];
                let mean = &self.means[k * FRAME..][..FRAME];
                row.iter_mut().zip(pixels).zip(mean).for_each(|((v, &p), m)| *v = f32::from(p) / 255.0 - m);
            }
        });
        x
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("  {prefix:>12} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// The input projection of one of the two models.
enum Input {
    Kcp { program: Box<Program>, backward: Box<BackwardProgram>, weights: Weights },
    Dense { weight: Vec<f32>, bias: Vec<f32> },
}

impl Input {
    /// proj = x W^T + b for x `[rows, N]`; with a trace, a training forward pass (the KCP
    /// layer keeps what its backward pass reads).
    fn forward(&self, x: &[f32], proj: &mut [f32], g: usize, trace: Option<&mut Trace>) {
        match self {
            Input::Kcp { program, weights, backward } => {
                let executor = Executor::new((**program).clone(), weights.clone()).expect("weights fit");
                match trace {
                    Some(trace) => executor.forward_train(backward, x, proj, trace, 0).expect("shapes"),
                    None => executor.forward_par(x, proj, 0).expect("shapes"),
                }
            }
            Input::Dense { weight, bias } => {
                let rows = x.len() / FRAME;
                let lhs = MatRef::from_row_major_slice(x, rows, FRAME);
                let rhs = MatRef::from_row_major_slice(weight, g, FRAME).transpose();
                matmul(MatMut::from_row_major_slice_mut(proj, rows, g), Accum::Replace, lhs, rhs, 1.0, Par::rayon(0));
                proj.chunks_exact_mut(g).for_each(|row| row.iter_mut().zip(bias).for_each(|(p, b)| *p += b));
            }
        }
    }

    /// The gradient of the projection's parameters given dproj `[rows, G]`, after the training
    /// forward pass that filled `trace`.
    fn backward(&self, x: &[f32], dproj: &[f32], g: usize, trace: &mut Trace) -> Input {
        match self {
            Input::Kcp { program, backward, weights } => {
                let executor = Executor::new((**program).clone(), weights.clone()).expect("weights fit");
                let mut grads = Weights::zeros(&program.factor_shapes(), Some(g));
                executor.backward(backward, x, dproj, trace, None, &mut grads, 0).expect("shapes");
                Input::Kcp { program: program.clone(), backward: backward.clone(), weights: grads }
            }
            Input::Dense { .. } => {
                let rows = x.len() / FRAME;
                let mut dw = vec![0.0f32; g * FRAME];
                let lhs = MatRef::from_row_major_slice(dproj, rows, g).transpose();
                let rhs = MatRef::from_row_major_slice(x, rows, FRAME);
                matmul(
                    MatMut::from_row_major_slice_mut(&mut dw, g, FRAME),
                    Accum::Replace,
                    lhs,
                    rhs,
                    1.0,
                    Par::rayon(0),
                );
                let mut db = vec![0.0f32; g];
                dproj.chunks_exact(g).for_each(|row| db.iter_mut().zip(row).for_each(|(d, v)| *d += v));
                Input::Dense { weight: dw, bias: db }
            }
        }
    }

    fn params(&self) -> u64 {
        match self {
            Input::Kcp { weights, .. } => weights.factors.iter().map(|f| f.len() as u64).sum(),
            Input::Dense { weight, .. } => weight.len() as u64,
        }
    }
}

impl Parameters for Input {
    fn values(&self) -> Vec<&[f32]> {
        match self {
            Input::Kcp { weights, .. } => weights.values(),
            Input::Dense { weight, bias } => vec![weight, bias],
        }
    }

    fn values_mut(&mut self) -> Vec<&mut [f32]> {
        match self {
            Input::Kcp { weights, .. } => weights.values_mut(),
            Input::Dense { weight, bias } => vec![weight, bias],
        }
    }
}

/// A classifier: input projection, recurrent cell, linear head on the last hidden state.
struct Model {
    name: &'static str,
    input: Input,
    cell: Recurrent,
    head: Linear,
}

impl Model {
    fn gates(&self) -> usize {
        self.cell.kind().gates() * HIDDEN
    }

    /// Logits `[B, classes]` of x `[T, B, N]`.
    fn logits(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let g = self.gates();
        let mut proj = vec![0.0; FRAMES * batch * g];
        self.input.forward(x, &mut proj, g, None);
        let mut hs = vec![0.0; FRAMES * batch * HIDDEN];
        let mut state = State::zeros(self.cell.kind(), batch, HIDDEN);
        self.cell.run(&proj, batch, &mut hs, &mut state, true).expect("shapes");
        let mut logits = vec![0.0; batch * CLASSES];
        self.head.forward(&hs[(FRAMES - 1) * batch * HIDDEN..], &mut logits).expect("shapes");
        logits
    }

    /// One training step's loss and gradients.
    fn gradients(&self, x: &[f32], labels: &[usize]) -> (f32, (Input, (CellGrads, Linear))) {
        let (batch, g) = (labels.len(), self.gates());
        let mut proj = vec![0.0; FRAMES * batch * g];
        // T*B rows of kept intermediates would spill to memory: each row's forward pass runs
        // again just before its backward row instead (BENCHMARKS.md measures both).
        let mut trace = Trace::recomputing();
        self.input.forward(x, &mut proj, g, Some(&mut trace));
        let mut hs = vec![0.0; FRAMES * batch * HIDDEN];
        let mut state = State::zeros(self.cell.kind(), batch, HIDDEN);
        let tape = self.cell.run_taped(&proj, batch, &mut hs, &mut state).expect("shapes");
        let last = &hs[(FRAMES - 1) * batch * HIDDEN..];
        let mut logits = vec![0.0; batch * CLASSES];
        self.head.forward(last, &mut logits).expect("shapes");
        let mut dlogits = vec![0.0; logits.len()];
        let loss = softmax_cross_entropy(&logits, labels, CLASSES, &mut dlogits).expect("labels");
        let mut head = Linear::zeros(HIDDEN, CLASSES);
        let mut dh = vec![0.0; hs.len()];
        self.head.backward(last, &dlogits, Some(&mut dh[(FRAMES - 1) * batch * HIDDEN..]), &mut head).expect("shapes");
        let mut cell = CellGrads::zeros(&self.cell);
        let mut dproj = vec![0.0; proj.len()];
        self.cell.backward(&tape, &hs, &dh, &mut dproj, &mut cell).expect("shapes");
        let input = self.input.backward(x, &dproj, g, &mut trace);
        (loss, (input, (cell, head)))
    }

    fn params(&self) -> (u64, u64) {
        let cell: u64 = self.cell.values().iter().map(|t| t.len() as u64).sum();
        let head: u64 = self.head.values().iter().map(|t| t.len() as u64).sum();
        let bias = self.gates() as u64;
        (self.input.params(), self.input.params() + bias + cell + head)
    }
}

/// The parameters of a model as one structure (input, then cell and head).
struct Params<'a>(&'a mut Model);

impl Parameters for Params<'_> {
    fn values(&self) -> Vec<&[f32]> {
        let mut v = self.0.input.values();
        v.extend(self.0.cell.values());
        v.extend(self.0.head.values());
        v
    }

    fn values_mut(&mut self) -> Vec<&mut [f32]> {
        let m = &mut *self.0;
        let mut v = m.input.values_mut();
        v.extend(m.cell.values_mut());
        v.extend(m.head.values_mut());
        v
    }
}

struct Epoch {
    loss: f32,
    accuracy: f32,
    seconds: f64,
}

fn evaluate(model: &Model, clips: &Clips, batch: usize) -> f32 {
    let (mut hits, mut x) = (0.0, Vec::new());
    for ids in (0..clips.len()).collect::<Vec<_>>().chunks(batch) {
        let logits = model.logits(clips.batch(ids, &mut x), ids.len());
        let labels: Vec<usize> = ids.iter().map(|&k| clips.labels[k]).collect();
        hits += accuracy(&logits, &labels, CLASSES) * ids.len() as f32;
    }
    hits / clips.len() as f32
}

fn train(model: &mut Model, train: &Clips, test: &Clips, args: &Args) -> Vec<Epoch> {
    let mut adam = Adam::new(args.lr);
    let (mut epochs, mut x) = (Vec::new(), Vec::new());
    for epoch in 0..args.epochs {
        // The same shuffle for both models: a seed per epoch.
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut rng = Rng::new(0xE90C + epoch as u64);
        for k in (1..order.len()).rev() {
            order.swap(k, (rng.next_u64() % (k as u64 + 1)) as usize);
        }
        let bar = bar(train.len() as u64, model.name);
        let start = Instant::now();
        let mut total = 0.0;
        for ids in order.chunks(args.batch) {
            let labels: Vec<usize> = ids.iter().map(|&k| train.labels[k]).collect();
            let (loss, mut grads) = model.gradients(train.batch(ids, &mut x), &labels);
            clip_grad_norm(&mut grads, 5.0);
            adam.step(&mut Params(model), &grads).expect("gradients of the model's shapes");
            total += loss * ids.len() as f32;
            bar.inc(ids.len() as u64);
            bar.set_message(format!("loss {:.3}", total / bar.position() as f32));
        }
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let acc = evaluate(model, test, args.batch);
        let loss = total / train.len() as f32;
        println!(
            "  {:>12} epoch {:>2}: train loss {loss:.4}, test accuracy {:.1}%, {seconds:.1} s",
            model.name,
            epoch + 1,
            100.0 * acc
        );
        epochs.push(Epoch { loss, accuracy: acc, seconds });
    }
    epochs
}

fn frame_time_us(model: &Model, test: &Clips) -> f64 {
    let mut x = Vec::new();
    let x = test.batch(&[0], &mut x);
    let mut times: Vec<f64> = (0..9)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(model.logits(x, 1));
            t.elapsed().as_secs_f64() * 1e6 / FRAMES as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[4]
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

fn main() {
    let args = args();
    let kind_name = match args.kind {
        CellKind::Lstm => "LSTM",
        CellKind::Gru => "GRU",
    };
    let gates = args.kind.gates();
    let (train_len, test_len) = if args.quick { (330, 110) } else { (Split::TRAIN.len, Split::TEST.len) };
    println!("UCF11-shaped moving shapes: {train_len} training and {test_len} test clips of {FRAMES} frames of 160x120x3, {CLASSES} classes");
    println!(
        "{kind_name}, hidden {HIDDEN}, KCP rank {}, batch {}, Adam lr {}, {} epochs",
        args.rank, args.batch, args.lr, args.epochs
    );
    let start = Instant::now();
    let train_set = Clips::generate(Split::TRAIN, train_len, "train set");
    let test_set = Clips::generate(Split::TEST, test_len, "test set");
    println!("  generated the clips in {:.1} s", start.elapsed().as_secs_f64());

    let out_shape = [gates, 4, 4, 16];
    let spec = Spec::new(&IN_SHAPE, &out_shape, args.rank).with_cell(args.kind, HIDDEN);
    let c = compile(&spec, &Options::default()).expect("a valid layer");
    let backward = lower_backward(&c.backward(&Options::default(), false), &c.graph);
    println!(
        "  KCP input projection: {} MACs per frame forward, {} backward ({})",
        c.plan.macs(),
        backward.macs_per_row,
        match &c.backward(&Options::default(), false).strategy {
            kcp::ir::BackwardStrategy::Sweep { .. } => "a sweep",
            kcp::ir::BackwardStrategy::Separate => "separately",
        }
    );
    let g = gates * HIDDEN;
    let shapes = c.nest.factor_shapes();
    let cell = Recurrent::random(args.kind, HIDDEN, 2);
    let head = Linear::new(HIDDEN, CLASSES, 3);
    let kcp_weights = Weights::random(&shapes, Some(g), 1);
    let mut kcp_model = Model {
        name: "KCP",
        input: Input::Kcp { program: Box::new(c.nest.clone()), backward: Box::new(backward), weights: kcp_weights },
        cell: cell.clone(),
        head: head.clone(),
    };
    let bound = 1.0 / (FRAME as f64).sqrt();
    let mut rng = Rng::new(1);
    let mut dense_model = Model {
        name: "dense",
        input: Input::Dense { weight: rng.vec_f32(g * FRAME, bound), bias: rng.vec_f32(g, bound) },
        cell,
        head,
    };
    let kcp_curve = train(&mut kcp_model, &train_set, &test_set, &args);
    let dense_curve = if args.kcp_only { Vec::new() } else { train(&mut dense_model, &train_set, &test_set, &args) };

    std::fs::create_dir_all(&args.out).ok();
    let mut csv = String::from("model,epoch,train_loss,test_accuracy,seconds\n");
    for (name, curve) in [("kcp", &kcp_curve), ("dense", &dense_curve)] {
        for (k, e) in curve.iter().enumerate() {
            csv += &format!("{name},{},{:.6},{:.4},{:.2}\n", k + 1, e.loss, e.accuracy, e.seconds);
        }
    }
    let csv_path = args.out.join("curves.csv");
    let svg_path = args.out.join("curves.svg");
    if let Err(e) = std::fs::write(&csv_path, csv) {
        eprintln!("cannot write {}: {e}", csv_path.display());
    }
    if let Err(e) = plot(&svg_path, &[("KCP", &kcp_curve), ("dense", &dense_curve)]) {
        eprintln!("cannot plot {}: {e}", svg_path.display());
    }
    if let Input::Kcp { weights, .. } = &kcp_model.input {
        let mut tensors = Weights { bias: None, ..weights.clone() }.tensors("weight_ih.", &shapes);
        tensors.push(("bias_ih".into(), vec![g], weights.bias.clone().unwrap_or_default()));
        tensors.push(("weight_hh".into(), vec![g, HIDDEN], kcp_model.cell.weight_hh().to_vec()));
        tensors.push(("bias_hh".into(), vec![g], kcp_model.cell.bias_hh().to_vec()));
        tensors.extend(kcp_model.head.named("head."));
        let path = args.out.join("kcp_model.safetensors");
        if let Err(e) = kcp::save(&path, &tensors) {
            eprintln!("cannot save {}: {e}", path.display());
        }
    }

    let median = |c: &[Epoch]| {
        let mut s: Vec<f64> = c.iter().map(|e| e.seconds).collect();
        s.sort_by(f64::total_cmp);
        s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let ((kcp_ih, kcp_all), (dense_ih, dense_all)) = (kcp_model.params(), dense_model.params());
    println!("\n| {kind_name} | W_ih parameters | model parameters | compression (W_ih) | test accuracy | s per epoch | us per frame |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (model, curve, ih, all) in
        [(&kcp_model, &kcp_curve, kcp_ih, kcp_all), (&dense_model, &dense_curve, dense_ih, dense_all)]
    {
        println!(
            "| {} | {ih} | {all} | {:.0}x | {:.1}% | {:.1} | {:.1} |",
            model.name,
            dense_ih as f64 / ih as f64,
            100.0 * curve.last().map_or(0.0, |e| e.accuracy),
            median(curve),
            frame_time_us(model, &test_set)
        );
    }
    println!("\nchance: {:.1}%; the curves: {} and {}", 100.0 / CLASSES as f64, csv_path.display(), svg_path.display());
}
