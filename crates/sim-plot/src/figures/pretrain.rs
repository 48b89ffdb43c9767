//! The learning curves of the backbones the tool pre-trained: k-NN top-1 on
//! the natural validation split (train split the bank) after every few
//! pre-training epochs, one line per backbone; a backbone not trained (the
//! random initialisation) a dashed level. Shown in the report's
//! "Pre-trained backbones", beside what each backbone knows before
//! fine-tuning.

use super::Captioned;
use crate::study::Study;
use crate::style::*;
use plotters::coord::Shift;
use plotters::prelude::*;
use sim_study::config::Objective;

/// A pre-trained backbone's name, its (epoch, k-NN %) points, and its last
/// epoch's prototypes in use (DINO) of its `out_dim`.
type Curve = (String, Vec<(f64, f64)>, Option<(f64, usize)>);

pub struct LearningCurves {
    backbones: Vec<String>,
    curves: Vec<Curve>,
    /// Per backbone not trained: name, k-NN % (its epoch 0's).
    levels: Vec<(String, f64)>,
}

impl LearningCurves {
    pub fn prepare(study: &Study) -> Result<LearningCurves, String> {
        let rows = study.pretrain_epochs.as_deref().unwrap_or_default();
        let mut curves = Vec::new();
        for b in &study.config.backbones {
            let mine: Vec<_> = rows.iter().filter(|r| r.backbone == b.name).collect();
            let points: Vec<(f64, f64)> = mine
                .iter()
                .filter_map(|r| Some((r.epoch as f64, r.knn_top1? * 100.0)))
                .collect();
            if points.is_empty() {
                continue;
            }
            let prototypes = mine
                .last()
                .and_then(|r| r.effective_prototypes)
                .zip(b.pretrain().map(|p| p.dino.out_dim));
            curves.push((b.name.clone(), points, prototypes));
        }
        if curves.is_empty() {
            return Err("no pre-training with a k-NN learning curve in the tables \
                (pre-trained before the curves were kept)"
                .into());
        }
        // k-NN does not depend on the medical data set: the first one's rows.
        let pretrain = study.pretrain.as_deref().unwrap_or_default();
        let levels = pretrain
            .iter()
            .filter(|r| r.dataset == pretrain[0].dataset && r.objective == Objective::None.name())
            .map(|r| (r.backbone.clone(), r.knn_top1 * 100.0))
            .collect();
        Ok(LearningCurves {
            backbones: study.backbones.clone(),
            curves,
            levels,
        })
    }
}

impl Captioned for LearningCurves {
    fn caption(&self) -> String {
        let mut parts: Vec<String> = self
            .curves
            .iter()
            .map(|(b, points, prototypes)| {
                let (epoch, knn) = points.last().expect("a curve has a point");
                let used = prototypes.map_or(String::new(), |(k, of)| {
                    format!(", {k:.0} of {of} prototypes in use in its last epoch")
                });
                format!("`{b}` {knn:.1} % after {epoch} epochs{used}")
            })
            .collect();
        parts.extend(
            self.levels
                .iter()
                .map(|(b, knn)| format!("`{b}` {knn:.1} % (not pre-trained)")),
        );
        format!(
            "k-NN top-1 on the natural validation split while pre-training (train split the \
                bank): {}.",
            parts.join("; ")
        )
    }
}

impl Figure for LearningCurves {
    fn name(&self) -> String {
        "pretrain_knn".into()
    }

    fn size(&self) -> (u32, u32) {
        inches(SINGLE_COLUMN, 2.4)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let last = self
            .curves
            .iter()
            .flat_map(|c| c.1.iter().map(|p| p.0))
            .fold(1.0f64, f64::max);
        let values = self
            .curves
            .iter()
            .flat_map(|c| c.1.iter().map(|p| p.1))
            .chain(self.levels.iter().map(|l| l.1));
        let top = values.fold(0.0f64, f64::max);
        let y_max = ((top * 1.15 / 10.0).ceil() * 10.0).clamp(10.0, 100.0);
        let mut entries: Vec<(Mark, String)> = self
            .curves
            .iter()
            .map(|c| {
                (
                    Mark::Line(backbone_color(&self.backbones, &c.0), false),
                    c.0.clone(),
                )
            })
            .collect();
        entries.extend(self.levels.iter().map(|l| {
            (
                Mark::Line(backbone_color(&self.backbones, &l.0), true),
                format!("{} (not pre-trained)", l.0),
            )
        }));
        let area = with_legend(root, &entries)?;
        let mut chart = chart(&area, "", 0.0..last, 0.0..y_max)?;
        axes(
            &mut chart,
            "pre-training epoch",
            "k-NN top-1, natural val (%)",
            Ticks::Integers(8),
        )?;
        for (name, points, _) in &self.curves {
            let color = backbone_color(&self.backbones, name);
            chart.draw_series([PathElement::new(
                points.clone(),
                color.stroke_width(pt(1.2)),
            )])?;
            chart.draw_series(
                points
                    .iter()
                    .map(|&p| Circle::new(p, pt(2.0), color.filled())),
            )?;
        }
        for (name, knn) in &self.levels {
            let color = backbone_color(&self.backbones, name);
            // Dashed: short segments along the level.
            let dashes = (0..20).map(|i| {
                let x = last * i as f64 / 20.0;
                PathElement::new(
                    vec![(x, *knn), (x + last / 40.0, *knn)],
                    color.stroke_width(pt(1.2)),
                )
            });
            chart.draw_series(dashes)?;
        }
        Ok(())
    }
}
