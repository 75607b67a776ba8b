//! Layers of every format declared through `kcp_layer!` (`format:` with its rank keys): the
//! generated `forward` and `forward_par` against the dense f64 reference of the same cores,
//! the constants against the planner, `random`'s scale, a file round trip (a block term's per
//! block), and an LSTM whose input weight is a tensor train against the generic executor; the
//! training path of every format (generated and executor, threaded or not, dx) against the
//! brute-force gradients of the same cores, and a TT-LSTM's gradients against the executor's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use kcp::ir::network::{eval, Format, Network};
use kcp::ir::test::{relative_error, Rng};
use kcp::ir::{Batch, Options};
use kcp::{kcp_layer, save, Executor, RecurrentExecutor, State, Threads, Weights};

kcp_layer! { struct Tt3 { in_shape: [3, 4, 5], out_shape: [2, 3, 4], format: tt, ranks: [1, 3, 2, 1], bias: true, backward: dx } }
kcp_layer! { struct Cp2 { in_shape: [6, 5], out_shape: [4, 3], format: cp, rank: 5, backward: weights } }
kcp_layer! { struct Tr2 { in_shape: [6, 5], out_shape: [4, 3], format: tr, ranks: [2, 3, 1, 2], threads: 2, backward: dx } }
kcp_layer! { struct Bt3 { in_shape: [2, 3, 4], out_shape: [3, 1, 2], format: bt, blocks: 2, ranks: [2, 1, 3], bias: true, backward: dx } }
kcp_layer! { struct Ht4 { in_shape: [2, 3, 2, 2], out_shape: [2, 2, 3, 1], format: ht, rank: 3, backward: weights } }
kcp_layer! { struct Ht1 { in_shape: [7], out_shape: [5], format: ht, rank: 2, backward: dx } }
// Large enough for the training passes to split the batch over threads.
kcp_layer! { struct TtWide { in_shape: [8, 10, 10], out_shape: [4, 4, 8], format: tt, ranks: [1, 4, 4, 1], bias: true, threads: 2, backward: dx } }
kcp_layer! { struct TtUcf11 { in_shape: [8, 20, 20, 18], out_shape: [16, 4, 4, 4], format: tt, ranks: [1, 4, 4, 4, 1] } }
kcp_layer! { struct CpUcf11 { in_shape: [8, 20, 20, 18], out_shape: [16, 4, 4, 4], format: cp, rank: 36 } }
kcp_layer! {
    /// A GRU-sized cell whose input weight is a tensor train.
    struct TtLstm { in_shape: [4, 6], out_shape: [8, 2], format: tt, ranks: [1, 3, 1], cell: lstm, hidden: 4, backward: dx }
}

/// The checks every layer goes through, written once over the generated API.
macro_rules! check_layer {
    ($layer:ty, $format:expr, $seed:expr) => {{
        let network = Network::new(&<$layer>::IN_SHAPE, &<$layer>::OUT_SHAPE, $format, Batch::Symbolic).unwrap();
        let lowered = kcp::ir::compile(&network.spec(), &Options::default()).expect("a valid network");
        assert_eq!(<$layer>::FORMAT, network.format().to_string());
        assert_eq!(<$layer>::PLAN, lowered.plan.to_string());
        assert_eq!(<$layer>::MACS_PER_SAMPLE, lowered.plan.macs());
        assert_eq!(<$layer>::PARAMS, network.params());
        let names: Vec<&str> = network.cores().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(<$layer>::CORE_NAMES.to_vec(), names);
        for (k, shape) in <$layer>::CORE_SHAPES.iter().enumerate() {
            assert_eq!(shape.to_vec(), network.shape(k));
        }
        let mut rng = Rng::new($seed);
        let cores = eval::random_cores(&network, &mut rng);
        let bias: Vec<f64> = if <$layer>::HAS_BIAS { rng.vec(<$layer>::OUT) } else { Vec::new() };
        let to32 = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let weights =
            Weights { cores: cores.iter().map(|c| to32(c)).collect(), bias: <$layer>::HAS_BIAS.then(|| to32(&bias)) };
        let layer = <$layer>::from_weights(weights.clone()).unwrap();
        let executor = Executor::new(lowered.nest.clone(), weights).unwrap().interleaved(lowered.lanes.clone());
        for batch in [1, 3, 17, 64] {
            let x = rng.vec(batch * <$layer>::IN);
            let mut want = eval::dense_forward(&network, &cores, &x, batch);
            if <$layer>::HAS_BIAS {
                want.iter_mut().enumerate().for_each(|(k, y)| *y += bias[k % <$layer>::OUT]);
            }
            let x32 = to32(&x);
            let mut y = vec![f32::NAN; batch * <$layer>::OUT];
            layer.forward(&x32, &mut y).unwrap();
            let as64 = |y: &[f32]| y.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
            let error = relative_error(&as64(&y), &want);
            assert!(error < 1e-5, "{} batch {batch}: forward {error}", stringify!($layer));
            let mut y_par = vec![f32::NAN; batch * <$layer>::OUT];
            layer.forward_par(&x32, &mut y_par).unwrap();
            assert_eq!(y, y_par, "{} batch {batch}: forward_par", stringify!($layer));
            let mut y_exec = vec![f32::NAN; batch * <$layer>::OUT];
            executor.forward(&x32, &mut y_exec).unwrap();
            assert!(relative_error(&as64(&y_exec), &want) < 1e-5, "{} batch {batch}: executor", stringify!($layer));
        }
    }};
}

#[test]
fn every_format_matches_the_dense_reference() {
    check_layer!(Tt3, Format::Tt { ranks: vec![1, 3, 2, 1] }, 1);
    check_layer!(Cp2, Format::Cp { rank: 5 }, 2);
    check_layer!(Tr2, Format::Tr { ranks: vec![2, 3, 1, 2] }, 3);
    check_layer!(Bt3, Format::Bt { blocks: 2, ranks: vec![2, 1, 3] }, 4);
    check_layer!(Ht4, Format::Ht { rank: 3 }, 5);
    check_layer!(Ht1, Format::Ht { rank: 2 }, 6);
}

/// The UCF11 CP layer lays its intermediates out with the rank last: its big product takes
/// its rows from x (the kernel sweeps x's next row from that side) and its columns from a
/// pre-product, and an elementwise `mul` pairs two rank-indexed tensors. Generated (one
/// thread and two) and executor against the pairwise interpreter, over batches whose rows
/// stream one after another.
#[test]
fn the_ucf11_cp_layer_with_the_rank_last_matches_the_interpreter() {
    let network =
        Network::new(&CpUcf11::IN_SHAPE, &CpUcf11::OUT_SHAPE, Format::Cp { rank: 36 }, Batch::Symbolic).unwrap();
    let lowered = kcp::ir::compile(&network.spec(), &Options::default()).expect("a valid network");
    let nest = lowered.nest.to_string();
    assert!(nest.contains("laid out [j1,j4,r,b]") && nest.contains("mul 36"), "{nest}");
    let mut rng = Rng::new(36);
    let cores = eval::random_cores(&network, &mut rng);
    let to32 = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let weights = Weights { cores: cores.iter().map(|c| to32(c)).collect(), bias: None };
    let layer = CpUcf11::from_weights(weights.clone()).unwrap();
    let executor = Executor::new(lowered.nest.clone(), weights).unwrap();
    for batch in [1, 3, 5] {
        let x = rng.vec(batch * CpUcf11::IN);
        let want = eval::interpret(&network, lowered.plan.tree(), &x, &cores, batch);
        let x32 = to32(&x);
        let as64 = |y: &[f32]| y.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
        let (mut y, mut y_par, mut y_exec) = (vec![f32::NAN; batch * CpUcf11::OUT], vec![], vec![]);
        layer.forward(&x32, &mut y).unwrap();
        y_par.resize(y.len(), f32::NAN);
        layer.forward_par(&x32, &mut y_par).unwrap();
        y_exec.resize(y.len(), f32::NAN);
        executor.forward(&x32, &mut y_exec).unwrap();
        for (name, got) in [("generated", &y), ("generated, two threads", &y_par), ("executor", &y_exec)] {
            let error = relative_error(&as64(got), &want);
            assert!(error < 1e-5, "batch {batch}, {name}: {error}");
        }
    }
}

/// `random` scales the cores so that the dense weight's entries have variance about 1/N.
#[test]
fn random_layers_have_the_default_scale() {
    let layer = TtUcf11::random(3);
    let network = Network::new(
        &TtUcf11::IN_SHAPE,
        &TtUcf11::OUT_SHAPE,
        Format::Tt { ranks: vec![1, 4, 4, 4, 1] },
        Batch::Symbolic,
    )
    .unwrap();
    // Columns of W: y for a few unit rows of x.
    let rows = 64;
    let mut x = vec![0.0f32; rows * TtUcf11::IN];
    for r in 0..rows {
        x[r * TtUcf11::IN + r * 797] = 1.0;
    }
    let mut y = vec![0.0f32; rows * TtUcf11::OUT];
    layer.forward(&x, &mut y).unwrap();
    let variance = y.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / y.len() as f64;
    let want = 1.0 / network.input_size() as f64;
    assert!(variance > want / 3.0 && variance < want * 3.0, "variance {variance:e}, want about {want:e}");
}

/// A block term's layer saved under its per-block names and loaded back.
#[test]
fn files_round_trip_under_the_format_names() {
    let layer = Bt3::random(9);
    let network =
        Network::new(&Bt3::IN_SHAPE, &Bt3::OUT_SHAPE, Format::Bt { blocks: 2, ranks: vec![2, 1, 3] }, Batch::Symbolic)
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bt3.safetensors");
    save(&path, &layer.weights().tensors("", &network.core_shapes())).unwrap();
    let names = kcp::TensorFile::read(&path).unwrap().names();
    assert!(
        names.contains(&"block.1.core".to_string()) && names.contains(&"block.0.factor.2".to_string()),
        "{names:?}"
    );
    let loaded = Bt3::load(&path).unwrap();
    assert_eq!(loaded.weights(), layer.weights());
    std::fs::remove_file(&path).unwrap();
    let error = Bt3::load(Path::new("/nonexistent/bt3.safetensors")).unwrap_err();
    assert!(error.to_string().contains("cannot"), "{error}");
}

/// An LSTM whose input weight is a tensor train: the generated cell against the generic
/// recurrent executor on the same weights.
#[test]
fn a_tensor_train_lstm_runs_as_the_executor_does() {
    let cell = TtLstm::random(5);
    let network = Network::new(&[4, 6], &[8, 2], Format::Tt { ranks: vec![1, 3, 1] }, Batch::Symbolic).unwrap();
    let lowered = kcp::ir::compile(&network.spec(), &Options::default()).expect("a valid network");
    let input = Executor::new(lowered.nest, cell.input().weights().clone()).unwrap();
    let executor = RecurrentExecutor::new(input, cell.cell().clone()).unwrap();
    let (steps, batch) = (5, 3);
    let x: Vec<f32> = Rng::new(8).vec(steps * batch * TtLstm::IN).iter().map(|&v| v as f32).collect();
    let (mut hs, mut want) = (vec![0.0; steps * batch * 4], vec![0.0; steps * batch * 4]);
    let (mut state, mut state2) = (TtLstm::zero_state(batch), State::zeros(kcp::CellKind::Lstm, batch, 4));
    cell.forward(&x, batch, &mut hs, &mut state).unwrap();
    executor.forward(&x, batch, &mut want, &mut state2).unwrap();
    assert_eq!(hs, want);
    assert!(TtLstm::FORMAT.starts_with("tt"));
}

/// The training path of a layer: `forward_train` + `backward` (on this thread and split over
/// threads) and the executor's `gradients` on the same cores, against the brute-force gradients
/// (dL/dcore for L = sum(dy * y), the bias's = dy's column sums, dx = dy W).
macro_rules! check_training {
    ($layer:ty, $format:expr, $seed:expr) => {{
        let name = stringify!($layer);
        let network = Network::new(&<$layer>::IN_SHAPE, &<$layer>::OUT_SHAPE, $format, Batch::Symbolic).unwrap();
        let lowered = kcp::ir::compile(&network.spec(), &Options::default()).expect("a valid network");
        let dx_asked = <$layer>::BACKWARD_DX;
        let plan = kcp::ir::plan_backward(&lowered.graph, &lowered.plan, dx_asked, Options::default().max_saved_elems);
        let backward = kcp::ir::lower_backward(&plan, &lowered.graph);
        assert_eq!(<$layer>::BACKWARD_MACS_PER_SAMPLE, backward.macs_per_row, "{name}");
        assert_eq!(<$layer>::BACKWARD_PLAN, plan.to_string(), "{name}");
        let mut rng = Rng::new($seed);
        let cores = eval::random_cores(&network, &mut rng);
        let to32 = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let bias = <$layer>::HAS_BIAS.then(|| to32(&rng.vec(<$layer>::OUT)));
        let weights = Weights { cores: cores.iter().map(|c| to32(c)).collect(), bias };
        let layer = <$layer>::from_weights(weights.clone()).unwrap();
        let executor = Executor::new(lowered.nest.clone(), weights).unwrap();
        let as64 = |y: &[f32]| y.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
        for batch in [1, 5, 40] {
            let (x, dy) = (rng.vec(batch * <$layer>::IN), rng.vec(batch * <$layer>::OUT));
            let (want, want_dx) = eval::dense_gradients(&network, &cores, &x, &dy, batch);
            let want_db: Vec<f64> =
                (0..<$layer>::OUT).map(|i| (0..batch).map(|b| dy[b * <$layer>::OUT + i]).sum()).collect();
            let (x32, dy32) = (to32(&x), to32(&dy));
            let check = |what: &str, grads: &Weights, dx: &[f32]| {
                for (k, (got, want)) in grads.cores.iter().zip(&want).enumerate() {
                    let error = relative_error(&as64(got), want);
                    assert!(error < 1e-5, "{name} batch {batch} {what}: core {k} error {error}");
                }
                if let Some(db) = &grads.bias {
                    assert!(relative_error(&as64(db), &want_db) < 1e-5, "{name} batch {batch} {what}: bias");
                }
                if dx_asked {
                    assert!(relative_error(&as64(dx), &want_dx) < 1e-5, "{name} batch {batch} {what}: dx");
                }
            };
            let mut y = vec![0.0f32; batch * <$layer>::OUT];
            let mut dx = vec![f32::NAN; if dx_asked { x.len() } else { 0 }];
            for par in [false, true] {
                let (mut trace, mut grads) = (kcp::Trace::new(), <$layer>::zero_grads());
                let dx_slot = dx_asked.then_some(&mut dx[..]);
                if par {
                    layer.forward_train_par(&x32, &mut y, &mut trace).unwrap();
                    layer.backward_par(&x32, &dy32, &mut trace, dx_slot, &mut grads).unwrap();
                } else {
                    layer.forward_train(&x32, &mut y, &mut trace).unwrap();
                    layer.backward(&x32, &dy32, &mut trace, dx_slot, &mut grads).unwrap();
                }
                check(if par { "generated, threaded" } else { "generated" }, &grads, &dx);
            }
            for threads in [Threads::ONE, Threads::All] {
                let grads =
                    executor.gradients(&backward, &x32, &dy32, dx_asked.then_some(&mut dx[..]), threads).unwrap();
                check("executor", &grads, &dx);
            }
        }
    }};
}

#[test]
fn every_format_trains_with_the_dense_gradients() {
    check_training!(Tt3, Format::Tt { ranks: vec![1, 3, 2, 1] }, 11);
    check_training!(Cp2, Format::Cp { rank: 5 }, 12);
    check_training!(Tr2, Format::Tr { ranks: vec![2, 3, 1, 2] }, 13);
    check_training!(Bt3, Format::Bt { blocks: 2, ranks: vec![2, 1, 3] }, 14);
    check_training!(Ht4, Format::Ht { rank: 3 }, 15);
    check_training!(Ht1, Format::Ht { rank: 2 }, 16);
    const { assert!(40 * TtWide::BACKWARD_MACS_PER_SAMPLE >= kcp::PAR_MIN_MACS) };
    check_training!(TtWide, Format::Tt { ranks: vec![1, 4, 4, 1] }, 17);
}

/// A TT-LSTM's gradients (its projection's training path, BPTT) against the generic recurrent
/// executor's, dx included.
#[test]
fn a_tensor_train_lstm_trains_as_the_executor_does() {
    let cell = TtLstm::random(6);
    let network = Network::new(&[4, 6], &[8, 2], Format::Tt { ranks: vec![1, 3, 1] }, Batch::Symbolic).unwrap();
    let lowered = kcp::ir::compile(&network.spec(), &Options::default()).expect("a valid network");
    let plan = kcp::ir::plan_backward(&lowered.graph, &lowered.plan, true, Options::default().max_saved_elems);
    let backward = kcp::ir::lower_backward(&plan, &lowered.graph);
    let input = Executor::new(lowered.nest, cell.input().weights().clone()).unwrap();
    let executor = RecurrentExecutor::new(input, cell.cell().clone()).unwrap();
    let (steps, batch) = (5, 3);
    let mut rng = Rng::new(7);
    let x: Vec<f32> = rng.vec(steps * batch * TtLstm::IN).iter().map(|&v| v as f32).collect();
    let dh: Vec<f32> = rng.vec(steps * batch * 4).iter().map(|&v| v as f32).collect();
    let (mut dx, mut want_dx) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
    let (input, cell_grads) = cell.gradients(&x, batch, &dh, Some(&mut dx)).unwrap();
    let (want_input, want_cell) =
        executor.gradients(&backward, &x, batch, &dh, Some(&mut want_dx), Threads::ONE).unwrap();
    let close = |got: &[f32], want: &[f32]| {
        let as64 = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
        relative_error(&as64(got), &as64(want)) < 1e-5
    };
    for (got, want) in input.cores.iter().zip(&want_input.cores) {
        assert!(close(got, want));
    }
    assert!(close(input.bias.as_ref().unwrap(), want_input.bias.as_ref().unwrap()));
    assert!(close(&cell_grads.weight_hh, &want_cell.weight_hh) && close(&cell_grads.bias_hh, &want_cell.bias_hh));
    assert!(close(&dx, &want_dx));
}

/// The executor refuses a backward program lowered for another layer (other cores or other
/// shapes) with a typed error instead of reading past its buffers.
#[test]
fn a_backward_program_of_another_layer_is_a_typed_error() {
    let lowered = |format: Format, out: &[usize]| {
        let network = Network::new(&[4, 6], out, format, Batch::Symbolic).unwrap();
        let lowered = kcp::ir::compile(&network.spec(), &Options::default()).expect("a valid network");
        let plan = kcp::ir::plan_backward(&lowered.graph, &lowered.plan, false, 1 << 16);
        let backward = kcp::ir::lower_backward(&plan, &lowered.graph);
        let weights = kcp::random_weights(&network, false, 1);
        (Executor::new(lowered.nest, weights).unwrap(), backward)
    };
    let (executor, _) = lowered(Format::Tt { ranks: vec![1, 3, 1] }, &[8, 2]);
    let (_, other_ranks) = lowered(Format::Tt { ranks: vec![1, 2, 1] }, &[8, 2]);
    let (_, other_shapes) = lowered(Format::Tt { ranks: vec![1, 3, 1] }, &[4, 4]);
    let (x, dy) = (vec![0.5f32; 2 * 24], vec![1.0f32; 2 * 16]);
    let error = executor.gradients(&other_ranks, &x, &dy, None, Threads::ONE).unwrap_err();
    assert_eq!(error.to_string(), "the backward program is of another layer: its cores differ from the layer's");
    let error = executor.gradients(&other_shapes, &x, &dy, None, Threads::ONE).unwrap_err();
    assert_eq!(error.to_string(), "the backward program is of another layer: its shapes differ from the layer's");
}

kcp_layer! { struct Bt1 { in_shape: [6, 5], out_shape: [6, 2], format: bt, blocks: 1, ranks: [2, 3] } }
kcp_layer! { struct Bt2 { in_shape: [6, 5], out_shape: [6, 2], format: bt, blocks: 2, ranks: [2, 3] } }
kcp_layer! { struct Bt3b { in_shape: [6, 5], out_shape: [6, 2], format: bt, blocks: 3, ranks: [2, 3] } }

/// A block term of any number of blocks, one included, reads and writes the documented
/// per-block layout: `block.{k}.factor.{d}` `[m_d, n_d, R_d]` and `block.{k}.core`
/// `[R_1, .., R_D]`, written by the layer and loaded back (generated layer and executor).
#[test]
fn block_terms_of_one_to_three_blocks_round_trip_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let x: Vec<f32> = (0..2 * 30).map(|k| (k % 5) as f32 / 5.0 - 0.4).collect();
    macro_rules! round_trip {
        ($layer:ty, $blocks:expr) => {{
            let layer = <$layer>::random(3);
            let network =
                Network::new(&[6, 5], &[6, 2], Format::Bt { blocks: $blocks, ranks: vec![2, 3] }, Batch::Symbolic)
                    .unwrap();
            let tensors = layer.weights().tensors("", &network.core_shapes());
            let shapes: std::collections::BTreeMap<String, Vec<usize>> =
                tensors.iter().map(|t| (t.name.clone(), t.shape.clone())).collect();
            for k in 0..$blocks {
                assert_eq!(shapes[&format!("block.{k}.factor.0")], [6, 6, 2], "{} blocks", $blocks);
                assert_eq!(shapes[&format!("block.{k}.factor.1")], [2, 5, 3], "{} blocks", $blocks);
                assert_eq!(shapes[&format!("block.{k}.core")], [2, 3], "{} blocks", $blocks);
            }
            assert_eq!(tensors.len(), 3 * $blocks);
            let path = dir.path().join(format!("bt{}.safetensors", $blocks));
            save(&path, &tensors).unwrap();
            let loaded = <$layer>::load(&path).unwrap();
            assert_eq!(loaded.weights(), layer.weights());
            let (mut a, mut b) = (vec![0.0f32; 24], vec![0.0f32; 24]);
            layer.forward(&x, &mut a).unwrap();
            loaded.forward(&x, &mut b).unwrap();
            assert_eq!(a, b);
            let nest = kcp::ir::compile(&network.spec(), &Options::default()).unwrap().nest;
            let weights = Weights::load(&path, "", &nest.cores, None).unwrap();
            let mut c = vec![0.0f32; 24];
            Executor::new(nest, weights).unwrap().forward(&x, &mut c).unwrap();
            assert!(c.iter().zip(&a).all(|(c, a)| (c - a).abs() <= 1e-5 * (1.0 + a.abs())), "{} blocks", $blocks);
        }};
    }
    round_trip!(Bt1, 1);
    round_trip!(Bt2, 2);
    round_trip!(Bt3b, 3);
}
