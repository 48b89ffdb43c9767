//! A file's identity: its SHA-256, computed once and reused while the file's
//! size and modification time stay the same. A study records the fingerprint
//! of each backbone file it fine-tunes (`backbones/<backbone>/backbone.toml`), and
//! each run the hash it started from, so a backbone file replaced halfway
//! through a study is refused instead of mixed into it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: u64,
}

impl Fingerprint {
    /// The file's fingerprint; the hash of `known` is reused when it describes
    /// the same path, size and modification time (no need to read gigabytes again).
    pub fn of(path: &Path, known: Option<&Fingerprint>) -> io::Result<Fingerprint> {
        let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let meta = std::fs::metadata(path).map_err(with_path)?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        if let Some(k) = known
            && k.path == path
            && k.size == meta.len()
            && k.modified_ns == modified_ns
        {
            return Ok(k.clone());
        }
        Ok(Fingerprint {
            path: path.to_owned(),
            sha256: sha256_file(path).map_err(with_path)?,
            size: meta.len(),
            modified_ns,
        })
    }

    /// Reads a recorded fingerprint; `None` when there is none yet.
    pub fn read(record: &Path) -> Result<Option<Fingerprint>, String> {
        match std::fs::read_to_string(record) {
            Ok(text) => toml::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{}: {}", record.display(), e.message().trim())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", record.display())),
        }
    }

    /// Writes the record atomically.
    pub fn write(&self, record: &Path) -> io::Result<()> {
        let text = toml::to_string_pretty(self).map_err(io::Error::other)?;
        crate::write_atomic(record, text.as_bytes())
    }
}

/// SHA-256 (hex) of a file's bytes, streamed.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_reused_while_size_and_time_stay_and_recomputed_after() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.safetensors");
        std::fs::write(&file, b"abc").unwrap();
        let first = Fingerprint::of(&file, None).unwrap();
        assert_eq!(
            first.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // A record with the same size and time is trusted: its hash is reused.
        let planted = Fingerprint {
            sha256: "recorded".into(),
            ..first.clone()
        };
        assert_eq!(
            Fingerprint::of(&file, Some(&planted)).unwrap().sha256,
            "recorded"
        );
        std::fs::write(&file, b"abd").unwrap();
        let file_time = std::fs::File::options().write(true).open(&file).unwrap();
        file_time
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(7))
            .unwrap();
        let after = Fingerprint::of(&file, Some(&planted)).unwrap();
        assert_ne!(after.sha256, "recorded");
        assert_ne!(after.sha256, first.sha256);
        let record = dir.path().join("backbone.toml");
        after.write(&record).unwrap();
        assert_eq!(Fingerprint::read(&record).unwrap(), Some(after));
        assert_eq!(
            Fingerprint::read(&dir.path().join("none.toml")).unwrap(),
            None
        );
    }
}
