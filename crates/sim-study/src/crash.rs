//! A test hook for kill tests: `SIM_CRASH_AT=<point>[@<n>]` kills this
//! process with SIGKILL the n-th time (default: the first) it reaches the
//! named point, as a `kill -9` at exactly that instant would. The points are
//! the steps between two writes of the run machinery (`finetune` names its
//! own); the tests use them to show the files on disk are valid at each one.
//! Unset, a point costs one environment lookup.
//!
//! The same points can pause instead (`SIM_PAUSE_AT=<point>:<file>`), so a
//! test can change the study at exactly that instant: a race made
//! deterministic.

use std::collections::HashMap;
use std::sync::Mutex;

/// The environment variable that names the point.
pub const CRASH_VAR: &str = "SIM_CRASH_AT";

static HITS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

/// Kills the process here if `SIM_CRASH_AT` names this point (and this hit).
pub fn point(name: &str) {
    let Ok(wanted) = std::env::var(CRASH_VAR) else {
        return;
    };
    let (wanted_name, nth) = match wanted.split_once('@') {
        Some((n, k)) => (n, k.parse::<u32>().unwrap_or(1)),
        None => (wanted.as_str(), 1),
    };
    if wanted_name != name {
        return;
    }
    let mut hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
    let count = hits
        .get_or_insert_with(HashMap::new)
        .entry(name.to_string())
        .or_insert(0);
    *count += 1;
    if *count == nth {
        eprintln!(
            "{CRASH_VAR}={wanted}: killing process {} at `{name}`",
            std::process::id()
        );
        // Safety: kill(2) on our own pid with SIGKILL; nothing runs after it.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        unreachable!("SIGKILL is not delivered late");
    }
}

/// The environment variable of the pause hook: `SIM_PAUSE_AT=<point>:<file>`.
pub const PAUSE_VAR: &str = "SIM_PAUSE_AT";

/// Pauses here if `SIM_PAUSE_AT` names this point: writes `<file>`, then
/// waits until it is removed (at most five minutes), so the test that set
/// the variable acts while this process stands at the point.
pub fn pause(name: &str) {
    let Ok(wanted) = std::env::var(PAUSE_VAR) else {
        return;
    };
    let Some((point, file)) = wanted.split_once(':') else {
        return;
    };
    if point != name {
        return;
    }
    let file = std::path::Path::new(file);
    if let Err(e) = std::fs::write(
        file,
        format!("process {} paused at `{name}`\n", std::process::id()),
    ) {
        eprintln!("{PAUSE_VAR}={wanted}: cannot write {}: {e}", file.display());
        return;
    }
    let start = std::time::Instant::now();
    while file.exists() && start.elapsed() < std::time::Duration::from_secs(300) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
