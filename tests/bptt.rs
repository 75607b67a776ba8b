//! Backpropagation through time for both cells against central finite differences of an
//! independent f64 implementation of PyTorch's equations, over random sizes (hidden 1 to 5,
//! T 1 to 8, batch 1 to 4), and the taped forward pass against the plain one.

#![allow(clippy::unwrap_used)]

use kcp::{CellGrads, CellKind, Recurrent, Rng, State};

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// L = sum_t sum(dh[t] * h[t]) of the cell in f64, from a zero state, on proj `[T, B, G*H]`.
fn loss64(kind: CellKind, hidden: usize, w: &[f64], b: &[f64], proj: &[f64], batch: usize, dh: &[f64]) -> f64 {
    let g = kind.gates() * hidden;
    let steps = proj.len() / (batch * g);
    let (mut h, mut c) = (vec![0.0; batch * hidden], vec![0.0; batch * hidden]);
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
    loss
}

/// ||a - b|| / ||b||.
fn relative(a: &[f32], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(&x, y)| (f64::from(x) - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-300)).sqrt()
}

#[test]
fn bptt_matches_finite_differences() {
    let mut rng = Rng::new(17);
    for kind in [CellKind::Lstm, CellKind::Gru] {
        for (hidden, steps, batch) in [(1, 1, 1), (3, 8, 1), (2, 5, 4), (5, 3, 2), (4, 8, 3)] {
            let cell = Recurrent::random(kind, hidden, rng.next_u64());
            let g = kind.gates() * hidden;
            let proj = rng.vec_f32(steps * batch * g, 1.0);
            let dh = rng.vec_f32(steps * batch * hidden, 1.0);
            let mut hs = vec![0.0; steps * batch * hidden];
            let mut state = State::zeros(kind, batch, hidden);
            let tape = cell.run_taped(&proj, batch, &mut hs, &mut state).unwrap();
            let mut grads = CellGrads::zeros(&cell);
            let mut dproj = vec![f32::NAN; proj.len()];
            cell.backward(&tape, &hs, &dh, &mut dproj, &mut grads).unwrap();

            let f64s = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
            let (w, b, p, d) = (f64s(cell.weight_hh()), f64s(cell.bias_hh()), f64s(&proj), f64s(&dh));
            let e = 1e-6;
            let fd = |v: &[f64], at: &dyn Fn(&[f64]) -> f64| -> Vec<f64> {
                (0..v.len())
                    .map(|k| {
                        let (mut up, mut down) = (v.to_vec(), v.to_vec());
                        up[k] += e;
                        down[k] -= e;
                        (at(&up) - at(&down)) / (2.0 * e)
                    })
                    .collect()
            };
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

/// The taped pass computes what the plain one does, to the bit, and leaves the same state.
#[test]
fn the_taped_pass_is_the_plain_pass() {
    for kind in [CellKind::Lstm, CellKind::Gru] {
        let (hidden, steps, batch) = (6, 4, 3);
        let cell = Recurrent::random(kind, hidden, 3);
        let proj = Rng::new(4).vec_f32(steps * batch * kind.gates() * hidden, 1.5);
        let (mut a, mut b) = (vec![0.0; steps * batch * hidden], vec![0.0; steps * batch * hidden]);
        let (mut sa, mut sb) = (State::zeros(kind, batch, hidden), State::zeros(kind, batch, hidden));
        cell.run(&proj, batch, &mut a, &mut sa, false).unwrap();
        let tape = cell.run_taped(&proj, batch, &mut b, &mut sb).unwrap();
        assert_eq!((a, sa), (b, sb));
        assert_eq!((tape.steps(), tape.batch()), (steps, batch));
    }
}

/// Buffers of the wrong length are typed errors.
#[test]
fn bptt_checks_its_buffers() {
    let cell = Recurrent::random(CellKind::Gru, 2, 1);
    let mut hs = vec![0.0; 2 * 2];
    let mut state = State::zeros(CellKind::Gru, 1, 2);
    let tape = cell.run_taped(&[0.5; 2 * 6], 1, &mut hs, &mut state).unwrap();
    let mut grads = CellGrads::zeros(&cell);
    assert!(cell.backward(&tape, &hs, &[0.0; 3], &mut [0.0; 12], &mut grads).is_err());
    assert!(cell.backward(&tape, &hs, &[0.0; 4], &mut [0.0; 11], &mut grads).is_err());
    assert!(cell.run_taped(&[0.5; 11], 1, &mut hs, &mut state).is_err());
    cell.backward(&tape, &hs, &[0.0; 4], &mut [0.0; 12], &mut grads).unwrap();
}
