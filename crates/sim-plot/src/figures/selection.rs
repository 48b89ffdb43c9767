//! Model selection's two figures, per (data set, method): each predictor
//! against the candidates' final balanced accuracy (one small panel per
//! predictor, a point per candidate backbone, coloured by how it was
//! pre-trained), and each predictor's weighted Kendall τ with its interval
//! beside the linear probe's. Shown under the report's "Figures"; read with
//! its "Could we have picked the backbone before fine-tuning?".

use super::Captioned;
use crate::study::{SelectionRow, SelectionSummaryRow, Study};
use crate::style::*;
use plotters::coord::Shift;
use plotters::prelude::*;
use sim_metrics::selection::{Kind, Outcome, Predictor};
use sim_study::config::Paradigm;

const SUPERVISED: RGBColor = RGBColor(0, 114, 178);
const SELF_SUPERVISED: RGBColor = RGBColor(230, 159, 0);

/// A candidate's colour: its pre-training's paradigm.
fn paradigm_color(study: &Study, backbone: &str) -> RGBColor {
    match study.config.backbone(backbone).map(|b| b.paradigm()) {
        Ok(Paradigm::Supervised) => SUPERVISED,
        Ok(Paradigm::SelfSupervised) => SELF_SUPERVISED,
        _ => GREY,
    }
}

fn paradigm_legend() -> Vec<(Mark, String)> {
    vec![
        (Mark::Dot(SUPERVISED.into()), "supervised".into()),
        (Mark::Dot(SELF_SUPERVISED.into()), "self-supervised".into()),
        (Mark::Dot(GREY.into()), "neither (random init.)".into()),
    ]
}

/// The summary rows of one facet against the final balanced accuracy, in
/// predictor order.
fn accuracy_rows(study: &Study) -> Vec<(Predictor, SelectionSummaryRow)> {
    let rows = study.selection_summary.as_deref().unwrap_or_default();
    Predictor::ALL
        .into_iter()
        .filter_map(|p| {
            rows.iter()
                .find(|r| r.predictor == p.name() && r.outcome == Outcome::BalancedAccuracy.name())
                .map(|r| (p, r.clone()))
        })
        .collect()
}

fn no_selection() -> String {
    "no model selection in the tables (fewer than 3 backbones with a finished run)".into()
}

/// A candidate in a panel: its colour, the predictor's value, its final
/// balanced accuracy (%).
type Point = (RGBColor, f64, f64);

/// One panel per predictor: its value against the final balanced accuracy.
pub struct SelectionScatter {
    /// Per predictor: τ, and a point per candidate.
    panels: Vec<(Predictor, f64, Vec<Point>)>,
}

impl SelectionScatter {
    pub fn prepare(study: &Study) -> Result<SelectionScatter, String> {
        let rows: &[SelectionRow] = study.selection.as_deref().unwrap_or_default();
        let panels: Vec<_> = accuracy_rows(study)
            .into_iter()
            .map(|(p, summary)| {
                let points = rows
                    .iter()
                    .filter(|r| r.predictor == p.name())
                    .map(|r| {
                        (
                            paradigm_color(study, &r.backbone),
                            r.value,
                            r.balanced_accuracy * 100.0,
                        )
                    })
                    .collect();
                (p, summary.kendall_tau, points)
            })
            .collect();
        if panels.is_empty() {
            return Err(no_selection());
        }
        Ok(SelectionScatter { panels })
    }

    fn columns(&self) -> usize {
        self.panels.len().min(4)
    }
}

impl Captioned for SelectionScatter {
    fn caption(&self) -> String {
        let candidates = self.panels[0].2.len();
        format!(
            "Each predictor (a panel, its weighted Kendall τ in the title) against the final \
             balanced accuracy of the {candidates} candidate backbones (points: mean over \
             their finished runs; colour: how the backbone was pre-trained). `probe`: the \
             linear probe; `@1`: after epoch 1 (similarity, balanced accuracy, ECE; means \
             over the runs); ↓: lower ranks higher."
        )
    }
}

impl Figure for SelectionScatter {
    fn name(&self) -> String {
        "selection_scores".into()
    }

    fn size(&self) -> (u32, u32) {
        let rows = self.panels.len().div_ceil(self.columns());
        inches(FULL_WIDTH, 1.55 * rows as f64 + 0.3)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let area = with_legend(root, &paradigm_legend())?;
        let columns = self.columns();
        let rows = self.panels.len().div_ceil(columns);
        let cells = area.split_evenly((rows, columns));
        let y = padded_range(
            self.panels.iter().flat_map(|p| p.2.iter().map(|q| q.2)),
            0.0..100.0,
            1.0,
        );
        for (i, (cell, (p, tau, points))) in cells.iter().zip(&self.panels).enumerate() {
            let x = padded_range(points.iter().map(|q| q.1), 0.0..1.0, 1e-3);
            let arrow = if p.higher_is_better() { "" } else { " ↓" };
            let title = format!("{}{arrow} (τ = {tau:.2})", short(*p));
            let mut chart = chart(cell, &title, x, y.clone())?;
            let y_desc = if i % columns == 0 {
                "final bal. acc. (%)"
            } else {
                ""
            };
            axes(&mut chart, "", y_desc, Ticks::Numbers(3))?;
            chart.draw_series(
                points
                    .iter()
                    .map(|&(color, v, acc)| Circle::new((v, acc), pt(2.2), color.filled())),
            )?;
        }
        Ok(())
    }
}

/// Each predictor's τ against the final balanced accuracy, with its interval.
pub struct SelectionTau {
    rows: Vec<(Predictor, SelectionSummaryRow)>,
    probe: Option<f64>,
}

impl SelectionTau {
    pub fn prepare(study: &Study) -> Result<SelectionTau, String> {
        let rows = accuracy_rows(study);
        if rows.is_empty() {
            return Err(no_selection());
        }
        let probe = rows
            .iter()
            .find(|r| r.0 == Predictor::LinearProbe)
            .map(|r| r.1.kendall_tau);
        Ok(SelectionTau { rows, probe })
    }
}

/// A predictor's label under the τ figure's x axis.
fn short(p: Predictor) -> String {
    match p {
        Predictor::LinearProbe => "probe".into(),
        Predictor::SimilarityEpoch1 => "sim@1".into(),
        Predictor::BalancedAccuracyEpoch1 => "acc@1".into(),
        Predictor::EceEpoch1 => "ece@1".into(),
        other => other.name().into(),
    }
}

impl Captioned for SelectionTau {
    fn caption(&self) -> String {
        let best = self
            .rows
            .iter()
            .max_by(|a, b| a.1.kendall_tau.total_cmp(&b.1.kendall_tau))
            .expect("a row");
        format!(
            "Weighted Kendall τ between each predictor's ranking of the candidates and their \
             final balanced accuracy, with its 95 % bootstrap interval over seeds (blue: \
             before fine-tuning; orange: after epoch 1, `@1`; dashed: the linear probe's τ). \
             Highest: `{}` at {:.2}.",
            best.0.name(),
            best.1.kendall_tau
        )
    }
}

impl Figure for SelectionTau {
    fn name(&self) -> String {
        "selection_tau".into()
    }

    fn size(&self) -> (u32, u32) {
        inches(FULL_WIDTH, 2.4)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let mut legend = vec![
            (Mark::Dot(SUPERVISED.into()), "before fine-tuning".into()),
            (Mark::Dot(SELF_SUPERVISED.into()), "after epoch 1".into()),
        ];
        if self.probe.is_some() {
            legend.push((Mark::Line(GREY, true), "linear probe's τ".into()));
        }
        let area = with_legend(root, &legend)?;
        let names: Vec<String> = self.rows.iter().map(|r| short(r.0)).collect();
        let n = names.len() as f64;
        let mut chart = chart(&area, "", -0.5..n - 0.5, -1.05..1.05)?;
        axes(&mut chart, "", "weighted Kendall τ", Ticks::Names(&names))?;
        chart.draw_series([PathElement::new(
            vec![(-0.5, 0.0), (n - 0.5, 0.0)],
            GREY.stroke_width(pt(0.8)),
        )])?;
        if let Some(probe) = self.probe {
            let dashes = (0..30).map(|i| {
                let x = -0.5 + n * i as f64 / 30.0;
                PathElement::new(
                    vec![(x, probe), (x + n / 60.0, probe)],
                    GREY.stroke_width(pt(1.0)),
                )
            });
            chart.draw_series(dashes)?;
        }
        for (i, (p, row)) in self.rows.iter().enumerate() {
            let color = match p.kind() {
                Kind::Before => SUPERVISED,
                Kind::FirstEpoch => SELF_SUPERVISED,
            };
            let x = i as f64;
            if let (Some(low), Some(high)) = (row.kendall_tau_ci_low, row.kendall_tau_ci_high) {
                chart.draw_series([PathElement::new(
                    vec![(x, low), (x, high)],
                    color.stroke_width(pt(1.2)),
                )])?;
            }
            chart.draw_series([Circle::new((x, row.kendall_tau), pt(2.6), color.filled())])?;
        }
        Ok(())
    }
}
