//! Log lines for every binary: `tracing` to stderr, at the level `RUST_LOG`
//! asks (default `info`). A training adds its own log file on top
//! (`sim_train::train::resumable`); library code logs through `tracing`
//! and never prints.

/// Installs the process's subscriber; a second call keeps the first.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
