//! `kcp tune` as users run it: the JSON front (within the budget, undominated, the parameters
//! each layer's plan reports), padding, the SVG, fits to a dense weight, and the bad inputs
//! (one line, exit 2). `tests/emit.rs` builds what `--emit` prints.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

use serde_json::Value;

fn kcp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kcp")).args(args).output().unwrap()
}

fn json(args: &[&str]) -> Value {
    let out = kcp(&[args, &["--json"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What `kcp plan --json` says of a front point: its parameters and MACs per row.
fn planned(point: &Value) -> (u64, u64) {
    let shape = |v: &Value| v.as_array().unwrap().iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
    let mut args = vec![
        "plan".to_string(),
        "--in-shape".into(),
        shape(&point["in_shape"]),
        "--out-shape".into(),
        shape(&point["out_shape"]),
        "--format".into(),
        point["format"].as_str().unwrap().into(),
        "--json".into(),
    ];
    if let Some(r) = point.get("rank") {
        args.extend(["--rank".into(), r.to_string()]);
    }
    if let Some(r) = point.get("ranks") {
        args.extend(["--ranks".into(), shape(r)]);
    }
    if let Some(b) = point.get("blocks") {
        args.extend(["--blocks".into(), b.to_string()]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kcp")).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["params"].as_u64().unwrap(), v["macs"].as_u64().unwrap())
}

#[test]
fn the_front_is_within_the_budget_undominated_and_planned() {
    // A time bound far past what it takes (timing stops after 1,000 rounds): nothing is cut
    // short on a slow or busy machine, so every format is planned and timed.
    let v =
        json(&["tune", "--in-size", "720", "--out-size", "48", "--params", "300", "--batch", "4", "--time", "600s"]);
    let (front, measured) = (v["front"].as_array().unwrap(), v["measured"].as_array().unwrap());
    assert!(!front.is_empty() && measured.len() >= front.len());
    let formats: std::collections::BTreeSet<&str> = measured.iter().map(|p| p["format"].as_str().unwrap()).collect();
    assert_eq!(formats.len(), 6, "every format timed: {formats:?}");
    let key = |p: &Value| (p["params"].as_u64().unwrap(), p["us_per_row"].as_f64().unwrap());
    for point in front {
        let (params, us) = key(point);
        assert!(params <= 300);
        for other in measured {
            let (q, t) = key(other);
            assert!(!(q >= params && t <= us && (q > params || t < us)), "{point} is dominated by {other}");
        }
        // The layer is what `kcp plan` plans for the same keys.
        assert_eq!(planned(point), (params, point["macs"].as_u64().unwrap()), "{point}");
        let dims = |k: &str| point[k].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).product::<u64>();
        assert_eq!((dims("in_shape"), dims("out_shape")), (720, 48));
    }
}

#[test]
fn a_prime_size_needs_padding_and_gets_it() {
    let out = kcp(&["tune", "--in-size", "97", "--out-size", "8", "--params", "200", "--time", "5s"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("97") && err.contains("--pad"), "{err}");
    let v = json(&["tune", "--in-size", "97", "--out-size", "8", "--params", "200", "--pad", "5%", "--time", "30s"]);
    for point in v["front"].as_array().unwrap() {
        // 97 padded to 100, the only 5-smooth size within 5%.
        let n: u64 = point["in_shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).product();
        assert_eq!(n, 100);
        assert_eq!(point["padded"], Value::Bool(true));
    }
}

#[test]
fn svg_and_dense_fits() {
    let dir = common::test_dir();
    let svg = dir.join("front.svg");
    let w = dir.join("w.npy");
    // A weight that is exactly a tensor train of ranks 1x2x1 on [6, 5] x [4, 3]? Any weight:
    // the fits report their error, TT-SVD's and ALS's, never above 1.
    let values: Vec<f32> = (0..12 * 30).map(|k| ((k * 37 % 101) as f32 / 50.0) - 1.0).collect();
    kcp::npy::write(&w, &[12, 30], &values).unwrap();
    let v = json(&[
        "tune",
        "--in-size",
        "30",
        "--out-size",
        "12",
        "--params",
        "120",
        "--formats",
        "kcp,tt",
        "--dense",
        w.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
        "--time",
        "30s",
    ]);
    for point in v["front"].as_array().unwrap() {
        let e = point["relative_error"].as_f64().unwrap();
        assert!((0.0..=1.0 + 1e-6).contains(&e), "{point}");
    }
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("parameters"), "{}", &text[..100.min(text.len())]);
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = common::test_dir();
    let w = dir.join("w.npy");
    kcp::npy::write(&w, &[3, 4], &[0.0; 12]).unwrap();
    let base = ["tune", "--in-size", "60", "--out-size", "12"];
    for (args, expect) in [
        (vec!["--params", "3"], "no layer of"),
        (vec!["--params", "100", "--in-shape", "5x13"], "multiplies to 65, not 60"),
        (vec!["--params", "100", "--pad=-3%"], "--pad"),
        (vec!["--params", "100", "--pad", "many"], "--pad"),
        (vec!["--params", "100", "--modes", "0"], "--modes"),
        (vec!["--params", "100", "--modes", "3..2"], "--modes"),
        (vec!["--params", "100", "--modes", "9"], "--modes"),
        (vec!["--params", "100", "--time", "soon"], "--time"),
        (vec!["--params", "100", "--formats", "kcp,svd"], "unknown format `svd`"),
        (vec!["--params", "100", "--threads", "0"], "--threads"),
        (vec!["--params", "100", "--batch", "0"], "--batch"),
        (vec!["--params", "100", "--dense", w.to_str().unwrap()], "expected [12, 60]"),
        (vec!["--params", "100", "--dense", dir.join("missing.npy").to_str().unwrap()], "missing.npy"),
    ] {
        let out = kcp(&[&base[..], &args[..]].concat());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // Sizes of 0 or 1.
    let out = kcp(&["tune", "--in-size", "1", "--out-size", "12", "--params", "100"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn given_layers_are_timed_beside_the_candidates() {
    let v = json(&[
        "tune",
        "--in-size",
        "60",
        "--out-size",
        "12",
        "--params",
        "60",
        "--compare",
        "cp:4x3x5:2x3x2:2",
        "--compare",
        "bt:4x3x5:2x3x2:2/1x1x1",
        "--time",
        "20s",
    ]);
    let compared = v["compared"].as_array().unwrap();
    assert_eq!(compared.len(), 2);
    assert_eq!((compared[0]["format"].as_str(), compared[0]["rank"].as_u64()), (Some("cp"), Some(2)));
    assert_eq!((compared[1]["blocks"].as_u64(), compared[1]["params"].as_u64()), (Some(2), Some(56)));
    assert!(compared.iter().all(|p| p["us_per_row"].as_f64().unwrap() > 0.0));
    for (given, expect) in
        [("cp:4x3x5:2x3x2", "four fields"), ("cp:4x3x5:2x2x2:2", "60 -> 12"), ("svd:4:3:1", "format")]
    {
        let out = kcp(&["tune", "--in-size", "60", "--out-size", "12", "--params", "60", "--compare", given]);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!((out.status.code(), err.lines().count()), (Some(2), 1), "{given}: {err}");
        assert!(err.contains(expect), "{given}: {err}");
    }
}
