//! What `kcp emit` prints is a layer a user's crate compiles and runs: the printed code, for a
//! KCP layer and a tensor train, built as a crate that depends on kcp (trybuild) and run beside
//! the same layers declared with `kcp_layer!`, computing the same y bit for bit; and so is the
//! declaration `kcp tune --emit` prints, whose plan is the chosen layer's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

/// `kcp emit` of a layer, under the struct name `name`.
fn emit(layer: &[&str], name: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kcp")).arg("emit").args(layer).args(["--name", name]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn emitted_code_compiles_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let kcp_layer = emit(&["--in-shape", "4x3x5", "--out-shape", "2x3x2", "--rank", "2"], "EmittedKcp");
    let tt =
        emit(&["--in-shape", "4x3x5", "--out-shape", "2x3x2", "--format", "tt", "--ranks", "1x2x3x1"], "EmittedTt");
    // `kcp tune --emit`, where one layer fits: KCP rank 2 on these modes (54 parameters; rank 1,
    // half of it, is below the tuner's smallest rank).
    let tuned = Command::new(env!("CARGO_BIN_EXE_kcp"))
        .args(["tune", "--in-size", "60", "--out-size", "12", "--params", "60", "--formats", "kcp"])
        .args(["--in-shape", "4x3x5", "--out-shape", "2x3x2", "--time", "5s", "--emit"])
        .output()
        .unwrap();
    assert!(tuned.status.success(), "{}", String::from_utf8_lossy(&tuned.stderr));
    std::fs::write(dir.path().join("tuned_layer.rs"), &tuned.stdout).unwrap();
    std::fs::write(dir.path().join("kcp_layer.rs"), kcp_layer).unwrap();
    std::fs::write(dir.path().join("tt_layer.rs"), tt).unwrap();
    let main = r#"
include!("kcp_layer.rs");
include!("tt_layer.rs");
include!("tuned_layer.rs");

kcp::kcp_layer! { struct DeclaredKcp { in_shape: [4, 3, 5], out_shape: [2, 3, 2], rank: 2 } }
kcp::kcp_layer! { struct DeclaredTt { in_shape: [4, 3, 5], out_shape: [2, 3, 2], format: tt, ranks: [1, 2, 3, 1] } }
kcp::kcp_layer! { struct DeclaredRank2 { in_shape: [4, 3, 5], out_shape: [2, 3, 2], rank: 2 } }

fn main() {
    let x: Vec<f32> = (0..3 * 60).map(|k| (k % 7) as f32 / 7.0 - 0.5).collect();
    let run = |f: &dyn Fn(&[f32], &mut [f32])| {
        let mut y = vec![0.0f32; 3 * 12];
        f(&x, &mut y);
        y
    };
    let (emitted, declared) = (EmittedKcp::random(5), DeclaredKcp::random(5));
    assert_eq!(run(&|x, y| emitted.forward(x, y).unwrap()), run(&|x, y| declared.forward(x, y).unwrap()));
    assert_eq!((EmittedKcp::MACS_PER_SAMPLE, EmittedKcp::RANK), (DeclaredKcp::MACS_PER_SAMPLE, DeclaredKcp::RANK));
    let (emitted, declared) = (EmittedTt::random(6), DeclaredTt::random(6));
    assert_eq!(run(&|x, y| emitted.forward(x, y).unwrap()), run(&|x, y| declared.forward(x, y).unwrap()));
    assert_eq!((EmittedTt::MACS_PER_SAMPLE, EmittedTt::CORE_NAMES), (DeclaredTt::MACS_PER_SAMPLE, DeclaredTt::CORE_NAMES));
    // The tuned declaration is the layer the tuner chose, with its plan.
    let (tuned, declared) = (TunedLayer::random(7), DeclaredRank2::random(7));
    assert_eq!(run(&|x, y| tuned.forward(x, y).unwrap()), run(&|x, y| declared.forward(x, y).unwrap()));
    assert_eq!(TunedLayer::PLAN, DeclaredRank2::PLAN);
}
"#;
    let path = dir.path().join("emitted_layers.rs");
    std::fs::write(&path, main).unwrap();
    trybuild::TestCases::new().pass(&path);
}
