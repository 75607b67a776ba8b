//! Snapshots of the printed plans (and of the graph printers) for the shared corpus.
//! A cost-model change shows up here as a diff: review it, never accept it blindly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod specs;

use kcp_ir::{compile, Options, Spec};

#[test]
fn corpus_plans() {
    for (name, spec) in specs::corpus() {
        let c = compile(&spec, &Options::default()).unwrap();
        let text = format!(
            "{}\nforward {} MACs, reverse {} MACs, chosen {} MACs\n\n{}\n",
            c.spec,
            c.forward.macs(),
            c.reverse.macs(),
            c.plan.macs(),
            c.plan
        );
        insta::assert_snapshot!(name, text);
    }
}

#[test]
fn graph_printers() {
    let c = compile(&Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], 4), &Options::default()).unwrap();
    insta::assert_snapshot!("ucf11_graph_text", c.graph.to_string());
    insta::assert_snapshot!("ucf11_graph_dot", c.graph.to_dot());
}

#[test]
fn paper_orders_print() {
    let c = compile(&Spec::new(&[8, 20, 20, 18], &[16, 4, 4, 4], 1).with_batch(1), &Options::default()).unwrap();
    insta::assert_snapshot!("ucf11_out16x4x4x4_r1_forward", c.forward.to_string());
    insta::assert_snapshot!("ucf11_out16x4x4x4_r1_reverse", c.reverse.to_string());
}
