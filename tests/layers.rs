//! Layers declared through `kcp_layer!`: the generated `forward` and `forward_par` and the
//! generic executor against the dense f64 reference, on random inputs for batches 1 to 64.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kcp::ir::test::{dense_forward, relative_error, Rng};
use kcp::ir::{compile, Options, Spec};
use kcp::{kcp_layer, Executor, Threads, Weights};

kcp_layer! {
    /// The UCF11 input layer, gate mode last.
    pub struct Ucf11GateLast { in_shape: [8, 20, 20, 18], out_shape: [4, 4, 4, 16], rank: 4, bias: true }
}
kcp_layer! {
    /// The UCF11 input layer, gate mode first.
    pub struct Ucf11GateFirst { in_shape: [8, 20, 20, 18], out_shape: [16, 4, 4, 4], rank: 1 }
}
kcp_layer! { struct D1 { in_shape: [12], out_shape: [7], rank: 3, bias: true } }
kcp_layer! { struct D1Ones { in_shape: [1], out_shape: [1], rank: 1 } }
kcp_layer! { struct D2Kt { in_shape: [32, 40], out_shape: [16, 8], rank: 2, bias: true } }
kcp_layer! { struct D2HighRank { in_shape: [4, 4], out_shape: [4, 4], rank: 16 } }
kcp_layer! { struct D3Ones { in_shape: [1, 5, 1], out_shape: [3, 1, 2], rank: 2 } }
kcp_layer! { struct D3Expanding { in_shape: [2, 3, 4], out_shape: [6, 5, 4], rank: 3, bias: true } }
kcp_layer! { struct D4Rank16 { in_shape: [3, 4, 5, 2], out_shape: [2, 3, 2, 4], rank: 16 } }
kcp_layer! { struct D5 { in_shape: [2, 3, 1, 3, 2], out_shape: [3, 1, 2, 2, 3], rank: 5, threads: 2 } }
kcp_layer! { struct D6 { in_shape: [2, 3, 2, 3, 2, 2], out_shape: [3, 2, 2, 1, 2, 3], rank: 4, bias: true } }
kcp_layer! { struct D6Rank1 { in_shape: [4, 4, 4, 4, 4, 4], out_shape: [2, 2, 2, 2, 2, 2], rank: 1 } }
kcp_layer! { struct Speech { in_shape: [4, 4, 5, 4], out_shape: [4, 8, 8, 8], rank: 8, bias: true } }

/// The checks every layer goes through, written once over the generated API.
macro_rules! check_layer {
    ($layer:ty, $seed:expr) => {{
        let layer = <$layer>::random($seed);
        let weights = layer.weights().clone();
        let spec = Spec::new(&<$layer>::IN_SHAPE, &<$layer>::OUT_SHAPE, kcp::ir::Format::kcp(<$layer>::RANK))
            .with_bias(<$layer>::HAS_BIAS);
        let compiled = compile(&spec, &Options::default()).unwrap();
        assert_eq!(<$layer>::PLAN, compiled.plan.to_string());
        assert_eq!(<$layer>::MACS_PER_SAMPLE, compiled.plan.macs());
        assert_eq!(<$layer>::PARAMS, compiled.spec.params());
        let executor =
            Executor::new(compiled.nest.clone(), weights.clone()).unwrap().interleaved(compiled.lanes.clone());
        let factors: Vec<Vec<f64>> = weights.cores.iter().map(|f| f.iter().map(|&v| v as f64).collect()).collect();
        // Batches below, at and around whole blocks of interleaved rows.
        for batch in [1, 3, 8, 19, 64] {
            let x: Vec<f32> =
                Rng::new($seed + batch as u64).vec(batch * <$layer>::IN).iter().map(|&v| v as f32).collect();
            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let mut reference = dense_forward(&compiled.spec, &factors, &x64, batch);
            if let Some(bias) = &weights.bias {
                for row in reference.chunks_mut(bias.len()) {
                    row.iter_mut().zip(bias).for_each(|(y, &b)| *y += b as f64);
                }
            }
            let mut y = vec![f32::NAN; batch * <$layer>::OUT];
            let check = |name: &str, y: &[f32]| {
                let y64: Vec<f64> = y.iter().map(|&v| v as f64).collect();
                let error = relative_error(&y64, &reference);
                assert!(error < 1e-5, "{} {name} batch {batch}: relative error {error}", stringify!($layer));
            };
            layer.forward(&x, &mut y).unwrap();
            check("forward", &y);
            y.fill(f32::NAN);
            layer.forward_par(&x, &mut y).unwrap();
            check("forward_par", &y);
            y.fill(f32::NAN);
            executor.forward(&x, &mut y).unwrap();
            check("executor", &y);
            y.fill(f32::NAN);
            executor.forward_par(&x, &mut y, Threads::All).unwrap();
            check("executor_par", &y);
        }
    }};
}

#[test]
fn ucf11_gate_last() {
    check_layer!(Ucf11GateLast, 1);
}
#[test]
fn ucf11_gate_first() {
    check_layer!(Ucf11GateFirst, 2);
}
#[test]
fn small_layers() {
    check_layer!(D1, 3);
    check_layer!(D1Ones, 4);
    check_layer!(D2Kt, 5);
    check_layer!(D2HighRank, 6);
    check_layer!(D3Ones, 7);
    check_layer!(D3Expanding, 8);
}
#[test]
fn larger_layers() {
    check_layer!(D4Rank16, 9);
    check_layer!(D5, 10);
    check_layer!(D6, 11);
    check_layer!(D6Rank1, 12);
    check_layer!(Speech, 13);
}

/// Layers whose products run a few floats per row interleave whole blocks of 16 rows (the
/// speech layer too: its row products are 8-64 floats wide); a layer whose rows already run
/// wide products, and a large one, run row by row.
#[test]
fn small_layers_interleave_rows() {
    let lanes = |in_shape: &[usize], out_shape: &[usize], rank| {
        compile(&Spec::new(in_shape, out_shape, kcp::ir::Format::kcp(rank)), &Options::default())
            .unwrap()
            .lanes
            .map(|l| l.lanes)
    };
    assert_eq!(lanes(&[4, 4, 4], &[4, 4, 4], 2), Some(16));
    assert_eq!(lanes(&D6::IN_SHAPE, &D6::OUT_SHAPE, D6::RANK), Some(16));
    assert_eq!(lanes(&[4, 4], &[4, 4], 16), Some(16)); // the allocation test's layer
    assert_eq!(lanes(&Speech::IN_SHAPE, &Speech::OUT_SHAPE, Speech::RANK), Some(16));
    assert_eq!(lanes(&[32, 32], &[32, 32], 4), None);
    assert_eq!(lanes(&[16, 16, 16], &[16, 16, 16], 4), None);
    assert_eq!(lanes(&Ucf11GateLast::IN_SHAPE, &Ucf11GateLast::OUT_SHAPE, Ucf11GateLast::RANK), None);
}

#[test]
fn constants_describe_the_layer() {
    assert_eq!((Ucf11GateLast::IN, Ucf11GateLast::OUT, Ucf11GateLast::RANK), (57600, 1024, 4));
    assert_eq!(Ucf11GateLast::PARAMS, 4 * (32 + 80 + 80 + 288));
    assert_eq!(Ucf11GateLast::DENSE_PARAMS, 58_982_400);
    assert_eq!(Ucf11GateFirst::MACS_PER_SAMPLE, 293_888);
    assert_eq!(D2HighRank::PREP_MACS, 4096);
}

#[test]
fn wrong_slice_lengths_are_typed_errors() {
    let layer = D2Kt::zeros();
    let mut y = vec![0.0; 2 * D2Kt::OUT];
    let error = layer.forward(&vec![0.0; D2Kt::IN + 1], &mut y).unwrap_err();
    assert_eq!(error.to_string(), "x has 1281 elements, not a multiple of the input size 1280");
    let error = layer.forward_par(&vec![0.0; 3 * D2Kt::IN], &mut y).unwrap_err();
    assert_eq!(error.to_string(), "y has 256 elements but 3 rows of output size 128 need 384");
}

#[test]
fn from_factors_checks_shapes_and_values() {
    let shapes = D2Kt::FACTOR_SHAPES;
    let good: Vec<Vec<f32>> = shapes.iter().map(|s| vec![0.5; s.iter().product()]).collect();
    assert!(D2Kt::from_factors(good.clone(), vec![0.0; 128]).is_ok());
    let error = D2Kt::from_factors(good.clone(), vec![0.0; 127]).unwrap_err();
    assert_eq!(error.to_string(), "tensor `bias` has shape [127], expected [128]");
    let mut short = good.clone();
    short[1].pop();
    let error = D2Kt::from_factors(short, vec![0.0; 128]).unwrap_err();
    assert_eq!(error.to_string(), "tensor `factor.1` has shape [639], expected [2, 8, 40]");
    let mut nan = good;
    nan[0][3] = f32::NAN;
    let error = D2Kt::from_factors(nan, vec![0.0; 128]).unwrap_err();
    assert_eq!(error.to_string(), "tensor `factor.0` holds a non-finite value (NaN) at element 3");
    let error = D1Ones::from_weights(Weights { cores: vec![], bias: None }).unwrap_err();
    assert_eq!(error.to_string(), "tensor `factor.0` is missing");
    let error = D1Ones::from_weights(Weights { cores: vec![vec![1.0], vec![1.0]], bias: None }).unwrap_err();
    assert_eq!(error.to_string(), "2 cores given, the layer has 1 (factor.0)");
    let error = D1Ones::from_weights(Weights { cores: vec![vec![1.0]], bias: Some(vec![0.0]) }).unwrap_err();
    assert_eq!(error.to_string(), "tensor `bias` is not part of this layer (it has no bias)");
}

/// `forward_par` called at once from several threads outside rayon's pool and from the pool's
/// own threads (a batch split into parts, and a single row cut in two parts): every call
/// gives the bits a lone call gives, and none waits on another forever.
#[test]
fn forward_par_from_many_threads_at_once() {
    use rayon::prelude::*;
    let layer = Ucf11GateLast::random(7);
    let cases: Vec<(Vec<f32>, Vec<f32>)> = [1usize, 5]
        .iter()
        .map(|&batch| {
            let x: Vec<f32> = Rng::new(batch as u64).vec(batch * Ucf11GateLast::IN).iter().map(|&v| v as f32).collect();
            let mut alone = vec![0.0; batch * Ucf11GateLast::OUT];
            layer.forward_par(&x, &mut alone).unwrap();
            (x, alone)
        })
        .collect();
    let call = |round: usize| {
        let (x, alone) = &cases[round % cases.len()];
        let mut y = vec![f32::NAN; alone.len()];
        layer.forward_par(x, &mut y).unwrap();
        assert_eq!(&y, alone, "round {round}");
    };
    std::thread::scope(|scope| {
        for thread in 0..3 {
            scope.spawn(move || (0..20).for_each(|round| call(thread + round)));
        }
        (0..40).into_par_iter().for_each(call);
    });
}
