//! How a run fine-tunes: the study's `[[methods]]` (README, "Choosing a
//! fine-tuning method"). The training loop asks its method, at every step,
//! what the loss adds ([`Method::penalty`]) and how the optimisers step
//! ([`Method::step`]): which parameters train in this epoch, at which
//! learning rate. Full fine-tuning adds nothing and steps everything at the
//! configured rates. WiSE-FT, which any method may add after training, is
//! [`super::wise_ft`].

use crate::model::Vit;
use crate::train::batch_parts::BatchParts;
use crate::train::checkpoint::Training;
use crate::train::classifier::Classifier;
use crate::train::params::{flatten, take_grads};
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use sim_study::config::{MethodConfig, MethodKind};

/// A run's method, with what it keeps of the pre-trained backbone.
pub struct Method<B: AutodiffBackend> {
    config: MethodConfig,
    /// l2-sp: the pre-trained backbone's parameters, flattened, in the
    /// order [`Module::visit`] meets them (constants: no gradient).
    anchor: Vec<Tensor<B, 1>>,
    /// rep-sim: the pre-trained backbone, without autodiff (its features
    /// are constants).
    anchor_model: Option<Vit<B::InnerBackend>>,
}

impl<B: AutodiffBackend> Method<B> {
    /// The method of `config`, anchored (l2-sp) at the `pretrained` backbone
    /// as the classifier holds it (the same parameters in the same order).
    pub fn new(config: &MethodConfig, pretrained: &Vit<B>) -> Method<B> {
        let anchor = match config.kind {
            MethodKind::L2Sp => flatten(pretrained)
                .into_iter()
                .map(Tensor::detach)
                .collect(),
            MethodKind::Full | MethodKind::LpFt | MethodKind::RepSim => Vec::new(),
        };
        let anchor_model = (config.kind == MethodKind::RepSim).then(|| pretrained.valid());
        Method {
            config: config.clone(),
            anchor,
            anchor_model,
        }
    }

    /// Whether the backbone trains in `epoch` (1-based): not during lp-ft's
    /// linear-probe phase.
    pub fn backbone_trains(&self, epoch: u32) -> bool {
        self.config.probe_epochs.is_none_or(|p| epoch > p)
    }

    /// What the method adds to the loss on a batch of `images`, whose
    /// final-norm CLS `features` under the model being trained the step has
    /// computed: l2-sp's α/2‖w − w₀‖² over the backbone plus β/2‖W‖² over
    /// the head's weights; rep-sim's λ·(1 − linear CKA) between `features`
    /// and the pre-trained backbone's on the same images.
    ///
    /// # Shapes
    /// - images: `[B, 3, S, S]`
    /// - features: `[B, width]`
    /// - output: `[1]`
    pub fn penalty(
        &self,
        model: &Classifier<B>,
        images: &Tensor<B, 4>,
        features: &Tensor<B, 2>,
    ) -> Option<Tensor<B, 1>> {
        let c = &self.config;
        match (c.kind, c.alpha, c.beta, c.weight, &self.anchor_model) {
            (MethodKind::L2Sp, Some(alpha), Some(beta), _, _) => {
                let drift =
                    flatten(&model.backbone)
                        .into_iter()
                        .zip(&self.anchor)
                        .map(|(w, w0)| {
                            let d = w - w0.clone();
                            (d.clone() * d).sum()
                        });
                let drift = drift.reduce(|a, b| a + b)?;
                let head = model.head.weight.val();
                let head = (head.clone() * head).sum();
                Some(drift * (alpha / 2.0) + head * (beta / 2.0))
            }
            // CKA needs two images: an epoch's last batch may hold one.
            (MethodKind::RepSim, _, _, Some(weight), Some(anchor)) if images.dims()[0] >= 2 => {
                let pretrained = Tensor::from_inner(crate::train::classifier::features(
                    anchor,
                    images.clone().inner(),
                ));
                Some((batch_linear_cka(features.clone(), pretrained).neg() + 1.0) * weight)
            }
            _ => None,
        }
    }

    /// The backbone's parameter groups and the factor on the backbone's
    /// learning rate of each. Layer decay d over L blocks, as timm's
    /// `layer_decay` numbers layers: the embedding (layer 0) d^(L+1), block i
    /// (layer i, 1-based) d^(L+1−i), the final norm d^0 = 1. Without layer
    /// decay: one group at 1.
    fn backbone_groups(
        &self,
        grads: &mut GradientsParams,
        vit: &Vit<B>,
    ) -> Vec<(GradientsParams, f64)> {
        let Some(decay) = self.config.layer_decay else {
            return vec![(take_grads(grads, vit), 1.0)];
        };
        let depth = vit.blocks.len() as i32;
        let mut groups = Vec::new();
        let embedding = decay.powi(depth + 1);
        groups.push((take_grads(grads, &vit.patch_embed), embedding));
        groups.push((take_grads(grads, &vit.cls_token), embedding));
        groups.push((take_grads(grads, &vit.pos_embed), embedding));
        if let Some(reg) = &vit.reg_token {
            groups.push((take_grads(grads, reg), embedding));
        }
        if let Some(norm) = &vit.norm_pre {
            groups.push((take_grads(grads, norm), embedding));
        }
        for (i, block) in vit.blocks.iter().enumerate() {
            groups.push((take_grads(grads, block), decay.powi(depth - i as i32)));
        }
        // What is left: the final norm (and a projection, where there is one).
        groups.push((take_grads(grads, vit), 1.0));
        groups
    }

    /// `parts`, or one part where [`Method::penalty`] reads the batch's
    /// rows together (rep-sim's batch CKA): such a step cannot cut its
    /// batch ([`crate::train::batch_parts`]).
    pub fn parts<'a>(&self, parts: &'a BatchParts) -> &'a BatchParts {
        parts.unless_whole(self.config.kind == MethodKind::RepSim)
    }

    /// One optimiser step of `tr` from the gradients of the step's loss
    /// (of the whole classifier): the backbone (when it trains in `epoch`) at
    /// `lr_backbone` times its groups' factors, the head at `lr_head`.
    pub fn step(
        &self,
        mut tr: Training<B>,
        mut grads: GradientsParams,
        epoch: u32,
        lr_backbone: f64,
        lr_head: f64,
    ) -> Training<B> {
        let head = take_grads(&mut grads, &tr.model.head);
        if self.backbone_trains(epoch) {
            for (group, factor) in self.backbone_groups(&mut grads, &tr.model.backbone) {
                tr.model = tr.opt_backbone.step(lr_backbone * factor, tr.model, group);
            }
        }
        tr.model = tr.opt_head.step(lr_head, tr.model, head);
        tr
    }
}

/// Linear CKA between two sets of features of the same examples, with
/// autodiff: ⟨K̄, L̄⟩ / (‖K̄‖ ‖L̄‖) for the Gram matrices K̄ = X̄X̄ᵀ, L̄ = ȲȲᵀ
/// of the column-centred features (Kornblith et al. 2019; the biased
/// estimator the study's tables report). Invariant to an orthogonal
/// transform or an isotropic scaling of either side. A side whose features
/// are all alike (‖K̄‖ = 0) gives 0, with zero gradient, not NaN.
///
/// # Shapes
/// - x: `[B, d1]`, y: `[B, d2]`
/// - output: `[1]`
pub fn batch_linear_cka<B: Backend>(x: Tensor<B, 2>, y: Tensor<B, 2>) -> Tensor<B, 1> {
    let centre = |t: Tensor<B, 2>| t.clone() - t.mean_dim(0);
    let (x, y) = (centre(x), centre(y));
    let k = x.clone().matmul(x.transpose());
    let l = y.clone().matmul(y.transpose());
    let dot = |a: &Tensor<B, 2>, b: &Tensor<B, 2>| (a.clone() * b.clone()).sum();
    // Each norm alone (their product could overflow f32); the floor keeps
    // sqrt's derivative at 0 (infinite) out of the gradient.
    let norm = |a: &Tensor<B, 2>| dot(a, a).clamp_min(1e-30).sqrt();
    dot(&k, &l) / (norm(&k) * norm(&l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_method_whose_term_reads_the_batch_whole_runs_in_one_part() {
        use crate::model::init::{VitShape, random_vit};
        use sim_study::config::{MethodConfig, MethodKind};
        type Ad = burn::backend::Autodiff<crate::CpuBackend>;
        let shape = VitShape {
            width: 16,
            depth: 1,
            heads: 2,
            patch: 8,
            mlp_ratio: 2,
            input_size: 16,
        };
        let vit = random_vit::<Ad>(shape, 0, &Default::default())
            .unwrap()
            .model;
        let parts = BatchParts::new(2);
        let rep_sim = MethodConfig {
            kind: MethodKind::RepSim,
            weight: Some(1.0),
            ..MethodConfig::full("rep-sim")
        };
        let l2_sp = MethodConfig {
            kind: MethodKind::L2Sp,
            alpha: Some(0.1),
            beta: Some(0.1),
            ..MethodConfig::full("l2-sp")
        };
        assert_eq!(Method::new(&rep_sim, &vit).parts(&parts).count(), 1);
        assert_eq!(Method::new(&l2_sp, &vit).parts(&parts).count(), 2);
        assert_eq!(
            Method::new(&MethodConfig::full("full"), &vit)
                .parts(&parts)
                .count(),
            2
        );
    }
}
