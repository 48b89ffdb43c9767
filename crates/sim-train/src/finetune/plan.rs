//! What a run will cost before it runs: the disk its evaluation files and
//! checkpoint take, and its time per epoch from a measured training step.
//! `finetune` announces it for its run; `cargo xtask reproduce --plan` adds it
//! up for a whole study.

use super::batch_parts::BatchParts;
use super::classifier::{Classifier, part_cross_entropy};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use sim_study::config::StudyConfig;
use std::time::Instant;

/// The images one evaluation looks at.
#[derive(Debug, Clone, Copy)]
pub struct EvalImages {
    pub medical_test: usize,
    pub natural_probe: usize,
    pub knn_bank: usize,
    pub knn_query: usize,
}

impl EvalImages {
    fn total(&self) -> usize {
        self.medical_test + self.natural_probe + self.knn_bank + self.knn_query
    }
}

/// The cost of one run of a backbone.
#[derive(Debug, Clone)]
pub struct RunCost {
    pub params: usize,
    pub train_images: usize,
    /// Evaluation files the run writes (`dump.epochs`, or every epoch).
    pub evaluations: usize,
    pub eval_bytes: u64,
    pub checkpoint_bytes: u64,
    pub train_seconds: f64,
    pub eval_seconds: f64,
}

impl RunCost {
    /// `step_seconds`: one training step of `training.batch_size` images.
    pub fn new<B: Backend>(config: &StudyConfig, model: &Classifier<B>, images: EvalImages, train_images: usize, step_seconds: f64) -> RunCost {
        let width = model.backbone.width();
        let layers = config.dump.layers.as_ref().map_or(model.backbone.depth() + 1, |l| l.len()) + 1;
        // f16 features: CLS and patch mean per dumped layer on both probes, final CLS on the k-NN sets.
        let probe_rows = images.medical_test + images.natural_probe;
        let eval_bytes = (probe_rows * width * 2 * 2 * layers + (images.knn_bank + images.knn_query) * width * 2) as u64;
        let params = model.num_params();
        let steps = train_images.div_ceil(config.training.batch_size);
        let train_seconds = step_seconds * steps as f64;
        // Evaluation is forward only: about a third of a training image's cost.
        let eval_seconds = step_seconds / config.training.batch_size as f64 * images.total() as f64 / 3.0;
        RunCost {
            params,
            train_images,
            evaluations: config.dump.epochs.as_ref().map_or(config.training.epochs as usize, |e| e.len()),
            eval_bytes,
            checkpoint_bytes: (params * 4 * 5) as u64, // weights + two Adam moments per optimiser, roughly
            train_seconds,
            eval_seconds,
        }
    }

    pub fn epoch_seconds(&self) -> f64 {
        self.train_seconds + self.eval_seconds
    }

    /// A finished run's files: its evaluations and its one checkpoint.
    pub fn disk_bytes(&self) -> u64 {
        self.evaluations as u64 * self.eval_bytes + self.checkpoint_bytes
    }
}

/// Seconds of one training step (forward and backward, the batch cut into
/// `parts` as training cuts it) of `batch` random images of `size` pixels
/// ([`median_step_seconds`]).
pub fn time_step<B: AutodiffBackend>(model: &Classifier<B>, batch: usize, size: usize, classes: usize, parts: &BatchParts, device: &B::Device) -> f64 {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let images = Tensor::<B, 4>::random([batch, 3, size, size], burn::tensor::Distribution::Normal(0.0, 1.0), device);
    let labels = Tensor::<B, 1, Int>::from_data(TensorData::new((0..batch).map(|i| (i % classes) as i64).collect::<Vec<_>>(), [batch]), device);
    median_step_seconds::<B>(device, || {
        let _ = parts.gradients(model, batch, |model, rows| part_cross_entropy(model, &loss_fn, &images, &labels, rows));
    })
}

/// The median seconds of three runs of `step`, after one untimed run that
/// takes the warm-up (kernel compilation on a GPU) out of the measure; on
/// the CPU the first steps after it still ran up to 1.6x slower (memory
/// first touched), which a single timed step took for the rate.
pub fn median_step_seconds<B: Backend>(device: &B::Device, mut step: impl FnMut()) -> f64 {
    let sync = || B::sync(device).expect("the device ran the step");
    step();
    sync();
    let mut seconds: Vec<f64> = (0..3)
        .map(|_| {
            let start = Instant::now();
            step();
            sync(); // a GPU runs the step after it was queued: wait for it before reading the clock
            start.elapsed().as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    seconds[1]
}

impl RunCost {
    /// The line a run logs before training: size, expected time and disk.
    pub fn describe(&self, backbone: &str, input_size: u32) -> String {
        format!(
            "{backbone}: {} parameters, {} training images at {input_size} px; expect about {:.0} s per epoch ({:.0} s training, {:.0} s evaluation) \
             and {:.1} MB on disk ({} evaluations of {:.1} MB, one checkpoint of {:.1} MB)",
            self.params,
            self.train_images,
            self.epoch_seconds(),
            self.train_seconds,
            self.eval_seconds,
            self.disk_bytes() as f64 / 1e6,
            self.evaluations,
            self.eval_bytes as f64 / 1e6,
            self.checkpoint_bytes as f64 / 1e6,
        )
    }
}

