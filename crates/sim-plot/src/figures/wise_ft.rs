//! The WiSE-FT path (methods with `wise_ft`): for each backbone, the
//! backbones (1 − α)θ₀ + αθ_ft of every finished run placed in the
//! similarity space (final similarity against accuracy), α = 1 being the
//! run's last epoch. Thin lines: one run each; a thick line with labelled
//! dots: the mean over the runs at each α.

use super::{Captioned, no_finished_run};
use crate::study::{Study, WiseFtMean, WiseFtRow};
use crate::style::*;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub struct WiseFtPath {
    backbones: Vec<String>,
    rows: Vec<WiseFtRow>,
    method: String,
    /// Per backbone present: its means by α.
    means: Vec<(String, Vec<WiseFtMean>)>,
}

impl WiseFtPath {
    pub fn prepare(study: &Study) -> Result<WiseFtPath, String> {
        let rows = study.wise_ft.clone().unwrap_or_default();
        if rows.is_empty() {
            return Err(format!(
                "{} (with its WiSE-FT evaluations)",
                no_finished_run()
            ));
        }
        let means = study
            .backbones
            .iter()
            .map(|b| (b.clone(), study.wise_ft_means(b)))
            .filter(|(_, m)| !m.is_empty())
            .collect();
        Ok(WiseFtPath {
            backbones: study.backbones.clone(),
            method: rows[0].method.clone(),
            rows,
            means,
        })
    }

    /// One backbone's runs: each its points by increasing α.
    fn runs(&self, backbone: &str) -> Vec<Vec<&WiseFtRow>> {
        let mut seeds: Vec<u64> = self
            .rows
            .iter()
            .filter(|r| r.backbone == backbone)
            .map(|r| r.seed)
            .collect();
        seeds.dedup();
        seeds
            .iter()
            .map(|&s| {
                let mut run: Vec<&WiseFtRow> = self
                    .rows
                    .iter()
                    .filter(|r| r.backbone == backbone && r.seed == s)
                    .collect();
                run.sort_by(|a, b| a.alpha.total_cmp(&b.alpha));
                run
            })
            .collect()
    }
}

impl Captioned for WiseFtPath {
    fn caption(&self) -> String {
        let parts: Vec<String> = self
            .means
            .iter()
            .map(|(b, means)| {
                let best = means
                    .iter()
                    .max_by(|x, y| x.accuracy.total_cmp(&y.accuracy))
                    .expect("a point");
                let end = means.last().expect("a point");
                format!(
                    "{b}: most accurate at α = {} (accuracy {:.1} %, similarity {:.3}) \
                        against α = 1 (accuracy {:.1} %, similarity {:.3})",
                    trim(best.alpha),
                    best.accuracy * 100.0,
                    best.similarity,
                    end.accuracy * 100.0,
                    end.similarity
                )
            })
            .collect();
        format!(
            "WiSE-FT path of `{}`, means over runs: {}.",
            self.method,
            parts.join("; ")
        )
    }
}

impl Figure for WiseFtPath {
    fn name(&self) -> String {
        "wise_ft_path".into()
    }

    fn size(&self) -> (u32, u32) {
        inches(SINGLE_COLUMN, 2.9)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let x = padded_range(self.rows.iter().map(|r| r.kept.similarity), 0.0..1.0, 0.05);
        let x = x.start.max(0.0)..x.end.min(1.0) + 0.02;
        let y = padded_range(
            self.rows.iter().map(|r| r.scores.accuracy * 100.0),
            0.0..100.0,
            2.0,
        );
        let mut entries: Vec<(Mark, String)> = self
            .means
            .iter()
            .map(|(b, _)| {
                (
                    Mark::Line(backbone_color(&self.backbones, b), false),
                    format!("{b}: mean of {} runs (labels: α)", self.runs(b).len()),
                )
            })
            .collect();
        entries.push((
            Mark::Line(GREY, false),
            "thin: one run, from α = lowest to 1 (its last epoch)".into(),
        ));
        let area = with_legend(root, &entries)?;
        let mut chart = chart(&area, "", x, y)?;
        axes(
            &mut chart,
            "similarity (linear CKA to pre-trained)",
            "accuracy, medical test set (%)",
            Ticks::Numbers(6),
        )?;
        for (b, means) in &self.means {
            let color = backbone_color(&self.backbones, b);
            for run in self.runs(b) {
                chart.draw_series([PathElement::new(
                    run.iter()
                        .map(|r| (r.kept.similarity, r.scores.accuracy * 100.0))
                        .collect::<Vec<_>>(),
                    color.mix(0.35).stroke_width(pt(0.7)),
                )])?;
            }
            let point = |m: &WiseFtMean| (m.similarity, m.accuracy * 100.0);
            chart.draw_series([PathElement::new(
                means.iter().map(point).collect::<Vec<_>>(),
                color.stroke_width(pt(1.6)),
            )])?;
            chart.draw_series(
                means
                    .iter()
                    .map(|m| Circle::new(point(m), pt(2.4), color.filled())),
            )?;
            let label = font(6.5).pos(Pos::new(HPos::Left, VPos::Bottom));
            chart.draw_series(
                means
                    .iter()
                    .map(|m| Text::new(trim(m.alpha), point(m), label.clone())),
            )?;
        }
        Ok(())
    }
}
