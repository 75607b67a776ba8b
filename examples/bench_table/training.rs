//! The training rows: the UCF11 rank-4 layer's generated training path (`backward: weights`)
//! against the generic executor's and against dense (dW = dy^T x by faer), at batch 16 and 256
//! (a batch of T*B frames, as BPTT hands it over), with a trace that keeps every row's
//! intermediates and with one that recomputes them. GFLOP/s count each variant's own MACs:
//! a recomputing backward pass runs the forward pass again.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use kcp::ir::{compile, lower_backward, Options, Spec};
use kcp::{kcp_layer, Executor, Threads, Trace};

use crate::measure::{Bench, Row};

kcp_layer! { struct Ucf11TrainR4 { in_shape: [8, 20, 20, 18], out_shape: [4, 4, 4, 16], rank: 4, bias: true, backward: weights } }

/// The layer name of the training rows.
pub const LAYER: &str = "ucf11_train_r4";

pub fn bench_training(bench: &mut Bench) {
    let layer = Ucf11TrainR4::random(1);
    let spec = Spec::new(&Ucf11TrainR4::IN_SHAPE, &Ucf11TrainR4::OUT_SHAPE, kcp::ir::Format::kcp(Ucf11TrainR4::RANK))
        .with_bias(true);
    let c = compile(&spec, &Options::default()).expect("valid spec");
    let program = lower_backward(&c.backward(false), &c.graph);
    let executor = Executor::new(c.nest.clone(), layer.weights().clone()).expect("weights fit");
    let (n, m) = (Ucf11TrainR4::IN, Ucf11TrainR4::OUT);
    let (fwd, bwd) = (Ucf11TrainR4::MACS_PER_SAMPLE, Ucf11TrainR4::BACKWARD_MACS_PER_SAMPLE);
    let kept = Ucf11TrainR4::KEPT_PER_SAMPLE as u64;
    for batch in [16usize, 256] {
        let b = batch as u64;
        let x: Vec<f32> = (0..batch * n).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let dy: Vec<f32> = (0..batch * m).map(|k| ((k * 104_729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut y = vec![0.0f32; batch * m];
        let mut grads = Ucf11TrainR4::zero_grads();
        // x, dy and y once; the factors and their gradients; kept intermediates written and read.
        let io = 4 * b * (n + 2 * m) as u64 + 8 * Ucf11TrainR4::PARAMS;
        let with_kept = io + 8 * b * kept;
        let mut row = |variant: &'static str, isa: &'static str, macs: u64, bytes: u64, f: &mut dyn FnMut()| {
            let median_ns = bench.median_ns(f);
            bench.rows.push(Row { layer: LAYER.into(), batch, variant, isa, median_ns, macs, bytes });
        };
        let isa = kcp::isa().name();
        let mut dw = vec![0.0f32; m * n];
        row("dense dW = dy^T x", "faer", b * (m * n) as u64, 4 * (b * (n + m) as u64 + (m * n) as u64), &mut || {
            let lhs = MatRef::from_row_major_slice(&dy, batch, m).transpose();
            let rhs = MatRef::from_row_major_slice(&x, batch, n);
            let out = MatMut::from_row_major_slice_mut(&mut dw, m, n);
            matmul(out, Accum::Replace, lhs, rhs, 1.0, Par::Seq);
        });
        row("generated forward", isa, b * fwd, io, &mut || layer.forward(&x, &mut y).expect("shapes"));
        let mut trace = Trace::new();
        row("generated forward_train", isa, b * fwd, with_kept, &mut || {
            layer.forward_train(&x, &mut y, &mut trace).expect("shapes")
        });
        row("generated backward (kept)", isa, b * bwd, with_kept, &mut || {
            layer.backward(&x, &dy, &mut trace, None, &mut grads).expect("shapes")
        });
        let mut recomputing = Trace::recomputing();
        row("generated forward + backward (recomputing)", isa, b * (2 * fwd + bwd), io, &mut || {
            layer.forward_train(&x, &mut y, &mut recomputing).expect("shapes");
            layer.backward(&x, &dy, &mut recomputing, None, &mut grads).expect("shapes");
        });
        row("generated forward_train + backward (kept)", isa, b * (fwd + bwd), with_kept, &mut || {
            layer.forward_train(&x, &mut y, &mut trace).expect("shapes");
            layer.backward(&x, &dy, &mut trace, None, &mut grads).expect("shapes");
        });
        row("generated_par forward_train + backward (kept)", isa, b * (fwd + bwd), with_kept, &mut || {
            layer.forward_train_par(&x, &mut y, &mut trace).expect("shapes");
            layer.backward_par(&x, &dy, &mut trace, None, &mut grads).expect("shapes");
        });
        let mut generic = Trace::new();
        row("generic forward_train + backward (kept)", isa, b * (fwd + bwd), with_kept, &mut || {
            executor.forward_train(&program, &x, &mut y, &mut generic, Threads::ONE).expect("shapes");
            executor.backward(&program, &x, &dy, &mut generic, None, &mut grads, Threads::ONE).expect("shapes");
        });
    }
}
