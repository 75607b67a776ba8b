//! The worked numbers of docs/cost-model.md, reproduced.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kcp_ir::{compile, Options, Spec, Tree};

fn macs(out: &[usize], rank: usize) -> (u64, u64, u64, u64, u64) {
    let c = compile(&Spec::new(&[8, 20, 20, 18], out, kcp_ir::Format::kcp(rank)).with_batch(1), &Options::default())
        .unwrap();
    (
        c.spec.params(),
        c.spec.dense_params(),
        c.order(&Tree::forward(c.spec.modes())).macs(),
        c.order(&Tree::reverse(c.spec.modes())).macs(),
        c.plan.macs(),
    )
}

#[test]
fn ucf11_gate_mode_first() {
    let (params, dense, forward, reverse, optimal) = macs(&[16, 4, 4, 4], 1);
    assert_eq!((params, dense), (360, 58_982_400));
    assert_eq!(dense / params, 163_840);
    assert_eq!((forward, reverse, optimal), (1_492_992, 300_032, 293_888));
}

#[test]
fn ucf11_gate_mode_last() {
    let (params, dense, forward, reverse, optimal) = macs(&[4, 4, 4, 16], 1);
    assert_eq!(params, 480);
    assert_eq!(dense / params, 122_880);
    assert_eq!((forward, reverse, optimal), (387_072, 1_175_552, 304_128));
}

#[test]
fn sequential_orders_scale_linearly_in_batch_and_rank() {
    let base = compile(
        &Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], kcp_ir::Format::kcp(1)).with_batch(1),
        &Options::default(),
    )
    .unwrap();
    let scaled = compile(
        &Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], kcp_ir::Format::kcp(4)).with_batch(16),
        &Options::default(),
    )
    .unwrap();
    assert_eq!(
        scaled.order(&Tree::forward(scaled.spec.modes())).macs(),
        64 * base.order(&Tree::forward(base.spec.modes())).macs()
    );
    assert_eq!(
        scaled.order(&Tree::reverse(scaled.spec.modes())).macs(),
        64 * base.order(&Tree::reverse(base.spec.modes())).macs()
    );
    assert_eq!(scaled.plan.macs(), 64 * base.plan.macs());
}
