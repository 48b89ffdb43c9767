//! The data stage of a study: read every data set, split them (or reuse the
//! study's split files), fill the image caches each backbone's input size
//! needs, and summarise what came out (`sim-train data`, `cargo xtask reproduce`).
//!
//! What a study's evaluations were made from is fixed by the split files:
//! every image in a cache is checked against the SHA-256 its split recorded,
//! and the split file's own SHA-256 ([`PreparedDataset::split_sha256`]) is
//! recorded by every run and epoch 0, so that a replaced image or a re-split
//! is refused instead of mixed into the study's numbers.

use super::image_cache::{CacheState, ImageCache};
use super::split::{Split, SplitParams};
use super::transform::cache_side;
use super::{DataError, Dataset};
use sim_study::config::{DatasetConfig, DatasetId, StudyConfig};
use sim_study::lock::DirLock;
use sim_study::{StudyDir, remove_leftovers};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One data set of a study, read and split.
pub struct PreparedDataset {
    pub id: DatasetId,
    pub config: DatasetConfig,
    pub dataset: Dataset,
    pub split: Split,
    pub read_time: Duration,
    pub split_file: PathBuf,
    /// SHA-256 of the split file: the data's identity in `run.toml` and epoch 0.
    pub split_sha256: String,
    pub split_reused: bool,
    /// Where the study's evaluations of this data set are, if it has any.
    pub in_use: Option<PathBuf>,
    pub caches: Vec<CacheReport>,
}

/// What filling one image cache took.
pub struct CacheReport {
    pub side: u32,
    pub path: PathBuf,
    pub state: CacheState,
    pub bytes: u64,
    pub time: Duration,
}

impl PreparedDataset {
    /// Reads and splits the data set `id`; the split file is made on the
    /// first call and read back on every later one.
    pub fn load(
        config: &StudyConfig,
        study: &StudyDir,
        id: &DatasetId,
    ) -> Result<PreparedDataset, DataError> {
        let ds_config = config
            .dataset(id)
            .map_err(|m| DataError::file(study.resolved_config(), m))?
            .clone();
        let start = Instant::now();
        let dataset = Dataset::load(&ds_config)?;
        let read_time = start.elapsed();
        let params = SplitParams {
            seed: config.study.split_seed,
            test_fraction: ds_config.test_fraction,
            validation_fraction: ds_config.validation_fraction,
            train: ds_config.train_split.clone(),
            test: ds_config.test_split().to_owned(),
            validation: ds_config.validation_split().to_owned(),
        };
        let split_file = study.split_csv(id);
        let split_reused = split_file.exists();
        let in_use = study.has_evaluations(id).then(|| match id {
            DatasetId::Medical(name) => study.medical_runs_dir(name),
            DatasetId::Natural => study.root().to_owned(),
        });
        let split = Split::load_or_make(
            &dataset,
            &params,
            &split_file,
            &id.file_stem(),
            in_use.as_deref(),
        )?;
        let split_sha256 = sim_study::fingerprint::sha256_file(&split_file)
            .map_err(|e| DataError::io(&split_file, e))?;
        Ok(PreparedDataset {
            id: id.clone(),
            config: ds_config,
            dataset,
            split,
            read_time,
            split_file,
            split_sha256,
            split_reused,
            in_use,
            caches: Vec::new(),
        })
    }

    /// The image cache for inputs of `size` pixels (shorter side size / crop_ratio).
    pub fn image_cache(&mut self, study: &StudyDir, size: u32) -> Result<ImageCache, DataError> {
        let side = cache_side(size, self.config.crop_ratio());
        let path = study.image_cache(&self.id, side);
        let start = Instant::now();
        let (cache, state) = ImageCache::load_or_build(&path, &self.dataset.samples, side)?;
        self.check_images(&cache)?;
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        self.caches.push(CacheReport {
            side,
            path,
            state,
            bytes,
            time: start.elapsed(),
        });
        Ok(cache)
    }

    /// Every cached image is the one the split recorded (a split file made
    /// before images were recorded is taken as it is).
    fn check_images(&self, cache: &ImageCache) -> Result<(), DataError> {
        let Some(i) = (0..self.split.sha256.len())
            .find(|&i| hex::encode(cache.source_sha256(i)) != self.split.sha256[i])
        else {
            return Ok(());
        };
        let advice = match &self.in_use {
            Some(evaluations) => format!(
                "the study's evaluations in {} were made from the recorded image: restore \
                    it, or run the study into a new study.output_dir",
                evaluations.display()
            ),
            None => format!(
                "no evaluation uses it yet: remove {} to record the data set as it is now",
                self.split_file.display()
            ),
        };
        Err(DataError::Split {
            dataset: self.id.file_stem(),
            message: format!(
                "image `{}` ({} split) is not the one the study recorded: SHA-256 {} in {}, \
                    {} now; {advice}",
                self.dataset.samples[i].id,
                self.split.side(i),
                self.split.sha256[i],
                self.split_file.display(),
                hex::encode(cache.source_sha256(i))
            ),
        })
    }

    /// Every sample's label, in the data set's order (the image cache's).
    pub fn labels(&self) -> Vec<usize> {
        self.dataset.samples.iter().map(|s| s.label).collect()
    }

    /// Sample indices of the training split.
    pub fn train_indices(&self) -> Vec<usize> {
        self.split.indices(&self.config.train_split)
    }

    /// Sample indices of the evaluation split.
    pub fn test_indices(&self) -> Vec<usize> {
        self.split.indices(self.config.test_split())
    }

    /// Sample indices of a medical data set's validation split (empty where
    /// it has none; the natural images never have one).
    pub fn validation_indices(&self) -> Vec<usize> {
        match self.id {
            DatasetId::Medical(_) => self.split.indices(self.config.validation_split()),
            DatasetId::Natural => Vec::new(),
        }
    }

    /// Groups found in more than one split (0 for a grouped split).
    pub fn groups_across_splits(&self) -> usize {
        let mut sides: HashMap<&str, usize> = HashMap::new();
        let mut crossing = BTreeSet::new();
        for (s, &a) in self.dataset.samples.iter().zip(&self.split.assign) {
            if *sides.entry(&s.group).or_insert(a) != a {
                crossing.insert(&s.group);
            }
        }
        crossing.len()
    }
}

/// Locks the study folder's shared files (study.toml, splits, image caches),
/// waiting for another process that is writing them, and removes what a
/// killed writer left there.
pub fn lock_study(study: &StudyDir) -> Result<DirLock, DataError> {
    let lock = DirLock::wait(study.root()).map_err(|e| DataError::io(study.root(), e))?;
    for dir in study.data_folders() {
        remove_leftovers(&dir).map_err(|e| DataError::io(&dir, e))?;
    }
    Ok(lock)
}

/// Runs the data stage for a whole study: records the resolved config in the
/// study directory, reads and splits every data set, and fills an image cache
/// for every input size among the study's backbones.
pub fn data_stage(config: &StudyConfig) -> Result<Vec<PreparedDataset>, DataError> {
    let study = StudyDir::new(config.output_dir());
    let _lock = lock_study(&study)?;
    study
        .write_resolved_config(config)
        .map_err(|e| DataError::io(study.resolved_config(), e))?;
    let sizes: BTreeSet<u32> = config.backbones.iter().map(|b| b.input_size).collect();
    let mut prepared = Vec::new();
    for (id, _) in config.datasets() {
        let p = PreparedDataset::load(config, &study, &id)?;
        check_fits_data(config, &p)?;
        prepared.push(p);
    }
    for p in &mut prepared {
        for &size in &sizes {
            p.image_cache(&study, size)?;
        }
    }
    Ok(prepared)
}

/// The settings that a data set's size bounds, checked before anything
/// trains: a batch larger than the medical training split (it would only
/// pad, and a typo's billion rows would exhaust memory), a k-NN k larger
/// than the bank (the natural training split).
pub fn check_fits_data(config: &StudyConfig, data: &PreparedDataset) -> Result<(), DataError> {
    let config_error = DataError::Setting;
    let train = data.train_indices().len();
    match &data.id {
        DatasetId::Medical(name) if config.training.batch_size > train => {
            Err(config_error(format!(
                "training.batch_size = {} is larger than the training split of `{name}` \
                    ({train} images)",
                config.training.batch_size
            )))
        }
        DatasetId::Natural if config.evaluation.knn_k.iter().any(|&k| k > train) => {
            Err(config_error(format!(
                "evaluation.knn_k = {:?} has a k larger than the k-NN bank (the natural \
                    data set's training split, {train} images)",
                config.evaluation.knn_k
            )))
        }
        _ => Ok(()),
    }
}

impl fmt::Display for PreparedDataset {
    /// Class counts per split, group counts, and what each step took.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ds = &self.dataset;
        let groups: BTreeSet<&str> = ds.samples.iter().map(|s| s.group.as_str()).collect();
        writeln!(
            f,
            "{} ({}, {}): {} images, {} classes, {} groups; read in {:.2} s",
            self.id,
            self.config.kind,
            self.config.resolved_root().display(),
            ds.samples.len(),
            ds.classes.len(),
            groups.len(),
            self.read_time.as_secs_f64()
        )?;
        let width = ds.classes.iter().map(|c| c.len()).max().unwrap_or(0).max(6);
        write!(f, "  {:<width$}", "class")?;
        for name in &self.split.names {
            write!(f, " {name:>8}")?;
        }
        writeln!(f)?;
        let n_splits = self.split.names.len();
        let mut counts = vec![vec![0usize; n_splits]; ds.classes.len()];
        let mut split_groups = vec![BTreeSet::new(); n_splits];
        for (s, &a) in ds.samples.iter().zip(&self.split.assign) {
            counts[s.label][a] += 1;
            split_groups[a].insert(s.group.as_str());
        }
        for (class, row) in ds.classes.iter().zip(&counts) {
            write!(f, "  {class:<width$}")?;
            for n in row {
                write!(f, " {n:>8}")?;
            }
            writeln!(f)?;
        }
        write!(f, "  {:<width$}", "images")?;
        for k in 0..n_splits {
            write!(f, " {:>8}", counts.iter().map(|r| r[k]).sum::<usize>())?;
        }
        writeln!(f)?;
        write!(f, "  {:<width$}", "groups")?;
        for g in &split_groups {
            write!(f, " {:>8}", g.len())?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "  groups in more than one split: {}",
            self.groups_across_splits()
        )?;
        let verb = if self.split_reused {
            "reused"
        } else {
            "written"
        };
        writeln!(f, "  split {verb}: {}", self.split_file.display())?;
        for c in &self.caches {
            let state = match c.state {
                CacheState::Built => "built",
                CacheState::Reused => "reused",
            };
            writeln!(
                f,
                "  image cache, shorter side {} px: {state} in {:.2} s ({}, {:.1} MB)",
                c.side,
                c.time.as_secs_f64(),
                c.path.display(),
                c.bytes as f64 / 1e6
            )?;
        }
        Ok(())
    }
}
