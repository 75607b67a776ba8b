//! Layers served from many threads: one generated layer, one executor and one recurrent layer,
//! each shared through an `Arc` by 8 threads that call `forward` and `forward_par` (inside
//! rayon pools of their own, nested in another pool), every result the same bits as the
//! sequential one. Bounded: 8 threads x 12 calls. What the types allow is checked at compile
//! time: every layer type is `Send + Sync`, and a training step (`update_weights`, `&mut self`)
//! while another thread runs inference (`&self`) does not compile (the doc test of
//! `kcp::kcp_layer!`'s "Threads" section).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kcp::ir::{compile, Options, Spec};
use kcp::{Executor, RecurrentExecutor, Rng, Threads};

kcp::kcp_layer! { struct Ucf11 { in_shape: [8, 20, 20, 18], out_shape: [4, 4, 4, 16], rank: 4, bias: true, backward: weights } }
kcp::kcp_layer! { struct Lstm { in_shape: [4, 6, 5], out_shape: [4, 4, 2], rank: 2, cell: lstm, hidden: 8 } }

fn send_sync<T: Send + Sync>() {}

#[test]
fn layer_types_are_send_and_sync() {
    send_sync::<Ucf11>();
    send_sync::<Lstm>();
    send_sync::<Executor>();
    send_sync::<RecurrentExecutor>();
    send_sync::<kcp::Weights>();
    send_sync::<kcp::Recurrent>();
    // A trace and a state belong to one caller's pass: they move between threads.
    fn send<T: Send>() {}
    send::<kcp::Trace>();
    send::<kcp::State>();
}

/// Runs `call` from 8 threads, 12 times each, half of the threads inside a rayon pool of two
/// nested in a pool of two: every result equal to `want`.
fn hammer(want: &[f32], call: impl Fn() -> Vec<f32> + Send + Sync) {
    let outer = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let call = &call;
            let outer = &outer;
            s.spawn(move || {
                for _ in 0..12 {
                    let got = if t % 2 == 0 {
                        call()
                    } else {
                        outer.install(|| {
                            let inner = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
                            inner.install(call)
                        })
                    };
                    assert!(got == want, "thread {t}: other bits than the sequential result");
                }
            });
        }
    });
}

#[test]
fn a_generated_layer_and_an_executor_serve_many_threads() {
    let layer = Arc::new(Ucf11::random(1));
    let mut rng = Rng::new(2);
    let x = Arc::new(rng.vec_f32(3 * Ucf11::IN, 1.0));
    let mut want = vec![0.0f32; 3 * Ucf11::OUT];
    layer.forward(&x, &mut want).unwrap();
    let mut par = vec![0.0f32; want.len()];
    layer.forward_par(&x, &mut par).unwrap();
    assert_eq!(par, want, "forward_par against forward");
    for threaded in [false, true] {
        let (layer, x) = (Arc::clone(&layer), Arc::clone(&x));
        hammer(&want, move || {
            let mut y = vec![0.0f32; 3 * Ucf11::OUT];
            if threaded {
                layer.forward_par(&x, &mut y).unwrap();
            } else {
                layer.forward(&x, &mut y).unwrap();
            }
            y
        });
    }
    let c = compile(
        &Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], kcp::ir::Format::kcp(4)).with_bias(true),
        &Options::default(),
    )
    .unwrap();
    let executor = Arc::new(Executor::new(c.nest, layer.weights().clone()).unwrap());
    let mut want = vec![0.0f32; 3 * Ucf11::OUT];
    executor.forward(&x, &mut want).unwrap();
    let x2 = Arc::clone(&x);
    hammer(&want, move || {
        let mut y = vec![0.0f32; 3 * Ucf11::OUT];
        executor.forward_par(&x2, &mut y, Threads::at_most(2).unwrap()).unwrap();
        y
    });
}

#[test]
fn a_recurrent_layer_serves_many_threads() {
    let lstm = Arc::new(Lstm::random(3));
    let (steps, batch) = (4, 2);
    let x = Arc::new(Rng::new(4).vec_f32(steps * batch * Lstm::IN, 1.0));
    let run = |lstm: &Lstm, x: &[f32], par: bool| {
        let mut hs = vec![0.0f32; steps * batch * Lstm::HIDDEN];
        let mut state = Lstm::zero_state(batch);
        if par {
            lstm.forward_par(x, batch, &mut hs, &mut state).unwrap();
        } else {
            lstm.forward(x, batch, &mut hs, &mut state).unwrap();
        }
        hs
    };
    let want = run(&lstm, &x, false);
    assert_eq!(run(&lstm, &x, true), want);
    hammer(&want, move || run(&lstm, &x, true));
}
