//! Train/test splits: stratified by label, grouped (no lesion on both sides),
//! seeded. The split is written once to the study directory as a CSV
//! (`id,label,class,group,split,sha256`) and every later run reads it back, so the
//! split can be inspected, cited, and is the same for every seed. The
//! `sha256` column records each image as it was read ([`source_sha256`]):
//! the image caches are checked against it, and the file's own SHA-256 is
//! the data's identity that runs and epoch 0 record.
//!
//! Once a study has evaluations of a data set, its split is never made
//! again: a missing or stale split file is refused (a new split would put
//! other images on each side of finished runs).

use super::image_cache::source_sha256;
use super::table::CsvTable;
use super::{DataError, Dataset};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use sim_study::split_file;
use std::collections::BTreeMap;
use std::path::Path;

/// How to split a data set that comes without splits.
#[derive(Debug, Clone)]
pub struct SplitParams {
    pub seed: u64,
    pub test_fraction: f64,
    /// Share of the data set carved from the train side as the validation
    /// split (`validation`); 0: none.
    pub validation_fraction: f64,
    pub train: String,
    pub test: String,
    pub validation: String,
}

/// Every sample's split: `names[assign[i]]` is sample i's split.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub names: Vec<String>,
    pub assign: Vec<usize>,
    /// Each sample's SHA-256 (hex) as recorded when the split was made;
    /// empty for a split file written before they were recorded.
    pub sha256: Vec<String>,
}

/// Where the study's evaluations of a data set are, when it has any: then
/// its split must not be made again.
pub type InUse<'a> = Option<&'a Path>;

impl Split {
    /// The name of sample `i`'s split.
    pub fn side(&self, i: usize) -> &str {
        &self.names[self.assign[i]]
    }

    /// Indices of the samples in split `name` (empty if there is no such split).
    pub fn indices(&self, name: &str) -> Vec<usize> {
        match self.names.iter().position(|n| n == name) {
            Some(k) => (0..self.assign.len())
                .filter(|&i| self.assign[i] == k)
                .collect(),
            None => Vec::new(),
        }
    }

    /// The split of every sample: the data set's own if it has one, else a
    /// stratified grouped split, with every image's SHA-256 (each image is
    /// read once). Fails if a class ends up empty on either side.
    pub fn make(
        dataset: &Dataset,
        params: &SplitParams,
        dataset_name: &str,
    ) -> Result<Split, DataError> {
        let (names, assign) = match dataset
            .samples
            .iter()
            .map(|s| s.given_split.clone())
            .collect::<Option<Vec<_>>>()
        {
            Some(given) => {
                let names: Vec<String> = given
                    .iter()
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let assign = given
                    .iter()
                    .map(|g| names.binary_search(g).expect("name from this list"))
                    .collect();
                (names, assign)
            }
            None => stratified_group_split(dataset, params),
        };
        let sha256 = dataset
            .samples
            .par_iter()
            .map(|s| source_sha256(&s.source).map(hex::encode))
            .collect::<Result<_, _>>()?;
        let split = Split {
            names,
            assign,
            sha256,
        };
        split.check(dataset, params, dataset_name)?;
        Ok(split)
    }

    /// Reads the split written earlier to `path`, or makes it and writes it
    /// there. Where the study already has evaluations of the data set
    /// (`in_use`), a missing file is an error rather than a new split.
    pub fn load_or_make(
        dataset: &Dataset,
        params: &SplitParams,
        path: &Path,
        dataset_name: &str,
        in_use: InUse<'_>,
    ) -> Result<Split, DataError> {
        if path.exists() {
            let split = Split::read(path, dataset, in_use)?;
            split.check(dataset, params, dataset_name)?;
            return Ok(split);
        }
        if let Some(evaluations) = in_use {
            return Err(DataError::file(
                path,
                format!(
                    "missing, but the study's evaluations in {} were made with the split it \
                        held: a new split would put \
                     other images on each side of them. Restore the file, or run the study \
                     into a new study.output_dir",
                    evaluations.display()
                ),
            ));
        }
        let split = Split::make(dataset, params, dataset_name)?;
        split.write(path, dataset)?;
        Ok(split)
    }

    fn check(
        &self,
        dataset: &Dataset,
        params: &SplitParams,
        dataset_name: &str,
    ) -> Result<(), DataError> {
        let err = |message: String| DataError::Split {
            dataset: dataset_name.to_owned(),
            message,
        };
        if params.validation_fraction > 0.0 && !self.names.contains(&params.validation) {
            return Err(err(format!(
                "validation_fraction is {}, but there is no split named `{}` (splits: {}): a \
                    data set with its own splits keeps them; name one as validation_split",
                params.validation_fraction,
                params.validation,
                self.names.join(", ")
            )));
        }
        for name in [&params.train, &params.test] {
            let Some(k) = self.names.iter().position(|n| n == name) else {
                return Err(err(format!(
                    "no split named `{name}` (splits: {})",
                    self.names.join(", ")
                )));
            };
            let mut counts = vec![0usize; dataset.classes.len()];
            for (s, _) in dataset
                .samples
                .iter()
                .zip(&self.assign)
                .filter(|(_, a)| **a == k)
            {
                counts[s.label] += 1;
            }
            if let Some(c) = counts.iter().position(|&n| n == 0) {
                return Err(err(format!(
                    "class `{}` has no image in split `{name}`",
                    dataset.classes[c]
                )));
            }
        }
        Ok(())
    }

    fn write(&self, path: &Path, dataset: &Dataset) -> Result<(), DataError> {
        let rows = dataset
            .samples
            .iter()
            .zip(&self.assign)
            .zip(&self.sha256)
            .map(|((s, &a), sha256)| split_file::SplitRow {
                id: &s.id,
                label: s.label,
                class: &dataset.classes[s.label],
                group: &s.group,
                split: &self.names[a],
                sha256,
            });
        split_file::write(path, rows).map_err(|e| DataError::io(path, e))
    }

    /// Reads a split CSV; it must list the data set's samples in order, with
    /// the same labels and groups (else the data changed under the study:
    /// the error names the field that changed, and what to do).
    fn read(path: &Path, dataset: &Dataset, in_use: InUse<'_>) -> Result<Split, DataError> {
        let mut table = CsvTable::open(path)?;
        let (id, label, group, split) = (
            table.column(split_file::ID)?,
            table.column(split_file::LABEL)?,
            table.column(split_file::GROUP)?,
            table.column(split_file::SPLIT)?,
        );
        let sha256_column = table.optional_column(split_file::SHA256);
        let mut names: Vec<String> = Vec::new();
        let mut assign = Vec::with_capacity(dataset.samples.len());
        let mut sha256 = Vec::new();
        let advice = match in_use {
            Some(evaluations) => format!(
                "the study's evaluations in {} were made with the data as it was: restore \
                    the data set, \
                 or run the study into a new study.output_dir",
                evaluations.display()
            ),
            None => "no evaluation uses the split yet: remove the file to split again".to_string(),
        };
        let stale = |line: usize, what: String| {
            DataError::row(
                path,
                line,
                format!("{what}: the data set changed since this split was made; {advice}"),
            )
        };
        for (i, row) in table.rows().enumerate() {
            let row = row?;
            let get = |c: usize| row.record.get(c).unwrap_or("");
            let Some(sample) = dataset.samples.get(i) else {
                return Err(stale(
                    row.line,
                    format!(
                        "more rows than the data set's {} images",
                        dataset.samples.len()
                    ),
                ));
            };
            if get(id) != sample.id {
                return Err(stale(
                    row.line,
                    format!(
                        "the split has image `{}` here, the data set `{}` (images added or \
                            removed)",
                        get(id),
                        sample.id
                    ),
                ));
            }
            if get(label) != sample.label.to_string() {
                let class = |l: &str| {
                    l.parse::<usize>()
                        .ok()
                        .and_then(|l| dataset.classes.get(l))
                        .map_or(String::new(), |c| format!(" (`{c}`)"))
                };
                let (was, now) = (get(label), sample.label.to_string());
                return Err(stale(
                    row.line,
                    format!(
                        "the label of `{}` is {was}{} in the split, {now}{} in the data set",
                        sample.id,
                        class(was),
                        class(&now)
                    ),
                ));
            }
            if get(group) != sample.group {
                return Err(stale(
                    row.line,
                    format!(
                        "the group (lesion) of `{}` is `{}` in the split, `{}` in the data set",
                        sample.id,
                        get(group),
                        sample.group
                    ),
                ));
            }
            if let Some(c) = sha256_column {
                sha256.push(get(c).to_owned());
            }
            let name = get(split);
            let k = match names.iter().position(|n| n == name) {
                Some(k) => k,
                None => {
                    names.push(name.to_owned());
                    names.len() - 1
                }
            };
            assign.push(k);
        }
        if assign.len() != dataset.samples.len() {
            return Err(stale(
                assign.len() + 1,
                format!("{} rows for {} images", assign.len(), dataset.samples.len()),
            ));
        }
        // Canonical order (sorted names) so a read split equals the one made.
        let mut sorted = names.clone();
        sorted.sort();
        let remap: Vec<usize> = names
            .iter()
            .map(|n| sorted.binary_search(n).expect("same names"))
            .collect();
        Ok(Split {
            names: sorted,
            assign: assign.into_iter().map(|k| remap[k]).collect(),
            sha256,
        })
    }
}

/// Each group goes to one side. Per class (a group's class is its most
/// frequent label), groups are shuffled with the seed and moved to the test
/// side while that brings the class's test count closer to its target;
/// then, where `validation_fraction` > 0, the class's groups left on the
/// train side are moved to the validation side the same way (the same
/// generator, after every class's test draw: a split without validation is
/// the one made before validation splits existed). Returns the split names
/// (sorted) and each sample's.
fn stratified_group_split(dataset: &Dataset, params: &SplitParams) -> (Vec<String>, Vec<usize>) {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in dataset.samples.iter().enumerate() {
        groups.entry(&s.group).or_default().push(i);
    }
    let n_classes = dataset.classes.len();
    let mut by_class: Vec<Vec<&Vec<usize>>> = vec![Vec::new(); n_classes];
    for members in groups.values() {
        let mut counts = vec![0usize; n_classes];
        for &i in members {
            counts[dataset.samples[i].label] += 1;
        }
        let class = (0..n_classes)
            .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
            .expect("at least one class");
        by_class[class].push(members);
    }
    let carve_validation = params.validation_fraction > 0.0;
    let mut names = vec![params.train.clone(), params.test.clone()];
    if carve_validation {
        names.push(params.validation.clone());
    }
    names.sort();
    let index = |name: &str| names.iter().position(|n| n == name).expect("named above");
    let (train, test) = (index(&params.train), index(&params.test));
    let mut assign = vec![train; dataset.samples.len()];
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    // A class's target on a side: a share of all its images.
    let target = |groups: &[&Vec<usize>], fraction: f64| {
        let total: usize = groups.iter().map(|g| g.len()).sum();
        (fraction * total as f64).round() as i64
    };
    for class_groups in &mut by_class {
        class_groups.shuffle(&mut rng);
        let test_images = target(class_groups, params.test_fraction);
        move_towards(class_groups, test_images, (train, test), &mut assign);
    }
    if carve_validation {
        let validation = index(&params.validation);
        for class_groups in &mut by_class {
            class_groups.shuffle(&mut rng);
            let validation_images = target(class_groups, params.validation_fraction);
            let left: Vec<&Vec<usize>> = class_groups
                .iter()
                .copied()
                .filter(|g| assign[g[0]] == train)
                .collect();
            move_towards(&left, validation_images, (train, validation), &mut assign);
        }
    }
    (names, assign)
}

/// Moves `groups` (in order) from side `from` to side `to` while that
/// brings the images moved closer to `target`.
fn move_towards(
    groups: &[&Vec<usize>],
    target: i64,
    (from, to): (usize, usize),
    assign: &mut [usize],
) {
    let mut taken = 0i64;
    for members in groups {
        let with = taken + members.len() as i64;
        if (with - target).abs() < (taken - target).abs() {
            taken = with;
            for &i in members.iter() {
                debug_assert_eq!(assign[i], from);
                assign[i] = to;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ImageSource, Sample};
    use std::collections::{HashMap, HashSet};

    /// 3 classes, groups of 1–3 images of one class, plus a few mixed groups.
    fn synthetic(n_groups: usize) -> Dataset {
        let mut samples = Vec::new();
        for g in 0..n_groups {
            let size = 1 + g % 3;
            for k in 0..size {
                let label = if g % 11 == 0 { k % 3 } else { g % 3 };
                samples.push(Sample {
                    id: format!("img{g}_{k}"),
                    source: ImageSource::Memory(std::sync::Arc::new(image::RgbImage::from_pixel(
                        1,
                        1,
                        image::Rgb([g as u8, k as u8, 0]),
                    ))),
                    label,
                    group: format!("lesion{g}"),
                    given_split: None,
                });
            }
        }
        Dataset {
            classes: vec!["a".into(), "b".into(), "c".into()],
            samples,
        }
    }

    fn params(seed: u64) -> SplitParams {
        SplitParams {
            seed,
            test_fraction: 0.2,
            validation_fraction: 0.0,
            train: "train".into(),
            test: "test".into(),
            validation: "val".into(),
        }
    }

    #[test]
    fn groups_never_straddle_and_classes_are_stratified() {
        let ds = synthetic(600);
        let split = Split::make(&ds, &params(7), "synthetic").unwrap();
        let mut side_of_group: HashMap<&str, usize> = HashMap::new();
        for (s, &a) in ds.samples.iter().zip(&split.assign) {
            assert_eq!(
                *side_of_group.entry(&s.group).or_insert(a),
                a,
                "group {} on both sides",
                s.group
            );
        }
        let test = split.indices("test");
        for c in 0..3 {
            let total = ds.samples.iter().filter(|s| s.label == c).count() as f64;
            let in_test = test.iter().filter(|&&i| ds.samples[i].label == c).count() as f64;
            assert!(
                (in_test / total - 0.2).abs() < 0.03,
                "class {c}: {in_test}/{total}"
            );
        }
    }

    #[test]
    fn a_validation_split_is_carved_from_train_leaving_the_test_split_as_it_was() {
        let ds = synthetic(600);
        let without = Split::make(&ds, &params(7), "s").unwrap();
        let p = SplitParams {
            validation_fraction: 0.1,
            ..params(7)
        };
        let with = Split::make(&ds, &p, "s").unwrap();
        assert_eq!(with.names, ["test", "train", "val"]);
        assert_eq!(with.indices("test"), without.indices("test"));
        let mut side_of_group: HashMap<&str, usize> = HashMap::new();
        for (s, &a) in ds.samples.iter().zip(&with.assign) {
            assert_eq!(
                *side_of_group.entry(&s.group).or_insert(a),
                a,
                "{}",
                s.group
            );
        }
        let val = with.indices("val");
        for c in 0..3 {
            let total = ds.samples.iter().filter(|s| s.label == c).count() as f64;
            let in_val = val.iter().filter(|&&i| ds.samples[i].label == c).count() as f64;
            assert!(
                (in_val / total - 0.1).abs() < 0.03,
                "class {c}: {in_val}/{total}"
            );
        }
    }

    #[test]
    fn same_seed_same_split_other_seed_other_split() {
        let ds = synthetic(300);
        let a = Split::make(&ds, &params(1), "s").unwrap();
        assert_eq!(a, Split::make(&ds, &params(1), "s").unwrap());
        assert_ne!(a, Split::make(&ds, &params(2), "s").unwrap());
    }

    #[test]
    fn written_split_reads_back_equal_and_is_reused() {
        let ds = synthetic(100);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("splits/medical.csv");
        let made = Split::load_or_make(&ds, &params(3), &path, "s", None).unwrap();
        // A different seed now must not matter: the study's split is the file.
        let reused = Split::load_or_make(&ds, &params(4), &path, "s", None).unwrap();
        assert_eq!(made, reused);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("id,label,class,group,split,sha256\nimg0_0,0,a,lesion0,"),
            "{text}"
        );
        let first = hex::encode(source_sha256(&ds.samples[0].source).unwrap());
        assert!(
            text.lines().nth(1).unwrap().ends_with(&format!(",{first}")),
            "{text}"
        );
        // A split file from before the column: read as it is, no hashes.
        let old: String = text
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_owned() + "\n")
            .collect();
        std::fs::write(&path, old).unwrap();
        let read = Split::load_or_make(&ds, &params(3), &path, "s", None).unwrap();
        assert_eq!(
            (read.names, read.assign, read.sha256.len()),
            (made.names, made.assign, 0)
        );
    }

    #[test]
    fn a_split_in_use_is_never_made_again() {
        let ds = synthetic(50);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("medical.csv");
        let runs = dir.path().join("runs/h");
        Split::load_or_make(&ds, &params(3), &path, "s", None).unwrap();
        std::fs::remove_file(&path).unwrap();
        let msg = Split::load_or_make(&ds, &params(3), &path, "s", Some(&runs))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("medical.csv: missing")
                && msg.contains("runs/h")
                && msg.contains("new study.output_dir"),
            "{msg}"
        );
        assert!(
            !path.exists(),
            "a new split was written under the study's runs"
        );
        // An image added: the advice is a new study folder, not a new split.
        Split::load_or_make(&ds, &params(3), &path, "s", None).unwrap();
        let mut added = ds.clone();
        added.samples.insert(
            3,
            Sample {
                id: "new".into(),
                ..ds.samples[0].clone()
            },
        );
        let msg = Split::load_or_make(&added, &params(3), &path, "s", Some(&runs))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("row 5") && msg.contains("`img2_0`") && msg.contains("`new`"),
            "{msg}"
        );
        assert!(
            msg.contains("new study.output_dir") && !msg.contains("remove the file"),
            "{msg}"
        );
    }

    #[test]
    fn stale_split_file_is_an_error_naming_the_row() {
        let ds = synthetic(50);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("medical.csv");
        Split::load_or_make(&ds, &params(3), &path, "s", None).unwrap();
        let mut changed = ds.clone();
        changed.samples[4].label = (changed.samples[4].label + 1) % 3;
        let msg = Split::load_or_make(&changed, &params(3), &path, "s", None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("medical.csv, row 6"), "{msg}");
        let id = &ds.samples[4].id;
        assert!(
            msg.contains(&format!(
                "the label of `{id}` is 2 (`c`) in the split, 0 (`a`) in the data set"
            )),
            "{msg}"
        );
        assert!(msg.contains("remove the file"), "{msg}");
        let mut moved = ds.clone();
        moved.samples[4].group = "lesion999".into();
        let msg = Split::load_or_make(&moved, &params(3), &path, "s", None)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(&format!(
                "the group (lesion) of `{id}` is `lesion2` in the \
            split, `lesion999` in the data set"
            )),
            "{msg}"
        );
    }

    #[test]
    fn a_class_left_empty_is_an_error_naming_class_and_split() {
        let mut ds = synthetic(60);
        // Class `c` only in one group: it cannot be on both sides.
        for s in ds.samples.iter_mut() {
            if s.label == 2 {
                s.label = 1;
            }
        }
        ds.samples[0].label = 2;
        let msg = Split::make(&ds, &params(0), "tiny")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("split of tiny"), "{msg}");
        assert!(msg.contains("class `c`"), "{msg}");
    }

    #[test]
    fn given_splits_are_kept() {
        let mut ds = synthetic(30);
        for (i, s) in ds.samples.iter_mut().enumerate() {
            s.given_split = Some(if i % 4 == 0 { "val" } else { "train" }.into());
        }
        let p = SplitParams {
            test: "val".into(),
            ..params(0)
        };
        let split = Split::make(&ds, &p, "folder").unwrap();
        assert_eq!(split.names, vec!["train".to_string(), "val".to_string()]);
        let val: HashSet<usize> = split.indices("val").into_iter().collect();
        assert_eq!(val, (0..ds.samples.len()).filter(|i| i % 4 == 0).collect());
    }
}
