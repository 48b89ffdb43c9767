//! What a run will cost before it runs: the disk its evaluation files and
//! checkpoint take, and its time per epoch from a measured training step.
//! `finetune` announces it for its run; `cargo xtask reproduce --plan` adds it
//! up for a whole study.

use crate::train::batch_parts::BatchParts;
use crate::train::classifier::{Classifier, part_cross_entropy};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use sim_study::config::StudyConfig;
use std::time::Instant;

/// The images one evaluation looks at.
#[derive(Debug, Clone, Copy)]
pub struct EvalImages {
    pub medical_test: usize,
    /// The validation split's logits (none where the data set has none).
    pub medical_validation: usize,
    pub natural_probe: usize,
    pub knn_bank: usize,
    pub knn_query: usize,
}

impl EvalImages {
    fn natural(&self) -> usize {
        self.natural_probe + self.knn_bank + self.knn_query
    }
}

/// What one evaluation's part costs: seconds and bytes on disk.
#[derive(Debug, Clone, Copy)]
pub struct PartCost {
    pub seconds: f64,
    pub bytes: u64,
}

/// The cost of one run of a backbone.
#[derive(Debug, Clone)]
pub struct RunCost {
    pub params: usize,
    pub train_images: usize,
    /// Evaluation files the run writes (`dump.epochs`, or every epoch).
    pub evaluations: usize,
    /// Those of them with the natural images (every one, or only the last
    /// epoch's with `evaluation.natural_every_epoch = false`).
    pub natural_evaluations: usize,
    /// The medical test set's part of an evaluation, and the natural images'.
    pub medical: PartCost,
    pub natural: PartCost,
    pub checkpoint_bytes: u64,
    /// Seconds of one epoch's training.
    pub train_seconds: f64,
}

impl RunCost {
    /// `step_seconds`: one training step of `training.batch_size` images.
    pub fn new<B: Backend>(
        config: &StudyConfig,
        model: &Classifier<B>,
        images: EvalImages,
        train_images: usize,
        step_seconds: f64,
    ) -> RunCost {
        let width = model.backbone.width();
        let layers = config
            .dump
            .layers
            .as_ref()
            .map_or(model.backbone.depth() + 1, |l| l.len())
            + 1;
        // f16 features: CLS and patch mean per dumped layer on both probes, final CLS on the k-NN sets.
        let probe_bytes = |rows: usize| (rows * width * 2 * 2 * layers) as u64;
        // Evaluation is forward only: about a third of a training image's cost.
        let forward =
            |images: usize| step_seconds / config.training.batch_size as f64 * images as f64 / 3.0;
        let params = model.num_params();
        let steps = train_images.div_ceil(config.training.batch_size);
        let epochs = config.training.epochs;
        let evaluations = config
            .dump
            .epochs
            .as_ref()
            .map_or(epochs as usize, |e| e.len());
        let natural_evaluations = if config.evaluation.natural_every_epoch {
            evaluations
        } else {
            usize::from(
                config
                    .dump
                    .epochs
                    .as_ref()
                    .is_none_or(|e| e.contains(&epochs)),
            )
        };
        RunCost {
            params,
            train_images,
            evaluations,
            natural_evaluations,
            medical: PartCost {
                seconds: forward(images.medical_test + images.medical_validation),
                bytes: probe_bytes(images.medical_test),
            },
            natural: PartCost {
                seconds: forward(images.natural()),
                bytes: probe_bytes(images.natural_probe)
                    + ((images.knn_bank + images.knn_query) * width * 2) as u64,
            },
            checkpoint_bytes: (params * 4 * 5) as u64, // weights + two Adam moments per optimiser, roughly
            train_seconds: step_seconds * steps as f64,
        }
    }

    /// Epoch 0's evaluation (every part), once per data set and backbone.
    pub fn full_evaluation(&self) -> PartCost {
        PartCost {
            seconds: self.medical.seconds + self.natural.seconds,
            bytes: self.medical.bytes + self.natural.bytes,
        }
    }

    /// Every evaluation of a run together.
    pub fn run_evaluations(&self) -> PartCost {
        let (m, n) = (self.evaluations as f64, self.natural_evaluations as f64);
        PartCost {
            seconds: m * self.medical.seconds + n * self.natural.seconds,
            bytes: self.evaluations as u64 * self.medical.bytes
                + self.natural_evaluations as u64 * self.natural.bytes,
        }
    }

    /// A run's seconds: its epochs' training and its evaluations.
    pub fn run_seconds(&self, epochs: u32) -> f64 {
        self.train_seconds * epochs as f64 + self.run_evaluations().seconds
    }

    /// A finished run's files: its evaluations and its one checkpoint.
    pub fn disk_bytes(&self) -> u64 {
        self.run_evaluations().bytes + self.checkpoint_bytes
    }
}

/// Seconds of one training step (forward and backward, the batch cut into
/// `parts` as training cuts it) of `batch` random images of `size` pixels
/// ([`median_step_seconds`]).
pub fn time_step<B: AutodiffBackend>(
    model: &Classifier<B>,
    batch: usize,
    size: usize,
    classes: usize,
    parts: &BatchParts,
    device: &B::Device,
) -> f64 {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let images = Tensor::<B, 4>::random(
        [batch, 3, size, size],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        device,
    );
    let labels = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            (0..batch).map(|i| (i % classes) as i64).collect::<Vec<_>>(),
            [batch],
        ),
        device,
    );
    median_step_seconds::<B>(device, || {
        let _ = parts.gradients(model, batch, |model, rows| {
            part_cross_entropy(model, &loss_fn, &images, &labels, rows)
        });
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
    pub fn describe(&self, backbone: &str, input_size: u32, epochs: u32) -> String {
        let evaluations = self.run_evaluations();
        format!(
            "{backbone}: {} parameters, {} training images at {input_size} px; expect about \
                {:.0} s ({:.0} s training per epoch, {:.0} s evaluating in all) \
             and {:.1} MB on disk ({} evaluations, {} of them with the natural images, \
             {:.1} MB; one checkpoint of {:.1} MB)",
            self.params,
            self.train_images,
            self.run_seconds(epochs),
            self.train_seconds,
            evaluations.seconds,
            self.disk_bytes() as f64 / 1e6,
            self.evaluations,
            self.natural_evaluations,
            evaluations.bytes as f64 / 1e6,
            self.checkpoint_bytes as f64 / 1e6,
        )
    }
}
