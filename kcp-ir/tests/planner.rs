//! The e-graph planner against the exhaustive oracle, the paper's orders and the dense reference.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod specs;

use kcp_ir::test::optimal_tree;
use kcp_ir::test::{
    dense_forward, interpret, magnitudes, random_factors, relative_error, rounding_error, run_nest, Rng,
};
use kcp_ir::OperandSet;
use kcp_ir::{compile, ContractionGraph, Options, Plan, Spec, Tree};
use proptest::prelude::*;

/// Specs over D = 1..6, dims 1..12 (1 made likely), R 1..8, B 1..8.
fn any_spec(max_dim: usize) -> impl Strategy<Value = Spec> {
    let dim = prop_oneof![1 => Just(1usize), 4 => 1..=max_dim];
    (1usize..=6)
        .prop_flat_map(move |d| {
            (
                proptest::collection::vec(dim.clone(), d),
                proptest::collection::vec(dim.clone(), d),
                1usize..=8,
                1usize..=8,
            )
        })
        .prop_map(|(n, m, r, b)| Spec::new(&n, &m, kcp_ir::Format::kcp(r)).with_batch(b))
}

fn check_optimal(spec: &Spec, options: &Options) -> Result<(), TestCaseError> {
    let c = compile(spec, options).unwrap();
    prop_assert!(c.search.complete, "{:?}", c.search);
    let (_, oracle) = optimal_tree(&c.graph, options.max_prep_elems);
    prop_assert_eq!(c.plan.cost(), oracle);
    prop_assert!(c.plan.macs() <= c.order(&Tree::forward(c.spec.modes())).macs());
    prop_assert!(c.plan.macs() <= c.order(&Tree::reverse(c.spec.modes())).macs());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn egraph_plan_is_the_exact_optimum(spec in any_spec(12)) {
        check_optimal(&spec, &Options::default())?;
    }

    #[test]
    fn egraph_plan_is_optimal_without_preproducts(spec in any_spec(12)) {
        check_optimal(&spec, &Options { max_prep_elems: 0, ..Options::default() })?;
    }

    #[test]
    fn egraph_plan_is_optimal_with_unbounded_preproducts(spec in any_spec(12)) {
        check_optimal(&spec, &Options { max_prep_elems: u64::MAX, ..Options::default() })?;
    }
}

/// The numeric check needs small tensors: W alone has M * N entries, so dims shrink with D.
fn small_spec() -> impl Strategy<Value = Spec> {
    any_spec(12).prop_map(|spec| {
        let cap = [12, 12, 12, 5, 3, 2, 2][spec.in_shape.len()];
        let clamp = |v: &[usize]| v.iter().map(|&d| d.min(cap)).collect::<Vec<_>>();
        Spec { in_shape: clamp(&spec.in_shape), out_shape: clamp(&spec.out_shape), ..spec }
    })
}

fn check_numerics(
    plan: &Plan,
    graph: &ContractionGraph,
    spec: &kcp_ir::ValidSpec,
    seed: u64,
) -> Result<(), TestCaseError> {
    let batch = spec.cost_batch();
    let mut rng = Rng::new(seed);
    let factors = random_factors(&mut rng, spec);
    let x = rng.vec(batch * spec.input_size());
    let reference = dense_forward(spec, &factors, &x, batch);
    let y = interpret(plan, graph, &x, &factors, batch);
    prop_assert_eq!(y.len(), reference.len());
    let error = relative_error(&y, &reference);
    prop_assert!(error < 1e-10, "relative error {} for\n{}", error, plan);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_plan_matches_the_dense_reference(spec in small_spec(), seed in any::<u64>()) {
        let unbounded = Options { max_prep_elems: u64::MAX, ..Options::default() };
        let c = compile(&spec, &unbounded).unwrap();
        let (oracle, _) = optimal_tree(&c.graph, unbounded.max_prep_elems);
        let oracle = Plan::new(&c.graph, &oracle, c.spec.batch(), unbounded.max_prep_elems);
        let plans = [&c.plan, &c.order(&Tree::forward(c.spec.modes())), &c.order(&Tree::reverse(c.spec.modes())), &oracle];
        // Every plan lowered row by row, and the chosen one for interleaved rows too (lane counts
        // around a vector, the batch not always a multiple of them).
        let lanes = [1, 2, 3, 8, 16];
        let nests = plans.iter().map(|&p| (p, 1)).chain(lanes.iter().map(|&l| (&c.plan, l)));
        for plan in plans {
            check_numerics(plan, &c.graph, &c.spec, seed)?;
        }
        for (plan, lanes) in nests {
            // The plan lowered to loops, run by the loop-nest interpreter.
            let nest = kcp_ir::lower_lanes(plan, &c.graph, lanes);
            let batch = c.spec.cost_batch();
            let mut rng = Rng::new(seed);
            let factors = random_factors(&mut rng, &c.spec);
            let x = rng.vec(batch * c.spec.input_size());
            let error = relative_error(&run_nest(&nest, &x, &factors, batch), &dense_forward(&c.spec, &factors, &x, batch));
            prop_assert!(error < 1e-10, "relative error {} for\n{}", error, nest);
            // And in f32, through the kernels layers run (the SIMD micro-kernels among them).
            let narrow = |v: &[f64]| v.iter().map(|&e| e as f32).collect::<Vec<f32>>();
            let factors32: Vec<Vec<f32>> = factors.iter().map(|f| narrow(f)).collect();
            let widen = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
            let y = widen(run_nest(&nest, &narrow(&x), &factors32, batch));
            // Against the size of each output's terms, which bounds f32's rounding (an output
            // may cancel to nearly nothing).
            let abs_factors: Vec<Vec<f64>> = factors.iter().map(|f| magnitudes(f)).collect();
            let magnitude = dense_forward(&c.spec, &abs_factors, &magnitudes(&x), batch);
            let error = rounding_error(&y, &dense_forward(&c.spec, &factors, &x, batch), &magnitude);
            prop_assert!(error < 1e-4, "f32 rounding error {} for\n{}", error, nest);
        }
    }
}

#[test]
fn the_egraph_stays_small() {
    // One class per operand subset at most, one node per unordered split of each (half of what
    // the rules saturate to) and the leaves; the bound leaves out more as layers grow.
    let full = |n: u32| (3usize.pow(n) + 1 - 2 * 2usize.pow(n)) / 2 + n as usize;
    for d in 1..=8 {
        let spec = Spec::new(&vec![3; d], &vec![2; d], kcp_ir::Format::kcp(2));
        let c = compile(&spec, &Options::default()).unwrap();
        let n = d as u32 + 1;
        assert!(c.search.complete, "D = {d}: {:?}", c.search);
        assert!(c.search.classes < 2usize.pow(n) && c.search.nodes <= full(n), "D = {d}: {:?}", c.search);
    }
    // Every format at D = 5 (eleven operands for CP and TR: 86,526 unordered splits in all).
    for format in [
        kcp_ir::Format::Cp { rank: 4 },
        kcp_ir::Format::Tt { ranks: vec![1, 2, 2, 2, 2, 1] },
        kcp_ir::Format::Tr { ranks: vec![2; 10] },
        kcp_ir::Format::Bt { blocks: 2, ranks: vec![2; 5] },
        kcp_ir::Format::Ht { rank: 2 },
    ] {
        let c = compile(&Spec::new(&[2, 3, 2, 2, 2], &[2, 2, 2, 2, 2], format.clone()), &Options::default()).unwrap();
        let n = c.graph.operand_count() as u32;
        assert!(c.search.complete && c.search.nodes <= full(n), "{format:?}: {:?}", c.search);
    }
}

mod the_corpus_plans_are_optimal_and_valid {
    corpus_tests!(super::optimal_and_valid);
}

/// One spec of the corpus: its plan costs what the exhaustive oracle finds, and is well formed.
fn optimal_and_valid(name: &str, spec: &Spec) {
    {
        let c = compile(spec, &Options::default()).unwrap();
        let (_, oracle) = optimal_tree(&c.graph, Options::default().max_prep_elems);
        assert_eq!(c.plan.cost(), oracle, "{name}");
        // Every step reads values that exist, and only load-time steps precede per-call ones.
        let prep = c.plan.steps().iter().take_while(|s| s.phase == kcp_ir::Phase::Prep).count();
        assert!(c.plan.steps()[prep..].iter().all(|s| s.phase == kcp_ir::Phase::Call), "{name}");
        // One step per pairwise contraction, plus one per sum at load time.
        let sums = c.plan.steps().iter().filter(|s| s.inputs.iter().any(|(v, _)| *v == kcp_ir::Value::Ones)).count();
        assert_eq!(c.plan.steps().len(), c.graph.operand_count() - 1 + sums, "{name}");
        assert_eq!(c.plan.tree().operands(), OperandSet::all(c.graph.operand_count()), "{name}");
    }
}

#[test]
fn preproducts_are_taken_when_they_pay_and_bounded() {
    // R = 16 over 4x4 -> 4x4: the dense 16x16 weight (256 elements) costs 256 MACs per row,
    // the best sequential order 16 * (4*16 + 4*16) = 2048.
    let spec = Spec::new(&[4, 4], &[4, 4], kcp_ir::Format::kcp(16)).with_batch(1);
    let c = compile(&spec, &Options::default()).unwrap();
    assert_eq!(c.plan.macs(), 256);
    assert_eq!(c.plan.prep_macs(), 16 * 256);
    assert_eq!(c.plan.steps()[0].phase, kcp_ir::Phase::Prep);
    let bounded = compile(&spec, &Options { max_prep_elems: 255, ..Options::default() }).unwrap();
    assert_eq!(bounded.plan.prep_macs(), 0);
    assert_eq!(
        bounded.plan.macs(),
        bounded
            .order(&Tree::forward(bounded.spec.modes()))
            .macs()
            .min(bounded.order(&Tree::reverse(bounded.spec.modes())).macs())
    );
}
