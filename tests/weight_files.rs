//! Loading generated layers from safetensors files, and every way a file can be wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use kcp::{kcp_layer, save, Error, NamedTensor};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

kcp_layer! { struct Kt { in_shape: [6, 5], out_shape: [4, 3], rank: 2, bias: true } }

fn temp(name: &str) -> PathBuf {
    common::test_dir().join(name)
}

fn tensors(layer: &Kt) -> Vec<NamedTensor> {
    layer.weights().tensors("", &common::kcp_cores(&Kt::FACTOR_SHAPES))
}

#[test]
fn save_then_load_round_trips() {
    let layer = Kt::random(5);
    let path = temp("round_trip.safetensors");
    save(&path, &tensors(&layer)).unwrap();
    let loaded = Kt::load(&path).unwrap();
    assert_eq!(loaded.weights(), layer.weights());
    let x = vec![0.3f32; 2 * Kt::IN];
    let (mut a, mut b) = (vec![0.0; 2 * Kt::OUT], vec![0.0; 2 * Kt::OUT]);
    layer.forward(&x, &mut a).unwrap();
    loaded.forward(&x, &mut b).unwrap();
    assert_eq!(a, b);
}

fn load_error(name: &str, tensors: &[NamedTensor]) -> String {
    let path = temp(name);
    save(&path, tensors).unwrap();
    Kt::load(&path).unwrap_err().to_string()
}

#[test]
fn missing_and_misshapen_tensors() {
    let good = tensors(&Kt::random(1));
    let without_bias: Vec<_> = good.iter().filter(|t| t.name != "bias").cloned().collect();
    assert_eq!(load_error("no_bias.safetensors", &without_bias), "tensor `bias` is missing");
    let without_factor: Vec<_> = good.iter().filter(|t| t.name != "factor.1").cloned().collect();
    assert_eq!(load_error("no_factor.safetensors", &without_factor), "tensor `factor.1` is missing");
    let mut transposed = good.clone();
    transposed[0].shape = vec![2, 6, 4];
    assert_eq!(
        load_error("transposed.safetensors", &transposed),
        "tensor `factor.0` has shape [2, 6, 4], expected [2, 4, 6]"
    );
    let mut nan = good;
    nan[2].values[1] = f32::INFINITY;
    assert_eq!(load_error("inf.safetensors", &nan), "tensor `bias` holds a non-finite value (inf) at element 1");
}

#[test]
fn wrong_dtype() {
    let path = temp("f64.safetensors");
    let layer = Kt::random(1);
    let mut named = tensors(&layer);
    let f64_bytes: Vec<u8> = named[0].values.iter().flat_map(|&v| (v as f64).to_le_bytes()).collect();
    named.remove(0);
    let f32_bytes: Vec<Vec<u8>> =
        named.iter().map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let mut views = vec![("factor.0".to_string(), TensorView::new(Dtype::F64, vec![2, 4, 6], &f64_bytes).unwrap())];
    for (t, bytes) in named.iter().zip(&f32_bytes) {
        views.push((t.name.clone(), TensorView::new(Dtype::F32, t.shape.clone(), bytes).unwrap()));
    }
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    assert_eq!(Kt::load(&path).unwrap_err().to_string(), "tensor `factor.0` has dtype F64, expected F32");
}

#[test]
fn missing_truncated_and_corrupt_files() {
    let missing = temp("does_not_exist.safetensors");
    let error = Kt::load(&missing).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error}");
    assert!(error.to_string().starts_with("cannot access "), "{error}");
    let path = temp("truncated.safetensors");
    save(&path, &tensors(&Kt::random(1))).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let error = Kt::load(&path).unwrap_err();
    assert!(matches!(error, Error::SafeTensors { .. }), "{error}");
    std::fs::write(&path, b"not a safetensors file at all").unwrap();
    let error = Kt::load(&path).unwrap_err();
    assert!(matches!(error, Error::SafeTensors { .. }), "{error}");
    assert!(error.to_string().contains("is not a valid safetensors file"), "{error}");
}

#[test]
fn dense_weight_matches_the_f64_reference() {
    let layer = Kt::random(9);
    let compiled =
        kcp::ir::compile(&kcp::ir::Spec::new(&[6, 5], &[4, 3], kcp::ir::Format::kcp(2)), &Default::default()).unwrap();
    let factors: Vec<Vec<f64>> = layer.weights().cores.iter().map(|f| f.iter().map(|&v| v as f64).collect()).collect();
    let reference = kcp::ir::test::dense_weight(&compiled.spec, &factors);
    let dense: Vec<f64> = layer.weights().dense(&Kt::FACTOR_SHAPES).iter().map(|&v| v as f64).collect();
    assert!(kcp::ir::test::relative_error(&dense, &reference) < 1e-6);
}
