//! The declared minimum Rust version (`rust-version` in Cargo.toml) is the true one: no crate
//! that a build or a test of this workspace compiles on this platform needs a newer Rust.
//! (Clippy's `incompatible_msrv` lint, run with `-D warnings` in CI, checks kcp's own uses of
//! the standard library against the same number; the kernels' AVX-512 intrinsics need 1.89,
//! `#[target_feature]` on safe functions 1.86.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::Command;

fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("cargo runs");
    assert!(out.status.success(), "cargo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `1.88` and `1.88.0` alike, as `[1, 88, 0]`.
fn version(v: &str) -> [u64; 3] {
    let mut parts = v.split('.').map(|p| p.parse().unwrap());
    [0; 3].map(|_| parts.next().unwrap_or(0))
}

#[test]
fn no_dependency_needs_a_newer_rust_than_declared() {
    let declared = version(env!("CARGO_PKG_RUST_VERSION"));
    // Every package built for this platform, with any kind of dependency edge.
    let tree = cargo(&["tree", "--workspace", "--locked", "--offline", "-e", "normal,build,dev", "--prefix", "none"]);
    let built: BTreeSet<(String, String)> = tree
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.trim_start_matches('v').to_string()))
        })
        .collect();
    // The packages of this platform only: the others (Windows-only crates of clap's, say) are
    // never downloaded by a build here, so `--offline` could not read them.
    let rustc = Command::new("rustc").arg("-vV").output().expect("rustc runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_string))
        .expect("rustc names its host");
    let metadata: serde_json::Value = serde_json::from_str(&cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--locked",
        "--offline",
        "--filter-platform",
        &host,
    ]))
    .unwrap();
    let mut needs = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        let (name, v) = (package["name"].as_str().unwrap(), package["version"].as_str().unwrap());
        let Some(rust) = package["rust_version"].as_str() else { continue };
        if built.contains(&(name.to_string(), v.to_string())) {
            needs.push((version(rust), format!("{name} {v} needs Rust {rust}")));
        }
    }
    assert!(needs.len() > 10, "found the rust-version of only {} packages", needs.len());
    let (newest, who) = needs.iter().max().unwrap();
    assert!(newest <= &declared, "{who}, but Cargo.toml declares {}", env!("CARGO_PKG_RUST_VERSION"));
}
