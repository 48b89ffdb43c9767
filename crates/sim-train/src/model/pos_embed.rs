//! Position embeddings resized to another patch grid, the way each
//! checkpoint family's reference does it (docs/SPEC.md, "Reference behaviours"):
//!
//! - [`Resize::Bicubic`]: PyTorch `interpolate(size=…, mode="bicubic",
//!   align_corners=False)` without antialias (transformers 5.x ViT and DINOv2):
//!   Keys' cubic with A = −0.75, taps clamped at the border.
//! - [`Resize::BicubicAntialias`]: the same with `antialias=True` (timm's
//!   `resample_abs_pos_embed`, open_clip's `resize_pos_embed`): PyTorch's
//!   separable antialiased filter, cubic with A = −0.5, support widened by the
//!   scale when shrinking, weights normalised.
//! - [`Resize::MetaOffset`]: Meta's DINOv2 code, `scale_factor = (n + 0.1) / m`
//!   without antialias, so the sampling positions follow that scale rather
//!   than m / n.
//!
//! Grids are row-major `h × w × dim`.

pub use sim_study::config::PosResize as Resize;

/// Resizes a `(h, w)` grid of `dim`-vectors to `(new_h, new_w)`.
pub fn resize_grid(
    grid: &[f64],
    (h, w): (usize, usize),
    (new_h, new_w): (usize, usize),
    dim: usize,
    mode: Resize,
) -> Vec<f64> {
    assert_eq!(grid.len(), h * w * dim);
    if (h, w) == (new_h, new_w) {
        return grid.to_vec();
    }
    let rows = weights_1d(h, new_h, mode);
    let cols = weights_1d(w, new_w, mode);
    // Along the width first, then the height (the filter is separable).
    let mut tmp = vec![0.0; h * new_w * dim];
    for y in 0..h {
        for (x, taps) in cols.iter().enumerate() {
            let out = &mut tmp[(y * new_w + x) * dim..][..dim];
            for &(src, wt) in taps {
                let inp = &grid[(y * w + src) * dim..][..dim];
                out.iter_mut().zip(inp).for_each(|(o, i)| *o += wt * i);
            }
        }
    }
    let mut result = vec![0.0; new_h * new_w * dim];
    for (y, taps) in rows.iter().enumerate() {
        for x in 0..new_w {
            let out = &mut result[(y * new_w + x) * dim..][..dim];
            for &(src, wt) in taps {
                let inp = &tmp[(src * new_w + x) * dim..][..dim];
                out.iter_mut().zip(inp).for_each(|(o, i)| *o += wt * i);
            }
        }
    }
    result
}

/// For each output index, the input indices and weights that make it.
fn weights_1d(input: usize, output: usize, mode: Resize) -> Vec<Vec<(usize, f64)>> {
    match mode {
        Resize::Bicubic => keys(input, output, input as f64 / output as f64),
        // interpolate(scale_factor=s) samples at positions scaled by 1/s.
        Resize::MetaOffset => keys(input, output, input as f64 / (output as f64 + 0.1)),
        Resize::BicubicAntialias => antialiased(input, output),
    }
}

/// Keys' cubic convolution, A = −0.75 (PyTorch's non-antialiased bicubic).
fn keys(input: usize, output: usize, scale: f64) -> Vec<Vec<(usize, f64)>> {
    const A: f64 = -0.75;
    (0..output)
        .map(|i| {
            let real = scale * (i as f64 + 0.5) - 0.5;
            let base = real.floor();
            let t = real - base;
            let w = [
                cubic2(t + 1.0, A),
                cubic1(t, A),
                cubic1(1.0 - t, A),
                cubic2(2.0 - t, A),
            ];
            (0..4)
                .map(|k| {
                    let idx = (base as i64 - 1 + k as i64).clamp(0, input as i64 - 1) as usize;
                    (idx, w[k])
                })
                .collect()
        })
        .collect()
}

/// PyTorch's `_upsample_bicubic2d_aa` weights (PIL's filter, A = −0.5).
fn antialiased(input: usize, output: usize) -> Vec<Vec<(usize, f64)>> {
    const A: f64 = -0.5;
    let scale = input as f64 / output as f64;
    let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
    let inv = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    (0..output)
        .map(|i| {
            let center = scale * (i as f64 + 0.5);
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let mut taps: Vec<(usize, f64)> = (lo..hi)
                .map(|j| {
                    let x = ((j as f64 - center + 0.5) * inv).abs();
                    let w = if x < 1.0 {
                        cubic1(x, A)
                    } else if x < 2.0 {
                        cubic2(x, A)
                    } else {
                        0.0
                    };
                    (j, w)
                })
                .collect();
            let total: f64 = taps.iter().map(|t| t.1).sum();
            taps.iter_mut().for_each(|t| t.1 /= total);
            taps
        })
        .collect()
}

fn cubic1(x: f64, a: f64) -> f64 {
    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
}

fn cubic2(x: f64, a: f64) -> f64 {
    ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity_and_constants_stay_constant() {
        let grid: Vec<f64> = (0..2 * 2 * 3).map(|v| v as f64).collect();
        assert_eq!(resize_grid(&grid, (2, 2), (2, 2), 3, Resize::Bicubic), grid);
        let constant = vec![1.5; 4 * 4 * 2];
        for mode in [
            Resize::Bicubic,
            Resize::BicubicAntialias,
            Resize::MetaOffset,
        ] {
            for target in [(2, 2), (6, 6), (3, 5)] {
                let out = resize_grid(&constant, (4, 4), target, 2, mode);
                assert!(
                    out.iter().all(|v| (v - 1.5).abs() < 1e-12),
                    "{mode:?} {target:?}"
                );
            }
        }
    }
}
