//! For tests that need the real data sets (`../shared/data` in CI, set through
//! `SIM_DATA_DIR`): they run when the data is there and, where it is not (a
//! fresh clone), say so on stderr instead of passing silently.

use std::io::Write;
use std::path::PathBuf;

/// The data directory if it holds `name` (e.g. `ham10000`); otherwise prints
/// `SKIPPED <test>: …` and returns `None`. A relative `SIM_DATA_DIR` is taken
/// from the workspace root, as `.ci/run` and the README give it.
pub fn real_data_dir(name: &str, test: &str) -> Option<PathBuf> {
    let dir = crate::data_dir();
    let dir = if dir.is_absolute() {
        dir
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir)
    };
    if dir.join(name).exists() {
        return Some(dir);
    }
    // Written to the stderr handle, not through eprintln!, so the test
    // harness's output capture does not swallow it.
    let line = format!(
        "SKIPPED {test}: no {name} in {} (set {} to the folder with the real data)\n",
        dir.display(),
        crate::DATA_DIR_VAR
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    None
}
