//! The fine-tuning runs of a study as a sweep of separate processes, `jobs` at
//! a time (`cargo xtask reproduce --jobs N`). Each run is this program again
//! (`xtask run-one`), writing only its own run folder under that folder's lock,
//! with its output appended to `<run>/sweep.log`. On a multi-GPU machine each
//! job gets one GPU (`CUDA_VISIBLE_DEVICES`). A failed run does not stop the
//! others; the sweep ends with the list of failures. A run process dies with
//! the sweep (a `kill -9` of `reproduce` leaves no run behind holding a lock),
//! and rerunning the sweep resumes every run from its last committed epoch.
//! A run that another process holds (a second sweep of the same study, a
//! Slurm task, a `sim-train finetune` by hand) is left to it, said so, and
//! neither run twice nor counted as failed.

use anyhow::Context;
use sim_study::StudyDir;
use sim_study::config::{RunId, StudyConfig};
use sim_study::run_state::{RunState, Status};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use view::SweepView;

mod view;

/// How to run the sweep.
#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    /// Runs at a time (at least 1).
    pub jobs: usize,
    /// GPU ids, one per job at a time; empty: leave `CUDA_VISIBLE_DEVICES` alone.
    pub gpus: Vec<String>,
    /// The study folder, when not the config's `study.output_dir`.
    pub output: Option<PathBuf>,
}

/// A run that ended in an error.
#[derive(Debug, Clone)]
pub struct Failure {
    pub run: RunId,
    pub log: PathBuf,
    /// The last line the run wrote that says what went wrong.
    pub error: String,
}

/// How the sweep ended.
#[derive(Debug, Default)]
pub struct SweepReport {
    /// Finished before the sweep started.
    pub finished_before: usize,
    /// Finished during the sweep.
    pub finished_now: usize,
    pub failures: Vec<Failure>,
    /// Runs another process was running, with who that is.
    pub elsewhere: Vec<(RunId, String)>,
}

/// The exit code of `xtask run-one` when another process holds the run
/// (EX_TEMPFAIL): the sweep leaves the run to it.
pub const RUN_HELD_ELSEWHERE: i32 = 75;

struct Running {
    run: RunId,
    child: Child,
    gpu: Option<String>,
    started: Instant,
}

/// Runs every data set × backbone × method × seed of the study that has not finished.
pub fn sweep(
    config_path: &Path,
    config: &StudyConfig,
    options: &SweepOptions,
) -> anyhow::Result<SweepReport> {
    let study = StudyDir::new(config.output_dir());
    let mut report = SweepReport::default();
    let mut queue: Vec<RunId> = Vec::new();
    for run in config.runs() {
        let finished = RunState::read(&study.run_dir(&run))
            .ok()
            .flatten()
            .is_some_and(|s| s.status == Status::Finished);
        if finished {
            report.finished_before += 1;
        } else {
            queue.push(run);
        }
    }
    queue.reverse(); // popped from the back: config order
    let jobs = options.jobs.max(1).min(if options.gpus.is_empty() {
        usize::MAX
    } else {
        options.gpus.len()
    });
    // Each run gets its share of the cores, unless the user set it.
    let threads = threads_per_run(jobs);
    let total = queue.len();
    let mut view = SweepView::new(report.finished_before + total, report.finished_before);
    let mut running: Vec<Running> = Vec::new();
    let mut durations: Vec<Duration> = Vec::new();
    // A test stands here to replace this program's file, as a rebuild does.
    sim_study::crash::pause("sweep-starting");
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < jobs
            && let Some(run) = queue.pop()
        {
            if let Some(holder) = sim_study::lock::holder(&study.run_dir(&run))? {
                view.println(&format!("run {run}: being run by {holder}; left to it"));
                report.elsewhere.push((run, holder));
                continue;
            }
            let gpu = options
                .gpus
                .iter()
                .find(|g| !running.iter().any(|r| r.gpu.as_ref() == Some(g)))
                .cloned();
            let child = spawn(config_path, options, &study, &run, gpu.as_deref(), threads)?;
            view.started(&run);
            running.push(Running {
                run,
                child,
                gpu,
                started: Instant::now(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
        view.update(&study, running.iter().map(|r| &r.run));
        // (run, what became of it, whether it counts as ended in the bar)
        let mut ended: Vec<(RunId, String, bool)> = Vec::new();
        let mut still = Vec::new();
        for mut r in running.drain(..) {
            match r.child.try_wait()? {
                None => still.push(r),
                Some(status) => {
                    let took = r.started.elapsed();
                    durations.push(took);
                    if status.success() {
                        report.finished_now += 1;
                        let line = format!(
                            "run {}: finished in {}",
                            r.run,
                            human_seconds(took.as_secs_f64())
                        );
                        ended.push((r.run, line, true));
                    } else if status.code() == Some(RUN_HELD_ELSEWHERE) {
                        // Taken by another process between the look and the start.
                        let holder = sim_study::lock::holder(&study.run_dir(&r.run))?
                            .unwrap_or_else(|| "another process".into());
                        let line = format!("run {}: being run by {holder}; left to it", r.run);
                        report.elsewhere.push((r.run.clone(), holder));
                        ended.push((r.run, line, false));
                    } else {
                        let log = study.sweep_log(&r.run);
                        let error =
                            last_error(&log).unwrap_or_else(|| format!("exited with {status}"));
                        let line =
                            format!("run {} failed: {error} (log: {})", r.run, log.display());
                        report.failures.push(Failure {
                            run: r.run.clone(),
                            log,
                            error,
                        });
                        ended.push((r.run, line, true));
                    }
                }
            }
        }
        running = still;
        let status = status_line(&report, running.len(), queue.len(), total, &durations, jobs);
        for (run, line, counted) in ended {
            view.ended(&run, &line, counted, &status);
        }
        view.status(&status);
    }
    view.finish(&status_line(&report, 0, 0, total, &durations, jobs));
    Ok(report)
}

/// `3 done, 2 running, 1 failed, 10 left; about 12 min to go`.
fn status_line(
    report: &SweepReport,
    running: usize,
    left: usize,
    total: usize,
    durations: &[Duration],
    jobs: usize,
) -> String {
    let done = report.finished_before + report.finished_now;
    let mut line = format!(
        "{done} done, {running} running, {} failed, {left} left",
        report.failures.len()
    );
    if !report.elsewhere.is_empty() {
        line.push_str(&format!(
            ", {} run by another process",
            report.elsewhere.len()
        ));
    }
    if !durations.is_empty() && total > 0 && left + running > 0 {
        let mean =
            durations.iter().map(Duration::as_secs_f64).sum::<f64>() / durations.len() as f64;
        let to_go = mean * (left + running) as f64 / jobs as f64;
        line.push_str(&format!("; about {} to go", human_seconds(to_go)));
    }
    line
}

/// `45 s`, `12 min`, `3.5 h`.
pub fn human_seconds(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// The GPUs this process may use: `CUDA_VISIBLE_DEVICES` when set, else the
/// indices `nvidia-smi` lists; none where neither says.
pub fn detect_gpus() -> Vec<String> {
    if let Ok(visible) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return visible
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(String::from)
            .collect();
    }
    let Ok(out) = Command::new("nvidia-smi")
        .args(["--query-gpu=index", "--format=csv,noheader"])
        .output()
    else {
        return Vec::new();
    };
    if !out.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// `--jobs` when not given: one run per GPU where there are GPUs, else one
/// per core.
pub fn default_jobs(gpus: &[String]) -> usize {
    if gpus.is_empty() {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        gpus.len()
    }
}

/// The threads each of `jobs` runs at once gets: the machine's cores shared
/// out (where `RAYON_NUM_THREADS` is set, every process takes that instead).
pub fn threads_per_run(jobs: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .div_ceil(jobs.max(1))
        .max(1)
}

/// The program that starts the runs: on Linux the image this process runs
/// (`/proc/self/exe`), so that a rebuild replacing the file during a sweep
/// (cargo writes a new file under the old name) neither stops the sweep
/// nor starts its later runs from other code; elsewhere this program's path.
fn this_program() -> anyhow::Result<PathBuf> {
    let image = Path::new("/proc/self/exe");
    if image.exists() {
        return Ok(image.to_path_buf());
    }
    Ok(std::env::current_exe()?)
}

fn spawn(
    config_path: &Path,
    options: &SweepOptions,
    study: &StudyDir,
    run: &RunId,
    gpu: Option<&str>,
    threads: usize,
) -> anyhow::Result<Child> {
    let log_path = study.sweep_log(run);
    std::fs::create_dir_all(log_path.parent().expect("a run folder"))?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    writeln!(
        log,
        "--- sweep process {} starts this run",
        std::process::id()
    )?;
    let program = this_program()?;
    let mut command = Command::new(&program);
    command.args([
        "run-one",
        "--dataset",
        &run.dataset,
        "--backbone",
        &run.backbone,
        "--method",
        &run.method,
        "--seed",
        &run.seed.to_string(),
    ]);
    command.arg("--config").arg(config_path);
    if let Some(out) = &options.output {
        command.arg("--output").arg(out);
    }
    if let Some(gpu) = gpu {
        command.env("CUDA_VISIBLE_DEVICES", gpu);
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        command.env("RAYON_NUM_THREADS", threads.to_string());
    }
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    die_with_parent(&mut command);
    command
        .spawn()
        .with_context(|| format!("starting run {run} ({} run-one)", program.display()))
}

/// The run process is killed when the sweep process dies, however it dies.
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // Safety: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The last line of a run's log that reports an error (`Error: …`), or its last line.
fn last_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Stack backtrace"))
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("Error"))
        .or(lines.last())
        .map(|l| l.to_string())
}
