//! KCP-LSTM and KCP-GRU against an independent dense f64 implementation of PyTorch's equations
//! (W_ih reconstructed from the factors), sequential and threaded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use kcp::__private::{CellKind, Recurrent, State};
use kcp::ir::test::{dense_weight, relative_error, Rng};
use kcp::ir::{compile, Options, Spec};
use kcp::NamedTensor;
use kcp::{kcp_layer, Executor, RecurrentExecutor, Weights};
use proptest::prelude::*;

kcp_layer! {
    /// A small video LSTM.
    pub struct SmallLstm { in_shape: [4, 5, 3], out_shape: [4, 2, 4], rank: 3, cell: lstm, hidden: 8 }
}
kcp_layer! {
    /// A small speech GRU, gate mode first.
    pub struct SmallGru { in_shape: [6, 5], out_shape: [3, 4], rank: 2, cell: gru, hidden: 4 }
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// PyTorch's nn.LSTM / nn.GRU in f64, one layer, time major. Returns all h `[T, B, H]`.
#[allow(clippy::too_many_arguments)]
fn reference(
    kind: CellKind,
    w_ih: &[f64],
    b_ih: &[f32],
    w_hh: &[f32],
    b_hh: &[f32],
    x: &[f32],
    batch: usize,
    hidden: usize,
    h0: &State,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let g = kind.gates() * hidden;
    let n = w_ih.len() / g;
    let mut h: Vec<f64> = h0.h.iter().map(|&v| v as f64).collect();
    let mut c: Vec<f64> = h0.c.iter().map(|&v| v as f64).collect();
    let mut out = Vec::new();
    for x_t in x.chunks_exact(batch * n) {
        for b in 0..batch {
            let xb = &x_t[b * n..(b + 1) * n];
            let hb = h[b * hidden..(b + 1) * hidden].to_vec();
            let gi: Vec<f64> =
                (0..g).map(|k| (0..n).map(|j| w_ih[k * n + j] * xb[j] as f64).sum::<f64>() + b_ih[k] as f64).collect();
            let gh: Vec<f64> = (0..g)
                .map(|k| (0..hidden).map(|j| w_hh[k * hidden + j] as f64 * hb[j]).sum::<f64>() + b_hh[k] as f64)
                .collect();
            for k in 0..hidden {
                let new_h = match kind {
                    CellKind::Lstm => {
                        let i = sigmoid(gi[k] + gh[k]);
                        let f = sigmoid(gi[hidden + k] + gh[hidden + k]);
                        let gg = (gi[2 * hidden + k] + gh[2 * hidden + k]).tanh();
                        let o = sigmoid(gi[3 * hidden + k] + gh[3 * hidden + k]);
                        let cc = f * c[b * hidden + k] + i * gg;
                        c[b * hidden + k] = cc;
                        o * cc.tanh()
                    }
                    CellKind::Gru => {
                        let r = sigmoid(gi[k] + gh[k]);
                        let z = sigmoid(gi[hidden + k] + gh[hidden + k]);
                        let nn = (gi[2 * hidden + k] + r * gh[2 * hidden + k]).tanh();
                        (1.0 - z) * nn + z * hb[k]
                    }
                };
                h[b * hidden + k] = new_h;
            }
        }
        out.extend_from_slice(&h);
    }
    (out, h, c)
}

/// Runs a sequence: `(x, batch, hs, state, threaded)`.
type Run<'a> = dyn Fn(&[f32], usize, &mut [f32], &mut State, bool) + 'a;

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Check a layer's sequential and threaded runs against the reference, from a random state.
fn check(
    spec: &Spec,
    weights: &Weights,
    cell: &Recurrent,
    run: &Run<'_>,
    steps: usize,
    batch: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    let compiled = compile(spec, &Options::default()).unwrap();
    let factors: Vec<Vec<f64>> = weights.cores.iter().map(|f| to64(f)).collect();
    let w_ih = dense_weight(&compiled.spec, &factors);
    let (kind, hidden) = (cell.kind(), cell.hidden());
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = rng.vec(steps * batch * compiled.spec.input_size()).iter().map(|&v| v as f32).collect();
    let mut h0 = State::zeros(kind, batch, hidden);
    h0.h.iter_mut().chain(h0.c.iter_mut()).for_each(|v| *v = rng.next_f64() as f32 * 0.5);
    let bias_ih = weights.bias.as_ref().unwrap();
    let (hs_ref, h_ref, c_ref) =
        reference(kind, &w_ih, bias_ih, cell.weight_hh(), cell.bias_hh(), &x, batch, hidden, &h0);
    for parallel in [false, true] {
        let mut state = h0.clone();
        let mut hs = vec![f32::NAN; steps * batch * hidden];
        run(&x, batch, &mut hs, &mut state, parallel);
        for (name, got, want) in [("h_all", &hs, &hs_ref), ("h_n", &state.h, &h_ref), ("c_n", &state.c, &c_ref)] {
            let error = relative_error(&to64(got), want);
            prop_assert!(error < 1e-4, "{:?} parallel {} {}: relative error {}", kind, parallel, name, error);
        }
    }
    Ok(())
}

fn any_cell() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, usize, CellKind, usize)> {
    // D modes of input dims 1..5; the output's first mode holds the gates, the rest split H.
    (1usize..=3, prop_oneof![Just(CellKind::Lstm), Just(CellKind::Gru)], 1usize..=4).prop_flat_map(|(d, kind, rank)| {
        (
            proptest::collection::vec(1usize..=5, d),
            proptest::collection::vec(1usize..=3, d - 1),
            Just(rank),
            Just(kind),
            1usize..=3,
        )
            .prop_map(|(n, rest, rank, kind, gate_factor)| {
                let hidden = gate_factor * rest.iter().product::<usize>();
                let mut out = vec![kind.gates() * gate_factor];
                out.extend(rest);
                (n, out, rank, kind, hidden)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn generic_cells_match_pytorch((n, m, rank, kind, hidden) in any_cell(), steps in 1usize..=8, batch in 1usize..=4, seed in any::<u64>()) {
        let spec = Spec::new(&n, &m, kcp::ir::Format::kcp(rank)).with_cell(kind, hidden);
        let compiled = compile(&spec, &Options::default()).unwrap();
        let weights = kcp::random_weights(compiled.network(), true, seed);
        let cell = Recurrent::random(kind, hidden, seed ^ 1);
        let layer = RecurrentExecutor::new(Executor::new(compiled.nest.clone(), weights.clone()).unwrap(), cell.clone()).unwrap();
        let run = |x: &[f32], b: usize, hs: &mut [f32], s: &mut State, par: bool| {
            if par { layer.forward_par(x, b, hs, s).unwrap() } else { layer.forward(x, b, hs, s).unwrap() }
        };
        check(&spec, &weights, &cell, &run, steps, batch, seed)?;
    }

    #[test]
    fn generated_cells_match_pytorch(steps in 1usize..=8, batch in 1usize..=4, seed in any::<u64>()) {
        let lstm = SmallLstm::random(seed);
        let run = |x: &[f32], b: usize, hs: &mut [f32], s: &mut State, par: bool| {
            if par { lstm.forward_par(x, b, hs, s).unwrap() } else { lstm.forward(x, b, hs, s).unwrap() }
        };
        let spec = Spec::new(&[4, 5, 3], &[4, 2, 4], kcp::ir::Format::kcp(3)).with_cell(CellKind::Lstm, 8);
        check(&spec, lstm.input().weights(), lstm.cell(), &run, steps, batch, seed)?;

        let gru = SmallGru::random(seed);
        let run = |x: &[f32], b: usize, hs: &mut [f32], s: &mut State, par: bool| {
            if par { gru.forward_par(x, b, hs, s).unwrap() } else { gru.forward(x, b, hs, s).unwrap() }
        };
        let spec = Spec::new(&[6, 5], &[3, 4], kcp::ir::Format::kcp(2)).with_cell(CellKind::Gru, 4);
        check(&spec, gru.input().weights(), gru.cell(), &run, steps, batch, seed)?;
    }
}

/// A single row large enough for the threaded recurrence to split its hidden units over two
/// threads (LSTM H = 256, GRU H = 301: halves of unequal size) gives the sequential result to
/// the bit (each gate is the same dot product either way), which the proptests above check
/// against the reference.
#[test]
fn split_hidden_units_match_the_sequential_step() {
    for (kind, hidden) in [(CellKind::Lstm, 256), (CellKind::Gru, 301)] {
        let cell = Recurrent::random(kind, hidden, 7);
        let steps = 3;
        let proj: Vec<f32> = Rng::new(11).vec(steps * kind.gates() * hidden).iter().map(|&v| v as f32).collect();
        let run = |parallel: bool| {
            let mut state = State::zeros(kind, 1, hidden);
            state.h.iter_mut().enumerate().for_each(|(k, v)| *v = (k % 7) as f32 / 7.0 - 0.5);
            let mut hs = vec![0.0; steps * hidden];
            cell.run(&proj, 1, &mut hs, &mut state, parallel).unwrap();
            (hs, state)
        };
        assert_eq!(run(true), run(false), "{kind:?} H = {hidden}");
        // No hidden units, or no rows: nothing to do, and no panic.
        let (mut empty, mut state) = (Vec::new(), State::zeros(kind, 1, 0));
        Recurrent::random(kind, 0, 1).run(&[], 1, &mut empty, &mut state, true).unwrap();
        cell.run(&[], 0, &mut empty, &mut State::zeros(kind, 0, hidden), false).unwrap();
    }
}

#[test]
fn shapes_are_checked() {
    let lstm = SmallLstm::random(1);
    let mut state = SmallLstm::zero_state(2);
    let mut hs = vec![0.0; 3 * 2 * 8];
    let error = lstm.forward(&vec![0.0; 3 * 2 * 60 + 1], 2, &mut hs, &mut state).unwrap_err();
    assert_eq!(error.to_string(), "x has 361 elements, not a whole number of time steps of 2 rows of input size 60");
    let error = lstm.forward(&vec![0.0; 2 * 2 * 60], 2, &mut hs, &mut state).unwrap_err();
    assert_eq!(error.to_string(), "h_all has 48 elements, expected 32");
    let mut gru_state = SmallGru::zero_state(1);
    gru_state.h.pop();
    let error = SmallGru::random(1).forward(&[0.0; 30], 1, &mut [0.0; 4], &mut gru_state).unwrap_err();
    assert_eq!(error.to_string(), "h has 3 elements, expected 4");
    let mut short_c = SmallLstm::zero_state(2);
    short_c.c.clear();
    let error = lstm.forward(&vec![0.0; 3 * 2 * 60], 2, &mut hs, &mut short_c).unwrap_err();
    assert_eq!(error.to_string(), "c has 0 elements, expected 16");
}

/// `Recurrent::run` checks its buffers instead of silently running as many steps as the
/// shorter of `proj` and `hs` holds.
#[test]
fn run_checks_its_buffers() {
    let cell = Recurrent::random(CellKind::Gru, 4, 1);
    let (steps, batch) = (3, 2);
    let proj = vec![0.5; steps * batch * 12];
    let run = |proj: &[f32], hs_len: usize, state: &mut State| {
        cell.run(proj, batch, &mut vec![0.0; hs_len], state, false).map_err(|e| e.to_string())
    };
    let mut state = State::zeros(CellKind::Gru, batch, 4);
    assert_eq!(run(&proj, steps * batch * 4, &mut state), Ok(()));
    assert_eq!(
        run(&proj[..2 * batch * 12], steps * batch * 4, &mut state).unwrap_err(),
        "proj has 48 elements, expected 72"
    );
    assert_eq!(run(&proj, 2 * batch * 4, &mut state).unwrap_err(), "proj has 72 elements, expected 48");
    assert_eq!(run(&proj, steps * batch * 4 + 1, &mut state).unwrap_err(), "h_all has 25 elements, expected 24");
    let mut short = State::zeros(CellKind::Gru, 1, 4);
    assert_eq!(run(&proj, steps * batch * 4, &mut short).unwrap_err(), "h has 4 elements, expected 8");
    // A batch so large that B * H overflows is a mismatch, not a panic.
    let huge = cell.run(&proj, usize::MAX / 2, &mut [0.0; 24], &mut state, false).unwrap_err();
    assert_eq!(huge.to_string(), "h_all has 24 elements, expected 0");
}

#[test]
fn weight_files_round_trip_and_errors_are_typed() {
    let lstm = SmallLstm::random(3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lstm.safetensors");
    let input = lstm.input().weights();
    let mut tensors = input.tensors("weight_ih.", &common::kcp_cores(&[[3, 4, 4], [3, 2, 5], [3, 4, 3]]));
    tensors.retain(|t| t.name != "weight_ih.bias");
    tensors.push(NamedTensor::new("bias_ih", vec![32], input.bias.clone().unwrap()));
    tensors.push(NamedTensor::new("weight_hh", vec![32, 8], lstm.cell().weight_hh().to_vec()));
    tensors.push(NamedTensor::new("bias_hh", vec![32], lstm.cell().bias_hh().to_vec()));
    kcp::save(&path, &tensors).unwrap();
    let loaded = SmallLstm::load(&path).unwrap();
    assert_eq!(loaded.input().weights(), input);
    assert_eq!(loaded.cell(), lstm.cell());
    // The same file through the generic executor.
    let compiled = compile(
        &Spec::new(&[4, 5, 3], &[4, 2, 4], kcp::ir::Format::kcp(3)).with_cell(CellKind::Lstm, 8),
        &Options::default(),
    )
    .unwrap();
    let generic = RecurrentExecutor::load(&path, compiled.nest.clone(), CellKind::Lstm, 8).unwrap();
    assert_eq!(generic.cell(), lstm.cell());
    // A GRU cannot read an LSTM's file: weight_hh has 4H rows, not 3H.
    let error = RecurrentExecutor::load(&path, compiled.nest, CellKind::Gru, 8).unwrap_err();
    assert_eq!(error.to_string(), "tensor `bias_ih` has shape [32], expected [24]");
    let wrong_hh: Vec<_> = tensors.iter().filter(|t| t.name != "weight_hh").cloned().collect();
    kcp::save(&path, &wrong_hh).unwrap();
    assert_eq!(SmallLstm::load(&path).unwrap_err().to_string(), "tensor `weight_hh` is missing");
}
