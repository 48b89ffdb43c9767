//! `cargo xtask`: the project's own commands.
//!
//! - `cargo xtask reproduce [--config FILE]`: runs a whole study from a config
//!   (locally, `--jobs` runs at a time, or as a Slurm job array); `--plan`,
//!   `--status`.
//! - `cargo xtask finish`: the tables, figures and report of what finished.
//! - `cargo xtask fetch-data [--dest DIR]`: downloads the data sets.
//! - `cargo xtask fetch-checkpoints [--config FILE]`: downloads the backbone files.

mod fetch;
mod reproduce;
mod slurm;
mod sweep;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The project's own commands (run as `cargo xtask <command>`).
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// No progress bars (they are drawn only on a terminal anyway); the log
    /// lines stay, at the level RUST_LOG sets.
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole study from a config, resuming what an earlier call
    /// finished. Stages: data (resolved config, splits, image caches, summary),
    /// fine-tuning (every medical data set × backbone × method × seed, with
    /// per-epoch evaluations), the
    /// Parquet tables in <study>/tables/, then the figures, Table 1 and 2 and
    /// <study>/report.md.
    ///
    /// Data paths resolve against SIM_DATA_DIR (default: data/). What the
    /// study lacks is downloaded first: the data sets `fetch-data` knows and
    /// the backbone files with a `source` (into the Hugging Face cache, or
    /// to their `checkpoint` path). With --offline (or HF_HUB_OFFLINE=1)
    /// nothing is downloaded and what is missing is listed with the command
    /// that fetches it.
    ///
    /// Fine-tuning runs are separate processes, --jobs at a time (one GPU each
    /// with --gpus); a failed run does not stop the others, and the sweep ends
    /// with the list of failures (the tables and figures are made from what
    /// finished). Killed at any moment, the same command resumes.
    Reproduce {
        /// Study config (TOML).
        #[arg(long, default_value = reproduce::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Download nothing: stop with what is missing and how to fetch it
        /// (also when HF_HUB_OFFLINE is 1).
        #[arg(long)]
        offline: bool,
        /// Fine-tuning runs at a time. Default: one per core (on a CPU, one
        /// single-thread run per core finishes a sweep soonest: README,
        /// "Running at scale"), one per GPU with --gpus or a CUDA build.
        #[arg(long)]
        jobs: Option<usize>,
        /// GPU ids to give the runs, one each (e.g. 0,1,2,3); with --jobs above
        /// their number, the number of GPUs limits the jobs. Default in a
        /// `--features cuda` build: CUDA_VISIBLE_DEVICES, else every GPU
        /// `nvidia-smi` lists.
        #[arg(long, value_delimiter = ',')]
        gpus: Vec<String>,
        /// The study folder (default: the config's study.output_dir).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Where the fine-tuning runs execute: local processes, or a Slurm
        /// job array (resources from the config's [slurm] section).
        #[arg(long, value_enum, default_value = "local")]
        executor: reproduce::Executor,
        /// With --executor slurm: write the sbatch scripts, submit nothing.
        #[arg(long)]
        dry_run: bool,
        /// Show where every run of the study is (from its run folders) and stop.
        #[arg(long)]
        status: bool,
        /// Print what the study will take (runs, evaluations, disk, time from
        /// a training step measured here, on this build's backend) and stop.
        #[arg(long)]
        plan: bool,
    },
    /// Make the tables, figures and report of a study from the runs that
    /// finished (what `reproduce` does after its runs; the Slurm job after the array).
    Finish {
        #[arg(long, default_value = reproduce::DEFAULT_CONFIG)]
        config: PathBuf,
        /// The study folder (default: the config's study.output_dir).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// One fine-tuning run of a study (what `reproduce` starts per run, and
    /// each Slurm array task), by data set, backbone, method and seed or by index.
    #[command(hide = true)]
    RunOne {
        #[arg(long)]
        config: PathBuf,
        /// Needed when the study has several medical data sets.
        #[arg(long)]
        dataset: Option<String>,
        /// Needed when the study has several methods.
        #[arg(long)]
        method: Option<String>,
        #[arg(long, requires = "seed")]
        backbone: Option<String>,
        #[arg(long)]
        seed: Option<u64>,
        /// data set × backbone × method × seed in config order (Slurm's array index).
        #[arg(long, conflicts_with_all = ["backbone", "dataset", "method"])]
        index: Option<usize>,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Download the backbone files a config names with a `source`
    /// (`hf:<owner>/<repo>[@<revision>]/<file>`) from the Hugging Face Hub:
    /// a `source` alone into the Hugging Face cache (HF_HUB_CACHE, else
    /// HF_HOME/hub, else ~/.cache/huggingface/hub), where a file timm or
    /// transformers already downloaded is used as it is; with a
    /// `checkpoint`, to that path. Each is checked against the SHA-256 the
    /// Hub publishes; a broken-off download continues where it stopped.
    /// HF_ENDPOINT (a mirror), HF_TOKEN (or the token file of
    /// `hf auth login`, for gated models) and HF_HUB_OFFLINE are obeyed.
    FetchCheckpoints {
        #[arg(long, default_value = reproduce::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Download HAM10000 (via the ISIC 2018 Task 3 files) and Imagenette
    /// (320 px) from their official sources, verify, unpack, and lay them out
    /// under DEST as `ham10000/` and `imagenette/`; or, with --medmnist, the
    /// MedMNIST data sets named. Present folders and files are skipped.
    FetchData {
        /// Data folder (default: $SIM_DATA_DIR, else data/).
        #[arg(long)]
        dest: Option<PathBuf>,
        /// Fetch only this data set (`ham10000` or `imagenette`).
        #[arg(long)]
        only: Option<String>,
        /// Instead, a MedMNIST v2 2D data set (`pneumoniamnist`,
        /// `dermamnist`, …; repeatable), into DEST/medmnist/ as the release
        /// publishes it (with its own train/val/test split).
        #[arg(long)]
        medmnist: Vec<String>,
        /// The MedMNIST image size: 28, 64, 128 or 224.
        #[arg(long, default_value_t = 28)]
        medmnist_size: u32,
        /// Base URL of a mirror holding the same file names.
        #[arg(long)]
        mirror: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    sim_train::backend::keep_freed_memory();
    let cli = Cli::parse();
    sim_study::logging::init();
    if cli.quiet {
        sim_study::progress::set_quiet();
    }
    // The tables stage multiplies on it: a bad SIM_BLAS stops here, not after the runs.
    sim_metrics::blas::load_from_env().map_err(anyhow::Error::msg)?;
    match cli.command {
        Command::Reproduce {
            config,
            offline,
            jobs,
            gpus,
            output,
            executor,
            dry_run,
            status,
            plan,
        } => {
            if status {
                return reproduce::status(&reproduce::load_config(&config, output.as_deref())?);
            }
            let gpus = if gpus.is_empty() && cfg!(feature = "cuda") {
                sweep::detect_gpus()
            } else {
                gpus
            };
            let jobs = jobs.unwrap_or_else(|| sweep::default_jobs(&gpus));
            if plan {
                return reproduce::plan(
                    &config,
                    &reproduce::load_config(&config, output.as_deref())?,
                    jobs.max(1),
                );
            }
            reproduce::run(
                &config,
                offline || sim_study::hub::offline_by_env(),
                executor,
                dry_run,
                &sweep::SweepOptions { jobs, gpus, output },
            )
        }
        Command::FetchCheckpoints { config: path } => {
            let config = sim_study::StudyConfig::from_file(&path)?;
            let fetched = fetch::hub::fetch_checkpoints(&config, &fetch::hub::Hub::from_env())?;
            println!("{} backbone file(s) fetched", fetched.len());
            Ok(())
        }
        Command::Finish { config, output } => {
            reproduce::finish_study(&reproduce::load_config(&config, output.as_deref())?)
                .map(|_| ())
        }
        Command::RunOne {
            config: path,
            dataset,
            method,
            backbone,
            seed,
            index,
            output,
        } => {
            let config = reproduce::load_config(&path, output.as_deref())?;
            let run = match (backbone, seed, index) {
                (Some(backbone), Some(seed), None) => config
                    .run_named(dataset, backbone, method, seed)
                    .map_err(anyhow::Error::msg)?,
                (None, None, Some(i)) => slurm::run_of_index(&config, i)?,
                _ => anyhow::bail!("run-one takes [--dataset] --backbone and --seed, or --index"),
            };
            match reproduce::run_one(&config, &run) {
                // Another process holds the run: the sweep leaves it to that one.
                Err(e)
                    if e.chain().any(|c| {
                        c.downcast_ref::<std::io::Error>()
                            .is_some_and(|io| io.kind() == std::io::ErrorKind::WouldBlock)
                    }) =>
                {
                    eprintln!("Error: {e:#}");
                    std::process::exit(sweep::RUN_HELD_ELSEWHERE)
                }
                other => other,
            }
        }
        Command::FetchData {
            dest,
            only,
            medmnist,
            medmnist_size,
            mirror,
        } => {
            let dest = dest.unwrap_or_else(sim_study::data_dir);
            let mut sources = if medmnist.is_empty() {
                fetch::official_sources()
            } else {
                let each = medmnist
                    .iter()
                    .map(|f| fetch::medmnist::source(f, medmnist_size));
                each.collect::<anyhow::Result<_>>()?
            };
            if let Some(name) = only {
                anyhow::ensure!(
                    medmnist.is_empty(),
                    "--only and --medmnist: give one of them"
                );
                sources.retain(|s| s.name == name);
                anyhow::ensure!(
                    !sources.is_empty(),
                    "--only {name}: known data sets are ham10000 and imagenette"
                );
            }
            if let Some(mirror) = mirror {
                sources = fetch::with_mirror(sources, &mirror);
            }
            fetch::fetch_missing(&sources, &dest)?;
            Ok(())
        }
    }
}
