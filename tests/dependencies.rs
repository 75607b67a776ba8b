//! The library carries only its own dependencies: a program that uses `kcp_layer!` and the
//! runtime compiles no command-line stack (the `kcp` binary is the crate kcp-cli), and without
//! the default features no linear algebra (faer serves `kcp::compress` alone).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::Command;

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
    assert!(!lean.contains("faer"), "without default features: {lean:?}");
    for needed in ["kcp-ir", "kcp-macros", "kcp-runtime", "egg", "safetensors", "rayon"] {
        assert!(lean.contains(needed), "{needed} missing from {lean:?}");
    }
}
