//! The study config: one TOML file that describes a whole study, one
//! module per section (`[study]`, `[datasets]`, `[[backbones]]`,
//! `[[methods]]`, `[training]`, `[evaluation]`, a backbone's `pretrain`),
//! each with its defaults and its rules.
//!
//! Every default of the spec (docs/SPEC.md) is a field here, so the resolved config written into
//! the study directory says exactly what ran. Unknown or misspelled fields are
//! rejected with their dotted path (`datasets.medical.crop_ration`).
//! Relative data and checkpoint paths resolve against `SIM_DATA_DIR`.

mod backbones;
mod datasets;
mod evaluation;
mod methods;
mod pretrain;
mod similarity;
mod study;
mod training;

pub use backbones::{
    BackboneConfig, CLIP_MEAN, CLIP_STD, Family, IMAGENET_MEAN, IMAGENET_STD, Paradigm, PosResize,
    Weights,
};
pub use datasets::{
    DatasetConfig, DatasetId, DatasetKind, DatasetRole, Datasets, resolve_data_path,
};
pub use evaluation::{EvaluationConfig, SelectOn};
pub use methods::{MethodConfig, MethodKind};
#[cfg(test)]
pub(crate) use pretrain::tests as pretrain_tests;
pub use pretrain::{DinoConfig, Objective, PretrainConfig};
pub use similarity::{Measure, SimilarityConfig};
pub use study::{DumpConfig, RunId, SlurmConfig, StudySection};
pub use training::{ClassBalance, Precision, TrainingConfig};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A whole study: what data, which backbones, how to train, what to measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyConfig {
    pub study: StudySection,
    pub datasets: Datasets,
    #[serde(default)]
    pub backbones: Vec<BackboneConfig>,
    /// How each backbone is fine-tuned: a study axis (every data set ×
    /// backbone × method × seed runs); default one method, `full`.
    #[serde(default = "methods::default_methods")]
    pub methods: Vec<MethodConfig>,
    #[serde(default)]
    pub training: TrainingConfig,
    #[serde(default)]
    pub evaluation: EvaluationConfig,
    #[serde(default)]
    pub dump: DumpConfig,
    /// Resources of the Slurm jobs (`reproduce --executor slurm`); not part of
    /// the study's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmConfig>,
    /// The folder of the file the config was read from.
    #[serde(skip)]
    pub folder: ConfigFolder,
}

/// The folder of a config file, against which its `./` and `../`
/// checkpoint paths resolve. Not part of what a study is: never written,
/// and equal for any two configs (the same study read from two places is
/// the same study).
#[derive(Debug, Clone, Default)]
pub struct ConfigFolder(pub PathBuf);

impl PartialEq for ConfigFolder {
    fn eq(&self, _: &ConfigFolder) -> bool {
        true
    }
}

/// A config that could not be read, parsed or accepted. Names the file and
/// the dotted field path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {file}: {error}")]
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error("{file}: field `{field}`: {message}")]
    Field {
        file: PathBuf,
        field: String,
        message: String,
    },
}

impl StudyConfig {
    /// Reads, parses, fills role defaults and validates a study config.
    pub fn from_file(path: &Path) -> Result<StudyConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: path.to_owned(),
            error,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// As [`StudyConfig::from_file`], from text; `file` only names it in errors.
    pub fn from_toml_str(text: &str, file: &Path) -> Result<StudyConfig, ConfigError> {
        let de = toml::Deserializer::new(text);
        let mut config: StudyConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let message = e.into_inner().message().trim().to_string();
            ConfigError::Field {
                file: file.to_owned(),
                field,
                message,
            }
        })?;
        config.folder = ConfigFolder(file.parent().unwrap_or(Path::new(".")).to_owned());
        config.fill_defaults();
        config
            .validate()
            .map_err(|(field, message)| ConfigError::Field {
                file: file.to_owned(),
                field,
                message,
            })?;
        Ok(config)
    }

    /// Fills the defaults that depend on a data set's role or a backbone's family,
    /// so the resolved config states every value used.
    fn fill_defaults(&mut self) {
        if self.study.output_dir.is_none() {
            self.study.output_dir = Some(Path::new("studies").join(&self.study.name));
        }
        for ds in &mut self.datasets.medical {
            if ds.name.is_none() {
                ds.name = ds
                    .root
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned());
            }
        }
        for (role, ds) in self.datasets_mut() {
            let (test_split, crop_ratio) = match role {
                DatasetRole::Medical => ("test", 1.0),
                DatasetRole::Natural => ("val", 0.875),
            };
            ds.test_split.get_or_insert_with(|| test_split.into());
            ds.crop_ratio.get_or_insert(crop_ratio);
            ds.metadata = ds.metadata_file();
            ds.images = ds.images_dir();
        }
        // With the family known, the resolved config states the mean/std
        // used; with `auto`, the checkpoint decides at load time.
        for b in &mut self.backbones {
            if b.pretrain().is_some() && b.family == Family::Auto {
                b.family = Family::Vit;
            }
            if b.family != Family::Auto {
                let (mean, std) = b.normalisation(b.family);
                (b.mean, b.std) = (Some(mean), Some(std));
            }
        }
    }

    fn datasets_mut(&mut self) -> impl Iterator<Item = (DatasetRole, &mut DatasetConfig)> {
        let medical = self
            .datasets
            .medical
            .iter_mut()
            .map(|d| (DatasetRole::Medical, d));
        medical.chain([(DatasetRole::Natural, &mut self.datasets.natural)])
    }

    /// Every data set of the study, the medical ones first, in config order.
    pub fn datasets(&self) -> Vec<(DatasetId, &DatasetConfig)> {
        let medical = self
            .datasets
            .medical
            .iter()
            .map(|d| (DatasetId::Medical(d.name().to_owned()), d));
        medical
            .chain([(DatasetId::Natural, &self.datasets.natural)])
            .collect()
    }

    /// The config of a data set, or an error listing the medical ones.
    pub fn dataset(&self, id: &DatasetId) -> Result<&DatasetConfig, String> {
        match id {
            DatasetId::Natural => Ok(&self.datasets.natural),
            DatasetId::Medical(name) => self
                .datasets
                .medical
                .iter()
                .find(|d| d.name() == name)
                .ok_or_else(|| {
                    format!(
                        "no medical data set `{name}` in the study (data sets: {})",
                        self.medical_names().join(", ")
                    )
                }),
        }
    }

    /// The medical data sets' names, in config order.
    pub fn medical_names(&self) -> Vec<&str> {
        self.datasets
            .medical
            .iter()
            .map(DatasetConfig::name)
            .collect()
    }

    /// The run a command names (`--dataset`, `--backbone`, `--method`,
    /// `--seed`); a data set or method left out is the study's only one.
    pub fn run_named(
        &self,
        dataset: Option<String>,
        backbone: String,
        method: Option<String>,
        seed: u64,
    ) -> Result<RunId, String> {
        let methods: Vec<&str> = self.methods.iter().map(|m| m.name.as_str()).collect();
        Ok(RunId {
            dataset: only_one(
                dataset,
                &self.medical_names(),
                "medical data sets",
                "--dataset",
            )?,
            backbone,
            method: only_one(method, &methods, "methods", "--method")?,
            seed,
        })
    }

    /// The method called `name`.
    pub fn method(&self, name: &str) -> Result<&MethodConfig, String> {
        self.methods.iter().find(|m| m.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.methods.iter().map(|m| m.name.as_str()).collect();
            format!(
                "no method `{name}` in the study (methods: {})",
                names.join(", ")
            )
        })
    }

    /// Every run of the study: data set × backbone × method × seed, in that
    /// order of nesting and in config order (the index of a Slurm array task).
    pub fn runs(&self) -> Vec<RunId> {
        let mut runs = Vec::new();
        for dataset in self.medical_names() {
            for b in &self.backbones {
                for m in &self.methods {
                    for &seed in &self.study.seeds {
                        runs.push(RunId {
                            dataset: dataset.to_owned(),
                            backbone: b.name.clone(),
                            method: m.name.clone(),
                            seed,
                        });
                    }
                }
            }
        }
        runs
    }

    /// The backbone's file: its checkpoint (`./…` and `../…` relative to the
    /// config file's folder), or the model its pre-training makes
    /// ([`crate::layout::pretrain_dir`]).
    pub fn backbone_file(&self, backbone: &BackboneConfig) -> PathBuf {
        match &backbone.weights {
            Weights::Pretrain { pretrain, epoch } => {
                let dir = crate::layout::pretrain_dir(self, backbone, pretrain);
                match epoch {
                    Some(e) => crate::layout::pretrained_snapshot(&dir, *e),
                    None => crate::layout::pretrained_model(&dir),
                }
            }
            Weights::Checkpoint { path, .. } => backbones::locate_checkpoint(path, &self.folder.0),
            Weights::Hub(file) => file.cache_path(&crate::hub::cache_dir()),
        }
    }

    /// The backbones the study pre-trains, one per distinct pre-training
    /// (folder): the first in the config's order of those sharing it (a
    /// zoo's snapshots share their pre-training's).
    pub fn pretrainings(&self) -> Vec<&BackboneConfig> {
        let mut seen = std::collections::BTreeSet::new();
        self.backbones
            .iter()
            .filter(|b| {
                b.pretrain()
                    .is_some_and(|p| seen.insert(crate::layout::pretrain_dir(self, b, p)))
            })
            .collect()
    }

    /// The backbone called `name`, or an error listing the study's.
    pub fn backbone(&self, name: &str) -> Result<&BackboneConfig, String> {
        self.backbones
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.backbones.iter().map(|b| b.name.as_str()).collect();
                format!(
                    "no backbone `{name}` in the study (backbones: {})",
                    names.join(", ")
                )
            })
    }

    /// Where the study directory goes.
    pub fn output_dir(&self) -> PathBuf {
        self.study
            .output_dir
            .clone()
            .unwrap_or_else(|| Path::new("studies").join(&self.study.name))
    }

    /// The config with defaults filled in, as TOML: what `study.toml` holds.
    /// The output folder, the Slurm resources and the sources a `checkpoint`
    /// is downloaded from are left out: the study is wherever its folder
    /// is, however it was run (a `source` alone names the weights, and stays).
    pub fn to_resolved_toml(&self) -> String {
        let mut identity = self.clone();
        identity.study.output_dir = None;
        identity.slurm = None;
        for b in &mut identity.backbones {
            if let Weights::Checkpoint { download, .. } = &mut b.weights {
                *download = None;
            }
        }
        toml::to_string_pretty(&identity).expect("a study config always serialises to TOML")
    }

    /// SHA-256 (hex) of the resolved config: two studies with the same hash
    /// ran with the same settings, wherever their folders are. The
    /// similarity measures (`[evaluation.similarity]`) are left out: they
    /// change the tables, not a run, and a finished study may be measured
    /// again with others.
    pub fn hash(&self) -> String {
        let mut identity = self.clone();
        // What only the tables read is not the study's identity.
        identity.evaluation.similarity = SimilarityConfig::default();
        identity.evaluation.select_on = SelectOn::default();
        hex::encode(Sha256::digest(identity.to_resolved_toml().as_bytes()))
    }

    /// Each section's rules, then those across sections.
    fn validate(&self) -> Result<(), (String, String)> {
        self.study.validate()?;
        self.datasets.validate()?;
        let mut names = Vec::new();
        for (i, b) in self.backbones.iter().enumerate() {
            if names.contains(&&b.name) {
                return Err((
                    format!("backbones[{i}].name"),
                    format!("backbone name `{}` is used twice", b.name),
                ));
            }
            names.push(&b.name);
            b.validate(&format!("backbones[{i}]"))?;
        }
        if self.methods.is_empty() {
            return Err((
                "methods".into(),
                "needs at least one method (or none given: `full`)".into(),
            ));
        }
        let mut method_names = Vec::new();
        for (i, m) in self.methods.iter().enumerate() {
            m.validate(&format!("methods[{i}]"), self.training.epochs)?;
            if method_names.contains(&&m.name) {
                return Err((
                    format!("methods[{i}].name"),
                    format!("method name `{}` is used twice", m.name),
                ));
            }
            method_names.push(&m.name);
        }
        self.training.validate()?;
        self.evaluation.validate()?;
        Ok(())
    }
}

/// The value a command names, or the only one there is.
fn only_one(
    named: Option<String>,
    names: &[&str],
    what: &str,
    flag: &str,
) -> Result<String, String> {
    match (named, names) {
        (Some(name), _) => Ok(name),
        (None, [only]) => Ok(only.to_string()),
        (None, names) => Err(format!(
            "the study has {} {what} ({}): say which with {flag}",
            names.len(),
            names.join(", ")
        )),
    }
}

/// Names become folder names: keep them to letters, digits, `-`, `_`, `.`.
fn check_name(field: &str, name: &str) -> Result<(), (String, String)> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err((
            field.into(),
            format!("`{name}`: use letters, digits, `-`, `_` or `.` (not first)"),
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const MINIMAL: &str = r#"
[study]
name = "t"
[datasets.medical]
kind = "ham10000"
root = "ham10000"
[datasets.natural]
kind = "image-folder"
root = "imagenette"
[[backbones]]
name = "vit"
checkpoint = "checkpoints/vit.safetensors"
family = "vit"
"#;

    pub(crate) fn parse(text: &str) -> Result<StudyConfig, ConfigError> {
        StudyConfig::from_toml_str(text, Path::new("study.toml"))
    }

    pub(crate) const TWO_MEDICAL: &str = r#"
[study]
name = "t"
seeds = [0, 1]
[[datasets.medical]]
kind = "ham10000"
root = "ham10000"
[[datasets.medical]]
name = "pneumonia"
kind = "medmnist"
root = "medmnist/pneumoniamnist.npz"
[datasets.natural]
kind = "image-folder"
root = "imagenette"
[[backbones]]
name = "a"
checkpoint = "a.safetensors"
[[backbones]]
name = "b"
checkpoint = "b.safetensors"
"#;

    #[test]
    fn spec_defaults_are_filled_in() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.study.seeds, (0..20).collect::<Vec<_>>());
        assert_eq!(c.training, TrainingConfig::default());
        assert_eq!(c.training.lr_backbone, 1e-5);
        assert_eq!(c.evaluation.ece_bins, 15);
        assert_eq!(c.evaluation.knn_temperature, 0.07);
        assert_eq!(c.datasets.medical[0].crop_ratio, Some(1.0));
        assert_eq!(c.datasets.medical[0].name.as_deref(), Some("ham10000"));
        assert_eq!(c.datasets.natural.crop_ratio, Some(0.875));
        assert_eq!(c.datasets.medical[0].test_split(), "test");
        assert_eq!(c.datasets.natural.test_split(), "val");
        assert_eq!(
            c.datasets.medical[0].metadata.as_deref(),
            Some(Path::new("HAM10000_metadata.csv"))
        );
        assert_eq!(c.backbones[0].mean, Some(IMAGENET_MEAN));
        assert_eq!(c.backbones[0].input_size, 224);
        assert_eq!(c.output_dir(), Path::new("studies/t"));
    }

    #[test]
    fn resolved_config_round_trips_with_the_same_hash() {
        let c = parse(MINIMAL).unwrap();
        let again = parse(&c.to_resolved_toml()).unwrap();
        assert_eq!(c, again);
        assert_eq!(c.hash(), again.hash());
        let mut other = c.clone();
        other.training.epochs = 3;
        assert_ne!(c.hash(), other.hash());
        // A study folder can be moved: where it is is not what it is.
        let mut moved = c.clone();
        moved.study.output_dir = Some("elsewhere/t".into());
        assert_eq!(c.hash(), moved.hash());
        assert!(!c.to_resolved_toml().contains("output_dir"));
    }

    #[test]
    fn misspelled_field_is_rejected_with_its_path() {
        let text = MINIMAL.replace(
            "root = \"ham10000\"",
            "root = \"ham10000\"\ncrop_ration = 0.9",
        );
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.contains("study.toml"), "{msg}");
        assert!(msg.contains("datasets.medical"), "{msg}");
        assert!(msg.contains("crop_ration"), "{msg}");
    }

    #[test]
    fn misspelled_top_level_section_is_rejected() {
        let msg = parse(&format!("{MINIMAL}\n[trainig]\nepochs = 2\n"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("trainig"), "{msg}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let msg = parse(&format!("{MINIMAL}\n[training]\nepochs = \"two\"\n"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("training.epochs"), "{msg}");
    }

    #[test]
    fn runs_nest_data_set_then_backbone_then_method_then_seed() {
        let runs: Vec<String> = parse(TWO_MEDICAL)
            .unwrap()
            .runs()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            runs,
            [
                "ham10000/a/full seed 0",
                "ham10000/a/full seed 1",
                "ham10000/b/full seed 0",
                "ham10000/b/full seed 1",
                "pneumonia/a/full seed 0",
                "pneumonia/a/full seed 1",
                "pneumonia/b/full seed 0",
                "pneumonia/b/full seed 1",
            ]
        );
        let two_methods = format!(
            "{TWO_MEDICAL}[[methods]]\nname = \"full\"\nkind = \"full\"\n[[methods]]\nname \
                = \"probe\"\nkind = \"lp-ft\"\nprobe_epochs = 1\n"
        );
        let two = parse(&two_methods).unwrap();
        let msg = two
            .run_named(None, "a".into(), Some("probe".into()), 0)
            .unwrap_err();
        assert!(
            msg.contains("2 medical data sets") && msg.contains("--dataset"),
            "{msg}"
        );
        let named = two
            .run_named(
                Some("pneumonia".into()),
                "a".into(),
                Some("probe".into()),
                1,
            )
            .unwrap();
        assert_eq!(named.to_string(), "pneumonia/a/probe seed 1");
        let only = parse(MINIMAL)
            .unwrap()
            .run_named(None, "vit".into(), None, 3)
            .unwrap();
        assert_eq!(
            only.to_string(),
            "ham10000/vit/full seed 3",
            "the only data set and method"
        );
        let runs = two.runs();
        assert_eq!(runs.len(), 16);
        assert_eq!(
            runs[2].to_string(),
            "ham10000/a/probe seed 0",
            "method nests inside backbone, outside seed"
        );
    }

    #[test]
    fn unreadable_or_malformed_config_names_the_file() {
        let msg = StudyConfig::from_file(Path::new("/nonexistent/study.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("cannot read config /nonexistent/study.toml"),
            "{msg}"
        );
        let msg = parse("[study\nname = 1").unwrap_err().to_string();
        assert!(msg.starts_with("study.toml"), "{msg}");
    }
}
