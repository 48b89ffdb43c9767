//! HAM10000 as published: `HAM10000_metadata.csv`
//! (`lesion_id,image_id,dx,dx_type,age,sex,localization`) and a folder of
//! `<image_id>.jpg`. The group of an image is its lesion.

use super::table::CsvTable;
use super::{DataError, Dataset, HAM10000_CLASSES, ImageSource, Sample, images_by_stem};
use std::collections::HashSet;
use std::path::Path;

pub fn read(metadata: &Path, images: &Path) -> Result<Dataset, DataError> {
    let mut table = CsvTable::open(metadata)?;
    let (lesion, image, dx) = (
        table.column("lesion_id")?,
        table.column("image_id")?,
        table.column("dx")?,
    );
    let mut files = images_by_stem(images)?;
    let mut seen = HashSet::new();
    let mut samples = Vec::new();
    let path = table.path().to_owned();
    for row in table.rows() {
        let row = row?;
        let field = |i: usize| row.record.get(i).unwrap_or("");
        let (lesion_id, image_id, diagnosis) = (field(lesion), field(image), field(dx));
        if image_id.is_empty() || lesion_id.is_empty() {
            return Err(DataError::row(
                &path,
                row.line,
                "empty image_id or lesion_id",
            ));
        }
        let label = HAM10000_CLASSES
            .iter()
            .position(|c| *c == diagnosis)
            .ok_or_else(|| {
                DataError::row(
                    &path,
                    row.line,
                    format!("unknown dx `{diagnosis}` (expected one of {HAM10000_CLASSES:?})"),
                )
            })?;
        if !seen.insert(image_id.to_owned()) {
            return Err(DataError::row(
                &path,
                row.line,
                format!("image_id {image_id} appears twice"),
            ));
        }
        let file = files.remove(image_id).ok_or_else(|| {
            DataError::row(
                &path,
                row.line,
                format!("image {image_id} not found in {}", images.display()),
            )
        })?;
        samples.push(Sample {
            id: image_id.to_owned(),
            source: ImageSource::File(file),
            label,
            group: lesion_id.to_owned(),
            given_split: None,
        });
    }
    if samples.is_empty() {
        return Err(DataError::file(&path, "no rows"));
    }
    Ok(Dataset {
        classes: HAM10000_CLASSES.map(String::from).to_vec(),
        samples,
    })
}
