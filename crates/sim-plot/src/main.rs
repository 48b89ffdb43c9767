//! `sim-plot`: a study's figures, tables and report.

use clap::Parser;
use sim_plot::style::Format;
use sim_study::config::Measure;
use std::path::PathBuf;

/// The paper's figures, its two tables and a report, from a study's tables.
///
/// Reads <study>/tables/*.parquet (written by `sim-metrics study`) and
/// <study>/study.toml; writes <study>/figures/<name>.png and .svg,
/// <study>/tables/table1.{md,csv}, table2.{md,csv} and <study>/report.md.
/// A figure whose data is missing is left out, and the report says why.
///
/// Examples: sim-plot --study studies/ci --only fig2,fig5 --format png
///           sim-plot --study studies/cpu --measure svcca
#[derive(Parser)]
#[command(name = "sim-plot", version)]
struct Cli {
    /// The study folder (holding study.toml and tables/).
    #[arg(long)]
    study: PathBuf,
    /// Only these figures (comma-separated names or their beginnings, e.g.
    /// fig2,fig5 or layers): fig1a_knn, fig1b_similarity_density,
    /// fig2_similarity_space, fig3_attention, fig4a_trajectory, fig4b_final,
    /// fig5_cka_ece, layers_cka, layers_epochs_cka, reliability.
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// File formats (comma-separated): png, svg.
    #[arg(long, value_delimiter = ',', default_value = "png,svg")]
    format: Vec<String>,
    /// Draw the figures of similarity (fig1b, fig4a, fig4b, fig5,
    /// layers_cka, layers_epochs_cka) under this measure of similarity.parquet instead
    /// of CKA, as <figure>_<measure>.png; the tables and report are left as
    /// they are. The study must list it in [evaluation.similarity] measures.
    #[arg(long, value_enum)]
    measure: Option<Measure>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    sim_study::logging::init();
    let formats = cli
        .format
        .iter()
        .map(|f| Format::parse(f).ok_or_else(|| anyhow::anyhow!("--format {f}: use png or svg")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rendered = sim_plot::render_study(
        &cli.study,
        &sim_plot::Options {
            only: cli.only,
            formats,
            measure: cli.measure,
        },
    )?;
    for f in &rendered.files {
        println!("wrote {}", f.display());
    }
    for (name, why) in &rendered.left_out {
        println!("left out {name}: {why}");
    }
    Ok(())
}
