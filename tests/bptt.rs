//! Backpropagation through time for both cells against central finite differences of an
//! independent f64 implementation of PyTorch's equations, over random sizes (hidden 1 to 5,
//! T 1 to 8, batch 1 to 4), and the taped forward pass against the plain one.

#![allow(clippy::unwrap_used)]

mod common;

use kcp::{CellGrads, CellKind, Recurrent, Rng, State, Threads};

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// L = sum_t sum(dh[t] * h[t]) of the cell in f64, from a zero state, on proj `[T, B, G*H]`.
fn loss64(kind: CellKind, hidden: usize, w: &[f64], b: &[f64], proj: &[f64], batch: usize, dh: &[f64]) -> f64 {
    let zeros = vec![0.0; batch * hidden];
    loss64_from(kind, hidden, w, b, proj, batch, dh, [&zeros, &zeros], &zeros)
}

/// The same from the state `[h0, c0]` (`[B, H]` each; c0 unused by a GRU), plus
/// `sum(dc * c_T)` for an LSTM.
#[allow(clippy::too_many_arguments)]
fn loss64_from(
    kind: CellKind,
    hidden: usize,
    w: &[f64],
    b: &[f64],
    proj: &[f64],
    batch: usize,
    dh: &[f64],
    [h0, c0]: [&[f64]; 2],
    dc: &[f64],
) -> f64 {
    let g = kind.gates() * hidden;
    let steps = proj.len() / (batch * g);
    let (mut h, mut c) = (h0.to_vec(), c0.to_vec());
    let mut loss = 0.0;
    for t in 0..steps {
        for r in 0..batch {
            let row = t * batch + r;
            let x = &proj[row * g..][..g];
            let hp = h[r * hidden..][..hidden].to_vec();
            let hh: Vec<f64> =
                (0..g).map(|j| b[j] + (0..hidden).map(|k| w[j * hidden + k] * hp[k]).sum::<f64>()).collect();
            for k in 0..hidden {
                let new = match kind {
                    CellKind::Lstm => {
                        let a = |q: usize| x[q * hidden + k] + hh[q * hidden + k];
                        let (i, f, gg, o) = (sigmoid(a(0)), sigmoid(a(1)), a(2).tanh(), sigmoid(a(3)));
                        let cell = &mut c[r * hidden + k];
                        *cell = f * *cell + i * gg;
                        o * cell.tanh()
                    }
                    CellKind::Gru => {
                        let rr = sigmoid(x[k] + hh[k]);
                        let z = sigmoid(x[hidden + k] + hh[hidden + k]);
                        let n = (x[2 * hidden + k] + rr * hh[2 * hidden + k]).tanh();
                        (1.0 - z) * n + z * hp[k]
                    }
                };
                h[r * hidden + k] = new;
                loss += dh[row * hidden + k] * new;
            }
        }
    }
    if kind == CellKind::Lstm {
        loss += c.iter().zip(dc).map(|(c, d)| c * d).sum::<f64>();
    }
    loss
}

/// Central finite differences (step 1e-6) of `at` around `v`, one per entry.
fn finite_differences(v: &[f64], at: &dyn Fn(&[f64]) -> f64) -> Vec<f64> {
    let e = 1e-6;
    (0..v.len())
        .map(|k| {
            let (mut up, mut down) = (v.to_vec(), v.to_vec());
            up[k] += e;
            down[k] -= e;
            (at(&up) - at(&down)) / (2.0 * e)
        })
        .collect()
}

/// ||a - b|| / ||b||.
fn relative(a: &[f32], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(&x, y)| (f64::from(x) - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-300)).sqrt()
}

/// A random cell of `hidden` units, random projected inputs of `steps` steps of `batch` rows and
/// a random dh: the taped pass from the zero state, then BPTT. Returns the cell, proj, dh, the
/// cell's gradients and dproj.
fn taped_gradients(
    kind: CellKind,
    hidden: usize,
    steps: usize,
    batch: usize,
    rng: &mut Rng,
) -> (Recurrent, Vec<f32>, Vec<f32>, CellGrads, Vec<f32>) {
    let cell = Recurrent::random(kind, hidden, rng.next_u64());
    let proj = rng.vec_f32(steps * batch * kind.gates() * hidden, 1.0);
    let dh = rng.vec_f32(steps * batch * hidden, 1.0);
    let mut hs = vec![0.0; steps * batch * hidden];
    let mut state = State::zeros(kind, batch, hidden);
    let tape = cell.run_taped(&proj, batch, &mut hs, &mut state, Threads::All).unwrap();
    let mut grads = CellGrads::zeros(&cell);
    let mut dproj = vec![f32::NAN; proj.len()];
    cell.backward(&tape, &hs, &dh, &mut dproj, &mut grads).unwrap();
    (cell, proj, dh, grads, dproj)
}

#[test]
fn bptt_matches_finite_differences() {
    let mut rng = Rng::new(17);
    for kind in [CellKind::Lstm, CellKind::Gru] {
        for (hidden, steps, batch) in [(1, 1, 1), (3, 8, 1), (2, 5, 4), (5, 3, 2), (4, 8, 3)] {
            let (cell, proj, dh, grads, dproj) = taped_gradients(kind, hidden, steps, batch, &mut rng);

            let f64s = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
            let (w, b, p, d) = (f64s(cell.weight_hh()), f64s(cell.bias_hh()), f64s(&proj), f64s(&dh));
            let fd = finite_differences;
            let dw = fd(&w, &|w| loss64(kind, hidden, w, &b, &p, batch, &d));
            let db = fd(&b, &|b| loss64(kind, hidden, &w, b, &p, batch, &d));
            let dp = fd(&p, &|p| loss64(kind, hidden, &w, &b, p, batch, &d));
            let what = format!("{kind:?} H{hidden} T{steps} B{batch}");
            assert!(relative(&grads.weight_hh, &dw) < 1e-4, "{what}: dW_hh {}", relative(&grads.weight_hh, &dw));
            assert!(relative(&grads.bias_hh, &db) < 1e-4, "{what}: db_hh {}", relative(&grads.bias_hh, &db));
            assert!(relative(&dproj, &dp) < 1e-4, "{what}: dproj {}", relative(&dproj, &dp));
        }
    }
}

/// From a given state and with a gradient of the final cell state: the gradients of the
/// initial state too, against finite differences.
#[test]
fn bptt_through_a_given_state_matches_finite_differences() {
    let mut rng = Rng::new(23);
    for kind in [CellKind::Lstm, CellKind::Gru] {
        for (hidden, steps, batch) in [(1, 1, 1), (3, 4, 2), (2, 6, 3)] {
            let cell = Recurrent::random(kind, hidden, rng.next_u64());
            let g = kind.gates() * hidden;
            let proj = rng.vec_f32(steps * batch * g, 1.0);
            let dh = rng.vec_f32(steps * batch * hidden, 1.0);
            let dc = rng.vec_f32(batch * hidden, 1.0);
            let mut state = State::zeros(kind, batch, hidden);
            state.h = rng.vec_f32(batch * hidden, 1.0);
            if kind == CellKind::Lstm {
                state.c = rng.vec_f32(batch * hidden, 1.0);
            }
            let (h0, c0) = (state.h.clone(), state.c.clone());
            let mut hs = vec![0.0; steps * batch * hidden];
            let tape = cell.run_taped(&proj, batch, &mut hs, &mut state, Threads::All).unwrap();
            let mut grads = CellGrads::zeros(&cell);
            let mut dproj = vec![0.0; proj.len()];
            let dc_last = (kind == CellKind::Lstm).then_some(&dc[..]);
            let initial = cell.backward_through(&tape, &hs, &dh, dc_last, &mut dproj, &mut grads).unwrap();

            let f64s = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
            let (w, b, p, d, dcs) = (f64s(cell.weight_hh()), f64s(cell.bias_hh()), f64s(&proj), f64s(&dh), f64s(&dc));
            let (h0, c0) = (f64s(&h0), if kind == CellKind::Lstm { f64s(&c0) } else { vec![0.0; batch * hidden] });
            let fd = finite_differences;
            let loss = |h: &[f64], c: &[f64], p: &[f64]| loss64_from(kind, hidden, &w, &b, p, batch, &d, [h, c], &dcs);
            let what = format!("{kind:?} H{hidden} T{steps} B{batch}");
            let dw = fd(&w, &|w| loss64_from(kind, hidden, w, &b, &p, batch, &d, [&h0, &c0], &dcs));
            assert!(relative(&grads.weight_hh, &dw) < 1e-4, "{what}: dW_hh {}", relative(&grads.weight_hh, &dw));
            let dh0 = fd(&h0, &|h| loss(h, &c0, &p));
            assert!(relative(&initial.h, &dh0) < 1e-4, "{what}: dh0 {}", relative(&initial.h, &dh0));
            let dp = fd(&p, &|p| loss(&h0, &c0, p));
            assert!(relative(&dproj, &dp) < 1e-4, "{what}: dproj {}", relative(&dproj, &dp));
            if kind == CellKind::Lstm {
                let dc0 = fd(&c0, &|c| loss(&h0, c, &p));
                assert!(relative(&initial.c, &dc0) < 1e-4, "{what}: dc0 {}", relative(&initial.c, &dc0));
            } else {
                assert!(initial.c.is_empty());
            }
        }
    }
}

/// The taped pass computes what the plain one does, on one thread or on blocks of rows over
/// threads, to the bit, and leaves the same state (small cells, and cells wide enough for the
/// vector kernels' blocks and tails).
#[test]
fn the_taped_pass_is_the_plain_pass() {
    for kind in [CellKind::Lstm, CellKind::Gru] {
        for (hidden, steps, batch) in [(6, 4, 3), (40, 3, 5), (67, 2, 17)] {
            let cell = Recurrent::random(kind, hidden, 3);
            let proj = Rng::new(4).vec_f32(steps * batch * kind.gates() * hidden, 1.5);
            let run = |parallel: bool| {
                let (mut hs, mut state) = (vec![0.0; steps * batch * hidden], State::zeros(kind, batch, hidden));
                cell.run(&proj, batch, &mut hs, &mut state, parallel).unwrap();
                (hs, state)
            };
            let (mut b, mut sb) = (vec![0.0; steps * batch * hidden], State::zeros(kind, batch, hidden));
            let tape = cell.run_taped(&proj, batch, &mut b, &mut sb, Threads::All).unwrap();
            let taped = (b, sb);
            assert_eq!(run(false), taped, "{kind:?} H{hidden} B{batch}");
            assert_eq!(run(true), taped, "{kind:?} H{hidden} B{batch}, threads");
            assert_eq!((tape.steps(), tape.batch()), (steps, batch));
        }
    }
}

/// The taped pass and BPTT on a pool of three threads (blocks of 6, 6 and 5 rows per step, and
/// dW_hh's rows in three parts) compute what one thread does, to the bit.
#[test]
fn threads_compute_what_one_thread_does() {
    for kind in [CellKind::Lstm, CellKind::Gru] {
        let (hidden, steps, batch) = (67, 3, 17);
        let cell = Recurrent::random(kind, hidden, 5);
        let g = kind.gates() * hidden;
        let proj = Rng::new(6).vec_f32(steps * batch * g, 1.0);
        let dh = Rng::new(7).vec_f32(steps * batch * hidden, 1.0);
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let (mut hs, mut state) = (vec![0.0; steps * batch * hidden], State::zeros(kind, batch, hidden));
                state.h = Rng::new(8).vec_f32(batch * hidden, 1.0);
                let tape = cell.run_taped(&proj, batch, &mut hs, &mut state, Threads::All).unwrap();
                let (mut grads, mut dproj) = (CellGrads::zeros(&cell), vec![0.0; proj.len()]);
                let initial = cell.backward_through(&tape, &hs, &dh, None, &mut dproj, &mut grads).unwrap();
                (hs, state, dproj, grads, initial)
            })
        };
        assert!(on(1) == on(3), "{kind:?}");
    }
}

/// Cells wide enough for the vector kernels' register blocks and tails (hidden 40 and 67, up
/// to 17 rows): the gradients against central differences of the f64 model along random
/// directions (every entry at once: a check per entry would take minutes).
#[test]
fn bptt_of_wide_cells_matches_directional_differences() {
    let mut rng = Rng::new(29);
    for kind in [CellKind::Lstm, CellKind::Gru] {
        for (hidden, steps, batch) in [(40, 3, 5), (67, 2, 17)] {
            let (cell, proj, dh, grads, dproj) = taped_gradients(kind, hidden, steps, batch, &mut rng);

            let f64s = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
            let (w, b, p, d) = (f64s(cell.weight_hh()), f64s(cell.bias_hh()), f64s(&proj), f64s(&dh));
            let what = format!("{kind:?} H{hidden} T{steps} B{batch}");
            for _ in 0..3 {
                // d/de L(v + e u) = <grad, u>, by central differences in f64.
                let mut along = |v: &[f64], grad: &[f32], loss: &dyn Fn(&[f64]) -> f64| {
                    let u = rng.vec(v.len());
                    let e = 1e-5;
                    let moved = |s: f64| v.iter().zip(&u).map(|(x, u)| x + s * e * u).collect::<Vec<f64>>();
                    let fd = (loss(&moved(1.0)) - loss(&moved(-1.0))) / (2.0 * e);
                    let exact: f64 = grad.iter().zip(&u).map(|(&g, u)| f64::from(g) * u).sum();
                    (exact - fd).abs() / fd.abs().max(1e-3)
                };
                let dw = along(&w, &grads.weight_hh, &|w| loss64(kind, hidden, w, &b, &p, batch, &d));
                let db = along(&b, &grads.bias_hh, &|b| loss64(kind, hidden, &w, b, &p, batch, &d));
                let dp = along(&p, &dproj, &|p| loss64(kind, hidden, &w, &b, p, batch, &d));
                assert!(dw < 1e-4 && db < 1e-4 && dp < 1e-4, "{what}: dW_hh {dw}, db_hh {db}, dproj {dp}");
            }
        }
    }
}

/// Buffers of the wrong length are typed errors.
#[test]
fn bptt_checks_its_buffers() {
    let cell = Recurrent::random(CellKind::Gru, 2, 1);
    let mut hs = vec![0.0; 2 * 2];
    let mut state = State::zeros(CellKind::Gru, 1, 2);
    let tape = cell.run_taped(&[0.5; 2 * 6], 1, &mut hs, &mut state, Threads::All).unwrap();
    let mut grads = CellGrads::zeros(&cell);
    assert!(cell.backward(&tape, &hs, &[0.0; 3], &mut [0.0; 12], &mut grads).is_err());
    assert!(cell.backward(&tape, &hs, &[0.0; 4], &mut [0.0; 11], &mut grads).is_err());
    assert!(cell.run_taped(&[0.5; 11], 1, &mut hs, &mut state, Threads::All).is_err());
    cell.backward(&tape, &hs, &[0.0; 4], &mut [0.0; 12], &mut grads).unwrap();
}

/// A whole recurrent layer, KCP input projection included (RecurrentExecutor::gradients: BPTT,
/// then the projection's planned backward over all T*B rows): every gradient against central
/// differences of the f64 model with the dense W_ih its factors make.
#[test]
fn cell_with_a_kcp_input_matches_finite_differences() {
    use kcp::ir::test::dense_weight;
    use kcp::ir::{compile, lower_backward, Options, Spec};
    use kcp::{Executor, RecurrentExecutor};
    for kind in [CellKind::Lstm, CellKind::Gru] {
        let (hidden, steps, batch, gates) = (2usize, 3usize, 2usize, kind.gates());
        let g = gates * hidden;
        let c = compile(
            &Spec::new(&[3, 2], &[gates, 2], kcp::ir::Format::kcp(2)).with_cell(kind, hidden),
            &Options::default(),
        )
        .unwrap();
        let shapes = c.nest.factor_shapes();
        let input = common::kcp_random(&shapes, Some(g), 5);
        let cell = Recurrent::random(kind, hidden, 6);
        let layer =
            RecurrentExecutor::new(Executor::new(c.nest.clone(), input.clone()).unwrap(), cell.clone()).unwrap();
        let mut rng = Rng::new(7);
        let x = rng.vec_f32(steps * batch * 6, 1.0);
        let dh = rng.vec_f32(steps * batch * hidden, 1.0);
        let backward = lower_backward(&c.backward(true), &c.graph);
        let mut dx = vec![0.0; x.len()];
        let (wi, wh) = layer.gradients(&backward, &x, batch, &dh, Some(&mut dx), Threads::ONE).unwrap();

        let f64s = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
        let (w_hh, b_hh, d) = (f64s(cell.weight_hh()), f64s(cell.bias_hh()), f64s(&dh));
        // Parameters in one vector: every factor, bias_ih, then x.
        let mut theta: Vec<f64> = input.cores.iter().flat_map(|f| f64s(f)).collect();
        let bias_at = theta.len();
        theta.extend(f64s(input.bias.as_ref().unwrap()));
        let x_at = theta.len();
        theta.extend(f64s(&x));
        let loss = |theta: &[f64]| -> f64 {
            let mut at = 0;
            let factors: Vec<Vec<f64>> = input
                .cores
                .iter()
                .map(|f| {
                    at += f.len();
                    theta[at - f.len()..at].to_vec()
                })
                .collect();
            let w = dense_weight(&c.spec, &factors);
            let (w, b, x) = (&w, &theta[bias_at..x_at], &theta[x_at..]);
            let proj: Vec<f64> = x
                .chunks_exact(6)
                .flat_map(|row| (0..g).map(move |i| b[i] + (0..6).map(|j| w[i * 6 + j] * row[j]).sum::<f64>()))
                .collect();
            loss64(kind, hidden, &w_hh, &b_hh, &proj, batch, &d)
        };
        let e = 1e-6;
        let fd: Vec<f64> = (0..theta.len())
            .map(|k| {
                let (mut up, mut down) = (theta.clone(), theta.clone());
                up[k] += e;
                down[k] -= e;
                (loss(&up) - loss(&down)) / (2.0 * e)
            })
            .collect();
        let got: Vec<f32> = wi.cores.iter().flatten().chain(wi.bias.as_ref().unwrap()).chain(&dx).copied().collect();
        assert!(relative(&got, &fd) < 1e-4, "{kind:?}: {}", relative(&got, &fd));
        assert!(wh.weight_hh.iter().all(|v| v.is_finite()));
    }
}
