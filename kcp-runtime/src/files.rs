//! Writing files so that they are either complete or untouched.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Write `path` through `write`, so that a failure (a full disk, an error from `write`) leaves
/// nothing partial and an old file of that name intact:
///
/// - a regular file, or a path where nothing is yet, is written into a temporary file beside
///   it (a fresh name that no other writer, thread or process, can take or plant a link at)
///   that replaces it by a rename only once everything is written and on the disk;
/// - a symbolic link is followed: its target is what gets replaced so, never the link itself;
/// - a device, FIFO or other special file (`/dev/stdout`, a pipe) is written in place, as any
///   tool writes to one (it cannot be replaced, and must not be: it is not the caller's).
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    // `metadata` follows links, /proc's too (`/dev/stdout` -> `/proc/self/fd/1` -> a pipe).
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() && !meta.is_dir() {
            let mut out = BufWriter::new(OpenOptions::new().write(true).open(path)?);
            write(&mut out)?;
            return out.into_inner().map_err(|e| e.into_error())?.flush();
        }
    }
    let target = link_target(path)?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = target.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // The mode `File::create` gives (0666 less the umask), not a temporary file's 0600.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let (file, temp) = builder.tempfile_in(dir)?.into_parts();
    // On any error the temporary file is removed when `temp` drops.
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    temp.persist(&target).map_err(|e| e.error)
}

/// The file a path names once its symbolic links are followed (a link's target relative to the
/// link's directory), at most 40 links deep; the path itself if it is no link.
fn link_target(path: &Path) -> std::io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let next = std::fs::read_link(&current)?;
                current = match current.parent() {
                    Some(dir) if next.is_relative() => dir.join(next),
                    _ => next,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(std::io::Error::other(format!("{}: too many levels of symbolic links", path.display())))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        write_atomically(&path, |w| w.write_all(b"old")).unwrap();
        let failed = write_atomically(&path, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        });
        assert_eq!(failed.unwrap_err().to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "the temporary file is gone");
        write_atomically(&path, |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        // Readable by others, as a file that `File::create` makes (under the usual umask).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            let created = dir.path().join("created.bin");
            File::create(&created).unwrap();
            assert_eq!(mode, std::fs::metadata(&created).unwrap().permissions().mode() & 0o777);
        }
    }

    /// Threads writing the same path never share a temporary file: every write lands whole.
    #[test]
    fn concurrent_writers_each_write_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.bin");
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..20 {
                        write_atomically(path, |w| w.write_all(&[t; 4096])).unwrap();
                    }
                });
            }
        });
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 4096);
        assert!(data.iter().all(|&b| b == data[0]), "two writers' bytes in one file");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a temporary file left behind");
    }

    /// A link is followed (its target replaced, the link kept), a link planted at the name a
    /// temporary could take changes nothing, and a link loop is an error.
    #[cfg(unix)]
    #[test]
    fn links_are_followed_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (target, link) = (dir.path().join("target.bin"), dir.path().join("link.bin"));
        std::fs::write(&target, b"old").unwrap();
        std::os::unix::fs::symlink("target.bin", &link).unwrap();
        write_atomically(&link, |w| w.write_all(b"new")).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        let planted = dir.path().join("elsewhere.bin");
        std::os::unix::fs::symlink(&planted, dir.path().join(format!(".target.bin.{}.tmp", std::process::id())))
            .unwrap();
        write_atomically(&target, |w| w.write_all(b"newer")).unwrap();
        assert!(!planted.exists(), "a write followed a planted link");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        assert!(write_atomically(&a, |w| w.write_all(b"x")).is_err());
    }
}
