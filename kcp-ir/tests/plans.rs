//! Snapshots of the printed plans (and of the graph printers) for the shared corpus.
//! A cost-model change shows up here as a diff: review it, never accept it blindly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod specs;

use kcp_ir::{compile, Options, Spec, Tree};

/// The plan of one spec of the corpus (one test per spec, named for it).
fn corpus_plan(name: &str, spec: &Spec) {
    let c = compile(spec, &Options::default()).unwrap();
    let text = format!(
        "{}\nforward {} MACs, reverse {} MACs, chosen {} MACs\n\n{}\n",
        c.spec,
        c.order(&Tree::forward(c.spec.modes())).macs(),
        c.order(&Tree::reverse(c.spec.modes())).macs(),
        c.plan.macs(),
        c.plan
    );
    insta::assert_snapshot!(name, text);
}

mod corpus_plans {
    corpus_tests!(super::corpus_plan);
}

#[test]
fn graph_printers() {
    let c = compile(&Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], kcp_ir::Format::kcp(4)), &Options::default()).unwrap();
    insta::assert_snapshot!("ucf11_graph_text", c.graph.to_string());
    insta::assert_snapshot!("ucf11_graph_dot", c.graph.to_dot());
}

#[test]
fn paper_orders_print() {
    let c = compile(
        &Spec::new(&[8, 20, 20, 18], &[16, 4, 4, 4], kcp_ir::Format::kcp(1)).with_batch(1),
        &Options::default(),
    )
    .unwrap();
    insta::assert_snapshot!("ucf11_out16x4x4x4_r1_forward", c.order(&Tree::forward(c.spec.modes())).to_string());
    insta::assert_snapshot!("ucf11_out16x4x4x4_r1_reverse", c.order(&Tree::reverse(c.spec.modes())).to_string());
}

/// With one mode, the rank is an index of the factor alone: it is summed once at load time
/// (`y = x (sum_r A[r])^T`, B*m*n MACs per call instead of B*R*m*n), unless the rank is 1 or the
/// summed factor would break the load-time bound.
#[test]
fn one_mode_sums_its_rank_at_load() {
    for (n, m, rank, batch) in [(12, 7, 3, 1), (30, 20, 8, 16), (5, 1, 2, 4)] {
        let c =
            compile(&Spec::new(&[n], &[m], kcp_ir::Format::kcp(rank)).with_batch(batch), &Options::default()).unwrap();
        assert_eq!(c.plan.macs(), (batch * m * n) as u64, "{n} -> {m} r{rank}");
        assert_eq!(c.plan.prep_macs(), (rank * m * n) as u64, "{n} -> {m} r{rank}");
        assert_eq!(c.plan.steps()[0].phase, kcp_ir::Phase::Prep);
    }
    let one = compile(&Spec::new(&[12], &[7], kcp_ir::Format::kcp(1)), &Options::default()).unwrap();
    assert_eq!((one.plan.macs(), one.plan.prep_macs(), one.plan.steps().len()), (84, 0, 1));
    let bounded = Options { max_prep_elems: 83, ..Options::default() };
    let big = compile(&Spec::new(&[12], &[7], kcp_ir::Format::kcp(3)), &bounded).unwrap();
    assert_eq!((big.plan.macs(), big.plan.prep_macs()), (3 * 84, 0));
}
