//! Self-distillation without labels, after DINO (Caron et al. 2021), the
//! family DINOv2 belongs to. A student (ViT + projection head) learns to
//! match, on every other view, a momentum teacher's sharpened and centred
//! output on each of two global views; the teacher is the exponential moving
//! average of the student; the centre is a moving average of the teacher's
//! output, which with sharpening keeps the output from collapsing.
//!
//! As its authors train it (their `main_dino.py`), at our scale: views with
//! colour jitter, greyscale, blur and solarisation (`crate::data::colour`,
//! drawn by the pre-training loop), and per step ([`StepAt`]) the
//! learning rate's warm-up and cosine, the teacher momentum's cosine to 1,
//! the teacher temperature's warm-up, the weight decay's cosine and the
//! prototypes frozen in the first epochs.
//!
//! Collapse is watched per epoch: the teacher's output uniform (its mean
//! per-image entropy at its maximum, ln K) or one prototype for every image
//! (the entropy of its batch-mean distribution at 0) at every step of an
//! epoch stops the pre-training with an error naming the epoch.

use crate::model::Vit;
use crate::model::init::trunc_normal;
use crate::train::batch_parts::BatchParts;
use crate::train::checkpoint::{load_checkpoint, save_checkpoint};
use crate::train::params::{mix, take_grads};
use crate::train::schedule;
use anyhow::Context;
use burn::module::{AutodiffModule, Module, ModuleMapper, Param, list_param_ids};
use burn::nn::Linear;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::activation::{gelu, log_softmax, softmax};
use burn::tensor::backend::AutodiffBackend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim_study::config::{DinoConfig, PretrainConfig};
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
    /// As DINO's, from `seed`: the MLP's weights truncated normal (σ
    /// 0.02), biases zero; the prototypes PyTorch's default for a linear
    /// layer (uniform ±1/√bottleneck), which DINO leaves them: they are
    /// used normalised, so their length only sets how fast AdamW turns them.
    pub fn new(width: usize, c: &DinoConfig, seed: u64, device: &B::Device) -> DinoHead<B> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut linear = |inp: usize, out: usize| {
            let w = Tensor::from_data(
                TensorData::new(trunc_normal(&mut rng, inp * out, 0.02), [inp, out]),
                device,
            );
            Linear {
                weight: Param::from_tensor(w),
                bias: Some(Param::from_tensor(Tensor::zeros([out], device))),
            }
        };
        let (fc1, fc2, fc3) = (
            linear(width, c.hidden_dim),
            linear(c.hidden_dim, c.hidden_dim),
            linear(c.hidden_dim, c.bottleneck_dim),
        );
        let bound = 1.0 / (c.bottleneck_dim as f64).sqrt();
        let uniform: Vec<f32> = (0..c.bottleneck_dim * c.out_dim)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        let prototypes = Tensor::from_data(
            TensorData::new(uniform, [c.bottleneck_dim, c.out_dim]),
            device,
        );
        DinoHead {
            fc1,
            fc2,
            fc3,
            prototypes: Param::from_tensor(prototypes),
        }
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
        self.head
            .forward(crate::train::classifier::features(&self.backbone, images))
    }
}

type AdamWOf<B, M> = OptimizerAdaptor<AdamW, M, B>;

/// What a DINO pre-training changes, and its checkpoint.
pub struct Dino<B: AutodiffBackend> {
    pub student: DinoNet<B>,
    pub teacher: DinoNet<B::InnerBackend>,
    /// `[1, K]`
    pub center: Tensor<B::InnerBackend, 2>,
    optimizers: Optimizers<B>,
    config: DinoConfig,
}

/// AdamW for the student's backbone and for its head: one optimiser each,
/// so that the two parts take their steps (and the teacher's parts their
/// moving averages) at once, on two threads, where one optimiser would
/// leave a core idle. AdamW's update and burn's gradient clipping are per
/// parameter, so the split changes no number; the checkpoint holds the
/// two optimisers' states as one map, as one optimiser's.
struct Optimizers<B: AutodiffBackend> {
    backbone: AdamWOf<B, Vit<B>>,
    head: AdamWOf<B, DinoHead<B>>,
}

/// The optimisers' state: every parameter's, by id.
type OptimizerRecord<B> = <AdamWOf<B, Vit<B>> as Optimizer<Vit<B>, B>>::Record;

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

/// What the schedules say at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepAt {
    pub lr: f64,
    /// The teacher's EMA momentum.
    pub momentum: f64,
    pub teacher_temp: f64,
    pub weight_decay: f64,
    /// The prototypes take no step.
    pub freeze_prototypes: bool,
}

impl StepAt {
    /// Step `step` (0-based) of epoch `epoch` (1-based) of a pre-training
    /// with `per_epoch` steps an epoch.
    pub fn of(p: &PretrainConfig, epoch: u32, step: usize, per_epoch: usize) -> StepAt {
        let d = &p.dino;
        let global = (epoch as usize - 1) * per_epoch + step;
        let total = per_epoch * p.schedule_length() as usize;
        let warmup = d.teacher_temp_warmup_epochs as usize * per_epoch;
        let teacher_temp = if global < warmup {
            d.warmup_teacher_temp
                + (d.teacher_temp - d.warmup_teacher_temp) * global as f64 / warmup as f64
        } else {
            d.teacher_temp
        };
        StepAt {
            lr: p.lr * schedule::lr_factor(global, per_epoch, p.warmup_epochs, p.schedule_length()),
            momentum: cosine(d.teacher_momentum, 1.0, global, total),
            teacher_temp,
            weight_decay: cosine(p.weight_decay, d.weight_decay_end, global, total),
            freeze_prototypes: epoch <= d.freeze_last_layer_epochs,
        }
    }
}

/// A cosine from `start` at step 0 to `end` at step `total`.
fn cosine(start: f64, end: f64, step: usize, total: usize) -> f64 {
    end - (end - start) * (1.0 + (std::f64::consts::PI * step as f64 / total.max(1) as f64).cos())
        / 2.0
}

/// Decoupled weight decay, θ ← θ(1 − lr·λ), as PyTorch's AdamW applies it
/// before its step, on every parameter of two or more dimensions: DINO
/// decays no bias and no norm.
struct Decay {
    factor: f64,
}

impl<B: Backend> ModuleMapper<B> for Decay {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if D < 2 {
            return param;
        }
        let (id, value, mapper) = param.consume();
        let tracked = value.is_require_grad();
        let decayed = value.mul_scalar(self.factor).detach();
        Param::from_mapped_value(
            id,
            if tracked {
                decayed.require_grad()
            } else {
                decayed
            },
            mapper,
        )
    }
}

/// One part of the net (the backbone or the head) after a step: its
/// student decayed ([`Decay`]) and stepped by AdamW, its teacher moved
/// towards the new student by the momentum.
fn update_part<B: AutodiffBackend, M: AutodiffModule<B>>(
    optimizer: &mut AdamWOf<B, M>,
    student: M,
    teacher: M::InnerModule,
    grads: GradientsParams,
    at: StepAt,
) -> (M, M::InnerModule) {
    let decayed = student.map(&mut Decay {
        factor: 1.0 - at.lr * at.weight_decay,
    });
    let student = optimizer.step(at.lr, decayed, grads);
    let teacher = mix(&student.valid(), teacher, at.momentum);
    (student, teacher)
}

impl<B: AutodiffBackend> Dino<B> {
    /// Student and teacher start equal (the backbone given, a head from `seed`).
    pub fn new(backbone: Vit<B>, config: &DinoConfig, seed: u64, device: &B::Device) -> Dino<B> {
        let head = DinoHead::new(backbone.width(), config, seed, device);
        let student = DinoNet { backbone, head };
        // DINO clips each gradient at norm 3; its weight decay follows a
        // schedule, applied by the step ([`Decay`]), not by AdamW.
        let adamw = AdamWConfig::new()
            .with_weight_decay(0.0)
            .with_epsilon(1e-8)
            .with_grad_clipping(Some(GradientClippingConfig::Norm(3.0)));
        Dino {
            teacher: student.valid(),
            center: Tensor::zeros([1, config.out_dim], device),
            student,
            optimizers: Optimizers {
                backbone: adamw.init(),
                head: adamw.init(),
            },
            config: config.clone(),
        }
    }

    /// One step on the views of a batch: `globals` (2 views × n images,
    /// stacked view by view) and `locals` (k views × n images), the images
    /// cut into `parts` (a part: its images in every view).
    ///
    /// # Shapes
    /// - globals: `[2n, 3, S, S]`
    /// - locals: `[kn, 3, s, s]` (k may be 0)
    pub fn step(
        &mut self,
        globals: Tensor<B, 4>,
        locals: Option<Tensor<B, 4>>,
        at: StepAt,
        parts: &BatchParts,
    ) -> DinoStep {
        let c = &self.config;
        let n = globals.dims()[0] / 2;
        let inner = globals.clone().inner();
        let t_raw = Tensor::cat(
            parts.run(2 * n, |rows| {
                self.teacher
                    .forward(inner.clone().narrow(0, rows.start, rows.len()))
            }),
            0,
        ); // [2n, K]
        let t = softmax(
            (t_raw.clone() - self.center.clone()).div_scalar(at.teacher_temp),
            1,
        );
        let k = locals.as_ref().map_or(0, |l| l.dims()[0] / n);
        let pairs = (2 + 2 * k) as f64;
        // Each part: its images in every view. The loss is a sum over
        // images, each pair's term its rows' share of the pair's mean.
        let (grads, loss) = parts.gradients(&self.student, n, |student, rows| {
            let len = rows.len();
            let views = |x: &Tensor<B, 4>, count: usize| {
                Tensor::cat(
                    (0..count)
                        .map(|v| x.clone().narrow(0, v * n + rows.start, len))
                        .collect(),
                    0,
                )
            };
            let target = |v: usize| t.clone().narrow(0, v * n + rows.start, len);
            let cross = |target: Tensor<B::InnerBackend, 2>, log_p: Tensor<B, 2>| {
                (Tensor::<B, 2>::from_inner(target) * log_p)
                    .sum()
                    .neg()
                    .div_scalar(n as f64)
            };
            let s_g = log_softmax(
                student
                    .forward(views(&globals, 2))
                    .div_scalar(c.student_temp),
                1,
            ); // [2·len, K]
            let mut loss = cross(target(1), s_g.clone().narrow(0, 0, len))
                + cross(target(0), s_g.narrow(0, len, len));
            if let Some(locals) = &locals {
                let s_l = log_softmax(
                    student.forward(views(locals, k)).div_scalar(c.student_temp),
                    1,
                ); // [k·len, K]
                // Every local view against both global ones.
                loss = loss + cross((target(0) + target(1)).repeat_dim(0, k), s_l);
            }
            loss.div_scalar(pairs)
        });
        let value: f64 = loss.into_scalar().elem();
        self.update(grads, at);
        let cm = self.config.center_momentum;
        self.center = self.center.clone().mul_scalar(cm) + t_raw.mean_dim(0).mul_scalar(1.0 - cm);
        let entropy = |p: Tensor<B::InnerBackend, 2>| -> f64 {
            (p.clone() * p.clamp_min(1e-30).log())
                .sum_dim(1)
                .mean()
                .neg()
                .into_scalar()
                .elem()
        };
        DinoStep {
            loss: value,
            teacher_entropy: entropy(t.clone()),
            batch_entropy: entropy(t.mean_dim(0)),
        }
    }

    /// The student's step on `grads` (weight decay, then AdamW; the
    /// prototypes left as they are while frozen) and the teacher's moving
    /// average towards the new student: the backbone's and the head's at
    /// once, on two threads ([`Optimizers`]).
    fn update(&mut self, mut grads: GradientsParams, at: StepAt) {
        if at.freeze_prototypes {
            grads.remove::<B::InnerBackend, 2>(self.student.head.prototypes.id);
        }
        let head_grads = take_grads(&mut grads, &self.student.head);
        let (student, teacher) = (self.student.clone(), self.teacher.clone());
        let optimizers = &mut self.optimizers;
        let ((backbone, teacher_backbone), (head, teacher_head)) = rayon::join(
            || {
                update_part(
                    &mut optimizers.backbone,
                    student.backbone,
                    teacher.backbone,
                    grads,
                    at,
                )
            },
            || {
                update_part(
                    &mut optimizers.head,
                    student.head,
                    teacher.head,
                    head_grads,
                    at,
                )
            },
        );
        self.student = DinoNet { backbone, head };
        self.teacher = DinoNet {
            backbone: teacher_backbone,
            head: teacher_head,
        };
    }

    /// Writes the checkpoint of `epoch` (student, teacher, centre, optimiser).
    pub fn save(&self, dir: &Path, epoch: u32) -> anyhow::Result<()> {
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        let encode = |r: Result<Vec<u8>, burn::record::RecorderError>, name: &str| {
            r.with_context(|| format!("encoding {name} of epoch {epoch}"))
        };
        let center: Vec<u8> = self
            .center
            .to_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32")
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let files = [
            (
                STUDENT_FILE,
                encode(
                    recorder.record(self.student.clone().into_record(), ()),
                    STUDENT_FILE,
                )?,
            ),
            (
                TEACHER_FILE,
                encode(
                    recorder.record(self.teacher.clone().into_record(), ()),
                    TEACHER_FILE,
                )?,
            ),
            (OPTIM_FILE, {
                let mut optim = self.optimizers.backbone.to_record();
                optim.extend(self.optimizers.head.to_record());
                encode(recorder.record(optim, ()), OPTIM_FILE)?
            }),
            (CENTER_FILE, center),
        ];
        Ok(save_checkpoint(dir, epoch, &files)?)
    }

    /// The state after `epoch`, from its checkpoint.
    pub fn restore(self, dir: &Path, epoch: u32, device: &B::Device) -> anyhow::Result<Dino<B>> {
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        let mut files = load_checkpoint(dir, epoch)?;
        let mut take = |name: &str| {
            files.remove(name).with_context(|| {
                format!(
                    "{}: no {name} in the checkpoint of epoch {epoch}",
                    dir.display()
                )
            })
        };
        let bad = |name: &str, e: burn::record::RecorderError| {
            anyhow::anyhow!(
                "{}: {name} cannot be decoded by this version: {e}",
                dir.display()
            )
        };
        let (student, teacher, optim, center) = (
            take(STUDENT_FILE)?,
            take(TEACHER_FILE)?,
            take(OPTIM_FILE)?,
            take(CENTER_FILE)?,
        );
        let center: Vec<f32> = center
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        anyhow::ensure!(
            center.len() == self.config.out_dim,
            "{}: {CENTER_FILE} has {} values, not out_dim {}",
            dir.display(),
            center.len(),
            self.config.out_dim
        );
        let student = self.student.load_record(
            recorder
                .load(student, device)
                .map_err(|e| bad(STUDENT_FILE, e))?,
        );
        // The one map saved, cut between the two optimisers by the ids the
        // student's parameters have now (its record's).
        let mut backbone_optim: OptimizerRecord<B> = recorder
            .load(optim, device)
            .map_err(|e| bad(OPTIM_FILE, e))?;
        let head_ids = list_param_ids(&student.head);
        let mut head_optim = backbone_optim.clone();
        head_optim.retain(|id, _| head_ids.contains(id));
        backbone_optim.retain(|id, _| !head_ids.contains(id));
        Ok(Dino {
            student,
            teacher: self.teacher.load_record(
                recorder
                    .load(teacher, device)
                    .map_err(|e| bad(TEACHER_FILE, e))?,
            ),
            optimizers: Optimizers {
                backbone: self.optimizers.backbone.load_record(backbone_optim),
                head: self.optimizers.head.load_record(head_optim),
            },
            center: Tensor::from_data(TensorData::new(center, [1, self.config.out_dim]), device),
            config: self.config,
        })
    }
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
        CollapseWatch {
            max: (k as f64).ln(),
            steps: 0,
            uniform_steps: 0,
            one_prototype_steps: 0,
            entropy_sum: 0.0,
            batch_entropy_sum: 0.0,
        }
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
            Some(Collapse::Uniform {
                entropy: self.mean_entropy(),
                max: self.max,
            })
        } else if self.one_prototype_steps == self.steps {
            Some(Collapse::OnePrototype {
                entropy: self.mean_batch_entropy(),
            })
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
                "the teacher's output was uniform at every step (mean entropy {entropy:.4} \
                    of the maximum ln K = {max:.4}); \
                 lower dino.teacher_temp or raise dino.center_momentum"
            ),
            Collapse::OnePrototype { entropy } => write!(
                f,
                "the teacher put every image on one prototype at every step (batch-mean \
                    entropy {entropy:.4}); \
                 raise dino.teacher_temp or lower dino.center_momentum"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(teacher_entropy: f64, batch_entropy: f64) -> DinoStep {
        DinoStep {
            loss: 1.0,
            teacher_entropy,
            batch_entropy,
        }
    }

    #[test]
    fn collapse_is_an_epoch_long_extreme_of_the_teacher_entropy() {
        let max = 64f64.ln();
        let mut uniform = CollapseWatch::new(64);
        (0..5).for_each(|_| uniform.record(&step(max - 1e-4, max)));
        assert!(matches!(uniform.collapse(), Some(Collapse::Uniform { .. })));
        let mut one = CollapseWatch::new(64);
        (0..5).for_each(|_| one.record(&step(1e-3, 1e-3)));
        assert!(matches!(
            one.collapse(),
            Some(Collapse::OnePrototype { .. })
        ));
        // Sharp per image but spread over prototypes: what DINO wants.
        let mut healthy = CollapseWatch::new(64);
        (0..5).for_each(|_| healthy.record(&step(0.2, 3.5)));
        assert_eq!(healthy.collapse(), None);
        // One step out of the extreme: not a collapse of the epoch.
        uniform.record(&step(2.0, 3.0));
        assert_eq!(uniform.collapse(), None);
    }

    #[test]
    fn the_schedules_follow_dinos() {
        let dino = DinoConfig {
            teacher_momentum: 0.996,
            warmup_teacher_temp: 0.04,
            teacher_temp: 0.07,
            teacher_temp_warmup_epochs: 2,
            freeze_last_layer_epochs: 1,
            weight_decay_end: 0.4,
            ..DinoConfig::default()
        };
        let p: PretrainConfig = toml::from_str(
            "objective = \"dino\"\nepochs = 4\nwidth = \
            8\ndepth = 1\npatch = 4\nlr = 1e-3\nweight_decay = 0.04\nwarmup_epochs = 1",
        )
        .unwrap();
        let p = PretrainConfig { dino, ..p };
        let (first, last) = (StepAt::of(&p, 1, 0, 10), StepAt::of(&p, 4, 9, 10));
        assert!(
            (first.momentum - 0.996).abs() < 1e-12
                && (StepAt::of(&p, 3, 0, 10).momentum - 0.998).abs() < 1e-12,
            "momentum: a cosine to 1 at step 40"
        );
        assert!(last.momentum > 0.9999 && last.momentum < 1.0);
        assert!(
            (first.teacher_temp - 0.04).abs() < 1e-12
                && (StepAt::of(&p, 2, 0, 10).teacher_temp - 0.055).abs() < 1e-12
                && last.teacher_temp == 0.07
        );
        assert!(
            (first.weight_decay - 0.04).abs() < 1e-12
                && (StepAt::of(&p, 3, 0, 10).weight_decay - 0.22).abs() < 1e-12
        );
        assert_eq!(
            (
                first.freeze_prototypes,
                StepAt::of(&p, 2, 0, 10).freeze_prototypes
            ),
            (true, false)
        );
        assert!(
            first.lr < StepAt::of(&p, 1, 9, 10).lr && last.lr < first.lr,
            "the learning rate warms up, then falls"
        );
    }

    #[test]
    fn a_pretraining_shorter_than_its_schedules_stops_part_way_along_them() {
        let long: PretrainConfig = toml::from_str(
            "objective = \"dino\"\nepochs = 8\nwidth = 8\ndepth = 1\npatch = 4\nwarmup_epochs = 1",
        )
        .unwrap();
        let cut = PretrainConfig {
            epochs: 4,
            schedule_epochs: Some(8),
            ..long.clone()
        };
        let own = PretrainConfig {
            epochs: 4,
            ..long.clone()
        };
        for (epoch, step) in [(1, 0), (2, 5), (4, 9)] {
            assert_eq!(
                StepAt::of(&cut, epoch, step, 10),
                StepAt::of(&long, epoch, step, 10)
            );
        }
        let (cut_end, own_end) = (StepAt::of(&cut, 4, 9, 10), StepAt::of(&own, 4, 9, 10));
        assert!(cut_end.lr > 0.5 * long.lr && own_end.lr < 0.01 * long.lr);
        assert!(cut_end.momentum < 0.999 && own_end.momentum > 0.9999);
    }

    type Ad = burn::backend::Autodiff<crate::CpuBackend>;

    /// A DINO of a 16-wide, one-block ViT (16 px images) and a small head,
    /// without local crops; the same weights every time.
    fn small_dino() -> Dino<Ad> {
        let device = &Default::default();
        use crate::model::init::{VitShape, random_vit};
        let shape = VitShape {
            width: 16,
            depth: 1,
            heads: 2,
            patch: 8,
            mlp_ratio: 2,
            input_size: 16,
        };
        let config = DinoConfig {
            local_crops: 0,
            hidden_dim: 16,
            bottleneck_dim: 8,
            out_dim: 16,
            ..DinoConfig::default()
        };
        let backbone = random_vit::<Ad>(shape, 3, device).unwrap().model;
        Dino::new(backbone, &config, 7, device)
    }

    /// A step with the prototypes frozen leaves them as they were and moves
    /// the rest; decay shrinks matrices, never a bias or a norm.
    #[test]
    fn frozen_prototypes_stay_and_decay_spares_biases() {
        let device = Default::default();
        let mut dino = small_dino();
        let values = |t: Tensor<Ad, 2>| t.into_data().convert::<f32>().to_vec::<f32>().unwrap();
        let (prototypes, fc1) = (
            values(dino.student.head.prototypes.val()),
            values(dino.student.head.fc1.weight.val()),
        );
        let images = Tensor::<Ad, 4>::random(
            [4, 3, 16, 16],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let at = StepAt {
            lr: 1e-2,
            momentum: 0.99,
            teacher_temp: 0.04,
            weight_decay: 0.0,
            freeze_prototypes: true,
        };
        dino.step(images.clone(), None, at, &BatchParts::new(1));
        assert_eq!(
            values(dino.student.head.prototypes.val()),
            prototypes,
            "frozen"
        );
        assert_ne!(
            values(dino.student.head.fc1.weight.val()),
            fc1,
            "the rest moves"
        );
        let net = dino.student.clone();
        let decayed = net.clone().map(&mut Decay { factor: 0.5 });
        let twice: Vec<f32> = values(net.head.fc1.weight.val())
            .iter()
            .map(|v| v * 0.5)
            .collect();
        assert_eq!(values(decayed.head.fc1.weight.val()), twice);
        let bias = |n: &DinoNet<Ad>| {
            n.head
                .fc1
                .bias
                .as_ref()
                .unwrap()
                .val()
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(bias(&decayed), bias(&net), "no decay on a bias");
    }

    /// The backbone's and the head's optimisers, stepped apart on two
    /// threads, move student and teacher as one AdamW over the whole net
    /// (DINO's, and this tool's before the split) does, to the bit; their
    /// states, saved as one map and restored into a new pre-training, take
    /// the next step as the unbroken one does.
    #[test]
    fn two_optimisers_step_as_one_to_the_bit_and_resume() {
        use crate::train::params::bits;
        let device = Default::default();
        let images = Tensor::<Ad, 4>::random(
            [4, 3, 16, 16],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        // A loss of every parameter (frozen prototypes aside).
        let grads = |net: &DinoNet<Ad>| {
            let loss = net.forward(images.clone()).powi_scalar(2).sum();
            GradientsParams::from_grads(loss.backward(), net)
        };
        let at = |step: usize| StepAt {
            lr: [1e-2, 5e-3, 2e-3][step],
            momentum: 0.9,
            teacher_temp: 0.04,
            weight_decay: 0.04,
            freeze_prototypes: step == 0,
        };

        let Dino {
            mut student,
            mut teacher,
            ..
        } = small_dino();
        let mut whole = AdamWConfig::new()
            .with_weight_decay(0.0)
            .with_epsilon(1e-8)
            .with_grad_clipping(Some(GradientClippingConfig::Norm(3.0)))
            .init::<Ad, DinoNet<Ad>>();
        let mut split = small_dino();
        let dir = tempfile::tempdir().unwrap();
        for step in 0..3 {
            let at = at(step);
            let mut g = grads(&student);
            if at.freeze_prototypes {
                g.remove::<crate::CpuBackend, 2>(student.head.prototypes.id);
            }
            let decayed = student.map(&mut Decay {
                factor: 1.0 - at.lr * at.weight_decay,
            });
            student = whole.step(at.lr, decayed, g);
            teacher = mix(&student.valid(), teacher, at.momentum);

            if step == 2 {
                split.save(dir.path(), 2).unwrap();
                split = small_dino().restore(dir.path(), 2, &device).unwrap();
            }
            let g = grads(&split.student);
            split.update(g, at);
            let differing = |a: Vec<u32>, b: Vec<u32>| {
                assert_eq!(a.len(), b.len());
                a.iter().zip(&b).filter(|(x, y)| x != y).count()
            };
            let students = differing(bits(&split.student), bits(&student));
            let teachers = differing(bits(&split.teacher), bits(&teacher));
            assert_eq!(
                (students, teachers),
                (0, 0),
                "step {step}: values of (student, teacher) differing"
            );
        }
    }
}
