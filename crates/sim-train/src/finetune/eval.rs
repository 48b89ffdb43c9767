//! One evaluation (epoch 0, or after an epoch): the model in inference mode,
//! no augmentation, over the sets of docs/SPEC.md, written as one safetensors file in
//! the layout of `sim_study::eval_file` (features f16, logits f32).

use crate::data::batch::Batcher;
use crate::data::prepare::PreparedDataset;
use crate::train::batch_parts::BatchParts;
use crate::train::classifier::Classifier;
use crate::train::prefetch::prefetched;
use burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sim_study::StudyConfig;
use sim_study::eval_file::{self, Layer, Probe, Token};
use sim_study::tensors::RawTensor;
use std::collections::BTreeMap;

/// The images an evaluation looks at (indices into each data set's cache).
pub struct EvalSets<'a> {
    pub medical: Batcher<'a>,
    pub natural: Batcher<'a>,
    /// Medical test split: logits, labels, the medical probe.
    pub medical_test: Vec<usize>,
    /// Medical train split: the linear probe's training set (epoch 0).
    pub medical_train: Vec<usize>,
    /// Medical validation split (empty where the data set has none): the
    /// held-out logits temperature scaling is fitted on.
    pub medical_validation: Vec<usize>,
    /// The fixed natural-image probe subset.
    pub natural_probe: Vec<usize>,
    /// k-NN memory bank (natural train split) and queries (natural val split).
    pub knn_bank: Vec<usize>,
    pub knn_query: Vec<usize>,
    /// Natural images whose last-block attention is kept.
    pub attention: Vec<usize>,
    pub batch_size: usize,
    /// Layers dumped (0 = embedding … L); `None` = all. `final` always is.
    pub layers: Option<Vec<usize>>,
    /// How a batch is cut over the process's threads (the training steps
    /// share these threads).
    pub parts: BatchParts,
}

impl<'a> EvalSets<'a> {
    /// The ids of the attention images in `natural`, the data set the sets were drawn from.
    pub fn attention_ids(&self, natural: &PreparedDataset) -> Vec<String> {
        self.attention
            .iter()
            .map(|&i| natural.dataset.samples[i].id.clone())
            .collect()
    }

    /// The sets of a run on `medical` (its test split) and `natural` (the
    /// probe subset, the k-NN bank and queries, the attention images): fixed
    /// for the whole study by `study.split_seed`, not per run.
    pub fn new(
        config: &StudyConfig,
        medical: (&PreparedDataset, Batcher<'a>),
        natural: (&PreparedDataset, Batcher<'a>),
    ) -> EvalSets<'a> {
        let e = &config.evaluation;
        let mut probe = natural.0.test_indices();
        probe.shuffle(&mut ChaCha8Rng::seed_from_u64(config.study.split_seed));
        probe.truncate(e.natural_probe_size);
        EvalSets {
            medical: medical.1,
            natural: natural.1,
            medical_test: medical.0.test_indices(),
            medical_train: medical.0.train_indices(),
            medical_validation: medical.0.validation_indices(),
            attention: probe.iter().copied().take(e.attention_images).collect(),
            natural_probe: probe,
            knn_bank: natural.0.train_indices(),
            knn_query: natural.0.test_indices(),
            batch_size: e.batch_size,
            layers: config.dump.layers.clone(),
            parts: BatchParts::for_training(&config.training),
        }
    }
}

/// What one pass over a set collects.
#[derive(Default)]
struct Collected {
    /// Per layer: (CLS, patch mean), each rows × width, row-major.
    layers: BTreeMap<Layer, (Vec<f32>, Vec<f32>)>,
    logits: Vec<f32>,
    attention: Vec<f32>,
    patch_norms: Vec<f32>,
    rows: usize,
}

#[derive(Clone, Copy)]
struct Want {
    all_layers: bool,
    logits: bool,
    attention: bool,
}

impl Collected {
    /// `other`'s rows after these.
    fn append(&mut self, other: Collected) {
        for (layer, (cls, patch)) in other.layers {
            let entry = self.layers.entry(layer).or_default();
            entry.0.extend(cls);
            entry.1.extend(patch);
        }
        self.logits.extend(other.logits);
        self.attention.extend(other.attention);
        self.patch_norms.extend(other.patch_norms);
        self.rows += other.rows;
    }
}

/// One pass over `indices` in batches of `batch_size` (each rendered on a
/// second thread while the one before runs), each batch cut into `parts`
/// that run at once; `layers`: the layers dumped when all are wanted
/// (`None`: every one).
#[allow(clippy::too_many_arguments)]
fn pass<B: Backend>(
    model: &Classifier<B>,
    batcher: &Batcher<'_>,
    indices: &[usize],
    batch_size: usize,
    layers: Option<&[usize]>,
    want: Want,
    parts: &BatchParts,
    device: &B::Device,
) -> Collected {
    let mut c = Collected::default();
    let draw = |chunk: &[usize]| batcher.eval_host(chunk, batch_size);
    prefetched(indices, batch_size, draw, |batches| {
        for host in batches {
            // Every batch padded to the same shape (a GPU's); the padding's
            // rows are dropped, a part of padding alone is not run.
            let real_rows = host.rows;
            let batch = host.to_device::<B>(device);
            let collected = parts.run(batch_size, |rows| {
                let real = real_rows.saturating_sub(rows.start).min(rows.len());
                (real > 0).then(|| {
                    collect(
                        model,
                        batch.images.clone().narrow(0, rows.start, rows.len()),
                        real,
                        layers,
                        want,
                    )
                })
            });
            for part in collected.into_iter().flatten() {
                c.append(part);
            }
        }
    });
    c
}

/// What `want` asks of `images`, of which the first `real` rows are kept.
fn collect<B: Backend>(
    model: &Classifier<B>,
    images: Tensor<B, 4>,
    real: usize,
    layers: Option<&[usize]>,
    want: Want,
) -> Collected {
    let mut c = Collected {
        rows: real,
        ..Collected::default()
    };
    let values = |t: Tensor<B, 2>| {
        let width = t.dims()[1];
        let mut v = t.into_data().convert::<f32>().to_vec::<f32>().expect("f32");
        v.truncate(real * width);
        v
    };
    let out = model.backbone.forward(images);
    let mut dumped: Vec<(Layer, &Tensor<B, 3>)> = vec![(Layer::Final, &out.final_tokens)];
    if want.all_layers {
        for (i, h) in out.hidden.iter().enumerate() {
            if layers.is_none_or(|l| l.contains(&i)) {
                dumped.push((Layer::Index(i), h));
            }
        }
    }
    for (layer, tokens) in dumped {
        let (cls, patch) = out.cls_and_patch_mean(tokens);
        c.layers.insert(layer, (values(cls), values(patch)));
    }
    if want.logits {
        let (cls, _) = out.cls_and_patch_mean(&out.final_tokens);
        c.logits = values(model.head.forward(cls));
    }
    if want.attention {
        c.attention = values(out.attention.clone());
        c.patch_norms = values(out.patch_norms());
    }
    c
}

/// Runs every pass of an evaluation (medical, then natural); returns the
/// tensors of its file.
pub fn evaluate<B: Backend>(
    model: &Classifier<B>,
    sets: &EvalSets<'_>,
    device: &B::Device,
) -> Vec<RawTensor> {
    let mut out = evaluate_medical(model, sets, device);
    out.extend(evaluate_natural(model, sets, false, device));
    out
}

fn features(out: &mut Vec<RawTensor>, probe: Probe, c: &Collected, width: usize) {
    for (&layer, (cls, patch)) in &c.layers {
        out.push(RawTensor::f16(
            eval_file::probe_tensor(probe, layer, Token::Cls),
            vec![c.rows, width],
            cls,
        ));
        out.push(RawTensor::f16(
            eval_file::probe_tensor(probe, layer, Token::PatchMean),
            vec![c.rows, width],
            patch,
        ));
    }
}

/// Final-norm CLS features `[n, width]` and logits `[n, classes]` of
/// `indices`, row-major, in batches of `batch_size` cut into `parts`.
pub(crate) fn final_outputs<B: Backend>(
    model: &Classifier<B>,
    batcher: &Batcher<'_>,
    indices: &[usize],
    batch_size: usize,
    parts: &BatchParts,
    device: &B::Device,
) -> (Vec<f32>, Vec<f32>) {
    let mut c = pass(
        model,
        batcher,
        indices,
        batch_size,
        None,
        Want {
            logits: true,
            ..FINAL_ONLY
        },
        parts,
        device,
    );
    (
        c.layers
            .remove(&Layer::Final)
            .map(|(cls, _)| cls)
            .unwrap_or_default(),
        c.logits,
    )
}

const ALL_LAYERS: Want = Want {
    all_layers: true,
    logits: false,
    attention: false,
};
const FINAL_ONLY: Want = Want {
    all_layers: false,
    logits: false,
    attention: false,
};

/// The medical test set (logits, labels and the medical probe's features)
/// and the validation split's logits and labels.
pub fn evaluate_medical<B: Backend>(
    model: &Classifier<B>,
    sets: &EvalSets<'_>,
    device: &B::Device,
) -> Vec<RawTensor> {
    let mut out = medical_test(model, sets, device);
    out.extend(validation(model, sets, false, device));
    out
}

/// The medical test set: logits, labels and the medical probe's features.
fn medical_test<B: Backend>(
    model: &Classifier<B>,
    sets: &EvalSets<'_>,
    device: &B::Device,
) -> Vec<RawTensor> {
    let mut out = Vec::new();
    let medical = pass(
        model,
        &sets.medical,
        &sets.medical_test,
        sets.batch_size,
        sets.layers.as_deref(),
        Want {
            logits: true,
            ..ALL_LAYERS
        },
        &sets.parts,
        device,
    );
    let classes = medical.logits.len() / medical.rows.max(1);
    out.push(RawTensor::f32(
        eval_file::TEST_LOGITS,
        vec![medical.rows, classes],
        &medical.logits,
    ));
    let labels = labels_of(sets, &sets.medical_test);
    out.push(RawTensor::i64(eval_file::TEST_LABELS, &labels));
    features(&mut out, Probe::Medical, &medical, model.backbone.width());
    out
}

/// The medical validation split (none where the data set has none): its
/// logits and labels, and with `with_features` (epoch 0, what the probe is
/// scaled on) its final-norm CLS features, all from one pass.
fn validation<B: Backend>(
    model: &Classifier<B>,
    sets: &EvalSets<'_>,
    with_features: bool,
    device: &B::Device,
) -> Vec<RawTensor> {
    let rows = sets.medical_validation.len();
    if rows == 0 {
        return Vec::new();
    }
    let (features, logits) = final_outputs(
        model,
        &sets.medical,
        &sets.medical_validation,
        sets.batch_size,
        &sets.parts,
        device,
    );
    let mut out = vec![
        RawTensor::f32(
            eval_file::VAL_LOGITS,
            vec![rows, logits.len() / rows],
            &logits,
        ),
        RawTensor::i64(
            eval_file::VAL_LABELS,
            &labels_of(sets, &sets.medical_validation),
        ),
    ];
    if with_features {
        out.push(RawTensor::f16(
            eval_file::VAL_FEATURES,
            vec![rows, model.backbone.width()],
            &features,
        ));
    }
    out
}

/// The medical labels of `indices`.
fn labels_of(sets: &EvalSets<'_>, indices: &[usize]) -> Vec<i64> {
    indices
        .iter()
        .map(|&i| sets.medical.labels[i] as i64)
        .collect()
}

/// Epoch 0's medical part: the test set and the validation split (its
/// features too) as [`evaluate_medical`] has them, and the medical train
/// split's final-norm CLS features and labels, what a linear probe of the
/// pre-trained backbone trains on.
pub fn evaluate_medical_pretrained<B: Backend>(
    model: &Classifier<B>,
    sets: &EvalSets<'_>,
    device: &B::Device,
) -> Vec<RawTensor> {
    let mut out = medical_test(model, sets, device);
    out.extend(validation(model, sets, true, device));
    let c = pass(
        model,
        &sets.medical,
        &sets.medical_train,
        sets.batch_size,
        sets.layers.as_deref(),
        FINAL_ONLY,
        &sets.parts,
        device,
    );
    out.push(RawTensor::f16(
        eval_file::TRAIN_FEATURES,
        vec![c.rows, model.backbone.width()],
        &c.layers[&Layer::Final].0,
    ));
    out.push(RawTensor::i64(
        eval_file::TRAIN_LABELS,
        &labels_of(sets, &sets.medical_train),
    ));
    out
}

/// The natural images: the natural probe, the k-NN bank and queries, the
/// attention maps; the attention images themselves too when `with_images`
/// (epoch 0: they are the same for every epoch). The head is not used, so
/// the pre-trained model's part is the same for every medical data set.
pub fn evaluate_natural<B: Backend>(
    model: &Classifier<B>,
    sets: &EvalSets<'_>,
    with_images: bool,
    device: &B::Device,
) -> Vec<RawTensor> {
    let width = model.backbone.width();
    let mut out = Vec::new();
    let natural = pass(
        model,
        &sets.natural,
        &sets.natural_probe,
        sets.batch_size,
        sets.layers.as_deref(),
        ALL_LAYERS,
        &sets.parts,
        device,
    );
    features(&mut out, Probe::Natural, &natural, width);
    for (indices, feats, labels) in [
        (
            &sets.knn_bank,
            eval_file::KNN_BANK,
            eval_file::KNN_BANK_LABELS,
        ),
        (
            &sets.knn_query,
            eval_file::KNN_QUERY,
            eval_file::KNN_QUERY_LABELS,
        ),
    ] {
        let c = pass(
            model,
            &sets.natural,
            indices,
            sets.batch_size,
            sets.layers.as_deref(),
            FINAL_ONLY,
            &sets.parts,
            device,
        );
        out.push(RawTensor::f16(
            feats,
            vec![c.rows, width],
            &c.layers[&Layer::Final].0,
        ));
        let y: Vec<i64> = indices
            .iter()
            .map(|&i| sets.natural.labels[i] as i64)
            .collect();
        out.push(RawTensor::i64(labels, &y));
    }
    let attn = pass(
        model,
        &sets.natural,
        &sets.attention,
        sets.batch_size,
        sets.layers.as_deref(),
        Want {
            attention: true,
            ..FINAL_ONLY
        },
        &sets.parts,
        device,
    );
    let patches = attn.attention.len() / attn.rows.max(1);
    out.push(RawTensor::f32(
        eval_file::ATTENTION,
        vec![attn.rows, patches],
        &attn.attention,
    ));
    out.push(RawTensor::f32(
        eval_file::ATTENTION_PATCH_NORM,
        vec![attn.rows, patches],
        &attn.patch_norms,
    ));
    if with_images {
        let s = sets.natural.size as usize;
        out.push(RawTensor::u8(
            eval_file::ATTENTION_IMAGES,
            vec![attn.rows, s, s, 3],
            sets.natural.eval_pixels(&sets.attention),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend;
    use crate::data::image_cache::ImageCache;
    use crate::data::transform::Normalisation;
    use crate::data::{ImageSource, Sample};
    use crate::model::init::{VitShape, random_vit};

    /// A pass with its batches cut into parts gives the whole batches'
    /// outputs, row for row, padding dropped.
    #[test]
    fn a_pass_in_parts_gives_the_whole_batches_outputs_in_order() {
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<Sample> = (0..11u8)
            .map(|i| Sample {
                id: i.to_string(),
                source: ImageSource::Memory(std::sync::Arc::new(image::RgbImage::from_fn(
                    16,
                    16,
                    |x, y| image::Rgb([i * 20, (x * 15) as u8, (y * 15) as u8]),
                ))),
                label: usize::from(i % 3),
                group: i.to_string(),
                given_split: None,
            })
            .collect();
        let (cache, _) =
            ImageCache::load_or_build(&dir.path().join("cache.u8img"), &samples, 16).unwrap();
        let labels: Vec<usize> = samples.iter().map(|s| s.label).collect();
        let batcher = Batcher {
            cache: &cache,
            labels: &labels,
            size: 16,
            norm: Normalisation {
                mean: [0.5; 3],
                std: [0.25; 3],
            },
        };
        let shape = VitShape::TINY;
        let model = Classifier::new(
            random_vit::<CpuBackend>(shape, 2, &device).unwrap().model,
            3,
            0,
            &device,
        );
        let want = Want {
            all_layers: true,
            logits: true,
            attention: true,
        };
        // 11 images in batches of 4: the last batch has 3 real rows.
        let run = |parts: usize| {
            pass(
                &model,
                &batcher,
                &(0..11).rev().collect::<Vec<_>>(),
                4,
                None,
                want,
                &BatchParts::new(parts),
                &device,
            )
        };
        let whole = run(1);
        assert_eq!(whole.rows, 11);
        for parts in [2, 3] {
            let split = run(parts);
            assert_eq!(split.rows, whole.rows);
            let close = |a: &[f32], b: &[f32], what: &str| {
                assert_eq!(a.len(), b.len(), "{parts} parts, {what}");
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                        "{parts} parts, {what}: {x} vs {y}"
                    );
                }
            };
            close(&split.logits, &whole.logits, "logits");
            close(&split.attention, &whole.attention, "attention");
            close(&split.patch_norms, &whole.patch_norms, "patch norms");
            assert_eq!(split.layers.len(), whole.layers.len());
            for (layer, (cls, patch)) in &whole.layers {
                close(&split.layers[layer].0, cls, "CLS");
                close(&split.layers[layer].1, patch, "patch mean");
            }
        }
    }
}
