//! The fine-tuning methods (`finetune::method`) on the tiny timm ViT fixture:
//! l2-sp's and rep-sim's penalties against hand-computed values, lp-ft's
//! frozen backbone during the probe, layer decay's learning rate per
//! block, read off the first AdamW step (whose size is the learning rate,
//! whatever the gradient), and WiSE-FT's interpolated weights.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use sim_study::config::{MethodConfig, MethodKind};
use sim_train::backend::TrainBackend;
use sim_train::finetune::method::{Method, batch_linear_cka};
use sim_train::finetune::wise_ft::interpolate;
use sim_train::model::{LoadOptions, Vit, load};
use sim_train::train::checkpoint::Training;
use sim_train::train::classifier::{Classifier, features};
use std::path::Path;

type B = TrainBackend;

fn vit() -> Vit<B> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backbones/timm_vit/model.safetensors");
    let opts = LoadOptions {
        heads: Some(3),
        ..LoadOptions::new(32)
    };
    load::<B>(&path, &opts, &Default::default()).unwrap().model
}

/// Every float parameter's values, in visiting order.
struct Values(Vec<Vec<f32>>);

impl ModuleVisitor<B> for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0
            .push(param.val().into_data().convert::<f32>().to_vec().unwrap());
    }
}

fn values<M: Module<B>>(module: &M) -> Vec<Vec<f32>> {
    let mut v = Values(Vec::new());
    module.visit(&mut v);
    v.0
}

/// The largest change of any value between two visits of a module.
fn largest_change(before: &[Vec<f32>], after: &[Vec<f32>]) -> f64 {
    before
        .iter()
        .flatten()
        .zip(after.iter().flatten())
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max)
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
    let mut m = MethodConfig {
        kind,
        ..MethodConfig::full("m")
    };
    edit(&mut m);
    m
}

/// One step on the loss Σ logits of a fixed random batch.
fn step(
    method: &Method<B>,
    tr: Training<B>,
    epoch: u32,
    lr_backbone: f64,
    lr_head: f64,
) -> Training<B> {
    let device = Default::default();
    let images = Tensor::<B, 4>::random(
        [2, 3, 32, 32],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let loss = tr.model.logits(images).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &tr.model);
    method.step(tr, grads, epoch, lr_backbone, lr_head)
}

fn images() -> Tensor<B, 4> {
    Tensor::<B, 4>::random(
        [6, 3, 32, 32],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &Default::default(),
    )
}

/// The method's penalty on `images` for `model`, as the training loop asks for it.
fn penalty(method: &Method<B>, model: &Classifier<B>, images: &Tensor<B, 4>) -> Option<f64> {
    let f = features(&model.backbone, images.clone());
    method
        .penalty(model, images, &f)
        .map(|p| p.into_scalar().elem())
}

fn rows(t: Tensor<B, 2>) -> Vec<Vec<f64>> {
    let [_, d] = t.dims();
    t.into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .unwrap()
        .chunks(d)
        .map(<[f64]>::to_vec)
        .collect()
}

/// Linear CKA by hand, in f64, in feature space: ‖ȲᵀX̄‖² / (‖X̄ᵀX̄‖ ‖ȲᵀȲ‖).
fn cka_by_hand(x: &[Vec<f64>], y: &[Vec<f64>]) -> f64 {
    let centred = |m: &[Vec<f64>]| -> Vec<Vec<f64>> {
        let n = m.len() as f64;
        let means: Vec<f64> = (0..m[0].len())
            .map(|j| m.iter().map(|r| r[j]).sum::<f64>() / n)
            .collect();
        m.iter()
            .map(|r| r.iter().zip(&means).map(|(v, mu)| v - mu).collect())
            .collect()
    };
    let (x, y) = (centred(x), centred(y));
    // ‖AᵀB‖²_F
    let cross = |a: &[Vec<f64>], b: &[Vec<f64>]| -> f64 {
        let mut total = 0.0;
        for i in 0..a[0].len() {
            for j in 0..b[0].len() {
                let v: f64 = a.iter().zip(b).map(|(ra, rb)| ra[i] * rb[j]).sum();
                total += v * v;
            }
        }
        total
    };
    cross(&y, &x) / (cross(&x, &x).sqrt() * cross(&y, &y).sqrt())
}

fn tensor(rows: &[&[f32]]) -> Tensor<B, 2> {
    let d = rows[0].len();
    Tensor::from_data(
        TensorData::new(rows.concat(), [rows.len(), d]),
        &Default::default(),
    )
}

#[test]
fn batch_linear_cka_matches_a_hand_computation_and_ignores_rotation_and_scale() {
    let x: &[&[f32]] = &[
        &[1.0, 2.0, 0.5],
        &[-1.0, 0.0, 2.0],
        &[3.0, 1.0, -1.0],
        &[0.0, -2.0, 1.5],
        &[2.0, 2.0, 2.0],
    ];
    let y: &[&[f32]] = &[
        &[0.3, -1.0],
        &[1.0, 0.2],
        &[-0.5, 0.7],
        &[2.0, 1.0],
        &[0.1, 0.1],
    ];
    let got: f64 = batch_linear_cka(tensor(x), tensor(y)).into_scalar().elem();
    let want = cka_by_hand(&rows(tensor(x)), &rows(tensor(y)));
    assert!((got - want).abs() < 1e-6, "{got} vs {want} by hand");
    assert!(want > 0.05 && want < 0.95, "a case that tells: {want}");
    // X rotated by 30° in its first two coordinates and scaled by 2.5.
    let (c, s) = (30f32.to_radians().cos(), 30f32.to_radians().sin());
    let q = tensor(&[
        &[2.5 * c, -2.5 * s, 0.0],
        &[2.5 * s, 2.5 * c, 0.0],
        &[0.0, 0.0, 2.5],
    ]);
    let same: f64 = batch_linear_cka(tensor(x), tensor(x).matmul(q))
        .into_scalar()
        .elem();
    assert!((same - 1.0).abs() < 1e-5, "{same}");
    // Features all alike (a collapsed batch): 0, not NaN, and no NaN gradient.
    let alike =
        Tensor::<B, 2>::from_data(TensorData::new(vec![1f32; 6], [3, 2]), &Default::default())
            .require_grad();
    let cka = batch_linear_cka(alike.clone(), alike.clone() * 2.0);
    let grads = cka.clone().backward();
    let grad: Vec<f32> = alike.grad(&grads).unwrap().into_data().to_vec().unwrap();
    assert!(
        cka.into_scalar().is_finite() && grad.iter().all(|g| g.is_finite()),
        "{grad:?}"
    );
}

#[test]
fn rep_sim_penalty_is_weight_times_one_minus_cka_to_the_pretrained_features_and_training_on_it_raises_cka()
 {
    let weight = 2.0;
    let config = method(MethodKind::RepSim, |m| m.weight = Some(weight));
    let model = Classifier::new(vit(), 3, 0, &Default::default());
    let images = images();
    // Anchored at a backbone whose every weight is 0.05 off: other features.
    let anchor = model.backbone.clone().map(&mut Shift(0.05));
    let rep_sim = Method::new(&config, &anchor);
    let got = penalty(&rep_sim, &model, &images).unwrap();
    let cka = cka_by_hand(
        &rows(features(&model.backbone, images.clone())),
        &rows(features(&anchor, images.clone())),
    );
    let want = weight * (1.0 - cka);
    assert!((got - want).abs() < 1e-5, "{got} vs {want} by hand");
    assert!(want > 1e-3, "a case that tells: {want}");
    let at_anchor = penalty(&Method::new(&config, &model.backbone), &model, &images).unwrap();
    assert!(at_anchor.abs() < 1e-5, "{at_anchor}");
    // An epoch's last batch may hold one image: no CKA, no penalty (not NaN).
    assert_eq!(
        penalty(&rep_sim, &model, &images.clone().narrow(0, 0, 1)),
        None
    );
    // Steps on the penalty alone (the head at rate 0) bring the features back
    // towards the pre-trained ones; the anchor itself does not move.
    let mut tr = Training::new(model, 0.0);
    let anchor_features = rows(features(&anchor, images.clone()));
    for _ in 0..5 {
        let f = features(&tr.model.backbone, images.clone());
        let loss = rep_sim.penalty(&tr.model, &images, &f).unwrap();
        let grads = GradientsParams::from_grads(loss.backward(), &tr.model);
        tr = rep_sim.step(tr, grads, 1, 1e-3, 0.0);
    }
    let after = penalty(&rep_sim, &tr.model, &images).unwrap();
    assert!(after < 0.8 * got, "penalty {got} → {after}");
    assert_eq!(rows(features(&anchor, images.clone())), anchor_features);
}

#[test]
fn l2_sp_penalty_is_alpha_half_the_squared_drift_plus_beta_half_the_head() {
    let (alpha, beta) = (0.3, 0.2);
    let config = method(MethodKind::L2Sp, |m| {
        (m.alpha, m.beta) = (Some(alpha), Some(beta))
    });
    let model = Classifier::new(vit(), 3, 0, &Default::default());
    // Anchored 0.01 away from every backbone weight: ‖w − w₀‖² = 1e-4 per weight.
    let anchor = model.backbone.clone().map(&mut Shift(0.01));
    let images = images();
    let got = penalty(&Method::new(&config, &anchor), &model, &images).unwrap();
    let head: f64 = values(&model.head.weight)
        .iter()
        .flatten()
        .map(|w| (*w as f64).powi(2))
        .sum();
    let want = alpha / 2.0 * 1e-4 * model.backbone.num_params() as f64 + beta / 2.0 * head;
    assert!((got - want).abs() <= 1e-4 * want, "{got} vs {want} by hand");
    // At the anchor itself only the head counts; full fine-tuning adds nothing.
    let at_anchor = penalty(&Method::new(&config, &model.backbone), &model, &images).unwrap();
    assert!(
        (at_anchor - beta / 2.0 * head).abs() <= 1e-5 * head,
        "{at_anchor}"
    );
    assert!(
        penalty(
            &Method::new(&MethodConfig::full("full"), &model.backbone),
            &model,
            &images
        )
        .is_none()
    );
}

#[test]
fn lp_ft_keeps_the_backbone_frozen_during_the_probe_then_trains_it() {
    let config = method(MethodKind::LpFt, |m| m.probe_epochs = Some(1));
    let backbone = vit();
    let lp = Method::new(&config, &backbone);
    let tr = Training::new(Classifier::new(backbone, 3, 0, &Default::default()), 0.05);
    let (backbone0, head0) = (values(&tr.model.backbone), values(&tr.model.head));
    let tr = step(&lp, tr, 1, 1e-3, 1e-3);
    assert_eq!(
        largest_change(&backbone0, &values(&tr.model.backbone)),
        0.0,
        "the backbone moved in the probe"
    );
    assert!(
        largest_change(&head0, &values(&tr.model.head)) > 1e-4,
        "the head did not train"
    );
    let backbone1 = values(&tr.model.backbone);
    let tr = step(&lp, tr, 2, 1e-3, 1e-3);
    assert!(
        largest_change(&backbone1, &values(&tr.model.backbone)) > 1e-4,
        "the backbone did not train after the probe"
    );
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
    let close = |got: f64, want: f64, what: &str| {
        assert!(
            (got - want).abs() <= 0.02 * want,
            "{what}: rate factor {got}, want {want}"
        )
    };
    for (i, (b, a)) in before.blocks.iter().zip(&after.blocks).enumerate() {
        close(
            rate(&values(b), &values(a)),
            decay.powi(depth - i as i32),
            &format!("block {}", i + 1),
        );
    }
    close(
        rate(&values(&before.pos_embed), &values(&after.pos_embed)),
        decay.powi(depth + 1),
        "position embedding",
    );
    close(
        rate(&values(&before.patch_embed), &values(&after.patch_embed)),
        decay.powi(depth + 1),
        "patch embedding",
    );
    close(
        rate(&values(&before.norm), &values(&after.norm)),
        1.0,
        "final norm",
    );
}

#[test]
fn wise_ft_moves_every_backbone_weight_a_fraction_alpha_of_the_way_and_keeps_the_head() {
    // The backbone as a classifier holds it (its own head dropped).
    let start = Classifier::new(vit(), 3, 0, &Default::default()).backbone;
    // "Fine-tuned": every backbone weight 0.08 further, and a head of its own.
    let finetuned = Classifier::new(
        start.clone().map(&mut Shift(0.08)),
        3,
        1,
        &Default::default(),
    );
    let (w0, w1) = (values(&start), values(&finetuned.backbone));
    for alpha in [0.0, 0.25, 0.5] {
        let mid = interpolate(&start, &finetuned, alpha);
        let got = values(&mid.backbone);
        let worst = w0
            .iter()
            .flatten()
            .zip(w1.iter().flatten())
            .zip(got.iter().flatten())
            .map(|((a, b), m)| ((1.0 - alpha) * *a as f64 + alpha * *b as f64 - *m as f64).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "α = {alpha}: off by {worst}");
        assert_eq!(
            largest_change(&values(&mid.head), &values(&finetuned.head)),
            0.0,
            "the head is the fine-tuned one"
        );
    }
    assert!(
        largest_change(&w0, &values(&interpolate(&start, &finetuned, 0.5).backbone)) > 0.039,
        "the midpoint moved"
    );
}
