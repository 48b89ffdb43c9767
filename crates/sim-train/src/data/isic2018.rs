//! ISIC 2018 Task 3 as published: a one-hot ground-truth CSV
//! (`image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`), a folder of `<image>.jpg`, and
//! optionally `ISIC2018_Task3_Training_LesionGroupings.csv`
//! (`image,lesion_id,…`) so that a lesion's images stay in one split.
//! Labels use the HAM10000 names, so both layouts give the same classes.

use super::table::CsvTable;
use super::{DataError, Dataset, HAM10000_CLASSES, ImageSource, Sample, images_by_stem};
use std::collections::{HashMap, HashSet};
use std::path::Path;

pub fn read(
    ground_truth: &Path,
    images: &Path,
    groups: Option<&Path>,
) -> Result<Dataset, DataError> {
    let lesions = groups.map(read_groups).transpose()?;
    let mut table = CsvTable::open(ground_truth)?;
    let image = table.column("image")?;
    let class_columns = HAM10000_CLASSES
        .iter()
        .map(|c| table.column(&c.to_uppercase()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut files = images_by_stem(images)?;
    let mut seen = HashSet::new();
    let mut samples = Vec::new();
    let path = table.path().to_owned();
    for row in table.rows() {
        let row = row?;
        let image_id = row.record.get(image).unwrap_or("");
        let mut hot = Vec::new();
        for (label, &col) in class_columns.iter().enumerate() {
            let text = row.record.get(col).unwrap_or("");
            let v: f64 = text.parse().map_err(|_| {
                DataError::row(
                    &path,
                    row.line,
                    format!(
                        "`{text}` in column {} is not a number",
                        HAM10000_CLASSES[label].to_uppercase()
                    ),
                )
            })?;
            if v == 1.0 {
                hot.push(label);
            } else if v != 0.0 {
                return Err(DataError::row(
                    &path,
                    row.line,
                    format!("one-hot value {v} is neither 0 nor 1"),
                ));
            }
        }
        let [label] = hot[..] else {
            return Err(DataError::row(
                &path,
                row.line,
                format!("{} labels set, expected exactly one", hot.len()),
            ));
        };
        if !seen.insert(image_id.to_owned()) {
            return Err(DataError::row(
                &path,
                row.line,
                format!("image {image_id} appears twice"),
            ));
        }
        let group = match &lesions {
            Some((groups_path, map)) => map.get(image_id).cloned().ok_or_else(|| {
                DataError::file(groups_path, format!("no lesion_id for image {image_id}"))
            })?,
            None => image_id.to_owned(),
        };
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
            group,
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

fn read_groups(path: &Path) -> Result<(std::path::PathBuf, HashMap<String, String>), DataError> {
    let mut table = CsvTable::open(path)?;
    let (image, lesion) = (table.column("image")?, table.column("lesion_id")?);
    let mut map = HashMap::new();
    for row in table.rows() {
        let row = row?;
        let (i, l) = (
            row.record.get(image).unwrap_or(""),
            row.record.get(lesion).unwrap_or(""),
        );
        if i.is_empty() || l.is_empty() {
            return Err(DataError::row(path, row.line, "empty image or lesion_id"));
        }
        map.insert(i.to_owned(), l.to_owned());
    }
    Ok((path.to_owned(), map))
}
