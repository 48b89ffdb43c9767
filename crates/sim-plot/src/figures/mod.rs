//! The figures of docs/SPEC.md, "Figures", one module each. Every figure is built in
//! two steps: `prepare` takes what it needs from the [`Study`] (or says why
//! it cannot be drawn: no finished run, no attention maps, …), and the
//! [`Figure`] it returns draws itself on any backend. A study with several
//! medical data sets or methods gets each figure once per (data set,
//! method), as facets of one file ([`facets`]); Figure 3, a grid per
//! backbone, gets a file per facet.

mod attention;
mod cka_ece;
mod density;
mod facets;
mod knn;
mod layers;
mod pretrain;
mod reliability;
mod selection;
mod space;
mod trajectory;
mod wise_ft;

use crate::scale::Scale;
use crate::study::Study;
use crate::style::{Figure, Format, save};
use facets::Faceted;
use sim_study::config::Measure;
use std::path::{Path, PathBuf};

/// Every figure, in the order of the report (the learning curves in its
/// "Pre-trained backbones", the others under "Figures").
pub const NAMES: [&str; 14] = [
    "pretrain_knn",
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
    "wise_ft_path",
    "selection_scores",
    "selection_tau",
];

/// The figures that draw similarity: those `sim-plot --measure` draws under
/// another measure than CKA. (Figure 2 draws T_X(η, ε), whose η is a CKA
/// level, and the WiSE-FT path reads evaluations made for CKA alone.)
pub const MEASURED: [&str; 6] = [
    "fig1b_similarity_density",
    "fig4a_trajectory",
    "fig4b_final",
    "fig5_cka_ece",
    "layers_cka",
    "layers_epochs_cka",
];

/// The figures `study` has: every one of [`NAMES`] but the WiSE-FT path
/// where no method asks for WiSE-FT, the learning curves where no backbone
/// is pre-trained here, and model selection's where the tables have none.
pub fn names(study: &Study) -> Vec<&'static str> {
    let wise_ft = study.config.methods.iter().any(|m| m.wise_ft.is_some());
    let pretrained = study
        .config
        .backbones
        .iter()
        .any(|b| b.pretrain().is_some_and(|p| p.epochs > 0));
    let selection = study
        .selection_summary
        .as_ref()
        .is_some_and(|s| !s.is_empty());
    NAMES
        .into_iter()
        .filter(|n| (wise_ft || *n != "wise_ft_path") && (pretrained || *n != "pretrain_knn"))
        .filter(|n| selection || !n.starts_with("selection_"))
        .collect()
}

/// What became of one figure.
pub enum Outcome {
    /// Written, with what the report says about it.
    Written {
        files: Vec<PathBuf>,
        caption: String,
    },
    /// Not drawn, and why.
    LeftOut(String),
}

/// Draws figure `name` of `study` into `dir` (under another measure than
/// CKA, as `<name>_<measure>`).
pub fn render(
    study: &Study,
    name: &str,
    dir: &Path,
    formats: &[Format],
) -> anyhow::Result<Outcome> {
    match name {
        "pretrain_knn" => write(pretrain::LearningCurves::prepare(study), dir, formats),
        "fig1a_knn" => write(Faceted::prepare(study, knn::KnnBars::prepare), dir, formats),
        "fig1b_similarity_density" => write(
            Faceted::prepare(study, density::SimilarityDensity::prepare),
            dir,
            formats,
        ),
        "fig2_similarity_space" => write(
            Faceted::prepare(study, |rows| space::SimilaritySpace::prepare(rows, study)),
            dir,
            formats,
        ),
        "fig3_attention" => attention_grids(study, dir, formats),
        "fig4a_trajectory" => write(
            Faceted::prepare(study, |rows| trajectory::Trajectory::prepare(rows, study)),
            dir,
            formats,
        ),
        "fig4b_final" => write(
            Faceted::prepare(study, |rows| space::FinalPoints::prepare(rows, study)),
            dir,
            formats,
        ),
        "fig5_cka_ece" => write(
            Faceted::prepare(study, cka_ece::CkaEce::prepare),
            dir,
            formats,
        ),
        "layers_cka" => write(
            Faceted::prepare(study, layers::LayerCurves::prepare),
            dir,
            formats,
        ),
        "layers_epochs_cka" => write(
            Faceted::prepare(study, |rows| layers::LayerEpochMap::prepare(rows, study)),
            dir,
            formats,
        ),
        "reliability" => write(
            Faceted::prepare(study, reliability::Reliability::prepare),
            dir,
            formats,
        ),
        "wise_ft_path" => write(
            Faceted::prepare(&study.with_wise_ft(), wise_ft::WiseFtPath::prepare),
            dir,
            formats,
        ),
        "selection_scores" => write(
            Faceted::prepare(study, selection::SelectionScatter::prepare),
            dir,
            formats,
        ),
        "selection_tau" => write(
            Faceted::prepare(study, selection::SelectionTau::prepare),
            dir,
            formats,
        ),
        other => anyhow::bail!("no figure `{other}` (figures: {})", NAMES.join(", ")),
    }
}

/// Figure 3: one grid per backbone, `fig3_attention_<backbone>.png`; with
/// several facets one per facet and backbone,
/// `fig3_attention_<facet>_<backbone>.png` (`<facet>`: the data set, the
/// method, or both).
fn attention_grids(study: &Study, dir: &Path, formats: &[Format]) -> anyhow::Result<Outcome> {
    let (mut files, mut captions, mut left_out) = (Vec::new(), Vec::new(), Vec::new());
    let several = study.several_facets();
    for facet in study.facets() {
        let grids = match attention::AttentionGrid::prepare_all(&study.facet(&facet)) {
            Ok(grids) => grids,
            Err(why) => {
                left_out.push(format!("{}: {why}", facet.label()));
                continue;
            }
        };
        let grids: Vec<_> = if several {
            grids.into_iter().map(|g| g.in_facet(&facet)).collect()
        } else {
            grids
        };
        for grid in &grids {
            files.extend(save(grid, dir, formats)?);
        }
        let caption = attention::caption(&grids);
        captions.push(if several {
            format!("**{}**: {caption}", facet.label())
        } else {
            caption
        });
    }
    if files.is_empty() {
        return Ok(Outcome::LeftOut(left_out.join("; ")));
    }
    captions.extend(left_out.iter().map(|why| format!("Not drawn: {why}.")));
    Ok(Outcome::Written {
        files,
        caption: captions.join(" "),
    })
}

/// A figure that can tell the report, in one sentence, what it shows.
pub trait Captioned: Figure {
    fn caption(&self) -> String;
}

fn write<F: Captioned>(
    prepared: Result<F, String>,
    dir: &Path,
    formats: &[Format],
) -> anyhow::Result<Outcome> {
    match prepared {
        Ok(figure) => Ok(Outcome::Written {
            files: save(&figure, dir, formats)?,
            caption: figure.caption(),
        }),
        Err(why) => Ok(Outcome::LeftOut(why)),
    }
}

/// The file stem of figure `name` drawn under `scale`'s measure:
/// `fig4a_trajectory`, or `fig4a_trajectory_svcca` for another than CKA.
fn stem(name: &str, scale: &Scale) -> String {
    if scale.measure == Measure::Cka {
        name.to_owned()
    } else {
        format!("{name}_{}", scale.measure)
    }
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The figure cannot be drawn without a finished run.
pub fn no_finished_run() -> String {
    "no finished run in the tables".to_string()
}
