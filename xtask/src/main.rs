//! `cargo xtask`: the project's own commands.
//!
//! - `cargo xtask reproduce [--config FILE]`: runs a whole study from a config.
//! - `cargo xtask fetch-data [--dest DIR]`: downloads the data sets.

mod fetch;
mod reproduce;
mod sweep;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The project's own commands (run as `cargo xtask <command>`).
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole study from a config, resuming what an earlier call
    /// finished. Stages: data (resolved config, split, image caches, summary),
    /// fine-tuning (every backbone × seed, with per-epoch evaluations), and
    /// the Parquet tables in <study>/tables/.
    ///
    /// Data paths resolve against SIM_DATA_DIR (default: data/). Missing data
    /// stops the run with the command that fetches it, or is fetched with
    /// --fetch-missing.
    ///
    /// Fine-tuning runs are separate processes, --jobs at a time (one GPU each
    /// with --gpus); a failed run does not stop the others, and the sweep ends
    /// with the list of failures (the tables and figures are made from what
    /// finished). Killed at any moment, the same command resumes.
    Reproduce {
        /// Study config (TOML).
        #[arg(long, default_value = reproduce::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Download data sets the config needs and the data folder lacks.
        #[arg(long)]
        fetch_missing: bool,
        /// Fine-tuning runs at a time.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// GPU ids to give the runs, one each (e.g. 0,1,2,3); with --jobs above
        /// their number, the number of GPUs limits the jobs.
        #[arg(long, value_delimiter = ',')]
        gpus: Vec<String>,
        /// The study folder (default: the config's study.output_dir).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// One fine-tuning run of a study (what `reproduce` starts per run).
    #[command(hide = true)]
    RunOne {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        backbone: String,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Download HAM10000 (via the ISIC 2018 Task 3 files) and Imagenette
    /// (320 px) from their official sources, verify, unpack, and lay them out
    /// under DEST as `ham10000/` and `imagenette/`. Present folders are skipped.
    FetchData {
        /// Data folder (default: $SIM_DATA_DIR, else data/).
        #[arg(long)]
        dest: Option<PathBuf>,
        /// Fetch only this data set (`ham10000` or `imagenette`).
        #[arg(long)]
        only: Option<String>,
        /// Base URL of a mirror holding the same file names.
        #[arg(long)]
        mirror: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Reproduce { config, fetch_missing, jobs, gpus, output } => {
            reproduce::run(&config, fetch_missing, &sweep::SweepOptions { jobs, gpus, output })
        }
        Command::RunOne { config, backbone, seed, output } => reproduce::run_one(&config, output, &backbone, seed),
        Command::FetchData { dest, only, mirror } => {
            let dest = dest.unwrap_or_else(sim_study::data_dir);
            let mut sources = fetch::official_sources();
            if let Some(name) = only {
                sources.retain(|s| s.name == name);
                anyhow::ensure!(!sources.is_empty(), "--only {name}: known data sets are ham10000 and imagenette");
            }
            if let Some(mirror) = mirror {
                sources = fetch::with_mirror(sources, &mirror);
            }
            fetch::fetch_missing(&sources, &dest)?;
            Ok(())
        }
    }
}
