//! DINO's photometric augmentations (Caron et al. 2021, after BYOL): colour
//! jitter, random greyscale, Gaussian blur and solarisation. Drawn per view
//! from the seed as the crops are ([`ColourAugment::sample`]), applied to a
//! rendered crop on the 0–255 scale, channel-major, before it is normalised
//! ([`ColourPlan::apply`]). Without them a self-supervised objective can
//! match two views by their colours alone.
//!
//! Each follows torchvision's operation on a float image: brightness
//! scales, contrast blends with the image's mean grey, saturation with each
//! pixel's grey, hue rotates the HSV hue; the four in an order drawn per
//! view. Grey is ITU-R 601 luma (0.299, 0.587, 0.114), as PIL's `L`.

use rand::Rng;
use rand::seq::SliceRandom;

/// DINO's jitter strengths: brightness, contrast, saturation (factors drawn
/// in 1 ± s) and hue (a shift drawn in ± s of a turn).
pub const JITTER: [f32; 4] = [0.4, 0.4, 0.2, 0.1];

/// The probabilities (and blur widths) of one kind of view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColourAugment {
    /// Colour jitter ([`JITTER`]).
    pub jitter: f64,
    pub greyscale: f64,
    pub blur: f64,
    /// The blur's σ range in pixels of this view.
    pub blur_sigma: [f64; 2],
    pub solarize: f64,
}

impl ColourAugment {
    /// No photometric change (fine-tuning, supervised pre-training).
    pub const NONE: ColourAugment = ColourAugment {
        jitter: 0.0,
        greyscale: 0.0,
        blur: 0.0,
        blur_sigma: [0.0, 0.0],
        solarize: 0.0,
    };

    /// Draws one view's operations. Draws nothing for [`ColourAugment::NONE`],
    /// so the crops of a view without colour operations are drawn as before.
    pub fn sample(&self, rng: &mut impl Rng) -> ColourPlan {
        if *self == ColourAugment::NONE {
            return ColourPlan::default();
        }
        let mut plan = ColourPlan::default();
        if rng.random_bool(self.jitter) {
            let mut order = [
                Jitter::Brightness,
                Jitter::Contrast,
                Jitter::Saturation,
                Jitter::Hue,
            ];
            order.shuffle(rng);
            plan.jitter = order
                .into_iter()
                .map(|j| {
                    let s = JITTER[j as usize];
                    let amount = if j == Jitter::Hue {
                        rng.random_range(-s..=s)
                    } else {
                        rng.random_range(1.0 - s..=1.0 + s)
                    };
                    (j, amount)
                })
                .collect();
        }
        plan.greyscale = rng.random_bool(self.greyscale);
        if rng.random_bool(self.blur) {
            plan.blur_sigma =
                Some(rng.random_range(self.blur_sigma[0]..=self.blur_sigma[1]) as f32);
        }
        plan.solarize = rng.random_bool(self.solarize);
        plan
    }
}

/// A jitter operation; its index is its strength's in [`JITTER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    Brightness = 0,
    Contrast = 1,
    Saturation = 2,
    Hue = 3,
}

/// One view's photometric operations, applied in this order: the jitter
/// (its own drawn order), greyscale, blur, solarisation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColourPlan {
    /// Each operation with its factor (hue: its shift in turns).
    pub jitter: Vec<(Jitter, f32)>,
    pub greyscale: bool,
    pub blur_sigma: Option<f32>,
    pub solarize: bool,
}

fn grey(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

impl ColourPlan {
    /// Whether the plan changes nothing.
    pub fn is_identity(&self) -> bool {
        *self == ColourPlan::default()
    }

    /// Applies the plan to `planes`: 3 × n × n values on the 0–255 scale.
    pub fn apply(&self, planes: &mut [f32], n: usize) {
        let px = n * n;
        assert_eq!(planes.len(), 3 * px, "3 × n × n values");
        let clamp = |v: f32| v.clamp(0.0, 255.0);
        for &(op, amount) in &self.jitter {
            match op {
                Jitter::Brightness => planes.iter_mut().for_each(|v| *v = clamp(*v * amount)),
                Jitter::Contrast => {
                    let mean = (0..px)
                        .map(|i| grey(planes[i], planes[px + i], planes[2 * px + i]))
                        .sum::<f32>()
                        / px as f32;
                    planes
                        .iter_mut()
                        .for_each(|v| *v = clamp(amount * *v + (1.0 - amount) * mean));
                }
                Jitter::Saturation => {
                    for i in 0..px {
                        let g = grey(planes[i], planes[px + i], planes[2 * px + i]);
                        for c in 0..3 {
                            planes[c * px + i] =
                                clamp(amount * planes[c * px + i] + (1.0 - amount) * g);
                        }
                    }
                }
                Jitter::Hue => {
                    for i in 0..px {
                        let (h, s, v) = rgb_to_hsv(
                            planes[i] / 255.0,
                            planes[px + i] / 255.0,
                            planes[2 * px + i] / 255.0,
                        );
                        let (r, g, b) = hsv_to_rgb((h + amount).rem_euclid(1.0), s, v);
                        (planes[i], planes[px + i], planes[2 * px + i]) =
                            (r * 255.0, g * 255.0, b * 255.0);
                    }
                }
            }
        }
        if self.greyscale {
            for i in 0..px {
                let g = grey(planes[i], planes[px + i], planes[2 * px + i]);
                (planes[i], planes[px + i], planes[2 * px + i]) = (g, g, g);
            }
        }
        if let Some(sigma) = self.blur_sigma {
            for plane in planes.chunks_exact_mut(px) {
                blur(plane, n, sigma);
            }
        }
        if self.solarize {
            // PIL's ImageOps.solarize(threshold = 128).
            planes.iter_mut().for_each(|v| {
                if *v >= 128.0 {
                    *v = 255.0 - *v;
                }
            });
        }
    }
}

/// A separable Gaussian blur of one n × n plane, radius ⌈3σ⌉, edges
/// repeated.
fn blur(plane: &mut [f32], n: usize, sigma: f32) {
    let radius = (3.0 * sigma).ceil() as isize;
    if radius == 0 {
        return;
    }
    let weights: Vec<f32> = (-radius..=radius)
        .map(|d| (-(d * d) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    let at = |i: isize| i.clamp(0, n as isize - 1) as usize;
    let pass = |plane: &mut [f32], index: &dyn Fn(usize, usize) -> usize| {
        let copy = plane.to_vec();
        for line in 0..n {
            for i in 0..n {
                let sum: f32 = weights
                    .iter()
                    .enumerate()
                    .map(|(k, w)| w * copy[index(line, at(i as isize + k as isize - radius))])
                    .sum();
                plane[index(line, i)] = sum / total;
            }
        }
    };
    pass(plane, &|row, col| row * n + col);
    pass(plane, &|col, row| row * n + col);
}

/// RGB in [0, 1] to hue (turns), saturation, value.
fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let h = if delta == 0.0 {
        0.0
    } else if max == r {
        ((g - b) / delta).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / delta + 2.0) / 6.0
    } else {
        ((r - g) / delta + 4.0) / 6.0
    };
    (h, if max == 0.0 { 0.0 } else { delta / max }, max)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let sector = h * 6.0;
    let f = sector - sector.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match sector.floor() as i32 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A 2 × 2 image: red, green, blue and a grey of 100, channel-major.
    fn image() -> Vec<f32> {
        vec![
            255.0, 0.0, 0.0, 100.0, 0.0, 255.0, 0.0, 100.0, 0.0, 0.0, 255.0, 100.0,
        ]
    }

    fn applied(plan: ColourPlan) -> Vec<f32> {
        let mut v = image();
        plan.apply(&mut v, 2);
        v
    }

    #[test]
    fn each_operation_does_what_torchvision_does() {
        let one = |op, amount| ColourPlan {
            jitter: vec![(op, amount)],
            ..ColourPlan::default()
        };
        // Brightness scales and clips.
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-3);
        let bright = applied(one(Jitter::Brightness, 1.2));
        assert!(
            close(
                &bright,
                &[
                    255.0, 0.0, 0.0, 120.0, 0.0, 255.0, 0.0, 120.0, 0.0, 0.0, 255.0, 120.0
                ]
            ),
            "{bright:?}"
        );
        // Contrast 0: every pixel the mean grey.
        let mean =
            (grey(255.0, 0.0, 0.0) + grey(0.0, 255.0, 0.0) + grey(0.0, 0.0, 255.0) + 100.0) / 4.0;
        assert!(
            applied(one(Jitter::Contrast, 0.0))
                .iter()
                .all(|v| (v - mean).abs() < 1e-4)
        );
        // Saturation 0 and greyscale: each pixel its own grey; a grey pixel stays.
        let grey_plan = applied(ColourPlan {
            greyscale: true,
            ..ColourPlan::default()
        });
        assert_eq!(applied(one(Jitter::Saturation, 0.0)), grey_plan);
        assert!(
            (grey_plan[0] - 0.299 * 255.0).abs() < 1e-3
                && grey_plan[3] == 100.0
                && grey_plan[7] == 100.0
        );
        // A hue shift of a third of a turn: red to green, green to blue; grey stays.
        let hue = applied(one(Jitter::Hue, 1.0 / 3.0));
        assert!(
            close(
                &hue,
                &[
                    0.0, 0.0, 255.0, 100.0, 255.0, 0.0, 0.0, 100.0, 0.0, 255.0, 0.0, 100.0
                ]
            ),
            "{hue:?}"
        );
        // Solarisation inverts from 128 up.
        let solar = applied(ColourPlan {
            solarize: true,
            ..ColourPlan::default()
        });
        assert_eq!(
            solar,
            [
                0.0, 0.0, 0.0, 100.0, 0.0, 0.0, 0.0, 100.0, 0.0, 0.0, 0.0, 100.0
            ]
        );
    }

    #[test]
    fn blur_keeps_a_flat_plane_and_spreads_a_dot_without_losing_it() {
        let mut flat = vec![7.0; 16];
        blur(&mut flat, 4, 1.0);
        assert!(flat.iter().all(|v| (v - 7.0).abs() < 1e-5));
        // A single bright pixel spreads to its neighbours, symmetric.
        let mut dot = vec![0.0; 81];
        dot[40] = 100.0;
        blur(&mut dot, 9, 0.8);
        assert!(
            dot[40] < 100.0
                && dot[39] > 0.0
                && (dot[39] - dot[41]).abs() < 1e-4
                && (dot[31] - dot[49]).abs() < 1e-4
        );
        assert!(
            (dot.iter().sum::<f32>() - 100.0).abs() < 1e-2,
            "no mass lost away from the edges"
        );
    }

    #[test]
    fn plans_repeat_with_the_seed_and_none_draws_nothing() {
        let dino = ColourAugment {
            jitter: 0.8,
            greyscale: 0.2,
            blur: 0.5,
            blur_sigma: [0.1, 2.0],
            solarize: 0.2,
        };
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..50).map(|_| dino.sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        let plans = draw(3);
        let share = |f: fn(&ColourPlan) -> bool| plans.iter().filter(|p| f(p)).count();
        assert!(
            (30..=48).contains(&share(|p| !p.jitter.is_empty())),
            "jitter at 0.8"
        );
        assert!(share(|p| p.blur_sigma.is_some()) > 10 && share(|p| p.greyscale) < 25);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let before = rng.clone().random::<u64>();
        assert!(ColourAugment::NONE.sample(&mut rng).is_identity());
        assert_eq!(rng.random::<u64>(), before, "NONE draws nothing");
    }
}
