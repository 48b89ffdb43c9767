//! sim-plot: the paper's figures, its two tables and a report, regenerated
//! from a study's tables alone (`<study>/tables/*.parquet` and `study.toml`),
//! so anyone with the tables can make them.
//!
//! - [`study`]: the tables read into typed rows.
//! - [`scale`]: how a similarity measure is shown (`--measure`).
//! - [`style`]: sizes, font, colours, PNG and SVG output.
//! - [`figures`]: one module per figure of docs/SPEC.md, "Figures".
//! - [`paper_tables`]: Table 1 and Table 2 as Markdown and CSV.
//! - [`report`]: `report.md`, figures and tables with a sentence each and the
//!   paper's three findings.

pub mod figures;
pub mod paper_tables;
pub mod report;
pub mod scale;
pub mod study;
pub mod style;

use figures::Outcome;
use sim_study::StudyDir;
use sim_study::config::Measure;
use sim_study::manifest::Manifest;
use std::path::{Path, PathBuf};
use style::Format;

/// What to make.
#[derive(Debug, Clone)]
pub struct Options {
    /// Figures whose names start with one of these (`fig2`, `fig1`,
    /// `layers_cka`); all of [`figures::NAMES`] when `None`.
    pub only: Option<Vec<String>>,
    pub formats: Vec<Format>,
    /// Draw the figures of similarity ([`figures::MEASURED`]) under this
    /// measure of `similarity.parquet`, as `<figure>_<measure>.png`, and
    /// nothing else; `None` (or CKA): every figure, tables and report.
    pub measure: Option<Measure>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            only: None,
            formats: vec![Format::Png, Format::Svg],
            measure: None,
        }
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
    StudyDir::new(study).figures_dir()
}

/// `<study>/report.md`.
pub fn report_path(study: &Path) -> PathBuf {
    StudyDir::new(study).report()
}

/// What the figures, paper tables and report are made from, as it is now:
/// the config and every study table, by content, and this tool's version.
fn inputs_manifest(study: &StudyDir, known: Option<&Manifest>) -> anyhow::Result<Manifest> {
    let mut manifest = Manifest::new(format!("sim-plot {}", env!("CARGO_PKG_VERSION")));
    let root = study.root();
    for relative in ["study.toml".to_string(), "study.sha256".to_string()]
        .into_iter()
        .chain(
            sim_study::tables::file::ALL
                .iter()
                .map(|t| format!("tables/{t}")),
        )
    {
        manifest.add(root, &relative, known)?;
    }
    Ok(manifest)
}

/// Makes the figures, `tables/table{1,2}.{md,csv}` and `report.md` (unless
/// only some figures are asked for) of the study at `dir`.
pub fn render_study(dir: &Path, options: &Options) -> anyhow::Result<Rendered> {
    let study = study::Study::read(dir)?;
    if let Some(measure) = options.measure.filter(|&m| m != Measure::Cka) {
        return render_measure(&study.for_measure(measure)?, dir, options);
    }
    let study_dir = StudyDir::new(dir);
    let manifest = inputs_manifest(
        &study_dir,
        Manifest::read(&study_dir.figures_manifest()).as_ref(),
    )?;
    if let Some(only) = &options.only
        && let Some(bad) = only
            .iter()
            .find(|o| !figures::NAMES.iter().any(|n| n.starts_with(o.as_str())))
    {
        anyhow::bail!(
            "--only {bad}: no such figure (figures: {})",
            figures::NAMES.join(", ")
        );
    }
    let out = figures_dir(dir);
    std::fs::create_dir_all(&out)?;
    Manifest::remove(&study_dir.figures_manifest())?;
    let mut files = Vec::new();
    let mut outcomes = Vec::new();
    for name in figures::names(&study) {
        if options
            .only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|prefix| name.starts_with(prefix.as_str())))
        {
            continue;
        }
        let outcome = figures::render(&study, name, &out, &options.formats)?;
        if let Outcome::Written { files: f, .. } = &outcome {
            files.extend(f.iter().cloned());
        }
        outcomes.push((name.to_string(), outcome));
    }
    files.extend(paper_tables::write(&study, &study_dir)?);
    // The report shows every figure: a partial rendering (--only) keeps it.
    if options.only.is_none() {
        let md =
            |n: u32| std::fs::read_to_string(study_dir.paper_table(n, "md")).unwrap_or_default();
        let text = report::report(&study, &outcomes, [&md(1), &md(2)]);
        sim_study::write_atomic(&report_path(dir), text.as_bytes())?;
        files.push(report_path(dir));
        // Last: only a whole rendering vouches for its inputs.
        manifest.write(&study_dir.figures_manifest())?;
    }
    let left_out = outcomes
        .into_iter()
        .filter_map(|(n, o)| match o {
            Outcome::LeftOut(why) => Some((n, why)),
            _ => None,
        })
        .collect();
    Ok(Rendered { files, left_out })
}

/// The figures of similarity of `study` (drawn under a measure besides
/// CKA), each as `<figure>_<measure>`; the tables, report and manifest,
/// which are CKA's, untouched.
fn render_measure(study: &study::Study, dir: &Path, options: &Options) -> anyhow::Result<Rendered> {
    let out = figures_dir(dir);
    std::fs::create_dir_all(&out)?;
    let (mut files, mut left_out) = (Vec::new(), Vec::new());
    for name in figures::MEASURED {
        if options
            .only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|prefix| name.starts_with(prefix.as_str())))
        {
            continue;
        }
        match figures::render(study, name, &out, &options.formats)? {
            Outcome::Written { files: f, .. } => files.extend(f),
            Outcome::LeftOut(why) => left_out.push((format!("{name}_{}", study.measure), why)),
        }
    }
    Ok(Rendered { files, left_out })
}

/// The report of a study none of whose runs finished an epoch (there are
/// no tables to draw from): what became of each run, one line each
/// (`ham10000/vit/full seed 0: failed after epoch 0: loss NaN at epoch 1, step 3`).
pub fn write_report_without_runs(dir: &Path, runs: &[String]) -> anyhow::Result<PathBuf> {
    let study = StudyDir::new(dir);
    let config = study.read_config().map_err(anyhow::Error::msg)?;
    let mut text = format!(
        "# Study `{}`\n\nNo run has finished an epoch, so there are no tables, figures or \
            findings yet. \
         What became of each run (its `train.log` and `sweep.log` say more):\n\n",
        config.study.name
    );
    for line in runs {
        text.push_str(&format!("- {line}\n"));
    }
    // Figures of an earlier rendering would no longer match this report.
    Manifest::remove(&study.figures_manifest())?;
    sim_study::write_atomic(&study.report(), text.as_bytes())?;
    Ok(study.report())
}

/// Whether the figures, paper tables and report were made, whole, from the
/// config and tables as they are now (by content, not by clocks): then
/// `cargo xtask reproduce` skips this stage.
pub fn up_to_date(dir: &Path) -> bool {
    let study = StudyDir::new(dir);
    sim_study::manifest::up_to_date(&study.figures_manifest(), &[study.report()], |written| {
        inputs_manifest(&study, Some(written)).ok()
    })
}
