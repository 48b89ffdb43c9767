//! The figures of SPEC, "Figures", one module each. Every figure is built in
//! two steps: `prepare` takes what it needs from the [`Study`] (or says why
//! it cannot be drawn: no finished run, no attention maps, …), and the
//! [`Figure`] it returns draws itself on any backend.

mod attention;
mod cka_ece;
mod density;
mod knn;
mod layers;
mod reliability;
mod space;
mod trajectory;

use crate::study::Study;
use crate::style::{Figure, Format, save};
use std::path::{Path, PathBuf};

/// Every figure, in the order of the report.
pub const NAMES: [&str; 10] = [
    "fig1a_knn",
    "fig1b_similarity_density",
    "fig2_similarity_space",
    "fig3_attention",
    "fig4a_trajectory",
    "fig4b_final",
    "fig5_cka_ece",
    "layers_cka",
    "layers_epochs_cka",
    "reliability",
];

/// What became of one figure.
pub enum Outcome {
    /// Written, with what the report says about it.
    Written { files: Vec<PathBuf>, caption: String },
    /// Not drawn, and why.
    LeftOut(String),
}

/// Draws figure `name` of `study` into `dir`.
pub fn render(study: &Study, name: &str, dir: &Path, formats: &[Format]) -> anyhow::Result<Outcome> {
    match name {
        "fig1a_knn" => write(knn::KnnBars::prepare(study), dir, formats),
        "fig1b_similarity_density" => write(density::SimilarityDensity::prepare(study), dir, formats),
        "fig2_similarity_space" => write(space::SimilaritySpace::prepare(study), dir, formats),
        "fig3_attention" => {
            // One grid per backbone: fig3_attention_<backbone>.png.
            let grids = match attention::AttentionGrid::prepare_all(study) {
                Ok(grids) => grids,
                Err(why) => return Ok(Outcome::LeftOut(why)),
            };
            let mut files = Vec::new();
            for grid in &grids {
                files.extend(save(grid, dir, formats)?);
            }
            Ok(Outcome::Written { files, caption: attention::caption(&grids) })
        }
        "fig4a_trajectory" => write(trajectory::Trajectory::prepare(study), dir, formats),
        "fig4b_final" => write(space::FinalPoints::prepare(study), dir, formats),
        "fig5_cka_ece" => write(cka_ece::CkaEce::prepare(study), dir, formats),
        "layers_cka" => write(layers::LayerCurves::prepare(study), dir, formats),
        "layers_epochs_cka" => write(layers::LayerEpochMap::prepare(study), dir, formats),
        "reliability" => write(reliability::Reliability::prepare(study), dir, formats),
        other => anyhow::bail!("no figure `{other}` (figures: {})", NAMES.join(", ")),
    }
}

/// A figure that can tell the report, in one sentence, what it shows.
pub trait Captioned: Figure {
    fn caption(&self) -> String;
}

fn write<F: Captioned>(prepared: Result<F, String>, dir: &Path, formats: &[Format]) -> anyhow::Result<Outcome> {
    match prepared {
        Ok(figure) => Ok(Outcome::Written { files: save(&figure, dir, formats)?, caption: figure.caption() }),
        Err(why) => Ok(Outcome::LeftOut(why)),
    }
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// The figure cannot be drawn without a finished run.
pub fn no_finished_run() -> String {
    "no finished run in the tables".to_string()
}
