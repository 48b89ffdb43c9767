//! `cargo xtask reproduce --executor slurm`: the study's fine-tuning runs as
//! one Slurm job array (one task per data set × backbone × method × seed, resources from the
//! config's `[slurm]` section), and a job that makes the tables, figures and
//! report once every task has ended, whatever their exit (`afterany`, with
//! `--kill-on-invalid-dep=yes` so it never waits forever). The scripts are
//! written to `<study>/slurm/` and submitted with `sbatch` (only written with
//! `--dry-run`). A task whose run finished before does nothing, so submitting
//! again resumes a study.

use anyhow::{Context, bail};
use sim_study::StudyDir;
use sim_study::config::{RunId, SlurmConfig, StudyConfig};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The scripts of a study, and how to call this program from them.
pub struct Scripts {
    pub array: PathBuf,
    pub finish: PathBuf,
}

/// Characters that the scripts cannot carry in a path: `#SBATCH` lines are
/// not a shell (no quoting; `%` is a filename pattern there), and the
/// commands quote paths in single quotes.
const UNSAFE_IN_PATHS: [char; 10] = [' ', '\t', '\n', '#', '%', '\'', '"', '\\', '$', '`'];

/// Every path the scripts hold can be written into them as it is: refused,
/// naming the path and the character, before anything runs.
pub fn check_paths(config_path: &Path, config: &StudyConfig) -> anyhow::Result<()> {
    let named = [
        (
            "the study folder (study.output_dir or --output)",
            config.output_dir(),
        ),
        ("the config file", config_path.to_owned()),
        ("the data folder (SIM_DATA_DIR)", sim_study::data_dir()),
        ("this program", program()?),
    ];
    for (what, path) in named {
        let absolute =
            std::path::absolute(&path).with_context(|| format!("resolving {}", path.display()))?;
        if let Some(c) = absolute
            .to_string_lossy()
            .chars()
            .find(|c| UNSAFE_IN_PATHS.contains(c))
        {
            bail!(
                "{what} `{}` holds {c:?}, which a Slurm script cannot carry in a path \
                    (#SBATCH lines are not quoted); \
                 use a path without spaces, #, %, quotes, $, ` or \\",
                absolute.display()
            );
        }
    }
    Ok(())
}

/// This program's file, which the scripts run; refused where a rebuild
/// replaced it since it started (Linux then names it `… (deleted)`).
fn program() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    if exe.to_string_lossy().ends_with(" (deleted)") {
        bail!(
            "this program's file was replaced while it ran (a rebuild?): {}; run the command \
             again to write the Slurm scripts for the new one",
            exe.display()
        );
    }
    Ok(exe)
}

/// Writes the array and the finishing script; every path in them is absolute.
pub fn write_scripts(config_path: &Path, config: &StudyConfig) -> anyhow::Result<Scripts> {
    check_paths(config_path, config)?;
    let absolute =
        |p: &Path| std::path::absolute(p).with_context(|| format!("resolving {}", p.display()));
    let study = absolute(&config.output_dir())?;
    let dir = StudyDir::new(&study).slurm_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let exe = program()?;
    let config_path = absolute(config_path)?;
    let data = absolute(&sim_study::data_dir())?;
    let resources = config.slurm.clone().unwrap_or_default();
    let runs = config.runs().len();
    let common = format!(
        "--config '{}' --output '{}'",
        config_path.display(),
        study.display()
    );
    let array = script(
        &resources,
        &format!("{}-runs", config.study.name),
        &[
            format!("--array=0-{}", runs.saturating_sub(1)),
            format!("--output={}/run-%a.out", dir.display()),
        ],
        true,
        &data,
        &format!(
            "'{}' run-one {common} --index \"$SLURM_ARRAY_TASK_ID\"",
            exe.display()
        ),
    );
    let finish = script(
        &resources,
        &format!("{}-finish", config.study.name),
        &[format!("--output={}/finish.out", dir.display())],
        false,
        &data,
        &format!("'{}' finish {common}", exe.display()),
    );
    let scripts = Scripts {
        array: dir.join("array.sbatch"),
        finish: dir.join("finish.sbatch"),
    };
    sim_study::write_atomic(&scripts.array, array.as_bytes())?;
    sim_study::write_atomic(&scripts.finish, finish.as_bytes())?;
    Ok(scripts)
}

fn script(
    r: &SlurmConfig,
    name: &str,
    extra: &[String],
    gpus: bool,
    data: &Path,
    command: &str,
) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let mut option = |o: String| writeln!(s, "#SBATCH {o}").expect("a String takes writes");
    option(format!("--job-name={name}"));
    for e in extra {
        option(e.clone());
    }
    option(format!("--time={}", r.time));
    option(format!("--cpus-per-task={}", r.cpus_per_task));
    option(format!("--mem={}", r.mem));
    if let Some(p) = &r.partition {
        option(format!("--partition={p}"));
    }
    if let Some(a) = &r.account {
        option(format!("--account={a}"));
    }
    if gpus && r.gpus > 0 {
        option(format!("--gres=gpu:{}", r.gpus));
    }
    let _ = writeln!(
        s,
        "set -euo pipefail\nexport SIM_DATA_DIR='{}'\nexport \
            RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-1}}\"\nexec {command}",
        data.display()
    );
    s
}

/// Submits the array, then the finishing job after it; returns both job ids.
pub fn submit(scripts: &Scripts) -> anyhow::Result<(String, String)> {
    let array = sbatch(&[], &scripts.array)?;
    let finish = sbatch(
        &[
            format!("--dependency=afterany:{array}"),
            "--kill-on-invalid-dep=yes".into(),
        ],
        &scripts.finish,
    )?;
    Ok((array, finish))
}

fn sbatch(options: &[String], script: &Path) -> anyhow::Result<String> {
    let output = Command::new("sbatch")
        .arg("--parsable")
        .args(options)
        .arg(script)
        .output()
        .context(
            "running sbatch (is this a Slurm login node? --dry-run writes the scripts only)",
        )?;
    if !output.status.success() {
        bail!(
            "sbatch {}: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    // `--parsable` prints `<id>` or `<id>;<cluster>`.
    let id = String::from_utf8_lossy(&output.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() {
        bail!("sbatch {}: no job id in its output", script.display());
    }
    Ok(id)
}

/// The run of array task `index` ([`StudyConfig::runs`]'s order).
pub fn run_of_index(config: &StudyConfig, index: usize) -> anyhow::Result<RunId> {
    let runs = config.runs();
    match runs.get(index) {
        Some(run) => Ok(run.clone()),
        None => bail!("array index {index}: the study has {} runs", runs.len()),
    }
}
