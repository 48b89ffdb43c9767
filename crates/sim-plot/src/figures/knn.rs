//! Figure 1a: how much natural-image knowledge survives. k-NN top-1 on the
//! natural images (DINO's protocol) of the pre-trained backbone and after
//! fine-tuning, per backbone: bars (the fine-tuned one the mean over runs,
//! with ± one standard deviation), every run as a dot.

use super::{Captioned, mean_std, no_finished_run};
use crate::study::Study;
use crate::style::*;
use plotters::coord::Shift;
use plotters::prelude::*;

pub struct KnnBars {
    backbones: Vec<String>,
    /// Per backbone with runs: name, k-NN before (%), after per run (%).
    bars: Vec<(String, f64, Vec<f64>)>,
}

impl KnnBars {
    pub fn prepare(study: &Study) -> Result<KnnBars, String> {
        let bars: Vec<_> = study
            .backbones_with_runs()
            .into_iter()
            .filter_map(|b| {
                let before = study.pretrained(b)?.kept.knn_top1? * 100.0;
                let after: Vec<f64> = study
                    .final_epochs(b)
                    .iter()
                    .filter_map(|r| Some(r.kept.knn_top1? * 100.0))
                    .collect();
                (!after.is_empty()).then(|| (b.to_string(), before, after))
            })
            .collect();
        if bars.is_empty() {
            return Err(no_finished_run());
        }
        Ok(KnnBars {
            backbones: study.backbones.clone(),
            bars,
        })
    }
}

impl Captioned for KnnBars {
    fn caption(&self) -> String {
        let parts: Vec<String> = self
            .bars
            .iter()
            .map(|(b, before, after)| {
                let (m, s) = mean_std(after);
                format!(
                    "{b} {before:.1} % → {m:.1} ± {s:.1} % ({:+.1} points, {} runs)",
                    m - before,
                    after.len()
                )
            })
            .collect();
        format!(
            "k-NN top-1 on the natural images, pre-trained → fine-tuned: {}.",
            parts.join("; ")
        )
    }
}

impl Figure for KnnBars {
    fn name(&self) -> String {
        "fig1a_knn".into()
    }

    /// A column wide, wider where many backbones need room for their
    /// names (then facets stack, as wide figures do).
    fn size(&self) -> (u32, u32) {
        let width = SINGLE_COLUMN.max(0.8 + 0.5 * self.bars.len() as f64);
        inches(width.min(FULL_WIDTH), 2.5)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let top = self
            .bars
            .iter()
            .flat_map(|(_, b, a)| a.iter().copied().chain([*b]))
            .fold(0.0f64, f64::max);
        let y_max = ((top * 1.25 / 10.0).ceil() * 10.0).clamp(10.0, 100.0);
        let n = self.bars.len() as f64;
        let area = with_legend(
            root,
            &[
                (Mark::Square(GREY.mix(0.3)), "pre-trained".into()),
                (Mark::Square(GREY.mix(1.0)), "fine-tuned: mean ± sd".into()),
                (Mark::Ring(BLACK), "each run".into()),
            ],
        )?;
        let mut chart = chart(&area, "", -0.6..n - 0.4, 0.0..y_max)?;
        let names: Vec<String> = self.bars.iter().map(|b| b.0.clone()).collect();
        axes(
            &mut chart,
            "backbone",
            "k-NN top-1 on natural images (%)",
            Ticks::Names(&names),
        )?;
        for (i, (name, before, after)) in self.bars.iter().enumerate() {
            let x = i as f64;
            let color = backbone_color(&self.backbones, name);
            let (mean, std) = mean_std(after);
            chart.draw_series([
                Rectangle::new(
                    [(x - 0.38, 0.0), (x - 0.02, *before)],
                    color.mix(0.3).filled(),
                ),
                Rectangle::new(
                    [(x - 0.38, 0.0), (x - 0.02, *before)],
                    color.stroke_width(2),
                ),
                Rectangle::new([(x + 0.02, 0.0), (x + 0.38, mean)], color.filled()),
            ])?;
            let whisker = BLACK.stroke_width(2);
            chart.draw_series([
                PathElement::new(vec![(x + 0.2, mean - std), (x + 0.2, mean + std)], whisker),
                PathElement::new(
                    vec![(x + 0.14, mean - std), (x + 0.26, mean - std)],
                    whisker,
                ),
                PathElement::new(
                    vec![(x + 0.14, mean + std), (x + 0.26, mean + std)],
                    whisker,
                ),
            ])?;
            // The runs, spread sideways so equal values stay visible.
            let k = after.len().max(1) as f64;
            chart.draw_series(after.iter().enumerate().map(|(j, v)| {
                let dx = if k > 1.0 {
                    -0.12 + 0.24 * j as f64 / (k - 1.0)
                } else {
                    0.0
                };
                Circle::new(
                    (x + 0.2 + dx, *v),
                    pt(2.0),
                    ShapeStyle::from(&WHITE.mix(0.9)).filled().stroke_width(1),
                )
            }))?;
            chart.draw_series(after.iter().enumerate().map(|(j, v)| {
                let dx = if k > 1.0 {
                    -0.12 + 0.24 * j as f64 / (k - 1.0)
                } else {
                    0.0
                };
                Circle::new((x + 0.2 + dx, *v), pt(2.0), BLACK.stroke_width(1))
            }))?;
        }
        Ok(())
    }
}
