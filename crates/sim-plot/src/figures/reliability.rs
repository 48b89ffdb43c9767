//! Reliability diagrams: per backbone, the accuracy in each confidence bin
//! (equal-width, the ECE's bins) against the bin's confidence, of the
//! pre-trained model (grey outline; scored by a linear probe's head,
//! `Study::epoch0_head`) and of the fine-tuned models (the
//! finished runs' final epochs pooled: count-weighted means), the diagonal
//! being perfect calibration; below, how many test images fall in each bin
//! (mean per model). Where the data set has a validation split, the
//! fine-tuned models after temperature scaling (T fitted on it) are drawn
//! over them as a line through each bin's (confidence, accuracy).

use super::{Captioned, no_finished_run};
use crate::study::{BinRow, Study};
use crate::style::*;
use plotters::coord::Shift;
use plotters::prelude::*;

/// One bin pooled over models: (low, high, accuracy, confidence, images per model).
type Pooled = (f64, f64, Option<f64>, Option<f64>, f64);

struct Panel {
    backbone: String,
    pretrained: Vec<Pooled>,
    finetuned: Vec<Pooled>,
    /// The fine-tuned models' bins after temperature scaling, and their
    /// mean ECE; none without a validation split.
    scaled: Option<(Vec<Pooled>, f64)>,
    runs: usize,
    ece: (f64, f64),
}

pub struct Reliability {
    backbones: Vec<String>,
    panels: Vec<Panel>,
    /// How epoch 0 was scored, for the caption.
    epoch0: &'static str,
}

/// Count-weighted means per bin over the models in `rows`.
fn pool(rows: &[&BinRow], models: usize) -> Vec<Pooled> {
    let mut bins: Vec<(f64, f64)> = rows.iter().map(|r| (r.low, r.high)).collect();
    bins.sort_by(|a, b| a.0.total_cmp(&b.0));
    bins.dedup();
    bins.into_iter()
        .map(|(low, high)| {
            let in_bin: Vec<&&BinRow> = rows.iter().filter(|r| r.low == low).collect();
            let n: f64 = in_bin.iter().map(|r| r.count as f64).sum();
            let weighted = |get: fn(&BinRow) -> Option<f64>| {
                (n > 0.0).then(|| {
                    in_bin
                        .iter()
                        .map(|r| get(r).unwrap_or(0.0) * r.count as f64)
                        .sum::<f64>()
                        / n
                })
            };
            (
                low,
                high,
                weighted(|r| r.accuracy),
                weighted(|r| r.confidence),
                n / models.max(1) as f64,
            )
        })
        .collect()
}

impl Reliability {
    pub fn prepare(study: &Study) -> Result<Reliability, String> {
        let Some(rows) = &study.reliability else {
            return Err("no reliability table (a study made before it existed: run \
                `sim-metrics study` again)"
                .into());
        };
        let mut panels = Vec::new();
        for b in study.backbones_with_runs() {
            let of = |fine_tuned: bool, scaled: bool| -> Vec<&BinRow> {
                rows.iter()
                    .filter(|r| r.backbone == b && r.seed.is_some() == fine_tuned)
                    .filter(|r| r.temperature_scaled == scaled)
                    .collect()
            };
            let (pre, post) = (of(false, false), of(true, false));
            if pre.is_empty() || post.is_empty() {
                continue;
            }
            let finals = study.final_epochs(b);
            let runs = finals.len();
            let mean_ece = finals.iter().map(|r| r.scores.ece).sum::<f64>() / runs as f64;
            let scaled_ece: Vec<f64> = finals.iter().filter_map(|r| r.ece_scaled).collect();
            let scaled = of(true, true);
            let scaled = (!scaled.is_empty() && !scaled_ece.is_empty()).then(|| {
                let mean = scaled_ece.iter().sum::<f64>() / scaled_ece.len() as f64;
                (pool(&scaled, runs), mean)
            });
            let ece0 = study.pretrained(b).map_or(f64::NAN, |r| r.scores.ece);
            panels.push(Panel {
                backbone: b.to_string(),
                pretrained: pool(&pre, 1),
                finetuned: pool(&post, runs),
                scaled,
                runs,
                ece: (ece0, mean_ece),
            });
        }
        if panels.is_empty() {
            return Err(no_finished_run());
        }
        Ok(Reliability {
            backbones: study.backbones.clone(),
            panels,
            epoch0: study.epoch0_head(),
        })
    }
}

impl Captioned for Reliability {
    fn caption(&self) -> String {
        let parts: Vec<String> = self
            .panels
            .iter()
            .map(|p| {
                let scaled = p.scaled.as_ref().map_or(String::new(), |(_, e)| {
                    format!(", {e:.3} temperature-scaled")
                });
                format!(
                    "{} ECE {:.3} → {:.3}{scaled} (mean of {} runs)",
                    p.backbone, p.ece.0, p.ece.1, p.runs
                )
            })
            .collect();
        format!(
            "Calibration, pre-trained ({}) → fine-tuned: {}.",
            self.epoch0,
            parts.join("; ")
        )
    }
}

impl Figure for Reliability {
    fn name(&self) -> String {
        "reliability".into()
    }

    fn size(&self) -> (u32, u32) {
        panels_size(self.panels.len(), 3.4)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let mut entries: Vec<(Mark, String)> = self
            .panels
            .iter()
            .map(|p| {
                (
                    Mark::Square(backbone_color(&self.backbones, &p.backbone).mix(0.55)),
                    format!("{}: fine-tuned, {} runs pooled", p.backbone, p.runs),
                )
            })
            .collect();
        if self.panels.iter().any(|p| p.scaled.is_some()) {
            entries.push((
                Mark::Line(BLACK, false),
                "fine-tuned, temperature-scaled (T fitted on validation)".into(),
            ));
        }
        entries.push((
            Mark::Outline(BLACK),
            "pre-trained, linear probe's head".into(),
        ));
        entries.push((Mark::Line(GREY, true), "perfect calibration".into()));
        let area = with_legend(root, &entries)?;
        let columns = area.split_evenly(panel_grid(self.panels.len()));
        for (area, p) in columns.iter().zip(&self.panels) {
            let color = backbone_color(&self.backbones, &p.backbone);
            let (top, bottom) = area.split_vertically(area.dim_in_pixel().1 * 70 / 100);
            let scaled = p
                .scaled
                .as_ref()
                .map_or(String::new(), |(_, e)| format!(" ({e:.3} scaled)"));
            let title = format!(
                "{}: ECE {:.3} → {:.3}{scaled}",
                p.backbone, p.ece.0, p.ece.1
            );
            let mut calibration = chart(&top, &title, 0.0..1.0, 0.0..1.0)?;
            axes(&mut calibration, "", "accuracy in bin", Ticks::Numbers(6))?;
            calibration.draw_series(DashedLineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                pt(3.0),
                pt(2.0),
                BLACK.mix(0.5).stroke_width(pt(0.7)),
            ))?;
            calibration.draw_series(p.finetuned.iter().filter_map(|b| {
                Some(Rectangle::new(
                    [(b.0, 0.0), (b.1, b.2?)],
                    color.mix(0.55).filled(),
                ))
            }))?;
            calibration.draw_series(p.pretrained.iter().filter_map(|b| {
                Some(Rectangle::new(
                    [(b.0, 0.0), (b.1, b.2?)],
                    BLACK.stroke_width(pt(0.8)),
                ))
            }))?;
            let scaled_bins = p.scaled.as_ref().map_or(&[][..], |(b, _)| b.as_slice());
            // Each filled bin after scaling at its mean confidence and accuracy.
            let points = scaled_bins.iter().filter_map(|b| Some((b.3?, b.2?)));
            dotted_line(&mut calibration, points.collect())?;

            let most = p
                .pretrained
                .iter()
                .chain(&p.finetuned)
                .chain(scaled_bins)
                .map(|b| b.4)
                .fold(1.0f64, f64::max);
            let mut counts = chart(&bottom, "", 0.0..1.0, 0.0..most * 1.1)?;
            axes(
                &mut counts,
                "confidence (max softmax)",
                "images",
                Ticks::Numbers(6),
            )?;
            counts.draw_series(
                p.finetuned
                    .iter()
                    .map(|b| Rectangle::new([(b.0, 0.0), (b.1, b.4)], color.mix(0.55).filled())),
            )?;
            counts.draw_series(
                p.pretrained
                    .iter()
                    .map(|b| Rectangle::new([(b.0, 0.0), (b.1, b.4)], BLACK.stroke_width(pt(0.8)))),
            )?;
            // After scaling the same images move to other bins: their counts
            // at the bins' centres, so a point of the line above can be
            // weighed by how many images it stands for.
            let filled = scaled_bins.iter().filter(|b| b.4 > 0.0);
            dotted_line(
                &mut counts,
                filled.map(|b| ((b.0 + b.1) / 2.0, b.4)).collect(),
            )?;
        }
        Ok(())
    }
}

/// The temperature-scaled models' mark: a dark line through dots.
fn dotted_line<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    points: Vec<(f64, f64)>,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let dark = BLACK.mix(0.85);
    chart.draw_series(LineSeries::new(
        points.iter().copied(),
        dark.stroke_width(pt(1.0)),
    ))?;
    chart.draw_series(
        points
            .iter()
            .map(|&p| Circle::new(p, pt(1.6), dark.filled())),
    )?;
    Ok(())
}
