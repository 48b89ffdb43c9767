//! Figure 5: similarity against calibration. Every (finished run, fine-tuned
//! epoch, layer) point — medical test set, CLS token, CKA to the pre-trained
//! model — against that epoch's ECE; the points grouped to the nearest of K
//! evenly spaced similarity levels (`evaluation.fit_levels`) and the mean ECE
//! per level; the least-squares line through the level means (the
//! fine-tuned epochs' fit of `fits.parquet`), with r and R² in the panel's
//! title and the slope's 95 % interval in the caption. Epoch 0 (similarity 1
//! at every layer by definition, its ECE that of a linear probe's head) is
//! drawn apart, as crosses, and left out of the levels and the line; the
//! caption gives the fit with it added. One panel per backbone. Under
//! another measure than CKA (`sim-plot --measure`), whose fits
//! `fits.parquet` does not hold, the line is the same discretised fit made
//! here on that measure's points.

use super::{Captioned, no_finished_run, stem};
use crate::scale::Scale;
use crate::study::{FitRow, Study};
use crate::style::*;
use plotters::coord::Shift;
use plotters::prelude::*;
use sim_metrics::fit::{LevelFit, level_fit};
use sim_study::config::Measure;
use sim_study::eval_file::Token;
use sim_study::tables::col;

struct Panel {
    backbone: String,
    /// (similarity, ECE) per (run, fine-tuned epoch, layer).
    points: Vec<(f64, f64)>,
    /// (similarity, ECE) per (run, layer) at epoch 0.
    epoch0: Vec<(f64, f64)>,
    /// (level, mean ECE, points at the level) of `points`, or why there are none.
    levels: Result<Vec<(f64, f64, usize)>, String>,
    /// The fit over `points`.
    fit: Option<FitRow>,
    /// The fit with epoch 0 added.
    with_epoch0: Option<FitRow>,
}

pub struct CkaEce {
    backbones: Vec<String>,
    panels: Vec<Panel>,
    scale: Scale,
}

/// The fit of ECE on `points` as a row of `fits.parquet` (for a measure
/// whose fits the table does not hold).
fn fit_row(points: &[(f64, f64)], levels: usize) -> FitRow {
    let (sim, ece): (Vec<f64>, Vec<f64>) = points.iter().copied().unzip();
    let fit = level_fit(&sim, &ece, levels);
    let f = fit.as_ref().ok();
    let get = |v: fn(&LevelFit) -> f64| f.map(v);
    FitRow {
        dataset: String::new(),
        method: String::new(),
        backbone: String::new(),
        metric: col::ECE.to_owned(),
        points: String::new(),
        slope: get(|f| f.slope),
        intercept: get(|f| f.intercept),
        r: get(|f| f.r),
        r2: get(|f| f.r2),
        slope_ci_low: get(|f| f.slope_ci_low),
        slope_ci_high: get(|f| f.slope_ci_high),
        pearson_raw: None,
        spearman_raw: None,
        n_points: points.len() as u32,
        n_levels: f.map_or(0, |f| f.levels.len() as u32),
        status: fit.err().map_or("ok".to_owned(), |e| e.to_string()),
    }
}

impl CkaEce {
    pub fn prepare(study: &Study) -> Result<CkaEce, String> {
        let mut panels = Vec::new();
        for b in study.backbones_with_runs() {
            let finished: Vec<u64> = study.final_epochs(b).iter().map(|r| r.seed).collect();
            let (epoch0, points): (Vec<_>, Vec<_>) = study
                .layers
                .iter()
                .filter(|l| {
                    l.backbone == b && l.token == Token::Cls.name() && finished.contains(&l.seed)
                })
                .filter_map(|l| {
                    let e = study
                        .epochs
                        .iter()
                        .find(|e| e.backbone == b && e.seed == l.seed && e.epoch == l.epoch)?;
                    Some((l.epoch, l.cka, e.scores.ece))
                })
                .partition(|p| p.0 == 0);
            let xy =
                |v: Vec<(u32, f64, f64)>| v.into_iter().map(|p| (p.1, p.2)).collect::<Vec<_>>();
            let (epoch0, points) = (xy(epoch0), xy(points));
            let (sim, ece): (Vec<f64>, Vec<f64>) = points.iter().copied().unzip();
            let k = study.config.evaluation.fit_levels;
            let levels = level_fit(&sim, &ece, k)
                .map(|f| {
                    f.levels
                        .iter()
                        .map(|l| (l.similarity, l.mean, l.count))
                        .collect()
                })
                .map_err(|e| e.to_string());
            let fit_of = |points: &str| {
                study
                    .fits
                    .iter()
                    .find(|f| f.backbone == b && f.metric == col::ECE && f.points == points)
                    .cloned()
            };
            let (fit, with_epoch0) = if study.measure == Measure::Cka {
                (
                    fit_of(col::POINTS_FINE_TUNED),
                    fit_of(col::POINTS_WITH_EPOCH0),
                )
            } else {
                let all: Vec<_> = points.iter().chain(&epoch0).copied().collect();
                (Some(fit_row(&points, k)), Some(fit_row(&all, k)))
            };
            panels.push(Panel {
                backbone: b.to_string(),
                points,
                epoch0,
                levels,
                fit,
                with_epoch0,
            });
        }
        if panels.is_empty() {
            return Err(no_finished_run());
        }
        Ok(CkaEce {
            backbones: study.backbones.clone(),
            panels,
            scale: Scale::of(study.measure),
        })
    }
}

/// "r = −0.82, R² = 0.67, slope 95 % CI [−0.91, −0.42]", or why there is no fit.
fn describe_fit(fit: Option<&FitRow>) -> String {
    let Some(f) = fit else {
        return "no fit in fits.parquet".to_string();
    };
    match (f.r, f.r2, f.slope, f.slope_ci()) {
        (Some(r), Some(r2), Some(slope), Some((lo, hi))) => {
            format!("slope {slope:.3}, 95 % CI [{lo:.3}, {hi:.3}], r = {r:.2}, R² = {r2:.2}")
        }
        _ => format!("no fit: {}", f.status),
    }
}

impl Captioned for CkaEce {
    fn caption(&self) -> String {
        let parts: Vec<String> = self
            .panels
            .iter()
            .map(|p| {
                format!(
                    "{} ({} points): ECE on {} {}; with epoch 0's {} points added, {}",
                    p.backbone,
                    p.points.len(),
                    self.scale.short,
                    describe_fit(p.fit.as_ref()),
                    p.epoch0.len(),
                    describe_fit(p.with_epoch0.as_ref())
                )
            })
            .collect();
        format!(
            "Similarity against ECE, per (run, fine-tuned epoch, layer); crosses: epoch 0 \
                (similarity {} by definition, \
             scored by a linear probe's head), not in the fit: {}.",
            self.scale.identical,
            parts.join("; ")
        )
    }
}

impl Figure for CkaEce {
    fn name(&self) -> String {
        stem("fig5_cka_ece", &self.scale)
    }

    fn size(&self) -> (u32, u32) {
        panels_size(self.panels.len(), 2.7)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let areas = root.split_evenly(panel_grid(self.panels.len()));
        for (area, p) in areas.iter().zip(&self.panels) {
            let color = backbone_color(&self.backbones, &p.backbone);
            let all = || p.points.iter().chain(&p.epoch0);
            let range = &self.scale.range;
            let x = padded_range(all().map(|q| q.0), range.clone(), 0.02);
            let y = padded_range(all().map(|q| q.1), 0.0..0.3, 0.01);
            let x = x.start.max(range.start - 0.05)..x.end.min(range.end + 0.05);
            let y = y.start.max(0.0)..y.end;
            let entries = [
                (
                    Mark::Dot(color.mix(0.5)),
                    "one (run, epoch, layer)".to_string(),
                ),
                (
                    Mark::Cross(BLACK),
                    "epoch 0, probe's head (not fitted)".to_string(),
                ),
                (
                    Mark::Outline(BLACK),
                    "mean ECE of a similarity level".to_string(),
                ),
                (
                    Mark::Line(BLACK, false),
                    "least squares through the levels".to_string(),
                ),
            ];
            let area = with_legend(area, &entries)?;
            // The fit's numbers in the title (short enough for a third of a
            // page); the slope's interval is in the caption.
            let title = match &p.fit {
                Some(FitRow {
                    r: Some(r),
                    r2: Some(r2),
                    ..
                }) => format!("{}: r = {r:.2}, R² = {r2:.2}", p.backbone),
                Some(f) => format!("{}: no fit ({})", p.backbone, f.status),
                None => p.backbone.clone(),
            };
            let mut chart = chart(&area, &title, x.clone(), y.clone())?;
            axes(
                &mut chart,
                &format!("{} ({}, CLS)", self.scale.quantity, self.scale.axis),
                "ECE (equal-width bins)",
                Ticks::Numbers(5),
            )?;
            chart.draw_series(
                p.points
                    .iter()
                    .map(|&q| Circle::new(q, pt(1.8), color.mix(0.5).filled())),
            )?;
            chart.draw_series(
                p.epoch0
                    .iter()
                    .map(|&q| Cross::new(q, pt(3.2), BLACK.stroke_width(pt(1.4)))),
            )?;
            if let Ok(levels) = &p.levels {
                let half_x = (x.end - x.start) * 0.012;
                let half_y = (y.end - y.start) * 0.018;
                chart.draw_series(levels.iter().map(|l| {
                    Rectangle::new(
                        [(l.0 - half_x, l.1 - half_y), (l.0 + half_x, l.1 + half_y)],
                        BLACK.stroke_width(pt(1.0)),
                    )
                }))?;
            }
            if let Some(FitRow {
                slope: Some(slope),
                intercept: Some(b),
                ..
            }) = &p.fit
            {
                let line = [(x.start, b + slope * x.start), (x.end, b + slope * x.end)];
                chart.draw_series(LineSeries::new(line, BLACK.stroke_width(pt(1.0))))?;
            }
        }
        Ok(())
    }
}
