//! What fine-tuning ([`crate::finetune`]) and pre-training
//! ([`crate::pretrain`]) both train with: the classifier (a backbone and a
//! linear head) and its cross-entropy, a batch cut into parts on threads,
//! the learning-rate schedule, checkpoints of the model and its optimisers,
//! a module's parameters as tensors, the resumable folder's skeleton, and
//! the progress line.

pub mod batch_parts;
pub mod checkpoint;
pub mod classifier;
pub mod params;
pub mod resumable;
pub mod schedule;

use std::io::Write;

/// A one-line progress bar on a terminal; nothing when stderr is a file
/// (the per-epoch log line says it all there).
pub(crate) fn progress(
    epoch: u32,
    epochs: u32,
    step: usize,
    steps: usize,
    loss: f64,
    images_per_s: f64,
) {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return;
    }
    let left = (steps - step) as f64 * (step as f64 / images_per_s.max(1e-9)) / step as f64;
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\repoch {epoch}/{epochs} step {step}/{steps}  loss {loss:.4}  {images_per_s:.1} \
            images/s  ETA {left:.0} s   "
    );
    let _ = err.flush();
}
