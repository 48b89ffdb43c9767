//! fetch-data against archives served from a loopback HTTP server made here.

use super::*;
use sim_train::data::Dataset;
use std::collections::HashMap;

#[path = "../../tests/common/archives.rs"]
mod archives;
use archives::{Sizes, serve, zip_of};

/// 14 ISIC images (7 lesions of two, one per class) and a 2-class
/// Imagenette with 4 train and 2 val images.
fn archives() -> HashMap<String, Vec<u8>> {
    archives::archives(&Sizes {
        isic_images: 14,
        nette_classes: 2,
        nette_train: 4,
        nette_val: 2,
    })
}

/// The official sources, served from `base`, with digests of the test archives.
fn sources(base: &str, files: &HashMap<String, Vec<u8>>) -> Vec<Source> {
    let mut sources = with_mirror(official_sources(), base);
    for s in &mut sources {
        s.expected_images = if s.name == "ham10000" { 14 } else { 6 };
        for d in &mut s.downloads {
            let bytes = &files[d.file_name()];
            if matches!(d.checksum, Checksum::Md5(_)) {
                d.checksum = Checksum::Md5(hex::encode(Md5::digest(bytes)));
            }
        }
    }
    sources
}

#[test]
fn fetches_verifies_and_lays_out_both_data_sets() {
    let files = archives();
    let base = serve(files.clone(), 16);
    let dest = tempfile::tempdir().unwrap();
    let sources = sources(&base, &files);
    let fetched = fetch_missing(&sources, dest.path()).unwrap();
    assert_eq!(
        fetched,
        vec!["ham10000".to_string(), "imagenette".to_string()]
    );

    let ham = Dataset::load(&DatasetConfig::new(
        DatasetKind::Ham10000,
        dest.path().join("ham10000"),
    ))
    .unwrap();
    assert_eq!(ham.samples.len(), 14);
    // ISIC column order MEL, NV, BCC, … maps onto HAM10000's dx names.
    assert_eq!(ham.classes[ham.samples[0].label], "mel");
    assert_eq!(ham.classes[ham.samples[2].label], "nv");
    assert_eq!(ham.samples[0].group, ham.samples[1].group);
    assert_ne!(ham.samples[0].group, ham.samples[2].group);
    let nette = Dataset::load(&DatasetConfig::new(
        DatasetKind::ImageFolder,
        dest.path().join("imagenette"),
    ))
    .unwrap();
    assert_eq!(nette.samples.len(), 6);
    assert_eq!(nette.classes, vec!["n01440764", "n01440765"]);
    assert!(!dest.path().join(".ham10000.partial").exists());

    // Present folders are left alone: nothing is downloaded again.
    assert!(fetch_missing(&sources, dest.path()).unwrap().is_empty());
}

#[test]
fn checksum_mismatch_stops_and_leaves_no_data_set_or_partial_file() {
    let files = archives();
    let base = serve(files.clone(), 8);
    let dest = tempfile::tempdir().unwrap();
    let mut sources = sources(&base, &files);
    sources.retain(|s| s.name == "imagenette");
    sources[0].downloads[0].checksum = Checksum::Md5("00000000000000000000000000000000".into());
    let msg = format!("{:#}", fetch_missing(&sources, dest.path()).unwrap_err());
    assert!(msg.contains("MD5"), "{msg}");
    assert!(msg.contains("imagenette2-320.tgz"), "{msg}");
    assert!(!dest.path().join("imagenette").exists());
    let left: Vec<_> = fs::read_dir(dest.path().join(".downloads"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "nothing half-downloaded is kept: {left:?}");
}

#[test]
fn incomplete_contents_stop_before_the_folder_appears() {
    let files = archives();
    let base = serve(files.clone(), 8);
    let dest = tempfile::tempdir().unwrap();
    let mut sources = sources(&base, &files);
    sources.retain(|s| s.name == "imagenette");
    sources[0].expected_images = 7;
    let msg = format!("{:#}", fetch_missing(&sources, dest.path()).unwrap_err());
    assert!(msg.contains("holds 6 labelled images, expected 7"), "{msg}");
    assert!(!dest.path().join("imagenette").exists());
}

#[test]
fn missing_file_on_the_server_is_an_error_naming_the_url() {
    let base = serve(HashMap::new(), 4);
    let dest = tempfile::tempdir().unwrap();
    let mut sources = with_mirror(official_sources(), &base);
    sources.retain(|s| s.name == "imagenette");
    let msg = format!("{:#}", fetch_missing(&sources, dest.path()).unwrap_err());
    assert!(msg.contains("imagenette2-320.tgz"), "{msg}");
    assert!(msg.contains("404"), "{msg}");
}

/// A `.npy` file of `values` in `shape`, written by npyz.
fn npy<T: npyz::AutoSerialize + Copy>(shape: &[u64], values: &[T]) -> Vec<u8> {
    use npyz::WriterBuilder;
    let mut out = Vec::new();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut out)
        .begin_nd()
        .unwrap();
    writer.extend(values.iter().copied()).unwrap();
    writer.finish().unwrap();
    out
}

/// A MedMNIST-shaped `.npz`: 28×28 grey images, labels N×1, `counts`
/// images in train, val and test.
fn medmnist_npz(counts: [usize; 3]) -> Vec<u8> {
    let mut entries = Vec::new();
    for (split, n) in ["train", "val", "test"].into_iter().zip(counts) {
        let pixels: Vec<u8> = (0..n * 28 * 28).map(|i| (i % 251) as u8).collect();
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 2).collect();
        let n = n as u64;
        entries.push((format!("{split}_images.npy"), npy(&[n, 28, 28], &pixels)));
        entries.push((format!("{split}_labels.npy"), npy(&[n, 1], &labels)));
    }
    zip_of(&entries)
}

#[test]
fn a_medmnist_file_is_fetched_checked_and_placed_where_a_config_finds_it() {
    let npz = medmnist_npz([4, 2, 2]);
    let files = HashMap::from([("pneumoniamnist_64.npz".to_string(), npz.clone())]);
    let base = serve(files, 8);
    let dest = tempfile::tempdir().unwrap();
    let mut source = medmnist::source("pneumoniamnist", 64).unwrap();
    source.expected_images = 8;
    let mut wrong = with_mirror(vec![source.clone()], &base);
    // The release's MD5 is not this test file's: refused, nothing placed.
    let msg = format!("{:#}", fetch_missing(&wrong, dest.path()).unwrap_err());
    assert!(
        msg.contains("MD5") && msg.contains("pneumoniamnist_64.npz"),
        "{msg}"
    );
    assert!(!dest.path().join("medmnist/pneumoniamnist_64.npz").exists());

    wrong[0].downloads[0].checksum = Checksum::Md5(hex::encode(Md5::digest(&npz)));
    let fetched = fetch_missing(&wrong, dest.path()).unwrap();
    assert_eq!(fetched, ["medmnist/pneumoniamnist_64.npz"]);
    let placed = dest.path().join("medmnist/pneumoniamnist_64.npz");
    let ds = Dataset::load(&DatasetConfig::new(DatasetKind::Medmnist, &placed)).unwrap();
    assert_eq!(ds.samples.len(), 8);
    let val = ds
        .samples
        .iter()
        .filter(|s| s.given_split.as_deref() == Some("val"))
        .count();
    assert_eq!(val, 2, "its own validation split comes with it");
    assert!(fetch_missing(&wrong, dest.path()).unwrap().is_empty());
}
