//! Figure 1b: how far fine-tuning moves the representation, over runs. The
//! distribution of each run's final similarity (final-norm CLS CKA to the
//! pre-trained model, medical test set), one Gaussian kernel-density curve
//! per backbone with Scott's bandwidth (h = σ·n^(−1/5), σ the runs' sample
//! standard deviation, as scipy's `gaussian_kde`) but at least 0.01, so that
//! runs that agree to the third decimal give a readable peak rather than a
//! spike that flattens every other curve; the runs as a rug.

use super::{Captioned, mean_std, no_finished_run, stem};
use crate::scale::Scale;
use crate::study::Study;
use crate::style::*;
use plotters::coord::Shift;
use plotters::prelude::*;

/// A density curve's (x, density) points.
type Curve = Vec<(f64, f64)>;

pub struct SimilarityDensity {
    backbones: Vec<String>,
    /// Per backbone with runs: name, final similarities.
    runs: Vec<(String, Vec<f64>)>,
    scale: Scale,
}

/// The narrowest kernel drawn (in the measure's units).
const MIN_BANDWIDTH: f64 = 0.01;

/// Scott's bandwidth, at least [`MIN_BANDWIDTH`]; none when the runs have no spread.
fn bandwidth(values: &[f64]) -> Option<f64> {
    let (_, std) = mean_std(values);
    (values.len() > 1 && std > 0.0)
        .then(|| (std * (values.len() as f64).powf(-0.2)).max(MIN_BANDWIDTH))
}

fn density(values: &[f64], h: f64, x: f64) -> f64 {
    let norm = 1.0 / (values.len() as f64 * h * (2.0 * std::f64::consts::PI).sqrt());
    values
        .iter()
        .map(|v| (-0.5 * ((x - v) / h).powi(2)).exp())
        .sum::<f64>()
        * norm
}

impl SimilarityDensity {
    pub fn prepare(study: &Study) -> Result<SimilarityDensity, String> {
        let runs: Vec<_> = study
            .backbones_with_runs()
            .into_iter()
            .map(|b| {
                (
                    b.to_string(),
                    study
                        .final_epochs(b)
                        .iter()
                        .map(|r| r.kept.similarity)
                        .collect::<Vec<f64>>(),
                )
            })
            .collect();
        if runs.is_empty() {
            return Err(no_finished_run());
        }
        Ok(SimilarityDensity {
            backbones: study.backbones.clone(),
            runs,
            scale: Scale::of(study.measure),
        })
    }

    fn x_range(&self) -> std::ops::Range<f64> {
        let widest = self
            .runs
            .iter()
            .filter_map(|(_, v)| bandwidth(v))
            .fold(0.0f64, f64::max);
        let all = self.runs.iter().flat_map(|(_, v)| v.iter().copied());
        let range = &self.scale.range;
        let r = padded_range(all, range.clone(), 0.02);
        (r.start - 3.0 * widest).max(range.start)..(r.end + 3.0 * widest).min(range.end)
    }
}

impl Captioned for SimilarityDensity {
    fn caption(&self) -> String {
        let parts: Vec<String> = self
            .runs
            .iter()
            .map(|(b, v)| {
                let (m, s) = mean_std(v);
                let h = bandwidth(v).map_or("no spread, no curve".to_string(), |h| {
                    format!("bandwidth {h:.3}")
                });
                format!("{b} {m:.3} ± {s:.3} over {} runs ({h})", v.len())
            })
            .collect();
        format!(
            "Final similarity ({} to the pre-trained model): {}.",
            self.scale.short,
            parts.join("; ")
        )
    }
}

impl Figure for SimilarityDensity {
    fn name(&self) -> String {
        stem("fig1b_similarity_density", &self.scale)
    }

    fn size(&self) -> (u32, u32) {
        inches(SINGLE_COLUMN, 2.5)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let x = self.x_range();
        let grid: Vec<f64> = (0..=200)
            .map(|i| x.start + (x.end - x.start) * i as f64 / 200.0)
            .collect();
        let curves: Vec<(String, Option<Curve>)> = self
            .runs
            .iter()
            .map(|(b, v)| {
                (
                    b.clone(),
                    bandwidth(v).map(|h| grid.iter().map(|&g| (g, density(v, h, g))).collect()),
                )
            })
            .collect();
        let peak = curves
            .iter()
            .flat_map(|(_, c)| c.iter().flatten().map(|p| p.1))
            .fold(0.0f64, f64::max);
        let y_max = if peak > 0.0 { peak * 1.15 } else { 1.0 };
        let entries: Vec<(Mark, String)> = self
            .runs
            .iter()
            .zip(&curves)
            .map(|((name, values), (_, curve))| {
                let color = backbone_color(&self.backbones, name);
                let what = if curve.is_some() {
                    ""
                } else {
                    ", no spread: dashed at the value"
                };
                (
                    Mark::Line(color, curve.is_none()),
                    format!("{name} ({} runs{what})", values.len()),
                )
            })
            .collect();
        let area = with_legend(root, &entries)?;
        let mut chart = chart(&area, "", x.clone(), 0.0..y_max)?;
        axes(
            &mut chart,
            &self.scale.label("final "),
            "density (runs)",
            Ticks::Numbers(6),
        )?;
        for ((name, values), (_, curve)) in self.runs.iter().zip(&curves) {
            let color = backbone_color(&self.backbones, name);
            match curve {
                Some(points) => {
                    chart.draw_series(LineSeries::new(
                        points.clone(),
                        color.stroke_width(pt(1.2)),
                    ))?;
                }
                None => {
                    // No spread (or one run): a line at the value instead of a curve.
                    let v = values[0];
                    chart.draw_series(DashedLineSeries::new(
                        [(v, 0.0), (v, y_max * 0.9)],
                        pt(3.0),
                        pt(2.0),
                        color.stroke_width(pt(1.0)),
                    ))?;
                }
            }
            let rug = y_max * 0.05;
            chart.draw_series(values.iter().map(|&v| {
                PathElement::new(vec![(v, 0.0), (v, rug)], color.stroke_width(pt(0.8)))
            }))?;
        }
        Ok(())
    }
}
