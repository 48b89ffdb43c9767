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

use crate::model::Vit;
use crate::train::classifier::Classifier;
use crate::train::params::mix;
use burn::prelude::*;

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
