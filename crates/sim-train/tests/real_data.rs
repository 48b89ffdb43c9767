//! The readers and the split on the real data sets (`SIM_DATA_DIR`, which
//! `.ci/run` points at `../shared/data`). Skipped, with a printed line, where
//! the data is absent.

use sim_study::StudyConfig;
use sim_study::config::{DatasetConfig, DatasetKind};
use sim_study::real_data::real_data_dir;
use sim_train::data::image_cache::CacheState;
use sim_train::data::prepare::data_stage;
use sim_train::data::split::{Split, SplitParams};
use sim_train::data::{Dataset, HAM10000_CLASSES};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

fn ham10000(dir: &Path) -> Dataset {
    Dataset::load(&DatasetConfig::new(
        DatasetKind::Ham10000,
        dir.join("ham10000"),
    ))
    .unwrap()
}

#[test]
fn ham10000_has_every_image_class_and_lesion() {
    let Some(dir) = real_data_dir("ham10000", "ham10000_has_every_image_class_and_lesion") else {
        return;
    };
    let ds = ham10000(&dir);
    assert_eq!(ds.samples.len(), 10_015);
    assert_eq!(ds.classes, HAM10000_CLASSES.map(String::from).to_vec());
    let mut counts = [0usize; 7];
    for s in &ds.samples {
        counts[s.label] += 1;
    }
    // akiec, bcc, bkl, df, mel, nv, vasc as the data's README lists them.
    assert_eq!(counts, [327, 514, 1099, 115, 1113, 6705, 142]);
    let lesions: BTreeSet<&str> = ds.samples.iter().map(|s| s.group.as_str()).collect();
    assert_eq!(lesions.len(), 7_470);
}

#[test]
fn ham10000_split_is_grouped_stratified_and_repeatable() {
    let Some(dir) = real_data_dir(
        "ham10000",
        "ham10000_split_is_grouped_stratified_and_repeatable",
    ) else {
        return;
    };
    let ds = ham10000(&dir);
    let params = SplitParams {
        seed: 0,
        test_fraction: 0.2,
        validation_fraction: 0.0,
        train: "train".into(),
        test: "test".into(),
        validation: "val".into(),
    };
    let split = Split::make(&ds, &params, "medical").unwrap();
    assert_eq!(
        split,
        Split::make(&ds, &params, "medical").unwrap(),
        "same seed, same split"
    );
    let mut side: HashMap<&str, usize> = HashMap::new();
    for (s, &a) in ds.samples.iter().zip(&split.assign) {
        assert_eq!(
            *side.entry(&s.group).or_insert(a),
            a,
            "lesion {} on both sides",
            s.group
        );
    }
    let test = split.indices("test");
    for (c, name) in HAM10000_CLASSES.iter().enumerate() {
        let total = ds.samples.iter().filter(|s| s.label == c).count() as f64;
        let held = test.iter().filter(|&&i| ds.samples[i].label == c).count() as f64;
        assert!(
            (held / total - 0.2).abs() < 0.02,
            "{name}: {held} of {total} in test"
        );
    }
    // The two byte-identical pairs share a lesion, so they share a side.
    let index: HashMap<&str, usize> = ds
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    for (a, b) in [
        ("ISIC_0024366", "ISIC_0029861"),
        ("ISIC_0024777", "ISIC_0029938"),
    ] {
        assert_eq!(
            split.assign[index[a]], split.assign[index[b]],
            "{a} and {b}"
        );
    }
}

#[test]
fn imagenette_keeps_its_train_and_val_splits() {
    let Some(dir) = real_data_dir("imagenette", "imagenette_keeps_its_train_and_val_splits") else {
        return;
    };
    let ds = Dataset::load(&DatasetConfig::new(
        DatasetKind::ImageFolder,
        dir.join("imagenette"),
    ))
    .unwrap();
    assert_eq!(ds.classes.len(), 10);
    assert_eq!(ds.classes[0], "n01440764");
    let params = SplitParams {
        seed: 0,
        test_fraction: 0.2,
        validation_fraction: 0.0,
        train: "train".into(),
        test: "val".into(),
        validation: "val".into(),
    };
    let split = Split::make(&ds, &params, "natural").unwrap();
    assert_eq!(split.indices("train").len(), 9_469);
    assert_eq!(split.indices("val").len(), 3_925);
}

/// The data stage of the CI study on the real data: every image decodes into
/// the caches, and a second call reuses the split and the caches.
#[test]
fn ci_study_data_stage_runs_then_resumes() {
    let Some(_) = real_data_dir("imagenette", "ci_study_data_stage_runs_then_resumes") else {
        return;
    };
    let config_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/ci.toml");
    let mut config = StudyConfig::from_file(&config_path).unwrap();
    let out = tempfile::tempdir().unwrap();
    config.study.output_dir = Some(out.path().join("ci"));
    let first = data_stage(&config).unwrap();
    let medical = &first[0];
    assert_eq!(
        medical.train_indices().len() + medical.test_indices().len(),
        10_015
    );
    assert_eq!(medical.groups_across_splits(), 0);
    assert!(medical.caches.iter().all(|c| c.state == CacheState::Built));
    let summary = medical.to_string();
    assert!(
        summary.contains("10015 images, 7 classes, 7470 groups"),
        "{summary}"
    );
    let second = data_stage(&config).unwrap();
    assert!(
        second
            .iter()
            .all(|p| p.split_reused && p.caches.iter().all(|c| c.state == CacheState::Reused))
    );
    assert_eq!(second[0].split, medical.split);
    assert_eq!(second[1].test_indices().len(), 3_925);
}
