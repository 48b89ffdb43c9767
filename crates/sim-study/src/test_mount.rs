//! For tests that need a real file system condition, a full disk or a
//! read-only folder: mounts one (which needs root, as CI has) and unmounts it
//! when dropped; where mounting is not allowed, prints `SKIPPED <test>: …`
//! and returns `None`, so the test says it did not run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A mount, undone when dropped.
pub struct Mount {
    at: PathBuf,
}

impl Mount {
    /// A tmpfs of `kib` KiB at `at` (an existing, empty folder): a disk that fills up.
    pub fn small_disk(at: &Path, kib: u32, test: &str) -> Option<Mount> {
        mount(
            &[&["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"]],
            at,
            test,
        )
    }

    /// `source` seen read-only at `at` (an existing folder).
    pub fn read_only(source: &Path, at: &Path, test: &str) -> Option<Mount> {
        let source = source.to_string_lossy();
        mount(
            &[&["--bind", &source], &["-o", "remount,ro,bind"]],
            at,
            test,
        )
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

/// Runs `mount <args> <at>` for each step; the first failure skips the test.
fn mount(steps: &[&[&str]], at: &Path, test: &str) -> Option<Mount> {
    let mut mounted = None;
    for args in steps {
        let ok = Command::new("mount")
            .args(*args)
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            drop(mounted);
            let line = format!(
                "SKIPPED {test}: `mount {} {}` is not allowed here (needs root)\n",
                args.join(" "),
                at.display()
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
            return None;
        }
        mounted.get_or_insert_with(|| Mount { at: at.to_owned() });
    }
    mounted
}
