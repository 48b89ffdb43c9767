//! Training throughput of the fine-tuning step (forward, backward, two AdamW
//! updates, the batch cut into a part per thread as the training loop does)
//! and of the training data pipeline, for scripts/bench_train.py:
//!
//!     train_step CHECKPOINT SIZE HEADS BATCH STEPS   → JSON images/s
//!
//! `SIM_BENCH_PARTS=1` runs the step unsplit, for comparison.

use burn::prelude::*;
use rand::SeedableRng;
use sim_study::config::MethodConfig;
use sim_train::backend::TrainBackend;
use sim_train::data::batch::Batcher;
use sim_train::data::colour::ColourAugment;
use sim_train::data::image_cache::ImageCache;
use sim_train::data::transform::{Normalisation, TrainAugment};
use sim_train::data::{ImageSource, Sample};
use sim_train::finetune::method::Method;
use sim_train::model::{LoadOptions, load};
use sim_train::train::batch_parts::BatchParts;
use sim_train::train::checkpoint::Training;
use sim_train::train::classifier::{Classifier, part_cross_entropy};
use std::time::Instant;

fn main() {
    sim_train::backend::keep_freed_memory();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [checkpoint, size, heads, batch, steps] = &args[..] else {
        panic!("usage: train_step CHECKPOINT SIZE HEADS BATCH STEPS")
    };
    let (size, heads, batch, steps): (usize, usize, usize, usize) = (
        size.parse().unwrap(),
        heads.parse().unwrap(),
        batch.parse().unwrap(),
        steps.parse().unwrap(),
    );
    let device = Default::default();
    let backbone = load::<TrainBackend>(
        checkpoint.as_ref(),
        &LoadOptions {
            heads: Some(heads),
            ..LoadOptions::new(size)
        },
        &device,
    )
    .unwrap()
    .model;
    let method = Method::new(&MethodConfig::full("full"), &backbone);
    let mut tr = Training::new(Classifier::new(backbone, 7, 0, &device), 0.0);
    let images = Tensor::<TrainBackend, 4>::random(
        [batch, 3, size, size],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let labels = Tensor::<TrainBackend, 1, Int>::from_data(
        TensorData::new(
            (0..batch as i64).map(|i| i % 7).collect::<Vec<_>>(),
            [batch],
        ),
        &device,
    );
    let loss_fn = burn::nn::loss::CrossEntropyLossConfig::new().init(&device);
    let parts = match std::env::var("SIM_BENCH_PARTS") {
        Ok(n) => BatchParts::new(n.parse().expect("SIM_BENCH_PARTS: a number")),
        Err(_) => BatchParts::per_thread(),
    };
    let step = |tr: Training<TrainBackend>| {
        let (grads, _) = parts.gradients(&tr.model, batch, |model, rows| {
            part_cross_entropy(model, &loss_fn, &images, &labels, rows)
        });
        method.step(tr, grads, 1, 1e-5, 1e-3)
    };
    tr = step(tr); // warm-up
    let start = Instant::now();
    for _ in 0..steps {
        tr = step(tr);
    }
    let train_ips = (batch * steps) as f64 / start.elapsed().as_secs_f64();

    // The data side alone: RandomResizedCrop + flips + normalisation from the
    // image cache into a batch tensor, as in a real epoch.
    let dir = std::env::temp_dir().join(format!("simlab-bench-{}", std::process::id()));
    let samples: Vec<Sample> = (0..256)
        .map(|i| Sample {
            id: i.to_string(),
            source: ImageSource::Memory(std::sync::Arc::new(image::RgbImage::from_pixel(
                size as u32 * 4 / 3,
                size as u32,
                image::Rgb([i as u8, 0, 0]),
            ))),
            label: i % 7,
            group: i.to_string(),
            given_split: None,
        })
        .collect();
    let (cache, _) =
        ImageCache::load_or_build(&dir.join("c.u8img"), &samples, size as u32).unwrap();
    let labels: Vec<usize> = samples.iter().map(|s| s.label).collect();
    let batcher = Batcher {
        cache: &cache,
        labels: &labels,
        size: size as u32,
        norm: Normalisation {
            mean: [0.5; 3],
            std: [0.5; 3],
        },
    };
    let aug = TrainAugment {
        scale: [0.8, 1.0],
        hflip: true,
        vflip: true,
        colour: ColourAugment::NONE,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let idx: Vec<usize> = (0..batch).collect();
    let start = Instant::now();
    for _ in 0..steps {
        let b = batcher.train_host(&idx, batch, &aug, &mut rng);
        let _ = b.to_device::<TrainBackend>(&device).images.into_data();
    }
    let data_ips = (batch * steps) as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&dir).ok();
    println!("{{\"train_images_per_s\": {train_ips}, \"data_images_per_s\": {data_ips}}}");
}
