//! Batches of images and labels as burn tensors.

use super::image_cache::ImageCache;
use super::transform::{CropPlan, Normalisation, TrainAugment, centre_crop, render};
use burn::prelude::*;
use rand::Rng;
use rayon::prelude::*;

/// A batch: images `[batch, 3, size, size]` (normalised f32) and labels
/// `[batch]`; rows from `rows` on are padding (copies of the first image).
#[derive(Debug, Clone)]
pub struct ImageBatch<B: Backend> {
    pub images: Tensor<B, 4>,
    pub labels: Tensor<B, 1, Int>,
    /// The batch's real rows.
    pub rows: usize,
}

/// A batch rendered in host memory, not yet on the device: what the
/// training loop prepares on a second thread while the device runs the
/// previous step.
#[derive(Debug, Clone)]
pub struct HostBatch {
    /// `[batch, 3, size, size]`, row-major.
    pub pixels: Vec<f32>,
    /// `[batch]`; padding rows repeat the first label.
    pub labels: Vec<i64>,
    /// The real rows, first; the batch holds `labels.len()` rows.
    pub rows: usize,
    pub size: usize,
}

impl HostBatch {
    /// Unpadded batches of one image size, one after the other: `[Σ rows,
    /// 3, size, size]`.
    pub fn stack(batches: Vec<HostBatch>) -> HostBatch {
        let size = batches.first().expect("a batch to stack").size;
        assert!(
            batches
                .iter()
                .all(|b| b.size == size && b.rows == b.labels.len()),
            "stacked batches share one size and have no padding"
        );
        let mut stacked = HostBatch {
            pixels: Vec::new(),
            labels: Vec::new(),
            rows: 0,
            size,
        };
        for b in batches {
            stacked.pixels.extend(b.pixels);
            stacked.labels.extend(b.labels);
            stacked.rows += b.rows;
        }
        stacked
    }

    pub fn to_device<B: Backend>(self, device: &B::Device) -> ImageBatch<B> {
        let (n, s) = (self.labels.len(), self.size);
        ImageBatch {
            images: Tensor::from_data(TensorData::new(self.pixels, [n, 3, s, s]), device),
            labels: Tensor::from_data(TensorData::new(self.labels, [n]), device),
            rows: self.rows,
        }
    }
}

/// Turns sample indices into batches, reading pixels from an image cache.
pub struct Batcher<'a> {
    pub cache: &'a ImageCache,
    /// Label of every sample, in cache order.
    pub labels: &'a [usize],
    /// Output side in pixels.
    pub size: u32,
    pub norm: Normalisation,
}

impl Batcher<'_> {
    /// The evaluation view of `indices` in host memory: centre crops, no
    /// randomness, padded to `pad_to` rows (at least `indices.len()`) so
    /// that every batch of a pass has one shape (a GPU compiles and tunes
    /// its kernels per shape).
    pub fn eval_host(&self, indices: &[usize], pad_to: usize) -> HostBatch {
        let plans: Vec<CropPlan> = indices
            .iter()
            .map(|&i| {
                let v = self.cache.get(i);
                centre_crop(v.width, v.height, self.size)
            })
            .collect();
        self.render(indices, &plans, pad_to)
    }

    /// The evaluation view of `indices` as the pixels a person sees: u8 RGB,
    /// `[n, size, size, 3]` (the same crop, not normalised).
    pub fn eval_pixels(&self, indices: &[usize]) -> Vec<u8> {
        let s = self.size as usize;
        let identity = Normalisation {
            mean: [0.0; 3],
            std: [1.0 / 255.0; 3],
        };
        let mut planes = vec![0f32; 3 * s * s];
        let mut out = Vec::with_capacity(indices.len() * 3 * s * s);
        for &i in indices {
            let v = self.cache.get(i);
            render(
                v,
                &centre_crop(v.width, v.height, self.size),
                self.size,
                &identity,
                &mut planes,
            );
            for p in 0..s * s {
                out.extend((0..3).map(|c| planes[c * s * s + p].round().clamp(0.0, 255.0) as u8));
            }
        }
        out
    }

    /// The training view of `indices` in host memory, padded to `pad_to`
    /// rows: crops and flips drawn from `rng` in index order (so a seed
    /// fixes them, and padding draws nothing), rendered in parallel.
    pub fn train_host(
        &self,
        indices: &[usize],
        pad_to: usize,
        augment: &TrainAugment,
        rng: &mut impl Rng,
    ) -> HostBatch {
        let plans: Vec<CropPlan> = indices
            .iter()
            .map(|&i| {
                let v = self.cache.get(i);
                augment.sample(v.width, v.height, rng)
            })
            .collect();
        self.render(indices, &plans, pad_to)
    }

    fn render(&self, indices: &[usize], plans: &[CropPlan], pad_to: usize) -> HostBatch {
        assert!(!indices.is_empty(), "an empty batch");
        let s = self.size as usize;
        let per_image = 3 * s * s;
        let rows = indices.len();
        let mut pixels = vec![0f32; rows.max(pad_to) * per_image];
        pixels[..rows * per_image]
            .par_chunks_mut(per_image)
            .zip(indices.par_iter().zip(plans))
            .for_each(|(out, (&i, plan))| {
                render(self.cache.get(i), plan, self.size, &self.norm, out);
            });
        let (first, padding) = pixels.split_at_mut(rows * per_image);
        for out in padding.chunks_mut(per_image) {
            out.copy_from_slice(&first[..per_image]);
        }
        let mut labels: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        labels.resize(rows.max(pad_to), labels[0]);
        HostBatch {
            pixels,
            labels,
            rows,
            size: s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend;
    use crate::data::colour::ColourAugment;
    use crate::data::image_cache::ImageCache;
    use crate::data::{ImageSource, Sample};
    use image::{Rgb, RgbImage};
    use rand::SeedableRng;
    use std::sync::Arc;

    fn cache_of(images: Vec<RgbImage>, side: u32, dir: &std::path::Path) -> ImageCache {
        let samples: Vec<Sample> = images
            .into_iter()
            .enumerate()
            .map(|(i, img)| Sample {
                id: i.to_string(),
                source: ImageSource::Memory(Arc::new(img)),
                label: i % 2,
                group: i.to_string(),
                given_split: None,
            })
            .collect();
        ImageCache::load_or_build(&dir.join("c.u8img"), &samples, side)
            .unwrap()
            .0
    }

    #[test]
    fn eval_batch_has_shape_labels_and_normalised_values() {
        let dir = tempfile::tempdir().unwrap();
        let imgs = (0..3)
            .map(|k| RgbImage::from_pixel(12, 8, Rgb([k * 50, 100, 200])))
            .collect();
        let cache = cache_of(imgs, 8, dir.path());
        let labels = [0usize, 1, 0];
        let norm = Normalisation {
            mean: [0.5; 3],
            std: [0.5; 3],
        };
        let batcher = Batcher {
            cache: &cache,
            labels: &labels,
            size: 8,
            norm,
        };
        let device = Default::default();
        let batch: ImageBatch<CpuBackend> = batcher.eval_host(&[2, 1], 2).to_device(&device);
        assert_eq!(batch.images.dims(), [2, 3, 8, 8]);
        assert_eq!(
            batch
                .labels
                .to_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .unwrap(),
            vec![0, 1]
        );
        let values = batch.images.to_data().to_vec::<f32>().unwrap();
        // image 2, red = 100 → (100/255 − 0.5) / 0.5; image 1, blue = 200.
        assert!((values[0] - (100.0 / 255.0 - 0.5) / 0.5).abs() < 1e-5);
        let blue_of_1 = values[192 + 2 * 64];
        assert!((blue_of_1 - (200.0 / 255.0 - 0.5) / 0.5).abs() < 1e-5);
    }

    #[test]
    fn stacked_batches_follow_one_another_and_padding_is_refused() {
        let batch = |first: f32, labels: Vec<i64>| HostBatch {
            pixels: (0..labels.len() * 3 * 4)
                .map(|i| first + i as f32)
                .collect(),
            rows: labels.len(),
            labels,
            size: 2,
        };
        let (a, b) = (batch(0.0, vec![1, 0]), batch(100.0, vec![2]));
        let stacked = HostBatch::stack(vec![a.clone(), b.clone()]);
        assert_eq!(stacked.pixels, [a.pixels, b.pixels].concat());
        assert_eq!(
            (stacked.labels, stacked.rows, stacked.size),
            (vec![1, 0, 2], 3, 2)
        );

        let mut padded = batch(0.0, vec![1, 1]);
        padded.rows = 1;
        let refused = std::panic::catch_unwind(|| HostBatch::stack(vec![padded]));
        assert!(refused.is_err(), "a padded batch stacked");
    }

    #[test]
    fn padded_batches_repeat_the_first_image_and_keep_the_real_rows() {
        let dir = tempfile::tempdir().unwrap();
        let imgs = (0..3)
            .map(|k| RgbImage::from_fn(10, 10, |x, y| Rgb([k * 60 + x as u8, y as u8, 7])))
            .collect();
        let cache = cache_of(imgs, 10, dir.path());
        let labels = [0usize, 1, 0];
        let batcher = Batcher {
            cache: &cache,
            labels: &labels,
            size: 8,
            norm: Normalisation {
                mean: [0.0; 3],
                std: [1.0; 3],
            },
        };
        let device = Default::default();
        let plain: ImageBatch<CpuBackend> = batcher.eval_host(&[1, 2], 2).to_device(&device);
        let padded: ImageBatch<CpuBackend> = batcher.eval_host(&[1, 2], 5).to_device(&device);
        assert_eq!((plain.rows, padded.rows), (2, 2));
        assert_eq!(padded.images.dims(), [5, 3, 8, 8]);
        let (p, q) = (
            plain.images.to_data().to_vec::<f32>().unwrap(),
            padded.images.to_data().to_vec::<f32>().unwrap(),
        );
        let per = 3 * 8 * 8;
        assert_eq!(&q[..2 * per], &p[..], "the real rows are unchanged");
        for row in 2..5 {
            assert_eq!(
                &q[row * per..(row + 1) * per],
                &p[..per],
                "padding row {row} copies the first image"
            );
        }
        assert_eq!(
            padded
                .labels
                .to_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .unwrap(),
            vec![1, 0, 1, 1, 1]
        );
        // Padding draws nothing from the generator: the next draw is the same.
        let aug = TrainAugment {
            scale: [0.5, 1.0],
            hflip: true,
            vflip: false,
            colour: ColourAugment::NONE,
        };
        let mut a = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut b = a.clone();
        batcher.train_host(&[0, 1], 2, &aug, &mut a);
        batcher.train_host(&[0, 1], 6, &aug, &mut b);
        assert_eq!(a.random::<u64>(), b.random::<u64>());
    }

    #[test]
    fn train_batches_repeat_with_the_seed() {
        let dir = tempfile::tempdir().unwrap();
        let imgs = (0..4)
            .map(|k| RgbImage::from_fn(20, 16, |x, y| Rgb([x as u8 * 9, y as u8 * 13, k])))
            .collect();
        let cache = cache_of(imgs, 16, dir.path());
        let labels = [0usize, 1, 0, 1];
        let batcher = Batcher {
            cache: &cache,
            labels: &labels,
            size: 12,
            norm: Normalisation {
                mean: [0.0; 3],
                std: [1.0; 3],
            },
        };
        let aug = TrainAugment {
            scale: [0.8, 1.0],
            hflip: true,
            vflip: true,
            colour: ColourAugment::NONE,
        };
        let run = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            batcher.train_host(&[0, 1, 2, 3], 4, &aug, &mut rng).pixels
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
