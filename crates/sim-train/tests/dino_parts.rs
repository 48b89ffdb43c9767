//! DINO's step cut into parts over threads (`train::batch_parts`): its loss
//! is the unsplit step's, and steps in more parts than the machine has
//! cores repeat to the bit.
//!
//! A test binary of its own: burn 0.21's autodiff ends every backward pass
//! by sweeping every graph of the process, so other tests' backward passes
//! in the same process could take a term of these steps' gradients, the
//! very race the second test checks the parts against (`batch_parts`'s doc);
//! and its tests run one at a time ([`ONE_AT_A_TIME`]).

use burn::prelude::*;
use sim_study::config::DinoConfig;
use sim_train::model::init::{VitShape, random_vit};
use sim_train::pretrain::dino::{Dino, DinoStep, StepAt};
use sim_train::train::batch_parts::BatchParts;
use sim_train::train::params::bits;
use std::sync::Mutex;

type Ad = burn::backend::Autodiff<sim_train::CpuBackend>;

/// Held by each test: the backward passes of one would race the other's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A DINO of the tiny ViT ([`VitShape::TINY`]) with two 8-px local crops,
/// and `n` images (fixed pixels) in its views.
struct PartsCase {
    config: DinoConfig,
    globals: Tensor<Ad, 4>,
    locals: Tensor<Ad, 4>,
}

impl PartsCase {
    fn new(n: usize) -> PartsCase {
        let device = Default::default();
        let k = 2;
        let pixels = |rows: usize, side: usize, seed: usize| {
            let values: Vec<f32> = (0..rows * 3 * side * side)
                .map(|i| ((i * 37 + seed * 11) % 101) as f32 / 50.0 - 1.0)
                .collect();
            Tensor::<Ad, 4>::from_data(TensorData::new(values, [rows, 3, side, side]), &device)
        };
        PartsCase {
            config: DinoConfig {
                local_crops: k,
                local_size: 8,
                hidden_dim: 48,
                bottleneck_dim: 16,
                out_dim: 32,
                ..DinoConfig::default()
            },
            globals: pixels(2 * n, 16, 1),
            locals: pixels(k * n, 8, 2),
        }
    }

    /// The same weights every time, and a centre of its own, so that the
    /// targets differ by image.
    fn dino(&self) -> Dino<Ad> {
        let device = Default::default();
        let backbone = random_vit::<Ad>(VitShape::TINY, 3, &device).unwrap().model;
        let mut dino = Dino::new(backbone, &self.config, 7, &device);
        dino.center = Tensor::from_data(
            TensorData::new(
                (0..32).map(|i| (i % 5) as f32 * 0.1).collect::<Vec<_>>(),
                [1, 32],
            ),
            &device,
        );
        dino
    }

    fn step(&self, dino: &mut Dino<Ad>, parts: usize) -> DinoStep {
        let at = StepAt {
            lr: 1e-4,
            momentum: 0.99,
            teacher_temp: 0.04,
            weight_decay: 0.04,
            freeze_prototypes: false,
        };
        dino.step(
            self.globals.clone(),
            Some(self.locals.clone()),
            at,
            &BatchParts::new(parts),
        )
    }
}

/// A step cut into parts over threads reads every part's own images in
/// every view and the teacher's targets of those images: its loss is the
/// unsplit step's.
#[test]
fn a_step_in_parts_has_the_unsplit_steps_loss() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let case = PartsCase::new(5);
    let loss = |parts: usize| case.step(&mut case.dino(), parts).loss;
    let whole = loss(1);
    for parts in [2, 3] {
        let split = loss(parts);
        assert!(
            (split - whole).abs() <= 1e-6 * whole.abs(),
            "{parts} parts: loss {split} vs {whole}"
        );
    }
}

/// Steps cut into more parts than the machine has cores (so that some
/// parts run their backward passes while others still build their graphs)
/// repeat to the bit: no part loses a gradient term to another's backward
/// pass. Before `BatchParts::gradients` built every graph first, this
/// failed 30 runs of 30 (the patch embedding's, class token's and position
/// embedding's gradients short of a term).
#[test]
fn steps_in_more_parts_than_cores_repeat_to_the_bit() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let case = PartsCase::new(16);
    let student_after_three_steps = || {
        let mut dino = case.dino();
        for _ in 0..3 {
            case.step(&mut dino, 16);
        }
        bits(&dino.student)
    };
    let first = student_after_three_steps();
    for repeat in 1..=20 {
        assert!(
            student_after_three_steps() == first,
            "repeat {repeat}: another student"
        );
    }
}
