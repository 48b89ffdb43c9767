//! `cargo xtask reproduce`: a whole study from one config, stage by stage.
//! Every stage skips what an earlier call already finished (split files and
//! image caches are reused, finished runs are no-ops, a killed run resumes
//! from its last finished epoch), so running it again resumes.

use crate::fetch;
use crate::slurm;
use crate::sweep::{SweepOptions, human_seconds, sweep, threads_per_run};
use anyhow::{Context, bail};
use sim_study::config::Objective;
use sim_study::config::{DatasetId, RunId};
use sim_study::run_state::{RunState, Status};
use sim_study::{StudyConfig, StudyDir};
use sim_train::CpuBackend;
use sim_train::backend::TrainBackend;
use sim_train::finetune::{self, Outcome};
use sim_train::model::LoadOptions;
use std::path::Path;
use std::time::Instant;

/// The study `cargo xtask reproduce` runs without `--config`.
pub const DEFAULT_CONFIG: &str = "configs/cpu.toml";

/// Where the fine-tuning runs execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Executor {
    /// Processes on this machine, `--jobs` at a time.
    Local,
    /// A Slurm job array, and a job for tables and figures after it.
    Slurm,
}

pub fn run(
    config_path: &Path,
    offline: bool,
    executor: Executor,
    dry_run: bool,
    options: &SweepOptions,
) -> anyhow::Result<()> {
    let config = load_config(config_path, options.output.as_deref())?;
    check_output_folder(&config.output_dir())?;
    if executor == Executor::Slurm {
        slurm::check_paths(config_path, &config)?;
    }
    let mut missing = missing_data(&config, offline)?;
    if offline {
        let backbones = missing_backbone_files(&config);
        if !backbones.is_empty() {
            missing.push(missing_checkpoints(config_path, &backbones));
        }
    }
    if !missing.is_empty() {
        bail!(
            "{}{}",
            if offline {
                "downloads are off (--offline or HF_HUB_OFFLINE), and the study lacks:\n"
            } else {
                ""
            },
            missing.join("\n")
        );
    }
    if !offline {
        fetch::hub::fetch_checkpoints(&config, &fetch::hub::Hub::from_env())?;
    }
    prepare_study(config_path, &config)?;
    pretrain_backbones(&config)?;
    match executor {
        Executor::Local => {
            let report = sweep(config_path, &config, options)?;
            println!(
                "runs: {} finished before, {} finished now, {} failed",
                report.finished_before,
                report.finished_now,
                report.failures.len()
            );
            let finished = finish_study(&config);
            for (run, holder) in &report.elsewhere {
                println!(
                    "run {run}: left to {holder}, which is running it; the tables and \
                        figures are made again when it ends"
                );
            }
            if !report.failures.is_empty() {
                let list: Vec<String> = report
                    .failures
                    .iter()
                    .map(|f| format!("  {}: {} (log: {})", f.run, f.error, f.log.display()))
                    .collect();
                let made = match &finished {
                    Ok(true) => {
                        "the tables, figures and report hold the runs that finished".to_string()
                    }
                    Ok(false) => format!(
                        "no run finished an epoch: {} lists them",
                        sim_plot::report_path(&config.output_dir()).display()
                    ),
                    Err(e) => format!("the tables and figures could not be made: {e:#}"),
                };
                bail!("{} run(s) failed; {made}:\n{}", list.len(), list.join("\n"));
            }
            finished?;
        }
        Executor::Slurm => {
            let scripts = slurm::write_scripts(config_path, &config)?;
            if dry_run {
                println!(
                    "written, not submitted (--dry-run):\n  {}\n  {}",
                    scripts.array.display(),
                    scripts.finish.display()
                );
            } else {
                let (array, finish) = slurm::submit(&scripts)?;
                let record = format!("array = \"{array}\"\nfinish = \"{finish}\"\n");
                sim_study::write_atomic(
                    &StudyDir::new(config.output_dir()).slurm_jobs(),
                    record.as_bytes(),
                )?;
                println!(
                    "submitted: job array {array} ({} runs), then job {finish} for the \
                        tables, figures and report; \
                     `cargo xtask reproduce --status --config {}` shows where the runs are",
                    config.runs().len(),
                    config_path.display()
                );
            }
        }
    }
    Ok(())
}

/// The config, with the study folder moved to `output` when given.
pub fn load_config(config_path: &Path, output: Option<&Path>) -> anyhow::Result<StudyConfig> {
    let mut config = StudyConfig::from_file(config_path)?;
    if let Some(out) = output {
        config.study.output_dir = Some(out.to_owned());
    }
    Ok(config)
}

/// One fine-tuning run, in this process (`xtask run-one`: what the sweep
/// starts per run, and what each Slurm array task runs).
pub fn run_one(config: &StudyConfig, run: &RunId) -> anyhow::Result<()> {
    let outcome = finetune::run::<TrainBackend>(config, run, &Default::default())?;
    let what = match outcome {
        Outcome::AlreadyFinished => "finished before".to_string(),
        Outcome::Finished { resumed_at: 0 } => "trained".to_string(),
        Outcome::Finished { resumed_at } => {
            format!("resumed after epoch {resumed_at} and finished")
        }
    };
    println!("run {run}: {what}");
    Ok(())
}

/// Before any run: the backbone files there are loaded (a bad one — a NaN,
/// an input size the patch does not divide — stops the study before anything
/// is written), the data stage runs, and missing backbone files are listed.
fn prepare_study(config_path: &Path, config: &StudyConfig) -> anyhow::Result<()> {
    println!(
        "study {} (config hash {}) in {}",
        config.study.name,
        &config.hash()[..12],
        config.output_dir().display()
    );
    let missing = check_backbone_files(config)?;
    for prepared in sim_train::data::prepare::data_stage(config)? {
        print!("{prepared}");
    }
    if !missing.is_empty() {
        bail!("{}", missing_checkpoints(config_path, &missing));
    }
    Ok(())
}

/// The error for backbone files that are not there, with how to get them.
fn missing_checkpoints(config_path: &Path, missing: &[String]) -> String {
    format!(
        "checkpoints not found (`cargo xtask fetch-checkpoints --config {}` downloads those \
            with a `source`; \
         README \"Checkpoints\" says from where; or set SIM_DATA_DIR):\n{}",
        config_path.display(),
        missing.join("\n")
    )
}

/// The study folder is new, empty, or a study's (it has `study.toml`, or
/// holds only what a study leaves, as `--plan` or a killed first call
/// does): a study written into an unrelated folder would mix with what is
/// there. Hidden files (a lock) do not count.
fn check_output_folder(dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let study = sim_study::StudyDir::new(dir);
    let other: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !sim_study::StudyDir::is_study_entry(n))
        .collect();
    if !other.is_empty() && !study.resolved_config().exists() {
        bail!(
            "{} is not empty ({}{}) and is not a study folder (no study.toml): choose a new \
                or empty folder for the study \
             (--output or study.output_dir)",
            dir.display(),
            other.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if other.len() > 3 { ", …" } else { "" }
        );
    }
    Ok(())
}

/// The backbones the study pre-trains itself, before any run needs them
/// (here, also for Slurm: the array's runs read the files): each
/// pre-training once (a zoo's snapshots come from their pre-training's), a
/// finished one kept, an interrupted one resumed.
fn pretrain_backbones(config: &StudyConfig) -> anyhow::Result<()> {
    for b in config.pretrainings() {
        let start = Instant::now();
        match sim_train::pretrain::run::<TrainBackend>(config, &b.name, &Default::default())? {
            sim_train::pretrain::Outcome::AlreadyFinished { model, note } => {
                println!(
                    "backbone {}: pre-trained before, kept ({})",
                    b.name,
                    model.display()
                );
                if let Some(note) = note {
                    println!("  note: {note}");
                }
            }
            sim_train::pretrain::Outcome::Finished { model, .. } => {
                println!(
                    "backbone {}: pre-trained in {} ({})",
                    b.name,
                    human_seconds(start.elapsed().as_secs_f64()),
                    model.display()
                )
            }
        }
    }
    Ok(())
}

/// After the runs (`xtask finish`, or the sweep's end): the study tables, then
/// the figures, paper tables and report, each kept when made from the study
/// as it is now; made from the runs that finished. Returns whether there
/// were tables to make: with no run past its first epoch, the report says
/// what became of each run instead.
pub fn finish_study(config: &StudyConfig) -> anyhow::Result<bool> {
    let start = Instant::now();
    let study_dir = config.output_dir();
    let study = sim_study::StudyDir::new(&study_dir);
    let runs: Vec<(RunId, Option<RunState>)> = config
        .runs()
        .into_iter()
        .map(|r| {
            let state = RunState::read(&study.run_dir(&r)).ok().flatten();
            (r, state)
        })
        .collect();
    if !runs
        .iter()
        .any(|(_, s)| s.as_ref().is_some_and(|s| s.last_finished_epoch > 0))
    {
        // Nothing to tabulate: the report says so, run by run.
        let lines: Vec<String> = runs
            .iter()
            .map(|(r, s)| {
                format!(
                    "{r}: {}",
                    s.as_ref()
                        .map_or("not started".to_string(), ToString::to_string)
                )
            })
            .collect();
        let report = sim_plot::write_report_without_runs(&study_dir, &lines)?;
        println!(
            "no run has finished an epoch: no tables or figures; {} says why, run by run",
            report.display()
        );
        return Ok(false);
    }
    if sim_metrics::tables::up_to_date(&study_dir) {
        println!("tables: made from the evaluations as they are, kept");
    } else {
        let spinner = sim_study::progress::spinner(
            "tables: reading the evaluations and computing the measures",
        );
        let written = sim_metrics::tables::write_study_tables(&study_dir);
        spinner.finish_and_clear();
        for t in written? {
            println!("table {}", t.display());
        }
    }
    if sim_plot::up_to_date(&study_dir) {
        println!(
            "figures and report: made from the tables as they are, kept ({})",
            sim_plot::report_path(&study_dir).display()
        );
    } else {
        let spinner = sim_study::progress::spinner("figures, Tables 1 and 2 and the report");
        let rendered = sim_plot::render_study(&study_dir, &sim_plot::Options::default());
        spinner.finish_and_clear();
        let rendered = rendered?;
        println!(
            "figures and report: {} files, report {}",
            rendered.files.len(),
            sim_plot::report_path(&study_dir).display()
        );
        for (name, why) in &rendered.left_out {
            println!("  left out {name}: {why}");
        }
    }
    println!(
        "tables and figures in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(true)
}

/// What the study will take: per data set and backbone, a training step
/// measured here on this build's backend (CPU, or the GPU with `--features
/// cuda`), and from it the time per epoch; the evaluations and the disk they
/// and the checkpoints take; and the pre-training of backbones not
/// pre-trained yet, from a step of each timed the same way. Reads the data
/// sets (and writes the splits, as the data stage would); builds no image
/// cache and trains nothing.
pub fn plan(config_path: &Path, config: &StudyConfig, jobs: usize) -> anyhow::Result<()> {
    use sim_train::data::prepare::PreparedDataset;
    use sim_train::finetune::plan::{EvalImages, RunCost, time_step};
    use sim_train::train::batch_parts::BatchParts;
    use sim_train::train::classifier::Classifier;
    check_output_folder(&config.output_dir())?;
    let missing = check_backbone_files(config)?;
    if !missing.is_empty() {
        bail!("{}", missing_checkpoints(config_path, &missing));
    }
    let study = sim_study::StudyDir::new(config.output_dir());
    sim_train::backend::use_kernel_cache(&study.kernel_cache());
    let natural = PreparedDataset::load(config, &study, &DatasetId::Natural)?;
    // Runs per data set and backbone: every method × seed.
    let runs = config.study.seeds.len() * config.methods.len();
    let device = Default::default();
    let parts = BatchParts::for_training(&config.training);
    let run_threads = if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        rayon::current_num_threads()
    } else {
        threads_per_run(jobs)
    };
    let run_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(run_threads)
        .build()?;
    // Pre-training not done yet: one backbone at a time, before any run.
    let mut pretrain_seconds = 0.0;
    for b in config.pretrainings() {
        let Some(p) = b.pretrain().filter(|p| p.objective != Objective::None) else {
            continue;
        };
        if sim_study::layout::pretrained_model(&sim_study::layout::pretrain_dir(config, b, p))
            .exists()
        {
            continue;
        }
        let step = sim_train::pretrain::time_step::<TrainBackend>(
            b,
            p,
            natural.dataset.classes.len(),
            &parts,
            &device,
        )?;
        let per_epoch = natural.train_indices().len().div_ceil(p.batch_size);
        let seconds = step * (per_epoch * p.epochs as usize) as f64;
        println!(
            "pre-training {} ({}): {} epochs of {per_epoch} steps, {step:.3} s/step, about {}",
            b.name,
            p.objective.name(),
            p.epochs,
            human_seconds(seconds)
        );
        pretrain_seconds += seconds;
    }
    println!(
        "{:<16} {:<16} {:>5} {:>7} {:>12} {:>9} {:>11} {:>12} {:>10}",
        "dataset",
        "backbone",
        "runs",
        "epochs",
        "evaluations",
        "s/step",
        "s/epoch",
        "all runs",
        "disk"
    );
    let (mut seconds, mut bytes, mut evaluations) = (0.0, 0u64, 0usize);
    for dataset in config.medical_names() {
        let medical =
            PreparedDataset::load(config, &study, &DatasetId::Medical(dataset.to_owned()))?;
        let images = EvalImages {
            medical_test: medical.test_indices().len(),
            medical_validation: medical.validation_indices().len(),
            natural_probe: natural
                .test_indices()
                .len()
                .min(config.evaluation.natural_probe_size),
            knn_bank: natural.train_indices().len(),
            knn_query: natural.test_indices().len(),
        };
        let classes = medical.dataset.classes.len();
        for b in &config.backbones {
            let path = config.backbone_file(b);
            let backbone = match b.pretrain() {
                // Not pre-trained yet: the cost of fine-tuning is the same from its initialisation.
                Some(p) if !path.exists() => {
                    sim_train::model::init::random_vit::<TrainBackend>(
                        sim_train::pretrain::vit_shape(b, p),
                        p.seed,
                        &device,
                    )?
                    .model
                }
                // (A missing checkpoint stopped the plan above.)
                _ => {
                    sim_train::model::load::<TrainBackend>(
                        &path,
                        &LoadOptions::for_backbone(b),
                        &device,
                    )?
                    .model
                }
            };
            let model = Classifier::new(backbone, classes, 0, &device);
            // Timed as a run takes it: on its share of the cores, its batches cut to match.
            let step = run_pool.install(|| {
                time_step(
                    &model,
                    config.training.batch_size,
                    b.input_size as usize,
                    classes,
                    &BatchParts::for_training(&config.training),
                    &device,
                )
            });
            let cost = RunCost::new(config, &model, images, medical.train_indices().len(), step);
            // Each run trains every epoch and evaluates the dumped ones; epoch 0 once per data set and backbone.
            let all = cost.run_seconds(config.training.epochs) * runs as f64
                + cost.full_evaluation().seconds;
            let disk = cost.disk_bytes() * runs as u64 + cost.full_evaluation().bytes;
            println!(
                "{dataset:<16} {:<16} {runs:>5} {:>7} {:>12} {step:>9.3} {:>11.0} {:>12} {:>10}",
                b.name,
                config.training.epochs,
                cost.evaluations * runs + 1,
                cost.run_seconds(config.training.epochs) / config.training.epochs as f64,
                human_seconds(all),
                human_bytes(disk)
            );
            seconds += all;
            bytes += disk;
            evaluations += cost.evaluations * runs + 1;
        }
    }
    println!(
        "total: {} runs, {evaluations} evaluations, {} on disk; about {} of compute, {} \
            with --jobs {jobs} on one device each{}",
        config.runs().len(),
        human_bytes(bytes),
        human_seconds(seconds + pretrain_seconds),
        human_seconds(seconds / jobs as f64 + pretrain_seconds),
        if pretrain_seconds > 0.0 {
            format!(
                " (pre-training {} of it, first)",
                human_seconds(pretrain_seconds)
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

fn human_bytes(b: u64) -> String {
    if b < 10_000_000 {
        format!("{:.1} MB", b as f64 / 1e6)
    } else if b < 10_000_000_000 {
        format!("{:.0} MB", b as f64 / 1e6)
    } else {
        format!("{:.1} GB", b as f64 / 1e9)
    }
}

/// Where every run of a study is, from its run folders.
pub fn status(config: &StudyConfig) -> anyhow::Result<()> {
    let study = sim_study::StudyDir::new(config.output_dir());
    study.check_layout()?;
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for run in config.runs() {
        let dir = study.run_dir(&run);
        let holder = sim_study::lock::holder(&dir)?;
        let (kind, line) = match (RunState::read(&dir), holder) {
            (Ok(Some(s)), _) if s.status != Status::Running => (s.status.name(), s.to_string()),
            (Ok(state), Some(holder)) => {
                let done = state.map_or("no epoch finished yet".to_string(), |s| {
                    format!("{} of {} epochs done", s.last_finished_epoch, s.epochs)
                });
                ("running", format!("running now ({holder}), {done}"))
            }
            (Ok(Some(s)), None) => (
                "interrupted",
                format!("{s}; interrupted (no process runs it): rerun to resume"),
            ),
            (Ok(None), None) if dir.exists() => (
                "interrupted",
                "started, no epoch finished; interrupted (no process runs it)".to_string(),
            ),
            (Ok(None), None) => ("not started", "not started".to_string()),
            (Err(e), _) => ("unreadable", e),
        };
        *counts.entry(kind).or_default() += 1;
        println!("{run}: {line}");
    }
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("{}", summary.join(", "));
    let jobs = StudyDir::new(config.output_dir()).slurm_jobs();
    if let Ok(text) = std::fs::read_to_string(&jobs) {
        println!("Slurm jobs ({}):\n{}", jobs.display(), text.trim_end());
    }
    Ok(())
}

/// Loads every backbone file that is there, as its run will (every tensor
/// finite, every shape right, the input size a multiple of the patch), and
/// lists those that are not there; none is downloaded (README,
/// "Checkpoints", says from where).
fn check_backbone_files(config: &StudyConfig) -> anyhow::Result<Vec<String>> {
    for b in &config.backbones {
        let path = config.backbone_file(b);
        if !path.exists() {
            continue;
        }
        sim_train::model::load::<CpuBackend>(
            &path,
            &LoadOptions::for_backbone(b),
            &Default::default(),
        )
        .with_context(|| format!("backbones `{}`", b.name))?;
    }
    Ok(missing_backbone_files(config))
}

/// The backbone files that are not there (those the pre-training stage
/// makes aside), one line each.
fn missing_backbone_files(config: &StudyConfig) -> Vec<String> {
    config
        .backbones
        .iter()
        .filter(|b| b.pretrain().is_none())
        .map(|b| (b, config.backbone_file(b)))
        .filter(|(_, path)| !path.exists())
        .map(|(b, path)| format!("  backbones `{}`: {}", b.name, path.display()))
        .collect()
}

/// Every data set folder the config names must exist. The missing ones
/// `fetch-data` knows are downloaded (their sizes said first) unless
/// `offline`; returns those it cannot fetch, each with the command that
/// would, or why there is none.
fn missing_data(config: &StudyConfig, offline: bool) -> anyhow::Result<Vec<String>> {
    let data_dir = sim_study::data_dir();
    let sources = fetch::known_sources()?;
    let mut fetchable = Vec::new();
    let mut problems = Vec::new();
    for (id, ds) in config.datasets() {
        let root = ds.resolved_root();
        if root.exists() {
            continue;
        }
        let known = sources
            .iter()
            .find(|s| data_dir.join(&s.name) == root)
            .cloned();
        match known {
            Some(source) if offline => problems.push(format!(
                "  {id} not found at {}; fetch it with: cargo xtask fetch-data --dest {} {}",
                root.display(),
                data_dir.display(),
                source.fetch_args
            )),
            Some(source) => fetchable.push(source),
            None => problems.push(format!(
                "  {id} not found at {} (its `root`, relative to SIM_DATA_DIR={}, where the \
                 data may already be); `cargo xtask fetch-data` knows ham10000/, imagenette/ \
                 and medmnist/<flag>[_<size>].npz",
                root.display(),
                data_dir.display()
            )),
        }
    }
    if problems.is_empty() && !fetchable.is_empty() {
        let listed: Vec<String> = fetchable.iter().map(fetch::Source::describe).collect();
        println!(
            "downloading into {}: {}",
            data_dir.display(),
            listed.join(", ")
        );
        for source in &fetchable {
            fetch::fetch_missing(std::slice::from_ref(source), &data_dir).with_context(|| {
                format!(
                    "the study lacks {} and downloading it failed; fetch it where there \
                     is internet with: cargo xtask fetch-data --dest {} {}",
                    source.name,
                    data_dir.display(),
                    source.fetch_args
                )
            })?;
        }
    }
    Ok(problems)
}
