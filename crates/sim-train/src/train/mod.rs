//! What fine-tuning ([`crate::finetune`]) and pre-training
//! ([`crate::pretrain`]) both train with: the classifier (a backbone and a
//! linear head) and its cross-entropy, a batch cut into parts on threads,
//! the next batch drawn while a step runs, the learning-rate schedule,
//! checkpoints of the model and its optimisers, a module's parameters as
//! tensors, the resumable folder's skeleton, and how far an epoch is.

pub mod batch_parts;
pub mod checkpoint;
pub mod classifier;
pub mod params;
pub mod prefetch;
pub mod resumable;
pub mod schedule;

use sim_study::progress::Progress;
use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

/// How far an epoch is, shown and told: a bar on a terminal (step, loss,
/// images/s, time left; cleared when the epoch ends, before its log line)
/// and `progress.toml` in the training's folder (where it has one), which
/// the sweep reads ([`sim_study::progress`]), rewritten at most twice a second.
pub(crate) struct EpochProgress<'a> {
    bar: indicatif::ProgressBar,
    dir: Option<&'a Path>,
    epoch: u32,
    epochs: u32,
    steps: usize,
    last_written: Cell<Option<Instant>>,
}

impl<'a> EpochProgress<'a> {
    const WRITE_EVERY: Duration = Duration::from_millis(500);

    pub(crate) fn start(dir: Option<&'a Path>, epoch: u32, epochs: u32, steps: usize) -> Self {
        let bar = sim_study::progress::bar(
            steps as u64,
            "{prefix} {bar:30} {pos}/{len} steps, {msg}, {eta} left",
        );
        bar.set_prefix(format!("epoch {epoch}/{epochs}"));
        EpochProgress {
            bar,
            dir,
            epoch,
            epochs,
            steps,
            last_written: Cell::new(None),
        }
    }

    /// After step `step` (1-based) of the epoch.
    pub(crate) fn step(&self, step: usize, loss: f64, images_per_s: f64) {
        self.bar.set_position(step as u64);
        self.bar
            .set_message(format!("loss {loss:.4}, {images_per_s:.0} images/s"));
        let due = self
            .last_written
            .get()
            .is_none_or(|t| t.elapsed() >= Self::WRITE_EVERY);
        if let Some(dir) = self.dir
            && (due || step == self.steps)
        {
            let progress = Progress {
                epoch: self.epoch,
                epochs: self.epochs,
                step,
                steps: self.steps,
                loss,
                images_per_s,
            };
            // Only for watching: a failed write costs the watcher a line.
            if let Err(e) = progress.write(dir) {
                tracing::debug!("progress not written: {e}");
            }
            self.last_written.set(Some(Instant::now()));
        }
    }
}

impl Drop for EpochProgress<'_> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
