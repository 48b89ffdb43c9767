//! Figure 4a: the mean training trajectory. Per epoch, over a backbone's
//! finished runs, the mean balanced accuracy and the mean similarity, each
//! with a band of ± one standard deviation; one colour per backbone. Epoch 0
//! is the pre-trained backbone with a linear probe's head (`Study::epoch0_head`).
//! With several facets (data sets, methods) every facet has the same axes.

use super::{Captioned, mean_std, no_finished_run, stem};
use crate::scale::Scale;
use crate::study::{EpochRow, Study};
use crate::style::*;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;

/// Per epoch: (epoch, mean, std).
type Curve = Vec<(f64, f64, f64)>;

/// A backbone's name, finished runs, balanced accuracy (%) and similarity curves.
type Curves = (String, usize, Curve, Curve);

/// One side of the figure: which curve, its x and y axis descriptions, the
/// values it can take. Epoch 0's accuracy is the linear probe's (its
/// similarity is the measure's against itself whatever the head).
type Side = (fn(&Curves) -> &Curve, &'static str, String, Range<f64>);

fn sides(scale: &Scale) -> [Side; 2] {
    [
        (
            |c| &c.2,
            "epoch (0 = pre-trained, linear probe's head)",
            "balanced accuracy, medical test set (%)".to_owned(),
            0.0..100.0,
        ),
        (
            |c| &c.3,
            "epoch (0 = pre-trained)",
            scale.label(""),
            scale.range.clone(),
        ),
    ]
}

pub struct Trajectory {
    backbones: Vec<String>,
    /// Per backbone with runs.
    curves: Vec<Curves>,
    /// The y range of each side: that of every facet of the whole study.
    ranges: [Range<f64>; 2],
    /// How epoch 0 was scored, for the caption.
    epoch0: &'static str,
    scale: Scale,
}

fn curve(rows: &[&EpochRow], get: fn(&EpochRow) -> f64) -> Curve {
    let mut epochs: Vec<u32> = rows.iter().map(|r| r.epoch).collect();
    epochs.sort_unstable();
    epochs.dedup();
    epochs
        .into_iter()
        .map(|e| {
            let values: Vec<f64> = rows
                .iter()
                .filter(|r| r.epoch == e)
                .map(|r| get(r))
                .collect();
            let (m, s) = mean_std(&values);
            (e as f64, m, s)
        })
        .collect()
}

/// The curves of one facet's study, per backbone with finished runs.
fn curves_of(study: &Study) -> Vec<Curves> {
    study
        .backbones_with_runs()
        .into_iter()
        .map(|b| {
            let rows: Vec<&EpochRow> = study
                .epochs
                .iter()
                .filter(|r| r.backbone == b && r.finished())
                .collect();
            let runs = study.final_epochs(b).len();
            (
                b.to_string(),
                runs,
                curve(&rows, |r| r.scores.balanced_accuracy * 100.0),
                curve(&rows, |r| r.kept.similarity),
            )
        })
        .collect()
}

impl Trajectory {
    /// The figure of `rows` (one facet) on the axes of the `whole` study.
    pub fn prepare(rows: &Study, whole: &Study) -> Result<Trajectory, String> {
        let curves = curves_of(rows);
        if curves.is_empty() {
            return Err(no_finished_run());
        }
        let all: Vec<Curves> = whole
            .facets()
            .iter()
            .flat_map(|f| curves_of(&whole.facet(f)))
            .collect();
        let scale = Scale::of(rows.measure);
        let ranges = sides(&scale).map(|(pick, _, _, fallback)| {
            let y = padded_range(
                all.iter()
                    .flat_map(|c| pick(c).iter().flat_map(|p| [p.1 - p.2, p.1 + p.2])),
                fallback.clone(),
                (fallback.end - fallback.start) * 0.02,
            );
            y.start.max(fallback.start)..y.end.min(fallback.end * 1.001)
        });
        Ok(Trajectory {
            backbones: rows.backbones.clone(),
            curves,
            ranges,
            epoch0: whole.epoch0_head(),
            scale,
        })
    }
}

impl Captioned for Trajectory {
    fn caption(&self) -> String {
        let parts: Vec<String> = self
            .curves
            .iter()
            .map(|(b, runs, acc, sim)| {
                let (a0, a1) = (acc.first().expect("epoch 0"), acc.last().expect("an epoch"));
                let s1 = sim.last().expect("an epoch");
                format!(
                    "{b}: balanced accuracy {:.1} → {:.1} ± {:.1} %, similarity {} → {:.3} ± \
                        {:.3} after {} epochs ({runs} runs)",
                    a0.1, a1.1, a1.2, self.scale.identical, s1.1, s1.2, a1.0
                )
            })
            .collect();
        format!("Mean trajectory ({}): {}.", self.epoch0, parts.join("; "))
    }
}

impl Figure for Trajectory {
    fn name(&self) -> String {
        stem("fig4a_trajectory", &self.scale)
    }

    fn size(&self) -> (u32, u32) {
        inches(FULL_WIDTH, 2.5)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let entries: Vec<(Mark, String)> = self
            .curves
            .iter()
            .map(|c| {
                (
                    Mark::Line(backbone_color(&self.backbones, &c.0), false),
                    format!("{}: mean ± sd over {} runs", c.0, c.1),
                )
            })
            .collect();
        let area = with_legend(root, &entries)?;
        let panels = area.split_evenly((1, 2));
        let last_epoch = self
            .curves
            .iter()
            .flat_map(|c| c.2.iter().map(|p| p.0))
            .fold(1.0f64, f64::max);
        let sides = sides(&self.scale);
        for ((panel, (pick, x_desc, y_desc, _)), y) in panels.iter().zip(sides).zip(&self.ranges) {
            let mut chart = chart(panel, "", -0.2..last_epoch + 0.2, y.clone())?;
            axes(
                &mut chart,
                x_desc,
                &y_desc,
                Ticks::Integers(last_epoch as usize + 1),
            )?;
            for c in &self.curves {
                let color = backbone_color(&self.backbones, &c.0);
                let points = pick(c);
                let band: Vec<(f64, f64)> = points
                    .iter()
                    .map(|p| (p.0, p.1 + p.2))
                    .chain(points.iter().rev().map(|p| (p.0, p.1 - p.2)))
                    .collect();
                chart.draw_series([Polygon::new(band, color.mix(0.18).filled())])?;
                chart.draw_series(
                    LineSeries::new(
                        points.iter().map(|p| (p.0, p.1)),
                        color.stroke_width(pt(1.2)),
                    )
                    .point_size(pt(1.5)),
                )?;
            }
        }
        Ok(())
    }
}
