//! What a run keeps on disk to be resumed: `run.toml` (status and last
//! finished epoch) and, per finished epoch, a checkpoint folder with the
//! model, both optimisers' state and nothing else (data order and
//! augmentation are drawn from (seed, epoch), so no RNG state is needed).
//! Both are replaced atomically: a folder is renamed into place once
//! complete, `run.toml` is written and renamed after it.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Finished,
    Failed,
}

/// `runs/<backbone>/seed-NN/run.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    pub backbone: String,
    pub seed: u64,
    /// Hash of the study's resolved config (`study.sha256`).
    pub config_hash: String,
    pub status: Status,
    pub epochs: u32,
    pub last_finished_epoch: u32,
    /// Why the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl RunState {
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join("run.toml")
    }

    pub fn read(run_dir: &Path) -> anyhow::Result<Option<RunState>> {
        let path = Self::path(run_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
    }

    pub fn write(&self, run_dir: &Path) -> anyhow::Result<()> {
        let text = toml::to_string_pretty(self)?;
        sim_study::write_atomic(&Self::path(run_dir), text.as_bytes())?;
        Ok(())
    }
}

/// The checkpoint folder of a finished epoch.
pub fn checkpoint_dir(run_dir: &Path, epoch: u32) -> PathBuf {
    run_dir.join(format!("checkpoint-{epoch:03}"))
}

/// Removes checkpoint folders (and half-written ones) other than `keep`'s.
pub fn prune_checkpoints(run_dir: &Path, keep: u32) -> std::io::Result<()> {
    let keep = checkpoint_dir(run_dir, keep);
    for entry in std::fs::read_dir(run_dir)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with("checkpoint-") && path != keep {
            std::fs::remove_dir_all(&path)?;
        }
    }
    Ok(())
}
