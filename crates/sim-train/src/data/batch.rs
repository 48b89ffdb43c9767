//! Batches of images and labels as burn tensors.

use super::image_cache::ImageCache;
use super::transform::{CropPlan, Normalisation, TrainAugment, centre_crop, render};
use burn::prelude::*;
use rand::Rng;
use rayon::prelude::*;

/// A batch: images `[batch, 3, size, size]` (normalised f32) and labels `[batch]`.
#[derive(Debug, Clone)]
pub struct ImageBatch<B: Backend> {
    pub images: Tensor<B, 4>,
    pub labels: Tensor<B, 1, Int>,
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
    /// The evaluation view of `indices`: centre crops, no randomness.
    pub fn eval<B: Backend>(&self, indices: &[usize], device: &B::Device) -> ImageBatch<B> {
        let plans: Vec<CropPlan> = indices
            .iter()
            .map(|&i| {
                let v = self.cache.get(i);
                centre_crop(v.width, v.height, self.size)
            })
            .collect();
        self.render(indices, &plans, device)
    }

    /// The evaluation view of `indices` as the pixels a person sees: u8 RGB,
    /// `[n, size, size, 3]` (the same crop, not normalised).
    pub fn eval_pixels(&self, indices: &[usize]) -> Vec<u8> {
        let s = self.size as usize;
        let identity = Normalisation { mean: [0.0; 3], std: [1.0 / 255.0; 3] };
        let mut planes = vec![0f32; 3 * s * s];
        let mut out = Vec::with_capacity(indices.len() * 3 * s * s);
        for &i in indices {
            let v = self.cache.get(i);
            render(v, &centre_crop(v.width, v.height, self.size), self.size, &identity, &mut planes);
            for p in 0..s * s {
                out.extend((0..3).map(|c| planes[c * s * s + p].round().clamp(0.0, 255.0) as u8));
            }
        }
        out
    }

    /// The training view of `indices`: crops and flips drawn from `rng` in
    /// index order (so a seed fixes them), rendered in parallel.
    pub fn train<B: Backend>(
        &self,
        indices: &[usize],
        augment: &TrainAugment,
        rng: &mut impl Rng,
        device: &B::Device,
    ) -> ImageBatch<B> {
        let plans: Vec<CropPlan> = indices
            .iter()
            .map(|&i| {
                let v = self.cache.get(i);
                augment.sample(v.width, v.height, rng)
            })
            .collect();
        self.render(indices, &plans, device)
    }

    fn render<B: Backend>(&self, indices: &[usize], plans: &[CropPlan], device: &B::Device) -> ImageBatch<B> {
        let s = self.size as usize;
        let per_image = 3 * s * s;
        let mut pixels = vec![0f32; indices.len() * per_image];
        pixels.par_chunks_mut(per_image).zip(indices.par_iter().zip(plans)).for_each(|(out, (&i, plan))| {
            render(self.cache.get(i), plan, self.size, &self.norm, out);
        });
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        ImageBatch {
            images: Tensor::from_data(TensorData::new(pixels, [indices.len(), 3, s, s]), device),
            labels: Tensor::from_data(TensorData::new(labels, [indices.len()]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend;
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
        ImageCache::load_or_build(&dir.join("c.u8img"), &samples, side).unwrap().0
    }

    #[test]
    fn eval_batch_has_shape_labels_and_normalised_values() {
        let dir = tempfile::tempdir().unwrap();
        let imgs = (0..3).map(|k| RgbImage::from_pixel(12, 8, Rgb([k * 50, 100, 200]))).collect();
        let cache = cache_of(imgs, 8, dir.path());
        let labels = [0usize, 1, 0];
        let norm = Normalisation { mean: [0.5; 3], std: [0.5; 3] };
        let batcher = Batcher { cache: &cache, labels: &labels, size: 8, norm };
        let device = Default::default();
        let batch: ImageBatch<CpuBackend> = batcher.eval(&[2, 1], &device);
        assert_eq!(batch.images.dims(), [2, 3, 8, 8]);
        assert_eq!(batch.labels.to_data().convert::<i64>().to_vec::<i64>().unwrap(), vec![0, 1]);
        let values = batch.images.to_data().to_vec::<f32>().unwrap();
        // image 2, red = 100 → (100/255 − 0.5) / 0.5; image 1, blue = 200.
        assert!((values[0] - (100.0 / 255.0 - 0.5) / 0.5).abs() < 1e-5);
        let blue_of_1 = values[192 + 2 * 64];
        assert!((blue_of_1 - (200.0 / 255.0 - 0.5) / 0.5).abs() < 1e-5);
    }

    #[test]
    fn train_batches_repeat_with_the_seed() {
        let dir = tempfile::tempdir().unwrap();
        let imgs = (0..4).map(|k| RgbImage::from_fn(20, 16, |x, y| Rgb([x as u8 * 9, y as u8 * 13, k]))).collect();
        let cache = cache_of(imgs, 16, dir.path());
        let labels = [0usize, 1, 0, 1];
        let batcher = Batcher { cache: &cache, labels: &labels, size: 12, norm: Normalisation { mean: [0.0; 3], std: [1.0; 3] } };
        let aug = TrainAugment { scale: [0.8, 1.0], hflip: true, vflip: true };
        let device = Default::default();
        let run = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let b: ImageBatch<CpuBackend> = batcher.train(&[0, 1, 2, 3], &aug, &mut rng, &device);
            b.images.to_data().to_vec::<f32>().unwrap()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
