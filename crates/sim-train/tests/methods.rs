//! The fine-tuning methods (`finetune::method`) on the tiny timm ViT fixture:
//! l2-sp's penalty against a hand-computed value, lp-ft's frozen backbone
//! during the probe, and layer decay's learning rate per block, read off the
//! first AdamW step (whose size is the learning rate, whatever the gradient).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use sim_study::config::{MethodConfig, MethodKind};
use sim_train::backend::TrainBackend;
use sim_train::finetune::classifier::Classifier;
use sim_train::finetune::method::Method;
use sim_train::finetune::state::Training;
use sim_train::model::{LoadOptions, Vit, load};
use std::path::Path;

type B = TrainBackend;

fn vit() -> Vit<B> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backbones/timm_vit/model.safetensors");
    let opts = LoadOptions { heads: Some(3), ..LoadOptions::new(32) };
    load::<B>(&path, &opts, &Default::default()).unwrap().model
}

/// Every float parameter's values, in visiting order.
struct Values(Vec<Vec<f32>>);

impl ModuleVisitor<B> for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().into_data().convert::<f32>().to_vec().unwrap());
    }
}

fn values<M: Module<B>>(module: &M) -> Vec<Vec<f32>> {
    let mut v = Values(Vec::new());
    module.visit(&mut v);
    v.0
}

/// The largest change of any value between two visits of a module.
fn largest_change(before: &[Vec<f32>], after: &[Vec<f32>]) -> f64 {
    before.iter().flatten().zip(after.iter().flatten()).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max)
}

/// Adds a constant to every float parameter.
struct Shift(f32);

impl ModuleMapper<B> for Shift {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.add_scalar(self.0), mapper)
    }
}

fn method(kind: MethodKind, edit: impl FnOnce(&mut MethodConfig)) -> MethodConfig {
    let mut m = MethodConfig { kind, ..MethodConfig::full("m") };
    edit(&mut m);
    m
}

/// One step on the loss Σ logits of a fixed random batch.
fn step(method: &Method<B>, tr: Training<B>, epoch: u32, lr_backbone: f64, lr_head: f64) -> Training<B> {
    let device = Default::default();
    let images = Tensor::<B, 4>::random([2, 3, 32, 32], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let loss = tr.model.logits(images).sum();
    method.step(tr, loss.backward(), epoch, lr_backbone, lr_head)
}

#[test]
fn l2_sp_penalty_is_alpha_half_the_squared_drift_plus_beta_half_the_head() {
    let (alpha, beta) = (0.3, 0.2);
    let config = method(MethodKind::L2Sp, |m| (m.alpha, m.beta) = (Some(alpha), Some(beta)));
    let model = Classifier::new(vit(), 3, 0, &Default::default());
    // Anchored 0.01 away from every backbone weight: ‖w − w₀‖² = 1e-4 per weight.
    let anchor = model.backbone.clone().map(&mut Shift(0.01));
    let penalty: f64 = Method::new(&config, &anchor).penalty(&model).unwrap().into_scalar().elem();
    let head: f64 = values(&model.head.weight).iter().flatten().map(|w| (*w as f64).powi(2)).sum();
    let want = alpha / 2.0 * 1e-4 * model.backbone.num_params() as f64 + beta / 2.0 * head;
    assert!((penalty - want).abs() <= 1e-4 * want, "{penalty} vs {want} by hand");
    // At the anchor itself only the head counts; full fine-tuning adds nothing.
    let at_anchor: f64 = Method::new(&config, &model.backbone).penalty(&model).unwrap().into_scalar().elem();
    assert!((at_anchor - beta / 2.0 * head).abs() <= 1e-5 * head, "{at_anchor}");
    assert!(Method::new(&MethodConfig::full("full"), &model.backbone).penalty(&model).is_none());
}

#[test]
fn lp_ft_keeps_the_backbone_frozen_during_the_probe_then_trains_it() {
    let config = method(MethodKind::LpFt, |m| m.probe_epochs = Some(1));
    let backbone = vit();
    let lp = Method::new(&config, &backbone);
    let tr = Training::new(Classifier::new(backbone, 3, 0, &Default::default()), 0.05);
    let (backbone0, head0) = (values(&tr.model.backbone), values(&tr.model.head));
    let tr = step(&lp, tr, 1, 1e-3, 1e-3);
    assert_eq!(largest_change(&backbone0, &values(&tr.model.backbone)), 0.0, "the backbone moved in the probe");
    assert!(largest_change(&head0, &values(&tr.model.head)) > 1e-4, "the head did not train");
    let backbone1 = values(&tr.model.backbone);
    let tr = step(&lp, tr, 2, 1e-3, 1e-3);
    assert!(largest_change(&backbone1, &values(&tr.model.backbone)) > 1e-4, "the backbone did not train after the probe");
}

#[test]
fn layer_decay_gives_block_i_of_l_the_rate_times_decay_to_the_l_plus_1_minus_i() {
    let decay = 0.5;
    let config = method(MethodKind::Full, |m| m.layer_decay = Some(decay));
    let backbone = vit();
    let depth = backbone.blocks.len() as i32;
    let m = Method::new(&config, &backbone);
    // No weight decay: AdamW's first step moves each weight by the rate
    // itself (m̂ / √v̂ = ±1), so the largest move of a group is its rate.
    let tr = Training::new(Classifier::new(backbone, 3, 0, &Default::default()), 0.0);
    let before = tr.model.backbone.clone();
    let lr = 1e-2;
    let after = step(&m, tr, 1, lr, lr).model.backbone;
    let rate = |b: &[Vec<f32>], a: &[Vec<f32>]| largest_change(b, a) / lr;
    let close = |got: f64, want: f64, what: &str| assert!((got - want).abs() <= 0.02 * want, "{what}: rate factor {got}, want {want}");
    for (i, (b, a)) in before.blocks.iter().zip(&after.blocks).enumerate() {
        close(rate(&values(b), &values(a)), decay.powi(depth - i as i32), &format!("block {}", i + 1));
    }
    close(rate(&values(&before.pos_embed), &values(&after.pos_embed)), decay.powi(depth + 1), "position embedding");
    close(rate(&values(&before.patch_embed), &values(&after.patch_embed)), decay.powi(depth + 1), "patch embedding");
    close(rate(&values(&before.norm), &values(&after.norm)), 1.0, "final norm");
}
