//! `sim-train pretrain`: a backbone the tool pre-trains itself on the
//! study's natural images (a backbone entry's `pretrain = { … }`), so the
//! whole study runs where no downloaded checkpoint fits: supervised
//! (cross-entropy on the labels) or self-supervised ([`dino`]), or `none`
//! (timm's random initialisation, a control). The result is a safetensors
//! file in timm ViT names that fine-tuning loads as any downloaded one.
//!
//! It runs as fine-tuning does: seeded (the initialisation from the seed;
//! data order and augmentation from (seed, epoch)), a checkpoint per epoch
//! in the same checkpoint folders, `pretrain.toml` as the commit point
//! (`sim_study::pretrain_state`), a folder lock, resumed when run again; a NaN
//! loss marks it failed, and so does a collapse of self-distillation.

pub mod dino;
mod views;

use crate::data::batch::Batcher;
use crate::data::image_cache::ImageCache;
use crate::data::prepare::{PreparedDataset, lock_study};
use crate::data::transform::Normalisation;
use crate::finetune::method::Method;
use crate::model::init::{VitShape, random_vit};
use crate::model::{Backbone, Vit};
use crate::train::batch_parts::BatchParts;
use crate::train::checkpoint::Training;
use crate::train::classifier::{Classifier, part_cross_entropy};
use crate::train::prefetch::prefetched;
use crate::train::{EpochProgress, resumable, schedule};
use anyhow::bail;
use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use dino::{CollapseWatch, Dino, StepAt};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sim_metrics::MatRef;
use sim_metrics::knn::knn_accuracy;
use sim_study::config::{
    BackboneConfig, DatasetId, EvaluationConfig, MethodConfig, Objective, PretrainConfig,
    StudyConfig, TrainingConfig,
};
use sim_study::layout::{pretrain_dir, pretrain_log, pretrained_model, pretrained_snapshot};
use sim_study::lock::DirLock;
use sim_study::pretrain_state::{EpochRecord, PretrainState};
use sim_study::run_state::Status;
use sim_study::{StudyDir, crash};
use std::path::{Path, PathBuf};
use std::time::Instant;
use views::{Draw, StepViews};

/// The sources of this build (`crates/sim-train/build.rs`), recorded in
/// every pre-training it starts.
pub const SOURCES: &str = env!("SIM_TRAIN_SOURCES");

/// What to say of a pre-training's folder this build reuses: nothing when
/// this build's sources made it; else that other code did (pre-trained
/// folders are keyed by the `pretrain` entry, not by the code), and how to
/// pre-train again.
pub fn reuse_note(state: &PretrainState, dir: &Path) -> Option<String> {
    let made_by = match state.sources.as_deref() {
        Some(s) if s == SOURCES => return None,
        Some(s) => format!("other code (sources {s})"),
        None => "a version that did not record its sources".to_string(),
    };
    Some(format!(
        "pre-trained by {made_by}, not this build's ({SOURCES}): its numbers may differ \
         from a pre-training by this build; remove {} to pre-train again",
        dir.display()
    ))
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The model was there: nothing was done. `note` says when other
    /// code than this build's made it ([`reuse_note`]).
    AlreadyFinished {
        model: PathBuf,
        note: Option<String>,
    },
    /// Pre-trained now (possibly resumed after `resumed_at`).
    Finished { model: PathBuf, resumed_at: u32 },
}

/// What is being trained (one per process: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Learner<B: AutodiffBackend> {
    Supervised {
        training: Training<B>,
        method: Method<B>,
    },
    Dino(Dino<B>),
}

impl<B: AutodiffBackend> Learner<B> {
    /// The learner of `p`'s objective, one that trains (`run` writes
    /// objective `none`'s initialisation before), from the initialisation
    /// `init` (supervised: a head of `classes` outputs).
    fn new(p: &PretrainConfig, init: &Backbone<B>, classes: usize, device: &B::Device) -> Self {
        match p.objective {
            Objective::Supervised => {
                let classifier = Classifier::new(init.model.clone(), classes, p.seed, device);
                let method = Method::new(&MethodConfig::full("pretrain"), &classifier.backbone);
                Learner::Supervised {
                    training: Training::new(classifier, p.weight_decay),
                    method,
                }
            }
            Objective::Dino => {
                Learner::Dino(Dino::new(init.model.clone(), &p.dino, p.seed, device))
            }
            Objective::None => unreachable!("objective `none` trains nothing"),
        }
    }

    fn save(&self, dir: &Path, epoch: u32) -> anyhow::Result<()> {
        match self {
            Learner::Supervised { training, .. } => training.save(dir, epoch),
            Learner::Dino(d) => d.save(dir, epoch),
        }
    }

    fn restore(self, dir: &Path, epoch: u32, device: &B::Device) -> anyhow::Result<Learner<B>> {
        Ok(match self {
            Learner::Supervised { training, method } => Learner::Supervised {
                training: training.restore(dir, epoch, device)?,
                method,
            },
            Learner::Dino(d) => Learner::Dino(d.restore(dir, epoch, device)?),
        })
    }

    /// The backbone kept: the supervised model's, or DINO's teacher (as
    /// DINO evaluates it).
    fn backbone(&self) -> Vit<B::InnerBackend> {
        match self {
            Learner::Supervised { training, .. } => training.model.backbone.valid(),
            Learner::Dino(d) => d.teacher.backbone.clone(),
        }
    }
}

/// Pre-trains backbone `name` of `config` into its pretrain folder,
/// resuming from the last finished epoch; a finished one is a no-op.
pub fn run<B: AutodiffBackend>(
    config: &StudyConfig,
    name: &str,
    device: &B::Device,
) -> anyhow::Result<Outcome> {
    let bcfg = config.backbone(name).map_err(anyhow::Error::msg)?;
    let Some(p) = bcfg.pretrain() else {
        bail!(
            "backbone `{name}` has a checkpoint file, not a `pretrain` entry: nothing to pre-train"
        );
    };
    crate::backend::use_kernel_cache(&StudyDir::new(config.output_dir()).kernel_cache());
    let dir = pretrain_dir(config, bcfg, p);
    let model = pretrained_model(&dir);
    std::fs::create_dir_all(&dir)?;
    // Another process pre-training the same backbone (a second study, an
    // array task): wait for it, then find its model.
    let _lock = DirLock::wait(&dir)?;
    let state = PretrainState::read(&dir).map_err(anyhow::Error::msg)?;
    if let Some(s) = &state
        && s.status == Status::Finished
        && model.exists()
    {
        check_snapshots(config, &dir)?;
        let note = reuse_note(s, &dir);
        return Ok(Outcome::AlreadyFinished { model, note });
    }
    let _log = resumable::start(&dir, &pretrain_log(&dir))?;
    let init = random_vit::<B>(vit_shape(bcfg, p), p.seed, device)?;
    let resumed_at = state.as_ref().map_or(0, |s| s.last_finished_epoch);
    let mut state = started_or_resumed(state, p, &dir);
    if p.objective == Objective::None {
        save_backbone(&init, init.model.clone(), &model)?;
        resumable::finish(&dir, &mut state)?;
        tracing::info!(
            "random initialisation (seed {}) written to {}",
            p.seed,
            model.display()
        );
        return Ok(Outcome::Finished { model, resumed_at });
    }

    let images = NaturalImages::prepare(config, bcfg.input_size)?;
    let norm = bcfg.normalisation(init.naming.family());
    let data = images.epoch_data(bcfg.input_size, p.dino.local_size, norm, &config.training);
    let mut learner = Learner::new(p, &init, data.classes, device);
    if resumed_at > 0 {
        learner = resumable::resume(&dir, resumed_at, || {
            learner.restore(&dir, resumed_at, device)
        })?;
        tracing::info!("resuming the pre-training of `{name}` after epoch {resumed_at}");
    }
    log_start(bcfg, p, &data, &dir);
    let evaluation = &config.evaluation;
    let epochs = Epochs {
        name,
        init: &init,
        dir: &dir,
        p,
        data: &data,
        evaluation,
        device,
    };
    let learner = epochs.train(learner, &mut state, resumed_at)?;
    save_backbone(&init, learner.backbone(), &model)?;
    crash::point("pretrain-model-written");
    resumable::finish(&dir, &mut state)?;
    let minutes = state.minutes();
    tracing::info!(
        "pre-trained `{name}` in {minutes:.1} min: {}",
        model.display()
    );
    Ok(Outcome::Finished { model, resumed_at })
}

/// The state to go on from: a new one, or the committed one. Epochs from
/// nothing record this build's sources; resuming epochs that other code
/// made warns.
fn started_or_resumed(
    state: Option<PretrainState>,
    p: &PretrainConfig,
    dir: &Path,
) -> PretrainState {
    let mut state = state.unwrap_or_else(|| PretrainState::started(p.objective, p.epochs));
    let resumed_at = state.last_finished_epoch;
    if resumed_at == 0 {
        state.sources = Some(SOURCES.to_string());
    } else if let Some(note) = reuse_note(&state, dir) {
        tracing::warn!("resuming after epoch {resumed_at}: its earlier epochs were {note}");
    }
    state
}

/// Logs what is pre-trained, on what, into where.
fn log_start(bcfg: &BackboneConfig, p: &PretrainConfig, data: &EpochData<'_>, dir: &Path) {
    tracing::info!(
        "pre-training `{}` ({}): ViT width {}, depth {}, {} heads, patch {}, {} px, on \
            {} natural images ({} classes), {} epochs, into {}",
        bcfg.name,
        p.objective.name(),
        p.width,
        p.depth,
        vit_shape(bcfg, p).heads,
        p.patch,
        bcfg.input_size,
        data.train.len(),
        data.classes,
        p.epochs,
        dir.display()
    );
}

/// A finished pre-training must hold the snapshot of every backbone of
/// the study that names one of its epochs (`pretrain_epoch`); one finished
/// before snapshots were kept does not.
fn check_snapshots(config: &StudyConfig, dir: &Path) -> anyhow::Result<()> {
    let missing: Vec<String> = config
        .backbones
        .iter()
        .filter(|b| {
            b.pretrain()
                .is_some_and(|p| pretrain_dir(config, b, p) == dir)
        })
        .filter_map(|b| Some((b, pretrained_snapshot(dir, b.pretrain_epoch()?))))
        .filter(|(_, file)| !file.exists())
        .map(|(b, file)| format!("{} (backbone `{}`)", file.display(), b.name))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the pre-training in {} finished without keeping {}: it was made before snapshots \
             were kept; remove the folder to pre-train again",
            dir.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// The natural images pre-trained on: their split, image cache and labels.
struct NaturalImages {
    natural: PreparedDataset,
    cache: ImageCache,
    labels: Vec<usize>,
    train: Vec<usize>,
    val: Vec<usize>,
}

impl NaturalImages {
    /// The split and the image cache at `size` px, made under the study
    /// folder's lock by the first process that needs them.
    fn prepare(config: &StudyConfig, size: u32) -> anyhow::Result<NaturalImages> {
        let study = StudyDir::new(config.output_dir());
        let _study_lock = lock_study(&study)?;
        study.write_resolved_config(config)?;
        let mut natural = PreparedDataset::load(config, &study, &DatasetId::Natural)?;
        let cache = natural.image_cache(&study, size)?;
        Ok(NaturalImages {
            labels: natural.labels(),
            train: natural.train_indices(),
            val: natural.test_indices(),
            natural,
            cache,
        })
    }

    /// What an epoch reads: global views of `size` px, local ones of
    /// `local_size`, normalised by `(mean, std)`.
    fn epoch_data(
        &self,
        size: u32,
        local_size: u32,
        (mean, std): ([f32; 3], [f32; 3]),
        training: &TrainingConfig,
    ) -> EpochData<'_> {
        let batcher = |size| Batcher {
            cache: &self.cache,
            labels: &self.labels,
            size,
            norm: Normalisation { mean, std },
        };
        EpochData {
            train: &self.train,
            val: &self.val,
            global: batcher(size),
            local: batcher(local_size),
            classes: self.natural.dataset.classes.len(),
            parts: BatchParts::for_training(training),
        }
    }
}

/// Seconds of one pre-training step of `bcfg`'s `pretrain` entry `p` on
/// random images, from its initialisation, the batch cut into `parts` as
/// pre-training cuts it (the median of three, after an untimed one): the
/// supervised step (forward and backward on `classes` classes, as
/// fine-tuning's is timed) or DINO's whole step (teacher, student on every
/// view, AdamW, teacher update). 0 for objective `none`, which trains
/// nothing.
pub fn time_step<B: AutodiffBackend>(
    bcfg: &BackboneConfig,
    p: &PretrainConfig,
    classes: usize,
    parts: &BatchParts,
    device: &B::Device,
) -> anyhow::Result<f64> {
    let init = random_vit::<B>(vit_shape(bcfg, p), p.seed, device)?;
    let size = bcfg.input_size as usize;
    Ok(match p.objective {
        Objective::None => 0.0,
        Objective::Supervised => {
            let model = Classifier::new(init.model, classes, p.seed, device);
            crate::finetune::plan::time_step(&model, p.batch_size, size, classes, parts, device)
        }
        Objective::Dino => {
            let mut dino = Dino::new(init.model, &p.dino, p.seed, device);
            let (n, k, local) = (p.batch_size, p.dino.local_crops, p.dino.local_size as usize);
            let images = |rows: usize, side: usize| {
                Tensor::<B, 4>::random(
                    [rows, 3, side, side],
                    burn::tensor::Distribution::Normal(0.0, 1.0),
                    device,
                )
            };
            let (globals, locals) = (images(2 * n, size), (k > 0).then(|| images(k * n, local)));
            let at = StepAt::of(p, p.epochs, 0, 1);
            crate::finetune::plan::median_step_seconds::<B>(device, || {
                dino.step(globals.clone(), locals.clone(), at, parts);
            })
        }
    })
}

/// The shape of the ViT a backbone entry pre-trains.
pub fn vit_shape(bcfg: &BackboneConfig, p: &PretrainConfig) -> VitShape {
    VitShape {
        width: p.width,
        depth: p.depth,
        heads: bcfg
            .heads
            .expect("validated: a pre-trained backbone has heads"),
        patch: p.patch,
        mlp_ratio: p.mlp_ratio,
        input_size: bcfg.input_size as usize,
    }
}

/// The backbone file in timm's names (the initialisation's key map), head
/// dropped.
fn save_backbone<B: Backend, I: Backend>(
    init: &Backbone<B>,
    mut model: Vit<I>,
    path: &Path,
) -> anyhow::Result<()> {
    model.head = None;
    Ok(init.save_model(&model, path)?)
}

/// What a pre-training's epochs read, besides the learner they train.
struct Epochs<'a, B: AutodiffBackend> {
    name: &'a str,
    /// The initialisation: its key map names the snapshots' tensors.
    init: &'a Backbone<B>,
    dir: &'a Path,
    p: &'a PretrainConfig,
    data: &'a EpochData<'a>,
    evaluation: &'a EvaluationConfig,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> Epochs<'_, B> {
    /// Trains the epochs after `resumed_at`, each committed with its
    /// record (and, every `knn_every` epochs and at the last, the k-NN
    /// learning curve, and before the last the backbone's snapshot); a
    /// non-finite loss or a collapse commits the pre-training as failed and
    /// stops it.
    fn train(
        &self,
        mut learner: Learner<B>,
        state: &mut PretrainState,
        resumed_at: u32,
    ) -> anyhow::Result<Learner<B>> {
        for epoch in resumed_at + 1..=self.p.epochs {
            let mut rng = ChaCha8Rng::seed_from_u64(self.p.seed);
            rng.set_stream(epoch as u64);
            let progress = EpochProgress::start(
                Some(self.dir),
                epoch,
                self.p.epochs,
                self.data.train.len().div_ceil(self.p.batch_size),
            );
            let trained = train_epoch(
                learner,
                self.p,
                epoch,
                self.data,
                &mut rng,
                &progress,
                self.device,
            );
            drop(progress);
            let (trained, record) = match trained {
                Ok(done) => done,
                Err(stop) => {
                    let path = resumable::fail(self.dir, state, stop.to_string())?;
                    bail!(
                        "pre-training `{}`: {stop}; marked failed in {}",
                        self.name,
                        path.display()
                    );
                }
            };
            learner = trained;
            let mut record = record;
            if self.p.measures_knn_at(epoch) {
                let backbone = learner.backbone();
                record.knn_top1 = Some(knn_top1(
                    &backbone,
                    self.data,
                    self.evaluation,
                    self.device,
                )?);
                // Before the commit point: a committed epoch has its snapshot.
                if epoch < self.p.epochs {
                    save_backbone(self.init, backbone, &pretrained_snapshot(self.dir, epoch))?;
                }
            }
            state.history.push(record);
            resumable::commit_epoch(
                self.dir,
                state,
                epoch,
                || learner.save(self.dir, epoch),
                "pretrain-state-written",
            )?;
            let r = state.history.last().expect("just pushed");
            let entropy = match (r.teacher_entropy, r.effective_prototypes) {
                (Some(h), Some(k)) => format!(
                    ", teacher entropy {h:.3} per image, {k:.0} of {} prototypes in use",
                    self.p.dino.out_dim
                ),
                _ => String::new(),
            };
            let knn = r
                .knn_top1
                .map_or(String::new(), |k| format!(", k-NN top-1 {k:.3}"));
            tracing::info!(
                "epoch {epoch}/{}: loss {:.4}{entropy}{knn}, {:.1} images/s, {:.1} s",
                self.p.epochs,
                r.loss,
                r.images_per_s,
                r.seconds
            );
        }
        Ok(learner)
    }
}

/// What an epoch reads.
struct EpochData<'a> {
    train: &'a [usize],
    /// The natural validation split: the learning curve's k-NN queries.
    val: &'a [usize],
    /// Supervised crops and DINO's global views, at the input size.
    global: Batcher<'a>,
    /// DINO's local views.
    local: Batcher<'a>,
    classes: usize,
    /// How a step cuts its batch over the process's threads.
    parts: BatchParts,
}

/// Why an epoch stopped the pre-training.
#[derive(Debug)]
enum Stop {
    NonFinite {
        epoch: u32,
        step: usize,
        value: f64,
    },
    Collapse {
        epoch: u32,
        collapse: dino::Collapse,
    },
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::NonFinite { epoch, step, value } => {
                write!(f, "loss {value} at epoch {epoch}, step {step}")
            }
            Stop::Collapse { epoch, collapse } => write!(
                f,
                "self-distillation collapsed in epoch {epoch}: {collapse}"
            ),
        }
    }
}

/// One pass over the train split in an order drawn from `rng`, which then
/// draws each step's views (on a second thread, a batch ahead: the same
/// views as drawn in turn).
fn train_epoch<B: AutodiffBackend>(
    learner: Learner<B>,
    p: &PretrainConfig,
    epoch: u32,
    data: &EpochData<'_>,
    rng: &mut ChaCha8Rng,
    progress: &EpochProgress,
    device: &B::Device,
) -> Result<(Learner<B>, EpochRecord), Stop> {
    let mut order = data.train.to_vec();
    order.shuffle(rng);
    let per_epoch = order.len().div_ceil(p.batch_size);
    let draw = Draw::new(p, data.global.size, data.local.size);
    let loss_fn = CrossEntropyLossConfig::new()
        .with_smoothing((p.label_smoothing > 0.0).then_some(p.label_smoothing as f32))
        .init(device);
    let mut watch = CollapseWatch::new(p.dino.out_dim);
    let (mut loss_sum, mut seen, start) = (0.0, 0, Instant::now());
    let draw_views = |batch: &[usize]| draw.views(data, batch, rng);
    let learner = prefetched(&order, p.batch_size, draw_views, |steps| {
        let mut learner = learner;
        for (step, views) in steps.enumerate() {
            let global_step = (epoch as usize - 1) * per_epoch + step;
            let lr = p.lr
                * schedule::lr_factor(global_step, per_epoch, p.warmup_epochs, p.schedule_length());
            seen += views.images();
            let (next, value) = match (learner, views) {
                (Learner::Supervised { training, method }, StepViews::Crops(crops)) => {
                    let b = crops.to_device::<B>(device);
                    let (grads, loss) =
                        data.parts
                            .gradients(&training.model, b.rows, |model, rows| {
                                part_cross_entropy(model, &loss_fn, &b.images, &b.labels, rows)
                            });
                    let value: f64 = loss.into_scalar().elem();
                    let training = if value.is_finite() {
                        method.step(training, grads, epoch, lr, lr)
                    } else {
                        training
                    };
                    (Learner::Supervised { training, method }, value)
                }
                (Learner::Dino(mut d), StepViews::Dino { globals, locals }) => {
                    let out = d.step(
                        globals.to_device::<B>(device).images,
                        locals.map(|l| l.to_device::<B>(device).images),
                        StepAt::of(p, epoch, step, per_epoch),
                        &data.parts,
                    );
                    watch.record(&out);
                    (Learner::Dino(d), out.loss)
                }
                _ => unreachable!("the views are drawn for the learner's objective"),
            };
            learner = next;
            if !value.is_finite() {
                return Err(Stop::NonFinite {
                    epoch,
                    step: step + 1,
                    value,
                });
            }
            loss_sum += value;
            progress.step(step + 1, value, seen as f64 / start.elapsed().as_secs_f64());
        }
        Ok(learner)
    })?;
    let dino = matches!(learner, Learner::Dino(_));
    if dino && let Some(collapse) = watch.collapse() {
        return Err(Stop::Collapse { epoch, collapse });
    }
    let seconds = start.elapsed().as_secs_f64();
    let record = EpochRecord {
        epoch,
        loss: loss_sum / per_epoch as f64,
        seconds,
        images_per_s: order.len() as f64 / seconds,
        teacher_entropy: dino.then(|| watch.mean_entropy()),
        teacher_batch_entropy: dino.then(|| watch.mean_batch_entropy()),
        effective_prototypes: dino.then(|| watch.mean_batch_entropy().exp()),
        knn_top1: None,
    };
    Ok((learner, record))
}

/// The learning curve's point: k-NN top-1 (the study's k and temperature)
/// of `backbone`'s final-norm CLS features on the natural validation split,
/// with the train split as the bank.
fn knn_top1<B: Backend>(
    backbone: &Vit<B>,
    data: &EpochData<'_>,
    e: &EvaluationConfig,
    device: &B::Device,
) -> anyhow::Result<f64> {
    let model = Classifier::new(backbone.clone(), 1, 0, device);
    let features = |indices: &[usize]| {
        crate::finetune::eval::final_outputs(
            &model,
            &data.global,
            indices,
            e.batch_size,
            &data.parts,
            device,
        )
        .0
    };
    let labels = |indices: &[usize]| {
        indices
            .iter()
            .map(|&i| data.global.labels[i] as i64)
            .collect::<Vec<_>>()
    };
    let (bank, query) = (features(data.train), features(data.val));
    let width = backbone.width();
    let bank_m = MatRef::new(&bank, data.train.len(), width, "k-NN bank")?;
    let query_m = MatRef::new(&query, data.val.len(), width, "k-NN queries")?;
    let result = knn_accuracy(
        bank_m,
        &labels(data.train),
        query_m,
        &labels(data.val),
        &[e.knn_report_k],
        e.knn_temperature,
    )?;
    Ok(result[0].top1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_pre_training_says_when_other_code_made_it() {
        let dir = Path::new("/studies/pretrained/supervised-abc");
        let mut state = PretrainState::started(Objective::Supervised, 3);
        let note = reuse_note(&state, dir).unwrap();
        assert!(
            note.contains("did not record its sources") && note.contains("remove /studies"),
            "{note}"
        );
        state.sources = Some("0123456789abcdef".into());
        let note = reuse_note(&state, dir).unwrap();
        assert!(
            note.contains("other code (sources 0123456789abcdef)") && note.contains(SOURCES),
            "{note}"
        );
        state.sources = Some(SOURCES.into());
        assert_eq!(reuse_note(&state, dir), None);
        assert_eq!(SOURCES.len(), 16, "a 64-bit hash in hex");
    }
}
