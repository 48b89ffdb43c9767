//! What a derived output was made from: the manifest written beside the
//! study tables (`tables/inputs.toml`, made from the evaluation files and
//! `run.toml`s) and beside the figures (`figures/inputs.toml`, made from the
//! tables). An output is up to date when the manifest of its inputs as they
//! are now equals the one written with it: freshness is decided from the
//! contents read, never from clocks, so a run committed while the tables
//! were being computed, or a run folder copied in with its old modification
//! times, makes them stale.
//!
//! Each input is named by its path relative to the study folder (a moved
//! study stays up to date) and identified by its SHA-256; its size and
//! modification time only spare hashing a file again that has not changed
//! since the last manifest ([`Fingerprint::of`]).

use crate::fingerprint::Fingerprint;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// The one freshness rule of every derived output (the tables; the
/// figures, paper tables and report): it is up to date when the manifest
/// written with it is at `manifest`, every file of it (`outputs`) is there,
/// and the manifest of its inputs as they are now (`now`, given the
/// written one so that unchanged files are not hashed again) has the same
/// inputs by content, made by the same tool. Then making it again would
/// give the same files.
pub fn up_to_date(
    manifest: &Path,
    outputs: &[PathBuf],
    now: impl FnOnce(&Manifest) -> Option<Manifest>,
) -> bool {
    let Some(written) = Manifest::read(manifest) else {
        return false;
    };
    outputs.iter().all(|p| p.exists()) && now(&written).is_some_and(|n| n.same_inputs(&written))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The program and version that made the output, and how it multiplied
    /// matrices (another BLAS rounds differently): part of what it was made from.
    pub tool: String,
    /// Each input, by its path relative to the study folder.
    pub inputs: BTreeMap<String, Fingerprint>,
}

impl Manifest {
    pub fn new(tool: impl Into<String>) -> Manifest {
        Manifest {
            tool: tool.into(),
            inputs: BTreeMap::new(),
        }
    }

    /// Adds `study_root/relative` (skipped when there is no such file); the
    /// hash recorded in `known` is reused for a file whose size and
    /// modification time it already describes.
    pub fn add(
        &mut self,
        study_root: &Path,
        relative: &str,
        known: Option<&Manifest>,
    ) -> io::Result<()> {
        let path = study_root.join(relative);
        if !path.is_file() {
            return Ok(());
        }
        let known = known
            .and_then(|k| k.inputs.get(relative))
            .map(|f| Fingerprint {
                path: path.clone(),
                ..f.clone()
            });
        let mut fingerprint = Fingerprint::of(&path, known.as_ref())?;
        // Stored relative: the study may move.
        fingerprint.path = relative.into();
        self.inputs.insert(relative.to_owned(), fingerprint);
        Ok(())
    }

    /// Whether both were made by the same tool from inputs of the same
    /// content (paths, sizes and times aside).
    pub fn same_inputs(&self, other: &Manifest) -> bool {
        self.tool == other.tool
            && self.inputs.len() == other.inputs.len()
            && self
                .inputs
                .iter()
                .zip(&other.inputs)
                .all(|((a, fa), (b, fb))| a == b && fa.sha256 == fb.sha256)
    }

    /// The manifest at `path`; `None` when there is none or it cannot be
    /// read (then the output is remade).
    pub fn read(path: &Path) -> Option<Manifest> {
        toml::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    /// Writes it atomically.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let text = toml::to_string_pretty(self).map_err(io::Error::other)?;
        crate::write_atomic(path, text.as_bytes())
    }

    /// Removes the manifest before its output is rewritten: a kill between
    /// two of the output's files then leaves no manifest that vouches for them.
    pub fn remove(path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_contents_are_the_same_inputs_wherever_and_whenever_they_are() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(a.path().join("x.toml"), "x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(b.path().join("x.toml"), "x").unwrap();
        let of = |root: &Path| {
            let mut m = Manifest::new("tool 1");
            m.add(root, "x.toml", None).unwrap();
            m.add(root, "missing.toml", None).unwrap();
            m
        };
        let (ma, mb) = (of(a.path()), of(b.path()));
        assert_eq!(ma.inputs.len(), 1);
        assert!(
            ma.same_inputs(&mb),
            "another folder, another time, same content"
        );
        std::fs::write(b.path().join("x.toml"), "y").unwrap();
        assert!(!ma.same_inputs(&of(b.path())), "changed content");
        std::fs::write(b.path().join("y.toml"), "x").unwrap();
        std::fs::write(b.path().join("x.toml"), "x").unwrap();
        let mut more = of(b.path());
        more.add(b.path(), "y.toml", None).unwrap();
        assert!(!ma.same_inputs(&more), "an input more");
        assert!(
            !ma.same_inputs(&Manifest {
                tool: "tool 2".into(),
                ..ma.clone()
            }),
            "another tool"
        );
        let path = a.path().join("inputs.toml");
        ma.write(&path).unwrap();
        assert_eq!(Manifest::read(&path), Some(ma));
        Manifest::remove(&path).unwrap();
        Manifest::remove(&path).unwrap();
        assert_eq!(Manifest::read(&path), None);
    }
}
