//! `cargo xtask reproduce`: a whole study from one config, stage by stage.
//! Every stage skips what an earlier call already finished (split files and
//! image caches are reused, finished runs are no-ops, a killed run resumes
//! from its last finished epoch), so running it again resumes.

use crate::fetch;
use anyhow::{Context, bail};
use sim_study::StudyConfig;
use sim_train::CpuBackend;
use sim_train::backend::TrainBackend;
use sim_train::finetune::{self, Outcome};
use sim_train::model::LoadOptions;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The study `cargo xtask reproduce` runs without `--config`.
pub const DEFAULT_CONFIG: &str = "configs/paper.toml";

pub fn run(config_path: &Path, fetch_missing: bool) -> anyhow::Result<()> {
    let config = StudyConfig::from_file(config_path)?;
    let config_dir = config_path.parent().unwrap_or(Path::new("."));
    ensure_data(&config, fetch_missing)?;
    run_study(&config, config_dir)?;
    Ok(())
}

/// Stages: data (split, image caches), every backbone × seed fine-tuning run,
/// the study tables, then the figures, paper tables and report (skipped when
/// the report is newer than every table). Returns the tables written. The backbone files
/// there are load before any stage writes, so a bad one (a NaN, an input
/// size the patch does not divide) stops the study before it starts.
pub fn run_study(config: &StudyConfig, config_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let start = Instant::now();
    println!("study {} (config hash {}) in {}", config.study.name, &config.hash()[..12], config.output_dir().display());
    let missing = check_backbone_files(config, config_dir)?;
    for prepared in sim_train::data::prepare::data_stage(config)? {
        print!("{prepared}");
    }
    if !missing.is_empty() {
        bail!(
            "checkpoints not found (download them as README \"Checkpoints\" says, or set SIM_DATA_DIR):\n{}",
            missing.join("\n")
        );
    }
    for backbone in &config.backbones {
        for &seed in &config.study.seeds {
            let outcome = finetune::run::<TrainBackend>(config, config_dir, &backbone.name, seed, &Default::default())?;
            let what = match outcome {
                Outcome::AlreadyFinished => "finished before".to_string(),
                Outcome::Finished { resumed_at: 0 } => "trained".to_string(),
                Outcome::Finished { resumed_at } => format!("resumed after epoch {resumed_at} and finished"),
            };
            println!("run {} seed {seed}: {what}", backbone.name);
        }
    }
    let study_dir = config.output_dir();
    let tables = if sim_metrics::tables::up_to_date(&study_dir) {
        println!("tables: newer than every evaluation, kept");
        let dir = sim_study::StudyDir::new(&study_dir).tables_dir();
        sim_study::tables::file::ALL.iter().map(|t| dir.join(t)).collect()
    } else {
        let tables = sim_metrics::tables::write_study_tables(&study_dir)?;
        for t in &tables {
            println!("table {}", t.display());
        }
        tables
    };
    if sim_plot::up_to_date(&study_dir) {
        println!("figures and report: newer than the tables, kept ({})", sim_plot::report_path(&study_dir).display());
    } else {
        let rendered = sim_plot::render_study(&study_dir, &sim_plot::Options::default())?;
        println!("figures and report: {} files, report {}", rendered.files.len(), sim_plot::report_path(&study_dir).display());
        for (name, why) in &rendered.left_out {
            println!("  left out {name}: {why}");
        }
    }
    println!("stages run: data, fine-tuning, tables, figures; finished in {:.1} s", start.elapsed().as_secs_f64());
    Ok(tables)
}

/// Loads every backbone file that is there, as its run will (every tensor
/// finite, every shape right, the input size a multiple of the patch), and
/// lists those that are not there; none is downloaded (README,
/// "Checkpoints", says from where).
fn check_backbone_files(config: &StudyConfig, config_dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    for b in &config.backbones {
        let path = b.checkpoint_path(config_dir);
        if !path.exists() {
            missing.push(format!("  backbones `{}`: {}", b.name, path.display()));
            continue;
        }
        sim_train::model::load::<CpuBackend>(&path, &LoadOptions::for_backbone(b), &Default::default())
            .with_context(|| format!("backbones `{}`", b.name))?;
    }
    Ok(missing)
}

/// Every data set folder the config names must exist; the ones
/// `fetch-data` knows how to download are fetched with `--fetch-missing`,
/// otherwise the error gives the exact command.
fn ensure_data(config: &StudyConfig, fetch_missing: bool) -> anyhow::Result<()> {
    let data_dir = sim_study::data_dir();
    for (role, ds) in config.datasets() {
        let root = ds.resolved_root();
        if root.exists() {
            continue;
        }
        let fetchable = fetch::official_sources().into_iter().find(|s| data_dir.join(&s.name) == root);
        match fetchable {
            Some(source) if fetch_missing => {
                fetch::fetch_missing(std::slice::from_ref(&source), &data_dir)?;
            }
            Some(source) => bail!(
                "{} data set not found at {}.\nFetch it with:\n  cargo xtask fetch-data --dest {} --only {}\n\
                 or rerun with --fetch-missing (or set SIM_DATA_DIR to where the data is)",
                role.name(),
                root.display(),
                data_dir.display(),
                source.name
            ),
            None => bail!(
                "{} data set not found at {} (datasets.{}.root, relative to SIM_DATA_DIR={}); \
                 `cargo xtask fetch-data` only knows ham10000/ and imagenette/",
                role.name(),
                root.display(),
                role.name(),
                data_dir.display()
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
