//! The library carries only its own dependencies: a program that uses `kcp_layer!` and the
//! runtime compiles no command-line stack (the `kcp` binary is the crate kcp-cli), and without
//! the default features no linear algebra (faer serves `kcp::compress` alone) and no weight
//! files (safetensors and its JSON parser serve `files` alone).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::Command;

mod common;

/// The packages `kcp` depends on through normal edges, with these extra arguments.
fn normal_dependencies(extra: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["tree", "-p", "kcp", "-e", "normal", "--locked", "--offline", "--prefix", "none"];
    args.extend(extra);
    let out = Command::new(cargo).args(&args).current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("cargo runs");
    assert!(out.status.success(), "cargo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

#[test]
fn the_library_compiles_no_command_line_stack() {
    let all = normal_dependencies(&[]);
    for cli in ["clap", "indicatif", "prettyplease", "kcp-cli"] {
        assert!(!all.contains(cli), "kcp depends on {cli}: {all:?}");
    }
    assert!(all.contains("faer"), "the default features fit dense weights (kcp::compress)");
    let lean = normal_dependencies(&["--no-default-features"]);
    for optional in ["faer", "safetensors", "serde_json"] {
        assert!(!lean.contains(optional), "{optional} without default features: {lean:?}");
    }
    assert!(all.contains("safetensors"), "the default features read and write weight files");
    for needed in ["kcp-ir", "kcp-macros", "kcp-runtime", "egg", "rayon"] {
        assert!(lean.contains(needed), "{needed} missing from {lean:?}");
    }
}

/// A user's crate on `kcp` without default features, declaring a layer, a trained layer and a
/// cell: the generated code compiles without weight files (their `load` is left out), and the
/// crate's dependencies hold none of the optional stacks.
#[test]
fn a_lean_user_crate_builds() {
    let dir = common::test_dir();
    let kcp = env!("CARGO_MANIFEST_DIR");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"lean\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n\
             kcp = {{ path = {kcp:?}, default-features = false }}\n\n[workspace]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("src/main.rs"),
        r#"use kcp::kcp_layer;
kcp_layer! { struct Small { in_shape: [4, 6], out_shape: [3, 2], rank: 2, bias: true } }
kcp_layer! { struct Trained { in_shape: [4, 6], out_shape: [3, 2], format: tt, ranks: [1, 2, 1], backward: dx } }
kcp_layer! { struct Cell { in_shape: [4, 6], out_shape: [4, 2], rank: 2, bias: true, cell: lstm, hidden: 2 } }
fn main() {
    let layer = Small::random(1);
    let mut y = [0.0f32; 6];
    layer.forward(&[1.0; 24], &mut y).unwrap();
    let _ = (Trained::random(2), Cell::random(3));
    println!("{y:?}");
}
"#,
    )
    .unwrap();
    // The workspace's lock file, so that the user's crate resolves to the same versions offline.
    std::fs::copy(std::path::Path::new(kcp).join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let run = |args: &[&str]| {
        let out = Command::new(&cargo)
            .args(args)
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", dir.join("target"))
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "cargo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let tree = run(&["tree", "-e", "normal", "--offline", "--prefix", "none"]);
    for absent in ["serde_json", "safetensors", "faer", "clap", "indicatif"] {
        assert!(!tree.lines().any(|l| l.starts_with(&format!("{absent} "))), "{absent} in\n{tree}");
    }
    run(&["check", "--offline", "--quiet"]);
}
