//! What a sweep shows while it runs. On a terminal (and without `--quiet`),
//! one live view: a bar for the whole sweep (runs done, failed and left,
//! time to go from the runs that ended) and a line per running run (data
//! set, backbone, method, seed, epoch, step, loss, images/s, from the
//! `progress.toml` its process writes) that goes when the run ends, with
//! log lines printed above the bars. Elsewhere (a log file, Slurm, CI),
//! plain lines, a line per run start and end and nothing between.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sim_study::StudyDir;
use sim_study::config::RunId;
use sim_study::progress::Progress;
use std::collections::HashMap;
use std::time::Duration;

pub struct SweepView {
    /// The bars, on a terminal.
    live: Option<Live>,
}

struct Live {
    multi: MultiProgress,
    overall: ProgressBar,
    runs: HashMap<String, ProgressBar>,
}

impl SweepView {
    /// A view of `total` runs, `done` of them finished before.
    pub fn new(total: usize, done: usize) -> SweepView {
        if !sim_study::progress::bars() {
            return SweepView { live: None };
        }
        let multi = MultiProgress::new();
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template("runs {bar:30} {pos}/{len} ({msg})")
                .expect("a valid template"),
        );
        overall.set_position(done as u64);
        overall.enable_steady_tick(Duration::from_millis(500));
        SweepView {
            live: Some(Live {
                multi,
                overall,
                runs: HashMap::new(),
            }),
        }
    }

    /// A line above the bars (or on stderr).
    pub fn println(&self, line: &str) {
        match &self.live {
            Some(live) => {
                let _ = live.multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn started(&mut self, run: &RunId) {
        match &mut self.live {
            Some(live) => {
                let bar = live.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix}: {msg}")
                        .expect("a valid template"),
                );
                bar.set_prefix(run.to_string());
                bar.set_message("starting");
                bar.enable_steady_tick(Duration::from_millis(200));
                live.runs.insert(run.to_string(), bar);
            }
            None => eprintln!("run {run}: started"),
        }
    }

    /// Each running run's line, from what its process last wrote.
    pub fn update<'a>(&self, study: &StudyDir, running: impl Iterator<Item = &'a RunId>) {
        let Some(live) = &self.live else { return };
        for run in running {
            if let (Some(bar), Some(p)) = (
                live.runs.get(&run.to_string()),
                Progress::read(&study.run_dir(run)),
            ) {
                bar.set_message(p.describe());
            }
        }
    }

    /// A run ended: its line goes and `line` says how; elsewhere than on a
    /// terminal, with the sweep's `status` after it (`3 done, 2 running, 0
    /// failed, 9 left; about …`), which [`SweepView::status`] then shows.
    pub fn ended(&mut self, run: &RunId, line: &str, counted: bool, status: &str) {
        match &mut self.live {
            Some(live) => {
                if let Some(bar) = live.runs.remove(&run.to_string()) {
                    bar.finish_and_clear();
                    live.multi.remove(&bar);
                }
                if counted {
                    live.overall.inc(1);
                }
                let _ = live.multi.println(line);
            }
            None => eprintln!("{line}; runs: {status}"),
        }
    }

    /// The sweep's status on the overall bar.
    pub fn status(&self, status: &str) {
        if let Some(live) = &self.live {
            live.overall.set_message(status.to_string());
        }
    }

    /// The last word: the overall bar stays on screen with it.
    pub fn finish(self, status: &str) {
        match self.live {
            Some(live) => live.overall.finish_with_message(status.to_string()),
            None => eprintln!("runs: {status}"),
        }
    }
}
