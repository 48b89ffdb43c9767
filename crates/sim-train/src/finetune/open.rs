//! What a run reads and checks before it trains: that it is one of the
//! study's runs, its backbone file, its folder (locked) and committed state,
//! and the study's splits and image caches. A run resumes only from the
//! config, splits and backbone file it started with.

use crate::data::batch::Batcher;
use crate::data::image_cache::ImageCache;
use crate::data::prepare::{PreparedDataset, check_fits_data, lock_study};
use crate::data::transform::Normalisation;
use crate::model::{Backbone, LoadOptions};
use crate::train::resumable;
use anyhow::bail;
use burn::prelude::*;
use sim_study::StudyDir;
use sim_study::config::{BackboneConfig, DatasetId, MethodConfig, RunId, StudyConfig};
use sim_study::lock::DirLock;
use sim_study::run_state::{RunState, Status};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::eval::EvalSets;
use super::step::TrainSplit;

/// A run opened to train: checked, its backbone loaded, its folder locked
/// and its log open (both until this is dropped).
pub(super) struct Opened<'c, B: Backend> {
    pub(super) config: &'c StudyConfig,
    pub(super) study: StudyDir,
    pub(super) backbone: &'c BackboneConfig,
    pub(super) method: &'c MethodConfig,
    pub(super) backbone_path: PathBuf,
    pub(super) loaded: Backbone<B>,
    pub(super) run_dir: PathBuf,
    /// What an earlier attempt committed; none for a new run.
    pub(super) state: Option<RunState>,
    /// The last epoch committed (0: none).
    pub(super) resumed_at: u32,
    // Dropped in this order: the log closes before the lock goes.
    _log: tracing::subscriber::DefaultGuard,
    _lock: DirLock,
}

impl<'c, B: Backend> Opened<'c, B> {
    /// Opens `run` of `config`; none where it had finished.
    ///
    /// Order matters for what a bad input leaves: the config and the
    /// backbone file are checked before anything is written; the run's
    /// folder is locked before its log opens.
    pub(super) fn open(
        config: &'c StudyConfig,
        run: &RunId,
        device: &B::Device,
    ) -> anyhow::Result<Option<Opened<'c, B>>> {
        let (backbone, method) = check_run(config, run)?;
        let study = StudyDir::new(config.output_dir());
        crate::backend::use_kernel_cache(&study.kernel_cache());
        let backbone_path = config.backbone_file(backbone);
        let loaded = load_backbone::<B>(config, backbone, &backbone_path, device)?;

        let run_dir = study.run_dir(run);
        let lock = DirLock::try_acquire(&run_dir)?;
        let state = read_state(&run_dir, &config.hash())?;
        if state.as_ref().is_some_and(|s| s.status == Status::Finished) {
            // Nothing is written, so a finished study may be read-only.
            return Ok(None);
        }
        let log = resumable::start(&run_dir, &study.train_log(run))?;
        Ok(Some(Opened {
            resumed_at: state.as_ref().map_or(0, |s| s.last_finished_epoch),
            config,
            study,
            backbone,
            method,
            backbone_path,
            loaded,
            run_dir,
            state,
            _log: log,
            _lock: lock,
        }))
    }
}

/// The run's backbone and method, once the run is checked to be one of the
/// study's.
fn check_run<'c>(
    config: &'c StudyConfig,
    run: &RunId,
) -> anyhow::Result<(&'c BackboneConfig, &'c MethodConfig)> {
    let bcfg = config.backbone(&run.backbone).map_err(anyhow::Error::msg)?;
    config
        .dataset(&DatasetId::Medical(run.dataset.clone()))
        .map_err(anyhow::Error::msg)?;
    let method = config.method(&run.method).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        config.study.seeds.contains(&run.seed),
        "seed {} is not among the study's seeds {:?}",
        run.seed,
        config.study.seeds
    );
    Ok((bcfg, method))
}

/// The backbone from its file, at the study's precision; a backbone the
/// tool pre-trains must have been pre-trained.
fn load_backbone<B: Backend>(
    config: &StudyConfig,
    bcfg: &BackboneConfig,
    path: &Path,
    device: &B::Device,
) -> anyhow::Result<Backbone<B>> {
    let name = &bcfg.name;
    if bcfg.pretrain().is_some() && !path.exists() {
        bail!(
            "backbone `{name}` is pre-trained by the tool and {} is not there yet: run \
                `sim-train pretrain --backbone {name}` with this config first (`cargo xtask \
                reproduce` does)",
            path.display()
        );
    }
    let mut loaded = crate::model::load::<B>(path, &LoadOptions::for_backbone(bcfg), device)?;
    loaded.model.set_precision(config.training.precision);
    Ok(loaded)
}

/// Refuses to resume a run whose backbone file changed since it started.
pub(super) fn check_same_backbone(
    run_dir: &Path,
    state: &RunState,
    path: &Path,
    sha256: &str,
) -> anyhow::Result<()> {
    if state.backbone_sha256 != sha256 {
        bail!(
            "{}: the run started from backbone file {} with SHA-256 {}, which now has \
                SHA-256 {sha256}; \
             restore that file, or remove {} to start the run over",
            RunState::path(run_dir).display(),
            path.display(),
            state.backbone_sha256,
            run_dir.display()
        );
    }
    Ok(())
}

/// The run's committed state, refused if another config made it.
fn read_state(run_dir: &Path, hash: &str) -> anyhow::Result<Option<RunState>> {
    let state = RunState::read(run_dir).map_err(anyhow::Error::msg)?;
    if let Some(s) = &state {
        anyhow::ensure!(
            s.config_hash == hash,
            "{}: made with another config (hash {})",
            RunState::path(run_dir).display(),
            s.config_hash
        );
    }
    Ok(state)
}

/// What a run reads: the study's split and image caches of its medical
/// data set and of the natural images, every sample's label, and the
/// SHA-256 of each split file.
pub(super) struct RunData {
    pub(super) medical: PreparedDataset,
    pub(super) natural: PreparedDataset,
    medical_cache: ImageCache,
    natural_cache: ImageCache,
    /// Every sample's label, in cache order.
    medical_labels: Vec<usize>,
    natural_labels: Vec<usize>,
    /// The SHA-256 of each split file, by data set (`run.toml`'s `data_sha256`).
    pub(super) split_sha256: BTreeMap<String, String>,
}

impl RunData {
    /// Made under the study folder's lock by the first run that needs
    /// them, the caches at `size` px.
    pub(super) fn prepare(
        config: &StudyConfig,
        study: &StudyDir,
        run: &RunId,
        size: u32,
    ) -> anyhow::Result<RunData> {
        let _study_lock = lock_study(study)?;
        study.write_resolved_config(config)?;
        let medical_id = DatasetId::Medical(run.dataset.clone());
        let mut medical = PreparedDataset::load(config, study, &medical_id)?;
        let mut natural = PreparedDataset::load(config, study, &DatasetId::Natural)?;
        check_fits_data(config, &medical)?;
        check_fits_data(config, &natural)?;
        let split_sha256 = BTreeMap::from([
            (medical.id.file_stem(), medical.split_sha256.clone()),
            (natural.id.file_stem(), natural.split_sha256.clone()),
        ]);
        Ok(RunData {
            medical_cache: medical.image_cache(study, size)?,
            natural_cache: natural.image_cache(study, size)?,
            medical_labels: medical.labels(),
            natural_labels: natural.labels(),
            medical,
            natural,
            split_sha256,
        })
    }

    /// The medical train split.
    pub(super) fn split(&self) -> TrainSplit<'_> {
        TrainSplit::new(
            self.medical.train_indices(),
            &self.medical_labels,
            self.classes(),
        )
    }

    /// The medical data set's number of classes.
    pub(super) fn classes(&self) -> usize {
        self.medical.dataset.classes.len()
    }

    /// A run resumed in `run_dir` reads the splits it started with.
    pub(super) fn check_resumes(&self, run_dir: &Path, state: &RunState) -> anyhow::Result<()> {
        check_same_data(
            &RunState::path(run_dir),
            &state.data_sha256,
            &self.split_sha256,
            &format!("remove {} to start the run over", run_dir.display()),
        )
    }

    /// The evaluation sets, their images `size` px normalised by `(mean, std)`.
    pub(super) fn eval_sets(
        &self,
        config: &StudyConfig,
        size: u32,
        (mean, std): ([f32; 3], [f32; 3]),
    ) -> EvalSets<'_> {
        let batcher = |cache, labels| Batcher {
            cache,
            labels,
            size,
            norm: Normalisation { mean, std },
        };
        EvalSets::new(
            config,
            (
                &self.medical,
                batcher(&self.medical_cache, &self.medical_labels),
            ),
            (
                &self.natural,
                batcher(&self.natural_cache, &self.natural_labels),
            ),
        )
    }
}

/// Every split SHA-256 that `file` recorded is the one of the split file
/// now (a file made before they were recorded records none).
pub(super) fn check_same_data(
    file: &Path,
    recorded: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
    or: &str,
) -> anyhow::Result<()> {
    for (dataset, was) in recorded {
        if let Some(is) = now.get(dataset)
            && is != was
        {
            bail!(
                "{}: made from the split of {dataset} with SHA-256 {was}, but \
                    splits/{dataset}.csv now has SHA-256 {is}: \
                 the data set's split or images changed since, and numbers of both would \
                 mix. Restore the split file \
                 and the data, run the study into a new study.output_dir, {or}",
                file.display()
            );
        }
    }
    Ok(())
}
