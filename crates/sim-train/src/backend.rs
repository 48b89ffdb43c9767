//! The burn backends. Flex is the CPU default (1.3–1.8x faster than ndarray
//! on this machine kind); the `ndarray` feature switches to burn's ndarray
//! backend; the `cuda` feature adds NVIDIA GPUs.

/// The CPU backend of default builds.
#[cfg(not(feature = "ndarray"))]
pub type CpuBackend = burn::backend::Flex;
/// The CPU backend, with `--features ndarray`.
#[cfg(feature = "ndarray")]
pub type CpuBackend = burn::backend::NdArray;

/// The training backend: automatic differentiation over the CPU backend.
pub type TrainBackend = burn::backend::Autodiff<CpuBackend>;

/// The GPU backend, with `--features cuda`.
#[cfg(feature = "cuda")]
pub type GpuBackend = burn::backend::Cuda;
