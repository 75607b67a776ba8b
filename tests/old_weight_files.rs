//! Weight files written before the formats shared one pipeline (tests/fixtures/8516be0, one of
//! each format and an LSTM) still load, through the generated layers and the executor alike,
//! and give the outputs they gave then.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use kcp::ir::network::Format;
use kcp::ir::{compile, Options, Spec};
use kcp::{npy, Executor, Weights};

kcp::kcp_layer! { struct Kcp { in_shape: [4, 3], out_shape: [2, 3], rank: 2, bias: true } }
kcp::kcp_layer! { struct Cp { in_shape: [4, 3], out_shape: [2, 3], format: cp, rank: 3, bias: true } }
kcp::kcp_layer! { struct Tt { in_shape: [4, 3], out_shape: [2, 3], format: tt, ranks: [1, 2, 1], bias: true } }
kcp::kcp_layer! { struct Tr { in_shape: [4, 3], out_shape: [2, 3], format: tr, ranks: [2, 2, 2, 2], bias: true } }
kcp::kcp_layer! { struct Bt { in_shape: [4, 3], out_shape: [2, 3], format: bt, blocks: 2, ranks: [2, 2], bias: true } }
kcp::kcp_layer! { struct Ht { in_shape: [4, 3], out_shape: [2, 3], format: ht, rank: 2, bias: true } }
kcp::kcp_layer! { struct Lstm { in_shape: [4, 3], out_shape: [4, 2], rank: 2, cell: lstm, hidden: 2 } }

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/8516be0").join(name)
}

fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{what}[{k}]: {g} against {w} then");
    }
}

#[test]
fn every_format_loads_and_computes_what_it_did() {
    let x = npy::read(&fixture("x.npy")).unwrap().data;
    let mut generated = vec![vec![0.0f32; 18]; 6];
    Kcp::load(fixture("kcp.safetensors")).unwrap().forward(&x, &mut generated[0]).unwrap();
    Cp::load(fixture("cp.safetensors")).unwrap().forward(&x, &mut generated[1]).unwrap();
    Tt::load(fixture("tt.safetensors")).unwrap().forward(&x, &mut generated[2]).unwrap();
    Tr::load(fixture("tr.safetensors")).unwrap().forward(&x, &mut generated[3]).unwrap();
    Bt::load(fixture("bt.safetensors")).unwrap().forward(&x, &mut generated[4]).unwrap();
    Ht::load(fixture("ht.safetensors")).unwrap().forward(&x, &mut generated[5]).unwrap();
    let formats = [
        Format::Kcp { rank: 2 },
        Format::Cp { rank: 3 },
        Format::Tt { ranks: vec![1, 2, 1] },
        Format::Tr { ranks: vec![2, 2, 2, 2] },
        Format::Bt { blocks: 2, ranks: vec![2, 2] },
        Format::Ht { rank: 2 },
    ];
    for (format, generated) in formats.into_iter().zip(&generated) {
        let name = format.name();
        let want = npy::read(&fixture(&format!("{name}_y.npy"))).unwrap().data;
        close(generated, &want, &format!("{name}, generated"));
        let compiled = compile(&Spec::new(&[4, 3], &[2, 3], format), &Options::default()).unwrap();
        let weights =
            Weights::load(&fixture(&format!("{name}.safetensors")), "", &compiled.nest.cores, Some(6)).unwrap();
        let mut y = vec![0.0f32; 18];
        Executor::new(compiled.nest, weights).unwrap().forward(&x, &mut y).unwrap();
        close(&y, &want, &format!("{name}, executor"));
    }
}

#[test]
fn a_recurrent_layer_loads_and_computes_what_it_did() {
    let x = npy::read(&fixture("x.npy")).unwrap().data;
    let want = npy::read(&fixture("lstm_h.npy")).unwrap().data;
    let lstm = Lstm::load(fixture("lstm.safetensors")).unwrap();
    let mut hs = vec![0.0f32; 6];
    lstm.forward(&x, 1, &mut hs, &mut Lstm::zero_state(1)).unwrap();
    close(&hs, &want, "lstm");
}
