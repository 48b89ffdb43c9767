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

    /// burn Flex's copy of a strided view into a contiguous tensor, for
    /// the layouts that cannot collapse to two dims (the attention's head
    /// merge and its gradients; vendor/burn-flex patches their path):
    /// every element lands where an index walk over the view puts it.
    #[test]
    fn strided_views_copy_to_where_an_index_walk_puts_each_element() {
        use burn::tensor::{Tensor, TensorData};
        /// The value at `i` of the `[2, 3, 4, 5]` tensor: its flat index.
        fn at(i: [usize; 4]) -> f32 {
            (((i[0] * 3 + i[1]) * 4 + i[2]) * 5 + i[3]) as f32
        }
        let values: Vec<f32> = (0..120).map(|v| v as f32).collect();
        let x = Tensor::<CpuBackend, 4>::from_data(
            TensorData::new(values, [2, 3, 4, 5]),
            &Default::default(),
        );
        /// A case's name, its view, the view's shape, and where the view's
        /// element `[a, b, c, d]` comes from.
        type Case = (
            &'static str,
            Tensor<CpuBackend, 4>,
            [usize; 4],
            fn([usize; 4]) -> f32,
        );
        let cases: [Case; 4] = [
            (
                "heads merged back: unit-stride rows",
                x.clone().swap_dims(1, 2),
                [2, 4, 3, 5],
                |[a, b, c, d]| at([a, c, b, d]),
            ),
            (
                "innermost dim strided: tiled 2D blocks",
                x.clone().permute([1, 0, 3, 2]),
                [3, 2, 5, 4],
                |[a, b, c, d]| at([b, a, d, c]),
            ),
            (
                "a narrowed view of a permuted one, at an offset",
                x.clone()
                    .permute([2, 0, 1, 3])
                    .narrow(0, 1, 2)
                    .narrow(3, 2, 3),
                [2, 2, 3, 3],
                |[a, b, c, d]| at([b, c, a + 1, d + 2]),
            ),
            (
                "a flipped one (negative strides: the index walk itself)",
                x.swap_dims(1, 2).flip([3]),
                [2, 4, 3, 5],
                |[a, b, c, d]| at([a, c, b, 4 - d]),
            ),
        ];
        for (case, view, dims, source) in cases {
            assert_eq!(view.dims(), dims, "{case}");
            let flat: Tensor<CpuBackend, 1> = view.reshape([dims.iter().product::<usize>()]);
            let mut expected = Vec::new();
            for a in 0..dims[0] {
                for b in 0..dims[1] {
                    for c in 0..dims[2] {
                        for d in 0..dims[3] {
                            expected.push(source([a, b, c, d]));
                        }
                    }
                }
            }
            assert_eq!(
                flat.into_data().to_vec::<f32>().unwrap(),
                expected,
                "{case}"
            );
        }
    }
}
