//! MedMNIST `.npz`: `<split>_images` (N×H×W greyscale or N×H×W×3 RGB, uint8)
//! and `<split>_labels` (N or N×1 integers) for the splits `train`, `val`,
//! `test`. Multi-label sets (ChestMNIST) are refused. Each image is its own group.

use super::{DataError, Dataset, ImageSource, Sample};
use image::RgbImage;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

const SPLITS: [&str; 3] = ["train", "val", "test"];

pub fn read(npz: &Path) -> Result<Dataset, DataError> {
    let file = std::fs::File::open(npz).map_err(|e| DataError::io(npz, e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| DataError::file(npz, format!("not an .npz archive: {e}")))?;
    let mut samples = Vec::new();
    let mut n_classes = 0;
    for split in SPLITS {
        let images_key = format!("{split}_images");
        if archive.by_name(&format!("{images_key}.npy")).is_err() {
            continue;
        }
        let (shape, pixels) = read_u8_array(&mut archive, npz, &images_key)?;
        let labels_key = format!("{split}_labels");
        let (label_shape, labels) = read_int_array(&mut archive, npz, &labels_key)?;
        let n = *shape.first().unwrap_or(&0) as usize;
        let (h, w, c) = match shape[..] {
            [_, h, w] => (h as u32, w as u32, 1),
            [_, h, w, 3] => (h as u32, w as u32, 3),
            _ => {
                return Err(DataError::file(
                    npz,
                    format!("{images_key}: shape {shape:?} is not N×H×W or N×H×W×3"),
                ));
            }
        };
        if !(label_shape.len() == 1 || label_shape[1..] == [1]) {
            return Err(DataError::file(
                npz,
                format!("{labels_key}: shape {label_shape:?}: multi-label data is not supported"),
            ));
        }
        if labels.len() != n {
            return Err(DataError::file(
                npz,
                format!("{labels_key} has {} labels for {n} images", labels.len()),
            ));
        }
        let per_image = (h * w) as usize * c;
        for (i, (chunk, &label)) in pixels.chunks_exact(per_image).zip(&labels).enumerate() {
            let label = usize::try_from(label).map_err(|_| {
                DataError::file(npz, format!("{labels_key}[{i}] = {label} is negative"))
            })?;
            n_classes = n_classes.max(label + 1);
            let rgb = if c == 3 {
                RgbImage::from_raw(w, h, chunk.to_vec())
            } else {
                RgbImage::from_raw(w, h, chunk.iter().flat_map(|&v| [v, v, v]).collect())
            }
            .expect("chunk length is h*w*c");
            let id = format!("{split}/{i:06}");
            samples.push(Sample {
                group: id.clone(),
                id,
                source: ImageSource::Memory(Arc::new(rgb)),
                label,
                given_split: Some(split.to_owned()),
            });
        }
    }
    if samples.is_empty() {
        return Err(DataError::file(
            npz,
            "no `train_images`, `val_images` or `test_images` array",
        ));
    }
    Ok(Dataset {
        classes: (0..n_classes).map(|c| c.to_string()).collect(),
        samples,
    })
}

fn open_npy(
    archive: &mut zip::ZipArchive<std::fs::File>,
    npz: &Path,
    key: &str,
) -> Result<npyz::NpyFile<std::io::Cursor<Vec<u8>>>, DataError> {
    let mut entry = archive
        .by_name(&format!("{key}.npy"))
        .map_err(|_| DataError::file(npz, format!("no array `{key}`")))?;
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::file(npz, format!("{key}: {e}")))?;
    npyz::NpyFile::new(std::io::Cursor::new(bytes))
        .map_err(|e| DataError::file(npz, format!("{key}: {e}")))
}

fn read_u8_array(
    archive: &mut zip::ZipArchive<std::fs::File>,
    npz: &Path,
    key: &str,
) -> Result<(Vec<u64>, Vec<u8>), DataError> {
    let npy = open_npy(archive, npz, key)?;
    let shape = npy.shape().to_vec();
    let dtype = npy.dtype().descr();
    let data = npy
        .try_data::<u8>()
        .map_err(|_| DataError::file(npz, format!("{key}: dtype {dtype}, expected uint8")))?;
    let values = data
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| DataError::file(npz, format!("{key}: {e}")))?;
    Ok((shape, values))
}

fn read_int_array(
    archive: &mut zip::ZipArchive<std::fs::File>,
    npz: &Path,
    key: &str,
) -> Result<(Vec<u64>, Vec<i64>), DataError> {
    let npy = open_npy(archive, npz, key)?;
    let shape = npy.shape().to_vec();
    let dtype = npy.dtype().descr();
    let bad = |e: std::io::Error| DataError::file(npz, format!("{key}: {e}"));
    let values: Vec<i64> = match npy.try_data::<u8>() {
        Ok(d) => d
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(bad)?
            .into_iter()
            .map(i64::from)
            .collect(),
        Err(npy) => match npy.try_data::<i64>() {
            Ok(d) => d.collect::<std::io::Result<Vec<_>>>().map_err(bad)?,
            Err(npy) => match npy.try_data::<i32>() {
                Ok(d) => d
                    .collect::<std::io::Result<Vec<_>>>()
                    .map_err(bad)?
                    .into_iter()
                    .map(i64::from)
                    .collect(),
                Err(_) => {
                    return Err(DataError::file(
                        npz,
                        format!("{key}: dtype {dtype}, expected integers"),
                    ));
                }
            },
        },
    };
    Ok((shape, values))
}
