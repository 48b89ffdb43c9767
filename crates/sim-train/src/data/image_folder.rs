//! ImageFolder: `<root>/<split>/<class>/*.jpg|png|bmp` (splits given, as
//! Imagenette's `train`/`val`), or `<root>/<class>/*` (one folder, split by us).
//! Class names are the sorted class-folder names across all splits; each image
//! is its own group.

use super::{DataError, Dataset, ImageSource, Sample, list_images};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub fn read(root: &Path) -> Result<Dataset, DataError> {
    let top = sub_dirs(root)?;
    if top.is_empty() {
        return Err(DataError::file(
            root,
            "no sub-folders: expected <split>/<class>/ or <class>/ folders",
        ));
    }
    // With splits, the first level holds folders only; with classes, images.
    let has_splits = top
        .iter()
        .all(|d| list_images(d).map(|f| f.is_empty()).unwrap_or(false));
    let mut folders: Vec<(Option<String>, PathBuf)> = Vec::new();
    if has_splits {
        for split_dir in &top {
            let split = file_name(split_dir);
            for class_dir in sub_dirs(split_dir)? {
                folders.push((Some(split.clone()), class_dir));
            }
        }
    } else {
        folders.extend(top.into_iter().map(|d| (None, d)));
    }
    let classes: Vec<String> = folders
        .iter()
        .map(|(_, d)| file_name(d))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut samples = Vec::new();
    for (split, class_dir) in &folders {
        let label = classes
            .binary_search(&file_name(class_dir))
            .expect("class came from this list");
        for file in list_images(class_dir)? {
            let id = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .to_string_lossy()
                .replace('\\', "/");
            samples.push(Sample {
                group: id.clone(),
                id,
                source: ImageSource::File(file),
                label,
                given_split: split.clone(),
            });
        }
    }
    if samples.is_empty() {
        return Err(DataError::file(
            root,
            "no images (.jpg, .jpeg, .png, .bmp) in any class folder",
        ));
    }
    Ok(Dataset { classes, samples })
}

fn sub_dirs(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if path.is_dir() && !file_name(&path).starts_with('.') {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
