//! A figure per medical data set, drawn side by side (figures a column wide)
//! or one above the other (wider ones), each under its data set's name: how
//! a study with several medical data sets shows them. With one data set the
//! figure is drawn alone, as it always was.

use super::Captioned;
use crate::study::Study;
use crate::style::*;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The data sets' figures, in the study's order.
pub struct Faceted<F> {
    panels: Vec<(String, F)>,
    /// Data sets whose figure could not be drawn, and why.
    left_out: Vec<(String, String)>,
}

/// Height of the strip that names a facet's data set.
fn title_height() -> u32 {
    pt(12.0)
}

impl<F: Figure> Faceted<F> {
    /// `prepare` on each data set's rows; an error only when no data set's
    /// figure can be drawn (then the first data set's reason).
    pub fn prepare(study: &Study, prepare: impl Fn(&Study) -> Result<F, String>) -> Result<Faceted<F>, String> {
        let (mut panels, mut left_out) = (Vec::new(), Vec::new());
        for dataset in &study.datasets {
            match prepare(&study.for_dataset(dataset)) {
                Ok(figure) => panels.push((dataset.clone(), figure)),
                Err(why) => left_out.push((dataset.clone(), why)),
            }
        }
        if panels.is_empty() {
            return Err(left_out.into_iter().next().map_or_else(|| "no medical data set".into(), |(_, why)| why));
        }
        Ok(Faceted { panels, left_out })
    }

    /// The largest panel: every facet gets this much room.
    fn panel_size(&self) -> (u32, u32) {
        self.panels.iter().map(|(_, f)| f.size()).fold((0, 0), |(w, h), (pw, ph)| (w.max(pw), h.max(ph)))
    }

    /// One data set's figure alone, without a title strip.
    fn alone(&self) -> Option<&F> {
        match &self.panels[..] {
            [(_, only)] if self.left_out.is_empty() => Some(only),
            _ => None,
        }
    }

    /// Side by side when a panel is a column wide; else one above the other.
    fn side_by_side(&self) -> bool {
        self.panel_size().0 <= inches(SINGLE_COLUMN, 1.0).0
    }
}

impl<F: Figure> Figure for Faceted<F> {
    fn name(&self) -> String {
        self.panels[0].1.name()
    }

    fn size(&self) -> (u32, u32) {
        if let Some(only) = self.alone() {
            return only.size();
        }
        let (w, h) = self.panel_size();
        let n = self.panels.len() as u32;
        let h = h + title_height();
        if self.side_by_side() { (w * n, h) } else { (w, h * n) }
    }

    fn vector(&self) -> bool {
        self.panels[0].1.vector()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        if let Some(only) = self.alone() {
            return only.draw(root);
        }
        let n = self.panels.len();
        let cells = if self.side_by_side() { root.split_evenly((1, n)) } else { root.split_evenly((n, 1)) };
        for (cell, (dataset, figure)) in cells.iter().zip(&self.panels) {
            let (title, body) = cell.split_vertically(title_height());
            let (w, h) = title.dim_in_pixel();
            let style = font(8.5).pos(Pos::new(HPos::Center, VPos::Center));
            title.draw(&Text::new(format!("medical data set: {dataset}"), ((w / 2) as i32, (h / 2) as i32), style))?;
            figure.draw(&body)?;
        }
        Ok(())
    }
}

impl<F: Captioned> Captioned for Faceted<F> {
    fn caption(&self) -> String {
        if let Some(only) = self.alone() {
            return only.caption();
        }
        let drawn = self.panels.iter().map(|(d, f)| format!("**{d}**: {}", f.caption()));
        let missing = self.left_out.iter().map(|(d, why)| format!("**{d}**: not drawn ({why})."));
        drawn.chain(missing).collect::<Vec<_>>().join(" ")
    }
}
