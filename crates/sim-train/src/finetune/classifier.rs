//! The fine-tuned model: the pre-trained backbone and a new linear head on
//! the final-norm CLS token (SPEC). The backbone's own head, if it had one,
//! is dropped.

use crate::model::Vit;
use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    pub backbone: Vit<B>,
    pub head: Linear<B>,
}

impl<B: Backend> Classifier<B> {
    /// A new head of `classes` outputs, initialised as PyTorch's `nn.Linear`
    /// (uniform ±1/√width) from `seed`, so a seed fixes it on every backend.
    pub fn new(mut backbone: Vit<B>, classes: usize, seed: u64, device: &B::Device) -> Classifier<B> {
        backbone.head = None;
        let d = backbone.width();
        let bound = 1.0 / (d as f64).sqrt();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound) as f32).collect() };
        let weight = Tensor::from_data(TensorData::new(draw(d * classes), [d, classes]), device);
        let bias = Tensor::from_data(TensorData::new(draw(classes), [classes]), device);
        Classifier { backbone, head: Linear { weight: Param::from_tensor(weight), bias: Some(Param::from_tensor(bias)) } }
    }

    /// Images `[B, 3, S, S]` → logits `[B, classes]`.
    pub fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head.forward(features(&self.backbone, images))
    }
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
