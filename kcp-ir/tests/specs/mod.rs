//! The shared corpus of layer specs that every stage and every implementation runs through.
//! Include it with `#[path = ".../kcp-ir/tests/specs/mod.rs"] mod specs;`.

#![allow(dead_code)]

use kcp_ir::Spec;

/// `(name, spec)` for every layer of the corpus; names are unique and file-name safe.
pub fn corpus() -> Vec<(&'static str, Spec)> {
    vec![
        ("ucf11_out16x4x4x4_r1", Spec::new(&[8, 20, 20, 18], &[16, 4, 4, 4], kcp_ir::Format::kcp(1)).with_batch(1)),
        ("ucf11_out4x4x4x16_r1", Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], kcp_ir::Format::kcp(1)).with_batch(1)),
        ("ucf11_out4x4x4x16_r4", Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], kcp_ir::Format::kcp(4))),
        ("ucf11_out16x4x4x4_r16", Spec::new(&[8, 20, 20, 18], &[16, 4, 4, 4], kcp_ir::Format::kcp(16)).with_batch(16)),
        ("d1_dense_like", Spec::new(&[12], &[7], kcp_ir::Format::kcp(3))),
        ("d2_kt", Spec::new(&[32, 40], &[16, 8], kcp_ir::Format::kcp(2)).with_bias(true)),
        ("d2_high_rank_small", Spec::new(&[4, 4], &[4, 4], kcp_ir::Format::kcp(16))),
        ("d3_ones", Spec::new(&[1, 5, 1], &[3, 1, 2], kcp_ir::Format::kcp(2))),
        ("d3_expanding", Spec::new(&[2, 3, 4], &[6, 5, 4], kcp_ir::Format::kcp(3)).with_batch(3)),
        ("d6_small", Spec::new(&[2, 3, 2, 3, 2, 2], &[3, 2, 2, 1, 2, 3], kcp_ir::Format::kcp(4))),
        ("d6_rank1", Spec::new(&[4, 4, 4, 4, 4, 4], &[2, 2, 2, 2, 2, 2], kcp_ir::Format::kcp(1)).with_batch(8)),
        ("speech_r8", Spec::new(&[4, 4, 5, 4], &[4, 8, 8, 8], kcp_ir::Format::kcp(8))),
    ]
}
