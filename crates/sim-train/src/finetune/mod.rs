//! `sim-train finetune`: one run = one medical data set × one backbone × one
//! fine-tuning method × one seed (docs/SPEC.md, "Fine-tuning protocol"; the methods
//! other than full fine-tuning: [`method`], [`wise_ft`]). Full fine-tuning with a new linear head on the
//! final-norm CLS token, cross-entropy, AdamW with separate backbone and head
//! learning rates, cosine schedule with warm-up. An evaluation before training
//! (epoch 0, shared by every seed of a data set and backbone; its natural-image
//! part shared by every data set too) and after every epoch; a
//! checkpoint after every epoch, so rerunning the command resumes.
//!
//! The seed fixes the head's initialisation, the data order and the
//! augmentation, all drawn from (seed, epoch): a resumed run draws exactly
//! what an uninterrupted one would.

pub mod device_check;
pub mod eval;
pub mod method;
pub mod plan;
pub mod wise_ft;

use crate::data::batch::{Batcher, HostBatch, ImageBatch};
use crate::data::colour::ColourAugment;
use crate::data::image_cache::ImageCache;
use crate::data::prepare::{PreparedDataset, check_fits_data, lock_study};
use crate::data::transform::{Normalisation, TrainAugment};
use crate::model::{LoadOptions, Vit};
use crate::train::batch_parts::BatchParts;
use crate::train::checkpoint::Training;
use crate::train::classifier::Classifier;
use crate::train::{EpochProgress, resumable, schedule};
use anyhow::bail;
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use eval::{EvalSets, evaluate, evaluate_medical, evaluate_medical_pretrained, evaluate_natural};
use method::Method;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sim_study::config::{
    BackboneConfig, ClassBalance, DatasetId, MethodConfig, RunId, StudyConfig, TrainingConfig,
};
use sim_study::eval_file::{EvalFile, EvalMetadata};
use sim_study::fingerprint::Fingerprint;
use sim_study::lock::DirLock;
use sim_study::run_state::{RunState, Status};
use sim_study::tensors::write_safetensors;
use sim_study::{StudyDir, crash, remove_leftovers};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The run had finished before: nothing was done.
    AlreadyFinished,
    /// The run finished now (possibly resumed from `resumed_at`).
    Finished { resumed_at: u32 },
}

/// Fine-tunes `run.backbone` on `run.dataset` with `run.seed`, resuming from
/// the last finished epoch.
///
/// Order matters for what a kill or a bad input leaves: the config and the
/// backbone file are checked before anything is written; the run's folder is
/// locked before its log opens; shared files (study.toml, splits, caches; the
/// backbone's fingerprint and natural-image epoch 0; the data set's epoch 0)
/// are written under their folder's lock.
pub fn run<B: AutodiffBackend>(
    config: &StudyConfig,
    run: &RunId,
    device: &B::Device,
) -> anyhow::Result<Outcome> {
    let (backbone, seed) = (run.backbone.as_str(), run.seed);
    let (bcfg, method_config) = check_run(config, run)?;
    let medical_id = DatasetId::Medical(run.dataset.clone());
    let study = StudyDir::new(config.output_dir());
    crate::backend::use_kernel_cache(&study.kernel_cache());
    let backbone_path = config.backbone_file(bcfg);
    let loaded = load_backbone::<B>(config, bcfg, &backbone_path, device)?;

    let run_dir = study.run_dir(run);
    let _run_lock = DirLock::try_acquire(&run_dir)?;
    let hash = config.hash();
    let state = read_state(&run_dir, &hash)?;
    if state.as_ref().is_some_and(|s| s.status == Status::Finished) {
        // Nothing is written, so a finished study may be read-only.
        return Ok(Outcome::AlreadyFinished);
    }
    let _log = resumable::start(&run_dir, &study.train_log(run))?;
    let resumed_at = state.as_ref().map_or(0, |s| s.last_finished_epoch);

    // Data: the study's split and image caches.
    let size = bcfg.input_size;
    let data = RunData::prepare(config, &study, &medical_id, size)?;
    if let Some(s) = &state {
        check_same_data(
            &RunState::path(&run_dir),
            &s.data_sha256,
            &data.split_sha256,
            &format!("remove {} to start the run over", run_dir.display()),
        )?;
    }
    let (medical_labels, natural_labels) = (data.medical.labels(), data.natural.labels());
    let classes = data.medical.dataset.classes.len();

    let (mean, std) = bcfg.normalisation(loaded.naming.family());
    let batcher = |cache, labels| Batcher {
        cache,
        labels,
        size,
        norm: Normalisation { mean, std },
    };
    let sets = EvalSets::new(
        config,
        (&data.medical, batcher(&data.medical_cache, &medical_labels)),
        (&data.natural, batcher(&data.natural_cache, &natural_labels)),
    );

    let provenance = Provenance {
        backbone: backbone.to_string(),
        attention_ids: sets.attention_ids(&data.natural),
        data_sha256: data.split_sha256.clone(),
    };
    // Its head drawn from the split seed: the same epoch 0 for every seed.
    let epoch0_model = Classifier::new(
        loaded.model.clone(),
        classes,
        config.study.split_seed,
        device,
    )
    .valid();
    let backbone_sha256 = evaluate_pretrained(
        &study,
        run,
        bcfg,
        &backbone_path,
        &epoch0_model,
        &sets,
        &provenance,
        device,
    )?;
    if let Some(s) = &state {
        check_same_backbone(&run_dir, s, &backbone_path, &backbone_sha256)?;
    }

    let t = &config.training;
    let classifier = Classifier::new(loaded.model, classes, seed, device);
    // Anchored at the backbone as the classifier holds it (its own head dropped).
    let method = Method::new(method_config, &classifier.backbone);
    let wise_ft_start = method_config
        .wise_ft
        .as_ref()
        .map(|_| classifier.backbone.valid());
    let mut training = Training::new(classifier, t.weight_decay);
    if resumed_at > 0 {
        training = resumable::resume(&run_dir, resumed_at, || {
            training.restore(&run_dir, resumed_at, device)
        })?;
        tracing::info!("resuming {run} after epoch {resumed_at}");
    }
    let mut state = state.unwrap_or_else(|| {
        let started = (hash, backbone_sha256.clone(), data.split_sha256);
        RunState::started(run, started, t.epochs)
    });

    let train = data.medical.train_indices();
    let loss_weights = class_weights(&medical_labels, &train, classes);
    let steps = StepInputs::new(t, &sets, &method, (train.len(), &loss_weights), device);
    log_plan(
        config,
        (bcfg, method_config),
        &training.model,
        &sets,
        train.len(),
        device,
    );

    let epochs = Epochs {
        config,
        run,
        run_dir: &run_dir,
        train: &train,
        labels: &medical_labels,
        loss_weights: &loss_weights,
        steps,
        evaluated: Evaluated {
            study: &study,
            run,
            sets: &sets,
            provenance: &provenance,
            backbone_sha256: &backbone_sha256,
        },
    };
    let training = epochs.train(training, &mut state, resumed_at)?;
    // After the last epoch (again, if a kill came before the run was marked
    // finished: the files are rewritten whole, the same bytes).
    if let (Some(alphas), Some(start)) = (&method_config.wise_ft, &wise_ft_start) {
        let finetuned = training.model.valid();
        epochs
            .evaluated
            .write_wise_ft(start, &finetuned, alphas, t.epochs, device)?;
    }
    resumable::finish(&run_dir, &mut state)?;
    Ok(Outcome::Finished { resumed_at })
}

/// What a run's epochs read, besides the model they train.
struct Epochs<'a, B: AutodiffBackend> {
    config: &'a StudyConfig,
    run: &'a RunId,
    run_dir: &'a Path,
    /// The medical train split, every sample's label and the per-class
    /// loss weights: what an epoch's order is drawn from.
    train: &'a [usize],
    labels: &'a [usize],
    loss_weights: &'a [f32],
    steps: StepInputs<'a, B>,
    evaluated: Evaluated<'a>,
}

impl<B: AutodiffBackend> Epochs<'_, B> {
    /// Trains the epochs after `resumed_at`, each evaluated and committed
    /// (a non-finite loss commits the run as failed and stops it).
    fn train(
        &self,
        mut training: Training<B>,
        state: &mut RunState,
        resumed_at: u32,
    ) -> anyhow::Result<Training<B>> {
        let (config, run, t) = (self.config, self.run, &self.config.training);
        for epoch in resumed_at + 1..=t.epochs {
            let mut rng = ChaCha8Rng::seed_from_u64(run.seed);
            rng.set_stream(epoch as u64);
            let order = epoch_order(
                self.train,
                self.labels,
                self.loss_weights,
                t.class_balance,
                &mut rng,
            );
            let epoch_start = Instant::now();
            let progress =
                EpochProgress::start(Some(self.run_dir), epoch, t.epochs, self.steps.per_epoch);
            let trained = train_epoch(training, epoch, &order, &mut rng, &self.steps, &progress);
            drop(progress);
            training = match trained {
                Ok(training) => training,
                Err(NonFiniteLoss { step, value }) => {
                    let why = format!("loss {value} at epoch {epoch}, step {step}");
                    let path = resumable::fail(self.run_dir, state, why)?;
                    bail!(
                        "{run}: loss is {value} at epoch {epoch}, step {step}; run marked \
                            failed in {}",
                        path.display()
                    );
                }
            };
            let train_time = epoch_start.elapsed().as_secs_f64();
            if config
                .dump
                .epochs
                .as_ref()
                .is_none_or(|e| e.contains(&epoch))
            {
                let natural = epoch == t.epochs || config.evaluation.natural_every_epoch;
                let model = training.model.valid();
                self.evaluated
                    .write_epoch(&model, epoch, natural, self.steps.device)?;
            }
            resumable::commit_epoch(
                self.run_dir,
                state,
                epoch,
                || training.save(self.run_dir, epoch),
                "run-state-written",
            )?;
            tracing::info!(
                "epoch {epoch}/{}: trained in {train_time:.1} s, evaluated and saved in {:.1} s",
                t.epochs,
                epoch_start.elapsed().as_secs_f64() - train_time
            );
        }
        Ok(training)
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
) -> anyhow::Result<crate::model::Backbone<B>> {
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
fn check_same_backbone(
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

/// Logs what the run will cost (time per step, timed here, and disk).
fn log_plan<B: AutodiffBackend>(
    config: &StudyConfig,
    (bcfg, method): (&BackboneConfig, &MethodConfig),
    model: &Classifier<B>,
    sets: &EvalSets,
    train_images: usize,
    device: &B::Device,
) {
    let t = &config.training;
    let classes = model.head.weight.dims()[1];
    let images = plan::EvalImages {
        medical_test: sets.medical_test.len(),
        medical_validation: sets.medical_validation.len(),
        natural_probe: sets.natural_probe.len(),
        knn_bank: sets.knn_bank.len(),
        knn_query: sets.knn_query.len(),
    };
    let size = bcfg.input_size;
    let step_seconds = plan::time_step(
        model,
        t.batch_size,
        size as usize,
        classes,
        &sets.parts,
        device,
    );
    let cost = plan::RunCost::new(config, model, images, train_images, step_seconds);
    tracing::info!(
        "{}; method {} ({:?})",
        cost.describe(&bcfg.name, size, t.epochs),
        method.name,
        method.kind
    );
}

/// What a run reads: the study's split and image caches of its medical
/// data set and of the natural images, and the SHA-256 of each split file.
struct RunData {
    medical: PreparedDataset,
    natural: PreparedDataset,
    medical_cache: ImageCache,
    natural_cache: ImageCache,
    /// The SHA-256 of each split file, by data set (`run.toml`'s `data_sha256`).
    split_sha256: BTreeMap<String, String>,
}

impl RunData {
    /// Made under the study folder's lock by the first run that needs
    /// them, the caches at `size` px.
    fn prepare(
        config: &StudyConfig,
        study: &StudyDir,
        medical_id: &DatasetId,
        size: u32,
    ) -> anyhow::Result<RunData> {
        let _study_lock = lock_study(study)?;
        study.write_resolved_config(config)?;
        let mut medical = PreparedDataset::load(config, study, medical_id)?;
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
            medical,
            natural,
            split_sha256,
        })
    }
}

/// Where a run's evaluations go and what they record.
struct Evaluated<'a> {
    study: &'a StudyDir,
    run: &'a RunId,
    sets: &'a EvalSets<'a>,
    provenance: &'a Provenance,
    backbone_sha256: &'a str,
}

impl Evaluated<'_> {
    /// The evaluation after `epoch`: the medical sets, and the natural ones
    /// where `natural` (`evaluation.natural_every_epoch`, or the last epoch).
    fn write_epoch<B: Backend>(
        &self,
        model: &Classifier<B>,
        epoch: u32,
        natural: bool,
        device: &B::Device,
    ) -> anyhow::Result<()> {
        let tensors = if natural {
            evaluate(model, self.sets, device)
        } else {
            evaluate_medical(model, self.sets, device)
        };
        let metadata = self.metadata(epoch, None);
        write_safetensors(
            &self.study.epoch_eval(self.run, epoch),
            tensors,
            Some(metadata),
        )?;
        crash::point("evaluation-written");
        Ok(())
    }

    /// After the last epoch `last` (again, if a kill came before the run was
    /// marked finished: the files are rewritten whole, the same bytes): the
    /// WiSE-FT backbone (1 − α)θ₀ + αθ_ft at each α, with the fine-tuned head.
    fn write_wise_ft<B: Backend>(
        &self,
        start: &Vit<B>,
        finetuned: &Classifier<B>,
        alphas: &[f64],
        last: u32,
        device: &B::Device,
    ) -> anyhow::Result<()> {
        for &alpha in alphas {
            let eval_start = Instant::now();
            let model = wise_ft::interpolate(start, finetuned, alpha);
            let tensors = evaluate(&model, self.sets, device);
            let metadata = self.metadata(last, Some(alpha));
            write_safetensors(
                &self.study.wise_ft_eval(self.run, alpha),
                tensors,
                Some(metadata),
            )?;
            crash::point("wise-ft-written");
            tracing::info!(
                "WiSE-FT α = {alpha}: evaluated in {:.1} s",
                eval_start.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    fn metadata(
        &self,
        epoch: u32,
        alpha: Option<f64>,
    ) -> std::collections::HashMap<String, String> {
        self.provenance.metadata(
            Some(&self.run.dataset),
            Some(self.run.seed),
            epoch,
            alpha,
            self.backbone_sha256,
        )
    }
}

/// Where every evaluation file of a run comes from (its metadata).
struct Provenance {
    backbone: String,
    /// Ids of the natural images whose attention is kept.
    attention_ids: Vec<String>,
    /// SHA-256 of the medical and the natural split files, by data set.
    data_sha256: BTreeMap<String, String>,
}

impl Provenance {
    /// A file without a medical data set (a backbone's natural-image epoch
    /// 0) records the natural split only.
    fn metadata(
        &self,
        dataset: Option<&str>,
        seed: Option<u64>,
        epoch: u32,
        alpha: Option<f64>,
        backbone_sha256: &str,
    ) -> std::collections::HashMap<String, String> {
        let natural = DatasetId::Natural.file_stem();
        let data_sha256 = self
            .data_sha256
            .iter()
            .filter(|(k, _)| dataset.is_some() || **k == natural)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        EvalMetadata {
            dataset: dataset.map(str::to_owned),
            backbone: self.backbone.clone(),
            backbone_sha256: backbone_sha256.to_owned(),
            data_sha256,
            epoch,
            seed,
            alpha,
            attention_ids: self.attention_ids.clone(),
        }
        .to_map()
    }
}

/// Epoch 0, made by the first run that needs it while the others wait: the
/// backbone file's fingerprint and its natural-image evaluation once per
/// backbone, then the medical data set's evaluation (with the natural
/// tensors copied in) once per data set and backbone. Returns the backbone
/// file's SHA-256.
#[allow(clippy::too_many_arguments)]
fn evaluate_pretrained<B: Backend>(
    study: &StudyDir,
    run: &RunId,
    bcfg: &BackboneConfig,
    backbone_path: &Path,
    model: &Classifier<B>,
    sets: &EvalSets<'_>,
    provenance: &Provenance,
    device: &B::Device,
) -> anyhow::Result<String> {
    let natural_eval = study.natural_eval(&run.backbone);
    let backbone_sha256 = {
        let _backbone_lock = DirLock::wait(&study.backbone_dir(&run.backbone))?;
        remove_leftovers(&study.backbone_dir(&run.backbone))?;
        let fingerprint = check_backbone_file(study, bcfg, backbone_path)?;
        if natural_eval.exists() {
            check_epoch0_data(&natural_eval, provenance)?;
        } else {
            let start = Instant::now();
            let tensors = evaluate_natural(model, sets, true, device);
            write_safetensors(
                &natural_eval,
                tensors,
                Some(provenance.metadata(None, None, 0, None, &fingerprint.sha256)),
            )?;
            tracing::info!(
                "epoch 0 on the natural images written to {} in {:.1} s",
                natural_eval.display(),
                start.elapsed().as_secs_f64()
            );
        }
        fingerprint.sha256
    };
    let pretrained = study.pretrained_eval(&run.dataset, &run.backbone);
    let model_dir = study.model_dir(&run.dataset, &run.backbone);
    let _lock = DirLock::wait(&model_dir)?;
    remove_leftovers(&model_dir)?;
    if pretrained.exists() {
        check_epoch0_data(&pretrained, provenance)?;
    } else {
        let start = Instant::now();
        let mut tensors = evaluate_medical_pretrained(model, sets, device);
        tensors.extend(
            EvalFile::open(&natural_eval)
                .map_err(anyhow::Error::msg)?
                .raw_tensors(),
        );
        write_safetensors(
            &pretrained,
            tensors,
            Some(provenance.metadata(Some(&run.dataset), None, 0, None, &backbone_sha256)),
        )?;
        tracing::info!(
            "epoch 0 evaluation written to {} in {:.1} s",
            pretrained.display(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(backbone_sha256)
}

/// An existing epoch 0 was made from the data this run reads.
fn check_epoch0_data(file: &Path, provenance: &Provenance) -> anyhow::Result<()> {
    let recorded = EvalFile::open(file)
        .map_err(anyhow::Error::msg)?
        .metadata()
        .map_err(anyhow::Error::msg)?
        .data_sha256;
    check_same_data(
        file,
        &recorded,
        &provenance.data_sha256,
        "or remove it to evaluate the backbone again (and every run made from it)",
    )
}

/// Every split SHA-256 that `file` recorded is the one of the split file
/// now (a file made before they were recorded records none).
fn check_same_data(
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

/// The backbone file's fingerprint, checked against the one the study
/// recorded when its first run of this backbone started (recorded now if
/// none was). Call it holding the backbone folder's lock.
fn check_backbone_file(
    study: &StudyDir,
    bcfg: &BackboneConfig,
    path: &Path,
) -> anyhow::Result<Fingerprint> {
    let record = study.backbone_record(&bcfg.name);
    let recorded = Fingerprint::read(&record).map_err(anyhow::Error::msg)?;
    let now = Fingerprint::of(path, recorded.as_ref())?;
    if let Some(r) = &recorded
        && r.sha256 != now.sha256
    {
        bail!(
            "backbone file {} changed since this study started using it: SHA-256 {} \
                recorded in {}, {} now; \
             runs of `{}` would mix two models. Restore the file, or remove {} to start \
             this backbone over",
            path.display(),
            r.sha256,
            record.display(),
            now.sha256,
            bcfg.name,
            study.backbone_dir(&bcfg.name).display()
        );
    }
    if recorded.as_ref() != Some(&now) {
        now.write(&record)?;
    }
    Ok(now)
}

/// What every training step of a run uses.
struct StepInputs<'a, B: AutodiffBackend> {
    batcher: &'a Batcher<'a>,
    augment: TrainAugment,
    /// Per-class loss weights (`class_balance = "loss-weights"`).
    class_weights: Option<Vec<f32>>,
    training: &'a TrainingConfig,
    /// Steps per epoch: the schedule's unit.
    per_epoch: usize,
    method: &'a Method<B>,
    /// How a step cuts its batch over the process's threads.
    parts: &'a BatchParts,
    device: &'a B::Device,
}

impl<'a, B: AutodiffBackend> StepInputs<'a, B> {
    /// The steps of `training` on `sets`' medical train split
    /// (`train_images` of them, with their per-class `loss_weights`).
    fn new(
        training: &'a TrainingConfig,
        sets: &'a EvalSets<'a>,
        method: &'a Method<B>,
        (train_images, loss_weights): (usize, &[f32]),
        device: &'a B::Device,
    ) -> StepInputs<'a, B> {
        let t = training;
        StepInputs {
            batcher: &sets.medical,
            augment: TrainAugment {
                scale: t.rrc_scale,
                hflip: t.hflip,
                vflip: t.vflip,
                colour: ColourAugment::NONE,
            },
            class_weights: (t.class_balance == ClassBalance::LossWeights)
                .then(|| loss_weights.to_vec()),
            training: t,
            per_epoch: train_images.div_ceil(t.batch_size),
            method,
            parts: method.parts(&sets.parts),
            device,
        }
    }
}

/// A step whose loss was NaN or infinite (1-based), and that loss.
struct NonFiniteLoss {
    step: usize,
    value: f64,
}

/// One epoch: a step per batch of `order`, the backbone's and the head's
/// learning rates each scaled by the schedule, augmentation drawn from `rng`;
/// the method adds to the loss and decides what steps. Stops at the first
/// non-finite loss.
///
/// Every batch has `batch_size` rows (the last one padded, the padding
/// weighing nothing in the loss), so a GPU meets one shape. The next batch
/// is rendered on a second thread while this one runs, and the losses are
/// read back in windows ([`LossWindow`]) rather than at every step.
fn train_epoch<B: AutodiffBackend>(
    mut tr: Training<B>,
    epoch: u32,
    order: &[usize],
    rng: &mut ChaCha8Rng,
    inputs: &StepInputs<'_, B>,
    progress: &EpochProgress,
) -> Result<Training<B>, NonFiniteLoss> {
    let t = inputs.training;
    let start = Instant::now();
    let mut window = LossWindow::new(start);
    let batches_in_order = order.len().div_ceil(t.batch_size);
    let tr = std::thread::scope(|scope| {
        let (next, batches) = std::sync::mpsc::sync_channel::<HostBatch>(1);
        scope.spawn(move || {
            for indices in order.chunks(t.batch_size) {
                if next
                    .send(
                        inputs
                            .batcher
                            .train_host(indices, t.batch_size, &inputs.augment, rng),
                    )
                    .is_err()
                {
                    return; // the loop below stopped early
                }
            }
        });
        let mut seen = 0;
        for (step, host) in batches.into_iter().enumerate() {
            let factor = schedule::lr_factor(
                (epoch as usize - 1) * inputs.per_epoch + step,
                inputs.per_epoch,
                t.warmup_epochs,
                t.epochs,
            );
            let row_weights = row_weights(&host.labels, host.rows, inputs.class_weights.as_deref());
            seen += host.rows;
            let batch = host.to_device::<B>(inputs.device);
            let (grads, loss) =
                inputs
                    .parts
                    .gradients(&tr.model, row_weights.len(), |model, rows| {
                        part_loss(model, &batch, rows, &row_weights, inputs.method)
                    });
            window.push(loss);
            tr = inputs
                .method
                .step(tr, grads, epoch, t.lr_backbone * factor, t.lr_head * factor);
            if let Some(value) = window.read_if_due(step + 1, step + 1 == batches_in_order)? {
                progress.step(step + 1, value, seen as f64 / start.elapsed().as_secs_f64());
            }
        }
        Ok(tr)
    })?;
    Ok(tr)
}

/// The losses of the steps since the last read, read back from the device
/// together: every [`LossWindow::MAX_STEPS`] steps, after
/// [`LossWindow::MAX_WAIT`], and at the end of the epoch. Reading a loss
/// waits for the device to finish the step, so reading every step keeps a
/// GPU idle while the next batch is queued; a slow (CPU) step is read at
/// once anyway. A non-finite loss is still found at its own step.
struct LossWindow<B: AutodiffBackend> {
    losses: Vec<Tensor<B, 1>>,
    /// The step (1-based) of the window's first loss.
    first_step: usize,
    last_read: Instant,
}

impl<B: AutodiffBackend> LossWindow<B> {
    const MAX_STEPS: usize = 50;
    const MAX_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

    fn new(start: Instant) -> Self {
        LossWindow {
            losses: Vec::new(),
            first_step: 1,
            last_read: start,
        }
    }

    fn push(&mut self, loss: Tensor<B, 1>) {
        self.losses.push(loss);
    }

    /// The latest loss when the window was read (at step `step`), or the
    /// first non-finite one's step and value.
    fn read_if_due(&mut self, step: usize, last: bool) -> Result<Option<f64>, NonFiniteLoss> {
        if !(last
            || self.losses.len() >= Self::MAX_STEPS
            || self.last_read.elapsed() >= Self::MAX_WAIT)
        {
            return Ok(None);
        }
        let values = Tensor::cat(std::mem::take(&mut self.losses), 0)
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .expect("f64");
        let first = self.first_step;
        (self.first_step, self.last_read) = (step + 1, Instant::now());
        match values.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(NonFiniteLoss {
                step: first + i,
                value: values[i],
            }),
            None => Ok(values.last().copied()),
        }
    }
}

/// Each row's weight in the loss: its class's weight (1 without class
/// weights) for the real rows, 0 for the padding.
fn row_weights(labels: &[i64], rows: usize, class_weights: Option<&[f32]>) -> Vec<f32> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            if i >= rows {
                0.0
            } else {
                class_weights.map_or(1.0, |w| w[y as usize])
            }
        })
        .collect()
}

/// A step's loss on the rows `rows` of `batch` (weighted by `row_weights`,
/// one per row of the batch): their share of the batch's weighted
/// cross-entropy, plus the method's term on the part that starts at row 0,
/// over its real rows (a term that reads rows comes with a single part,
/// [`Method::parts`]). The parts' losses add up to the batch's.
fn part_loss<B: AutodiffBackend>(
    model: &Classifier<B>,
    batch: &ImageBatch<B>,
    rows: Range<usize>,
    row_weights: &[f32],
    method: &Method<B>,
) -> Tensor<B, 1> {
    let images = batch.images.clone().narrow(0, rows.start, rows.len());
    let labels = batch.labels.clone().narrow(0, rows.start, rows.len());
    let features = crate::train::classifier::features(&model.backbone, images.clone());
    let logits = model.head.forward(features.clone());
    let total = row_weights.iter().sum();
    let loss = weighted_cross_entropy(
        logits,
        labels,
        &row_weights[rows.clone()],
        total,
        &batch.images.device(),
    );
    let real = batch.rows.saturating_sub(rows.start).min(rows.len());
    if rows.start != 0 || real == 0 {
        return loss;
    }
    match method.penalty(
        model,
        &images.narrow(0, 0, real),
        &features.narrow(0, 0, real),
    ) {
        Some(penalty) => loss + penalty,
        None => loss,
    }
}

/// Cross-entropy weighted by `row_weights` over the batch's `total` weight:
/// Σ wᵢ·(−log pᵢ[yᵢ]) / total. With `total` = Σ wᵢ of these rows, PyTorch's
/// `cross_entropy(weight=…)` (and burn's) on the rows of nonzero weight, so
/// zero-weight padding rows change neither the loss nor a gradient; with the
/// whole batch's total, a part's share of the batch's loss.
///
/// # Shapes
/// - logits: `[B, C]`, labels: `[B]`, row_weights: B values
/// - output: `[1]`
fn weighted_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    row_weights: &[f32],
    total: f32,
    device: &B::Device,
) -> Tensor<B, 1> {
    let [b, _] = logits.dims();
    let weights = Tensor::<B, 1>::from_data(TensorData::new(row_weights.to_vec(), [b]), device);
    let picked = burn::tensor::activation::log_softmax(logits, 1)
        .gather(1, labels.reshape([b, 1]))
        .reshape([b]);
    (picked * weights).sum().neg().div_scalar(total)
}

/// Inverse class frequencies over the training split, normalised to mean 1.
fn class_weights(labels: &[usize], train: &[usize], classes: usize) -> Vec<f32> {
    let mut counts = vec![0usize; classes];
    for &i in train {
        counts[labels[i]] += 1;
    }
    let inv: Vec<f64> = counts
        .iter()
        .map(|&c| if c > 0 { 1.0 / c as f64 } else { 0.0 })
        .collect();
    let mean = inv.iter().sum::<f64>() / classes as f64;
    inv.iter().map(|w| (w / mean) as f32).collect()
}

/// The epoch's sample order: a shuffle, or (class-balanced sampling) as many
/// draws with replacement, each class equally likely.
fn epoch_order(
    train: &[usize],
    labels: &[usize],
    weights: &[f32],
    balance: ClassBalance,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    match balance {
        ClassBalance::Sampling => {
            let w: Vec<f64> = train.iter().map(|&i| weights[labels[i]] as f64).collect();
            let dist = rand::distr::weighted::WeightedIndex::new(&w).expect("positive weights");
            use rand::distr::Distribution;
            (0..train.len()).map(|_| train[dist.sample(rng)]).collect()
        }
        ClassBalance::None | ClassBalance::LossWeights => {
            let mut order = train.to_vec();
            order.shuffle(rng);
            order
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::GradientsParams;

    type Ad = burn::backend::Autodiff<crate::CpuBackend>;

    /// Loss and gradient with respect to the logits of `rows` rows padded
    /// to `padded` (padding: copies of row 0), through [`weighted_cross_entropy`].
    fn padded_loss(
        logits: &[f32],
        labels: &[i64],
        rows: usize,
        padded: usize,
        classes: usize,
        class_weights: Option<&[f32]>,
    ) -> (f32, Vec<f32>) {
        let device = Default::default();
        let mut values = logits[..rows * classes].to_vec();
        let mut ys = labels[..rows].to_vec();
        for _ in rows..padded {
            values.extend_from_slice(&logits[..classes]);
            ys.push(labels[0]);
        }
        let x = Tensor::<Ad, 2>::from_data(TensorData::new(values, [padded, classes]), &device)
            .require_grad();
        let y = Tensor::<Ad, 1, Int>::from_data(TensorData::new(ys.clone(), [padded]), &device);
        let weights = row_weights(&ys, rows, class_weights);
        let loss = weighted_cross_entropy(x.clone(), y, &weights, weights.iter().sum(), &device);
        let grads = loss.backward();
        let g = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        (loss.into_scalar().elem(), g[..rows * classes].to_vec())
    }

    #[test]
    fn padding_rows_change_neither_the_loss_nor_the_gradient() {
        let (rows, classes) = (5, 3);
        let logits: Vec<f32> = (0..rows * classes)
            .map(|i| ((i * 7) % 11) as f32 * 0.3 - 1.5)
            .collect();
        let labels = [0i64, 2, 1, 1, 0];
        let weights = [0.5f32, 2.0, 1.25];
        for w in [None, Some(&weights[..])] {
            // burn's own loss on the real rows alone: the reference.
            let device = Default::default();
            let x = Tensor::<Ad, 2>::from_data(
                TensorData::new(logits.clone(), [rows, classes]),
                &device,
            )
            .require_grad();
            let y =
                Tensor::<Ad, 1, Int>::from_data(TensorData::new(labels.to_vec(), [rows]), &device);
            let reference = burn::nn::loss::CrossEntropyLossConfig::new()
                .with_weights(w.map(<[f32]>::to_vec))
                .init(&device)
                .forward(x.clone(), y);
            let grads = reference.backward();
            let ref_grad = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
            let ref_loss: f32 = reference.into_scalar().elem();
            for padded in [rows, rows + 3] {
                let (loss, grad) = padded_loss(&logits, &labels, rows, padded, classes, w);
                assert!(
                    (loss - ref_loss).abs() < 1e-6,
                    "weights {w:?}, {padded} rows: loss {loss} vs {ref_loss}"
                );
                for (a, b) in grad.iter().zip(&ref_grad) {
                    assert!(
                        (a - b).abs() < 1e-6,
                        "weights {w:?}, {padded} rows: gradient {a} vs {b}"
                    );
                }
            }
        }
    }

    /// Every parameter's gradient in `a` and `b`: the largest difference
    /// and the largest gradient.
    struct CompareGrads<'a> {
        a: &'a GradientsParams,
        b: &'a GradientsParams,
        params: usize,
        max_diff: f32,
        max_grad: f32,
    }

    impl ModuleVisitor<Ad> for CompareGrads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Ad, D>>) {
            let values = |g: &GradientsParams| {
                g.get::<crate::CpuBackend, D>(param.id)
                    .expect("a gradient of every parameter")
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap()
            };
            let (a, b) = (values(self.a), values(self.b));
            self.params += 1;
            for (x, y) in a.iter().zip(&b) {
                self.max_diff = self.max_diff.max((x - y).abs());
                self.max_grad = self.max_grad.max(x.abs());
            }
        }
    }

    /// A step cut into parts over threads computes the unsplit step's loss
    /// and gradient: class weights, a padded last batch, and a method term
    /// (l2-sp) counted once.
    #[test]
    fn a_step_in_parts_has_the_unsplit_steps_loss_and_gradients() {
        use crate::model::init::{VitShape, random_vit};
        use sim_study::config::{MethodConfig, MethodKind};
        let device = Default::default();
        let shape = VitShape {
            width: 32,
            depth: 2,
            heads: 2,
            patch: 8,
            mlp_ratio: 4,
            input_size: 16,
        };
        let config = MethodConfig {
            kind: MethodKind::L2Sp,
            alpha: Some(0.5),
            beta: Some(0.25),
            ..MethodConfig::full("l2-sp")
        };
        // Anchored at other weights, so that l2-sp's term has a gradient.
        let method = Method::new(&config, &random_vit::<Ad>(shape, 6, &device).unwrap().model);
        let model = Classifier::new(
            random_vit::<Ad>(shape, 5, &device).unwrap().model,
            3,
            1,
            &device,
        );
        let (rows, padded) = (5, 7);
        let mut labels: Vec<i64> = vec![0, 2, 1, 1, 0];
        labels.resize(padded, labels[0]);
        let pixels: Vec<f32> = (0..padded * 3 * 16 * 16)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let batch = HostBatch {
            pixels,
            labels: labels.clone(),
            rows,
            size: 16,
        }
        .to_device::<Ad>(&device);
        let weights = row_weights(&labels, rows, Some(&[0.5, 2.0, 1.25]));
        let step = |parts: usize| {
            let (grads, loss) = BatchParts::new(parts).gradients(&model, padded, |m, r| {
                part_loss(m, &batch, r, &weights, &method)
            });
            (grads, loss.into_scalar().elem::<f32>())
        };
        let (whole, whole_loss) = step(1);
        for parts in [2, 3] {
            let (split, split_loss) = step(parts);
            assert!(
                (split_loss - whole_loss).abs() <= 1e-6 * whole_loss.abs(),
                "{parts} parts: loss {split_loss} vs {whole_loss}"
            );
            let mut compare = CompareGrads {
                a: &split,
                b: &whole,
                params: 0,
                max_diff: 0.0,
                max_grad: 0.0,
            };
            model.visit(&mut compare);
            assert!(compare.params > 20 && compare.max_grad > 0.0);
            assert!(
                compare.max_diff <= 1e-5 * compare.max_grad,
                "{parts} parts: gradients differ by {} (largest {})",
                compare.max_diff,
                compare.max_grad
            );
        }
    }

    #[test]
    fn the_loss_window_finds_a_non_finite_loss_at_its_own_step() {
        let device = Default::default();
        let loss = |v: f32| Tensor::<Ad, 1>::from_data(TensorData::new(vec![v], [1]), &device);
        let mut window = LossWindow::<Ad>::new(Instant::now());
        window.push(loss(1.5));
        // Not due: fewer than MAX_STEPS losses and no time passed, not the last step.
        assert!(matches!(window.read_if_due(1, false), Ok(None)));
        window.push(loss(0.5));
        assert!(matches!(window.read_if_due(2, true), Ok(Some(v)) if v == 0.5));
        for v in [0.4, f32::NAN, 0.3] {
            window.push(loss(v));
        }
        match window.read_if_due(5, true) {
            Err(NonFiniteLoss { step, value }) => assert_eq!((step, value.is_nan()), (4, true)),
            other => panic!(
                "expected the NaN of step 4, got {:?}",
                other.map_err(|e| e.step)
            ),
        }
    }

    #[test]
    fn class_balanced_sampling_draws_classes_evenly() {
        // 90 % class 0, 10 % class 1.
        let labels: Vec<usize> = (0..1000).map(|i| usize::from(i % 10 == 0)).collect();
        let train: Vec<usize> = (0..1000).collect();
        let weights = class_weights(&labels, &train, 2);
        assert!((weights[1] / weights[0] - 9.0).abs() < 1e-4);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let order = epoch_order(&train, &labels, &weights, ClassBalance::Sampling, &mut rng);
        assert_eq!(order.len(), 1000);
        let minority = order.iter().filter(|&&i| labels[i] == 1).count();
        assert!(
            (420..580).contains(&minority),
            "{minority} of 1000 draws from the 10 % class"
        );
        let mut shuffled = epoch_order(&train, &labels, &weights, ClassBalance::None, &mut rng);
        shuffled.sort_unstable();
        assert_eq!(shuffled, train, "a plain epoch sees every image once");
    }
}
