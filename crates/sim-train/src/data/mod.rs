//! From a data set on disk to batches of burn tensors.
//!
//! The path of a sample through this module, in order:
//! 1. a reader ([`ham10000`], [`isic2018`], [`image_folder`], [`medmnist`])
//!    lists the samples: id, where the pixels are, label, group (lesion);
//! 2. [`split`] assigns each sample to a split (stratified, grouped, seeded),
//!    persisted as `splits/<data set>.csv` and reused by every run;
//! 3. [`image_cache`] decodes every image once, resized to the needed shorter
//!    side, into one file beside the study;
//! 4. [`transform`] crops (centre, or RandomResizedCrop + flips when training,
//!    and for DINO's views the photometric operations of [`colour`]) and
//!    normalises, and [`batch`] stacks the results into tensors.
//!
//! [`prepare`] runs steps 1–3 for a study config; `sim-train data` prints its summary.

pub mod batch;
pub mod colour;
pub mod error;
pub mod ham10000;
pub mod image_cache;
pub mod image_folder;
pub mod isic2018;
pub mod medmnist;
pub mod prepare;
pub mod split;
mod table;
pub mod transform;

pub use error::DataError;

use image::RgbImage;
use sim_study::config::{DatasetConfig, DatasetKind};
use std::path::PathBuf;
use std::sync::Arc;

/// The seven HAM10000 / ISIC 2018 Task 3 diagnoses, in the order labels use.
pub const HAM10000_CLASSES: [&str; 7] = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"];

/// Where a sample's pixels are.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// An image file (JPEG, PNG or BMP).
    File(PathBuf),
    /// Pixels that came inside an array file (MedMNIST `.npz`).
    Memory(Arc<RgbImage>),
}

/// One labelled image.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Stable identifier (image id, or path relative to the data set root).
    pub id: String,
    pub source: ImageSource,
    /// Index into [`Dataset::classes`].
    pub label: usize,
    /// Samples of one group (a lesion) always land in the same split.
    pub group: String,
    /// The split the data set itself assigns, if it comes with one.
    pub given_split: Option<String>,
}

/// The samples of one data set and the names of its classes.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
}

impl Dataset {
    /// Reads the data set a config describes (paths resolved against `SIM_DATA_DIR`).
    pub fn load(config: &DatasetConfig) -> Result<Dataset, DataError> {
        let root = config.resolved_root();
        if !root.exists() {
            return Err(DataError::MissingRoot { path: root });
        }
        let in_root = |p: Option<PathBuf>| root.join(p.unwrap_or_default());
        let mut dataset = match config.kind {
            DatasetKind::Ham10000 => ham10000::read(
                &in_root(config.metadata_file()),
                &in_root(config.images_dir()),
            ),
            DatasetKind::Isic2018 => {
                let groups = config.groups.as_ref().map(|g| root.join(g));
                isic2018::read(
                    &in_root(config.metadata_file()),
                    &in_root(config.images_dir()),
                    groups.as_deref(),
                )
            }
            DatasetKind::ImageFolder => image_folder::read(&root),
            DatasetKind::Medmnist => medmnist::read(&root),
        }?;
        if let Some(n) = config.max_samples {
            dataset.keep_subset(n);
        }
        Ok(dataset)
    }

    /// Keeps the `n` samples whose ids have the smallest SHA-256 (in their
    /// order): the same subset on every machine, whatever the file order.
    fn keep_subset(&mut self, n: usize) {
        use sha2::{Digest, Sha256};
        if n >= self.samples.len() {
            return;
        }
        let mut ranked: Vec<([u8; 32], usize)> = self
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| (Sha256::digest(s.id.as_bytes()).into(), i))
            .collect();
        ranked.sort_unstable();
        let mut keep = vec![false; self.samples.len()];
        for &(_, i) in &ranked[..n] {
            keep[i] = true;
        }
        let samples = std::mem::take(&mut self.samples);
        self.samples = samples
            .into_iter()
            .zip(keep)
            .filter_map(|(s, k)| k.then_some(s))
            .collect();
    }
}

/// File extensions read as images (case-insensitive).
const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "bmp"];

/// The image files directly inside `dir`, sorted by file name.
pub fn list_images(dir: &std::path::Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)));
        if is_image && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Image files of `dir` by file stem (`ISIC_0024306` → its path), so a label
/// table can be joined to its images without one `stat` per row.
fn images_by_stem(
    dir: &std::path::Path,
) -> Result<std::collections::HashMap<String, PathBuf>, DataError> {
    Ok(list_images(dir)?
        .into_iter()
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_owned(), p)))
        .collect())
}
