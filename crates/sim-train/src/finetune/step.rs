//! A fine-tuning run's training steps: the epoch's sample order, its
//! batches (rendered on a second thread), each step's loss cut over the
//! threads (weighted cross-entropy plus the method's term) and the
//! optimiser step the method decides. A non-finite loss stops the epoch.
//! `super::device_check` times and checks these same steps.

use crate::data::batch::{Batcher, ImageBatch};
use crate::data::colour::ColourAugment;
use crate::data::transform::TrainAugment;
use crate::train::batch_parts::BatchParts;
use crate::train::checkpoint::Training;
use crate::train::classifier::Classifier;
use crate::train::prefetch::prefetched;
use crate::train::{EpochProgress, schedule};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sim_study::config::{ClassBalance, TrainingConfig};
use std::ops::Range;
use std::time::Instant;

use super::method::Method;

/// The medical train split a run trains on: what each epoch's order is
/// drawn from.
pub(super) struct TrainSplit<'a> {
    pub(super) train: Vec<usize>,
    /// Every sample's label, in cache order.
    labels: &'a [usize],
    /// Inverse class frequencies over `train` ([`class_weights`]).
    loss_weights: Vec<f32>,
}

impl<'a> TrainSplit<'a> {
    /// The samples `train` of a data set of `classes` classes labelled `labels`.
    pub(super) fn new(train: Vec<usize>, labels: &'a [usize], classes: usize) -> TrainSplit<'a> {
        let loss_weights = class_weights(labels, &train, classes);
        TrainSplit {
            train,
            labels,
            loss_weights,
        }
    }

    /// The epoch's sample order: a shuffle, or (class-balanced sampling) as
    /// many draws with replacement, each class equally likely.
    pub(super) fn order(&self, balance: ClassBalance, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let train = &self.train;
        match balance {
            ClassBalance::Sampling => {
                let w: Vec<f64> = train
                    .iter()
                    .map(|&i| self.loss_weights[self.labels[i]] as f64)
                    .collect();
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
}

/// What every training step of a run uses.
pub(super) struct StepInputs<'a, B: AutodiffBackend> {
    batcher: &'a Batcher<'a>,
    augment: TrainAugment,
    /// Per-class loss weights (`class_balance = "loss-weights"`).
    class_weights: Option<Vec<f32>>,
    pub(super) training: &'a TrainingConfig,
    /// Steps per epoch: the schedule's unit.
    pub(super) per_epoch: usize,
    method: &'a Method<B>,
    /// How a step cuts its batch over the process's threads.
    parts: &'a BatchParts,
    pub(super) device: &'a B::Device,
}

impl<'a, B: AutodiffBackend> StepInputs<'a, B> {
    /// The steps of `training` on `split`, its images from `batcher`, a
    /// batch cut into `parts` where the method allows it.
    pub(super) fn new(
        training: &'a TrainingConfig,
        (batcher, parts): (&'a Batcher<'a>, &'a BatchParts),
        split: &TrainSplit<'_>,
        method: &'a Method<B>,
        device: &'a B::Device,
    ) -> StepInputs<'a, B> {
        let t = training;
        StepInputs {
            batcher,
            augment: TrainAugment {
                scale: t.rrc_scale,
                hflip: t.hflip,
                vflip: t.vflip,
                colour: ColourAugment::NONE,
            },
            class_weights: (t.class_balance == ClassBalance::LossWeights)
                .then(|| split.loss_weights.clone()),
            training: t,
            per_epoch: split.train.len().div_ceil(t.batch_size),
            method,
            parts: method.parts(parts),
            device,
        }
    }
}

/// A step whose loss was NaN or infinite (1-based), and that loss.
pub(super) struct NonFiniteLoss {
    pub(super) step: usize,
    pub(super) value: f64,
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
pub(super) fn train_epoch<B: AutodiffBackend>(
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
    let draw = |indices: &[usize]| {
        inputs
            .batcher
            .train_host(indices, t.batch_size, &inputs.augment, rng)
    };
    prefetched(order, t.batch_size, draw, |batches| {
        let mut seen = 0;
        for (step, host) in batches.enumerate() {
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
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::batch::HostBatch;
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use rand::SeedableRng;

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
        let shape = VitShape::TINY;
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
        let split = TrainSplit::new(train.clone(), &labels, 2);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let order = split.order(ClassBalance::Sampling, &mut rng);
        assert_eq!(order.len(), 1000);
        let minority = order.iter().filter(|&&i| labels[i] == 1).count();
        assert!(
            (420..580).contains(&minority),
            "{minority} of 1000 draws from the 10 % class"
        );
        let mut shuffled = split.order(ClassBalance::None, &mut rng);
        shuffled.sort_unstable();
        assert_eq!(shuffled, train, "a plain epoch sees every image once");
    }
}
