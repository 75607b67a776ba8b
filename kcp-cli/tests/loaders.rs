//! Generators against the loaders, so that the next class of hostile input is found here
//! first: `.npy` headers and data, safetensors headers and data, and shape strings on the
//! command line. Every input gives a value or a one-line error, never a panic, and a loaded
//! array always holds exactly what its shape says.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;

use kcp::{npy, TensorFile};
use proptest::prelude::*;

fn dir() -> PathBuf {
    common::test_dir()
}

fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs `kcp` with `args`: success with nothing on stderr, or exit code 2 and one line.
fn succeeds_or_one_line<I: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = I>) -> Result<(), TestCaseError> {
    let output = Command::new(env!("CARGO_BIN_EXE_kcp")).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => prop_assert!(stderr.is_empty()),
        Some(2) => prop_assert_eq!(stderr.trim_end().lines().count(), 1, "{}", stderr),
        other => prop_assert!(false, "exit {:?}: {}", other, stderr),
    }
    Ok(())
}

/// Pieces of `.npy` headers, valid and not, glued together at random.
fn header_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("'descr': '<f4', ".to_string()),
        Just("'descr': '>f8', ".to_string()),
        Just("'fortran_order': False, ".to_string()),
        Just("'fortran_order': True, ".to_string()),
        (0usize..4, prop::collection::vec(prop_oneof![0u64..4, Just(u64::MAX), Just(1 << 62)], 0..4))
            .prop_map(|(_, dims)| format!("'shape': ({}), ", dims.iter().map(|d| format!("{d},")).collect::<String>())),
        "[\\[\\](),:' a-z0-9]{0,12}",
        Just("\n".to_string()),
    ]
}

fn one_line(error: &str) -> bool {
    !error.contains('\n')
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn npy_headers_never_panic(pieces in prop::collection::vec(header_piece(), 0..10), data in 0usize..64, version in 0u8..4) {
        let header: String = pieces.concat();
        let mut bytes = b"\x93NUMPY".to_vec();
        bytes.extend([version, 0]);
        if version == 1 {
            bytes.extend((header.len() as u16).to_le_bytes());
        } else {
            bytes.extend((header.len() as u32).to_le_bytes());
        }
        bytes.extend(header.as_bytes());
        bytes.extend(std::iter::repeat_n(0u8, data));
        match npy::read(&file("fuzz.npy", &bytes)) {
            Ok(array) => prop_assert_eq!(array.shape.iter().product::<usize>(), array.data.len()),
            Err(e) => prop_assert!(one_line(&e.to_string()), "{}", e),
        }
    }

    #[test]
    fn npy_round_trips(shape in prop::collection::vec(0usize..5, 0..4), seed in any::<u64>()) {
        let len: usize = shape.iter().product();
        let data: Vec<f32> = kcp::Rng::new(seed).vec_f32(len, 3.0);
        let path = file("round.npy", b"");
        npy::write(&path, &shape, &data).unwrap();
        let array = npy::read(&path).unwrap();
        prop_assert_eq!(array.shape, shape);
        prop_assert_eq!(array.data, data);
    }

    #[test]
    fn safetensors_never_panics(
        header_len in prop_oneof![0u64..200, Just(u64::MAX), Just(1 << 40)],
        entries in prop::collection::vec(("[a-z.0-9]{1,6}", prop_oneof![Just("F32"), Just("F64"), Just("I8")], prop::collection::vec(0usize..5, 0..3), 0usize..64, 0usize..64), 0..4),
        tail in 0usize..80,
        raw in any::<bool>(),
    ) {
        let json = entries
            .iter()
            .map(|(name, dtype, shape, a, b)| format!("\"{name}\": {{\"dtype\": \"{dtype}\", \"shape\": {shape:?}, \"data_offsets\": [{a}, {b}]}}"))
            .collect::<Vec<_>>()
            .join(", ");
        let header = format!("{{{json}}}");
        let declared = if raw { header_len } else { header.len() as u64 };
        let mut bytes = declared.to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(std::iter::repeat_n(0x3fu8, tail));
        match TensorFile::read(&file("fuzz.safetensors", &bytes)) {
            Ok(f) => {
                for name in f.names() {
                    // Any tensor reads or gives a one-line error, whatever shape is asked.
                    if let Err(e) = f.tensor(&name, &[2, 2]) {
                        prop_assert!(one_line(&e.to_string()), "{}", e);
                    }
                }
            }
            Err(e) => prop_assert!(one_line(&e.to_string()), "{}", e),
        }
    }
}

proptest! {
    // Each case starts the binary: fewer of them.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn shape_strings_give_a_plan_or_one_line(shape in "[0-9x \\-+.]{0,24}|[0-9]{1,22}(x[0-9]{1,22}){0,9}") {
        succeeds_or_one_line(["plan", "--in-shape", &shape, "--out-shape", &shape, "--rank", "1"])?;
    }

    /// Any `--threads` value: a run, or one line and exit code 2, never a pool of thousands.
    #[test]
    fn thread_counts_give_a_run_or_one_line(threads in prop_oneof![0u64..300, any::<u64>()].prop_map(|t| t.to_string())) {
        let (weights, x, y) = (dir().join("t.safetensors"), dir().join("t.npy"), dir().join("ty.npy"));
        let shapes = [[1, 2, 3]];
        kcp::save(&weights, &common::kcp_random(&shapes, None, 1).tensors("", &common::kcp_cores(&shapes))).unwrap();
        npy::write(&x, &[1, 3], &[1.0, 2.0, 3.0]).unwrap();
        let run = ["run", "--in-shape", "3", "--out-shape", "2", "--rank", "1", "--threads", &threads];
        let files = [("--weights", &weights), ("--x", &x), ("--y", &y)];
        let args: Vec<std::ffi::OsString> =
            run.iter().map(Into::into).chain(files.iter().flat_map(|(flag, p)| [flag.into(), p.into()])).collect();
        succeeds_or_one_line(args)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A write that fails after any number of bytes leaves the old file as it was and no
    /// temporary file beside it; one that succeeds replaces it whole.
    #[test]
    fn writes_are_whole_or_nothing(old in prop::collection::vec(any::<u8>(), 0..64), new in prop::collection::vec(any::<u8>(), 0..4096), fail_at in 0usize..4096) {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        std::fs::write(&target, &old).unwrap();
        let result = kcp::write_atomically(&target, |w| {
            w.write_all(&new[..fail_at.min(new.len())])?;
            if fail_at < new.len() {
                return Err(std::io::Error::other("no space left on device"));
            }
            Ok(())
        });
        let now = std::fs::read(&target).unwrap();
        if fail_at < new.len() {
            prop_assert!(result.is_err());
            prop_assert_eq!(now, old);
        } else {
            prop_assert!(result.is_ok());
            prop_assert_eq!(now, new);
        }
        prop_assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a temporary file is left");
    }
}
