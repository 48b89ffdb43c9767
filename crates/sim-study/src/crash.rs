//! A test hook for kill tests: `SIM_CRASH_AT=<point>[@<n>]` kills this
//! process with SIGKILL the n-th time (default: the first) it reaches the
//! named point, as a `kill -9` at exactly that instant would. The points are
//! the steps between two writes of the run machinery (`finetune` names its
//! own); the tests use them to show the files on disk are valid at each one.
//! Unset, a point costs one environment lookup.

use std::collections::HashMap;
use std::sync::Mutex;

/// The environment variable that names the point.
pub const CRASH_VAR: &str = "SIM_CRASH_AT";

static HITS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

/// Kills the process here if `SIM_CRASH_AT` names this point (and this hit).
pub fn point(name: &str) {
    let Ok(wanted) = std::env::var(CRASH_VAR) else { return };
    let (wanted_name, nth) = match wanted.split_once('@') {
        Some((n, k)) => (n, k.parse::<u32>().unwrap_or(1)),
        None => (wanted.as_str(), 1),
    };
    if wanted_name != name {
        return;
    }
    let mut hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
    let count = hits.get_or_insert_with(HashMap::new).entry(name.to_string()).or_insert(0);
    *count += 1;
    if *count == nth {
        eprintln!("{CRASH_VAR}={wanted}: killing process {} at `{name}`", std::process::id());
        // Safety: kill(2) on our own pid with SIGKILL; nothing runs after it.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        unreachable!("SIGKILL is not delivered late");
    }
}
