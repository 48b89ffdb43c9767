//! How every figure looks and is written: sizes for a two-column paper, one
//! bundled font (DejaVu Sans, so a fresh machine needs no font package), one
//! colour-blind-safe colour per backbone (Okabe–Ito) across every figure, and
//! PNG and SVG files written atomically.

use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Pixels per inch of the PNG files (SVG uses the same pixel grid).
pub const DPI: f64 = 200.0;
/// A column of a two-column paper, and the full text width, in inches.
pub const SINGLE_COLUMN: f64 = 3.4;
pub const FULL_WIDTH: f64 = 7.0;

/// A figure's size in pixels from its size in inches.
pub fn inches(width: f64, height: f64) -> (u32, u32) {
    ((width * DPI).round() as u32, (height * DPI).round() as u32)
}

/// The width of a figure of `panels` side by side: a column each, up to the
/// full text width.
pub fn panels_width(panels: usize) -> f64 {
    (SINGLE_COLUMN * panels.max(1) as f64).min(FULL_WIDTH)
}

/// Panels in a row of a figure with one panel per backbone: more wrap onto
/// further rows, so each keeps a third of the page (twelve side by side
/// left each too narrow to read).
pub const PANELS_PER_ROW: usize = 3;

/// Rows × columns of a figure of `panels` panels, [`PANELS_PER_ROW`] at most.
pub fn panel_grid(panels: usize) -> (usize, usize) {
    let columns = panels.clamp(1, PANELS_PER_ROW);
    (panels.max(1).div_ceil(columns), columns)
}

/// The size of a figure of `panels` panels in [`panel_grid`], each row
/// `row_height` inches high.
pub fn panels_size(panels: usize, row_height: f64) -> (u32, u32) {
    let (rows, columns) = panel_grid(panels);
    inches(panels_width(columns), row_height * rows as f64)
}

/// A length in points (1/72 inch) in pixels.
pub fn pt(points: f64) -> u32 {
    (points / 72.0 * DPI).round() as u32
}

const FONT_NAME: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// Registers the bundled font once per process.
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT_BYTES)
            .unwrap_or_else(|_| panic!("the bundled font is a valid TTF"));
    });
}

/// Text at `points` size (7–9 pt read well at print size).
pub fn font(points: f64) -> TextStyle<'static> {
    (FONT_NAME, pt(points) as f64).into_font().into()
}

/// The backbones' colours: Okabe & Ito's colour-blind-safe palette (black
/// last), then, for a study of more than eight backbones (a model zoo),
/// four dark colours of Paul Tol's palettes that none of the eight is
/// close to (indigo, wine, olive, brown), so twelve backbones never share
/// a colour.
const BACKBONE_COLOURS: [RGBColor; 12] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(240, 228, 66),  // yellow
    RGBColor(0, 0, 0),
    RGBColor(51, 34, 136),  // indigo
    RGBColor(136, 34, 85),  // wine
    RGBColor(153, 153, 51), // olive
    RGBColor(140, 81, 10),  // brown
];

/// A backbone's colour: by its place in the study's list, the same in
/// every figure (repeating after twelve).
pub fn backbone_color(backbones: &[String], name: &str) -> RGBColor {
    let i = backbones.iter().position(|b| b == name).unwrap_or(0);
    BACKBONE_COLOURS[i % BACKBONE_COLOURS.len()]
}

pub const GREY: RGBColor = RGBColor(150, 150, 150);

/// The file formats a figure is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }

    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "png" => Some(Format::Png),
            "svg" => Some(Format::Svg),
            _ => None,
        }
    }
}

/// A figure ready to be drawn on any plotters backend.
pub trait Figure {
    /// The file stem, e.g. `fig2_similarity_space`.
    fn name(&self) -> String;
    /// Pixels (see [`inches`]).
    fn size(&self) -> (u32, u32);
    /// Vector output too, unless the figure is a raster of images.
    fn vector(&self) -> bool {
        true
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static;
}

/// Draws `figure` into `dir` in each format (a raster-only figure skips SVG);
/// returns the files written.
pub fn save<F: Figure>(figure: &F, dir: &Path, formats: &[Format]) -> anyhow::Result<Vec<PathBuf>> {
    register_font();
    let (w, h) = figure.size();
    let mut written = Vec::new();
    for &format in formats {
        let path = dir.join(format!("{}.{}", figure.name(), format.extension()));
        let bytes = match format {
            Format::Png => {
                let mut pixels = vec![255u8; (w * h * 3) as usize];
                {
                    let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
                    figure
                        .draw(&root)
                        .with_context(|| format!("drawing {}", path.display()))?;
                    root.present()
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                }
                let image =
                    image::RgbImage::from_raw(w, h, pixels).expect("the buffer is w × h × 3");
                let mut png = Vec::new();
                image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
                png
            }
            Format::Svg if !figure.vector() => continue,
            Format::Svg => {
                let mut svg = String::new();
                {
                    let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
                    root.fill(&WHITE)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                    figure
                        .draw(&root)
                        .with_context(|| format!("drawing {}", path.display()))?;
                    root.present()
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                }
                svg.into_bytes()
            }
        };
        sim_study::write_atomic(&path, &bytes)?;
        written.push(path);
    }
    Ok(written)
}

/// A chart on `area` with a title, x and y ranges, and room for tick labels.
pub type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

pub fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: Range<f64>,
    y: Range<f64>,
) -> anyhow::Result<Chart<'a, DB>>
where
    DB::ErrorType: 'static,
{
    let mut builder = ChartBuilder::on(area);
    if !title.is_empty() {
        builder.caption(title, font(8.5));
    }
    builder
        .margin(pt(5.0))
        .margin_right(pt(9.0))
        .x_label_area_size(pt(24.0))
        .y_label_area_size(pt(34.0));
    Ok(builder.build_cartesian_2d(x, y)?)
}

/// Tick labels of the x axis: how many, and how to write them.
pub enum Ticks<'f> {
    /// About this many, as numbers.
    Numbers(usize),
    /// Whole numbers only (epochs, layers), at most this many.
    Integers(usize),
    /// Categories at 0, 1, 2, … named by the list.
    Names(&'f [String]),
}

/// The axes: light grid, tick labels at 7 pt, descriptions (with units) at 8 pt.
pub fn axes<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    x_desc: &str,
    y_desc: &str,
    x_ticks: Ticks<'_>,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let number = |v: &f64| trim(*v);
    let integer = |v: &f64| {
        if (v - v.round()).abs() < 1e-9 {
            format!("{}", v.round())
        } else {
            String::new()
        }
    };
    let names = |v: &f64| match &x_ticks {
        Ticks::Names(n) if (v - v.round()).abs() < 1e-9 && v.round() >= 0.0 => {
            n.get(v.round() as usize).cloned().unwrap_or_default()
        }
        _ => String::new(),
    };
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(218, 218, 218))
        .label_style(font(7.0))
        .axis_desc_style(font(8.0))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .y_labels(6)
        .y_label_formatter(&number);
    match &x_ticks {
        Ticks::Numbers(n) => mesh.x_labels(*n).x_label_formatter(&number),
        Ticks::Integers(n) => mesh.x_labels(*n).x_label_formatter(&integer),
        Ticks::Names(n) => mesh
            .x_labels(n.len() * 4 + 1)
            .x_label_formatter(&names)
            .disable_x_mesh(),
    };
    mesh.draw()?;
    Ok(())
}

/// A tick label without trailing zeros (0.5, 10, 0.25).
pub fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// How a legend entry is marked.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    /// A filled square (bars, bands, regions).
    Square(RGBAColor),
    /// An outlined square.
    Outline(RGBColor),
    /// A line; dashed or not.
    Line(RGBColor, bool),
    /// A filled dot (points).
    Dot(RGBAColor),
    /// A ring (a marked point).
    Ring(RGBColor),
    /// A cross (a point set apart from the others).
    Cross(RGBColor),
}

/// Splits `area` into the chart's part and a legend strip below it that holds
/// `entries` in rows (so a legend never hides data), draws the legend, and
/// returns the chart's part.
pub fn with_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(Mark, String)],
) -> anyhow::Result<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    if entries.is_empty() {
        return Ok(area.clone());
    }
    let (width, height) = area.dim_in_pixel();
    let style = font(7.0);
    let (mark, gap, line) = (pt(9.0) as i32, pt(3.0) as i32, pt(10.0) as i32);
    let left = pt(10.0) as i32;
    // Lay the entries out in rows.
    let mut rows: Vec<Vec<(i32, usize)>> = vec![Vec::new()];
    let mut x = left;
    for (i, (_, text)) in entries.iter().enumerate() {
        let (w, _) = area.estimate_text_size(text, &style)?;
        let entry = mark + gap + w as i32 + pt(10.0) as i32;
        if x + entry > width as i32 && !rows.last().expect("a row").is_empty() {
            rows.push(Vec::new());
            x = left;
        }
        rows.last_mut().expect("a row").push((x, i));
        x += entry;
    }
    let strip = (rows.len() as i32 * line + pt(4.0) as i32) as u32;
    let (chart_area, legend_area) = area.split_vertically(height.saturating_sub(strip));
    for (r, row) in rows.iter().enumerate() {
        let y = pt(2.0) as i32 + r as i32 * line + line / 2;
        for &(x, i) in row {
            let (m, text) = &entries[i];
            let (x0, x1, half) = (x, x + mark, pt(3.0) as i32);
            match *m {
                Mark::Square(c) => legend_area.draw(&Rectangle::new(
                    [(x0, y - half), (x1 - 2, y + half)],
                    c.filled(),
                ))?,
                Mark::Outline(c) => legend_area.draw(&Rectangle::new(
                    [(x0, y - half), (x1 - 2, y + half)],
                    c.stroke_width(pt(0.8)),
                ))?,
                Mark::Line(c, false) => legend_area.draw(&PathElement::new(
                    vec![(x0, y), (x1, y)],
                    c.stroke_width(pt(1.2)),
                ))?,
                Mark::Line(c, true) => {
                    legend_area.draw(&PathElement::new(
                        vec![(x0, y), (x0 + mark / 3, y)],
                        c.stroke_width(pt(1.2)),
                    ))?;
                    legend_area.draw(&PathElement::new(
                        vec![(x1 - mark / 3, y), (x1, y)],
                        c.stroke_width(pt(1.2)),
                    ))?;
                }
                Mark::Dot(c) => {
                    legend_area.draw(&Circle::new(((x0 + x1) / 2, y), pt(2.3), c.filled()))?
                }
                Mark::Ring(c) => legend_area.draw(&Circle::new(
                    ((x0 + x1) / 2, y),
                    pt(3.2),
                    c.stroke_width(pt(1.0)),
                ))?,
                Mark::Cross(c) => legend_area.draw(&Cross::new(
                    ((x0 + x1) / 2, y),
                    pt(3.2),
                    c.stroke_width(pt(1.4)),
                ))?,
            }
            legend_area.draw(&Text::new(
                text.clone(),
                (x1 + gap, y),
                style.pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
    }
    Ok(chart_area)
}

/// A range that holds `values` with some air, or `fallback` when there are none;
/// never empty (a constant gets ±`min_half_width`).
pub fn padded_range(
    values: impl IntoIterator<Item = f64>,
    fallback: Range<f64>,
    min_half_width: f64,
) -> Range<f64> {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if lo > hi {
        return fallback;
    }
    let centre = (lo + hi) / 2.0;
    let half = ((hi - lo) / 2.0 * 1.12).max(min_half_width);
    centre - half..centre + half
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_backbones_get_twelve_colours_the_first_eight_okabe_and_ito_s() {
        let names: Vec<String> = (0..13).map(|i| format!("b{i}")).collect();
        let colours: Vec<RGBColor> = names.iter().map(|n| backbone_color(&names, n)).collect();
        for (i, a) in colours[..12].iter().enumerate() {
            for b in &colours[i + 1..12] {
                assert_ne!(a, b, "two of the first twelve backbones share a colour");
            }
        }
        assert_eq!(
            colours[0],
            RGBColor(0, 114, 178),
            "Okabe & Ito's blue first"
        );
        assert_eq!(colours[7], BLACK, "black eighth");
        assert_eq!(colours[12], colours[0], "the thirteenth repeats the first");
    }

    #[test]
    fn panels_wrap_after_three_and_keep_the_width_of_three() {
        assert_eq!(panel_grid(0), (1, 1));
        assert_eq!(panel_grid(2), (1, 2));
        assert_eq!(panel_grid(3), (1, 3));
        assert_eq!(panel_grid(12), (4, 3));
        assert_eq!(panels_size(2, 2.5), inches(2.0 * SINGLE_COLUMN, 2.5));
        assert_eq!(panels_size(12, 2.5), inches(FULL_WIDTH, 10.0));
    }
}
