//! Where in the network the representation changes. `layers_cka`: CKA to
//! the pre-trained model per layer at each finished run's final epoch (layer
//! 0 the embedding, the last the final norm), mean ± sd over runs, one colour
//! per backbone, CLS token solid and patch mean dashed. `layers_epochs_cka`:
//! a layer × epoch heat map of the mean CLS CKA, one panel per backbone, on
//! one colour scale, shared by every facet (viridis, from the lowest cell rounded down to a tenth,
//! to 1). Medical test set. The embedding layer's CLS token is the same for
//! every image, so it has no CKA and no cell. Under another measure
//! (`sim-plot --measure`) both draw its values on the CLS token, the colour
//! scale running from the least similar cell to the measure's value against
//! itself.

use super::{Captioned, mean_std, no_finished_run, stem};
use crate::scale::Scale;
use crate::study::{LayerRow, Study};
use crate::style::*;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
use sim_study::eval_file::Token;

/// (layer, mean, std) per layer.
type Profile = Vec<(f64, f64, f64)>;

pub struct LayerCurves {
    backbones: Vec<String>,
    /// Per backbone with runs: name, runs, CLS profile, patch-mean profile.
    curves: Vec<(String, usize, Profile, Profile)>,
    scale: Scale,
}

/// The rows of a backbone's finished runs at their final epochs.
fn final_rows<'a>(study: &'a Study, backbone: &str) -> Vec<&'a LayerRow> {
    let last: Vec<(u64, u32)> = study
        .final_epochs(backbone)
        .iter()
        .map(|r| (r.seed, r.epoch))
        .collect();
    study
        .layers
        .iter()
        .filter(|l| l.backbone == backbone && last.contains(&(l.seed, l.epoch)))
        .collect()
}

fn profile(rows: &[&LayerRow], cls: bool) -> Profile {
    let mut layers: Vec<u32> = rows
        .iter()
        .filter(|r| (r.token == Token::Cls.name()) == cls)
        .map(|r| r.layer)
        .collect();
    layers.sort_unstable();
    layers.dedup();
    layers
        .into_iter()
        .map(|l| {
            let v: Vec<f64> = rows
                .iter()
                .filter(|r| (r.token == Token::Cls.name()) == cls && r.layer == l)
                .map(|r| r.cka)
                .collect();
            let (m, s) = mean_std(&v);
            (l as f64, m, s)
        })
        .collect()
}

impl LayerCurves {
    pub fn prepare(study: &Study) -> Result<LayerCurves, String> {
        let curves: Vec<_> = study
            .backbones_with_runs()
            .into_iter()
            .map(|b| {
                let rows = final_rows(study, b);
                (
                    b.to_string(),
                    study.final_epochs(b).len(),
                    profile(&rows, true),
                    profile(&rows, false),
                )
            })
            .filter(|c| !c.2.is_empty() || !c.3.is_empty())
            .collect();
        if curves.is_empty() {
            return Err(no_finished_run());
        }
        Ok(LayerCurves {
            backbones: study.backbones.clone(),
            curves,
            scale: Scale::of(study.measure),
        })
    }
}

impl Captioned for LayerCurves {
    fn caption(&self) -> String {
        let parts: Vec<String> = self
            .curves
            .iter()
            .filter_map(|(b, _, cls, _)| {
                let by_value = |x: &&(f64, f64, f64), y: &&(f64, f64, f64)| x.1.total_cmp(&y.1);
                let (least, which) = if self.scale.higher_is_similar() {
                    (cls.iter().min_by(by_value)?, "lowest")
                } else {
                    (cls.iter().max_by(by_value)?, "highest")
                };
                let first = cls.first()?;
                Some(format!(
                    "{b}: from {:.2} at layer {} to {:.2} at layer {} ({which})",
                    first.1, first.0, least.1, least.0
                ))
            })
            .collect();
        format!(
            "CLS {} to the pre-trained model per layer after fine-tuning: {}.",
            self.scale.short,
            parts.join("; ")
        )
    }
}

impl Figure for LayerCurves {
    fn name(&self) -> String {
        stem("layers_cka", &self.scale)
    }

    fn size(&self) -> (u32, u32) {
        inches(SINGLE_COLUMN, 2.6)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let last = self
            .curves
            .iter()
            .flat_map(|c| c.2.iter().chain(&c.3).map(|p| p.0))
            .fold(1.0f64, f64::max);
        let spread = || self.curves.iter().flat_map(|c| c.2.iter().chain(&c.3));
        let low = spread().map(|p| p.1 - p.2).fold(1.0f64, f64::min);
        let high = spread().map(|p| p.1 + p.2).fold(0.0f64, f64::max);
        // From just below the least similar band to just past the value
        // against itself.
        let range = &self.scale.range;
        let y = if self.scale.higher_is_similar() {
            (low - 0.05).clamp(range.start - 0.05, 0.9)..1.03
        } else {
            -0.03..(high + 0.05).clamp(0.1, range.end + 0.05)
        };
        let mut entries = Vec::new();
        for (name, runs, cls, patch) in &self.curves {
            let color = backbone_color(&self.backbones, name);
            if !cls.is_empty() {
                entries.push((
                    Mark::Line(color, false),
                    format!("{name}, CLS ({runs} runs)"),
                ));
            }
            if !patch.is_empty() {
                entries.push((Mark::Line(color, true), format!("{name}, patch mean")));
            }
        }
        let area = with_legend(root, &entries)?;
        let mut chart = chart(&area, "", -0.3..last + 0.3, y)?;
        axes(
            &mut chart,
            "layer (0 = embedding; last = final norm)",
            &format!("{} to pre-trained (final epoch)", self.scale.short),
            Ticks::Integers(last as usize + 1),
        )?;
        for (name, _, cls, patch) in &self.curves {
            let color = backbone_color(&self.backbones, name);
            for (profile, dashed) in [(cls, false), (patch, true)] {
                if profile.is_empty() {
                    continue;
                }
                let band: Vec<(f64, f64)> = profile
                    .iter()
                    .map(|p| (p.0, p.1 + p.2))
                    .chain(profile.iter().rev().map(|p| (p.0, p.1 - p.2)))
                    .collect();
                chart.draw_series([Polygon::new(band, color.mix(0.12).filled())])?;
                let line = profile.iter().map(|p| (p.0, p.1));
                let style = color.stroke_width(pt(1.1));
                if dashed {
                    chart.draw_series(DashedLineSeries::new(line, pt(3.0), pt(2.0), style))?;
                } else {
                    chart.draw_series(LineSeries::new(line, style).point_size(pt(1.3)))?;
                }
            }
        }
        Ok(())
    }
}

/// A backbone's map: its name and (epoch, layer, mean CLS similarity) cells.
type Panel = (String, Vec<(u32, u32, f64)>);

pub struct LayerEpochMap {
    /// One per backbone with runs.
    panels: Vec<Panel>,
    /// The colour scale's far end: the least similar mean, rounded away
    /// from the value against itself to a tenth.
    far: f64,
    scale: Scale,
}

/// The colour scale's far end of `panels` (CKA: the lowest mean rounded
/// down to 0.1; a distance: the highest rounded up).
fn scale_far(panels: &[Panel], scale: &Scale) -> f64 {
    let cells = || panels.iter().flat_map(|p| p.1.iter().map(|c| c.2));
    let (start, end) = (scale.range.start, scale.range.end);
    if scale.higher_is_similar() {
        let lowest = cells().fold(1.0f64, f64::min);
        ((lowest * 10.0).floor() / 10.0).clamp(start.max(-1.0), 0.9)
    } else {
        let highest = cells().fold(0.0f64, f64::max);
        ((highest * 10.0).ceil() / 10.0).clamp(0.1, end)
    }
}

impl LayerEpochMap {
    /// The maps of `study`'s rows, on a colour scale that spans every facet
    /// of `whole` (so facets share one scale).
    pub fn prepare(study: &Study, whole: &Study) -> Result<LayerEpochMap, String> {
        let panels = Self::panels(study)?;
        let scale = Scale::of(study.measure);
        let far = whole
            .facets()
            .iter()
            .filter_map(|f| Self::panels(&whole.facet(f)).ok())
            .map(|p| scale_far(&p, &scale))
            .fold(scale_far(&panels, &scale), |a, b| scale.least_similar(a, b));
        Ok(LayerEpochMap { panels, far, scale })
    }

    fn panels(study: &Study) -> Result<Vec<Panel>, String> {
        let mut panels = Vec::new();
        for b in study.backbones_with_runs() {
            let finished: Vec<u64> = study.final_epochs(b).iter().map(|r| r.seed).collect();
            let rows: Vec<&LayerRow> = study
                .layers
                .iter()
                .filter(|l| {
                    l.backbone == b && l.token == Token::Cls.name() && finished.contains(&l.seed)
                })
                .collect();
            let mut keys: Vec<(u32, u32)> = rows.iter().map(|r| (r.epoch, r.layer)).collect();
            keys.sort_unstable();
            keys.dedup();
            let cells = keys
                .into_iter()
                .map(|(e, l)| {
                    let v: Vec<f64> = rows
                        .iter()
                        .filter(|r| r.epoch == e && r.layer == l)
                        .map(|r| r.cka)
                        .collect();
                    (e, l, mean_std(&v).0)
                })
                .collect();
            panels.push((b.to_string(), cells));
        }
        if panels.is_empty() {
            return Err(no_finished_run());
        }
        Ok(panels)
    }
}

impl Captioned for LayerEpochMap {
    fn caption(&self) -> String {
        let parts: Vec<String> = self
            .panels
            .iter()
            .filter_map(|(b, cells)| {
                let last = cells.iter().map(|c| c.0).max()?;
                let at_last = cells.iter().filter(|c| c.0 == last);
                let (least, which) = if self.scale.higher_is_similar() {
                    (at_last.min_by(|x, y| x.2.total_cmp(&y.2))?, "lowest")
                } else {
                    (at_last.max_by(|x, y| x.2.total_cmp(&y.2))?, "highest")
                };
                Some(format!(
                    "{b}: {which} {:.2} at layer {} by epoch {last}",
                    least.2, least.1
                ))
            })
            .collect();
        format!(
            "Mean CLS {} per layer and epoch: {}.",
            self.scale.short,
            parts.join("; ")
        )
    }
}

impl Figure for LayerEpochMap {
    fn name(&self) -> String {
        stem("layers_epochs_cka", &self.scale)
    }

    fn size(&self) -> (u32, u32) {
        panels_size(self.panels.len(), 2.6)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (maps, scale) = root.split_horizontally(root.dim_in_pixel().0 - pt(56.0));
        let areas = maps.split_evenly(panel_grid(self.panels.len()));
        // Yellow at the value against itself, dark at the far end.
        let (far, same) = (self.far, self.scale.identical);
        let colour =
            |v: f64| ViridisRGB.get_color(((v - far) / (same - far)).clamp(0.0, 1.0) as f32);
        for (area, (name, cells)) in areas.iter().zip(&self.panels) {
            let epochs = cells.iter().map(|c| c.0).max().unwrap_or(0) as f64;
            let layers = cells.iter().map(|c| c.1).max().unwrap_or(0) as f64;
            let first = cells.iter().map(|c| c.1).min().unwrap_or(0) as f64;
            let mut chart = chart(area, name, -0.5..epochs + 0.5, first - 0.5..layers + 0.5)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .label_style(font(7.0))
                .axis_desc_style(font(8.0))
                .x_desc("epoch")
                .y_desc("layer (last = final norm)")
                .x_labels(epochs as usize + 1)
                .y_labels(layers as usize + 1)
                .x_label_formatter(&|v| {
                    if (v - v.round()).abs() < 1e-9 {
                        format!("{}", v.round())
                    } else {
                        String::new()
                    }
                })
                .y_label_formatter(&|v| {
                    if (v - v.round()).abs() < 1e-9 {
                        format!("{}", v.round())
                    } else {
                        String::new()
                    }
                })
                .draw()?;
            chart.draw_series(cells.iter().map(|&(e, l, v)| {
                let (e, l) = (e as f64, l as f64);
                Rectangle::new([(e - 0.5, l - 0.5), (e + 0.5, l + 0.5)], colour(v).filled())
            }))?;
        }
        // The colour scale, from the far end to the value against itself.
        let (low, high) = (far.min(same), far.max(same));
        let mut bar = ChartBuilder::on(&scale);
        bar.margin_top(pt(18.0))
            .margin_bottom(pt(30.0))
            .margin_right(pt(8.0))
            .y_label_area_size(pt(30.0));
        let mut bar = bar.build_cartesian_2d(0.0..1.0, low..high)?;
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .label_style(font(7.0))
            .y_labels(6)
            .y_label_formatter(&|v| trim(*v))
            .y_desc(self.scale.short)
            .axis_desc_style(font(7.0))
            .draw()?;
        let step = (high - low) / 100.0;
        bar.draw_series((0..100).map(|i| {
            let v = low + i as f64 * step;
            Rectangle::new([(0.0, v), (1.0, v + step)], colour(v + step / 2.0).filled())
        }))?;
        Ok(())
    }
}
