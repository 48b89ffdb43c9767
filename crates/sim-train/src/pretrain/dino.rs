//! Self-distillation without labels, after DINO (Caron et al. 2021), the
//! family DINOv2 belongs to. A student (ViT + projection head) learns to
//! match, on every other view, a momentum teacher's sharpened and centred
//! output on each of two global views; the teacher is the exponential moving
//! average of the student; the centre is a moving average of the teacher's
//! output, which with sharpening keeps the output from collapsing.
//!
//! Collapse is watched per epoch: the teacher's output uniform (its mean
//! per-image entropy at its maximum, ln K) or one prototype for every image
//! (the entropy of its batch-mean distribution at 0) at every step of an
//! epoch stops the pre-training with an error naming the epoch.

use crate::finetune::batch_parts::BatchParts;
use crate::finetune::state::{load_checkpoint, save_checkpoint};
use crate::finetune::wise_ft::mix;
use crate::model::Vit;
use crate::model::init::trunc_normal;
use anyhow::Context;
use burn::module::{AutodiffModule, Module, Param};
use burn::nn::Linear;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamW, AdamWConfig, Optimizer};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::activation::{gelu, log_softmax, softmax};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sim_study::pretrain::DinoConfig;
use std::path::Path;

/// DINO's projection head: a 3-layer MLP to an L2-normalised bottleneck,
/// then K prototypes through a weight-normalised linear map (no bias).
#[derive(Module, Debug)]
pub struct DinoHead<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    pub fc3: Linear<B>,
    /// `[bottleneck, K]`, each column normalised to unit length when used.
    pub prototypes: Param<Tensor<B, 2>>,
}

/// The backbone and its head: the student, and (a copy) the teacher.
#[derive(Module, Debug)]
pub struct DinoNet<B: Backend> {
    pub backbone: Vit<B>,
    pub head: DinoHead<B>,
}

impl<B: Backend> DinoHead<B> {
    /// Weights truncated normal (σ 0.02) as DINO's, biases zero, from `seed`.
    pub fn new(width: usize, c: &DinoConfig, seed: u64, device: &B::Device) -> DinoHead<B> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut linear = |inp: usize, out: usize| {
            let w = Tensor::from_data(TensorData::new(trunc_normal(&mut rng, inp * out, 0.02), [inp, out]), device);
            Linear { weight: Param::from_tensor(w), bias: Some(Param::from_tensor(Tensor::zeros([out], device))) }
        };
        let (fc1, fc2, fc3) = (linear(width, c.hidden_dim), linear(c.hidden_dim, c.hidden_dim), linear(c.hidden_dim, c.bottleneck_dim));
        let prototypes = Tensor::from_data(TensorData::new(trunc_normal(&mut rng, c.bottleneck_dim * c.out_dim, 0.02), [c.bottleneck_dim, c.out_dim]), device);
        DinoHead { fc1, fc2, fc3, prototypes: Param::from_tensor(prototypes) }
    }

    /// # Shapes
    /// - features: `[B, width]`
    /// - output: `[B, K]`
    pub fn forward(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = gelu(self.fc1.forward(features));
        let x = gelu(self.fc2.forward(x));
        let x = self.fc3.forward(x);
        let x = x.clone() / x.powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
        let w = self.prototypes.val();
        let w = w.clone() / w.powi_scalar(2).sum_dim(0).sqrt().clamp_min(1e-12);
        x.matmul(w)
    }
}

impl<B: Backend> DinoNet<B> {
    /// Images `[B, 3, s, s]` (any multiple of the patch) → `[B, K]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head.forward(crate::finetune::classifier::features(&self.backbone, images))
    }
}

type AdamWOf<B> = OptimizerAdaptor<AdamW, DinoNet<B>, B>;

/// What a DINO pre-training changes, and its checkpoint.
pub struct Dino<B: AutodiffBackend> {
    pub student: DinoNet<B>,
    pub teacher: DinoNet<B::InnerBackend>,
    /// `[1, K]`
    pub center: Tensor<B::InnerBackend, 2>,
    optimizer: AdamWOf<B>,
    config: DinoConfig,
}

/// One step's numbers.
pub struct DinoStep {
    pub loss: f64,
    /// Mean per-image entropy of the teacher's output (nats).
    pub teacher_entropy: f64,
    /// Entropy of the teacher's batch-mean output (nats).
    pub batch_entropy: f64,
}

/// The checkpoint's files.
const STUDENT_FILE: &str = "student.mpk";
const TEACHER_FILE: &str = "teacher.mpk";
const OPTIM_FILE: &str = "optim.mpk";
const CENTER_FILE: &str = "center.f32";

impl<B: AutodiffBackend> Dino<B> {
    /// Student and teacher start equal (the backbone given, a head from `seed`).
    pub fn new(backbone: Vit<B>, config: &DinoConfig, weight_decay: f64, seed: u64, device: &B::Device) -> Dino<B> {
        let head = DinoHead::new(backbone.width(), config, seed, device);
        let student = DinoNet { backbone, head };
        // DINO clips each gradient at norm 3.
        let optimizer = AdamWConfig::new()
            .with_weight_decay(weight_decay as f32)
            .with_epsilon(1e-8)
            .with_grad_clipping(Some(GradientClippingConfig::Norm(3.0)))
            .init::<B, DinoNet<B>>();
        Dino { teacher: student.valid(), center: Tensor::zeros([1, config.out_dim], device), student, optimizer, config: config.clone() }
    }

    /// One step on the views of a batch: `globals` (2 views × n images,
    /// stacked view by view) and `locals` (k views × n images), the images
    /// cut into `parts` (a part: its images in every view).
    ///
    /// # Shapes
    /// - globals: `[2n, 3, S, S]`
    /// - locals: `[kn, 3, s, s]` (k may be 0)
    pub fn step(&mut self, globals: Tensor<B, 4>, locals: Option<Tensor<B, 4>>, lr: f64, momentum: f64, parts: &BatchParts) -> DinoStep {
        let c = &self.config;
        let n = globals.dims()[0] / 2;
        let inner = globals.clone().inner();
        let t_raw = Tensor::cat(parts.run(2 * n, |rows| self.teacher.forward(inner.clone().narrow(0, rows.start, rows.len()))), 0); // [2n, K]
        let t = softmax((t_raw.clone() - self.center.clone()).div_scalar(c.teacher_temp), 1);
        let k = locals.as_ref().map_or(0, |l| l.dims()[0] / n);
        let pairs = (2 + 2 * k) as f64;
        // Each part: its images in every view. The loss is a sum over
        // images, each pair's term its rows' share of the pair's mean.
        let (grads, loss) = parts.gradients(&self.student, n, |student, rows| {
            let len = rows.len();
            let views = |x: &Tensor<B, 4>, count: usize| Tensor::cat((0..count).map(|v| x.clone().narrow(0, v * n + rows.start, len)).collect(), 0);
            let target = |v: usize| t.clone().narrow(0, v * n + rows.start, len);
            let cross = |target: Tensor<B::InnerBackend, 2>, log_p: Tensor<B, 2>| (Tensor::<B, 2>::from_inner(target) * log_p).sum().neg().div_scalar(n as f64);
            let s_g = log_softmax(student.forward(views(&globals, 2)).div_scalar(c.student_temp), 1); // [2·len, K]
            let mut loss = cross(target(1), s_g.clone().narrow(0, 0, len)) + cross(target(0), s_g.narrow(0, len, len));
            if let Some(locals) = &locals {
                let s_l = log_softmax(student.forward(views(locals, k)).div_scalar(c.student_temp), 1); // [k·len, K]
                // Every local view against both global ones.
                loss = loss + cross((target(0) + target(1)).repeat_dim(0, k), s_l);
            }
            loss.div_scalar(pairs)
        });
        let value: f64 = loss.into_scalar().elem();
        self.student = self.optimizer.step(lr, self.student.clone(), grads);
        self.teacher = mix(&self.student.valid(), self.teacher.clone(), momentum);
        let cm = c.center_momentum;
        self.center = self.center.clone().mul_scalar(cm) + t_raw.mean_dim(0).mul_scalar(1.0 - cm);
        let entropy = |p: Tensor<B::InnerBackend, 2>| -> f64 { (p.clone() * p.clamp_min(1e-30).log()).sum_dim(1).mean().neg().into_scalar().elem() };
        DinoStep { loss: value, teacher_entropy: entropy(t.clone()), batch_entropy: entropy(t.mean_dim(0)) }
    }

    /// Writes the checkpoint of `epoch` (student, teacher, centre, optimiser).
    pub fn save(&self, dir: &Path, epoch: u32) -> anyhow::Result<()> {
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        let encode = |r: Result<Vec<u8>, burn::record::RecorderError>, name: &str| r.with_context(|| format!("encoding {name} of epoch {epoch}"));
        let center: Vec<u8> = self.center.to_data().convert::<f32>().to_vec::<f32>().expect("f32").iter().flat_map(|v| v.to_le_bytes()).collect();
        let files = [
            (STUDENT_FILE, encode(recorder.record(self.student.clone().into_record(), ()), STUDENT_FILE)?),
            (TEACHER_FILE, encode(recorder.record(self.teacher.clone().into_record(), ()), TEACHER_FILE)?),
            (OPTIM_FILE, encode(recorder.record(self.optimizer.to_record(), ()), OPTIM_FILE)?),
            (CENTER_FILE, center),
        ];
        Ok(save_checkpoint(dir, epoch, &files)?)
    }

    /// The state after `epoch`, from its checkpoint.
    pub fn restore(self, dir: &Path, epoch: u32, device: &B::Device) -> anyhow::Result<Dino<B>> {
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        let mut files = load_checkpoint(dir, epoch)?;
        let mut take = |name: &str| files.remove(name).with_context(|| format!("{}: no {name} in the checkpoint of epoch {epoch}", dir.display()));
        let bad = |name: &str, e: burn::record::RecorderError| anyhow::anyhow!("{}: {name} cannot be decoded by this version: {e}", dir.display());
        let (student, teacher, optim, center) = (take(STUDENT_FILE)?, take(TEACHER_FILE)?, take(OPTIM_FILE)?, take(CENTER_FILE)?);
        let center: Vec<f32> = center.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        anyhow::ensure!(center.len() == self.config.out_dim, "{}: {CENTER_FILE} has {} values, not out_dim {}", dir.display(), center.len(), self.config.out_dim);
        Ok(Dino {
            student: self.student.load_record(recorder.load(student, device).map_err(|e| bad(STUDENT_FILE, e))?),
            teacher: self.teacher.load_record(recorder.load(teacher, device).map_err(|e| bad(TEACHER_FILE, e))?),
            optimizer: self.optimizer.load_record(recorder.load(optim, device).map_err(|e| bad(OPTIM_FILE, e))?),
            center: Tensor::from_data(TensorData::new(center, [1, self.config.out_dim]), device),
            config: self.config,
        })
    }
}

/// The teacher's momentum at `step` of `total`: a cosine from `start` to 1.
pub fn momentum(start: f64, step: usize, total: usize) -> f64 {
    1.0 - (1.0 - start) * (1.0 + (std::f64::consts::PI * step as f64 / total.max(1) as f64).cos()) / 2.0
}

/// How an epoch's teacher output collapsed, if it did at every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Collapse {
    /// Uniform output: mean per-image entropy ≥ 99 % of ln K.
    Uniform { entropy: f64, max: f64 },
    /// One prototype for every image: batch-mean entropy ≤ 1 % of ln K.
    OnePrototype { entropy: f64 },
}

/// Watches one epoch's steps for collapse.
#[derive(Debug, Clone)]
pub struct CollapseWatch {
    max: f64,
    steps: usize,
    uniform_steps: usize,
    one_prototype_steps: usize,
    entropy_sum: f64,
    batch_entropy_sum: f64,
}

impl CollapseWatch {
    /// For an output of `k` prototypes.
    pub fn new(k: usize) -> CollapseWatch {
        CollapseWatch { max: (k as f64).ln(), steps: 0, uniform_steps: 0, one_prototype_steps: 0, entropy_sum: 0.0, batch_entropy_sum: 0.0 }
    }

    pub fn record(&mut self, step: &DinoStep) {
        self.steps += 1;
        self.entropy_sum += step.teacher_entropy;
        self.batch_entropy_sum += step.batch_entropy;
        self.uniform_steps += usize::from(step.teacher_entropy >= 0.99 * self.max);
        self.one_prototype_steps += usize::from(step.batch_entropy <= 0.01 * self.max);
    }

    /// The epoch's mean per-image teacher entropy.
    pub fn mean_entropy(&self) -> f64 {
        self.entropy_sum / self.steps.max(1) as f64
    }

    /// The epoch's mean entropy of the teacher's batch-mean output.
    pub fn mean_batch_entropy(&self) -> f64 {
        self.batch_entropy_sum / self.steps.max(1) as f64
    }

    /// The collapse, when every step of the epoch showed one.
    pub fn collapse(&self) -> Option<Collapse> {
        if self.steps == 0 {
            None
        } else if self.uniform_steps == self.steps {
            Some(Collapse::Uniform { entropy: self.mean_entropy(), max: self.max })
        } else if self.one_prototype_steps == self.steps {
            Some(Collapse::OnePrototype { entropy: self.mean_batch_entropy() })
        } else {
            None
        }
    }
}

impl std::fmt::Display for Collapse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Collapse::Uniform { entropy, max } => write!(
                f,
                "the teacher's output was uniform at every step (mean entropy {entropy:.4} of the maximum ln K = {max:.4}); \
                 lower dino.teacher_temp or raise dino.center_momentum"
            ),
            Collapse::OnePrototype { entropy } => write!(
                f,
                "the teacher put every image on one prototype at every step (batch-mean entropy {entropy:.4}); \
                 raise dino.teacher_temp or lower dino.center_momentum"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step cut into parts over threads reads every part's own images in
    /// every view and the teacher's targets of those images: its loss is the
    /// unsplit step's.
    #[test]
    fn a_step_in_parts_has_the_unsplit_steps_loss() {
        use crate::model::init::{VitShape, random_vit};
        type Ad = burn::backend::Autodiff<crate::CpuBackend>;
        let device = Default::default();
        let shape = VitShape { width: 32, depth: 2, heads: 2, patch: 8, mlp_ratio: 4, input_size: 16 };
        let config = DinoConfig { local_crops: 2, local_size: 8, hidden_dim: 48, bottleneck_dim: 16, out_dim: 32, ..DinoConfig::default() };
        let (n, k) = (5, 2);
        let pixels = |rows: usize, side: usize, seed: usize| {
            let values: Vec<f32> = (0..rows * 3 * side * side).map(|i| ((i * 37 + seed * 11) % 101) as f32 / 50.0 - 1.0).collect();
            Tensor::<Ad, 4>::from_data(TensorData::new(values, [rows, 3, side, side]), &device)
        };
        let (globals, locals) = (pixels(2 * n, 16, 1), pixels(k * n, 8, 2));
        let loss = |parts: usize| {
            let mut dino = Dino::new(random_vit::<Ad>(shape, 3, &device).unwrap().model, &config, 0.04, 7, &device);
            // A centre of its own, so that the targets differ by image.
            dino.center = Tensor::from_data(TensorData::new((0..32).map(|i| (i % 5) as f32 * 0.1).collect::<Vec<_>>(), [1, 32]), &device);
            dino.step(globals.clone(), Some(locals.clone()), 1e-4, 0.99, &BatchParts::new(parts)).loss
        };
        let whole = loss(1);
        for parts in [2, 3] {
            let split = loss(parts);
            assert!((split - whole).abs() <= 1e-6 * whole.abs(), "{parts} parts: loss {split} vs {whole}");
        }
    }

    fn step(teacher_entropy: f64, batch_entropy: f64) -> DinoStep {
        DinoStep { loss: 1.0, teacher_entropy, batch_entropy }
    }

    #[test]
    fn collapse_is_an_epoch_long_extreme_of_the_teacher_entropy() {
        let max = 64f64.ln();
        let mut uniform = CollapseWatch::new(64);
        (0..5).for_each(|_| uniform.record(&step(max - 1e-4, max)));
        assert!(matches!(uniform.collapse(), Some(Collapse::Uniform { .. })));
        let mut one = CollapseWatch::new(64);
        (0..5).for_each(|_| one.record(&step(1e-3, 1e-3)));
        assert!(matches!(one.collapse(), Some(Collapse::OnePrototype { .. })));
        // Sharp per image but spread over prototypes: what DINO wants.
        let mut healthy = CollapseWatch::new(64);
        (0..5).for_each(|_| healthy.record(&step(0.2, 3.5)));
        assert_eq!(healthy.collapse(), None);
        // One step out of the extreme: not a collapse of the epoch.
        uniform.record(&step(2.0, 3.0));
        assert_eq!(uniform.collapse(), None);
    }

    #[test]
    fn the_momentum_rises_from_its_start_to_one() {
        assert!((momentum(0.996, 0, 100) - 0.996).abs() < 1e-12);
        assert!((momentum(0.996, 100, 100) - 1.0).abs() < 1e-12);
        assert!((momentum(0.996, 50, 100) - 0.998).abs() < 1e-12);
    }
}
