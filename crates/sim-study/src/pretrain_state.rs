//! `pretrain.toml`, a pre-training's commit point (as `run.toml` is a
//! run's: `crate::run_state`): an epoch counts once it names it; the model
//! file is written before the state says `finished`. The folder it lives
//! in: `crate::layout::pretrain_dir`.

use crate::config::Objective;
use crate::run_state::Status;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One finished epoch of pre-training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochRecord {
    pub epoch: u32,
    /// Mean training loss over the epoch's steps.
    pub loss: f64,
    /// Seconds the epoch's steps took.
    pub seconds: f64,
    /// Images (not views) per second.
    pub images_per_s: f64,
    /// dino: the teacher output's mean per-image entropy over the epoch
    /// (nats; sharpening lowers it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_entropy: Option<f64>,
    /// dino: the entropy of the teacher's batch-mean output, averaged over
    /// the epoch (nats; near 0: every image on one prototype).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_batch_entropy: Option<f64>,
    /// dino: exp of `teacher_batch_entropy`, the number of prototypes the
    /// teacher spreads a batch over (out of `dino.out_dim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_prototypes: Option<f64>,
    /// k-NN top-1 on the natural validation split (train split the bank;
    /// the kept backbone: DINO's teacher), every `knn_every` epochs and at
    /// the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn_top1: Option<f64>,
}

/// `pretrain.toml`: a pre-training's status and finished epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainState {
    pub objective: Objective,
    pub status: Status,
    pub epochs: u32,
    pub last_finished_epoch: u32,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The sources of the build that trained it (`SIM_TRAIN_SOURCES` of
    /// `crates/sim-train/build.rs`: sim-train's code, the patched
    /// dependencies, `Cargo.lock`); none in folders made before it was
    /// recorded. The folder is keyed by the `pretrain` entry, not by the
    /// code: this says whether a reused one came from other code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<String>,
    /// One entry per finished epoch, in order.
    #[serde(default)]
    pub history: Vec<EpochRecord>,
}

impl PretrainState {
    /// The state of a pre-training before its first epoch.
    pub fn started(objective: Objective, epochs: u32) -> PretrainState {
        PretrainState {
            objective,
            status: Status::Running,
            epochs,
            last_finished_epoch: 0,
            message: None,
            sources: None,
            history: Vec::new(),
        }
    }

    pub fn path(dir: &Path) -> PathBuf {
        crate::layout::pretrain_state_file(dir)
    }

    /// The state, or `None` before the first epoch finished.
    pub fn read(dir: &Path) -> Result<Option<PretrainState>, String> {
        let why = format!(
            "damaged, or from an older version: remove {} to pre-train again",
            dir.display()
        );
        crate::run_state::read_state(&Self::path(dir), &why)
    }

    /// Replaces `pretrain.toml` atomically.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = toml::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::write_atomic(&Self::path(dir), text.as_bytes())
    }

    /// Minutes of training over every finished epoch.
    pub fn minutes(&self) -> f64 {
        self.history.iter().map(|e| e.seconds).sum::<f64>() / 60.0
    }
}

crate::run_state::commit_point!(PretrainState);
