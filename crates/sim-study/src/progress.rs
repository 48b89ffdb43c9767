//! How far a training is, for whoever watches: `progress.toml` in a run's
//! (or a pre-training's) folder, rewritten as the losses are read (at most
//! about twice a second), which `cargo xtask reproduce` reads to show every
//! running run in one view. Not a commit point: `run.toml` says what is
//! done; this says where the epoch in flight is.
//!
//! Whether bars are drawn at all is decided here too, once for every
//! binary: on a terminal's stderr, unless `--quiet` turned them off.

use crate::layout::progress_file;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where the step in flight is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub epoch: u32,
    pub epochs: u32,
    /// Steps done in this epoch, of `steps`.
    pub step: usize,
    pub steps: usize,
    /// The latest loss read.
    pub loss: f64,
    /// Images per second over the epoch so far.
    pub images_per_s: f64,
}

impl Progress {
    /// `epoch 2/4, step 30/110, loss 1.2345, 456 images/s`.
    pub fn describe(&self) -> String {
        format!(
            "epoch {}/{}, step {}/{}, loss {:.4}, {:.0} images/s",
            self.epoch, self.epochs, self.step, self.steps, self.loss, self.images_per_s
        )
    }

    /// Written over the last (temporary file, then rename; not synced:
    /// [`crate::atomic::replace_unsynced`]).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).expect("progress serialises");
        crate::atomic::replace_unsynced(&progress_file(dir), text.as_bytes())
    }

    /// What a folder's training last said; `None` before its first step or
    /// for a file that does not parse.
    pub fn read(dir: &Path) -> Option<Progress> {
        toml::from_str(&std::fs::read_to_string(progress_file(dir)).ok()?).ok()
    }
}

static QUIET: AtomicBool = AtomicBool::new(false);

/// Turns progress bars off for this process (`--quiet`).
pub fn set_quiet() {
    QUIET.store(true, Ordering::Relaxed);
}

/// Whether to draw progress bars: stderr is a terminal and `--quiet` was
/// not given. Elsewhere (a log file, Slurm, CI) only log lines are written.
pub fn bars() -> bool {
    use std::io::IsTerminal;
    !QUIET.load(Ordering::Relaxed) && std::io::stderr().is_terminal()
}

/// A bar of `len` steps drawn with `template` (indicatif's), or a hidden
/// one where [`bars`] says no: the one way every binary makes its bars.
pub fn bar(len: u64, template: &str) -> indicatif::ProgressBar {
    let bar = if bars() {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("a valid template"));
    bar
}

/// A spinner saying what a stage is doing (hidden where [`bars`] says no).
pub fn spinner(what: &str) -> indicatif::ProgressBar {
    let spinner = bar(0, "{spinner} {msg}");
    spinner.set_message(what.to_string());
    spinner.enable_steady_tick(std::time::Duration::from_millis(150));
    spinner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_read_back_as_written_and_absent_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Progress::read(dir.path()), None);
        let p = Progress {
            epoch: 2,
            epochs: 4,
            step: 30,
            steps: 110,
            loss: 1.23456,
            images_per_s: 456.2,
        };
        p.write(dir.path()).unwrap();
        assert_eq!(Progress::read(dir.path()), Some(p.clone()));
        assert_eq!(
            p.describe(),
            "epoch 2/4, step 30/110, loss 1.2346, 456 images/s"
        );
        std::fs::write(progress_file(dir.path()), "epoch = ").unwrap();
        assert_eq!(Progress::read(dir.path()), None);
    }
}
