//! The fine-tuned model: the pre-trained backbone and a new linear head on
//! the final-norm CLS token (docs/SPEC.md). The backbone's own head, if it had one,
//! is dropped.

use crate::model::Vit;
use burn::module::Param;
use burn::nn::Linear;
use burn::nn::loss::CrossEntropyLoss;
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Range;

#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    pub backbone: Vit<B>,
    pub head: Linear<B>,
}

impl<B: Backend> Classifier<B> {
    /// A new head of `classes` outputs, initialised as PyTorch's `nn.Linear`
    /// (uniform ±1/√width) from `seed`, so a seed fixes it on every backend.
    pub fn new(
        mut backbone: Vit<B>,
        classes: usize,
        seed: u64,
        device: &B::Device,
    ) -> Classifier<B> {
        backbone.head = None;
        let d = backbone.width();
        let bound = 1.0 / (d as f64).sqrt();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut draw = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| rng.random_range(-bound..bound) as f32)
                .collect()
        };
        let weight = Tensor::from_data(TensorData::new(draw(d * classes), [d, classes]), device);
        let bias = Tensor::from_data(TensorData::new(draw(classes), [classes]), device);
        Classifier {
            backbone,
            head: Linear {
                weight: Param::from_tensor(weight),
                bias: Some(Param::from_tensor(bias)),
            },
        }
    }

    /// Images `[B, 3, S, S]` → logits `[B, classes]`.
    pub fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head.forward(features(&self.backbone, images))
    }
}

/// `loss_fn`'s mean cross-entropy of `model` on the rows `rows` of a batch,
/// times their share of the batch's rows: the parts' losses of a batch cut
/// into parts ([`super::batch_parts`]) add up to the batch's mean.
///
/// # Shapes
/// - images: `[B, 3, S, S]`, labels: `[B]`
/// - output: `[1]`
pub fn part_cross_entropy<B: Backend>(
    model: &Classifier<B>,
    loss_fn: &CrossEntropyLoss<B>,
    images: &Tensor<B, 4>,
    labels: &Tensor<B, 1, Int>,
    rows: Range<usize>,
) -> Tensor<B, 1> {
    let share = rows.len() as f64 / labels.dims()[0] as f64;
    let logits = model.logits(images.clone().narrow(0, rows.start, rows.len()));
    loss_fn
        .forward(logits, labels.clone().narrow(0, rows.start, rows.len()))
        .mul_scalar(share)
}

/// What the head reads: a backbone's final-norm CLS token.
///
/// # Shapes
/// - images: `[B, 3, S, S]`
/// - output: `[B, width]`
pub fn features<B: Backend>(backbone: &Vit<B>, images: Tensor<B, 4>) -> Tensor<B, 2> {
    let out = backbone.forward(images);
    out.cls_and_patch_mean(&out.final_tokens).0
}
