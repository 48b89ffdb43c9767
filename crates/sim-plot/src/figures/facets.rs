//! A figure per facet of a study (medical data set × method), drawn two to a
//! row (figures a column wide) or one above the other (wider ones), each
//! under its facet's name: how a study with several medical data sets or
//! methods shows them. With one facet the figure is drawn alone, as it
//! always was.

use super::Captioned;
use crate::study::{Facet, Study};
use crate::style::*;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The facets' figures, in the study's order.
pub struct Faceted<F> {
    panels: Vec<(Facet, F)>,
    /// Facets whose figure could not be drawn, and why.
    left_out: Vec<(Facet, String)>,
}

/// Height of the strip that names a facet.
fn title_height() -> u32 {
    pt(12.0)
}

impl<F: Figure> Faceted<F> {
    /// `prepare` on each facet's rows; an error only when no facet's figure
    /// can be drawn (then the first facet's reason).
    pub fn prepare(
        study: &Study,
        prepare: impl Fn(&Study) -> Result<F, String>,
    ) -> Result<Faceted<F>, String> {
        let (mut panels, mut left_out) = (Vec::new(), Vec::new());
        for facet in study.facets() {
            match prepare(&study.facet(&facet)) {
                Ok(figure) => panels.push((facet, figure)),
                Err(why) => left_out.push((facet, why)),
            }
        }
        if panels.is_empty() {
            return Err(left_out
                .into_iter()
                .next()
                .map_or_else(|| "no medical data set".into(), |(_, why)| why));
        }
        Ok(Faceted { panels, left_out })
    }

    /// The largest panel: every facet gets this much room.
    fn panel_size(&self) -> (u32, u32) {
        self.panels
            .iter()
            .map(|(_, f)| f.size())
            .fold((0, 0), |(w, h), (pw, ph)| (w.max(pw), h.max(ph)))
    }

    /// One facet's figure alone, without a title strip.
    fn alone(&self) -> Option<&F> {
        match &self.panels[..] {
            [(_, only)] if self.left_out.is_empty() => Some(only),
            _ => None,
        }
    }

    /// Rows × columns of the facets: two to a row when a panel is a column
    /// wide (a page's width), else one above the other.
    fn grid(&self) -> (usize, usize) {
        let n = self.panels.len();
        let columns = if self.panel_size().0 <= inches(SINGLE_COLUMN, 1.0).0 {
            n.min(2)
        } else {
            1
        };
        (n.div_ceil(columns), columns)
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
        let (rows, columns) = self.grid();
        (w * columns as u32, (h + title_height()) * rows as u32)
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
        let cells = root.split_evenly(self.grid());
        for (cell, (facet, figure)) in cells.iter().zip(&self.panels) {
            let (title, body) = cell.split_vertically(title_height());
            let (w, h) = title.dim_in_pixel();
            let style = font(8.5).pos(Pos::new(HPos::Center, VPos::Center));
            title.draw(&Text::new(
                facet.title(),
                ((w / 2) as i32, (h / 2) as i32),
                style,
            ))?;
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
        let drawn = self
            .panels
            .iter()
            .map(|(d, f)| format!("**{}**: {}", d.label(), f.caption()));
        let missing = self
            .left_out
            .iter()
            .map(|(d, why)| format!("**{}**: not drawn ({why}).", d.label()));
        drawn.chain(missing).collect::<Vec<_>>().join(" ")
    }
}
