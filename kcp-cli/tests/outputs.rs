//! Output paths that are not plain files, as `kcp run --y` meets them: a device, a FIFO, a
//! symbolic link, a link to standard output. Every special file is a private one made in a
//! temporary directory (a device node with mknod where the tests run as root), never the
//! machine's own /dev entries. A device or FIFO is written in place and stays what it was (a
//! full device: one line, exit code 2); a link's target is replaced, never the link.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use kcp::{npy, save};

/// A layer's weights and x in `dir`; the arguments of `kcp run` without `--y`.
fn layer(dir: &Path) -> Vec<String> {
    let c =
        kcp::ir::compile(&kcp::ir::Spec::new(&[3, 2], &[2, 2], kcp::ir::Format::kcp(1)), &kcp::ir::Options::default())
            .unwrap();
    let weights = kcp::random_weights(c.network(), false, 3);
    save(&dir.join("w.safetensors"), &weights.tensors("", &c.nest.cores)).unwrap();
    npy::write(&dir.join("x.npy"), &[2, 6], &[0.5; 12]).unwrap();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    ["run", "--in-shape", "3x2", "--out-shape", "2x2", "--rank", "1", "--weights", &path("w.safetensors")]
        .iter()
        .map(|s| s.to_string())
        .chain(["--x".to_string(), path("x.npy")])
        .collect()
}

fn run(args: &[String], y: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kcp")).args(args).arg("--y").arg(y).output().unwrap()
}

/// What a correct run writes: the .npy of y.
fn expected(dir: &Path, args: &[String]) -> Vec<u8> {
    let plain = dir.join("plain.npy");
    assert!(run(args, &plain).status.success());
    std::fs::read(plain).unwrap()
}

/// A private character device `major:minor` at `path`, if this process may make one.
fn device(path: &Path, major: u32, minor: u32) -> bool {
    let made = Command::new("mknod").arg(path).arg("c").arg(major.to_string()).arg(minor.to_string()).output();
    made.is_ok_and(|o| o.status.success())
}

#[test]
fn devices_are_written_in_place_and_stay_devices() {
    let dir = tempfile::tempdir().unwrap();
    let args = layer(dir.path());
    let (full, null) = (dir.path().join("full"), dir.path().join("null"));
    if !(device(&full, 1, 7) && device(&null, 1, 3)) {
        eprintln!("skipped: this process cannot make device nodes (not root)");
        return;
    }
    let out = run(&args, &full);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(run(&args, &null).status.success());
    for node in [&full, &null] {
        assert!(std::fs::symlink_metadata(node).unwrap().file_type().is_char_device(), "{node:?} was replaced");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 4, "a temporary file was left: {leftovers:?}");
}

#[test]
fn a_fifo_gets_the_npy_and_stays_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let args = layer(dir.path());
    let want = expected(dir.path(), &args);
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // The reader is a process with a time limit: a kcp that does not open the FIFO fails the
    // test in 20 s instead of leaving the reader blocked for ever.
    let mut reader = Command::new("timeout").arg("20").arg("cat").arg(&fifo).stdout(Stdio::piped()).spawn().unwrap();
    assert!(run(&args, &fifo).status.success());
    let mut bytes = Vec::new();
    reader.stdout.take().unwrap().read_to_end(&mut bytes).unwrap();
    assert!(reader.wait().unwrap().success(), "the reader timed out");
    assert_eq!(bytes, want);
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn links_are_followed_to_their_target() {
    let dir = tempfile::tempdir().unwrap();
    let args = layer(dir.path());
    let want = expected(dir.path(), &args);
    // A link to a file: the file gets y, the link stays a link.
    let (target, link) = (dir.path().join("target.npy"), dir.path().join("link.npy"));
    std::fs::write(&target, b"old").unwrap();
    std::os::unix::fs::symlink("target.npy", &link).unwrap();
    assert!(run(&args, &link).status.success());
    assert_eq!(std::fs::read(&target).unwrap(), want);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    // A link to this process's standard output: `kcp run --y out | reader` works.
    let stdout = dir.path().join("stdout");
    std::os::unix::fs::symlink("/proc/self/fd/1", &stdout).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kcp"))
        .args(&args)
        .arg("--y")
        .arg(&stdout)
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, want);
    assert!(std::fs::symlink_metadata(&stdout).unwrap().file_type().is_symlink());
}

/// A read-only directory: the run either fails in one line with nothing written (a user the
/// permissions hold) or, for root, whom they do not, writes the whole file; a path under a
/// regular file or in a directory that does not exist fails in one line.
#[test]
fn unwritable_places_fail_in_one_line_or_write_whole_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let args = layer(dir.path());
    let want = expected(dir.path(), &args);
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let y = locked.join("y.npy");
    let out = run(&args, &y);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(2) => {
            assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
            assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0, "something was written");
        }
        Some(0) => assert_eq!(std::fs::read(&y).unwrap(), want),
        other => panic!("{other:?}: {stderr}"),
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    for y in [dir.path().join("x.npy").join("y.npy"), dir.path().join("missing").join("y.npy")] {
        let out = run(&args, &y);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{y:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}
