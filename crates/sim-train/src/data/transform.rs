//! From a cached image to a normalised `3 × size × size` f32 patch.
//!
//! Evaluation (docs/SPEC.md): resize the shorter side to size / crop_ratio — done once
//! by the image cache — then centre-crop `size`. Training: RandomResizedCrop
//! (torchvision's sampling: area in `scale`, log-uniform aspect in 3/4..4/3,
//! ten tries then a centre fallback) resized bilinearly to `size`, then random
//! horizontal and vertical flips, then (DINO's views) photometric operations
//! (`super::colour`). Both end in (x / 255 − mean) / std.

use super::colour::{ColourAugment, ColourPlan};
use super::image_cache::ImageView;
use rand::Rng;

/// Per-channel mean and standard deviation on the 0..1 scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// A crop of the source image and how it lands in the output.
#[derive(Debug, Clone, PartialEq)]
pub struct CropPlan {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
    pub hflip: bool,
    pub vflip: bool,
    /// What the view's colours go through.
    pub colour: ColourPlan,
}

/// The shorter side the image cache must hold for an input size and crop
/// ratio (224 / 0.875 = 256, as DINO's eval_knn).
pub fn cache_side(size: u32, crop_ratio: f64) -> u32 {
    (size as f64 / crop_ratio + 1e-9).floor() as u32
}

/// Centre crop of `size` (torchvision's CenterCrop offsets).
pub fn centre_crop(width: u32, height: u32, size: u32) -> CropPlan {
    let offset = |full: u32| {
        ((full as f64 - size as f64) / 2.0)
            .round_ties_even()
            .max(0.0)
    };
    CropPlan {
        left: offset(width),
        top: offset(height),
        width: size as f64,
        height: size as f64,
        hflip: false,
        vflip: false,
        colour: ColourPlan::default(),
    }
}

/// Training augmentation parameters (from the study's `[training]`, or a
/// pre-training's views).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainAugment {
    pub scale: [f64; 2],
    pub hflip: bool,
    pub vflip: bool,
    /// Photometric operations after the crop ([`ColourAugment::NONE`] but
    /// for DINO's views).
    pub colour: ColourAugment,
}

impl TrainAugment {
    /// Draws one RandomResizedCrop + flips (+ colour operations) for an
    /// image of `width × height`.
    pub fn sample(&self, width: u32, height: u32, rng: &mut impl Rng) -> CropPlan {
        let (w, h) = (width as f64, height as f64);
        let area = w * h;
        let (log_lo, log_hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
        let mut crop = None;
        for _ in 0..10 {
            let target = area * rng.random_range(self.scale[0]..=self.scale[1]);
            let aspect = rng.random_range(log_lo..=log_hi).exp();
            let cw = (target * aspect).sqrt().round();
            let ch = (target / aspect).sqrt().round();
            if cw > 0.0 && ch > 0.0 && cw <= w && ch <= h {
                let top = rng.random_range(0..=(h - ch) as u32) as f64;
                let left = rng.random_range(0..=(w - cw) as u32) as f64;
                crop = Some((left, top, cw, ch));
                break;
            }
        }
        let (left, top, cw, ch) = crop.unwrap_or_else(|| {
            // torchvision's fallback: the whole image, aspect clamped to the range.
            let ratio = w / h;
            let (cw, ch) = if ratio < 3.0 / 4.0 {
                (w, (w / (3.0 / 4.0)).round())
            } else if ratio > 4.0 / 3.0 {
                ((h * 4.0 / 3.0).round(), h)
            } else {
                (w, h)
            };
            (((w - cw) / 2.0).floor(), ((h - ch) / 2.0).floor(), cw, ch)
        });
        let hflip = self.hflip && rng.random_bool(0.5);
        let vflip = self.vflip && rng.random_bool(0.5);
        CropPlan {
            left,
            top,
            width: cw,
            height: ch,
            hflip,
            vflip,
            colour: self.colour.sample(rng),
        }
    }
}

/// Writes the crop, resized to `size × size` (bilinear, half-pixel centres, so
/// a crop of exactly `size` copies pixels unchanged), flipped as planned,
/// changed by its colour plan and normalised, into `out` as channel-major
/// `3 × size × size`.
pub fn render(
    img: ImageView<'_>,
    plan: &CropPlan,
    size: u32,
    norm: &Normalisation,
    out: &mut [f32],
) {
    let n = size as usize;
    assert_eq!(out.len(), 3 * n * n, "output buffer is 3 × size × size");
    let (w, h) = (img.width as usize, img.height as usize);
    let (sx, sy) = (plan.width / size as f64, plan.height / size as f64);
    // Source coordinate and the two taps with weights, for each output column / row.
    let taps = |count: usize,
                scale: f64,
                start: f64,
                limit: usize,
                flip: bool|
     -> Vec<(usize, usize, f32)> {
        (0..count)
            .map(|i| {
                let i = if flip { count - 1 - i } else { i };
                let src = (start + (i as f64 + 0.5) * scale - 0.5).clamp(0.0, (limit - 1) as f64);
                let lo = src.floor() as usize;
                let hi = (lo + 1).min(limit - 1);
                (lo, hi, (src - lo as f64) as f32)
            })
            .collect()
    };
    let xs = taps(n, sx, plan.left, w, plan.hflip);
    let ys = taps(n, sy, plan.top, h, plan.vflip);
    let px = |x: usize, y: usize, c: usize| img.pixels[(y * w + x) * 3 + c] as f32;
    for (oy, &(y0, y1, fy)) in ys.iter().enumerate() {
        for (ox, &(x0, x1, fx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let top = px(x0, y0, c) * (1.0 - fx) + px(x1, y0, c) * fx;
                let bottom = px(x0, y1, c) * (1.0 - fx) + px(x1, y1, c) * fx;
                out[c * n * n + oy * n + ox] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
    if !plan.colour.is_identity() {
        plan.colour.apply(out, n);
    }
    for (c, plane) in out.chunks_exact_mut(n * n).enumerate() {
        let (scale, shift) = (1.0 / (255.0 * norm.std[c]), norm.mean[c] / norm.std[c]);
        plane.iter_mut().for_each(|v| *v = *v * scale - shift);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const IDENTITY: Normalisation = Normalisation {
        mean: [0.0; 3],
        std: [1.0 / 255.0; 3],
    };

    fn ramp(w: u32, h: u32) -> Vec<u8> {
        (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| [x as u8, y as u8, (x + y) as u8]))
            .collect()
    }

    #[test]
    fn cache_side_follows_the_crop_ratio() {
        assert_eq!(cache_side(224, 0.875), 256);
        assert_eq!(cache_side(224, 1.0), 224);
        assert_eq!(cache_side(32, 0.875), 36);
    }

    #[test]
    fn centre_crop_of_the_right_size_copies_pixels() {
        let pixels = ramp(10, 6);
        let img = ImageView {
            width: 10,
            height: 6,
            pixels: &pixels,
        };
        let plan = centre_crop(10, 6, 4);
        assert_eq!((plan.left, plan.top), (3.0, 1.0));
        let mut out = vec![0.0; 3 * 16];
        render(img, &plan, 4, &IDENTITY, &mut out);
        // red = x, green = y: row 0 of the crop is y = 1, columns x = 3..7.
        assert_eq!(&out[0..4], &[3.0, 4.0, 5.0, 6.0]);
        assert_eq!(&out[16..20], &[1.0, 1.0, 1.0, 1.0]);
        assert_eq!(out[32 + 15], (6 + 4) as f32);
    }

    #[test]
    fn normalisation_is_applied_per_channel() {
        let pixels = vec![255u8, 0, 51, 255, 0, 51, 255, 0, 51, 255, 0, 51];
        let img = ImageView {
            width: 2,
            height: 2,
            pixels: &pixels,
        };
        let norm = Normalisation {
            mean: [0.5, 0.5, 0.2],
            std: [0.25, 0.5, 0.1],
        };
        let mut out = vec![0.0; 12];
        render(img, &centre_crop(2, 2, 2), 2, &norm, &mut out);
        for (c, want) in [(0, 2.0), (1, -1.0), (2, 0.0)] {
            for v in &out[c * 4..c * 4 + 4] {
                assert!((v - want).abs() < 1e-5, "channel {c}: {v} vs {want}");
            }
        }
    }

    #[test]
    fn flips_mirror_the_output() {
        let pixels = ramp(4, 4);
        let img = ImageView {
            width: 4,
            height: 4,
            pixels: &pixels,
        };
        let mut plain = vec![0.0; 48];
        let mut flipped = vec![0.0; 48];
        let plan = centre_crop(4, 4, 4);
        render(img, &plan, 4, &IDENTITY, &mut plain);
        render(
            img,
            &CropPlan {
                hflip: true,
                vflip: true,
                ..plan.clone()
            },
            4,
            &IDENTITY,
            &mut flipped,
        );
        for c in 0..3 {
            for y in 0..4 {
                for x in 0..4 {
                    assert_eq!(
                        flipped[c * 16 + y * 4 + x],
                        plain[c * 16 + (3 - y) * 4 + (3 - x)]
                    );
                }
            }
        }
    }

    #[test]
    fn random_resized_crop_stays_inside_and_in_scale() {
        let aug = TrainAugment {
            scale: [0.8, 1.0],
            hflip: true,
            vflip: true,
            colour: ColourAugment::NONE,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut flips = 0;
        for _ in 0..500 {
            let p = aug.sample(85, 64, &mut rng);
            assert!(
                p.left >= 0.0
                    && p.top >= 0.0
                    && p.left + p.width <= 85.0
                    && p.top + p.height <= 64.0,
                "{p:?}"
            );
            let area = p.width * p.height / (85.0 * 64.0);
            assert!((0.75..=1.0).contains(&area), "{area}");
            flips += p.hflip as u32;
        }
        assert!(
            (200..300).contains(&flips),
            "hflip about half the time: {flips}"
        );
        let mut a = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut b = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        assert_eq!(aug.sample(85, 64, &mut a), aug.sample(85, 64, &mut b));
    }
}
