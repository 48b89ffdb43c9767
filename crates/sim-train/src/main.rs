//! `sim-train`: the training side of the tool, one subcommand per job.

use clap::{Parser, Subcommand};
use sim_study::StudyConfig;
use std::path::PathBuf;

/// Fine-tune pre-trained vision backbones and record what changes.
///
/// Relative data and checkpoint paths in a study config resolve against the
/// SIM_DATA_DIR environment variable (default: `data/`).
#[derive(Parser)]
#[command(name = "sim-train", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read and split a study's data sets, fill the image caches, and print
    /// per data set and split the class counts, the number of groups (lesions)
    /// and how long each step took.
    ///
    /// The split is written to <study>/splits/<role>.csv the first time and
    /// reused afterwards. Example: sim-train data --config configs/ci.toml
    Data {
        /// Study config (TOML), e.g. configs/paper.toml.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Data { config } => data(&config),
    }
}

fn data(config_path: &std::path::Path) -> anyhow::Result<()> {
    let config = StudyConfig::from_file(config_path)?;
    for prepared in sim_train::data::prepare::data_stage(&config)? {
        print!("{prepared}");
    }
    Ok(())
}
