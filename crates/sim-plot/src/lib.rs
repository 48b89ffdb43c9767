//! sim-plot: the paper's figures, its two tables and a report, regenerated
//! from a study's tables alone (`<study>/tables/*.parquet` and `study.toml`),
//! so anyone with the tables can make them.
//!
//! - [`study`]: the tables read into typed rows.
//! - [`style`]: sizes, font, colours, PNG and SVG output.
//! - [`figures`]: one module per figure of SPEC, "Figures".
//! - [`paper_tables`]: Table 1 and Table 2 as Markdown and CSV.
//! - [`report`]: `report.md`, figures and tables with a sentence each and the
//!   paper's three findings.

pub mod figures;
pub mod paper_tables;
pub mod report;
pub mod study;
pub mod style;

use figures::Outcome;
use std::path::{Path, PathBuf};
use style::Format;

/// What to make.
#[derive(Debug, Clone)]
pub struct Options {
    /// Figures whose names start with one of these (`fig2`, `fig1`,
    /// `layers_cka`); all of [`figures::NAMES`] when `None`.
    pub only: Option<Vec<String>>,
    pub formats: Vec<Format>,
}

impl Default for Options {
    fn default() -> Self {
        Options { only: None, formats: vec![Format::Png, Format::Svg] }
    }
}

/// What was made.
pub struct Rendered {
    /// Figures, tables and the report.
    pub files: Vec<PathBuf>,
    /// Figures not drawn, with why.
    pub left_out: Vec<(String, String)>,
}

/// `<study>/figures/`.
pub fn figures_dir(study: &Path) -> PathBuf {
    study.join("figures")
}

/// `<study>/report.md`.
pub fn report_path(study: &Path) -> PathBuf {
    study.join("report.md")
}

/// Makes the figures, `tables/table{1,2}.{md,csv}` and `report.md` (unless
/// only some figures are asked for) of the study at `dir`.
pub fn render_study(dir: &Path, options: &Options) -> anyhow::Result<Rendered> {
    let study = study::Study::read(dir)?;
    if let Some(only) = &options.only
        && let Some(bad) = only.iter().find(|o| !figures::NAMES.iter().any(|n| n.starts_with(o.as_str())))
    {
        anyhow::bail!("--only {bad}: no such figure (figures: {})", figures::NAMES.join(", "));
    }
    let out = figures_dir(dir);
    std::fs::create_dir_all(&out)?;
    let mut files = Vec::new();
    let mut outcomes = Vec::new();
    for name in figures::names(&study) {
        if options.only.as_ref().is_some_and(|o| !o.iter().any(|prefix| name.starts_with(prefix.as_str()))) {
            continue;
        }
        let outcome = figures::render(&study, name, &out, &options.formats)?;
        if let Outcome::Written { files: f, .. } = &outcome {
            files.extend(f.iter().cloned());
        }
        outcomes.push((name.to_string(), outcome));
    }
    let tables_dir = sim_study::StudyDir::new(dir).tables_dir();
    files.extend(paper_tables::write(&study, &tables_dir)?);
    // The report shows every figure: a partial rendering (--only) keeps it.
    if options.only.is_none() {
        let md = |name: &str| std::fs::read_to_string(tables_dir.join(name)).unwrap_or_default();
        let text = report::report(&study, &outcomes, [&md("table1.md"), &md("table2.md")]);
        sim_study::write_atomic(&report_path(dir), text.as_bytes())?;
        files.push(report_path(dir));
    }
    let left_out = outcomes.into_iter().filter_map(|(n, o)| match o { Outcome::LeftOut(why) => Some((n, why)), _ => None }).collect();
    Ok(Rendered { files, left_out })
}

/// Whether `report.md` is newer than every table: then the figures are too,
/// and `cargo xtask reproduce` skips this stage.
pub fn up_to_date(dir: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(report) = modified(&report_path(dir)) else { return false };
    let tables = sim_study::StudyDir::new(dir).tables_dir();
    sim_study::tables::file::ALL.iter().all(|t| modified(&tables.join(t)).is_none_or(|m| m <= report))
}
