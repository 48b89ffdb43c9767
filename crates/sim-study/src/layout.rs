//! The files a study leaves (docs/SPEC.md, "Files a study leaves"), in one place so
//! every stage and every binary agrees on them. A run is a medical data set
//! × a backbone × a fine-tuning method × a seed ([`RunId`]):
//!
//! ```text
//! <study>/
//!   study.toml            resolved config (defaults filled in; no output_dir)
//!   study.sha256          its hash: the study's identity
//!   splits/<data set>.csv the split every run uses: id, label, class, group, split
//!                         (<data set>: `medical-<name>` or `natural`)
//!   cache/<data set>-<S>px.u8img                 decoded images, shorter side S, as u8 RGB
//!   backbones/<backbone>/backbone.toml           fingerprint (SHA-256) of the backbone file
//!   backbones/<backbone>/natural.safetensors     epoch 0 on the natural images, shared by every data set
//!   runs/<dataset>/<backbone>/pretrained.safetensors     epoch 0 (θ₀), shared by every seed
//!   runs/<dataset>/<backbone>/<method>/seed-<NN>/       one run (below: <run>/)
//!   <run>/run.toml                         the run's status and last finished epoch
//!   <run>/epoch-<EEE>.safetensors          evaluation after epoch EEE
//!   <run>/wise-ft-<α>.safetensors          evaluation of the WiSE-FT backbone at α (methods with `wise_ft`)
//!   <run>/checkpoint-<EEE>/                model and optimiser state, with a manifest
//!   <run>/train.log                        the run's log
//!   <run>/sweep.log                        the run process's output, when a sweep started it
//!   tables/*.parquet                            written by `sim-metrics study` (names: `crate::tables`)
//!   tables/inputs.toml                          what they were made from ([`crate::manifest`])
//!   tables/table{1,2}.{md,csv}, figures/, report.md   written by `sim-plot`
//!   figures/inputs.toml                         what the figures and report were made from
//!   slurm/                                      sbatch scripts, their output, the job ids
//!   kernel-cache/                               GPU builds: compiled kernels and autotune results, shared by the study's processes
//! ```
//!
//! A backbone the tool pre-trains is made beside the study folder, shared
//! by every study with the same pre-training ([`pretrain_dir`]):
//!
//! ```text
//! <studies>/pretrained/<objective>-<hash12>/   (hash: the pre-training's settings and data)
//!   pretrain.toml        status, last finished epoch, per-epoch loss and time (`crate::pretrain_state`)
//!   checkpoint-<EEE>/    model and optimiser state of the last finished epoch, with a manifest
//!   model.safetensors    the result, in timm ViT names (written after the last epoch)
//!   model-epoch-<EEE>.safetensors  the backbone after each k-NN learning-curve epoch before the last (a backbone's `pretrain_epoch`)
//!   pretrain.log         the log
//! ```
//!
//! Four kinds of folder are locked while written ([`crate::lock`]): the
//! study folder itself (study.toml, splits, caches), a backbone's folder (its
//! fingerprint and natural-image epoch 0), a (data set, backbone) folder (its
//! epoch 0) and a run's folder. The tensors inside an
//! evaluation file are named by [`crate::eval_file`].

use crate::config::{BackboneConfig, DatasetConfig, DatasetId, PretrainConfig, RunId, StudyConfig};
use crate::write_atomic;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};

/// The names right in a study folder.
const RESOLVED_CONFIG: &str = "study.toml";
const CONFIG_HASH: &str = "study.sha256";
const SPLITS: &str = "splits";
const CACHE: &str = "cache";
const BACKBONES: &str = "backbones";
const RUNS: &str = "runs";
const TABLES: &str = "tables";
const FIGURES: &str = "figures";
const REPORT: &str = "report.md";
const SLURM: &str = "slurm";
const KERNEL_CACHE: &str = "kernel-cache";
/// The manifest of what a derived output was made from ([`crate::manifest`]).
const INPUTS: &str = "inputs.toml";
/// A run's log, and its process's output when a sweep started it.
const TRAIN_LOG: &str = "train.log";
const SWEEP_LOG: &str = "sweep.log";

#[derive(Debug, Clone)]
pub struct StudyDir {
    root: PathBuf,
}

impl StudyDir {
    pub fn new(root: impl Into<PathBuf>) -> StudyDir {
        StudyDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn resolved_config(&self) -> PathBuf {
        self.root.join(RESOLVED_CONFIG)
    }

    pub fn config_hash(&self) -> PathBuf {
        self.root.join(CONFIG_HASH)
    }

    /// The split of a data set, as written by the first stage that needed it.
    pub fn split_csv(&self, dataset: &DatasetId) -> PathBuf {
        self.root
            .join(SPLITS)
            .join(format!("{}.csv", dataset.file_stem()))
    }

    /// Decoded, resized images of a data set at shorter side `side` pixels.
    pub fn image_cache(&self, dataset: &DatasetId, side: u32) -> PathBuf {
        self.root
            .join(CACHE)
            .join(format!("{}-{side}px.u8img", dataset.file_stem()))
    }

    /// What the study keeps of a backbone whatever the data set.
    pub fn backbone_dir(&self, backbone: &str) -> PathBuf {
        self.root.join(BACKBONES).join(backbone)
    }

    /// The fingerprint of the backbone file every run of `backbone` starts from.
    pub fn backbone_record(&self, backbone: &str) -> PathBuf {
        self.backbone_dir(backbone).join("backbone.toml")
    }

    /// The pre-trained backbone's natural-image evaluation (k-NN bank and
    /// queries, natural probe, attention), made once and copied into each
    /// data set's epoch 0.
    pub fn natural_eval(&self, backbone: &str) -> PathBuf {
        self.backbone_dir(backbone).join("natural.safetensors")
    }

    /// The folder of one backbone's runs on one medical data set.
    pub fn model_dir(&self, dataset: &str, backbone: &str) -> PathBuf {
        self.medical_runs_dir(dataset).join(backbone)
    }

    /// The evaluation of the pre-trained backbone (epoch 0) on a medical data
    /// set, shared by its seeds.
    pub fn pretrained_eval(&self, dataset: &str, backbone: &str) -> PathBuf {
        self.model_dir(dataset, backbone)
            .join("pretrained.safetensors")
    }

    /// The folder of one run.
    pub fn run_dir(&self, run: &RunId) -> PathBuf {
        self.model_dir(&run.dataset, &run.backbone)
            .join(&run.method)
            .join(format!("seed-{:02}", run.seed))
    }

    /// The evaluation after `epoch` (≥ 1) of a run.
    pub fn epoch_eval(&self, run: &RunId, epoch: u32) -> PathBuf {
        self.run_dir(run)
            .join(format!("epoch-{epoch:03}.safetensors"))
    }

    /// The evaluation of a run's WiSE-FT backbone (1 − α)θ₀ + αθ_ft, made
    /// after its last epoch.
    pub fn wise_ft_eval(&self, run: &RunId, alpha: f64) -> PathBuf {
        self.run_dir(run)
            .join(format!("wise-ft-{alpha}.safetensors"))
    }

    /// Refuses a study folder of an earlier layout (`runs/<backbone>/seed-<NN>/`
    /// before data sets were an axis, `runs/<dataset>/<backbone>/seed-<NN>/`
    /// before methods were): its runs would be neither read nor resumed, and
    /// new ones would start beside them.
    pub fn check_layout(&self) -> io::Result<()> {
        let subfolders = |dir: &Path| -> Vec<PathBuf> {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.is_dir())
                        .collect()
                })
                .unwrap_or_default()
        };
        // A run folder (it has a log) right below `folder`.
        let runs_in = |folder: &Path| {
            subfolders(folder).iter().any(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
                    && p.join(TRAIN_LOG).exists()
            })
        };
        let refuse = |old: &Path, was: &str| {
            Err(io::Error::other(format!(
                "{}: a study folder of an earlier version ({was}); runs now live in \
                 runs/<dataset>/<backbone>/<method>/seed-<NN>/. Run this study into a new \
                 study.output_dir, or remove {}",
                old.display(),
                self.root.display()
            )))
        };
        for first in subfolders(&self.root.join(RUNS)) {
            if runs_in(&first)
                || first.join("pretrained.safetensors").exists()
                || first.join("backbone.toml").exists()
            {
                return refuse(&first, "runs/<backbone>/seed-<NN>/");
            }
            for second in subfolders(&first) {
                if runs_in(&second) {
                    return refuse(&second, "runs/<dataset>/<backbone>/seed-<NN>/");
                }
            }
        }
        Ok(())
    }

    /// Where a GPU build keeps its compiled kernels and autotune results
    /// (`sim_train::backend::use_kernel_cache`).
    pub fn kernel_cache(&self) -> PathBuf {
        self.root.join(KERNEL_CACHE)
    }

    /// Where `sim-metrics study` writes the Parquet tables.
    pub fn tables_dir(&self) -> PathBuf {
        self.root.join(TABLES)
    }

    /// What the tables were made from (the evaluations, `run.toml`s, the config).
    pub fn tables_manifest(&self) -> PathBuf {
        self.tables_dir().join(INPUTS)
    }

    /// Where `sim-plot` writes the figures.
    pub fn figures_dir(&self) -> PathBuf {
        self.root.join(FIGURES)
    }

    /// What the figures and the report were made from (the tables, the config).
    pub fn figures_manifest(&self) -> PathBuf {
        self.figures_dir().join(INPUTS)
    }

    /// The study's report, written by `sim-plot`.
    pub fn report(&self) -> PathBuf {
        self.root.join(REPORT)
    }

    /// A file in `tables/`: a Parquet table (`crate::tables::file`) or one
    /// of the paper's tables `sim-plot` writes beside them.
    pub fn table(&self, file: &str) -> PathBuf {
        self.tables_dir().join(file)
    }

    /// The paper's Table `number` (1 or 2) as `sim-plot` writes it, in
    /// `extension` (`md` or `csv`).
    pub fn paper_table(&self, number: u32, extension: &str) -> PathBuf {
        self.table(&format!("table{number}.{extension}"))
    }

    /// Every run folder of one medical data set: `runs/<dataset>/`.
    pub fn medical_runs_dir(&self, dataset: &str) -> PathBuf {
        self.root.join(RUNS).join(dataset)
    }

    /// A run's log.
    pub fn train_log(&self, run: &RunId) -> PathBuf {
        self.run_dir(run).join(TRAIN_LOG)
    }

    /// What a run's process printed, when a sweep started it.
    pub fn sweep_log(&self, run: &RunId) -> PathBuf {
        self.run_dir(run).join(SWEEP_LOG)
    }

    /// `slurm/`: the sbatch scripts, their output and the job ids.
    pub fn slurm_dir(&self) -> PathBuf {
        self.root.join(SLURM)
    }

    /// The ids of the Slurm jobs a study submitted.
    pub fn slurm_jobs(&self) -> PathBuf {
        self.slurm_dir().join("jobs.toml")
    }

    /// Whether `name`, right in the study folder, is one of the study's own
    /// files or folders (the layout above): a folder holding anything else
    /// is no study's.
    pub fn is_study_entry(name: &str) -> bool {
        const ENTRIES: [&str; 11] = [
            RESOLVED_CONFIG,
            CONFIG_HASH,
            SPLITS,
            CACHE,
            BACKBONES,
            RUNS,
            TABLES,
            FIGURES,
            REPORT,
            SLURM,
            KERNEL_CACHE,
        ];
        ENTRIES.contains(&name)
    }

    /// Whether any evaluation was made from `dataset`'s split and images: an
    /// evaluation file or a `run.toml` under the medical data set's runs;
    /// for the natural one, a backbone's natural-image epoch 0 or any run's.
    /// Such a study must not be split again or read other images under the
    /// same names. (Empty folders and locks do not count: a run's folder is
    /// locked before its data is read.)
    pub fn has_evaluations(&self, dataset: &DatasetId) -> bool {
        fn any_evaluation(dir: &Path, depth: u32) -> bool {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return false;
            };
            entries.flatten().map(|e| e.path()).any(|p| {
                if p.is_dir() {
                    depth > 0 && any_evaluation(&p, depth - 1)
                } else {
                    p.extension().is_some_and(|e| e == "safetensors")
                        || p.file_name().is_some_and(|n| n == "run.toml")
                }
            })
        }
        let runs = self.root.join("runs");
        match dataset {
            // runs/<dataset>/<backbone>/<method>/seed-<NN>/<file>
            DatasetId::Medical(name) => any_evaluation(&runs.join(name), 3),
            DatasetId::Natural => {
                let backbones = std::fs::read_dir(self.root.join("backbones"));
                backbones.is_ok_and(|d| {
                    d.flatten()
                        .any(|e| e.path().join("natural.safetensors").exists())
                }) || any_evaluation(&runs, 4)
            }
        }
    }

    /// The study's resolved config, checked against the hash recorded beside
    /// it: a hand-edited `study.toml` would make tables and figures that
    /// contradict the runs they come from.
    pub fn read_config(&self) -> Result<StudyConfig, String> {
        let path = self.resolved_config();
        if !path.exists() {
            return Err(format!(
                "{}: not a study directory (no study.toml); run `cargo xtask reproduce` first",
                self.root.display()
            ));
        }
        let config = StudyConfig::from_file(&path).map_err(|e| e.to_string())?;
        let recorded = std::fs::read_to_string(self.config_hash())
            .map_err(|e| format!("{}: {e}", self.config_hash().display()))?;
        if recorded.trim() != config.hash() {
            // The file as written, read by a version whose config has more
            // fields (or other defaults): not an edit.
            let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if recorded.trim() == hex::encode(sha2::Sha256::digest(&text)) {
                return Err(format!(
                    "{} was written by an earlier version of this tool, whose config had \
                        other fields or defaults: \
                     its runs were made under settings this version would read differently. \
                     Run the config into a new study.output_dir \
                     (or use the version that made it to read it)",
                    path.display()
                ));
            }
            return Err(format!(
                "{} does not match the hash its runs were made with ({} in {}, {} now): it \
                    was edited by hand. \
                 Restore it (the runs' config is the one of the config file the study was \
                 run with), \
                 or run the changed config into a new study.output_dir",
                path.display(),
                &recorded.trim()[..recorded.trim().len().min(12)],
                self.config_hash().display(),
                &config.hash()[..12]
            ));
        }
        Ok(config)
    }

    /// Folders whose leftovers (temporary files of a killed writer) the data
    /// stage removes, holding the study folder's lock.
    pub fn data_folders(&self) -> [PathBuf; 3] {
        [
            self.root.clone(),
            self.root.join(SPLITS),
            self.root.join(CACHE),
        ]
    }

    /// Writes the resolved config and its hash, unless the same ones are
    /// there already (a finished study on a read-only mount stays readable).
    /// A study directory made with a different config is refused: its runs
    /// would mix two protocols.
    pub fn write_resolved_config(&self, config: &StudyConfig) -> io::Result<()> {
        self.check_layout()?;
        let resolved = config.to_resolved_toml();
        let hash = config.hash();
        let old_hash = std::fs::read_to_string(self.config_hash()).ok();
        let old_resolved = std::fs::read_to_string(self.resolved_config()).ok();
        if old_hash.as_deref().map(str::trim) == Some(hash.as_str())
            && old_resolved.as_deref() == Some(resolved.as_str())
        {
            return Ok(());
        }
        if let Some(old_hash) = old_hash
            && old_hash.trim() != hash
        {
            let old = std::fs::read_to_string(self.resolved_config()).unwrap_or_default();
            let first_diff = old
                .lines()
                .zip(resolved.lines())
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("\n  was: {a}\n  now: {b}"))
                .unwrap_or_default();
            return Err(io::Error::other(format!(
                "study directory {} was made with another config (hash {} there, {} now); \
                 use a new study.output_dir or remove the directory{first_diff}",
                self.root.display(),
                &old_hash.trim()[..old_hash.trim().len().min(12)],
                &hash[..12],
            )));
        }
        write_atomic(&self.resolved_config(), resolved.as_bytes())?;
        write_atomic(&self.config_hash(), format!("{hash}\n").as_bytes())
    }
}

/// Where a run's or a pre-training's epoch in flight is (`crate::progress`).
pub fn progress_file(dir: &Path) -> PathBuf {
    dir.join("progress.toml")
}

/// A run's committed state in its folder (`crate::run_state`).
pub fn run_state_file(run_dir: &Path) -> PathBuf {
    run_dir.join("run.toml")
}

/// The model and optimiser state after `epoch`, in a run's or a
/// pre-training's folder: `checkpoint-<EEE>/`.
pub fn checkpoint_dir(dir: &Path, epoch: u32) -> PathBuf {
    dir.join(format!("{CHECKPOINT_PREFIX}{epoch:03}"))
}

/// How a checkpoint folder's name starts (a pruned folder is any such).
pub const CHECKPOINT_PREFIX: &str = "checkpoint-";

/// What makes two pre-trainings the same: their settings, the backbone's
/// input size, heads and normalisation, and the data they read.
#[derive(Serialize)]
struct PretrainKey<'a> {
    pretrain: &'a PretrainConfig,
    input_size: u32,
    heads: Option<usize>,
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    split_seed: u64,
    natural: &'a DatasetConfig,
}

/// Where a pre-trained backbone is made: `pretrained/` beside the study
/// folder, one folder per distinct pre-training (module docs).
pub fn pretrain_dir(
    config: &StudyConfig,
    backbone: &BackboneConfig,
    pretrain: &PretrainConfig,
) -> PathBuf {
    let key = PretrainKey {
        pretrain,
        input_size: backbone.input_size,
        heads: backbone.heads,
        mean: backbone.mean,
        std: backbone.std,
        split_seed: config.study.split_seed,
        natural: &config.datasets.natural,
    };
    let text = toml::to_string(&key).expect("a pre-training key serialises");
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    let studies = config
        .output_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    studies
        .join("pretrained")
        .join(format!("{}-{}", pretrain.objective.name(), &hash[..12]))
}

/// The pre-trained model in a pre-training's folder.
pub fn pretrained_model(dir: &Path) -> PathBuf {
    dir.join("model.safetensors")
}

/// The backbone after `epoch` of a pre-training, kept as it ran (every
/// learning-curve epoch before the last).
pub fn pretrained_snapshot(dir: &Path, epoch: u32) -> PathBuf {
    dir.join(format!("model-epoch-{epoch:03}.safetensors"))
}

/// A pre-training's log.
pub fn pretrain_log(dir: &Path) -> PathBuf {
    dir.join("pretrain.log")
}

/// A pre-training's committed state in its folder (`crate::pretrain_state`).
pub fn pretrain_state_file(dir: &Path) -> PathBuf {
    dir.join("pretrain.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One medical data set (`h`), one seed, no backbone.
    fn minimal_config() -> StudyConfig {
        let text = "[study]\nname = \"t\"\nseeds = [0]\n[datasets.medical]\nkind \
            = \"ham10000\"\nroot = \"h\"\n\
                    [datasets.natural]\nkind = \"image-folder\"\nroot = \"n\"\n";
        StudyConfig::from_toml_str(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn a_changed_config_is_refused_in_the_same_study_dir() {
        let config = minimal_config();
        let dir = tempfile::tempdir().unwrap();
        let study = StudyDir::new(dir.path());
        study.write_resolved_config(&config).unwrap();
        study.write_resolved_config(&config).unwrap();
        let mut changed = config.clone();
        changed.training.epochs = 2;
        let msg = study
            .write_resolved_config(&changed)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("another config"), "{msg}");
        assert!(msg.contains("epochs"), "{msg}");
        let on_disk = StudyConfig::from_file(&study.resolved_config()).unwrap();
        assert_eq!(on_disk, config);
    }

    #[test]
    fn a_study_folder_of_an_earlier_layout_is_refused() {
        let config = minimal_config();
        let dir = tempfile::tempdir().unwrap();
        let study = StudyDir::new(dir.path());
        let run = RunId {
            dataset: "h".into(),
            backbone: "vit".into(),
            method: "full".into(),
            seed: 0,
        };
        std::fs::create_dir_all(study.run_dir(&run)).unwrap();
        std::fs::write(study.run_dir(&run).join("train.log"), "").unwrap();
        study.write_resolved_config(&config).unwrap();
        for (old, says) in [
            ("runs/h/vit/seed-01", "runs/<dataset>/<backbone>/seed-<NN>/"),
            ("runs/vit/seed-00", "runs/<backbone>/seed-<NN>/"),
        ] {
            std::fs::create_dir_all(dir.path().join(old)).unwrap();
            std::fs::write(dir.path().join(old).join("train.log"), "").unwrap();
            let msg = study
                .write_resolved_config(&config)
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("earlier version") && msg.contains(says),
                "{old}: {msg}"
            );
            std::fs::remove_dir_all(dir.path().join(old)).unwrap();
        }
    }

    #[test]
    fn a_hand_edited_study_toml_is_refused_naming_the_hash_file() {
        let dir = tempfile::tempdir().unwrap();
        let study = StudyDir::new(dir.path());
        assert!(
            study
                .read_config()
                .unwrap_err()
                .contains("not a study directory")
        );
        study.write_resolved_config(&minimal_config()).unwrap();
        assert_eq!(
            study.read_config().unwrap(),
            StudyConfig::from_file(&study.resolved_config()).unwrap()
        );
        let text = std::fs::read_to_string(study.resolved_config()).unwrap();
        std::fs::write(
            study.resolved_config(),
            text.replace("similarity_threshold = 0.5", "similarity_threshold = 0.9"),
        )
        .unwrap();
        let msg = study.read_config().unwrap_err();
        assert!(
            msg.contains("study.toml does not match")
                && msg.contains("study.sha256")
                && msg.contains("edited by hand"),
            "{msg}"
        );
        // Unedited, but read by a version whose config has a field more: said so.
        let earlier = text.replace(
            "permutation_resamples = 10000\nnatural_every_epoch = true\n",
            "permutation_resamples = 10000\n",
        );
        assert_ne!(earlier, text, "the test removes a field");
        std::fs::write(study.resolved_config(), &earlier).unwrap();
        std::fs::write(
            study.config_hash(),
            hex::encode(sha2::Sha256::digest(earlier.as_bytes())),
        )
        .unwrap();
        let msg = study.read_config().unwrap_err();
        assert!(
            msg.contains("earlier version of this tool") && !msg.contains("edited by hand"),
            "{msg}"
        );
    }

    #[test]
    fn evaluations_of_a_data_set_are_seen_per_data_set() {
        let dir = tempfile::tempdir().unwrap();
        let study = StudyDir::new(dir.path());
        let (h, natural) = (DatasetId::Medical("h".into()), DatasetId::Natural);
        assert!(!study.has_evaluations(&h) && !study.has_evaluations(&natural));
        std::fs::create_dir_all(study.backbone_dir("vit")).unwrap();
        std::fs::write(study.natural_eval("vit"), "").unwrap();
        assert!(!study.has_evaluations(&h) && study.has_evaluations(&natural));
        let run = RunId {
            dataset: "h".into(),
            backbone: "vit".into(),
            method: "full".into(),
            seed: 0,
        };
        std::fs::create_dir_all(study.run_dir(&run)).unwrap();
        std::fs::write(study.run_dir(&run).join(".lock"), "").unwrap();
        assert!(
            !study.has_evaluations(&h),
            "a locked, empty run folder is no evaluation"
        );
        std::fs::write(study.run_dir(&run).join("run.toml"), "").unwrap();
        assert!(study.has_evaluations(&h));
        std::fs::remove_file(study.run_dir(&run).join("run.toml")).unwrap();
        std::fs::write(study.pretrained_eval("h", "vit"), "").unwrap();
        assert!(study.has_evaluations(&h));
        assert!(!study.has_evaluations(&DatasetId::Medical("other".into())));
    }

    #[test]
    fn an_unchanged_config_is_not_rewritten_so_a_read_only_study_stays_usable() {
        let config = minimal_config();
        let dir = tempfile::tempdir().unwrap();
        let study = StudyDir::new(dir.path().join("s"));
        study.write_resolved_config(&config).unwrap();
        let modified = || {
            std::fs::metadata(study.resolved_config())
                .unwrap()
                .modified()
                .unwrap()
        };
        let before = modified();
        std::thread::sleep(std::time::Duration::from_millis(20));
        study.write_resolved_config(&config).unwrap();
        assert_eq!(modified(), before, "rewritten although unchanged");
        // Moved elsewhere: the same study.
        let mut moved = config.clone();
        moved.study.output_dir = Some(dir.path().join("moved"));
        study.write_resolved_config(&moved).unwrap();
        assert_eq!(modified(), before, "moving the study changed its identity");
    }

    /// A minimal study whose backbone is pre-trained with `BODY` + `extra`.
    fn pretrained(extra: &str) -> Result<StudyConfig, String> {
        crate::config::pretrain_tests::config(extra)
    }

    #[test]
    fn the_same_pretraining_shares_a_folder_and_another_does_not() {
        let a = pretrained("").unwrap();
        let mut renamed = a.clone();
        renamed.study.name = "other".into();
        renamed.study.output_dir = Some("studies/other".into());
        renamed.backbones[0].name = "also-sup".into();
        let dir =
            |c: &StudyConfig| pretrain_dir(c, &c.backbones[0], c.backbones[0].pretrain().unwrap());
        assert_eq!(
            dir(&a),
            dir(&renamed),
            "another study and backbone name, the same pre-training"
        );
        let b = pretrained(", seed = 1").unwrap();
        assert_ne!(dir(&a), dir(&b));
        let mut more = a.clone();
        more.datasets.natural.max_samples = Some(10);
        assert_ne!(dir(&a), dir(&more), "other data");
    }
}
