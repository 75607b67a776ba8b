//! What the examples that train on the synthetic UCF11-shaped set (`kcp::data`) share: the
//! clips, generated once and stored as bytes; a video classifier (an input projection of any
//! tensor format, or dense; a recurrent cell; a linear head on the last hidden state); its
//! training loop (Adam, clipping by global norm, one shuffle per epoch shared by every model)
//! and its evaluation.
//!
//! A compressed projection runs through the generic executor: the network's forward plan and
//! its backward plan (`kcp::ir::plan_backward`), whatever the format.

use std::time::Instant;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use indicatif::{ProgressBar, ProgressStyle};
use kcp::data::{Split, CLASSES, CLIP, FRAME, FRAMES};
use kcp::ir::network::{Format, Network};
use kcp::ir::{lower_backward, plan_backward, Batch, Options};
use kcp::train::{accuracy, clip_grad_norm, softmax_cross_entropy, Adam, Linear, Optimizer, Parameters};
use kcp::{BackwardProgram, CellGrads, CellKind, Executor, Program, Recurrent, Rng, State, Threads, Trace, Weights};
use rayon::prelude::*;

/// The frame's shape, as the input modes of every projection.
pub const IN_SHAPE: [usize; 4] = [8, 20, 20, 18];
/// The recurrent cell's hidden size.
pub const HIDDEN: usize = 256;

/// A split generated once, stored as bytes (a clip is 921,600 values in [0, 1]; 8 bits keep
/// the set at 1 GB instead of 4), with each clip's mean frame (of those bytes' values).
pub struct Clips {
    data: Vec<u8>,
    means: Vec<f32>,
    labels: Vec<usize>,
}

impl Clips {
    pub fn generate(split: Split, len: usize, what: &str) -> Clips {
        let bar = bar(len as u64, what);
        let (mut data, mut means) = (vec![0u8; len * CLIP], vec![0.0f32; len * FRAME]);
        data.par_chunks_mut(CLIP).zip(means.par_chunks_mut(FRAME)).enumerate().for_each(|(k, (clip, mean))| {
            split.clip_bytes_into(k, clip);
            // The mean of the stored values, frame after frame (as `kcp::data::mean_frame`).
            // The first frame is written, not added to zero: a fresh page read before it is
            // written is the shared zero page, and its copy on write costs both cores a TLB
            // flush.
            let (first, rest) = clip.split_at(FRAME);
            mean.iter_mut().zip(first).for_each(|(m, &p)| *m = f32::from(p) / 255.0);
            for frame in rest.chunks_exact(FRAME) {
                mean.iter_mut().zip(frame).for_each(|(m, &p)| *m += f32::from(p) / 255.0);
            }
            mean.iter_mut().for_each(|m| *m /= FRAMES as f32);
            bar.inc(1);
        });
        bar.finish_and_clear();
        Clips { data, means, labels: (0..len).map(|k| split.label(k)).collect() }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Clips `ids` as x `[T, B, N]`, time major, each clip's mean frame subtracted (as
    /// [`kcp::data::subtract_mean_frame`] does, from the mean kept at generation): one pass,
    /// frame by frame in parallel, into `x` (reused from batch to batch: a fresh 59 MB buffer
    /// costs more in page faults than filling it).
    pub fn batch<'a>(&self, ids: &[usize], x: &'a mut Vec<f32>) -> &'a [f32] {
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

pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("  {prefix:>12} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// The input projection of a model.
pub enum Input {
    /// A weight of any format: its forward program, its backward program, its cores and bias.
    Compressed {
        program: Box<Program>,
        backward: Box<BackwardProgram>,
        weights: Weights,
    },
    Dense {
        weight: Vec<f32>,
        bias: Vec<f32>,
    },
}

impl Input {
    /// A projection of `format` from the frame to `out_shape` (the cell's gates), planned
    /// forward and backward (without dx: it is the network's first layer), its cores
    /// initialised as its `kcp_layer!` would be (`random`: W's entries of variance about 1/N),
    /// from `seed`.
    pub fn compressed(format: Format, out_shape: &[usize], seed: u64) -> Input {
        let network = Network::new(&IN_SHAPE, out_shape, format, Batch::Symbolic).expect("a valid layer");
        let lowered = kcp::ir::compile(&network.spec(), &Options::default()).expect("a valid network");
        let plan = plan_backward(&lowered.graph, &lowered.plan, false, Options::default().max_saved_elems);
        let backward = lower_backward(&plan, &lowered.graph);
        let nest = lowered.nest;
        let weights = kcp::random_weights(&network, true, seed);
        Input::Compressed { program: Box::new(nest), backward: Box::new(backward), weights }
    }

    /// A dense projection to `g` gates, initialised as PyTorch's nn.LSTM is (uniform in
    /// +-1/sqrt(N)).
    pub fn dense(g: usize, seed: u64) -> Input {
        let bound = 1.0 / (FRAME as f64).sqrt();
        let mut rng = Rng::new(seed);
        Input::Dense { weight: rng.vec_f32(g * FRAME, bound), bias: rng.vec_f32(g, bound) }
    }

    /// proj = x W^T + b for x `[rows, N]`; with a trace, a training forward pass (a compressed
    /// projection keeps what its backward pass reads).
    fn forward(&self, x: &[f32], proj: &mut [f32], g: usize, trace: Option<&mut Trace>) {
        match self {
            Input::Compressed { program, weights, backward } => {
                let executor = Executor::new((**program).clone(), weights.clone()).expect("weights fit");
                match trace {
                    Some(trace) => executor.forward_train(backward, x, proj, trace, Threads::All).expect("shapes"),
                    None => executor.forward_par(x, proj, Threads::All).expect("shapes"),
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
            Input::Compressed { program, backward, weights } => {
                let executor = Executor::new((**program).clone(), weights.clone()).expect("weights fit");
                let mut grads = Weights::zeros(&program.cores, Some(g));
                executor.backward(backward, x, dproj, trace, None, &mut grads, Threads::All).expect("shapes");
                Input::Compressed { program: program.clone(), backward: backward.clone(), weights: grads }
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

    /// The weight's parameters (the bias excluded).
    pub fn params(&self) -> u64 {
        match self {
            Input::Compressed { weights, .. } => weights.cores.iter().map(|f| f.len() as u64).sum(),
            Input::Dense { weight, .. } => weight.len() as u64,
        }
    }
}

impl Parameters for Input {
    fn values(&self) -> Vec<&[f32]> {
        match self {
            Input::Compressed { weights, .. } => weights.values(),
            Input::Dense { weight, bias } => vec![weight, bias],
        }
    }

    fn values_mut(&mut self) -> Vec<&mut [f32]> {
        match self {
            Input::Compressed { weights, .. } => weights.values_mut(),
            Input::Dense { weight, bias } => vec![weight, bias],
        }
    }
}

/// A classifier: input projection, recurrent cell, linear head on the last hidden state.
pub struct Model {
    pub name: String,
    pub input: Input,
    pub cell: Recurrent,
    pub head: Linear,
}

impl Model {
    /// A model around `input`, its cell and head from seeds every model of the same `seed`
    /// shares (seed 0: 2 and 3; seed s: 2 + 3s and 3 + 3s, beside the input's 1 + 3s).
    pub fn new(name: &str, input: Input, kind: CellKind, seed: u64) -> Model {
        let (cell, head) = (Recurrent::random(kind, HIDDEN, 2 + 3 * seed), Linear::new(HIDDEN, CLASSES, 3 + 3 * seed));
        Model { name: name.to_string(), input, cell, head }
    }

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

    /// One training step's loss and gradients, its time added to `phases`.
    fn gradients(&self, x: &[f32], labels: &[usize], phases: &mut Phases) -> (f32, (Input, (CellGrads, Linear))) {
        let (batch, g) = (labels.len(), self.gates());
        let mut proj = vec![0.0; FRAMES * batch * g];
        // T*B rows of kept intermediates would spill to memory: each row's forward pass runs
        // again just before its backward row instead (BENCHMARKS.md measures both).
        let mut trace = Trace::recomputing();
        let start = Instant::now();
        self.input.forward(x, &mut proj, g, Some(&mut trace));
        phases.forward += start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut hs = vec![0.0; FRAMES * batch * HIDDEN];
        let mut state = State::zeros(self.cell.kind(), batch, HIDDEN);
        let tape = self.cell.run_taped(&proj, batch, &mut hs, &mut state, Threads::All).expect("shapes");
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
        phases.recurrence += start.elapsed().as_secs_f64();
        let start = Instant::now();
        let input = self.input.backward(x, &dproj, g, &mut trace);
        phases.backward += start.elapsed().as_secs_f64();
        (loss, (input, (cell, head)))
    }

    /// The least an epoch of `rows` frames can take at `gflops` (the FMA peak of every thread
    /// together), phase by phase: each one's MACs, counted from the plans, at that peak. (The
    /// data's own floor is a copy, which [`copy_seconds`] measures.) The projection's backward
    /// phase runs its forward plan again (the recomputing trace) before the backward plan; the
    /// recurrence is `W_hh h` forward, and `W_hh^T dgates` and `dgates^T h` back.
    pub fn floor(&self, rows: u64, gflops: f64) -> Phases {
        let (g, n, h) = (self.gates() as u64, FRAME as u64, HIDDEN as u64);
        let (forward, backward) = match &self.input {
            Input::Compressed { program, backward, .. } => {
                (program.macs_per_row, program.macs_per_row + backward.macs_per_row)
            }
            Input::Dense { .. } => (g * n, g * n),
        };
        let seconds = |macs: u64| 2.0 * (macs * rows) as f64 / (gflops * 1e9);
        Phases {
            data: 0.0,
            forward: seconds(forward),
            recurrence: seconds(3 * g * h),
            backward: seconds(backward),
            optimiser: 0.0,
        }
    }

    /// The input weight's parameters, and the whole model's.
    pub fn params(&self) -> (u64, u64) {
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

/// The training budget.
pub struct Budget {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
}

/// One epoch's mean training loss, test accuracy after it, its training time and where that
/// time went.
pub struct Epoch {
    pub loss: f32,
    pub accuracy: f32,
    pub seconds: f64,
    pub phases: Phases,
}

/// Where a training epoch's time goes, in seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    /// Making the batches: the clips' bytes to f32, less their mean frames.
    pub data: f64,
    /// The input projection's forward pass.
    pub forward: f64,
    /// The recurrence, the head and the loss, forward and back (BPTT).
    pub recurrence: f64,
    /// The input projection's backward pass.
    pub backward: f64,
    /// Clipping the gradients and Adam's step.
    pub optimiser: f64,
}

impl Phases {
    pub fn total(&self) -> f64 {
        self.data + self.forward + self.recurrence + self.backward + self.optimiser
    }

    /// Each phase's mean over `epochs`.
    pub fn mean(epochs: &[Epoch]) -> Phases {
        let k = epochs.len().max(1) as f64;
        epochs.iter().fold(Phases::default(), |m, e| Phases {
            data: m.data + e.phases.data / k,
            forward: m.forward + e.phases.forward / k,
            recurrence: m.recurrence + e.phases.recurrence / k,
            backward: m.backward + e.phases.backward / k,
            optimiser: m.optimiser + e.phases.optimiser / k,
        })
    }

    /// The phases with their floors, one line: `data 0.41 s (floor 0.10), ...`.
    pub fn describe(&self, floor: &Phases) -> String {
        [
            ("data", self.data, floor.data),
            ("projection forward", self.forward, floor.forward),
            ("recurrence and BPTT", self.recurrence, floor.recurrence),
            ("projection backward", self.backward, floor.backward),
            ("optimiser", self.optimiser, floor.optimiser),
        ]
        .map(|(name, s, f)| format!("{name} {s:.2} s (floor {f:.2})"))
        .join(", ")
    }
}

/// The time, in seconds, that copying `len` f32 values takes on every thread (the median of
/// eleven copies): the floor of making a batch of that many values.
pub fn copy_seconds(len: usize) -> f64 {
    let (from, mut to) = (vec![1.0f32; len], vec![0.0f32; len]);
    let chunk = len.div_ceil(rayon::current_num_threads() * 4).max(1);
    let mut times: Vec<f64> = (0..11)
        .map(|_| {
            let start = Instant::now();
            to.par_chunks_mut(chunk).zip(from.par_chunks(chunk)).for_each(|(t, f)| t.copy_from_slice(f));
            std::hint::black_box(&mut to);
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

pub fn evaluate(model: &Model, clips: &Clips, batch: usize) -> f32 {
    let (mut hits, mut x) = (0.0, Vec::new());
    for ids in (0..clips.len()).collect::<Vec<_>>().chunks(batch) {
        let logits = model.logits(clips.batch(ids, &mut x), ids.len());
        let labels: Vec<usize> = ids.iter().map(|&k| clips.labels[k]).collect();
        hits += accuracy(&logits, &labels, CLASSES).expect("one row of logits per label") * ids.len() as f32;
    }
    hits / clips.len() as f32
}

/// Train `model` with Adam and clipping (global norm 5), the clips shuffled by a seed per epoch
/// (the same order for every model), testing after every epoch.
pub fn train(model: &mut Model, train: &Clips, test: &Clips, budget: &Budget) -> Vec<Epoch> {
    let mut adam = Adam::new(budget.lr);
    let (mut epochs, mut x) = (Vec::new(), Vec::new());
    for epoch in 0..budget.epochs {
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut rng = Rng::new(0xE90C + epoch as u64);
        for k in (1..order.len()).rev() {
            order.swap(k, (rng.next_u64() % (k as u64 + 1)) as usize);
        }
        let bar = bar(train.len() as u64, &model.name);
        let start = Instant::now();
        let (mut total, mut phases) = (0.0, Phases::default());
        for ids in order.chunks(budget.batch) {
            let labels: Vec<usize> = ids.iter().map(|&k| train.labels[k]).collect();
            let data = Instant::now();
            let x = train.batch(ids, &mut x);
            phases.data += data.elapsed().as_secs_f64();
            let (loss, mut grads) = model.gradients(x, &labels, &mut phases);
            let step = Instant::now();
            clip_grad_norm(&mut grads, 5.0);
            adam.step(&mut Params(model), &grads).expect("gradients of the model's shapes");
            phases.optimiser += step.elapsed().as_secs_f64();
            total += loss * ids.len() as f32;
            bar.inc(ids.len() as u64);
            bar.set_message(format!("loss {:.3}", total / bar.position() as f32));
        }
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let acc = evaluate(model, test, budget.batch);
        let loss = total / train.len() as f32;
        println!(
            "  {:>12} epoch {:>2}: train loss {loss:.4}, test accuracy {:.1}%, {seconds:.1} s",
            model.name,
            epoch + 1,
            100.0 * acc
        );
        epochs.push(Epoch { loss, accuracy: acc, seconds, phases });
    }
    epochs
}

/// The median of nine inference runs of one test clip, per frame (batch 1, all threads).
pub fn frame_time_us(model: &Model, test: &Clips) -> f64 {
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

/// The median of the epochs' training times.
pub fn median_seconds(curve: &[Epoch]) -> f64 {
    let mut s: Vec<f64> = curve.iter().map(|e| e.seconds).collect();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}
