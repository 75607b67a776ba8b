//! The training path of generated layers (`backward: weights | dx`): `forward_train` and
//! `backward` against the dense f64 reference (W reconstructed, dW = dy^T x, each dA_d by W's
//! multilinearity, dx = dy W), threaded against sequential, the generated cell's gradients
//! against the generic executor's, and the errors of a misused trace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kcp::ir::test::dense_gradients;
use kcp::ir::{compile, lower_backward, validate, CellKind, Options, Spec};
use kcp::{Error, Executor, Recurrent, RecurrentExecutor, Rng, ShapeError, Threads, Trace, Weights};

kcp::kcp_layer! { struct Dense1 { in_shape: [12], out_shape: [7], rank: 3, bias: true, backward: dx } }
kcp::kcp_layer! { struct Ones { in_shape: [1, 5, 1], out_shape: [3, 1, 2], rank: 2, backward: dx } }
kcp::kcp_layer! { struct Kt { in_shape: [32, 40], out_shape: [16, 8], rank: 2, bias: true, backward: weights } }
kcp::kcp_layer! { struct Five { in_shape: [2, 1, 3, 2, 2], out_shape: [1, 3, 2, 2, 1], rank: 5, backward: dx } }
kcp::kcp_layer! { struct Speech { in_shape: [4, 4, 5, 4], out_shape: [4, 8, 8, 8], rank: 8, bias: true, backward: dx } }
kcp::kcp_layer! { struct Ucf11 { in_shape: [8, 20, 20, 18], out_shape: [4, 4, 4, 16], rank: 4, bias: true, backward: weights } }
kcp::kcp_layer! { struct SmallGru { in_shape: [3, 4], out_shape: [3, 4], rank: 2, cell: gru, hidden: 4, backward: dx } }

/// The largest difference of `got` from `want`, over `want`'s largest magnitude (NaN if `got`
/// holds one).
fn relative(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    // A NaN (an element never written) makes the error NaN, which no bound accepts.
    let worst = got.iter().zip(want).map(|(&g, &w)| (f64::from(g) - w).abs()).fold(0.0, |m: f64, d| {
        if d > m || d.is_nan() {
            d
        } else {
            m
        }
    });
    worst / scale
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&v| f64::from(v)).collect()
}

/// One generated layer's training path against the dense reference, for a few batch sizes.
macro_rules! check_layer {
    ($layer:ty, $spec:expr, $seed:expr) => {{
        let spec = validate(&$spec).unwrap();
        let layer = <$layer>::random($seed);
        let mut rng = Rng::new($seed + 100);
        for (batch, mut trace) in [(1usize, Trace::new()), (3, Trace::recomputing()), (8, Trace::new())] {
            let x = rng.vec_f32(batch * <$layer>::IN, 1.0);
            let dy = rng.vec_f32(batch * <$layer>::OUT, 1.0);
            let (mut y, mut plain) = (vec![0.0f32; dy.len()], vec![0.0f32; dy.len()]);
            layer.forward_train(&x, &mut y, &mut trace).unwrap();
            layer.forward(&x, &mut plain).unwrap();
            assert!(relative(&y, &to64(&plain)) < 1e-5, "{}: forward_train's y", stringify!($layer));
            assert_eq!(trace.rows(), batch);
            let mut grads = <$layer>::zero_grads();
            let mut dx = vec![f32::NAN; x.len()];
            let dx_arg = <$layer>::BACKWARD_DX.then_some(&mut dx[..]);
            layer.backward(&x, &dy, &mut trace, dx_arg, &mut grads).unwrap();
            let factors: Vec<Vec<f64>> = layer.weights().cores.iter().map(|f| to64(f)).collect();
            let want = dense_gradients(&spec, &factors, &to64(&x), &to64(&dy), batch);
            for (d, (g, w)) in grads.cores.iter().zip(&want.cores).enumerate() {
                let err = relative(g, w);
                assert!(err < 1e-4, "{} batch {batch}: dA{} off by {err:e}", stringify!($layer), d + 1);
            }
            if let Some(db) = &grads.bias {
                assert!(relative(db, &want.bias) < 1e-5, "{}: dbias", stringify!($layer));
            }
            if <$layer>::BACKWARD_DX {
                let w = want.dx.as_ref().unwrap();
                assert!(relative(&dx, w) < 1e-4, "{} batch {batch}: dx", stringify!($layer));
            }
            // A second backward pass accumulates: twice the gradients.
            let once = grads.clone();
            let dx_arg = <$layer>::BACKWARD_DX.then_some(&mut dx[..]);
            layer.backward_par(&x, &dy, &mut trace, dx_arg, &mut grads).unwrap();
            for (twice, g) in grads.cores.iter().zip(&once.cores) {
                let want: Vec<f64> = g.iter().map(|&v| 2.0 * f64::from(v)).collect();
                assert!(relative(twice, &want) < 1e-5, "{}: accumulation", stringify!($layer));
            }
        }
    }};
}

#[test]
fn generated_gradients_match_the_dense_reference() {
    check_layer!(Dense1, Spec::new(&[12], &[7], kcp::ir::Format::kcp(3)).with_bias(true), 1);
    check_layer!(Ones, Spec::new(&[1, 5, 1], &[3, 1, 2], kcp::ir::Format::kcp(2)), 2);
    check_layer!(Kt, Spec::new(&[32, 40], &[16, 8], kcp::ir::Format::kcp(2)).with_bias(true), 3);
    check_layer!(Five, Spec::new(&[2, 1, 3, 2, 2], &[1, 3, 2, 2, 1], kcp::ir::Format::kcp(5)), 4);
    check_layer!(Speech, Spec::new(&[4, 4, 5, 4], &[4, 8, 8, 8], kcp::ir::Format::kcp(8)).with_bias(true), 5);
}

/// The UCF11 layer (its dense reference is 59M weights: checked against the generic executor,
/// itself checked against the dense reference in kcp-ir's tests): sequential and threaded (the
/// batch split over two threads), with a trace that keeps every row's intermediates or one that
/// recomputes them, the same gradients; the plan keeps what the declaration says.
#[test]
fn ucf11_gradients_match_the_executor_threaded_or_not() {
    let layer = Ucf11::random(7);
    let compiled = compile(
        &Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], kcp::ir::Format::kcp(4)).with_bias(true),
        &Options::default(),
    )
    .unwrap();
    let program = lower_backward(&compiled.backward(false), &compiled.graph);
    assert_eq!(Ucf11::BACKWARD_MACS_PER_SAMPLE, program.macs_per_row);
    assert_eq!(Ucf11::KEPT_PER_SAMPLE, program.kept_len());
    let executor = Executor::new(compiled.nest.clone(), layer.weights().clone()).unwrap();
    let mut rng = Rng::new(8);
    let batch = 5;
    let x = rng.vec_f32(batch * Ucf11::IN, 1.0);
    let dy = rng.vec_f32(batch * Ucf11::OUT, 1.0);
    let want = executor.gradients(&program, &x, &dy, None, Threads::ONE).unwrap();
    let mut plain = vec![0.0f32; dy.len()];
    layer.forward(&x, &mut plain).unwrap();
    let mut y = vec![0.0f32; dy.len()];
    for (threaded, recompute) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut trace = if recompute { Trace::recomputing() } else { Trace::new() };
        y.fill(f32::NAN);
        let mut grads = Ucf11::zero_grads();
        if threaded {
            layer.forward_train_par(&x, &mut y, &mut trace).unwrap();
            layer.backward_par(&x, &dy, &mut trace, None, &mut grads).unwrap();
        } else {
            layer.forward_train(&x, &mut y, &mut trace).unwrap();
            layer.backward(&x, &dy, &mut trace, None, &mut grads).unwrap();
        }
        let err = relative(&y, &to64(&plain));
        assert!(err < 1e-5, "threaded {threaded}, recomputing {recompute}: y off by {err:e}");
        for (d, (g, w)) in grads.cores.iter().zip(&want.cores).enumerate() {
            let err = relative(g, &to64(w));
            assert!(err < 1e-4, "threaded {threaded}, recomputing {recompute}: dA{} off by {err:e}", d + 1);
        }
        assert!(relative(grads.bias.as_ref().unwrap(), &to64(want.bias.as_ref().unwrap())) < 1e-5);
    }
}

/// A generated cell's gradients (its projection's training path, BPTT) against the generic
/// recurrent executor's, dx included.
#[test]
fn generated_cell_gradients_match_the_executor() {
    let layer = SmallGru::random(9);
    let (steps, batch) = (5, 3);
    let mut rng = Rng::new(10);
    let x = rng.vec_f32(steps * batch * SmallGru::IN, 1.0);
    let dh = rng.vec_f32(steps * batch * SmallGru::HIDDEN, 1.0);
    let mut dx = vec![0.0f32; x.len()];
    let (input, cell) = layer.gradients(&x, batch, &dh, Some(&mut dx)).unwrap();
    let spec = Spec::new(&[3, 4], &[3, 4], kcp::ir::Format::kcp(2)).with_cell(CellKind::Gru, 4);
    let compiled = compile(&spec, &Options::default()).unwrap();
    let program = lower_backward(&compiled.backward(true), &compiled.graph);
    let weights = layer.input().weights().clone();
    let recurrent: Recurrent = layer.cell().clone();
    let executor = RecurrentExecutor::new(Executor::new(compiled.nest.clone(), weights).unwrap(), recurrent).unwrap();
    let mut want_dx = vec![0.0f32; x.len()];
    let (want_input, want_cell) =
        executor.gradients(&program, &x, batch, &dh, Some(&mut want_dx), Threads::ONE).unwrap();
    for (g, w) in input.cores.iter().zip(&want_input.cores) {
        assert!(relative(g, &to64(w)) < 1e-5);
    }
    assert!(relative(input.bias.as_ref().unwrap(), &to64(want_input.bias.as_ref().unwrap())) < 1e-5);
    assert!(relative(&cell.weight_hh, &to64(&want_cell.weight_hh)) < 1e-5);
    assert!(relative(&cell.bias_hh, &to64(&want_cell.bias_hh)) < 1e-5);
    assert!(relative(&dx, &to64(&want_dx)) < 1e-5);
}

/// A backward pass needs the trace of a forward pass over the same rows, gradients of the
/// layer's shapes, and dx only from a layer that computes it: each misuse is a typed error.
#[test]
fn misuse_is_a_typed_error() {
    let layer = Kt::random(11);
    let x = vec![0.5f32; 2 * Kt::IN];
    let dy = vec![0.5f32; 2 * Kt::OUT];
    let mut y = vec![0.0f32; dy.len()];
    let mut trace = Trace::new();
    let mut grads = Kt::zero_grads();
    let shape = |e: Error| matches!(e, Error::Shape(_));
    // No forward pass yet.
    assert!(shape(layer.backward(&x, &dy, &mut trace, None, &mut grads).unwrap_err()));
    layer.forward_train(&x, &mut y, &mut trace).unwrap();
    // A forward pass over another number of rows.
    assert!(shape(layer.backward(&x[..Kt::IN], &dy[..Kt::OUT], &mut trace, None, &mut grads).unwrap_err()));
    // dx from a `backward: weights` layer.
    let mut dx = vec![0.0f32; x.len()];
    let err = layer.backward(&x, &dy, &mut trace, Some(&mut dx), &mut grads).unwrap_err();
    assert!(matches!(err, Error::Shape(ShapeError::Buffer { name: "dx", expected: 0, .. })), "{err}");
    // Gradients of another layer's shapes.
    let mut wrong = Weights { cores: vec![vec![0.0; 3]], bias: None };
    assert!(layer.backward(&x, &dy, &mut trace, None, &mut wrong).is_err());
    // A short dy.
    assert!(shape(layer.backward(&x, &dy[1..], &mut trace, None, &mut grads).unwrap_err()));
    // None of it changed the gradients.
    assert!(grads.cores.iter().flatten().all(|&v| v == 0.0));
    layer.backward(&x, &dy, &mut trace, None, &mut grads).unwrap();
}

/// An optimiser's step through `update_weights` changes what the kernels compute.
#[test]
fn updated_weights_reach_the_kernels() {
    let mut layer = Kt::random(12);
    let x = vec![0.25f32; Kt::IN];
    let (mut before, mut after) = (vec![0.0f32; Kt::OUT], vec![0.0f32; Kt::OUT]);
    layer.forward(&x, &mut before).unwrap();
    layer.update_weights(|w| w.cores[0].iter_mut().for_each(|v| *v *= 2.0)).unwrap();
    layer.forward(&x, &mut after).unwrap();
    let bias = layer.weights().bias.clone().unwrap();
    for ((a, b), c) in after.iter().zip(&before).zip(&bias) {
        assert!((a - c - 2.0 * (b - c)).abs() < 1e-4, "{a} {b} {c}");
    }
}

/// `update_weights` checks what the closure left: a core cut short or grown, the bias dropped
/// or a value that is not finite is a typed error, and the layer keeps its weights (the same
/// outputs, bit for bit, on one thread and two, where the threaded split reads the cores).
#[test]
fn update_weights_refuses_weights_of_other_shapes() {
    let mut layer = Kt::random(12);
    let x = vec![0.25f32; 2 * Kt::IN];
    let run = |layer: &Kt| {
        let (mut y, mut par) = (vec![0.0f32; 2 * Kt::OUT], vec![0.0f32; 2 * Kt::OUT]);
        layer.forward(&x, &mut y).unwrap();
        layer.forward_par(&x, &mut par).unwrap();
        (y, par)
    };
    let before = (layer.weights().clone(), run(&layer));
    type Update = Box<dyn FnOnce(&mut Weights)>;
    let bad: [(&str, Update); 4] = [
        ("shorter", Box::new(|w| w.cores[0].truncate(1))),
        ("longer", Box::new(|w| w.cores[1].push(1.0))),
        ("no bias", Box::new(|w| w.bias = None)),
        ("nan", Box::new(|w| w.cores[0][3] = f32::NAN)),
    ];
    for (what, update) in bad {
        let error = layer.update_weights(update).unwrap_err();
        assert!(!error.to_string().is_empty(), "{what}");
        assert_eq!((layer.weights().clone(), run(&layer)), before, "{what}: the layer changed");
    }
}

/// Gradients at training scale: 320 rows summed in f32 against the f64 dense reference (every
/// core's gradient within 1e-4 of its largest entry, dx likewise), and the same gradients, bit
/// for bit, on one thread and on pools of two and three (the backward pass cuts the batch into
/// parts that do not depend on the threads and adds them in order).
#[test]
fn gradients_over_many_rows_match_f64_and_do_not_depend_on_threads() {
    let spec = validate(&Spec::new(&[4, 4, 5, 4], &[4, 8, 8, 8], kcp::ir::Format::kcp(8)).with_bias(true)).unwrap();
    let layer = Speech::random(11);
    let mut rng = Rng::new(12);
    let batch = 320;
    let x = rng.vec_f32(batch * Speech::IN, 1.0);
    let dy = rng.vec_f32(batch * Speech::OUT, 1.0);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut trace = Trace::new();
            let mut y = vec![0.0f32; dy.len()];
            layer.forward_train_par(&x, &mut y, &mut trace).unwrap();
            let mut grads = Speech::zero_grads();
            let mut dx = vec![0.0f32; x.len()];
            layer.backward_par(&x, &dy, &mut trace, Some(&mut dx), &mut grads).unwrap();
            (grads, dx)
        })
    };
    let (grads, dx) = run(1);
    for threads in [2, 3] {
        assert!(run(threads) == (grads.clone(), dx.clone()), "{threads} threads: other bits than one thread");
    }
    let cores: Vec<Vec<f64>> = layer.weights().cores.iter().map(|f| to64(f)).collect();
    let want = dense_gradients(&spec, &cores, &to64(&x), &to64(&dy), batch);
    for (d, (g, w)) in grads.cores.iter().zip(&want.cores).enumerate() {
        let err = relative(g, w);
        assert!(err < 1e-4, "dA{} off by {err:e} over {batch} rows", d + 1);
    }
    assert!(relative(grads.bias.as_ref().unwrap(), &want.bias) < 1e-4);
    assert!(relative(&dx, want.dx.as_ref().unwrap()) < 1e-4);
}
