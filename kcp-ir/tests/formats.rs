//! Every format of the paper's comparison as a network of x and named cores: the UCF11
//! parameter counts of the matched budgets, the HT tree's names, validation errors that name
//! the value, the reference implementations' orders against the planner, and, over random
//! shapes and ranks of every format, the e-graph plan against the exhaustive oracle and the
//! interpreter on the planned tree against the dense reference.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kcp_ir::network::{eval, orders, Format, Network};
use kcp_ir::test::{optimal_tree, relative_error, run_nest, Rng};
use kcp_ir::{lower_lanes, Batch, Error, Options};

fn ucf11(format: Format) -> Network {
    Network::new(&[8, 20, 20, 18], &[16, 4, 4, 4], format, Batch::Symbolic).unwrap()
}

/// The matched budgets of the comparison: parameters of the input-to-hidden weight.
#[test]
fn ucf11_parameter_counts() {
    let cases = [
        (Format::Tt { ranks: vec![1, 4, 4, 4, 1] }, 3_360),
        (Format::Bt { blocks: 2, ranks: vec![4, 4, 4, 4] }, 3_392),
        (Format::Tr { ranks: vec![6; 8] }, 3_384),
        (Format::Cp { rank: 36 }, 3_384),
        (Format::Ht { rank: 7 }, 3_255),
        (Format::Kcp { rank: 9 }, 3_240),
        (Format::Kcp { rank: 1 }, 360),
    ];
    for (format, params) in cases {
        let network = ucf11(format.clone());
        assert_eq!(network.params(), params, "{format}");
        assert_eq!(network.dense_params(), 58_982_400);
    }
}

/// The HT tree: the left child takes the larger half, nodes are named by the modes they
/// cover, children before parents; a single mode is one leaf with an edge of size 1.
#[test]
fn ht_tree_names() {
    let names = |modes: usize| {
        let network = Network::new(&vec![2; modes], &vec![3; modes], Format::Ht { rank: 5 }, Batch::Symbolic).unwrap();
        network
            .cores()
            .iter()
            .map(|c| format!("{}{:?}", c.name, network.shape(network.cores().iter().position(|d| d == c).unwrap())))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(1), ["leaf.0[3, 2, 1]"]);
    assert_eq!(names(2), ["leaf.0[3, 2, 5]", "leaf.1[3, 2, 5]", "node.0-1[5, 5]"]);
    assert_eq!(
        names(4),
        [
            "leaf.0[3, 2, 5]",
            "leaf.1[3, 2, 5]",
            "node.0-1[5, 5, 5]",
            "leaf.2[3, 2, 5]",
            "leaf.3[3, 2, 5]",
            "node.2-3[5, 5, 5]",
            "node.0-3[5, 5]"
        ]
    );
    let five: Vec<String> = names(5).iter().map(|n| n.split('[').next().unwrap().to_string()).collect();
    assert_eq!(
        five,
        ["leaf.0", "leaf.1", "node.0-1", "leaf.2", "node.0-2", "leaf.3", "leaf.4", "node.3-4", "node.0-4"]
    );
}

/// Bad ranks are typed errors naming the value, all of them at once.
#[test]
fn bad_ranks_are_typed_errors() {
    let errors = |format| Network::new(&[4, 5, 6], &[2, 3, 4], format, Batch::Symbolic).unwrap_err();
    let tt = errors(Format::Tt { ranks: vec![2, 3, 3, 1] });
    assert!(matches!(tt[..], [Error::TtRankEnds { first: 2, last: 1, position: 0 }]), "{tt}");
    assert_eq!(tt.to_string(), "tt ranks must start and end with 1 (r_0 = r_D = 1), found 2 and 1");
    let short = errors(Format::Tt { ranks: vec![1, 3, 1] });
    assert_eq!(short.to_string(), "tt needs 4 ranks (r_0 .. r_D), found 3");
    let ring = errors(Format::Tr { ranks: vec![2, 0, 2, 2, 2] });
    assert_eq!(
        ring.to_string(),
        "found 2 errors: tr needs 6 ranks (p_0 .. p_{2D-1}), found 5; rank 2 of the list must be at least 1, found 0"
    );
    let bt = errors(Format::Bt { blocks: 0, ranks: vec![2, 2] });
    assert_eq!(bt.len(), 2, "{bt}");
    assert_eq!(errors(Format::Ht { rank: 0 }).to_string(), "rank must be at least 1, found 0");
    let wide = Network::new(&[2; 8], &[2; 8], Format::Cp { rank: 2 }, Batch::Symbolic).unwrap_err();
    assert_eq!(wide.to_string(), "cp with 8 modes has 16 cores; at most 15 are supported");
    // Shape errors are the KCP layer's own.
    let shapes = Network::new(&[4, 0], &[2, 3], Format::Tt { ranks: vec![1, 2, 1] }, Batch::Symbolic).unwrap_err();
    assert_eq!(shapes.to_string(), "in_shape dimension 2 must be at least 1, found 0");
}

/// The orders of the reference implementations on the UCF11 layer (out [16, 4, 4, 4]) cost
/// what the comparison's notes say (MACs per frame, to their three figures), and the planner
/// never does worse than any of them.
#[test]
fn reference_orders_cost_what_the_projects_pay() {
    // Per format: each reference's name, MACs per frame and weight-only MACs per call.
    type Expected = &'static [(&'static str, f64, f64)];
    let cases: [(Format, Expected); 4] = [
        (Format::Tt { ranks: vec![1, 4, 4, 4, 1] }, &[("TT-RNN", 1.94e6, 0.0), ("tednet", 12.6e6, 0.0)]),
        (Format::Tr { ranks: vec![6; 8] }, &[("tednet", 3.82e6, 0.0)]),
        (Format::Bt { blocks: 2, ranks: vec![4; 4] }, &[("tednet", 43.9e6, 0.0), ("BT-RNN", 129.8e6, 5.75e6)]),
        (Format::Cp { rank: 36 }, &[("tednet", 2.40e6, 0.0)]),
    ];
    for (format, expected) in cases {
        let network = ucf11(format.clone());
        let (planned, search) = network.plan(&Options::default());
        assert!(search.complete, "{format}");
        let references = orders::references(&network);
        assert_eq!(references.len(), expected.len(), "{format}");
        for (reference, &(name, macs, weight_only)) in references.iter().zip(expected) {
            assert_eq!(reference.name, name);
            // Everything a reference does runs on every call: weight-only work included.
            let plan = network.plan_of(&reference.tree, u64::MAX);
            let close = |got: u64, want: f64| want == 0.0 && got == 0 || (got as f64 / want - 1.0).abs() < 0.006;
            assert!(close(plan.macs(), macs), "{format} {name}: {} MACs, notes say {macs}", plan.macs());
            assert!(close(plan.prep_macs(), weight_only), "{format} {name}: {} weight-only MACs", plan.prep_macs());
            assert!(planned.macs() <= plan.macs() + plan.prep_macs(), "{format}: planned {} > {name}", planned.macs());
        }
    }
}

/// A random network of every format for each D in `modes`: dims from 1 to `dim`, ranks from 1
/// to `rank`.
fn random_networks(rng: &mut Rng, modes: std::ops::RangeInclusive<usize>, dim: u64, rank: u64) -> Vec<Network> {
    let mut pick = |lo: u64, hi: u64| (lo + rng.next_u64() % (hi - lo + 1)) as usize;
    let mut networks = Vec::new();
    for modes in modes {
        let in_shape: Vec<usize> = (0..modes).map(|_| pick(1, dim)).collect();
        let out_shape: Vec<usize> = (0..modes).map(|_| pick(1, dim)).collect();
        let mut tt: Vec<usize> = (0..=modes).map(|_| pick(1, rank)).collect();
        (tt[0], tt[modes]) = (1, 1);
        let formats = [
            Format::Kcp { rank: pick(1, rank) },
            Format::Cp { rank: pick(1, rank) },
            Format::Tt { ranks: tt },
            Format::Tr { ranks: (0..2 * modes).map(|_| pick(1, rank)).collect() },
            Format::Bt { blocks: pick(1, 2), ranks: (0..modes).map(|_| pick(1, rank)).collect() },
            Format::Ht { rank: pick(1, rank) },
        ];
        let batch = if pick(0, 1) == 0 { Batch::Symbolic } else { Batch::Fixed(pick(1, 3)) };
        for format in formats {
            networks.push(Network::new(&in_shape, &out_shape, format, batch).unwrap());
        }
    }
    networks
}

/// Over random networks of every format (D = 1..5, dims from 1, small and long enough for the
/// GEMM kernels): the e-graph's plan costs what the exhaustive dynamic program finds (with and
/// without weight-only pre-products), and that plan's tree evaluated pairwise and its lowered
/// program (row by row and interleaved, f64 and f32) compute the dense reference's y.
#[test]
fn every_format_plans_optimally_and_computes_y() {
    let mut rng = Rng::new(0xF0A7);
    for round in 0..6 {
        let networks = match round {
            0..=2 => random_networks(&mut rng, 1..=4, 3, 3),
            3 => random_networks(&mut rng, 5..=5, 2, 2),
            _ => random_networks(&mut rng, 1..=3, 9, 5),
        };
        for network in networks {
            let name =
                format!("round {round}: {} {:?} -> {:?}", network.format(), network.in_shape(), network.out_shape());
            let mut plans: Vec<_> = [0, 64, 1 << 16]
                .iter()
                .map(|&max_prep_elems| {
                    let (plan, search) = network.plan(&Options { max_prep_elems, ..Options::default() });
                    assert!(search.complete, "{name}");
                    let (_, optimal) = optimal_tree(&network.graph(), max_prep_elems);
                    assert_eq!(plan.cost(), optimal, "{name}, max_prep_elems {max_prep_elems}");
                    plan
                })
                .collect();
            // The default bound's plan (the last) runs.
            let plan = plans.pop().unwrap();
            let cores = eval::random_cores(&network, &mut rng);
            let batch = 2;
            let x = rng.vec(batch * network.input_size());
            let want = eval::dense_forward(&network, &cores, &x, batch);
            let got = eval::interpret(&network, plan.tree(), &x, &cores, batch);
            assert!(relative_error(&got, &want) < 1e-12, "{name}: {}", relative_error(&got, &want));
            // The lowered program, row by row and interleaved, in f64 and in f32.
            let graph = network.graph();
            let (x32, cores32): (Vec<f32>, Vec<Vec<f32>>) = (
                x.iter().map(|&v| v as f32).collect(),
                cores.iter().map(|c| c.iter().map(|&v| v as f32).collect()).collect(),
            );
            for lanes in [1, 8, 16] {
                let nest = lower_lanes(&plan, &graph, lanes);
                let got = run_nest(&nest, &x, &cores, batch);
                assert!(
                    relative_error(&got, &want) < 1e-12,
                    "{name}, lanes {lanes}: {}\n{nest}",
                    relative_error(&got, &want)
                );
                let got: Vec<f64> = run_nest(&nest, &x32, &cores32, batch).into_iter().map(f64::from).collect();
                assert!(
                    relative_error(&got, &want) < 1e-5,
                    "{name}, lanes {lanes}, f32: {}",
                    relative_error(&got, &want)
                );
            }
        }
    }
}

/// One printed plan and its loop nest per format, on the UCF11 layer at the matched budgets:
/// what `kcp plan --format` shows and what the executor runs (the cores are A1, A2, ... in
/// `Network::cores` order, named in the snapshot's first line).
#[test]
fn ucf11_plans_and_nests_per_format() {
    let formats = [
        Format::Kcp { rank: 9 },
        Format::Cp { rank: 36 },
        Format::Tt { ranks: vec![1, 4, 4, 4, 1] },
        Format::Tr { ranks: vec![6; 8] },
        Format::Bt { blocks: 2, ranks: vec![4; 4] },
        Format::Ht { rank: 7 },
    ];
    for format in formats {
        let network = ucf11(format);
        let lowered = kcp_ir::compile(&network.spec(), &Options::default()).unwrap();
        let cores: Vec<String> =
            network.cores().iter().enumerate().map(|(k, c)| format!("A{} {}", k + 1, c.name)).collect();
        let text = format!("{}: {}\n\n{}\n{}", network.format(), cores.join(", "), lowered.plan, lowered.nest);
        insta::assert_snapshot!(format!("ucf11_{}", network.format().name()), text);
    }
}

/// Networks too large to interleave their rows get each intermediate laid out for the products
/// that write and read it: over random networks of every format (D = 3 and 4, dims from 4),
/// the lowered program computes what the planned tree computes pairwise (each tensor in its
/// own layout, no loop nests), and the search does choose other layouts than the global order.
#[test]
fn chosen_layouts_compute_what_the_plan_does() {
    let mut rng = Rng::new(0x1A70);
    let (mut chosen, mut total) = (0, 0);
    for modes in [3, 3, 3, 3, 4, 4] {
        let mut pick = |lo: u64, hi: u64| (lo + rng.next_u64() % (hi - lo + 1)) as usize;
        let dim = if modes == 3 { 12 } else { 7 };
        let in_shape: Vec<usize> = (0..modes).map(|_| pick(4, dim)).collect();
        let out_shape: Vec<usize> = (0..modes).map(|_| pick(4, dim)).collect();
        let mut tt: Vec<usize> = (0..=modes).map(|_| pick(2, 5)).collect();
        (tt[0], tt[modes]) = (1, 1);
        let formats = [
            Format::Kcp { rank: pick(1, 5) },
            Format::Cp { rank: pick(2, 9) },
            Format::Tt { ranks: tt },
            Format::Tr { ranks: (0..2 * modes).map(|_| pick(2, 4)).collect() },
            Format::Bt { blocks: pick(1, 2), ranks: (0..modes).map(|_| pick(2, 4)).collect() },
            Format::Ht { rank: pick(2, 5) },
        ];
        for format in formats {
            let network = Network::new(&in_shape, &out_shape, format, Batch::Symbolic).unwrap();
            let name = format!("{} {:?} -> {:?}", network.format(), network.in_shape(), network.out_shape());
            let lowered = kcp_ir::compile(&network.spec(), &Options::default()).unwrap();
            let cores = eval::random_cores(&network, &mut rng);
            let batch = 2;
            let x = rng.vec(batch * network.input_size());
            let want = eval::interpret(&network, lowered.plan.tree(), &x, &cores, batch);
            let got = run_nest(&lowered.nest, &x, &cores, batch);
            let nest = lowered.nest.to_string();
            assert!(relative_error(&got, &want) < 1e-12, "{name}: {}\n{nest}", relative_error(&got, &want));
            chosen += usize::from(nest.contains("laid out"));
            total += 1;
        }
    }
    // A seeded draw: 36 networks, of which the KCP layers keep the global order by rule.
    assert!(chosen >= total / 4, "{chosen} of {total} networks got a layout of their own");
}
