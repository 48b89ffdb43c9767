//! The burn backends. Flex is the CPU default (1.3–1.8x faster than ndarray
//! on this machine kind); the `ndarray` feature switches to burn's ndarray
//! backend; the `cuda` feature runs the binaries on an NVIDIA GPU.

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

/// The training backend: automatic differentiation over [`DeviceBackend`].
pub type TrainBackend = burn::backend::Autodiff<DeviceBackend>;
