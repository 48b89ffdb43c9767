//! sim-train: backbones in burn, the data they read, and fine-tuning runs.
//!
//! - [`data`]: data set readers, splits, the image cache, transforms, batches.
//! - [`model`]: the ViT backbones and their checkpoints.
//! - [`extract`]: every layer's features of a folder of images.
//! - [`finetune`]: one fine-tuning run; [`pretrain`]: a backbone of our own.
//! - [`train`]: what both train with (classifier, batch parts, schedule,
//!   checkpoints, the resumable folder's skeleton).
//! - [`backend`]: which burn backend the binaries run on, and their allocator.

pub mod backend;
pub mod data;
pub mod extract;
pub mod finetune;
pub mod model;
pub mod pretrain;
pub mod train;

pub use backend::CpuBackend;
