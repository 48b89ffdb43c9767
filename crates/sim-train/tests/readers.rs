//! Each reader on small data sets written by the tests, and each kind of bad
//! input: an error naming the file (and row), never a panic.

use image::{Rgb, RgbImage};
use sim_study::config::{DatasetConfig, DatasetKind};
use sim_train::data::{Dataset, ImageSource};
use std::fs;
use std::io::Write;
use std::path::Path;

fn write_jpeg(path: &Path, shade: u8) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(12, 9, Rgb([shade, 80, 160]))
        .save(path)
        .unwrap();
}

fn load(kind: DatasetKind, root: &Path) -> Result<Dataset, String> {
    Dataset::load(&DatasetConfig::new(kind, root)).map_err(|e| e.to_string())
}

/// A HAM10000 folder with the given metadata rows (`lesion,image,dx`) and an image per row.
fn ham_folder(rows: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("lesion_id,image_id,dx,dx_type,age,sex,localization\n");
    for (i, (lesion, image, dx)) in rows.iter().enumerate() {
        csv.push_str(&format!("{lesion},{image},{dx},histo,50.0,male,back\n"));
        write_jpeg(&dir.path().join(format!("images/{image}.jpg")), i as u8);
    }
    fs::write(dir.path().join("HAM10000_metadata.csv"), csv).unwrap();
    dir
}

#[test]
fn ham10000_rows_become_samples_grouped_by_lesion() {
    let dir = ham_folder(&[
        ("HAM_1", "ISIC_1", "nv"),
        ("HAM_1", "ISIC_2", "nv"),
        ("HAM_2", "ISIC_3", "mel"),
    ]);
    let ds = load(DatasetKind::Ham10000, dir.path()).unwrap();
    assert_eq!(ds.samples.len(), 3);
    assert_eq!(ds.classes[ds.samples[2].label], "mel");
    assert_eq!(ds.samples[0].group, ds.samples[1].group);
    assert!(
        matches!(&ds.samples[0].source, ImageSource::File(p) if p.ends_with("images/ISIC_1.jpg"))
    );
}

#[test]
fn ham10000_unknown_label_names_file_and_row() {
    let dir = ham_folder(&[("HAM_1", "ISIC_1", "nv"), ("HAM_2", "ISIC_2", "melanoma")]);
    let msg = load(DatasetKind::Ham10000, dir.path()).unwrap_err();
    assert!(msg.contains("HAM10000_metadata.csv, row 3"), "{msg}");
    assert!(msg.contains("unknown dx `melanoma`"), "{msg}");
}

#[test]
fn ham10000_row_naming_a_missing_image_is_an_error() {
    let dir = ham_folder(&[("HAM_1", "ISIC_1", "nv"), ("HAM_2", "ISIC_2", "bcc")]);
    fs::remove_file(dir.path().join("images/ISIC_2.jpg")).unwrap();
    let msg = load(DatasetKind::Ham10000, dir.path()).unwrap_err();
    assert!(msg.contains("row 3"), "{msg}");
    assert!(msg.contains("image ISIC_2 not found"), "{msg}");
}

#[test]
fn ham10000_missing_column_and_duplicate_rows_are_errors() {
    let dir = ham_folder(&[("HAM_1", "ISIC_1", "nv"), ("HAM_1", "ISIC_1", "nv")]);
    let msg = load(DatasetKind::Ham10000, dir.path()).unwrap_err();
    assert!(msg.contains("ISIC_1 appears twice"), "{msg}");
    fs::write(
        dir.path().join("HAM10000_metadata.csv"),
        "lesion,image_id,dx\nHAM_1,ISIC_1,nv\n",
    )
    .unwrap();
    let msg = load(DatasetKind::Ham10000, dir.path()).unwrap_err();
    assert!(msg.contains("no column `lesion_id`"), "{msg}");
}

#[test]
fn missing_data_folder_says_how_to_get_it() {
    let msg = load(DatasetKind::Ham10000, Path::new("/nonexistent/ham10000")).unwrap_err();
    assert!(msg.contains("/nonexistent/ham10000"), "{msg}");
    assert!(msg.contains("SIM_DATA_DIR"), "{msg}");
}

fn isic_folder(rows: &[(&str, [u8; 7])], groups: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n");
    for (i, (image, hot)) in rows.iter().enumerate() {
        let values: Vec<String> = hot.iter().map(|v| format!("{v}.0")).collect();
        csv.push_str(&format!("{image},{}\n", values.join(",")));
        write_jpeg(
            &dir.path()
                .join(format!("ISIC2018_Task3_Training_Input/{image}.jpg")),
            i as u8,
        );
    }
    fs::write(
        dir.path().join("ISIC2018_Task3_Training_GroundTruth.csv"),
        csv,
    )
    .unwrap();
    if let Some(g) = groups {
        fs::write(dir.path().join("groups.csv"), g).unwrap();
    }
    dir
}

fn isic_config(root: &Path, groups: bool) -> DatasetConfig {
    DatasetConfig {
        groups: groups.then(|| "groups.csv".into()),
        ..DatasetConfig::new(DatasetKind::Isic2018, root)
    }
}

#[test]
fn isic2018_one_hot_maps_to_ham10000_names_and_lesions() {
    let groups = "image,lesion_id,diagnosis_confirm_type\nISIC_1,HAM_9,histo\nISIC_2,HAM_9,histo\n";
    let dir = isic_folder(
        &[
            ("ISIC_1", [1, 0, 0, 0, 0, 0, 0]),
            ("ISIC_2", [0, 0, 0, 0, 0, 0, 1]),
        ],
        Some(groups),
    );
    let ds = Dataset::load(&isic_config(dir.path(), true)).unwrap();
    assert_eq!(ds.classes[ds.samples[0].label], "mel");
    assert_eq!(ds.classes[ds.samples[1].label], "vasc");
    assert_eq!(ds.samples[0].group, "HAM_9");
    // Without the groupings file every image is its own group.
    let ds = Dataset::load(&isic_config(dir.path(), false)).unwrap();
    assert_eq!(ds.samples[1].group, "ISIC_2");
}

#[test]
fn isic2018_bad_one_hot_rows_and_missing_lesions_are_errors() {
    let dir = isic_folder(
        &[
            ("ISIC_1", [1, 0, 0, 0, 0, 0, 0]),
            ("ISIC_2", [1, 1, 0, 0, 0, 0, 0]),
        ],
        None,
    );
    let msg = Dataset::load(&isic_config(dir.path(), false))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("ISIC2018_Task3_Training_GroundTruth.csv, row 3"),
        "{msg}"
    );
    assert!(msg.contains("2 labels set"), "{msg}");
    let dir = isic_folder(
        &[("ISIC_1", [1, 0, 0, 0, 0, 0, 0])],
        Some("image,lesion_id\nISIC_7,HAM_1\n"),
    );
    let msg = Dataset::load(&isic_config(dir.path(), true))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("groups.csv") && msg.contains("no lesion_id for image ISIC_1"),
        "{msg}"
    );
}

#[test]
fn image_folder_with_and_without_splits() {
    let dir = tempfile::tempdir().unwrap();
    for (split, class, name) in [
        ("train", "cat", "a.jpg"),
        ("train", "dog", "b.PNG"),
        ("val", "cat", "c.jpeg"),
        ("val", "dog", "d.bmp"),
    ] {
        write_jpeg(&dir.path().join(format!("with/{split}/{class}/{name}")), 1);
        write_jpeg(
            &dir.path().join(format!("without/{class}/{split}-{name}")),
            1,
        );
    }
    fs::write(dir.path().join("with/train/cat/notes.txt"), "not an image").unwrap();
    let ds = load(DatasetKind::ImageFolder, &dir.path().join("with")).unwrap();
    assert_eq!(ds.classes, vec!["cat", "dog"]);
    assert_eq!(ds.samples.len(), 4);
    assert_eq!(ds.samples[0].id, "train/cat/a.jpg");
    assert_eq!(ds.samples[3].given_split.as_deref(), Some("val"));
    assert_eq!(ds.classes[ds.samples[3].label], "dog");
    let ds = load(DatasetKind::ImageFolder, &dir.path().join("without")).unwrap();
    assert_eq!(ds.samples.len(), 4);
    assert!(ds.samples.iter().all(|s| s.given_split.is_none()));
    fs::create_dir_all(dir.path().join("empty/cat")).unwrap();
    let msg = load(DatasetKind::ImageFolder, &dir.path().join("empty")).unwrap_err();
    assert!(msg.contains("no images"), "{msg}");
}

/// A `.npy` (format 1.0) of `shape` with dtype `descr`.
fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn write_npz(path: &Path, arrays: &[(&str, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(fs::File::create(path).unwrap());
    for (name, bytes) in arrays {
        zip.start_file(
            format!("{name}.npy"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn medmnist_greyscale_and_rgb_arrays_with_their_splits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dermamnist.npz");
    let grey: Vec<u8> = (0..3 * 4 * 4).map(|v| v as u8).collect();
    let rgb: Vec<u8> = (0..2 * 4 * 4 * 3).map(|v| v as u8).collect();
    let labels_i64: Vec<u8> = [2i64, 0, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npz(
        &path,
        &[
            ("train_images", npy("|u1", &[3, 4, 4], &grey)),
            ("train_labels", npy("<i8", &[3, 1], &labels_i64)),
            ("test_images", npy("|u1", &[2, 4, 4, 3], &rgb)),
            ("test_labels", npy("|u1", &[2, 1], &[1, 1])),
        ],
    );
    let ds = load(DatasetKind::Medmnist, &path).unwrap();
    assert_eq!(ds.samples.len(), 5);
    assert_eq!(ds.classes, vec!["0", "1", "2"]);
    assert_eq!(ds.samples[0].label, 2);
    assert_eq!(ds.samples[4].given_split.as_deref(), Some("test"));
    let ImageSource::Memory(img) = &ds.samples[1].source else {
        panic!("in-memory pixels")
    };
    assert_eq!(
        img.get_pixel(1, 0),
        &Rgb([17, 17, 17]),
        "greyscale becomes RGB"
    );
    let ImageSource::Memory(img) = &ds.samples[3].source else {
        panic!("in-memory pixels")
    };
    assert_eq!(img.get_pixel(0, 0), &Rgb([0, 1, 2]));
}

#[test]
fn medmnist_multi_label_and_mismatched_arrays_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chest.npz");
    write_npz(
        &path,
        &[
            ("train_images", npy("|u1", &[2, 2, 2], &[0; 8])),
            ("train_labels", npy("|u1", &[2, 3], &[0; 6])),
        ],
    );
    let msg = load(DatasetKind::Medmnist, &path).unwrap_err();
    assert!(
        msg.contains("chest.npz") && msg.contains("multi-label"),
        "{msg}"
    );
    write_npz(
        &path,
        &[
            ("train_images", npy("|u1", &[2, 2, 2], &[0; 8])),
            ("train_labels", npy("|u1", &[3], &[0; 3])),
        ],
    );
    let msg = load(DatasetKind::Medmnist, &path).unwrap_err();
    assert!(msg.contains("3 labels for 2 images"), "{msg}");
    fs::write(&path, b"not a zip").unwrap();
    let msg = load(DatasetKind::Medmnist, &path).unwrap_err();
    assert!(msg.contains("not an .npz archive"), "{msg}");
}
