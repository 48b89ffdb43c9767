//! `cargo xtask reproduce`: a whole study from one config, stage by stage.
//! Every stage skips what an earlier call already finished (split files and
//! image caches are reused), so running it again resumes.

use crate::fetch;
use anyhow::bail;
use sim_study::StudyConfig;
use std::path::Path;
use std::time::Instant;

/// The study `cargo xtask reproduce` runs without `--config`.
pub const DEFAULT_CONFIG: &str = "configs/paper.toml";

pub fn run(config_path: &Path, fetch_missing: bool) -> anyhow::Result<()> {
    let start = Instant::now();
    let config = StudyConfig::from_file(config_path)?;
    ensure_data(&config, fetch_missing)?;
    println!("study {} (config hash {}) in {}", config.study.name, &config.hash()[..12], config.output_dir().display());
    for prepared in sim_train::data::prepare::data_stage(&config)? {
        print!("{prepared}");
    }
    println!("stages run: data; finished in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
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
