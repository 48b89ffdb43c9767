//! The burn backends. Flex is the CPU default (1.3–1.8x faster than ndarray
//! on this machine kind); the `ndarray` feature switches to burn's ndarray
//! backend; the `cuda` feature runs the binaries on an NVIDIA GPU.

use std::path::Path;

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
