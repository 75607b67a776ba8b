//! Snapshots of the emitted, prettyplease-formatted code for the shared corpus. Review every
//! diff: it is how a lowering or cost-model change shows up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod specs;

use kcp_ir::{compile, Options};
use kcp_ir::{emit_layer, Item};
use proc_macro2::{Ident, Span};
use quote::quote;

fn camel(name: &str) -> String {
    name.split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect()
}

fn emitted(name: &str, spec: &kcp_ir::Spec) -> String {
    emitted_with(name, spec, None)
}

/// The layer's code; `backward` as the macro key gives it (`Some(Backward::Dx)` for `backward: dx`).
fn emitted_with(name: &str, spec: &kcp_ir::Spec, backward: Option<kcp_ir::Backward>) -> String {
    let compiled = compile(spec, &Options::default()).unwrap();
    let item = Item {
        attrs: quote!(#[doc = "A layer of the corpus."]),
        vis: quote!(pub),
        name: Ident::new(&camel(name), Span::call_site()),
        threads: None,
        backward,
        files: true,
    };
    let file: syn::File = syn::parse2(emit_layer(&compiled, &item)).unwrap();
    prettyplease::unparse(&file)
}

/// The emitted code of one spec of the corpus (one test per spec, named for it).
fn corpus_code(name: &str, spec: &kcp_ir::Spec) {
    let code = emitted(name, spec);
    assert_eq!(code, emitted(name, spec), "{name}: emission is not deterministic");
    insta::assert_snapshot!(format!("code_{name}"), code);
}

mod corpus_code {
    corpus_tests!(super::corpus_code);
}

/// The training path of a few layers of the corpus (one mode, a sweep with kept intermediates,
/// a pre-product, the UCF11 layer), with and without dx: the layer's code is the same as in
/// `corpus_code` up to the training items, which are snapshotted alone.
#[test]
fn corpus_backward_code() {
    let corpus = specs::corpus();
    for (name, dx) in [("d1_dense_like", true), ("d3_ones", true), ("d2_kt", false), ("ucf11_out4x4x4x16_r4", false)] {
        let spec = &corpus.iter().find(|(n, _)| *n == name).unwrap().1;
        let code = emitted_with(name, spec, Some(if dx { kcp_ir::Backward::Dx } else { kcp_ir::Backward::Weights }));
        let start = code.find("    /// MACs per input row of the backward pass.").unwrap();
        assert!(code.starts_with(&emitted(name, spec)[..start]), "{name}: the forward code changed");
        let suffix = if dx { "dx" } else { "weights" };
        insta::assert_snapshot!(format!("backward_{name}_{suffix}"), &code[start..]);
    }
}

/// The loop nests of one spec of the corpus (one test per spec, named for it).
fn corpus_loop_nest(name: &str, spec: &kcp_ir::Spec) {
    let compiled = compile(spec, &Options::default()).unwrap();
    let lanes = compiled.lanes.as_ref().map_or_else(String::new, |lanes| format!("\n{lanes}"));
    insta::assert_snapshot!(format!("nest_{name}"), format!("{}{lanes}", compiled.nest));
}

mod corpus_loop_nests {
    corpus_tests!(super::corpus_loop_nest);
}

/// No tiny calls: every call of the micro-kernel in the corpus's nests does at least a thousand
/// MACs (about its fixed cost), or its step calls it at most 4 times (one repeat inside the
/// call, one loop around it: d6_small's 8 interleaved rows make 4 calls of 768), and the UCF11 rank-4 layer calls
/// the kernel 14 times per row (it called it 168 times, 128 of them 4x20x18 products, before
/// the loop around a product ran inside the call).
#[test]
fn no_call_is_tiny() {
    use kcp_core::{Inner, Kernel};
    let per_call = |k: &Kernel| match k.inner {
        Inner::Gemm { shape, written_out: false } => Some(shape.macs()),
        Inner::GemmRowsFromA { shape, written_out: false } => Some(shape.gemm().macs()),
        _ => None,
    };
    for (name, spec) in specs::corpus() {
        let compiled = compile(&spec, &Options::default()).unwrap();
        for nest in std::iter::once(&compiled.nest).chain(&compiled.lanes) {
            for kernel in &nest.call {
                let Some(macs) = per_call(kernel) else { continue };
                let calls: usize = kernel.loops.iter().map(|l| l.extent).product();
                assert!(macs >= 1000 || calls <= 4, "{name}: {calls} calls of {macs} MACs in\n{kernel}");
            }
        }
        if name == "ucf11_out4x4x4x16_r4" {
            assert_eq!(compiled.nest.calls_per_row(), 14);
        }
    }
}

/// The stub of a declaration with errors is a whole layer (or cell) for every shape of mistake:
/// any number of modes, with or without a bias or a cell, even a spec with no shapes at all.
#[test]
fn every_stub_is_a_whole_item() {
    let item = Item {
        attrs: quote!(),
        vis: quote!(pub),
        name: Ident::new("Stub", Span::call_site()),
        threads: None,
        backward: None,
        files: true,
    };
    for entry in &kcp_ir::network::FORMATS {
        for modes in 0..=10 {
            for (bias, cell) in
                [(false, None), (true, None), (true, Some(kcp_ir::CellKind::Lstm)), (true, Some(kcp_ir::CellKind::Gru))]
            {
                // A malformed declaration: zero dims, mismatched modes, every rank key 0.
                let format = entry.make(kcp_ir::network::RankArgs::default());
                let mut spec = kcp_ir::Spec::new(&vec![0; modes], &vec![7; modes + 1], format).with_bias(bias);
                if let Some(kind) = cell {
                    spec = spec.with_cell(kind, 0);
                }
                let file: syn::File = syn::parse2(kcp_ir::emit_stub(&spec, cell.is_some(), &item)).unwrap();
                let code = prettyplease::unparse(&file);
                let what = format!("{} with {modes} modes, {cell:?}", entry.name);
                assert!(code.contains("pub fn forward_par("), "{what}: {code}");
                assert!(code.contains("pub const CORE_NAMES"), "{what}");
                assert_eq!(code.contains("pub const RANK"), entry.name == "kcp", "{what}");
                assert_eq!(code.contains("pub fn zero_state("), cell.is_some(), "{what}");
            }
        }
    }
}

/// One emitted layer per format other than KCP (a small layer, in [6, 5] -> out [4, 3], with a
/// bias): the same struct and kernels as a KCP layer's, the format's cores as its weights.
#[test]
fn format_code() {
    use kcp_ir::network::Format;
    let formats = [
        Format::Cp { rank: 3 },
        Format::Tt { ranks: vec![1, 3, 1] },
        Format::Tr { ranks: vec![2, 3, 2, 1] },
        Format::Bt { blocks: 2, ranks: vec![2, 3] },
        Format::Ht { rank: 3 },
    ];
    for format in formats {
        let name = format.name();
        let item = Item {
            attrs: quote!(#[doc = "A layer of another format."]),
            vis: quote!(pub),
            name: Ident::new(&camel(&format!("small_{name}")), Span::call_site()),
            threads: None,
            backward: None,
            files: true,
        };
        let compiled =
            compile(&kcp_ir::Spec::new(&[6, 5], &[4, 3], format).with_bias(true), &Options::default()).unwrap();
        let file: syn::File = syn::parse2(emit_layer(&compiled, &item)).unwrap();
        insta::assert_snapshot!(format!("format_{name}"), prettyplease::unparse(&file));
    }
}

/// A tensor train's training path (`backward: dx`): its backward rows over the cores in their
/// storage layouts, zero gradients of the cores' shapes.
#[test]
fn format_training_code() {
    let spec = kcp_ir::Spec::new(&[6, 5], &[4, 3], kcp_ir::Format::Tt { ranks: vec![1, 3, 1] }).with_bias(true);
    let item = Item {
        attrs: quote!(#[doc = "A trainable tensor train."]),
        vis: quote!(pub),
        name: Ident::new("SmallTtTrained", Span::call_site()),
        threads: None,
        backward: Some(kcp_ir::Backward::Dx),
        files: true,
    };
    let compiled = compile(&spec, &Options::default()).unwrap();
    let file: syn::File = syn::parse2(emit_layer(&compiled, &item)).unwrap();
    insta::assert_snapshot!("format_tt_backward_dx", prettyplease::unparse(&file));
}
