//! A training folder's checkpoints: [`Training`] (the model and both
//! optimisers) saved after every epoch into `checkpoint-<EEE>.partial` with
//! a manifest of its files' sizes and hashes, renamed when whole, restored
//! (and checked against the manifest) to resume, and pruned once the commit
//! point (`run.toml`, `pretrain.toml`) names a later epoch. When each is
//! written, and why a kill between any two writes loses nothing:
//! [`super::resumable`]. Data order and augmentation are drawn from (seed,
//! epoch), so no RNG state is needed.

use super::classifier::Classifier;
use anyhow::Context;
use burn::module::Module;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sim_study::crash;
use sim_study::layout::CHECKPOINT_PREFIX;
use sim_study::layout::checkpoint_dir;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// An optimiser of the classifier: AdamW (docs/SPEC.md).
pub type AdamWOf<B> = OptimizerAdaptor<AdamW, Classifier<B>, B>;

/// The state training changes: the model and the two optimisers (backbone
/// and head have their own learning rates, so their own AdamW state).
pub struct Training<B: AutodiffBackend> {
    pub model: Classifier<B>,
    pub opt_backbone: AdamWOf<B>,
    pub opt_head: AdamWOf<B>,
}

/// The files of a checkpoint folder.
const MODEL_FILE: &str = "model.mpk";
const OPTIM_BACKBONE_FILE: &str = "optim-backbone.mpk";
const OPTIM_HEAD_FILE: &str = "optim-head.mpk";

impl<B: AutodiffBackend> Training<B> {
    /// Fresh optimisers for `model` (AdamW, ε 1e-8, the config's weight decay).
    pub fn new(model: Classifier<B>, weight_decay: f64) -> Training<B> {
        let adamw = || {
            AdamWConfig::new()
                .with_weight_decay(weight_decay as f32)
                .with_epsilon(1e-8)
                .init::<B, Classifier<B>>()
        };
        Training {
            model,
            opt_backbone: adamw(),
            opt_head: adamw(),
        }
    }

    /// Writes the checkpoint of `epoch` ([`save_checkpoint`]).
    pub fn save(&self, run_dir: &Path, epoch: u32) -> anyhow::Result<()> {
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        let encoded = |bytes: Result<Vec<u8>, burn::record::RecorderError>, name: &str| {
            bytes.with_context(|| format!("encoding {name} of epoch {epoch}"))
        };
        let files = [
            (
                MODEL_FILE,
                encoded(
                    recorder.record(self.model.clone().into_record(), ()),
                    MODEL_FILE,
                )?,
            ),
            (
                OPTIM_BACKBONE_FILE,
                encoded(
                    recorder.record(self.opt_backbone.to_record(), ()),
                    OPTIM_BACKBONE_FILE,
                )?,
            ),
            (
                OPTIM_HEAD_FILE,
                encoded(
                    recorder.record(self.opt_head.to_record(), ()),
                    OPTIM_HEAD_FILE,
                )?,
            ),
        ];
        Ok(save_checkpoint(run_dir, epoch, &files)?)
    }

    /// The state after `epoch`, from its checkpoint (every file checked
    /// against the manifest first).
    pub fn restore(
        self,
        run_dir: &Path,
        epoch: u32,
        device: &B::Device,
    ) -> anyhow::Result<Training<B>> {
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        let mut files = load_checkpoint(run_dir, epoch)?;
        let dir = checkpoint_dir(run_dir, epoch);
        let mut decode = |name: &str| -> anyhow::Result<Vec<u8>> {
            files
                .remove(name)
                .with_context(|| format!("{}: no {name} in the manifest", dir.display()))
        };
        let undecodable = |name: &str, e: burn::record::RecorderError| {
            anyhow::anyhow!(
                "{}: cannot be decoded by this version: {e}",
                dir.join(name).display()
            )
        };
        let (model, backbone, head) = (
            decode(MODEL_FILE)?,
            decode(OPTIM_BACKBONE_FILE)?,
            decode(OPTIM_HEAD_FILE)?,
        );
        Ok(Training {
            model: self.model.load_record(
                recorder
                    .load(model, device)
                    .map_err(|e| undecodable(MODEL_FILE, e))?,
            ),
            opt_backbone: self.opt_backbone.load_record(
                recorder
                    .load(backbone, device)
                    .map_err(|e| undecodable(OPTIM_BACKBONE_FILE, e))?,
            ),
            opt_head: self.opt_head.load_record(
                recorder
                    .load(head, device)
                    .map_err(|e| undecodable(OPTIM_HEAD_FILE, e))?,
            ),
        })
    }
}

/// The manifest of a checkpoint folder: what a whole one holds.
const MANIFEST: &str = "manifest.toml";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    files: BTreeMap<String, ManifestEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    bytes: u64,
    sha256: String,
}

/// A checkpoint that cannot be written or read back; names the file and,
/// where it can tell, why (no space left, missing, truncated, damaged).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {cause}")]
pub struct CheckpointError {
    pub path: PathBuf,
    pub cause: String,
}

fn fail(path: &Path, cause: impl Into<String>) -> CheckpointError {
    CheckpointError {
        path: path.to_owned(),
        cause: cause.into(),
    }
}

/// What an I/O error means for a checkpoint file.
fn io_cause(doing: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::StorageFull => format!("cannot {doing}: no space left on the device ({e})"),
        io::ErrorKind::QuotaExceeded => format!("cannot {doing}: disk quota exceeded ({e})"),
        io::ErrorKind::NotFound => format!("cannot {doing}: missing"),
        _ => format!("cannot {doing}: {e}"),
    }
}

/// Writes the checkpoint of `epoch` (named files), complete or not at all:
/// into a `.partial` folder, the manifest last, then renamed into place,
/// replacing a folder of the same epoch that a killed attempt left.
pub fn save_checkpoint(
    run_dir: &Path,
    epoch: u32,
    files: &[(&str, Vec<u8>)],
) -> Result<(), CheckpointError> {
    let dir = checkpoint_dir(run_dir, epoch);
    let partial = dir.with_extension(&sim_study::atomic::PARTIAL_SUFFIX[1..]);
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| fail(&partial, io_cause("remove", &e)))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| fail(&partial, io_cause("create", &e)))?;
    let mut manifest = Manifest {
        files: BTreeMap::new(),
    };
    for (name, bytes) in files {
        let path = partial.join(name);
        write_synced(&path, bytes).map_err(|e| fail(&path, io_cause("write", &e)))?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        manifest.files.insert(
            name.to_string(),
            ManifestEntry {
                bytes: bytes.len() as u64,
                sha256,
            },
        );
    }
    let path = partial.join(MANIFEST);
    let text = toml::to_string_pretty(&manifest).expect("a manifest serialises");
    write_synced(&path, text.as_bytes()).map_err(|e| fail(&path, io_cause("write", &e)))?;
    crash::point("checkpoint-written");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| fail(&dir, io_cause("replace", &e)))?;
    }
    std::fs::rename(&partial, &dir).map_err(|e| {
        fail(
            &dir,
            io_cause(&format!("rename {} to it", partial.display()), &e),
        )
    })?;
    sync_dir(run_dir).map_err(|e| fail(run_dir, io_cause("sync", &e)))?;
    crash::point("checkpoint-renamed");
    Ok(())
}

/// Reads the checkpoint of `epoch`, every file checked against the manifest.
pub fn load_checkpoint(
    run_dir: &Path,
    epoch: u32,
) -> Result<BTreeMap<String, Vec<u8>>, CheckpointError> {
    let dir = checkpoint_dir(run_dir, epoch);
    let start_over = format!(
        "run.toml says epoch {epoch} finished, so the run cannot resume without it; remove \
            {} to start the run over",
        run_dir.display()
    );
    let manifest_path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
        fail(
            &manifest_path,
            format!("{}; {start_over}", io_cause("read", &e)),
        )
    })?;
    let manifest: Manifest = toml::from_str(&text).map_err(|e| {
        fail(
            &manifest_path,
            format!("damaged ({}); {start_over}", e.message().trim()),
        )
    })?;
    let mut out = BTreeMap::new();
    for (name, entry) in manifest.files {
        let path = dir.join(&name);
        let bytes = std::fs::read(&path)
            .map_err(|e| fail(&path, format!("{}; {start_over}", io_cause("read", &e))))?;
        if (bytes.len() as u64) < entry.bytes {
            return Err(fail(
                &path,
                format!(
                    "truncated: {} of {} bytes; {start_over}",
                    bytes.len(),
                    entry.bytes
                ),
            ));
        }
        if bytes.len() as u64 != entry.bytes || hex::encode(Sha256::digest(&bytes)) != entry.sha256
        {
            return Err(fail(
                &path,
                format!(
                    "damaged: its {} bytes are not the ones the manifest records; {start_over}",
                    bytes.len()
                ),
            ));
        }
        out.insert(name, bytes);
    }
    Ok(out)
}

/// Removes checkpoint folders other than `keep`'s: older ones once a later
/// epoch is committed, and later ones a killed attempt left uncommitted.
pub fn prune_checkpoints(run_dir: &Path, keep: u32) -> io::Result<()> {
    let keep = checkpoint_dir(run_dir, keep);
    for entry in std::fs::read_dir(run_dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with(CHECKPOINT_PREFIX) && path != keep {
            std::fs::remove_dir_all(&path).map_err(|e| {
                io::Error::new(e.kind(), format!("removing {}: {e}", path.display()))
            })?;
        }
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("model.mpk", vec![1u8; 4000]),
            ("optim-backbone.mpk", vec![2u8; 3000]),
            ("optim-head.mpk", vec![3u8; 100]),
        ]
    }

    #[test]
    fn a_saved_checkpoint_reads_back_and_replaces_an_uncommitted_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(checkpoint_dir(dir.path(), 2).join("model.mpk")).unwrap(); // a killed attempt's
        save_checkpoint(dir.path(), 2, &files()).unwrap();
        let back = load_checkpoint(dir.path(), 2).unwrap();
        assert_eq!(
            back.into_iter().collect::<Vec<_>>(),
            files()
                .into_iter()
                .map(|(n, b)| (n.to_string(), b))
                .collect::<Vec<_>>()
        );
        assert!(!dir.path().join("checkpoint-002.partial").exists());
    }

    #[test]
    fn a_damaged_checkpoint_names_the_file_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = checkpoint_dir(dir.path(), 1);
        // (file, how it is damaged, what the error says)
        type Damage = (&'static str, fn(&Path), &'static str);
        let cases: [Damage; 4] = [
            (
                "optim-backbone.mpk",
                |p| std::fs::write(p, vec![2u8; 1500]).unwrap(),
                "truncated: 1500 of 3000 bytes",
            ),
            (
                "optim-head.mpk",
                |p| std::fs::remove_file(p).unwrap(),
                "missing",
            ),
            (
                "model.mpk",
                |p| std::fs::write(p, vec![9u8; 4000]).unwrap(),
                "damaged",
            ),
            (
                "manifest.toml",
                |p| std::fs::remove_file(p).unwrap(),
                "missing",
            ),
        ];
        for (name, damage, cause) in cases {
            save_checkpoint(dir.path(), 1, &files()).unwrap();
            damage(&ckpt.join(name));
            let msg = load_checkpoint(dir.path(), 1).unwrap_err().to_string();
            assert!(
                msg.contains(&ckpt.join(name).display().to_string()),
                "{name}: {msg}"
            );
            assert!(msg.contains(cause), "{name}: {msg}");
            assert!(msg.contains("start the run over"), "{name}: {msg}");
        }
    }

    /// A real full disk: a 256 KiB tmpfs.
    #[test]
    fn a_full_disk_names_the_file_and_says_no_space_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let Some(_disk) = sim_study::test_mount::Mount::small_disk(
            dir.path(),
            256,
            "a_full_disk_names_the_file_and_says_no_space_is_left",
        ) else {
            return;
        };
        let big = vec![
            ("model.mpk", vec![1u8; 100_000]),
            ("optim-backbone.mpk", vec![2u8; 400_000]),
        ];
        let msg = save_checkpoint(dir.path(), 1, &big)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("checkpoint-001.partial/optim-backbone.mpk"),
            "{msg}"
        );
        assert!(msg.contains("no space left"), "{msg}");
        assert!(
            !checkpoint_dir(dir.path(), 1).exists(),
            "no checkpoint folder that looks whole"
        );
    }
}
