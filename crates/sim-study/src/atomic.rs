//! Write to a temporary file beside the target, then rename: a reader (or a
//! resumed run after `kill -9`) sees either the old file or the whole new one.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (temp file in the same folder, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Streams into `path` atomically: `fill` writes the content; on any error the
/// temporary file is removed and `path` is left as it was.
pub fn write_atomic_with<F>(path: &Path, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut w = BufWriter::new(File::create(&tmp)?);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        crate::crash::point("temp-written");
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

/// Replaces `path` with `bytes` for a reader that watches it (temporary
/// file, then rename): never half-written, but neither synced to disk nor a
/// crash-test point, for a file that only says how far something is
/// (`crate::progress`) and is rewritten twice a second during training,
/// where an fsync each time would cost a shared file system real time.
pub fn replace_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}{TEMP_MARK}{}", std::process::id()))
}

/// Temporary files are `.<name>.tmp-<pid>`.
const TEMP_MARK: &str = ".tmp-";
/// Folders written before being renamed into place end so.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Removes what a killed writer left in `dir` (not below it): temporary files
/// of [`write_atomic`] and `.partial` folders. Call it holding the lock of the
/// stage that writes there, so no live writer's file is taken. Returns what
/// was removed.
pub fn remove_leftovers(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("reading {}: {e}", dir.display()),
            ));
        }
    };
    let mut removed = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = name.starts_with('.')
            && name
                .rsplit_once(TEMP_MARK)
                .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        let partial = name.ends_with(PARTIAL_SUFFIX);
        if temp || partial {
            let gone = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            gone.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("removing leftover {}: {e}", path.display()),
                )
            })?;
            removed.push(path);
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_fill_leaves_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table.csv");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("table.csv")]);
    }

    #[test]
    fn leftovers_of_a_killed_writer_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for keep in ["run.toml", ".lock", "epoch-001.safetensors", ".notes.tmp-x"] {
            fs::write(d.join(keep), b"x").unwrap();
        }
        fs::create_dir(d.join("checkpoint-001")).unwrap();
        fs::write(d.join(".run.toml.tmp-4242"), b"half").unwrap();
        fs::create_dir_all(d.join("checkpoint-002.partial/inner")).unwrap();
        let removed = remove_leftovers(d).unwrap();
        assert_eq!(
            removed,
            [
                d.join(".run.toml.tmp-4242"),
                d.join("checkpoint-002.partial")
            ]
        );
        let mut left: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".lock",
                ".notes.tmp-x",
                "checkpoint-001",
                "epoch-001.safetensors",
                "run.toml"
            ]
        );
        assert!(remove_leftovers(&d.join("absent")).unwrap().is_empty());
    }
}
