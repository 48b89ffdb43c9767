//! What every part of a study shares: the study config (one TOML file, every
//! docs/SPEC.md default a field), where relative data paths resolve (`SIM_DATA_DIR`),
//! the layout of a study directory, the write-then-rename helper that keeps
//! half-written files out of it, the folder locks that keep two processes
//! from writing the same files, a run's and a pre-training's committed
//! state (`run.toml`, `pretrain.toml`), the study tables' names, the
//! rule that says whether a derived output is up to date (`manifest`), and
//! where the Hugging Face cache keeps a backbone file (`hub`).

pub mod atomic;
pub mod config;
pub mod crash;
pub mod eval_file;
pub mod fingerprint;
pub mod hub;
pub mod layout;
pub mod lock;
pub mod logging;
pub mod manifest;
pub mod pretrain_state;
pub mod progress;
pub mod real_data;
pub mod run_state;
pub mod split_file;
pub mod tables;
pub mod tensors;
pub mod test_mount;

pub use atomic::{remove_leftovers, write_atomic, write_atomic_with};
pub use config::{ConfigError, StudyConfig};
pub use layout::StudyDir;

/// The environment variable relative data and checkpoint paths resolve against.
pub const DATA_DIR_VAR: &str = "SIM_DATA_DIR";
/// Where data lives when `SIM_DATA_DIR` is unset (the project's `data/` folder).
pub const DEFAULT_DATA_DIR: &str = "data";

/// The data directory: `$SIM_DATA_DIR`, or `data/` when unset or empty.
pub fn data_dir() -> std::path::PathBuf {
    match std::env::var_os(DATA_DIR_VAR) {
        Some(v) if !v.is_empty() => v.into(),
        _ => DEFAULT_DATA_DIR.into(),
    }
}
