//! The backward pass of every format: `plan_backward` on a network's graph and plan, lowered
//! by `lower_backward` and run row by row, against the brute-force oracle
//! `eval::dense_gradients` (L = sum(dy * y) is linear in each core; dx = dy W).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kcp_ir::network::{eval, Format, Network};
use kcp_ir::test::{relative_error, run_backward_nest, Rng};
use kcp_ir::{lower, lower_backward, plan_backward, Batch, Options};

#[test]
fn every_format_backward_matches_the_oracle() {
    let mut rng = Rng::new(0xBAC);
    let pick = |rng: &mut Rng, lo: u64, hi: u64| (lo + rng.next_u64() % (hi - lo + 1)) as usize;
    for round in 0..3 {
        for modes in 1..=3 {
            let in_shape: Vec<usize> = (0..modes).map(|_| pick(&mut rng, 1, 3)).collect();
            let out_shape: Vec<usize> = (0..modes).map(|_| pick(&mut rng, 1, 3)).collect();
            let mut tt: Vec<usize> = (0..=modes).map(|_| pick(&mut rng, 1, 3)).collect();
            (tt[0], tt[modes]) = (1, 1);
            let formats = [
                Format::Kcp { rank: pick(&mut rng, 1, 3) },
                Format::Cp { rank: pick(&mut rng, 1, 3) },
                Format::Tt { ranks: tt },
                Format::Tr { ranks: (0..2 * modes).map(|_| pick(&mut rng, 1, 3)).collect() },
                Format::Bt { blocks: pick(&mut rng, 1, 2), ranks: (0..modes).map(|_| pick(&mut rng, 1, 3)).collect() },
                Format::Ht { rank: pick(&mut rng, 1, 3) },
            ];
            for format in formats {
                let network = Network::new(&in_shape, &out_shape, format, Batch::Symbolic).unwrap();
                let name = format!("round {round}: {} {in_shape:?} -> {out_shape:?}", network.format());
                let graph = network.graph();
                let (plan, _) = network.plan(&Options::default());
                let cores = eval::random_cores(&network, &mut rng);
                let batch = 3;
                let (x, dy) = (rng.vec(batch * network.input_size()), rng.vec(batch * network.output_size()));
                let (want, dx_want) = eval::dense_gradients(&network, &cores, &x, &dy, batch);
                if !matches!(network.format(), Format::Kcp { .. }) {
                    let backward = plan_backward(&graph, &plan, true, 0);
                    let (grads, dx) = eval::interpret_backward(&network, &backward, &x, &cores, &dy, batch);
                    for (k, (got, want)) in grads.iter().zip(&want).enumerate() {
                        assert!(relative_error(got, want) < 1e-12, "{name}: interpreted core {k}");
                    }
                    assert!(relative_error(&dx.unwrap(), &dx_want) < 1e-12, "{name}: interpreted dx");
                }
                for max_saved in [0, 1 << 16] {
                    let backward = plan_backward(&graph, &plan, true, max_saved);
                    let program = lower_backward(&backward, &graph);
                    let (grads, dx) = run_backward_nest(&lower(&plan, &graph), &program, &x, &cores, &dy, batch);
                    for (k, (got, want)) in grads.iter().zip(&want).enumerate() {
                        let error = relative_error(got, want);
                        assert!(error < 1e-10, "{name}, max_saved {max_saved}: core {k} error {error}\n{backward}");
                    }
                    assert!(relative_error(&dx.unwrap(), &dx_want) < 1e-10, "{name}: dx");
                }
            }
        }
    }
}

/// The gradients of another format share work: each core's gradient search takes what an
/// earlier one computed for free. The UCF11 tensor train with dx costs 5,779,456 MACs per
/// frame, against 9,687,040 for the gradients planned with nothing shared (docs/training.md).
#[test]
fn later_gradients_reuse_what_earlier_ones_computed() {
    let network =
        Network::new(&[8, 20, 20, 18], &[16, 4, 4, 4], Format::Tt { ranks: vec![1, 4, 4, 4, 1] }, Batch::Symbolic)
            .unwrap();
    let (plan, _) = network.plan(&Options::default());
    let backward = plan_backward(&network.graph(), &plan, true, Options::default().max_saved_elems);
    assert_eq!((backward.macs, backward.separate_macs), (5_779_456, 9_687_040));
    assert_eq!(backward.macs, backward.steps.iter().map(|s| s.macs).sum::<u64>());
    assert!(backward.to_string().contains("reusing what an earlier one computed"), "{backward}");
}

/// The backward programs of networks too large to interleave their rows lay their temporaries
/// out as the layout search chooses (temporaries read by several gradients included): over
/// random networks of every format (D = 3 and 4, dims from 4), the lowered backward program
/// computes what the backward plan computes pairwise (`network::eval::interpret_backward`, each
/// tensor in its own layout, no loop nests), and the search does choose layouts of its own.
/// The interpreter itself is checked against the brute-force gradients on the small networks
/// of the test above.
#[test]
fn chosen_backward_layouts_compute_what_the_plan_does() {
    let mut rng = Rng::new(0x1A71);
    let (mut chosen, mut total) = (0, 0);
    for modes in [3, 3, 3, 4] {
        let mut pick = |lo: u64, hi: u64| (lo + rng.next_u64() % (hi - lo + 1)) as usize;
        let dim = if modes == 3 { 10 } else { 6 };
        let in_shape: Vec<usize> = (0..modes).map(|_| pick(4, dim)).collect();
        let out_shape: Vec<usize> = (0..modes).map(|_| pick(4, dim)).collect();
        let mut tt: Vec<usize> = (0..=modes).map(|_| pick(2, 4)).collect();
        (tt[0], tt[modes]) = (1, 1);
        let formats = [
            Format::Cp { rank: pick(2, 6) },
            Format::Tt { ranks: tt },
            Format::Tr { ranks: (0..2 * modes).map(|_| pick(2, 3)).collect() },
            Format::Bt { blocks: pick(1, 2), ranks: (0..modes).map(|_| pick(2, 3)).collect() },
            Format::Ht { rank: pick(2, 4) },
        ];
        for format in formats {
            let network = Network::new(&in_shape, &out_shape, format, Batch::Symbolic).unwrap();
            let name = format!("{} {in_shape:?} -> {out_shape:?}", network.format());
            let graph = network.graph();
            let (plan, _) = network.plan(&Options::default());
            let cores = eval::random_cores(&network, &mut rng);
            let batch = 2;
            let (x, dy) = (rng.vec(batch * network.input_size()), rng.vec(batch * network.output_size()));
            let backward = plan_backward(&graph, &plan, true, 0);
            let program = lower_backward(&backward, &graph);
            let (want, dx_want) = eval::interpret_backward(&network, &backward, &x, &cores, &dy, batch);
            let (grads, dx) = run_backward_nest(&lower(&plan, &graph), &program, &x, &cores, &dy, batch);
            for (k, (got, want)) in grads.iter().zip(&want).enumerate() {
                let error = relative_error(got, want);
                assert!(error < 1e-12, "{name}: core {k} error {error}\n{program}");
            }
            let error = relative_error(&dx.unwrap(), &dx_want.unwrap());
            assert!(error < 1e-12, "{name}: dx error {error}\n{program}");
            chosen += usize::from(program.to_string().contains("laid out"));
            total += 1;
        }
    }
    // A seeded draw of 20 networks, of which 4 save the search's 10% (the others keep the
    // global order).
    assert!(chosen >= 3, "{chosen} of {total} backward programs got a layout of their own");
}
