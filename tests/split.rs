//! A single row on two threads: the layers of the matched-budget comparison, each through the
//! generic executor with its compiled split and (TT, KCP rank 9) through its `kcp_layer!`
//! kernels, one row on a pool of two threads, against the pairwise f64 interpreter of the same
//! cores; and a split of another layer is a typed error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kcp::ir::network::{eval, Format, Network};
use kcp::ir::test::{relative_error, Rng};
use kcp::ir::{Batch, Options};
use kcp::{kcp_layer, Error, Executor, ShapeError, Threads, Weights};

kcp_layer! { struct TtUcf11 { in_shape: [8, 20, 20, 18], out_shape: [16, 4, 4, 4], format: tt, ranks: [1, 4, 4, 4, 1], bias: true } }
kcp_layer! { struct KcpUcf11 { in_shape: [8, 20, 20, 18], out_shape: [16, 4, 4, 4], rank: 9 } }

const IN: [usize; 4] = [8, 20, 20, 18];
const OUT: [usize; 4] = [16, 4, 4, 4];

fn to32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&v| v as f32).collect()
}

fn as64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&v| f64::from(v)).collect()
}

/// y of one row of `network` with these cores (and bias), by the pairwise interpreter.
fn reference(network: &Network, cores: &[Vec<f64>], bias: Option<&[f64]>, x: &[f64]) -> Vec<f64> {
    let (plan, _) = network.plan(&Options::default());
    let mut y = eval::interpret(network, plan.tree(), x, cores, 1);
    for (y, b) in y.iter_mut().zip(bias.unwrap_or(&[])) {
        *y += b;
    }
    y
}

fn two_threads<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap().install(f)
}

#[test]
fn the_executor_runs_a_cut_row_of_every_format() {
    let formats = [
        Format::Kcp { rank: 9 },
        Format::Tt { ranks: vec![1, 4, 4, 4, 1] },
        Format::Tr { ranks: vec![6; 8] },
        Format::Bt { blocks: 2, ranks: vec![4; 4] },
        Format::Cp { rank: 36 },
        Format::Ht { rank: 7 },
    ];
    let mut rng = Rng::new(31);
    for format in formats {
        let network = Network::new(&IN, &OUT, format, Batch::Symbolic).unwrap();
        let compiled = kcp::ir::compile(&network.spec().with_bias(true), &Options::default()).unwrap();
        let split = compiled.split.clone().expect("a layer of a million MACs is cut");
        let cores = eval::random_cores(&network, &mut rng);
        let bias = rng.vec(network.output_size());
        let weights = Weights { cores: cores.iter().map(|c| to32(c)).collect(), bias: Some(to32(&bias)) };
        let executor = Executor::new(compiled.nest.clone(), weights).unwrap().split(Some(split.clone())).unwrap();
        let x = rng.vec(network.input_size());
        let want = reference(&network, &cores, Some(&bias), &x);
        let mut y = vec![f32::NAN; network.output_size()];
        two_threads(|| executor.forward_par(&to32(&x), &mut y, Threads::All)).unwrap();
        let error = relative_error(&as64(&y), &want);
        assert!(error < 1e-5, "{}, {}: error {error}", network.format(), split.row);
        // The parts are made on the first call; a clone and later calls give the same bits.
        let mut again = vec![f32::NAN; y.len()];
        two_threads(|| executor.clone().forward_par(&to32(&x), &mut again, Threads::All)).unwrap();
        assert_eq!(y, again, "{}", network.format());
    }
}

#[test]
fn generated_layers_run_a_cut_row() {
    let mut rng = Rng::new(32);
    let tt = Network::new(&IN, &OUT, Format::Tt { ranks: vec![1, 4, 4, 4, 1] }, Batch::Symbolic).unwrap();
    let kcp = Network::new(&IN, &OUT, Format::Kcp { rank: 9 }, Batch::Symbolic).unwrap();
    for (network, bias) in [(tt, true), (kcp, false)] {
        let cores = eval::random_cores(&network, &mut rng);
        let bias = bias.then(|| rng.vec(network.output_size()));
        let weights = Weights { cores: cores.iter().map(|c| to32(c)).collect(), bias: bias.as_deref().map(to32) };
        let x = rng.vec(network.input_size());
        let want = reference(&network, &cores, bias.as_deref(), &x);
        let mut y = vec![f32::NAN; network.output_size()];
        match network.format() {
            Format::Tt { .. } => {
                let layer = TtUcf11::from_weights(weights).unwrap();
                two_threads(|| layer.forward_par(&to32(&x), &mut y)).unwrap();
            }
            _ => {
                let layer = KcpUcf11::from_weights(weights).unwrap();
                two_threads(|| layer.forward_par(&to32(&x), &mut y)).unwrap();
            }
        }
        let error = relative_error(&as64(&y), &want);
        assert!(error < 1e-5, "{}: error {error}", network.format());
    }
}

#[test]
fn a_split_of_another_layer_is_a_typed_error() {
    let compile = |format| {
        let network = Network::new(&IN, &OUT, format, Batch::Symbolic).unwrap();
        kcp::ir::compile(&network.spec(), &Options::default()).unwrap()
    };
    let (tt, cp) = (compile(Format::Tt { ranks: vec![1, 4, 4, 4, 1] }), compile(Format::Cp { rank: 36 }));
    let weights = Weights::zeros(&tt.nest.cores, None);
    let executor = Executor::new(tt.nest.clone(), weights).unwrap();
    match executor.split(cp.split.clone()) {
        Err(Error::Shape(ShapeError::Program(e))) => assert!(e.to_string().contains("split"), "{e}"),
        other => panic!("a CP split on a TT layer: {:?}", other.map(|_| ())),
    }
}
