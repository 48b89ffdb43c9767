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
mod open;
pub mod plan;
mod record;
mod step;
pub mod wise_ft;

use crate::train::checkpoint::Training;
use crate::train::classifier::Classifier;
use crate::train::{EpochProgress, resumable};
use anyhow::bail;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use eval::EvalSets;
use method::Method;
use open::{Opened, RunData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use record::{Evaluated, Provenance};
use sim_study::config::{BackboneConfig, MethodConfig, RunId, StudyConfig};
use sim_study::run_state::RunState;
use std::path::Path;
use std::time::Instant;
use step::{NonFiniteLoss, StepInputs, TrainSplit, train_epoch};

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
/// Shared files (study.toml, splits, caches; the backbone's fingerprint
/// and natural-image epoch 0; the data set's epoch 0) are written under
/// their folder's lock.
pub fn run<B: AutodiffBackend>(
    config: &StudyConfig,
    run: &RunId,
    device: &B::Device,
) -> anyhow::Result<Outcome> {
    let Some(o) = Opened::<B>::open(config, run, device)? else {
        return Ok(Outcome::AlreadyFinished);
    };
    let (bcfg, t, run_dir, resumed_at) = (o.backbone, &config.training, &o.run_dir, o.resumed_at);
    let data = RunData::prepare(config, &o.study, run, bcfg.input_size)?;
    if let Some(s) = &o.state {
        data.check_resumes(run_dir, s)?;
    }
    let norm = bcfg.normalisation(o.loaded.naming.family());
    let sets = data.eval_sets(config, bcfg.input_size, norm);
    let provenance = Provenance::new(run, &sets, &data);
    let backbone_sha256 = epoch0(&o, run, &data, (&sets, &provenance), device)?;

    let classifier = Classifier::new(o.loaded.model, data.classes(), run.seed, device);
    // Anchored at the backbone as the classifier holds it (its own head dropped).
    let method = Method::new(o.method, &classifier.backbone);
    let wise_ft_start = o.method.wise_ft.as_ref();
    let wise_ft_start = wise_ft_start.map(|_| classifier.backbone.valid());
    let mut training = Training::new(classifier, t.weight_decay);
    if resumed_at > 0 {
        training = resumable::resume(run_dir, resumed_at, || {
            training.restore(run_dir, resumed_at, device)
        })?;
        tracing::info!("resuming {run} after epoch {resumed_at}");
    }
    let mut state = o.state.unwrap_or_else(|| {
        let started = (
            config.hash(),
            backbone_sha256.clone(),
            data.split_sha256.clone(),
        );
        RunState::started(run, started, t.epochs)
    });

    let split = data.split();
    let steps = StepInputs::new(t, (&sets.medical, &sets.parts), &split, &method, device);
    log_plan(
        config,
        (bcfg, o.method),
        &training.model,
        &sets,
        split.train.len(),
        device,
    );
    let evaluated = Evaluated {
        study: &o.study,
        run,
        sets: &sets,
        provenance: &provenance,
        backbone_sha256: &backbone_sha256,
    };
    let epochs = Epochs {
        config,
        run,
        run_dir,
        split: &split,
        steps,
        evaluated,
    };
    let training = epochs.train(training, &mut state, resumed_at)?;
    // After the last epoch (again, if a kill came before the run was marked
    // finished: the files are rewritten whole, the same bytes).
    if let (Some(alphas), Some(start)) = (&o.method.wise_ft, &wise_ft_start) {
        let finetuned = training.model.valid();
        let evaluated = &epochs.evaluated;
        evaluated.write_wise_ft(start, &finetuned, alphas, t.epochs, device)?;
    }
    resumable::finish(run_dir, &mut state)?;
    Ok(Outcome::Finished { resumed_at })
}

/// Epoch 0, the backbone before fine-tuning with a head drawn from the
/// split seed (the same for every seed), written by the first run that
/// needs it. Returns the backbone file's SHA-256, which a resumed run must
/// have started from.
fn epoch0<B: AutodiffBackend>(
    o: &Opened<B>,
    run: &RunId,
    data: &RunData,
    (sets, provenance): (&EvalSets<'_>, &Provenance),
    device: &B::Device,
) -> anyhow::Result<String> {
    let split_seed = o.config.study.split_seed;
    let model = Classifier::new(o.loaded.model.clone(), data.classes(), split_seed, device);
    let sha256 = record::evaluate_pretrained(
        &o.study,
        run,
        o.backbone,
        &o.backbone_path,
        &model.valid(),
        sets,
        provenance,
        device,
    )?;
    if let Some(s) = &o.state {
        open::check_same_backbone(&o.run_dir, s, &o.backbone_path, &sha256)?;
    }
    Ok(sha256)
}

/// What a run's epochs read, besides the model they train.
struct Epochs<'a, B: AutodiffBackend> {
    config: &'a StudyConfig,
    run: &'a RunId,
    run_dir: &'a Path,
    /// What an epoch's order is drawn from.
    split: &'a TrainSplit<'a>,
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
            let order = self.split.order(t.class_balance, &mut rng);
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
