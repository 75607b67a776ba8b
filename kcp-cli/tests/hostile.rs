//! The `kcp` command against hostile but realistic input: every case ends with exit code 2 and
//! one line on stderr (or, for a closed stdout, quietly), without hanging, within bounded
//! memory, and leaves no output file (or the old one intact). Each case is one example of a
//! class of fault; the generators of `tests/loaders.rs` cover the classes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kcp::{npy, save, CellKind, NamedTensor, Recurrent, Weights};

fn dir() -> PathBuf {
    common::test_dir()
}

fn path(name: &str) -> String {
    dir().join(name).to_string_lossy().into_owned()
}

/// A `.npy` file with this header text and these data bytes (NumPy's version 1 layout).
fn raw_npy(name: &str, header: &str, data: &[u8]) -> String {
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(path(name), bytes).unwrap();
    path(name)
}

fn shape_header(shape: &str) -> String {
    format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `kcp run` of the 6x5 -> 4x3 rank-2 layer with these files and extra flags.
fn run(weights: &str, x: &str, y: &str, extra: &[&str]) -> Vec<String> {
    let mut v = strings(&["run", "--in-shape", "6x5", "--out-shape", "4x3", "--rank", "2"]);
    v.extend(["--weights".into(), weights.into(), "--x".into(), x.into(), "--y".into(), y.into()]);
    v.extend(strings(extra));
    v
}

/// Runs `kcp` and checks the contract: exit code 2, one line on stderr that contains
/// `expected`, no panic, and no hang: a run still going after `WATCHDOG` (these take
/// milliseconds; before, some took from 20 s to forever) is killed and fails the case. That is
/// a hang detector, not a speed test: the bound is far from anything a loaded machine needs.
fn fails(name: &str, args: &[String], expected: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kcp"))
        .args(args)
        .env("KCP_MAX_MEMORY", "2147483648")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > WATCHDOG {
            child.kill().unwrap();
            panic!("{name}: still running after {WATCHDOG:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: not one line:\n{stderr}");
    assert!(stderr.contains(expected), "{name}: {stderr}");
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
}

const WATCHDOG: Duration = Duration::from_secs(120);

/// The table of hostile command lines: (name, arguments, what stderr says), over files made in
/// this test's own directory (a private `/dev/zero`-like device where this process may make
/// one: never the machine's own).
fn cases() -> Vec<(&'static str, Vec<String>, &'static str)> {
    let shapes = [[2, 4, 6], [2, 3, 5]];
    let weights = common::kcp_random(&shapes, None, 1);
    save(Path::new(&path("good.safetensors")), &weights.tensors("", &common::kcp_cores(&shapes))).unwrap();
    let mut extra = weights.tensors("", &common::kcp_cores(&shapes));
    extra.push(NamedTensor::new("factor.2", vec![2, 1, 1], vec![1.0, 2.0]));
    save(Path::new(&path("extra.safetensors")), &extra).unwrap();
    npy::write(Path::new(&path("x.npy")), &[2, 30], &[0.5; 60]).unwrap();
    let good = path("good.safetensors");
    let x = path("x.npy");

    // Shape products that wrap: 2^63 rows of 30, with no data or with 3 rows of it.
    let wraps = raw_npy("wraps.npy", &shape_header("(9223372036854775808, 30)"), &[]);
    let wraps3 = raw_npy("wraps3.npy", &shape_header("(9223372036854775811, 30)"), &[0; 3 * 30 * 4]);
    let huge_t = raw_npy("huge_t.npy", &shape_header("(4, 4611686018427387904, 30)"), &[]);
    // A header of 24 nested brackets (exponential in the old parser).
    let nested = raw_npy("nested.npy", &format!("{{'shape': {}{}}}\n", "[".repeat(24), "]".repeat(24)), &[]);
    // A header that says 2 rows, with one.
    let short = raw_npy("short.npy", &shape_header("(2, 30)"), &[0; 30 * 4]);

    // A safetensors header longer than kcp reads (17 MiB of spaces), and a large file that is
    // not safetensors at all (its first 8 bytes read as a header length of ~2^60).
    let mut long = (17u64 << 20).to_le_bytes().to_vec();
    long.extend(std::iter::repeat_n(b' ', 17 << 20));
    std::fs::write(path("long_header.safetensors"), long).unwrap();
    std::fs::write(path("not_safetensors.bin"), vec![0xAB; 1 << 20]).unwrap();

    // A cell file with an extra factor.
    let cell = Recurrent::random(CellKind::Lstm, 3, 2);
    let cell_shapes = [[2, 4, 6], [2, 3, 5]];
    let w_ih = common::kcp_random(&cell_shapes, Some(12), 3);
    let mut tensors = w_ih.tensors("weight_ih.", &common::kcp_cores(&cell_shapes));
    tensors.retain(|t| t.name != "weight_ih.bias");
    tensors.push(NamedTensor::new("bias_ih", vec![12], w_ih.bias.clone().unwrap()));
    tensors.push(NamedTensor::new("weight_hh", vec![12, 3], cell.weight_hh().to_vec()));
    tensors.push(NamedTensor::new("bias_hh", vec![12], cell.bias_hh().to_vec()));
    save(Path::new(&path("cell.safetensors")), &tensors).unwrap();
    tensors.push(NamedTensor::new("weight_ih.factor.2", vec![2, 1, 1], vec![0.5, 0.5]));
    save(Path::new(&path("cell_extra.safetensors")), &tensors).unwrap();
    npy::write(Path::new(&path("x3.npy")), &[1, 1, 30], &[0.5; 30]).unwrap();

    // A layer whose plan needs 16 GiB of scratch per thread, for a 256 KiB output.
    let big_shapes = [[65536, 4, 1]; 8];
    let big_cores = common::kcp_cores(&big_shapes);
    save(Path::new(&path("big.safetensors")), &Weights::zeros(&big_cores, None).tensors("", &big_cores)).unwrap();
    npy::write(Path::new(&path("x1.npy")), &[1, 1], &[1.0]).unwrap();
    let wide_shapes = [[1, 65536, 1], [1, 65536, 1]];
    let wide_cores = common::kcp_cores(&wide_shapes);
    save(Path::new(&path("wide.safetensors")), &Weights::zeros(&wide_cores, None).tensors("", &wide_cores)).unwrap();
    let ones = "1x1x1x1x1x1x1x1";
    let fours = "4x4x4x4x4x4x4x4";

    let compress = |dense: &str, rank: &str, extra: &[&str]| -> Vec<String> {
        let mut v = strings(&["compress", "--in-shape", "6x5", "--out-shape", "3x4", "--rank", rank, "--dense", dense]);
        v.extend(["--weights-out".into(), path("fit.safetensors")]);
        v.extend(strings(extra));
        v
    };
    npy::write(Path::new(&path("w12x30.npy")), &[12, 30], &[1.0; 360]).unwrap();
    // An endless source of zeros: a private character device 1:5 (root), else a FIFO fed by
    // nothing would hang, so a file of 64 MiB of zeros stands in.
    let zero = path("zero");
    let made = Command::new("mknod").args([&zero, "c", "1", "5"]).output().is_ok_and(|o| o.status.success());
    if !made {
        std::fs::write(&zero, vec![0u8; 64 << 20]).unwrap();
    }

    let y = path("y.npy");
    vec![
        ("wrapped rows", run(&good, &wraps, &y, &[]), "more elements than any file can hold"),
        ("wrapped rows with data", run(&good, &wraps3, &y, &[]), "more elements than any file can hold"),
        (
            "wrapped steps of a cell",
            run(&path("cell.safetensors"), &huge_t, &y, &["--cell", "lstm"]),
            "is not a valid .npy file",
        ),
        ("nested header", run(&good, &nested, &y, &[]), "is not a valid .npy file"),
        ("less data than the header says", run(&good, &short, &y, &[]), "needs 240 bytes of data, the file holds 120"),
        ("extra factor", run(&path("extra.safetensors"), &x, &y, &[]), "tensor `factor.2` is not part of this layer"),
        (
            "extra factor in a cell file",
            run(&path("cell_extra.safetensors"), &path("x3.npy"), &y, &["--cell", "lstm"]),
            "tensor `weight_ih.factor.2` is not part of this layer",
        ),
        ("10000 threads", run(&good, &x, &y, &["--threads", "10000"]), "--threads must be between 1 and 256"),
        ("2^64-1 threads", run(&good, &x, &y, &["--threads", "18446744073709551615"]), "--threads must be between"),
        ("a header longer than kcp reads", run(&path("long_header.safetensors"), &x, &y, &[]), "more than the"),
        ("not safetensors", run(&path("not_safetensors.bin"), &x, &y, &[]), "is not a valid safetensors file"),
        ("zeros as weights", run(&zero, &x, &y, &[]), "is not a valid safetensors file"),
        ("zeros as x", run(&good, &zero, &y, &[]), "is not a valid .npy file"),
        ("zeros as dense", compress(&zero, "2", &[]), "is not a valid .npy file"),
        ("rank 8000 on 12x30", compress(&path("w12x30.npy"), "8000", &[]), "rank 8000 is more than 18"),
        (
            "16 GiB of scratch",
            strings(&[
                "run",
                "--in-shape",
                ones,
                "--out-shape",
                fours,
                "--rank",
                "65536",
                "--weights",
                &path("big.safetensors"),
                "--x",
                &path("x1.npy"),
                "--y",
                &y,
            ]),
            "of memory for 1 rows",
        ),
        (
            "a 16 GiB output",
            {
                let mut v = strings(&["run", "--in-shape", "1x1", "--out-shape", "65536x65536", "--rank", "1"]);
                v.extend(strings(&["--weights", &path("wide.safetensors"), "--x", &path("x1.npy"), "--y", &y]));
                v
            },
            "needs 16.0 GiB of memory",
        ),
        ("missing flag", strings(&["plan", "--in-shape", "6x5", "--out-shape", "4x3"]), "--rank"),
        ("malformed .npy header", run(&good, &raw_npy("bad.npy", "{'descr': '<f4'\n", &[]), &y, &[]), "expected"),
        ("a path with a newline", run(&path("no\nsuch.safetensors"), &x, &y, &[]), "no\\nsuch"),
        (
            "a name with a newline",
            strings(&["emit", "--in-shape", "6x5", "--out-shape", "4x3", "--rank", "2", "--name", "A\nB"]),
            "is not a Rust identifier",
        ),
        (
            "a cell whose out shape overflows",
            strings(&[
                "run",
                "--cell",
                "lstm",
                "--in-shape",
                "2x2",
                "--out-shape",
                "4294967296x4294967296",
                "--rank",
                "1",
                "--weights",
                &good,
                "--x",
                &x,
                "--y",
                &y,
            ]),
            "overflows usize",
        ),
    ]
}

/// Runs the case `name` of the table: exit code 2 and one line, and no output written (an old
/// output left as it was).
fn hostile(name: &str) {
    let cases = cases();
    let (_, args, expected) = cases.iter().find(|(n, _, _)| *n == name).expect("a case of the table");
    let y = path("y.npy");
    fails(name, args, expected);
    assert!(!Path::new(&y).exists(), "{name}: wrote {y}");
    // A failed run leaves an existing output as it was.
    npy::write(Path::new(&y), &[1, 12], &[7.0; 12]).unwrap();
    fails(name, args, expected);
    assert_eq!(npy::read(Path::new(&y)).unwrap().data, vec![7.0; 12], "{name}: changed the old y");
}

/// One test per case of the table, named for it.
macro_rules! hostile_tests {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                hostile($name);
            }
        )*

        /// Every case of the table has its test.
        #[test]
        fn every_case_has_a_test() {
            let tested = [$($name),*];
            for (name, _, _) in cases() {
                assert!(tested.contains(&name), "no test runs the case {name:?}");
            }
        }
    };
}

hostile_tests! {
    wrapped_rows => "wrapped rows",
    wrapped_rows_with_data => "wrapped rows with data",
    wrapped_steps_of_a_cell => "wrapped steps of a cell",
    nested_header => "nested header",
    less_data_than_the_header_says => "less data than the header says",
    extra_factor => "extra factor",
    extra_factor_in_a_cell_file => "extra factor in a cell file",
    ten_thousand_threads => "10000 threads",
    u64_max_threads => "2^64-1 threads",
    a_header_longer_than_kcp_reads => "a header longer than kcp reads",
    not_safetensors => "not safetensors",
    zeros_as_weights => "zeros as weights",
    zeros_as_x => "zeros as x",
    zeros_as_dense => "zeros as dense",
    rank_8000_on_12x30 => "rank 8000 on 12x30",
    sixteen_gib_of_scratch => "16 GiB of scratch",
    a_16_gib_output => "a 16 GiB output",
    missing_flag => "missing flag",
    malformed_npy_header => "malformed .npy header",
    a_path_with_a_newline => "a path with a newline",
    a_name_with_a_newline => "a name with a newline",
    a_cell_whose_out_shape_overflows => "a cell whose out shape overflows",
}

/// A reader that closes its end early is not an error (as for any Unix tool); a full disk
/// behind stdout is one line and exit code 2.
#[test]
fn closed_and_full_stdout() {
    let args = ["emit", "--in-shape", "8x20x20x18", "--out-shape", "4x4x4x16", "--rank", "4"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_kcp"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
    // A private full device (a character device 1:7 made in this test's directory: never the
    // machine's /dev/full), where this process may make one.
    let full = path("full");
    if !Command::new("mknod").args([&full, "c", "1", "7"]).output().is_ok_and(|o| o.status.success()) {
        eprintln!("skipped the full stdout: this process cannot make device nodes (not root)");
        return;
    }
    let stdout_full = || std::fs::OpenOptions::new().write(true).open(&full).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kcp")).args(args).stdout(stdout_full()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot write to stdout"), "{stderr}");
    // compress, whose report follows the weights it writes: the error leaves no new file.
    npy::write(Path::new(&path("w.npy")), &[12, 30], &[1.0; 360]).unwrap();
    let out = path("fit_full.safetensors");
    let compress = strings(&["compress", "--in-shape", "6x5", "--out-shape", "3x4", "--rank", "2", "--dense"]);
    let output = Command::new(env!("CARGO_BIN_EXE_kcp"))
        .args(&compress)
        .args([path("w.npy"), "--weights-out".into(), out.clone()])
        .stdout(stdout_full())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!Path::new(&out).exists(), "compress left {out} behind after its error");
    assert!(std::fs::symlink_metadata(&full).unwrap().file_type().is_char_device(), "the device was replaced");
}

/// compress on degenerate weights: an exact zero factorisation of a zero matrix, no overflow
/// near f32's largest value, and the error reported after no sweep is the error of the
/// factors written.
#[test]
fn compress_reports_what_it_writes() {
    let out = path("fit.safetensors");
    let compress = |dense: &str, extra: &[&str]| {
        let mut v = strings(&["compress", "--in-shape", "6x5", "--out-shape", "3x4", "--rank", "2", "--dense", dense]);
        v.extend(["--weights-out".to_string(), out.clone(), "--json".to_string()]);
        v.extend(strings(extra));
        let output = Command::new(env!("CARGO_BIN_EXE_kcp")).args(&v).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let weights = Weights::load(Path::new(&out), "", &common::kcp_cores(&[[2, 3, 6], [2, 4, 5]]), None).unwrap();
        (json["relative_error"].as_f64().unwrap(), weights.dense(&[[2, 3, 6], [2, 4, 5]]))
    };
    npy::write(Path::new(&path("zero.npy")), &[12, 30], &[0.0; 360]).unwrap();
    let (error, rebuilt) = compress(&path("zero.npy"), &[]);
    assert_eq!(error, 0.0);
    assert!(rebuilt.iter().all(|&v| v == 0.0));

    let w: Vec<f32> = (0..360).map(|k| ((f64::from(k * 37 % 101) / 101.0 - 0.5) * 6e38) as f32).collect();
    npy::write(Path::new(&path("huge.npy")), &[12, 30], &w).unwrap();
    let (error, _) = compress(&path("huge.npy"), &[]);
    assert!(error.is_finite() && error < 1.0, "{error}");

    let small: Vec<f32> = w.iter().map(|&v| (f64::from(v) / 6e38) as f32).collect();
    npy::write(Path::new(&path("small.npy")), &[12, 30], &small).unwrap();
    let (error, rebuilt) = compress(&path("small.npy"), &["--iters", "0"]);
    let diff: f64 = rebuilt.iter().zip(&small).map(|(a, b)| f64::from(a - b).powi(2)).sum();
    let norm: f64 = small.iter().map(|&b| f64::from(b).powi(2)).sum();
    let actual = (diff / norm).sqrt();
    assert!((error - actual).abs() < 1e-4, "reported {error}, actual {actual}");
}
