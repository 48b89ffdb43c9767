//! The one skeleton of a resumable training folder, a fine-tuning run's
//! (`crate::finetune::run`) or a pre-training's (`crate::pretrain::run`).
//! Its commit point (`run.toml`, `pretrain.toml`: [`CommitPoint`]) says
//! which epochs count; anything else a kill left is rewritten:
//!
//! 1. the caller locks the folder and reads its commit point (a finished
//!    one ends there, writing nothing);
//! 2. [`start`]: remove what a killed attempt left, open the log;
//! 3. [`resume`]: remove the checkpoints of other epochs, restore the last
//!    committed one;
//! 4. per epoch: train; on a failure [`fail`]; write what the epoch
//!    produced (evaluations), then [`commit_epoch`]: checkpoint, commit
//!    point, older checkpoints pruned;
//! 5. [`finish`], after whatever follows the last epoch.

use super::checkpoint::prune_checkpoints;
use sim_study::run_state::CommitPoint;
use sim_study::{crash, remove_leftovers};
use std::path::Path;

/// Removes a killed attempt's leftovers from `dir` (temporary files,
/// `.partial` folders), opens the log `log`, and logs what was removed.
pub fn start(dir: &Path, log: &Path) -> anyhow::Result<tracing::subscriber::DefaultGuard> {
    let removed = remove_leftovers(dir)?;
    let guard = logging(log)?;
    for path in removed {
        tracing::info!("removed {}, left by an interrupted attempt", path.display());
    }
    Ok(guard)
}

/// Resumes after `resumed_at`: the checkpoints of other epochs (older ones a
/// kill kept from being pruned, later ones a kill kept from being
/// committed) are removed, then `restore` reads the committed one.
pub fn resume<T>(
    dir: &Path,
    resumed_at: u32,
    restore: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    prune_checkpoints(dir, resumed_at)?;
    restore()
}

/// Commits `epoch` once its other files are written: `save` writes its
/// checkpoint, then the commit point says the epoch is done (a kill at
/// `crash_point`, right after, is tested), then other checkpoints go.
pub fn commit_epoch<S: CommitPoint>(
    dir: &Path,
    state: &mut S,
    epoch: u32,
    save: impl FnOnce() -> anyhow::Result<()>,
    crash_point: &str,
) -> anyhow::Result<()> {
    save()?;
    state.epoch_done(epoch);
    state.write(dir)?;
    crash::point(crash_point);
    prune_checkpoints(dir, epoch)?;
    Ok(())
}

/// Commits that training stopped for `why`; returns the commit point's
/// path, for the error that names it.
pub fn fail<S: CommitPoint>(
    dir: &Path,
    state: &mut S,
    why: String,
) -> anyhow::Result<std::path::PathBuf> {
    state.failed(why);
    state.write(dir)?;
    Ok(S::path(dir))
}

/// Commits that the folder is done.
pub fn finish<S: CommitPoint>(dir: &Path, state: &mut S) -> std::io::Result<()> {
    state.finished();
    state.write(dir)
}

/// Logs to `log_file` (appended) and stderr, at the level `RUST_LOG` asks (default info).
fn logging(log_file: &Path) -> anyhow::Result<tracing::subscriber::DefaultGuard> {
    use tracing_subscriber::layer::SubscriberExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file)),
        )
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    Ok(tracing::subscriber::set_default(subscriber))
}
