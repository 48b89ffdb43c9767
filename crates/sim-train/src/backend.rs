//! The burn backends. Flex is the CPU default (1.3–1.8x faster than ndarray
//! on this machine kind); the `ndarray` feature switches to burn's ndarray
//! backend; the `cuda` feature runs the binaries on an NVIDIA GPU. Also the
//! allocator every process linking this crate uses (mimalloc).

use std::ffi::{c_int, c_long};
use std::path::Path;

/// The allocator of every process linking this crate (the binary, its
/// benches and tests). A tensor op allocates its output afresh: with
/// glibc's malloc, outputs above its mmap threshold come as new pages from
/// the kernel each time (page faults, zeroing) and go back on free;
/// mimalloc keeps and reuses them. BENCHMARKS.md has what it changes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the 16th entry of `mi_option_e` in
/// the mimalloc.h it builds, v3; a test checks it against the option the
/// variable `MIMALLOC_PURGE_DELAY` sets).
const MI_OPTION_PURGE_DELAY: c_int = 15;

unsafe extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
}

/// Keeps the memory freed in this process for its later allocations
/// instead of returning it to the OS 10 ms after (mimalloc's default): a
/// training step frees and allocates the same activations again, and
/// memory handed back comes back as page faults and zeroed pages (about
/// 8 % of a small ViT's step, and up to 20 % fewer images/s, measured by
/// `scripts/bench_train.py`). The process's memory then stays at its peak
/// until it exits. Called first by the binaries and benches.
pub fn keep_freed_memory() {
    // SAFETY: sets an integer option; mimalloc reads options atomically.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// The CPU backend of default builds (tests always run on it).
#[cfg(not(feature = "ndarray"))]
pub type CpuBackend = burn::backend::Flex;
/// The CPU backend, with `--features ndarray`.
#[cfg(feature = "ndarray")]
pub type CpuBackend = burn::backend::NdArray;

/// What the binaries run on: the GPU with `--features cuda`, else the CPU.
#[cfg(feature = "cuda")]
pub type DeviceBackend = burn::backend::Cuda;
/// What the binaries run on: the GPU with `--features cuda`, else the CPU.
#[cfg(not(feature = "cuda"))]
pub type DeviceBackend = CpuBackend;

/// [`DeviceBackend`] in words (tables, logs).
pub const DEVICE_NAME: &str = if cfg!(feature = "cuda") {
    "GPU (burn CUDA)"
} else if cfg!(feature = "ndarray") {
    "CPU (burn ndarray)"
} else {
    "CPU (burn Flex)"
};

/// The training backend: automatic differentiation over [`DeviceBackend`].
pub type TrainBackend = burn::backend::Autodiff<DeviceBackend>;

/// Keeps the GPU's compiled kernels (PTX) and autotune results in `dir`,
/// shared by every process that names the same folder (the runs of a
/// study, its Slurm array tasks: cubecl's cache files are safe for several
/// writers), so only the first process of a study compiles and tunes. Without
/// it cubecl keeps no compiled kernels and tunes into `./target`. Any other
/// setting of a `cubecl.toml` and the `CUBECL_*` variables (e.g.
/// `CUBECL_AUTOTUNE_LEVEL=minimal`) still applies. Takes effect before the
/// process's first tensor only: a later call (or one after another folder
/// was named) changes nothing. A CPU build has nothing to keep.
pub fn use_kernel_cache(dir: &Path) {
    #[cfg(feature = "cuda")]
    {
        use burn::cubecl::config::cache::CacheConfig;
        use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
        if CubeClRuntimeConfig::storage().lock().is_some() {
            return;
        }
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        config.autotune.cache = CacheConfig::File(dir.join("autotune"));
        config.compilation.cache = Some(CacheConfig::File(dir.join("compiled")));
        CubeClRuntimeConfig::set(config);
    }
    #[cfg(not(feature = "cuda"))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option number is mimalloc's purge delay: a child process given
    /// `MIMALLOC_PURGE_DELAY` reads that value back under our number.
    #[test]
    fn the_purge_delay_option_is_the_one_its_variable_sets() {
        const CHILD: &str = "SIM_TRAIN_ALLOCATOR_TEST_CHILD";
        if std::env::var_os(CHILD).is_some() {
            assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, 1234);
            keep_freed_memory();
            assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, -1);
            return;
        }
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "backend::tests::the_purge_delay_option_is_the_one_its_variable_sets",
            ])
            .env(CHILD, "1")
            .env("MIMALLOC_PURGE_DELAY", "1234")
            .output()
            .unwrap();
        let said = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert!(
            child.status.success(),
            "the child saw another value:\n{}{}",
            said(&child.stdout),
            said(&child.stderr)
        );
    }
}
