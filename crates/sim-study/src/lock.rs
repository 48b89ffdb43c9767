//! An exclusive lock on a folder of the study (a run, a backbone's shared
//! files, the data caches), so that two processes never write the same files.
//!
//! The lock is the operating system's advisory lock (`flock`) on the file
//! `<dir>/.lock`, which also records the holder's pid and host. The lock dies
//! with its process, so a lock file left by a killed process never blocks a
//! rerun; only a live holder does.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held until dropped. On a read-only file system there is nothing to lock
/// (nobody can write there) and the lock is empty.
#[derive(Debug)]
pub struct DirLock {
    _file: Option<File>,
}

impl DirLock {
    /// Takes the lock of `dir` (created if needed), or fails at once with an
    /// error naming the folder and the holder's pid and host.
    pub fn try_acquire(dir: &Path) -> io::Result<DirLock> {
        let Some((mut file, path)) = open(dir)? else {
            return Ok(DirLock { _file: None });
        };
        match file.try_lock() {
            Ok(()) => claim(file, &path),
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    holder.to_string()
                };
                Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{} is in use by {holder} (lock {}); wait for it to end, or stop it",
                        dir.display(),
                        path.display()
                    ),
                ))
            }
            Err(TryLockError::Error(e)) => Err(io::Error::new(
                e.kind(),
                format!("locking {}: {e}", path.display()),
            )),
        }
    }

    /// Takes the lock of `dir`, waiting while another process holds it (for
    /// files that several runs share and the first one makes).
    pub fn wait(dir: &Path) -> io::Result<DirLock> {
        let Some((file, path)) = open(dir)? else {
            return Ok(DirLock { _file: None });
        };
        file.lock()
            .map_err(|e| io::Error::new(e.kind(), format!("locking {}: {e}", path.display())))?;
        claim(file, &path)
    }
}

/// Who holds the lock of `dir` now (`process 1234 on host node7`), or
/// `None` where nobody does (a lock file left by a dead process included).
/// Creates nothing, so it can look at a read-only study.
pub fn holder(dir: &Path) -> io::Result<Option<String>> {
    let path = dir.join(".lock");
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("opening {}: {e}", path.display()),
            ));
        }
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(None),
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            Ok(Some(if holder.is_empty() {
                "another process".to_string()
            } else {
                holder.to_string()
            }))
        }
        Err(TryLockError::Error(e)) => Err(io::Error::new(
            e.kind(),
            format!("locking {}: {e}", path.display()),
        )),
    }
}

/// The lock file, or `None` on a read-only file system.
fn open(dir: &Path) -> io::Result<Option<(File, PathBuf)>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
    let path = dir.join(".lock");
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        Ok(file) => Ok(Some((file, path))),
        Err(e) if e.kind() == io::ErrorKind::ReadOnlyFilesystem => Ok(None),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("opening {}: {e}", path.display()),
        )),
    }
}

/// Records the new holder in the lock file.
fn claim(mut file: File, path: &Path) -> io::Result<DirLock> {
    let holder = format!("process {} on host {}\n", std::process::id(), host_name());
    (|| {
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(holder.as_bytes())
    })()
    .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))?;
    Ok(DirLock { _file: Some(file) })
}

/// This machine's name (a cluster's nodes share the study folder).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_naming_the_first_and_a_dropped_lock_frees_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::try_acquire(dir.path()).unwrap();
        let err = DirLock::try_acquire(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("process {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(&host_name()), "{msg}");
        assert_eq!(
            holder(dir.path()).unwrap(),
            Some(format!(
                "process {} on host {}",
                std::process::id(),
                host_name()
            ))
        );
        drop(first);
        assert_eq!(
            holder(dir.path()).unwrap(),
            None,
            "a released lock has no holder"
        );
        DirLock::try_acquire(dir.path()).unwrap();
        assert_eq!(holder(&dir.path().join("never-locked")).unwrap(), None);
    }
}
