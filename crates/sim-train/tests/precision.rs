//! `training.precision`: the blocks' matrix products in bf16 / f16 with the
//! parameters kept in f32 (master weights). Runs on the CPU backend, which
//! computes bf16 products as the GPU does (inputs and outputs rounded to
//! bf16), so the same code paths are checked here.

use burn::backend::Autodiff;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::DType;
use half::bf16;
use sim_study::config::{MethodConfig, Precision};
use sim_train::CpuBackend;
use sim_train::finetune::method::Method;
use sim_train::model::init::{VitShape, random_vit};
use sim_train::train::checkpoint::Training;
use sim_train::train::classifier::Classifier;

type Ad = Autodiff<CpuBackend>;

const SHAPE: VitShape = VitShape {
    width: 64,
    depth: 2,
    heads: 2,
    patch: 8,
    mlp_ratio: 4,
    input_size: 32,
};

/// Four fixed images, values in [−1, 1].
fn images<B: Backend>(device: &B::Device) -> Tensor<B, 4> {
    let pattern: Vec<f32> = (0..4 * 3 * 32 * 32)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    Tensor::from_data(TensorData::new(pattern, [4, 3, 32, 32]), device)
}

fn relative_difference(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn bf16_and_f16_products_stay_near_f32_and_are_really_rounded() {
    let device = Default::default();
    let mut vit = random_vit::<CpuBackend>(SHAPE, 3, &device).unwrap().model;
    let tokens = |vit: &sim_train::model::Vit<CpuBackend>| {
        vit.forward(images::<CpuBackend>(&device))
            .final_tokens
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    let f32 = tokens(&vit);
    for (precision, at_most) in [(Precision::Bf16, 5e-2), (Precision::F16, 1e-2)] {
        vit.set_precision(precision);
        let low = tokens(&vit);
        let d = relative_difference(&f32, &low);
        // Above f32's rounding (the casts happen), within the format's.
        assert!(
            d > 1e-5 && d < at_most,
            "{precision:?}: relative difference {d}"
        );
    }
    vit.set_precision(Precision::F32);
    assert_eq!(tokens(&vit), f32, "back to f32: the same numbers");
}

#[test]
fn an_update_below_bf16_resolution_is_kept_by_the_f32_master_weights() {
    let device = Default::default();
    let mut backbone = random_vit::<Ad>(SHAPE, 5, &device).unwrap().model;
    backbone.set_precision(Precision::Bf16);
    let model = Classifier::new(backbone, 3, 0, &device);
    let weights = |m: &Classifier<Ad>| m.backbone.blocks[0].fc1.weight.val().into_data();
    let before = weights(&model);
    assert_eq!(before.dtype, DType::F32, "parameters stay f32");
    let before = before.to_vec::<f32>().unwrap();

    let method = Method::new(&MethodConfig::full("full"), &model.backbone);
    let labels =
        Tensor::<Ad, 1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 0], [4]), &device);
    let loss = burn::nn::loss::CrossEntropyLossConfig::new()
        .init(&device)
        .forward(model.logits(images::<Ad>(&device)), labels);
    // lr 1e-7: AdamW's first step moves each weight by about lr, about a
    // hundred-thousandth of a typical weight (σ 0.02), far below bf16's
    // resolution (2⁻⁸ relative).
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let tr = method.step(Training::new(model, 0.0), grads, 1, 1e-7, 1e-7);
    let after = weights(&tr.model);
    assert_eq!(after.dtype, DType::F32);
    let after = after.to_vec::<f32>().unwrap();

    let (mut moved, mut lost_in_bf16) = (0, 0);
    for (&w0, &w1) in before.iter().zip(&after) {
        let step = (w1 - w0).abs();
        assert!(step < 2e-7, "a step of {step}, not about lr");
        if w1 != w0 {
            moved += 1;
            if bf16::from_f32(w1) == bf16::from_f32(w0) {
                lost_in_bf16 += 1;
            }
        }
    }
    let n = before.len();
    assert!(moved * 10 > n * 9, "only {moved} of {n} weights moved");
    // The same update on bf16 weights would have vanished: what f32 master weights are for.
    assert!(
        lost_in_bf16 * 10 > moved * 9,
        "{lost_in_bf16} of {moved} updates are below bf16's resolution"
    );
}
