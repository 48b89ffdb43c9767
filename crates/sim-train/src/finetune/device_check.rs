//! `sim-train device-check`: how the fine-tuning loop runs on this build's
//! device, in one call and one table (`scripts/gpu_check.sh` adds timm's
//! figures and the GPU's peak memory beside it):
//!
//! - **warm-up**: the first training step and the first evaluation batch
//!   (on a GPU: kernel compilation and autotuning, which the study's
//!   kernel cache keeps for the next process);
//! - **steady state**: training and evaluation images/s after the warm-up,
//!   the device synchronised before every clock read, through the same
//!   loop a run uses ([`super::step`], [`super::eval`]);
//! - **agreement**: a short run (the config's `training`, `epochs` epochs on
//!   the first medical data set) trained from the same weights with the
//!   same seed on the CPU backend in f32 and on the device in the config's
//!   precision, then compared: logits and features on the test split,
//!   accuracy, ECE, and CKA to the pre-trained model.
//!
//! On a CPU build both sides run on the CPU backend (the device side in the
//! config's precision): the same code paths, at whatever size the config asks.

use super::eval::final_outputs;
use super::method::Method;
use super::step::{NonFiniteLoss, StepInputs, TrainSplit, train_epoch};
use crate::CpuBackend;
use crate::backend::{DEVICE_NAME, TrainBackend};
use crate::data::batch::Batcher;
use crate::data::image_cache::ImageCache;
use crate::data::prepare::{PreparedDataset, lock_study};
use crate::data::transform::Normalisation;
use crate::model::LoadOptions;
use crate::train::EpochProgress;
use crate::train::batch_parts::BatchParts;
use crate::train::checkpoint::Training;
use crate::train::classifier::Classifier;
use anyhow::Context;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sim_metrics::MatRef;
use sim_metrics::calibration::{Binning, calibration};
use sim_metrics::cka::{CkaOptions, cka};
use sim_study::StudyDir;
use sim_study::config::{
    BackboneConfig, DatasetId, MethodConfig, Precision, StudyConfig, TrainingConfig,
};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the check measures, on which backbones of the config.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The backbone timed (on a GPU, the paper's size: a ViT-B/16 at 224 px).
    pub speed_backbone: String,
    /// Training steps timed after the warm-up step.
    pub steps: usize,
    /// The backbone of the short run both backends train (small: the CPU
    /// trains it too); `None` leaves the comparison out.
    pub agreement_backbone: Option<String>,
    /// Epochs of the short run.
    pub epochs: u32,
}

/// One line of the check's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub measure: String,
    pub value: String,
    /// The goal the value is held to, and whether it meets it; empty if none.
    pub goal: String,
}

impl Row {
    fn new(measure: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            measure: measure.into(),
            value: value.into(),
            goal: String::new(),
        }
    }

    fn against(measure: impl Into<String>, value: impl Into<String>, met: bool, goal: &str) -> Row {
        Row {
            measure: measure.into(),
            value: value.into(),
            goal: format!("{goal}: {}", if met { "met" } else { "NOT met" }),
        }
    }
}

/// Runs the check; the rows in the order they are printed.
pub fn run(config: &StudyConfig, opts: &CheckOptions) -> anyhow::Result<Vec<Row>> {
    let precision = config.training.precision;
    let mut rows = vec![
        Row::new("device", DEVICE_NAME),
        Row::new("precision", format!("{precision:?}").to_lowercase()),
    ];
    let study = StudyDir::new(config.output_dir());
    crate::backend::use_kernel_cache(&study.kernel_cache());
    let dataset = DatasetId::Medical(
        config
            .medical_names()
            .first()
            .context("the config has no medical data set")?
            .to_string(),
    );
    // Only the split and the image caches are written (no study.toml: the
    // check makes no runs), so checks in other precisions share the folder,
    // and its kernel cache.
    let mut prepared = {
        let _lock = lock_study(&study)?;
        PreparedDataset::load(config, &study, &dataset)?
    };

    let speed = config
        .backbone(&opts.speed_backbone)
        .map_err(anyhow::Error::msg)?;
    let data = Data::new(&mut prepared, &study, speed, &config.training)?;
    let path = backbone_file(config, speed)?;
    let device = Default::default();
    let t = timings::<TrainBackend>(config, speed, &path, &data, opts.steps, &device)?;
    let e = config.evaluation.batch_size;
    rows.push(Row::new(
        format!("backbone timed: {}", speed.name),
        format!(
            "{}, {} px, batch {}, evaluation batch {e}",
            t.shape, speed.input_size, config.training.batch_size
        ),
    ));
    rows.push(Row::new(
        "warm-up: first training step (s)",
        format!("{:.3}", t.first_step),
    ));
    rows.push(Row::new(
        "warm-up: first evaluation batch (s)",
        format!("{:.3}", t.first_eval),
    ));
    rows.push(Row::new(
        "training, steady state (images/s)",
        format!("{:.1}", t.train_rate),
    ));
    rows.push(Row::new(
        "evaluation, steady state (images/s)",
        format!("{:.1}", t.eval_rate),
    ));

    if let Some(name) = &opts.agreement_backbone {
        let bcfg = config.backbone(name).map_err(anyhow::Error::msg)?;
        let data = Data::new(&mut prepared, &study, bcfg, &config.training)?;
        let path = backbone_file(config, bcfg)?;
        let clock = Instant::now();
        let cpu = short_run::<Autodiff<CpuBackend>>(
            config,
            bcfg,
            &path,
            &data,
            Precision::F32,
            opts.epochs,
            &Default::default(),
        )?;
        progress(format_args!(
            "agreement run on the CPU {:.1} s",
            clock.elapsed().as_secs_f64()
        ));
        let clock = Instant::now();
        let dev =
            short_run::<TrainBackend>(config, bcfg, &path, &data, precision, opts.epochs, &device)?;
        progress(format_args!(
            "agreement run on the device {:.1} s",
            clock.elapsed().as_secs_f64()
        ));
        rows.push(Row::new(
            format!("agreement run: {name}"),
            format!(
                "{} epoch(s), {} training and {} test images",
                opts.epochs,
                data.train.len(),
                data.test.len()
            ),
        ));
        rows.extend(agreement(&cpu, &dev, config.evaluation.ece_bins)?);
    }
    if let Some(peak) = peak_host_memory_mib() {
        rows.push(Row::new("peak host memory (MiB)", format!("{peak:.0}")));
    }
    Ok(rows)
}

/// The rows as a Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from("| measure | value | goal |\n|---|---|---|\n");
    for r in rows {
        out.push_str(&format!("| {} | {} | {} |\n", r.measure, r.value, r.goal));
    }
    out
}

/// The first medical data set's splits and image cache at a backbone's input size.
struct Data {
    cache: ImageCache,
    labels: Vec<usize>,
    train: Vec<usize>,
    test: Vec<usize>,
    classes: usize,
    size: u32,
    /// How a CPU step and evaluation cut their batches over the threads.
    parts: BatchParts,
}

impl Data {
    fn new(
        prepared: &mut PreparedDataset,
        study: &StudyDir,
        bcfg: &BackboneConfig,
        training: &TrainingConfig,
    ) -> anyhow::Result<Data> {
        let cache = prepared.image_cache(study, bcfg.input_size)?;
        Ok(Data {
            parts: BatchParts::for_training(training),
            cache,
            labels: prepared.labels(),
            train: prepared.train_indices(),
            test: prepared.test_indices(),
            classes: prepared.dataset.classes.len(),
            size: bcfg.input_size,
        })
    }

    fn split(&self) -> TrainSplit<'_> {
        TrainSplit::new(self.train.clone(), &self.labels, self.classes)
    }

    fn batcher(&self, norm: Normalisation) -> Batcher<'_> {
        Batcher {
            cache: &self.cache,
            labels: &self.labels,
            size: self.size,
            norm,
        }
    }
}

/// The backbone's file; one the tool pre-trains is made first (on the CPU:
/// instant for `objective = "none"`, the check's usual choice).
fn backbone_file(config: &StudyConfig, bcfg: &BackboneConfig) -> anyhow::Result<PathBuf> {
    let path = config.backbone_file(bcfg);
    if bcfg.pretrain().is_some() && !path.exists() {
        crate::pretrain::run::<Autodiff<CpuBackend>>(config, &bcfg.name, &Default::default())?;
    }
    Ok(path)
}

/// The classifier a run starts from, its training state on `B`, and the
/// normalisation of its images.
fn start<B: AutodiffBackend>(
    config: &StudyConfig,
    bcfg: &BackboneConfig,
    path: &Path,
    classes: usize,
    precision: Precision,
    device: &B::Device,
) -> anyhow::Result<(Training<B>, Normalisation)> {
    let mut loaded = crate::model::load::<B>(path, &LoadOptions::for_backbone(bcfg), device)?;
    loaded.model.set_precision(precision);
    let (mean, std) = bcfg.normalisation(loaded.naming.family());
    let model = Classifier::new(loaded.model, classes, config.study.split_seed, device);
    Ok((
        Training::new(model, config.training.weight_decay),
        Normalisation { mean, std },
    ))
}

fn non_finite(e: NonFiniteLoss) -> anyhow::Error {
    anyhow::anyhow!("loss {} at step {}", e.value, e.step)
}

/// Seconds and images/s, each clock read after the device finished.
struct Timings {
    /// The model timed, in words timm's constructor takes (`bench_timm_gpu.py` reads them).
    shape: String,
    first_step: f64,
    first_eval: f64,
    train_rate: f64,
    eval_rate: f64,
}

fn timings<B: AutodiffBackend>(
    config: &StudyConfig,
    bcfg: &BackboneConfig,
    path: &Path,
    data: &Data,
    steps: usize,
    device: &B::Device,
) -> anyhow::Result<Timings> {
    let batch = config.training.batch_size;
    let sync = || B::sync(device).map_err(|e| anyhow::anyhow!("the device failed: {e:?}"));
    let (mut tr, norm) = start::<B>(
        config,
        bcfg,
        path,
        data.classes,
        config.training.precision,
        device,
    )?;
    let vit = &tr.model.backbone;
    let [width, _, patch, _] = vit.patch_embed.weight.dims();
    let mlp = vit.blocks[0].fc1.weight.dims()[1];
    let shape = format!(
        "width {width}, depth {}, heads {}, patch {patch}, mlp {mlp}",
        vit.depth(),
        vit.blocks[0].heads
    );
    let method = Method::new(&MethodConfig::full("full"), &tr.model.backbone);
    let batcher = data.batcher(norm);
    // The training split, repeated as often as the timed steps need.
    let order: Vec<usize> = data
        .train
        .iter()
        .copied()
        .cycle()
        .take((steps + 1) * batch)
        .collect();
    let split = data.split();
    let mut inputs = StepInputs::new(
        &config.training,
        (&batcher, &data.parts),
        &split,
        &method,
        device,
    );
    // The schedule's epoch: the timed steps.
    inputs.per_epoch = steps + 1;
    let mut rng = ChaCha8Rng::seed_from_u64(0);

    let clock = Instant::now();
    // A bar per timed call, each gone before its line is logged.
    let bar = EpochProgress::start(None, 1, 1, 1);
    tr = train_epoch(tr, 1, &order[..batch], &mut rng, &inputs, &bar).map_err(non_finite)?;
    sync()?;
    drop(bar);
    let first_step = clock.elapsed().as_secs_f64();
    progress(format_args!("first training step {first_step:.3} s"));
    let clock = Instant::now();
    let bar = EpochProgress::start(None, 1, 1, steps);
    tr = train_epoch(tr, 1, &order[batch..], &mut rng, &inputs, &bar).map_err(non_finite)?;
    sync()?;
    drop(bar);
    let train_rate = (steps * batch) as f64 / clock.elapsed().as_secs_f64();
    progress(format_args!("training {train_rate:.1} images/s"));

    // Evaluation reads its outputs back to the host, so it waits for the device.
    let model = tr.model.valid();
    let eval_batch = config.evaluation.batch_size;
    let clock = Instant::now();
    final_outputs(
        &model,
        &batcher,
        &data.test[..eval_batch.min(data.test.len())],
        eval_batch,
        &data.parts,
        device,
    );
    let first_eval = clock.elapsed().as_secs_f64();
    progress(format_args!("first evaluation batch {first_eval:.3} s"));
    let clock = Instant::now();
    final_outputs(
        &model,
        &batcher,
        &data.test,
        eval_batch,
        &data.parts,
        device,
    );
    let eval_rate = data.test.len() as f64 / clock.elapsed().as_secs_f64();
    progress(format_args!("evaluation {eval_rate:.1} images/s"));
    Ok(Timings {
        shape,
        first_step,
        first_eval,
        train_rate,
        eval_rate,
    })
}

/// What a short run leaves on the test split: final-norm CLS features
/// before and after training, the logits after.
struct ShortRun {
    pretrained: Vec<f32>,
    features: Vec<f32>,
    logits: Vec<f32>,
    labels: Vec<i64>,
    width: usize,
    classes: usize,
}

/// `epochs` epochs of fine-tuning as a run trains them (data order and
/// augmentation from the study's first seed), on `B`.
fn short_run<B: AutodiffBackend>(
    config: &StudyConfig,
    bcfg: &BackboneConfig,
    path: &Path,
    data: &Data,
    precision: Precision,
    epochs: u32,
    device: &B::Device,
) -> anyhow::Result<ShortRun> {
    let t = &config.training;
    let (mut tr, norm) = start::<B>(config, bcfg, path, data.classes, precision, device)?;
    let batcher = data.batcher(norm);
    let eval_batch = config.evaluation.batch_size;
    let (pretrained, _) = final_outputs(
        &tr.model.valid(),
        &batcher,
        &data.test,
        eval_batch,
        &data.parts,
        device,
    );
    let method = Method::new(&MethodConfig::full("full"), &tr.model.backbone);
    let split = data.split();
    let inputs = StepInputs::new(t, (&batcher, &data.parts), &split, &method, device);
    let seed = config.study.seeds[0];
    for epoch in 1..=epochs {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(epoch as u64);
        let order = split.order(t.class_balance, &mut rng);
        let progress =
            EpochProgress::start(None, epoch, t.epochs, order.len().div_ceil(t.batch_size));
        tr = train_epoch(tr, epoch, &order, &mut rng, &inputs, &progress).map_err(non_finite)?;
    }
    let (features, logits) = final_outputs(
        &tr.model.valid(),
        &batcher,
        &data.test,
        eval_batch,
        &data.parts,
        device,
    );
    let labels = data.test.iter().map(|&i| data.labels[i] as i64).collect();
    Ok(ShortRun {
        pretrained,
        features,
        logits,
        labels,
        width: tr.model.backbone.width(),
        classes: data.classes,
    })
}

/// One measurement as soon as it is taken, on stderr: the table comes at
/// the end, and a check stopped by a time limit (a GPU lease) keeps these.
fn progress(what: std::fmt::Arguments) {
    tracing::info!("device-check: {what}");
}

/// The largest difference between two arrays over the largest magnitude of the first.
fn relative_difference(a: &[f32], b: &[f32]) -> f64 {
    let scale = a
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) as f64 / scale as f64
}

/// Test accuracy in percent.
fn accuracy(r: &ShortRun) -> f64 {
    let correct = r
        .logits
        .chunks(r.classes)
        .zip(&r.labels)
        .filter(|(row, y)| {
            let best = row
                .iter()
                .enumerate()
                .fold(0, |b, (k, v)| if *v > row[b] { k } else { b });
            best as i64 == **y
        });
    100.0 * correct.count() as f64 / r.labels.len() as f64
}

/// The comparison of the CPU's short run with the device's.
fn agreement(cpu: &ShortRun, dev: &ShortRun, ece_bins: usize) -> anyhow::Result<Vec<Row>> {
    let n = cpu.labels.len();
    fn mat<'a>(
        v: &'a [f32],
        n: usize,
        cols: usize,
        name: &'a str,
    ) -> Result<MatRef<'a, f32>, sim_metrics::MetricError> {
        MatRef::new(v, n, cols, name)
    }
    let ece = |r: &ShortRun| -> anyhow::Result<f64> {
        Ok(calibration(
            mat(&r.logits, n, r.classes, "logits")?,
            &r.labels,
            ece_bins,
            Binning::Uniform,
        )?
        .ece)
    };
    let to_pretrained = |r: &ShortRun| -> anyhow::Result<f64> {
        Ok(cka(
            mat(&r.pretrained, n, r.width, "pre-trained")?,
            mat(&r.features, n, r.width, "fine-tuned")?,
            CkaOptions::default(),
        )?)
    };
    let (acc, ece_, sim) = (
        (accuracy(cpu), accuracy(dev)),
        (ece(cpu)?, ece(dev)?),
        (to_pretrained(cpu)?, to_pretrained(dev)?),
    );
    let pair = |a: f64, b: f64, digits: usize| {
        format!(
            "{a:.digits$} / {b:.digits$} ({:.digits$} apart)",
            (a - b).abs()
        )
    };
    Ok(vec![
        Row::new(
            "logits: max abs difference / max abs logit",
            format!("{:.2e}", relative_difference(&cpu.logits, &dev.logits)),
        ),
        Row::new(
            "features: max abs difference / max abs feature",
            format!("{:.2e}", relative_difference(&cpu.features, &dev.features)),
        ),
        Row::new(
            "features: CKA(CPU, device)",
            format!(
                "{:.6}",
                cka(
                    mat(&cpu.features, n, cpu.width, "CPU")?,
                    mat(&dev.features, n, dev.width, "device")?,
                    CkaOptions::default()
                )?
            ),
        ),
        Row::against(
            "accuracy, CPU / device (%)",
            pair(acc.0, acc.1, 2),
            (acc.0 - acc.1).abs() <= 1.0,
            "within 1 point",
        ),
        Row::against(
            "ECE, CPU / device",
            pair(ece_.0, ece_.1, 4),
            (ece_.0 - ece_.1).abs() <= 0.01,
            "within 0.01",
        ),
        Row::against(
            "CKA to the pre-trained model, CPU / device",
            pair(sim.0, sim.1, 4),
            (sim.0 - sim.1).abs() <= 0.01,
            "within 0.01",
        ),
    ])
}

/// This process's peak resident memory (Linux `VmHWM`).
fn peak_host_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}
