//! Figure 3: where the model looks, before and after fine-tuning. For each
//! backbone a grid: the natural images of the attention probe (rows) ×
//! {the image, the pre-trained model's last-block CLS→patch attention, the
//! fine-tuned model's, the pre-trained patch-token norms (after the final
//! norm), the fine-tuned ones}. Each map is scaled to its own range,
//! upsampled bilinearly to the image and laid over a grey copy of it in the
//! viridis colour map (dark: low, yellow: high). The fine-tuned model is the
//! backbone's θ* (its run of best accuracy). A raster figure: PNG only.

use crate::study::{Facet, ImageRow, PatchRow, Study};
use crate::style::*;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// At most this many image rows per grid (a page's height).
const MAX_ROWS: usize = 6;
const COLUMNS: [&str; 5] = [
    "image",
    "attention, pre-trained",
    "attention, fine-tuned",
    "patch norm, pre-trained",
    "patch norm, fine-tuned",
];

/// A map over the patch grid, `grid × grid`, row-major.
struct Map {
    grid: usize,
    values: Vec<f64>,
}

struct GridRow {
    image: ImageRow,
    /// Attention and patch norms, pre-trained and fine-tuned.
    maps: [Map; 4],
}

pub struct AttentionGrid {
    /// The facet (data set, method), named in the file and the title when
    /// the study has several.
    facet: Option<Facet>,
    backbone: String,
    seed: u64,
    rows: Vec<GridRow>,
}

fn map(patches: &[&PatchRow], image: u32, get: fn(&PatchRow) -> f64) -> Option<Map> {
    let cells: Vec<&&PatchRow> = patches.iter().filter(|p| p.image == image).collect();
    let grid = cells
        .iter()
        .map(|p| p.row.max(p.column) as usize + 1)
        .max()?;
    let mut values = vec![0.0; grid * grid];
    for p in &cells {
        values[p.row as usize * grid + p.column as usize] = get(p);
    }
    (cells.len() == grid * grid).then_some(Map { grid, values })
}

impl AttentionGrid {
    /// One grid per backbone that has images and both models' maps.
    pub fn prepare_all(study: &Study) -> Result<Vec<AttentionGrid>, String> {
        let (Some(patches), Some(images)) = (&study.attention, &study.images) else {
            return Err(
                "no attention tables (a study made before they existed: run \
                `sim-metrics study` again)"
                    .into(),
            );
        };
        let mut grids = Vec::new();
        for b in study.backbones_with_runs() {
            let Some(seed) = study
                .space
                .iter()
                .find(|p| p.backbone == b)
                .map(|p| p.reference_seed)
            else {
                continue;
            };
            let pre: Vec<&PatchRow> = patches
                .iter()
                .filter(|p| p.backbone == b && p.seed.is_none())
                .collect();
            let post: Vec<&PatchRow> = patches
                .iter()
                .filter(|p| p.backbone == b && p.seed == Some(seed))
                .collect();
            let rows: Vec<GridRow> = images
                .iter()
                .filter(|i| i.backbone == b)
                .take(MAX_ROWS)
                .filter_map(|i| {
                    let maps = [
                        map(&pre, i.image, |p| p.attention)?,
                        map(&post, i.image, |p| p.attention)?,
                        map(&pre, i.image, |p| p.patch_norm)?,
                        map(&post, i.image, |p| p.patch_norm)?,
                    ];
                    Some(GridRow {
                        image: i.clone(),
                        maps,
                    })
                })
                .collect();
            if !rows.is_empty() {
                grids.push(AttentionGrid {
                    facet: None,
                    backbone: b.to_string(),
                    seed,
                    rows,
                });
            }
        }
        if grids.is_empty() {
            return Err(
                "no backbone has attention maps of both its pre-trained and its \
                fine-tuned model (evaluation.attention_images = 0?)"
                    .into(),
            );
        }
        Ok(grids)
    }
}

impl AttentionGrid {
    /// The grid, its file and title naming its facet too.
    pub fn in_facet(self, facet: &Facet) -> AttentionGrid {
        AttentionGrid {
            facet: Some(facet.clone()),
            ..self
        }
    }
}

/// What the report says of the grids.
pub fn caption(grids: &[AttentionGrid]) -> String {
    let parts: Vec<String> = grids
        .iter()
        .map(|g| {
            let shift: f64 = g
                .rows
                .iter()
                .map(|r| centroid_shift(&r.maps[0], &r.maps[1]))
                .sum::<f64>()
                / g.rows.len() as f64;
            format!(
                "{} (θ* = seed {}, {} images): the attention's centre of mass moves \
                {:.2} patch widths on average",
                g.backbone,
                g.seed,
                g.rows.len(),
                shift
            )
        })
        .collect();
    format!(
        "Last-block CLS attention and patch norms, pre-trained vs fine-tuned: {}.",
        parts.join("; ")
    )
}

/// How far the attention's centre of mass moves, in patches.
fn centroid_shift(a: &Map, b: &Map) -> f64 {
    let centre = |m: &Map| {
        let total: f64 = m.values.iter().sum::<f64>().max(1e-12);
        let (mut r, mut c) = (0.0, 0.0);
        for (i, v) in m.values.iter().enumerate() {
            r += (i / m.grid) as f64 * v / total;
            c += (i % m.grid) as f64 * v / total;
        }
        (r, c)
    };
    let ((r0, c0), (r1, c1)) = (centre(a), centre(b));
    ((r0 - r1).powi(2) + (c0 - c1).powi(2)).sqrt()
}

/// The map scaled to [0, 1] and sampled bilinearly at pixel (x, y) of a `side`-pixel square.
fn sample(m: &Map, side: usize, x: usize, y: usize) -> f64 {
    let (lo, hi) = m
        .values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let g = m.grid as f64;
    let coord = |p: usize| ((p as f64 + 0.5) * g / side as f64 - 0.5).clamp(0.0, g - 1.0);
    let (fy, fx) = (coord(y), coord(x));
    let (y0, x0) = (fy.floor() as usize, fx.floor() as usize);
    let (y1, x1) = ((y0 + 1).min(m.grid - 1), (x0 + 1).min(m.grid - 1));
    let (wy, wx) = (fy - y0 as f64, fx - x0 as f64);
    let at = |r: usize, c: usize| (m.values[r * m.grid + c] - lo) / span;
    (at(y0, x0) * (1.0 - wx) + at(y0, x1) * wx) * (1.0 - wy)
        + (at(y1, x0) * (1.0 - wx) + at(y1, x1) * wx) * wy
}

/// The image scaled (nearest) to `side` pixels, greyed and overlaid with `overlay` when given.
fn panel_pixels(image: &ImageRow, side: usize, overlay: Option<&Map>) -> Vec<u8> {
    let s = image.size as usize;
    let mut out = Vec::with_capacity(side * side * 3);
    for y in 0..side {
        for x in 0..side {
            let (sy, sx) = (y * s / side, x * s / side);
            let px = &image.pixels[(sy * s + sx) * 3..(sy * s + sx) * 3 + 3];
            match overlay {
                None => out.extend_from_slice(px),
                Some(m) => {
                    let grey = 0.299 * px[0] as f64 + 0.587 * px[1] as f64 + 0.114 * px[2] as f64;
                    let RGBColor(r, g, b) = ViridisRGB.get_color(sample(m, side, x, y) as f32);
                    out.extend([r, g, b].map(|c| (0.4 * grey + 0.6 * c as f64).round() as u8));
                }
            }
        }
    }
    out
}

impl Figure for AttentionGrid {
    fn name(&self) -> String {
        match &self.facet {
            Some(facet) => format!("fig3_attention_{}_{}", facet.file_tag(), self.backbone),
            None => format!("fig3_attention_{}", self.backbone),
        }
    }

    fn size(&self) -> (u32, u32) {
        inches(FULL_WIDTH, 0.35 + 1.3 * self.rows.len() as f64)
    }

    fn vector(&self) -> bool {
        false
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (header, body) = root.split_vertically(pt(0.35 * 72.0));
        let (title_area, column_titles) = header.split_vertically(pt(12.0));
        let label_width = pt(58.0);
        let on = self
            .facet
            .as_ref()
            .map_or(String::new(), |f| format!(" ({})", f.label()));
        let title = format!(
            "{}: pre-trained vs fine-tuned{on} (θ*, seed {}); each map scaled to its own \
                range, viridis",
            self.backbone, self.seed
        );
        title_area.draw(&Text::new(
            title,
            (pt(3.0) as i32, pt(2.0) as i32),
            font(7.5),
        ))?;
        let (_, header_cells) = column_titles.split_horizontally(label_width);
        for (cell, title) in header_cells
            .split_evenly((1, COLUMNS.len()))
            .iter()
            .zip(COLUMNS)
        {
            let (w, h) = cell.dim_in_pixel();
            cell.draw(&Text::new(
                title,
                ((w / 2) as i32, (h / 2) as i32),
                font(7.5).pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
        }
        for (row_area, row) in body
            .split_evenly((self.rows.len(), 1))
            .iter()
            .zip(&self.rows)
        {
            let (label, cells) = row_area.split_horizontally(label_width);
            let (_, lh) = label.dim_in_pixel();
            // The file name without folders and extension: n03000684_12072.
            let id = row.image.image_id.rsplit('/').next().unwrap_or_default();
            let id = id.rsplit_once('.').map_or(id, |(stem, _)| stem);
            label.draw(&Text::new(
                id.to_string(),
                (pt(2.0) as i32, (lh / 2) as i32),
                font(6.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
            let overlays = [
                None,
                Some(&row.maps[0]),
                Some(&row.maps[1]),
                Some(&row.maps[2]),
                Some(&row.maps[3]),
            ];
            for (cell, overlay) in cells.split_evenly((1, COLUMNS.len())).iter().zip(overlays) {
                let (w, h) = cell.dim_in_pixel();
                let side = (w.min(h) as f64 * 0.94) as usize;
                let pixels = panel_pixels(&row.image, side, overlay);
                let origin = (
                    ((w as usize - side) / 2) as i32,
                    ((h as usize - side) / 2) as i32,
                );
                let element =
                    BitMapElement::with_owned_buffer(origin, (side as u32, side as u32), pixels)
                        .expect("side × side × 3 bytes");
                cell.draw(&element)?;
            }
        }
        Ok(())
    }
}
