//! `[datasets]`: the medical data sets (one or several, each a study axis)
//! and the natural images, each with its reader's layout and split rule.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The data sets of the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datasets {
    /// The medical target tasks (fine-tuning, test metrics, medical probe
    /// set), each a study axis: every backbone × seed runs on each. Written
    /// `[[datasets.medical]]` (a list) or `[datasets.medical]` (one).
    #[serde(deserialize_with = "one_or_many")]
    pub medical: Vec<DatasetConfig>,
    /// Natural images: the k-NN bank and queries, the natural probe set;
    /// the same for every medical data set.
    pub natural: DatasetConfig,
}

impl Datasets {
    /// Checks each data set, and that the medical ones have distinct names.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let err = |field: &str, message: String| Err((field.to_string(), message));
        if self.medical.is_empty() {
            return err(
                "datasets.medical",
                "needs at least one medical data set".into(),
            );
        }
        let mut names = Vec::new();
        for (i, ds) in self.medical.iter().enumerate() {
            let at = if self.medical.len() == 1 {
                "datasets.medical".to_string()
            } else {
                format!("datasets.medical[{i}]")
            };
            let Some(name) = &ds.name else {
                return err(
                    &format!("{at}.name"),
                    format!(
                        "no name, and none can be made from root `{}`",
                        ds.root.display()
                    ),
                );
            };
            super::check_name(&format!("{at}.name"), name)?;
            if names.contains(&name) {
                return err(
                    &format!("{at}.name"),
                    format!("data set name `{name}` is used twice; give each entry its own `name`"),
                );
            }
            names.push(name);
            ds.validate(&at)?;
            ds.validate_validation(&at)?;
        }
        if self.natural.name.is_some() {
            return err(
                "datasets.natural.name",
                "the natural data set has no name (it is the same for every medical one); remove it"
                    .into(),
            );
        }
        let natural = &self.natural;
        for (field, set) in [
            ("validation_fraction", natural.validation_fraction != 0.0),
            ("validation_split", natural.validation_split.is_some()),
        ] {
            if set {
                return err(
                    &format!("datasets.natural.{field}"),
                    "the natural images have no validation split (their `val` is the \
                        k-NN queries); remove it"
                        .into(),
                );
            }
        }
        natural.validate("datasets.natural")
    }
}

/// `[datasets.medical]` (one table) or `[[datasets.medical]]` (a list), with
/// the field paths of errors kept (`datasets.medical[1].kind`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<DatasetConfig>, D::Error> {
    use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
    struct OneOrMany;
    impl<'de> serde::de::Visitor<'de> for OneOrMany {
        type Value = Vec<DatasetConfig>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a table [datasets.medical] or a list [[datasets.medical]]")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            DatasetConfig::deserialize(MapAccessDeserializer::new(map)).map(|one| vec![one])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Vec::deserialize(SeqAccessDeserializer::new(seq))
        }
    }
    d.deserialize_any(OneOrMany)
}

/// Which role a data set plays; some defaults differ by role (docs/SPEC.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetRole {
    Medical,
    Natural,
}

impl DatasetRole {
    pub fn name(self) -> &'static str {
        match self {
            DatasetRole::Medical => "medical",
            DatasetRole::Natural => "natural",
        }
    }
}

/// One data set of a study: a medical one by its name, or the natural images.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DatasetId {
    Medical(String),
    Natural,
}

impl DatasetId {
    pub fn role(&self) -> DatasetRole {
        match self {
            DatasetId::Medical(_) => DatasetRole::Medical,
            DatasetId::Natural => DatasetRole::Natural,
        }
    }

    /// The stem of its split and cache files: `medical-<name>` or `natural`.
    pub fn file_stem(&self) -> String {
        match self {
            DatasetId::Medical(name) => format!("medical-{name}"),
            DatasetId::Natural => "natural".into(),
        }
    }
}

impl fmt::Display for DatasetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetId::Medical(name) => write!(f, "medical data set `{name}`"),
            DatasetId::Natural => f.write_str("natural data set"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// `HAM10000_metadata.csv` (lesion_id, image_id, dx, …) + an image folder.
    Ham10000,
    /// ISIC 2018 Task 3: one-hot ground-truth CSV + image folder
    /// (+ optional lesion-groupings CSV for grouped splits).
    Isic2018,
    /// `<split>/<class>/*.jpg|png|bmp`, or `<class>/*` to be split by us.
    ImageFolder,
    /// A MedMNIST `.npz` (`train_images`, `train_labels`, `val_…`, `test_…`).
    Medmnist,
}

impl DatasetKind {
    /// The label table a layout of this kind names by default.
    fn default_metadata(self) -> Option<&'static str> {
        match self {
            DatasetKind::Ham10000 => Some("HAM10000_metadata.csv"),
            DatasetKind::Isic2018 => Some("ISIC2018_Task3_Training_GroundTruth.csv"),
            DatasetKind::ImageFolder | DatasetKind::Medmnist => None,
        }
    }

    /// The image folder a layout of this kind names by default.
    fn default_images(self) -> Option<&'static str> {
        match self {
            DatasetKind::Ham10000 => Some("images"),
            DatasetKind::Isic2018 => Some("ISIC2018_Task3_Training_Input"),
            DatasetKind::ImageFolder | DatasetKind::Medmnist => None,
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatasetKind::Ham10000 => "ham10000",
            DatasetKind::Isic2018 => "isic2018",
            DatasetKind::ImageFolder => "image-folder",
            DatasetKind::Medmnist => "medmnist",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Medical data sets: the name of its runs' folder `runs/<name>/`, its
    /// tables' `dataset` column and the figures' facets; default the stem of
    /// `root` (`ham10000`, `pneumoniamnist`). Not used by the natural set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub kind: DatasetKind,
    /// Folder of the data set (the `.npz` file for MedMNIST); relative paths
    /// resolve against `SIM_DATA_DIR`.
    pub root: PathBuf,
    /// Label CSV inside `root` (ham10000: `HAM10000_metadata.csv`;
    /// isic2018: `ISIC2018_Task3_Training_GroundTruth.csv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PathBuf>,
    /// Image folder inside `root` (ham10000: `images`;
    /// isic2018: `ISIC2018_Task3_Training_Input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<PathBuf>,
    /// isic2018 only: `ISIC2018_Task3_Training_LesionGroupings.csv` inside
    /// `root`; without it every image is its own group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<PathBuf>,
    /// Name of the training split (natural: the k-NN memory bank).
    #[serde(default = "default_train_split")]
    pub train_split: String,
    /// Name of the evaluation split (medical: `test`; natural: `val`, the k-NN queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_split: Option<String>,
    /// Share of images (by group, stratified by label) held out for testing when
    /// the data set comes without splits (docs/SPEC.md: 80/20).
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Medical data sets without their own validation split: the share of
    /// images (by group, stratified by label) carved from the train side as
    /// one, `validation_split`; 0 (the default): none. Nothing is trained on
    /// it: temperature scaling and `evaluation.select_on = "validation"` read it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub validation_fraction: f64,
    /// Name of the validation split: the data set's own (MedMNIST's `val`)
    /// or the one `validation_fraction` carves. Default `val`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<String>,
    /// Evaluation transform: resize the shorter side to size / crop_ratio, then
    /// centre-crop (docs/SPEC.md: 1.0 medical, 0.875 natural as in DINO's eval_knn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_ratio: Option<f64>,
    /// Keep only this many samples (smoke tests, quick looks): the ones whose
    /// ids have the smallest SHA-256, a fixed pseudo-random subset; absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_samples: Option<usize>,
}

impl DatasetConfig {
    /// A config of `kind` at `root` with every other field at its default.
    pub fn new(kind: DatasetKind, root: impl Into<PathBuf>) -> DatasetConfig {
        DatasetConfig {
            name: None,
            kind,
            root: root.into(),
            metadata: None,
            images: None,
            groups: None,
            train_split: default_train_split(),
            test_split: None,
            test_fraction: default_test_fraction(),
            validation_fraction: 0.0,
            validation_split: None,
            crop_ratio: None,
            max_samples: None,
        }
    }

    /// Its name (filled in by the loader for medical data sets; the natural
    /// set's is `natural`).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("natural")
    }

    /// The label table inside `root`: the configured one or the kind's default.
    pub fn metadata_file(&self) -> Option<PathBuf> {
        self.metadata
            .clone()
            .or_else(|| self.kind.default_metadata().map(PathBuf::from))
    }

    /// The image folder inside `root`: the configured one or the kind's default.
    pub fn images_dir(&self) -> Option<PathBuf> {
        self.images
            .clone()
            .or_else(|| self.kind.default_images().map(PathBuf::from))
    }

    /// The data set's root with relative paths resolved against `SIM_DATA_DIR`.
    pub fn resolved_root(&self) -> PathBuf {
        resolve_data_path(&self.root)
    }

    /// Evaluation crop ratio (filled in by the loader, so never absent after it).
    pub fn crop_ratio(&self) -> f64 {
        self.crop_ratio.unwrap_or(1.0)
    }

    /// Name of the evaluation split.
    pub fn test_split(&self) -> &str {
        self.test_split.as_deref().unwrap_or("test")
    }

    /// Name of the validation split (medical data sets).
    pub fn validation_split(&self) -> &str {
        self.validation_split.as_deref().unwrap_or("val")
    }

    /// A medical data set's validation split: a fraction that leaves a
    /// train side, a name of its own.
    fn validate_validation(&self, at: &str) -> Result<(), (String, String)> {
        let field = |f: &str| format!("{at}.{f}");
        let v = self.validation_fraction;
        if !(0.0..1.0).contains(&v) || v + self.test_fraction >= 1.0 {
            return Err((
                field("validation_fraction"),
                format!(
                    "{v} is not in [0, 1), or leaves no train side with test_fraction {}",
                    self.test_fraction
                ),
            ));
        }
        if [self.train_split.as_str(), self.test_split()].contains(&self.validation_split()) {
            return Err((
                field("validation_split"),
                format!(
                    "`{}` is the train or test split's name",
                    self.validation_split()
                ),
            ));
        }
        Ok(())
    }

    fn validate(&self, at: &str) -> Result<(), (String, String)> {
        let field = |f: &str| format!("{at}.{f}");
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err((
                field("test_fraction"),
                format!("{} is not in (0, 1)", self.test_fraction),
            ));
        }
        let crop = self.crop_ratio();
        if !(crop > 0.0 && crop <= 1.0) {
            return Err((field("crop_ratio"), format!("{crop} is not in (0, 1]")));
        }
        if self.max_samples == Some(0) {
            return Err((
                field("max_samples"),
                "must be at least 1 (or absent for all samples)".into(),
            ));
        }
        if self.train_split == self.test_split() {
            return Err((
                field("test_split"),
                format!("same as train_split (`{}`)", self.train_split),
            ));
        }
        let kind = self.kind;
        let only = |name: &str, present: bool, allowed: bool| -> Result<(), (String, String)> {
            if present && !allowed {
                Err((field(name), format!("not used by kind {kind:?}; remove it")))
            } else {
                Ok(())
            }
        };
        let table = matches!(kind, DatasetKind::Ham10000 | DatasetKind::Isic2018);
        only("metadata", self.metadata.is_some(), table)?;
        only("images", self.images.is_some(), table)?;
        only(
            "groups",
            self.groups.is_some(),
            kind == DatasetKind::Isic2018,
        )?;
        Ok(())
    }
}

fn default_train_split() -> String {
    "train".into()
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn default_test_fraction() -> f64 {
    0.2
}

/// Resolves a relative data or checkpoint path against `SIM_DATA_DIR`.
pub fn resolve_data_path(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        crate::data_dir().join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::TWO_MEDICAL;
    use crate::config::tests::{MINIMAL, parse};

    #[test]
    fn unknown_dataset_kind_is_rejected() {
        let msg = parse(&MINIMAL.replace("kind = \"ham10000\"", "kind = \"ham1000\""))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("datasets.medical.kind"), "{msg}");
        assert!(msg.contains("ham1000"), "{msg}");
    }

    #[test]
    fn medical_data_sets_are_a_list_or_one_table_with_the_same_meaning() {
        let one = parse(MINIMAL).unwrap();
        let as_list =
            parse(&MINIMAL.replace("[datasets.medical]", "[[datasets.medical]]")).unwrap();
        assert_eq!(one, as_list);
        assert_eq!(one.hash(), as_list.hash());
        assert_eq!(one.medical_names(), ["ham10000"]);
        let two = parse(TWO_MEDICAL).unwrap();
        assert_eq!(two.medical_names(), ["ham10000", "pneumonia"]);
        assert_eq!(two.datasets.medical[1].test_split(), "test");
        assert_eq!(two.datasets.medical[1].crop_ratio, Some(1.0));
        assert_eq!(parse(&two.to_resolved_toml()).unwrap(), two);
        let ids: Vec<DatasetId> = two.datasets().into_iter().map(|(id, _)| id).collect();
        assert_eq!(
            ids,
            [
                DatasetId::Medical("ham10000".into()),
                DatasetId::Medical("pneumonia".into()),
                DatasetId::Natural
            ]
        );
        assert_eq!(ids[1].file_stem(), "medical-pneumonia");
        assert_eq!(two.dataset(&ids[1]).unwrap().kind, DatasetKind::Medmnist);
        let msg = two.dataset(&DatasetId::Medical("isic".into())).unwrap_err();
        assert!(
            msg.contains("`isic`") && msg.contains("ham10000, pneumonia"),
            "{msg}"
        );
    }

    #[test]
    fn data_set_names_are_checked() {
        let twice = TWO_MEDICAL.replace("name = \"pneumonia\"", "name = \"ham10000\"");
        let msg = parse(&twice).unwrap_err().to_string();
        assert!(
            msg.contains("datasets.medical[1].name") && msg.contains("used twice"),
            "{msg}"
        );
        let bad = TWO_MEDICAL.replace("name = \"pneumonia\"", "name = \"x/y\"");
        assert!(
            parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("datasets.medical[1].name")
        );
        let natural = MINIMAL.replace(
            "root = \"imagenette\"",
            "root = \"imagenette\"\nname = \"inet\"",
        );
        assert!(
            parse(&natural)
                .unwrap_err()
                .to_string()
                .contains("datasets.natural.name")
        );
        let misspelled = TWO_MEDICAL.replace(
            "kind = \"medmnist\"",
            "kind = \"medmnist\"\ntest_splt = \"val\"",
        );
        let msg = parse(&misspelled).unwrap_err().to_string();
        assert!(msg.contains("datasets.medical[1].test_splt"), "{msg}");
        let none = MINIMAL.replace(
            "[datasets.medical]\nkind = \"ham10000\"\nroot = \"ham10000\"\n",
            "",
        );
        assert!(parse(&none).unwrap_err().to_string().contains("datasets"));
    }

    #[test]
    fn each_data_set_rule_names_its_field() {
        for (from, to, field) in [
            (
                "root = \"imagenette\"",
                "root = \"imagenette\"\ncrop_ratio = 1.5",
                "datasets.natural.crop_ratio",
            ),
            (
                "root = \"imagenette\"",
                "root = \"imagenette\"\ngroups = \"g.csv\"",
                "datasets.natural.groups",
            ),
            (
                "root = \"imagenette\"",
                "root = \"imagenette\"\nmetadata = \"m.csv\"",
                "datasets.natural.metadata",
            ),
            (
                "root = \"ham10000\"",
                "root = \"ham10000\"\ntest_fraction = 1.0",
                "datasets.medical.test_fraction",
            ),
            (
                "root = \"ham10000\"",
                "root = \"ham10000\"\nmax_samples = 0",
                "datasets.medical.max_samples",
            ),
            (
                "root = \"ham10000\"",
                "root = \"ham10000\"\ntest_split = \"train\"",
                "datasets.medical.test_split",
            ),
            (
                "root = \"ham10000\"",
                "root = \"ham10000\"\nvalidation_fraction = 0.8",
                "datasets.medical.validation_fraction",
            ),
            (
                "root = \"ham10000\"",
                "root = \"ham10000\"\nvalidation_fraction = -0.1",
                "datasets.medical.validation_fraction",
            ),
            (
                "root = \"ham10000\"",
                "root = \"ham10000\"\nvalidation_split = \"test\"",
                "datasets.medical.validation_split",
            ),
            (
                "root = \"imagenette\"",
                "root = \"imagenette\"\nvalidation_fraction = 0.1",
                "datasets.natural.validation_fraction",
            ),
        ] {
            let msg = parse(&MINIMAL.replace(from, to)).unwrap_err().to_string();
            assert!(msg.contains(field), "{field}: {msg}");
        }
    }
}
