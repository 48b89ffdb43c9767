//! WiSE-FT (Wortsman et al. 2022): after training, the weight-space path
//! from the pre-trained backbone θ₀ to the fine-tuned one θ_ft,
//! (1 − α)θ₀ + αθ_ft, for the method's list of α (`wise_ft`). Each point is
//! evaluated like an epoch, so the similarity space shows the whole path.
//!
//! The head is the fine-tuned one at every α: the pre-trained model has no
//! head for the medical task (Wortsman et al. interpolate towards CLIP's
//! zero-shot head; a ViT has none), and a head interpolated towards its
//! random initialisation would measure the initialisation, not the path.
//! Similarity, the k-NN accuracy and the attention read the backbone alone.

use super::classifier::Classifier;
use super::method::flatten;
use crate::model::Vit;
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;

/// Replaces each float parameter p, in visiting order, by (1 − α)p₀ + αp.
struct Towards<B: Backend> {
    start: std::vec::IntoIter<Tensor<B, 1>>,
    alpha: f64,
}

impl<B: Backend> ModuleMapper<B> for Towards<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, end, mapper) = param.consume();
        let start = self
            .start
            .next()
            .expect("the two modules have the same parameters")
            .reshape(end.shape());
        Param::from_mapped_value(id, start * (1.0 - self.alpha) + end * self.alpha, mapper)
    }
}

/// The fine-tuned classifier with its backbone moved to
/// (1 − α)·`pretrained` + α·(its own), its head unchanged.
pub fn interpolate<B: Backend>(
    pretrained: &Vit<B>,
    finetuned: &Classifier<B>,
    alpha: f64,
) -> Classifier<B> {
    Classifier {
        backbone: mix(pretrained, finetuned.backbone.clone(), alpha),
        head: finetuned.head.clone(),
    }
}

/// `end` with every float parameter p moved to (1 − α)p₀ + αp, p₀ the
/// same parameter of `start` (two modules of the same structure). Also
/// DINO's momentum teacher: `mix(student, teacher, m)`.
pub fn mix<B: Backend, M: Module<B>>(start: &M, end: M, alpha: f64) -> M {
    let mut towards = Towards {
        start: flatten(start).into_iter(),
        alpha,
    };
    let mixed = end.map(&mut towards);
    assert!(
        towards.start.next().is_none(),
        "the two modules have the same parameters"
    );
    mixed
}
