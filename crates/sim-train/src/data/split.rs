//! Train/test splits: stratified by label, grouped (no lesion on both sides),
//! seeded. The split is written once to the study directory as a CSV
//! (`id,label,class,group,split`) and every later run reads it back, so the
//! split can be inspected, cited, and is the same for every seed.

use super::table::CsvTable;
use super::{DataError, Dataset};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;

/// How to split a data set that comes without splits.
#[derive(Debug, Clone)]
pub struct SplitParams {
    pub seed: u64,
    pub test_fraction: f64,
    pub train: String,
    pub test: String,
}

/// Every sample's split: `names[assign[i]]` is sample i's split.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub names: Vec<String>,
    pub assign: Vec<usize>,
}

impl Split {
    /// Indices of the samples in split `name` (empty if there is no such split).
    pub fn indices(&self, name: &str) -> Vec<usize> {
        match self.names.iter().position(|n| n == name) {
            Some(k) => (0..self.assign.len()).filter(|&i| self.assign[i] == k).collect(),
            None => Vec::new(),
        }
    }

    /// The split of every sample: the data set's own if it has one, else a
    /// stratified grouped split. Fails if a class ends up empty on either side.
    pub fn make(dataset: &Dataset, params: &SplitParams, dataset_name: &str) -> Result<Split, DataError> {
        let split = match dataset.samples.iter().map(|s| s.given_split.clone()).collect::<Option<Vec<_>>>() {
            Some(given) => {
                let names: Vec<String> = given.iter().cloned().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
                let assign = given.iter().map(|g| names.binary_search(g).expect("name from this list")).collect();
                Split { names, assign }
            }
            None => stratified_group_split(dataset, params),
        };
        split.check(dataset, params, dataset_name)?;
        Ok(split)
    }

    /// Reads the split written earlier to `path`, or makes it and writes it there.
    pub fn load_or_make(dataset: &Dataset, params: &SplitParams, path: &Path, dataset_name: &str) -> Result<Split, DataError> {
        if path.exists() {
            let split = Split::read(path, dataset)?;
            split.check(dataset, params, dataset_name)?;
            return Ok(split);
        }
        let split = Split::make(dataset, params, dataset_name)?;
        split.write(path, dataset)?;
        Ok(split)
    }

    fn check(&self, dataset: &Dataset, params: &SplitParams, dataset_name: &str) -> Result<(), DataError> {
        let err = |message: String| DataError::Split { dataset: dataset_name.to_owned(), message };
        for name in [&params.train, &params.test] {
            let Some(k) = self.names.iter().position(|n| n == name) else {
                return Err(err(format!("no split named `{name}` (splits: {})", self.names.join(", "))));
            };
            let mut counts = vec![0usize; dataset.classes.len()];
            for (s, _) in dataset.samples.iter().zip(&self.assign).filter(|(_, a)| **a == k) {
                counts[s.label] += 1;
            }
            if let Some(c) = counts.iter().position(|&n| n == 0) {
                return Err(err(format!("class `{}` has no image in split `{name}`", dataset.classes[c])));
            }
        }
        Ok(())
    }

    fn write(&self, path: &Path, dataset: &Dataset) -> Result<(), DataError> {
        sim_study::write_atomic_with(path, |w| {
            let mut csv = csv::Writer::from_writer(w);
            csv.write_record(["id", "label", "class", "group", "split"])?;
            for (s, &a) in dataset.samples.iter().zip(&self.assign) {
                let label = s.label.to_string();
                csv.write_record([&s.id, &label, &dataset.classes[s.label], &s.group, &self.names[a]])?;
            }
            csv.flush()?;
            Ok(())
        })
        .map_err(|e| DataError::io(path, e))
    }

    /// Reads a split CSV; it must list the data set's samples in order, with
    /// the same labels and groups (else the data changed under the study).
    fn read(path: &Path, dataset: &Dataset) -> Result<Split, DataError> {
        let mut table = CsvTable::open(path)?;
        let (id, label, group, split) =
            (table.column("id")?, table.column("label")?, table.column("group")?, table.column("split")?);
        let mut names: Vec<String> = Vec::new();
        let mut assign = Vec::with_capacity(dataset.samples.len());
        let stale = |line: usize, what: String| {
            DataError::row(path, line, format!("{what}: the data set changed since this split was made; remove the file to split again"))
        };
        for (i, row) in table.rows().enumerate() {
            let row = row?;
            let get = |c: usize| row.record.get(c).unwrap_or("");
            let Some(sample) = dataset.samples.get(i) else {
                return Err(stale(row.line, format!("more rows than the data set's {} images", dataset.samples.len())));
            };
            if get(id) != sample.id || get(label) != sample.label.to_string() || get(group) != sample.group {
                return Err(stale(row.line, format!("row is `{}` but the data set has `{}` here", get(id), sample.id)));
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
            return Err(stale(assign.len() + 1, format!("{} rows for {} images", assign.len(), dataset.samples.len())));
        }
        // Canonical order (sorted names) so a read split equals the one made.
        let mut sorted = names.clone();
        sorted.sort();
        let remap: Vec<usize> = names.iter().map(|n| sorted.binary_search(n).expect("same names")).collect();
        Ok(Split { names: sorted, assign: assign.into_iter().map(|k| remap[k]).collect() })
    }
}

/// Each group goes to one side. Per class (a group's class is its most
/// frequent label), groups are shuffled with the seed and moved to the test
/// side while that brings the class's test count closer to its target.
fn stratified_group_split(dataset: &Dataset, params: &SplitParams) -> Split {
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
        let class = (0..n_classes).max_by_key(|&c| (counts[c], std::cmp::Reverse(c))).expect("at least one class");
        by_class[class].push(members);
    }
    let (train, test) = if params.train < params.test { (0, 1) } else { (1, 0) };
    let names = {
        let mut n = vec![params.train.clone(), params.test.clone()];
        n.sort();
        n
    };
    let mut assign = vec![train; dataset.samples.len()];
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    for class_groups in &mut by_class {
        class_groups.shuffle(&mut rng);
        let total: usize = class_groups.iter().map(|g| g.len()).sum();
        let target = (params.test_fraction * total as f64).round() as i64;
        let mut taken = 0i64;
        for members in class_groups.iter() {
            let with = taken + members.len() as i64;
            if (with - target).abs() < (taken - target).abs() {
                taken = with;
                for &i in members.iter() {
                    assign[i] = test;
                }
            }
        }
    }
    Split { names, assign }
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
                    source: ImageSource::File(format!("img{g}_{k}.jpg").into()),
                    label,
                    group: format!("lesion{g}"),
                    given_split: None,
                });
            }
        }
        Dataset { classes: vec!["a".into(), "b".into(), "c".into()], samples }
    }

    fn params(seed: u64) -> SplitParams {
        SplitParams { seed, test_fraction: 0.2, train: "train".into(), test: "test".into() }
    }

    #[test]
    fn groups_never_straddle_and_classes_are_stratified() {
        let ds = synthetic(600);
        let split = Split::make(&ds, &params(7), "synthetic").unwrap();
        let mut side_of_group: HashMap<&str, usize> = HashMap::new();
        for (s, &a) in ds.samples.iter().zip(&split.assign) {
            assert_eq!(*side_of_group.entry(&s.group).or_insert(a), a, "group {} on both sides", s.group);
        }
        let test = split.indices("test");
        for c in 0..3 {
            let total = ds.samples.iter().filter(|s| s.label == c).count() as f64;
            let in_test = test.iter().filter(|&&i| ds.samples[i].label == c).count() as f64;
            assert!((in_test / total - 0.2).abs() < 0.03, "class {c}: {in_test}/{total}");
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
        let made = Split::load_or_make(&ds, &params(3), &path, "s").unwrap();
        // A different seed now must not matter: the study's split is the file.
        let reused = Split::load_or_make(&ds, &params(4), &path, "s").unwrap();
        assert_eq!(made, reused);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("id,label,class,group,split\nimg0_0,0,a,lesion0,"), "{text}");
    }

    #[test]
    fn stale_split_file_is_an_error_naming_the_row() {
        let ds = synthetic(50);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("medical.csv");
        Split::load_or_make(&ds, &params(3), &path, "s").unwrap();
        let mut changed = ds.clone();
        changed.samples[4].label = (changed.samples[4].label + 1) % 3;
        let msg = Split::load_or_make(&changed, &params(3), &path, "s").unwrap_err().to_string();
        assert!(msg.contains("medical.csv, row 6"), "{msg}");
        assert!(msg.contains("remove the file"), "{msg}");
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
        let msg = Split::make(&ds, &params(0), "tiny").unwrap_err().to_string();
        assert!(msg.contains("split of tiny"), "{msg}");
        assert!(msg.contains("class `c`"), "{msg}");
    }

    #[test]
    fn given_splits_are_kept() {
        let mut ds = synthetic(30);
        for (i, s) in ds.samples.iter_mut().enumerate() {
            s.given_split = Some(if i % 4 == 0 { "val" } else { "train" }.into());
        }
        let p = SplitParams { test: "val".into(), ..params(0) };
        let split = Split::make(&ds, &p, "folder").unwrap();
        assert_eq!(split.names, vec!["train".to_string(), "val".to_string()]);
        let val: HashSet<usize> = split.indices("val").into_iter().collect();
        assert_eq!(val, (0..ds.samples.len()).filter(|i| i % 4 == 0).collect());
    }
}
