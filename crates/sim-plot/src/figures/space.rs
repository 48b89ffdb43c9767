//! Figure 2, the similarity space: every finished run's final similarity
//! against its accuracy, with each backbone's region
//! T_X(η, ε) = { similarity ≥ η, |accuracy − accuracy(θ*)| ≤ ε } shaded and
//! its θ* (the run of best accuracy) marked, and each run's 95 % bootstrap
//! interval of its similarity over the test images as a horizontal bar.
//! Figure 4b: the same points, without the region. With several facets
//! (data sets, methods) every facet has the same axes, so they compare by eye.

use super::{Captioned, no_finished_run, stem};
use crate::scale::Scale;
use crate::study::{SpaceRow, Study};
use crate::style::*;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;

pub struct SimilaritySpace {
    backbones: Vec<String>,
    points: Vec<SpaceRow>,
    eta: f64,
    epsilon: f64,
    /// Similarity and accuracy (%) ranges: those of every facet of `whole`.
    x: Range<f64>,
    y: Range<f64>,
}

impl SimilaritySpace {
    /// The figure of `rows` (one facet) on the axes of the `whole` study.
    pub fn prepare(rows: &Study, whole: &Study) -> Result<SimilaritySpace, String> {
        if rows.space.is_empty() {
            return Err(no_finished_run());
        }
        let e = &rows.config.evaluation;
        let (eta, epsilon) = (e.similarity_threshold, e.accuracy_tolerance);
        let interval_ends = whole
            .space
            .iter()
            .filter_map(|p| p.similarity_ci())
            .flat_map(|(lo, hi)| [lo, hi]);
        let x = padded_range(
            whole
                .space
                .iter()
                .map(|p| p.similarity)
                .chain(interval_ends)
                .chain([eta]),
            0.0..1.0,
            0.05,
        );
        let eps = epsilon * 100.0;
        let y = padded_range(
            whole
                .space
                .iter()
                .flat_map(|p| [p.accuracy * 100.0 - eps, p.accuracy * 100.0 + eps]),
            0.0..100.0,
            2.0,
        );
        Ok(SimilaritySpace {
            backbones: rows.backbones.clone(),
            points: rows.space.clone(),
            eta,
            epsilon,
            x: x.start.max(0.0)..x.end.min(1.0),
            y,
        })
    }

    fn of<'a>(&'a self, backbone: &'a str) -> impl Iterator<Item = &'a SpaceRow> + 'a {
        self.points.iter().filter(move |p| p.backbone == backbone)
    }

    fn present(&self) -> Vec<&String> {
        self.backbones
            .iter()
            .filter(|b| self.of(b).next().is_some())
            .collect()
    }
}

impl Captioned for SimilaritySpace {
    fn caption(&self) -> String {
        let parts: Vec<String> = self
            .present()
            .into_iter()
            .map(|b| {
                format!(
                    "{b} {} of {}",
                    self.of(b).filter(|p| p.in_space).count(),
                    self.of(b).count()
                )
            })
            .collect();
        format!(
            "Runs inside T_X(η = {}, ε = {}): {}.",
            self.eta,
            self.epsilon,
            parts.join("; ")
        )
    }
}

impl Figure for SimilaritySpace {
    fn name(&self) -> String {
        "fig2_similarity_space".into()
    }

    fn size(&self) -> (u32, u32) {
        inches(SINGLE_COLUMN, 2.9)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (x, y) = (self.x.clone(), self.y.clone());
        let eps = self.epsilon * 100.0;
        let mut entries: Vec<(Mark, String)> = self
            .present()
            .into_iter()
            .map(|b| {
                let (inside, total) = (
                    self.of(b).filter(|p| p.in_space).count(),
                    self.of(b).count(),
                );
                (
                    Mark::Dot(backbone_color(&self.backbones, b).mix(1.0)),
                    format!("{b}: {inside} of {total} runs in T_X"),
                )
            })
            .collect();
        entries.push((Mark::Ring(BLACK), "θ*: best accuracy".into()));
        if self.points.iter().any(|p| p.similarity_ci().is_some()) {
            entries.push((
                Mark::Line(GREY, false),
                "95 % interval over the test images".into(),
            ));
        }
        entries.push((
            Mark::Square(GREY.mix(0.25)),
            format!(
                "T_X: similarity ≥ η = {}, |Δ acc.| ≤ ε = {} (filled dots: inside)",
                self.eta, self.epsilon
            ),
        ));
        let area = with_legend(root, &entries)?;
        let mut chart = chart(&area, "", x.clone(), y.clone())?;
        axes(
            &mut chart,
            "final similarity (linear CKA to pre-trained)",
            "accuracy, medical test set (%)",
            Ticks::Numbers(6),
        )?;
        for b in self.present() {
            let color = backbone_color(&self.backbones, b);
            let best = self
                .of(b)
                .find(|p| p.seed == p.reference_seed)
                .map_or(0.0, |p| p.accuracy * 100.0);
            chart.draw_series([Rectangle::new(
                [(self.eta, best - eps), (x.end, best + eps)],
                color.mix(0.13).filled(),
            )])?;
        }
        chart.draw_series(DashedLineSeries::new(
            [(self.eta, y.start), (self.eta, y.end)],
            pt(3.0),
            pt(2.0),
            BLACK.mix(0.6).stroke_width(pt(0.7)),
        ))?;
        for b in self.present() {
            let color = backbone_color(&self.backbones, b);
            chart.draw_series(self.of(b).filter_map(|p| {
                let (lo, hi) = p.similarity_ci()?;
                Some(PathElement::new(
                    vec![(lo, p.accuracy * 100.0), (hi, p.accuracy * 100.0)],
                    color.mix(0.7).stroke_width(pt(0.9)),
                ))
            }))?;
            chart.draw_series(self.of(b).map(|p| {
                let style = if p.in_space {
                    color.filled()
                } else {
                    color.stroke_width(pt(1.0))
                };
                Circle::new((p.similarity, p.accuracy * 100.0), pt(2.6), style)
            }))?;
            chart.draw_series(self.of(b).filter(|p| p.seed == p.reference_seed).map(|p| {
                Circle::new(
                    (p.similarity, p.accuracy * 100.0),
                    pt(4.6),
                    BLACK.stroke_width(pt(1.0)),
                )
            }))?;
        }
        Ok(())
    }
}

/// Figure 4b.
pub struct FinalPoints {
    backbones: Vec<String>,
    points: Vec<SpaceRow>,
    /// Similarity and accuracy (%) ranges: those of every facet of `whole`.
    x: Range<f64>,
    y: Range<f64>,
    scale: Scale,
}

impl FinalPoints {
    /// The figure of `rows` (one facet) on the axes of the `whole` study.
    pub fn prepare(rows: &Study, whole: &Study) -> Result<FinalPoints, String> {
        if rows.space.is_empty() {
            return Err(no_finished_run());
        }
        let scale = Scale::of(whole.measure);
        let range = scale.range.clone();
        let x = padded_range(
            whole.space.iter().map(|p| p.similarity),
            range.clone(),
            0.05,
        );
        let y = padded_range(
            whole.space.iter().map(|p| p.accuracy * 100.0),
            0.0..100.0,
            2.0,
        );
        Ok(FinalPoints {
            backbones: rows.backbones.clone(),
            points: rows.space.clone(),
            x: x.start.max(range.start)..x.end.min(range.end),
            y,
            scale,
        })
    }
}

impl Captioned for FinalPoints {
    fn caption(&self) -> String {
        let (s, a): (Vec<f64>, Vec<f64>) = self
            .points
            .iter()
            .map(|p| (p.similarity, p.accuracy))
            .unzip();
        let what = self.scale.short;
        match sim_metrics::fit::pearson(&s, &a) {
            Ok(r) => format!(
                "Final similarity ({what}) against final accuracy, {} runs: Pearson r = \
                    {r:.2} over all backbones.",
                s.len()
            ),
            Err(_) => format!(
                "Final similarity ({what}) against final accuracy, {} runs (no correlation: \
                    too few runs or no spread).",
                s.len()
            ),
        }
    }
}

impl Figure for FinalPoints {
    fn name(&self) -> String {
        stem("fig4b_final", &self.scale)
    }

    fn size(&self) -> (u32, u32) {
        inches(SINGLE_COLUMN, 2.6)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (x, y) = (self.x.clone(), self.y.clone());
        let present: Vec<(&String, Vec<&SpaceRow>)> = self
            .backbones
            .iter()
            .map(|b| {
                (
                    b,
                    self.points
                        .iter()
                        .filter(|p| &p.backbone == b)
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, r)| !r.is_empty())
            .collect();
        let entries: Vec<(Mark, String)> = present
            .iter()
            .map(|(b, runs)| {
                (
                    Mark::Dot(backbone_color(&self.backbones, b).mix(1.0)),
                    format!("{b} ({} runs)", runs.len()),
                )
            })
            .collect();
        let area = with_legend(root, &entries)?;
        let mut chart = chart(&area, "", x, y)?;
        axes(
            &mut chart,
            &self.scale.label("final "),
            "final accuracy (%)",
            Ticks::Numbers(6),
        )?;
        for (b, runs) in &present {
            let color = backbone_color(&self.backbones, b);
            chart.draw_series(runs.iter().map(|p| {
                Circle::new((p.similarity, p.accuracy * 100.0), pt(2.6), color.filled())
            }))?;
        }
        Ok(())
    }
}
