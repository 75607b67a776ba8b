//! The shared corpus of layer specs that every stage and every implementation runs through.
//! Include it with `#[macro_use] mod specs;`: [`corpus`] lists it, and `corpus_tests!(check)`
//! declares one `#[test]` per spec, named for it, that runs `check(name, &spec)`, so that a
//! failure names its spec.

#![allow(dead_code, unused_macros)]

use kcp_ir::Spec;

/// Calls `$callback! { ($($arg)*) name => spec, ... }` with every spec of the corpus; names
/// are unique and file-name safe.
macro_rules! with_corpus {
    ($callback:ident $(, $arg:tt)*) => {
        $callback! {
            ($($arg)*)
            ucf11_out16x4x4x4_r1 => kcp_ir::Spec::new(&[8, 20, 20, 18], &[16, 4, 4, 4], kcp_ir::Format::kcp(1)).with_batch(1),
            ucf11_out4x4x4x16_r1 => kcp_ir::Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], kcp_ir::Format::kcp(1)).with_batch(1),
            ucf11_out4x4x4x16_r4 => kcp_ir::Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], kcp_ir::Format::kcp(4)),
            ucf11_out16x4x4x4_r16 => kcp_ir::Spec::new(&[8, 20, 20, 18], &[16, 4, 4, 4], kcp_ir::Format::kcp(16)).with_batch(16),
            d1_dense_like => kcp_ir::Spec::new(&[12], &[7], kcp_ir::Format::kcp(3)),
            d2_kt => kcp_ir::Spec::new(&[32, 40], &[16, 8], kcp_ir::Format::kcp(2)).with_bias(true),
            d2_high_rank_small => kcp_ir::Spec::new(&[4, 4], &[4, 4], kcp_ir::Format::kcp(16)),
            d3_ones => kcp_ir::Spec::new(&[1, 5, 1], &[3, 1, 2], kcp_ir::Format::kcp(2)),
            d3_expanding => kcp_ir::Spec::new(&[2, 3, 4], &[6, 5, 4], kcp_ir::Format::kcp(3)).with_batch(3),
            d6_small => kcp_ir::Spec::new(&[2, 3, 2, 3, 2, 2], &[3, 2, 2, 1, 2, 3], kcp_ir::Format::kcp(4)),
            d6_rank1 => kcp_ir::Spec::new(&[4, 4, 4, 4, 4, 4], &[2, 2, 2, 2, 2, 2], kcp_ir::Format::kcp(1)).with_batch(8),
            speech_r8 => kcp_ir::Spec::new(&[4, 4, 5, 4], &[4, 8, 8, 8], kcp_ir::Format::kcp(8)),
        }
    };
}

macro_rules! corpus_list {
    (() $($name:ident => $spec:expr),* $(,)?) => {
        vec![$((stringify!($name), $spec)),*]
    };
}

macro_rules! corpus_each {
    (($check:path) $($name:ident => $spec:expr),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $check(stringify!($name), &$spec);
            }
        )*
    };
}

/// One `#[test]` per spec of the corpus, named for it, running `$check(name, &spec)`.
macro_rules! corpus_tests {
    ($check:path) => {
        with_corpus!(corpus_each, $check);
    };
}

/// `(name, spec)` for every layer of the corpus.
pub fn corpus() -> Vec<(&'static str, Spec)> {
    with_corpus!(corpus_list)
}
