//! `runs/<dataset>/<backbone>/<method>/seed-<NN>/run.toml`: a run's status and its last finished
//! epoch. It is the run's commit point: an epoch counts as done once this
//! file says so, and every file of a later epoch (an evaluation, a checkpoint
//! folder) is a leftover of an interrupted attempt that the next attempt
//! rewrites. `sim-train finetune` writes it; `sim-metrics study` reads it to
//! tell finished runs from failed and unfinished ones.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Finished,
    Failed,
}

impl Status {
    /// How the tables and `reproduce --status` say it: `finished`, `failed`,
    /// or `unfinished` for a run not finished yet.
    pub fn name(self) -> &'static str {
        use crate::tables::col;
        match self {
            Status::Running => col::STATUS_UNFINISHED,
            Status::Finished => col::STATUS_FINISHED,
            Status::Failed => col::STATUS_FAILED,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    /// The medical data set the run fine-tunes on.
    pub dataset: String,
    pub backbone: String,
    /// The fine-tuning method (`[[methods]]`).
    pub method: String,
    pub seed: u64,
    /// Hash of the study's resolved config (`study.sha256`).
    pub config_hash: String,
    /// SHA-256 of the backbone file the run started from.
    pub backbone_sha256: String,
    /// SHA-256 of each split file the run read (`splits/<data set>.csv`, by
    /// data set: the ids, labels, sides and every image's SHA-256), checked
    /// when the run resumes; empty in runs made before it was recorded.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub data_sha256: std::collections::BTreeMap<String, String>,
    pub status: Status,
    pub epochs: u32,
    pub last_finished_epoch: u32,
    /// Why the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl RunState {
    /// The state of a run before its first epoch: made with the config of
    /// hash `config_hash`, from the backbone and splits of these SHA-256s.
    pub fn started(
        run: &crate::config::RunId,
        (config_hash, backbone_sha256, data_sha256): (
            String,
            String,
            std::collections::BTreeMap<String, String>,
        ),
        epochs: u32,
    ) -> RunState {
        RunState {
            dataset: run.dataset.clone(),
            backbone: run.backbone.clone(),
            method: run.method.clone(),
            seed: run.seed,
            config_hash,
            backbone_sha256,
            data_sha256,
            status: Status::Running,
            epochs,
            last_finished_epoch: 0,
            message: None,
        }
    }

    pub fn path(run_dir: &Path) -> PathBuf {
        crate::layout::run_state_file(run_dir)
    }

    /// The run's state, or `None` before its first epoch finished.
    pub fn read(run_dir: &Path) -> Result<Option<RunState>, String> {
        let why = format!(
            "a run.toml from an older version, or damaged: remove {} to start the run over",
            run_dir.display()
        );
        read_state(&Self::path(run_dir), &why)
    }

    /// Replaces `run.toml` atomically.
    pub fn write(&self, run_dir: &Path) -> std::io::Result<()> {
        let text = toml::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::write_atomic(&Self::path(run_dir), text.as_bytes())
    }
}

/// A folder's commit point (`run.toml`, `pretrain.toml`): the state file
/// that says which epochs count. What the training skeleton
/// (`sim_train::train::resumable`) needs of it, written once for both.
pub trait CommitPoint {
    /// The file in its folder.
    fn path(dir: &Path) -> PathBuf;
    /// Replaces the file atomically.
    fn write(&self, dir: &Path) -> std::io::Result<()>;
    /// Epoch `epoch` is done: its files and checkpoint are in the folder.
    fn epoch_done(&mut self, epoch: u32);
    /// Training stopped for good, for `why`.
    fn failed(&mut self, why: String);
    /// Every epoch is done, and whatever follows the last one.
    fn finished(&mut self);
}

/// Implements [`CommitPoint`] for a state with `path` and `write` of its
/// own and the fields `status`, `last_finished_epoch` and `message`.
macro_rules! commit_point {
    ($state:ty) => {
        impl $crate::run_state::CommitPoint for $state {
            fn path(dir: &std::path::Path) -> std::path::PathBuf {
                <$state>::path(dir)
            }
            fn write(&self, dir: &std::path::Path) -> std::io::Result<()> {
                <$state>::write(self, dir)
            }
            fn epoch_done(&mut self, epoch: u32) {
                self.last_finished_epoch = epoch;
                self.status = $crate::run_state::Status::Running;
            }
            fn failed(&mut self, why: String) {
                self.status = $crate::run_state::Status::Failed;
                self.message = Some(why);
            }
            fn finished(&mut self) {
                self.status = $crate::run_state::Status::Finished;
            }
        }
    };
}
pub(crate) use commit_point;

commit_point!(RunState);

/// A state file (`run.toml`, `pretrain.toml`), or `None` where there is
/// none yet; `damaged` says what to do when it cannot be read.
pub(crate) fn read_state<T: serde::de::DeserializeOwned>(
    path: &Path,
    damaged: &str,
) -> Result<Option<T>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {} ({damaged})", path.display(), e.message().trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

impl fmt::Display for RunState {
    /// `finished`, `failed after epoch 2: …`, `running, 1 of 4 epochs done`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Status::Finished => write!(f, "finished ({} epochs)", self.last_finished_epoch),
            Status::Failed => {
                write!(f, "failed after epoch {}", self.last_finished_epoch)?;
                match &self.message {
                    Some(m) => write!(f, ": {m}"),
                    None => Ok(()),
                }
            }
            Status::Running => write!(
                f,
                "unfinished, {} of {} epochs done",
                self.last_finished_epoch, self.epochs
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_a_damaged_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RunState::read(dir.path()).unwrap(), None);
        let state = RunState {
            dataset: "d".into(),
            backbone: "b".into(),
            method: "full".into(),
            seed: 3,
            config_hash: "c".into(),
            backbone_sha256: "s".into(),
            data_sha256: [("medical-d".to_string(), "h".to_string())].into(),
            status: Status::Failed,
            epochs: 4,
            last_finished_epoch: 2,
            message: Some("loss NaN at epoch 3, step 1".into()),
        };
        state.write(dir.path()).unwrap();
        assert_eq!(RunState::read(dir.path()).unwrap(), Some(state.clone()));
        assert_eq!(
            state.to_string(),
            "failed after epoch 2: loss NaN at epoch 3, step 1"
        );
        std::fs::write(RunState::path(dir.path()), "backbone = 1").unwrap();
        let msg = RunState::read(dir.path()).unwrap_err();
        assert!(
            msg.contains("run.toml") && msg.contains("start the run over"),
            "{msg}"
        );
    }
}
