//! The study config: one TOML file that describes a whole study.
//!
//! Every default from SPEC is a field here, so the resolved config written into
//! the study directory says exactly what ran. Unknown or misspelled fields are
//! rejected with their dotted path (`datasets.medical.crop_ration`).
//! Relative data and checkpoint paths resolve against `SIM_DATA_DIR`.

use crate::pretrain::PretrainConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
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
    #[serde(default = "default_methods")]
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
}

/// What each Slurm job asks for (`sbatch` options).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmConfig {
    /// `--partition`; the cluster's default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--account`; none when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--time` of one run (and of the job that makes tables and figures).
    pub time: String,
    /// `--cpus-per-task`.
    pub cpus_per_task: u32,
    /// `--mem`, e.g. `16G`.
    pub mem: String,
    /// GPUs per run (`--gres=gpu:N`); 0 for none.
    pub gpus: u32,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            partition: None,
            account: None,
            time: "12:00:00".into(),
            cpus_per_task: 4,
            mem: "16G".into(),
            gpus: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySection {
    /// Names the study; also the default output folder `studies/<name>`.
    pub name: String,
    /// Where the study directory goes (relative to the working directory).
    /// Not part of the study's identity: a study folder can be moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<PathBuf>,
    /// Seeds the train/test split: the same split for every run of the study.
    #[serde(default)]
    pub split_seed: u64,
    /// One fine-tuning run per backbone and seed (SPEC: seeds 0–19).
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
}

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

/// Which role a data set plays; some defaults differ by role (SPEC).
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

/// One fine-tuning run: a medical data set × a backbone × a method × a
/// seed. Its folder is `runs/<dataset>/<backbone>/<method>/seed-<NN>/`
/// ([`crate::StudyDir::run_dir`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId {
    pub dataset: String,
    pub backbone: String,
    pub method: String,
    pub seed: u64,
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{} seed {}",
            self.dataset, self.backbone, self.method, self.seed
        )
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
    /// the data set comes without splits (SPEC: 80/20).
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Evaluation transform: resize the shorter side to size / crop_ratio, then
    /// centre-crop (SPEC: 1.0 medical, 0.875 natural as in DINO's eval_knn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_ratio: Option<f64>,
    /// Keep only this many samples (smoke tests, quick looks): the ones whose
    /// ids have the smallest SHA-256, a fixed pseudo-random subset; absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_samples: Option<usize>,
}

/// Also a command-line value (`sim-train extract --family`), same spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Detected from the checkpoint's keys.
    #[default]
    Auto,
    /// Supervised ViT (timm or Hugging Face `ViTModel` names).
    Vit,
    /// DINOv2 (Meta/timm or Hugging Face `Dinov2Model` names).
    Dinov2,
    /// OpenCLIP image tower.
    OpenClip,
}

/// ImageNet mean/std (ViT, DINOv2).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// OpenAI CLIP mean/std (OpenCLIP).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

impl Family {
    /// The name the config uses (`vit`, `dinov2`, `open-clip`, `auto`).
    pub fn name(self) -> &'static str {
        match self {
            Family::Auto => "auto",
            Family::Vit => "vit",
            Family::Dinov2 => "dinov2",
            Family::OpenClip => "open-clip",
        }
    }

    /// The family's own normalisation (SPEC), or `None` for `auto`.
    pub fn normalisation(self) -> Option<([f32; 3], [f32; 3])> {
        match self {
            Family::Auto => None,
            Family::Vit | Family::Dinov2 => Some((IMAGENET_MEAN, IMAGENET_STD)),
            Family::OpenClip => Some((CLIP_MEAN, CLIP_STD)),
        }
    }
}

/// Which side of the paper's third finding a backbone's pre-training is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paradigm {
    /// Labels (family `vit`, or objective `supervised`).
    Supervised,
    /// No labels, or language instead (`dinov2`, `open-clip`, objective `dino`).
    SelfSupervised,
    /// Neither: the random initialisation, or a family not given.
    Neither,
}

impl BackboneConfig {
    /// How the backbone was pre-trained, as finding 3 sides it: by its
    /// `pretrain` objective where the tool made it, else by its family.
    pub fn paradigm(&self) -> Paradigm {
        if let Some(p) = &self.pretrain {
            return match p.objective {
                crate::pretrain::Objective::Supervised => Paradigm::Supervised,
                crate::pretrain::Objective::Dino => Paradigm::SelfSupervised,
                crate::pretrain::Objective::None => Paradigm::Neither,
            };
        }
        match self.family {
            Family::Vit => Paradigm::Supervised,
            Family::Dinov2 | Family::OpenClip => Paradigm::SelfSupervised,
            Family::Auto => Paradigm::Neither,
        }
    }

    /// The per-channel mean and std its images are normalised with: the
    /// configured ones, else those of its family (`detected`, the family the
    /// checkpoint's keys show, where the config says `auto`).
    pub fn normalisation(&self, detected: Family) -> ([f32; 3], [f32; 3]) {
        let family = if self.family == Family::Auto {
            detected
        } else {
            self.family
        };
        let (mean, std) = family
            .normalisation()
            .unwrap_or((IMAGENET_MEAN, IMAGENET_STD));
        (self.mean.unwrap_or(mean), self.std.unwrap_or(std))
    }

    /// Where a downloaded backbone file is: `./…` and `../…` are relative
    /// to the folder of the study config (`config_dir`), other relative
    /// paths to `SIM_DATA_DIR`, absolute paths are themselves. `None` for a
    /// backbone the tool pre-trains ([`StudyConfig::backbone_file`]).
    pub fn checkpoint_path(&self, config_dir: &Path) -> Option<PathBuf> {
        let p = self.checkpoint.as_ref()?;
        Some(if p.starts_with(".") || p.starts_with("..") {
            config_dir.join(p)
        } else {
            resolve_data_path(p)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    /// Short name: the run folder `runs/<name>/seed-NN` and the figures' legend.
    pub name: String,
    /// Where `cargo xtask fetch-checkpoints` downloads the file from:
    /// `hf:<owner>/<repo>/<file>` (Hugging Face Hub). Not part of the
    /// study's identity (the file's SHA-256 is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// safetensors checkpoint; a path starting with `./` or `../` is relative
    /// to the config file, other relative paths to `SIM_DATA_DIR`. Exactly
    /// one of `checkpoint` and `pretrain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<PathBuf>,
    /// Pre-trained by the tool itself (`sim-train pretrain`) instead of
    /// downloaded: its file is made in [`crate::pretrain::pretrain_dir`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrain: Option<PretrainConfig>,
    #[serde(default)]
    pub family: Family,
    /// Key prefix to strip (`visual.`, `backbone.`, `vit.`); detected when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Input side in pixels (SPEC: 224 on GPU; smaller at CPU scale).
    #[serde(default = "default_input_size")]
    pub input_size: u32,
    /// Per-channel mean/std; default: the family's own (SPEC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<[f32; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<[f32; 3]>,
    /// Attention heads, which no tensor shape says: default the number the
    /// file's metadata records (files this tool wrote), else width / 64 (ViT-S/B/L).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    /// QuickGELU instead of GELU: OpenAI-trained CLIP weights need it.
    #[serde(default)]
    pub quick_gelu: bool,
    /// Position-embedding resizing; default: the rule of the checkpoint's naming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos_resize: Option<PosResize>,
}

/// How position embeddings are resized to another patch grid (SPEC,
/// "Reference behaviours"); each checkpoint naming has its reference's rule.
/// Also a command-line value (`sim-train extract --pos-resize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PosResize {
    /// PyTorch bicubic to the target size, no antialias (transformers ViT / DINOv2).
    Bicubic,
    /// PyTorch bicubic with antialias (timm, open_clip, transformers DINOv2 with registers).
    BicubicAntialias,
    /// Meta's DINOv2 code: bicubic with scale factor (n + 0.1) / m, no antialias.
    MetaOffset,
}

/// A fine-tuning method: its kind, the kind's parameters, and layer-wise
/// learning-rate decay (combinable with any kind). README, "Choosing a
/// fine-tuning method".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodConfig {
    /// The runs' folder `runs/<dataset>/<backbone>/<name>/`, the tables'
    /// `method` column, the figures' facets.
    pub name: String,
    pub kind: MethodKind,
    /// lp-ft: epochs of the linear-probe phase (backbone frozen) before
    /// full fine-tuning from the probed head; at least 1, fewer than
    /// `training.epochs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_epochs: Option<u32>,
    /// l2-sp: α of α/2‖w − w₀‖² on the backbone (w₀ the pre-trained weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// l2-sp: β of β/2‖w_head‖² on the head's weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// rep-sim: the weight λ of λ·(1 − linear CKA) between each batch's
    /// final-norm CLS features and the pre-trained backbone's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Layer-wise learning-rate decay (timm's `layer_decay`): block i of L
    /// (1-based) at decay^(L + 1 − i) times the backbone rate, the
    /// embedding at decay^(L + 1), the final norm at 1; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_decay: Option<f64>,
    /// WiSE-FT (Wortsman et al. 2022), with any kind: after the last epoch,
    /// the backbones (1 − α)θ₀ + αθ_ft for these α (increasing, in [0, 1);
    /// α = 1 is the last epoch itself), each with the fine-tuned head and
    /// evaluated like an epoch; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wise_ft: Option<Vec<f64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MethodKind {
    /// Every weight trained from the start (SPEC's protocol).
    Full,
    /// Kumar et al. (2022): a linear probe, then full fine-tuning.
    LpFt,
    /// Li et al. (2018): full fine-tuning pulled towards the pre-trained weights.
    L2Sp,
    /// After Zu et al. (2025, RepSim): full fine-tuning pulled towards the
    /// pre-trained features, up to an orthogonal transform (linear CKA).
    RepSim,
}

impl MethodConfig {
    /// Plain full fine-tuning under `name`.
    pub fn full(name: &str) -> MethodConfig {
        MethodConfig {
            name: name.into(),
            kind: MethodKind::Full,
            probe_epochs: None,
            alpha: None,
            beta: None,
            weight: None,
            layer_decay: None,
            wise_ft: None,
        }
    }

    fn validate(&self, at: &str, epochs: u32) -> Result<(), (String, String)> {
        let field = |f: &str| format!("{at}.{f}");
        check_name(&field("name"), &self.name)?;
        let kind = self.kind;
        let only =
            |name: &str, present: bool, wanted: MethodKind| -> Result<(), (String, String)> {
                match (present, kind == wanted) {
                    (true, false) => {
                        Err((field(name), format!("not used by kind {kind:?}; remove it")))
                    }
                    (false, true) => Err((field(name), format!("kind {kind:?} needs it"))),
                    _ => Ok(()),
                }
            };
        only(
            "probe_epochs",
            self.probe_epochs.is_some(),
            MethodKind::LpFt,
        )?;
        only("alpha", self.alpha.is_some(), MethodKind::L2Sp)?;
        only("beta", self.beta.is_some(), MethodKind::L2Sp)?;
        only("weight", self.weight.is_some(), MethodKind::RepSim)?;
        if let Some(p) = self.probe_epochs
            && !(1..epochs).contains(&p)
        {
            return Err((
                field("probe_epochs"),
                format!("{p} is not in 1..{epochs} (training.epochs): both phases need an epoch"),
            ));
        }
        for (name, v) in [
            ("alpha", self.alpha),
            ("beta", self.beta),
            ("weight", self.weight),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                return Err((field(name), format!("{v} is not a non-negative number")));
            }
        }
        if let Some(d) = self.layer_decay
            && !(d > 0.0 && d <= 1.0)
        {
            return Err((field("layer_decay"), format!("{d} is not in (0, 1]")));
        }
        if let Some(alphas) = &self.wise_ft
            && (alphas.is_empty()
                || alphas.iter().any(|a| !(0.0..1.0).contains(a))
                || alphas.windows(2).any(|w| w[0] >= w[1]))
        {
            return Err((
                field("wise_ft"),
                format!(
                    "{alphas:?} is not an increasing list of α in [0, 1) (α = 1 is the fine-tuned model itself)"
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClassBalance {
    /// Plain cross-entropy, plain shuffling (SPEC default).
    #[default]
    None,
    /// Cross-entropy weighted by inverse class frequency.
    LossWeights,
    /// Batches drawn with probability inverse to class frequency.
    Sampling,
}

/// The arithmetic of the model's matrix products (training and
/// evaluation). Parameters, optimiser state, norms, softmax and the loss
/// stay in f32 whatever is chosen (master weights: an update far below a
/// bf16 weight's resolution is still applied); only the inputs and outputs
/// of the linear layers and of attention's two products are cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// Everything in f32 (the default, and the reference results).
    #[default]
    F32,
    /// Matrix products in bfloat16 (PyTorch's `autocast(dtype=bfloat16)`):
    /// the fast path on a recent GPU. On the CPU backend it is slower than
    /// f32 (converted around an f32 product) and only there for tests.
    Bf16,
    /// Matrix products in float16; no loss scaling, so prefer bf16.
    F16,
}

impl Precision {
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }
}

/// Fine-tuning hyper-parameters (SPEC, "Fine-tuning protocol").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    pub epochs: u32,
    pub batch_size: usize,
    pub lr_backbone: f64,
    pub lr_head: f64,
    pub weight_decay: f64,
    /// Linear warm-up before the cosine schedule, in epochs.
    pub warmup_epochs: u32,
    /// RandomResizedCrop area range.
    pub rrc_scale: [f64; 2],
    pub hflip: bool,
    pub vflip: bool,
    pub class_balance: ClassBalance,
    /// Left out of the resolved config when f32, so studies made before the
    /// option existed keep their hash.
    #[serde(skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// On the CPU, the parts a training or evaluation batch is cut into,
    /// each run on a thread of its own and the parts' gradients added (the
    /// unsplit batch's gradient up to float rounding). Absent (default): one
    /// part per thread of the process, the fastest, so that another thread
    /// count changes the numbers in their rounding; a number fixes them on
    /// any machine (1 to `batch_size`). A GPU runs its batches whole. Left out of the resolved
    /// config when absent, so studies made before the option keep their hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_parts: Option<usize>,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            epochs: 20,
            batch_size: 32,
            lr_backbone: 1e-5,
            lr_head: 1e-3,
            weight_decay: 0.05,
            warmup_epochs: 1,
            rrc_scale: [0.8, 1.0],
            hflip: true,
            vflip: true,
            class_balance: ClassBalance::None,
            precision: Precision::F32,
            batch_parts: None,
        }
    }
}

/// What to measure after each epoch (SPEC, "Representation quality").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationConfig {
    /// Batch size of inference passes.
    pub batch_size: usize,
    /// Equal-width ECE bins.
    pub ece_bins: usize,
    /// k-NN neighbourhood sizes reported.
    pub knn_k: Vec<usize>,
    /// The k of the headline k-NN number.
    pub knn_report_k: usize,
    /// Temperature of the exp(sim / T) neighbour votes.
    pub knn_temperature: f64,
    /// Natural images in the natural probe set (a fixed subset of the
    /// evaluation split, the same for every run).
    pub natural_probe_size: usize,
    /// Natural images whose attention maps are stored (Figure 3).
    pub attention_images: usize,
    /// Similarity levels of the discretised fit (Figure 5).
    pub fit_levels: usize,
    /// η of T_X(η, ε). SPEC gives no value; this default is the project's.
    pub similarity_threshold: f64,
    /// ε of T_X(η, ε). SPEC gives no value; this default is the project's.
    pub accuracy_tolerance: f64,
    /// Resamples of every bootstrap interval: of a mean over runs (over
    /// seeds) and of a run's final similarity (over its test images).
    pub bootstrap_resamples: usize,
    /// Seeds the bootstrap's resamples and a permutation test's random
    /// permutations (the same numbers every time the tables are made).
    pub bootstrap_seed: u64,
    /// Random permutations of a permutation test whose splits are too many
    /// to count them all (then exact).
    pub permutation_resamples: usize,
    /// Evaluate the natural images (the k-NN bank and queries, the natural
    /// probe, the attention maps) after every epoch; `false`: at epoch 0,
    /// after the last epoch and at WiSE-FT's α only, all the figures and
    /// findings read (the per-epoch k-NN columns are then null between).
    /// On 2 cores the natural images are most of an evaluation.
    pub natural_every_epoch: bool,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        EvaluationConfig {
            batch_size: 64,
            ece_bins: 15,
            knn_k: vec![10, 20, 100, 200],
            knn_report_k: 20,
            knn_temperature: 0.07,
            natural_probe_size: 1000,
            attention_images: 8,
            fit_levels: 10,
            similarity_threshold: 0.5,
            accuracy_tolerance: 0.02,
            bootstrap_resamples: 1000,
            bootstrap_seed: 0,
            permutation_resamples: 10_000,
            natural_every_epoch: true,
        }
    }
}

/// Which activations are written per epoch (disk use grows with both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DumpConfig {
    /// Layer indices (0 = embedding, 1..=L blocks); absent = all layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<usize>>,
    /// Epochs (0 = pre-trained); absent = every epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<Vec<u32>>,
}

fn default_methods() -> Vec<MethodConfig> {
    vec![MethodConfig::full("full")]
}

fn default_seeds() -> Vec<u64> {
    (0..20).collect()
}
fn default_train_split() -> String {
    "train".into()
}
fn default_test_fraction() -> f64 {
    0.2
}
fn default_input_size() -> u32 {
    224
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
            if b.pretrain.is_some() && b.family == Family::Auto {
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

    /// The backbone's file: its checkpoint, or the model its pre-training
    /// makes (`crate::pretrain`).
    pub fn backbone_file(&self, backbone: &BackboneConfig, config_dir: &Path) -> PathBuf {
        match (&backbone.pretrain, backbone.checkpoint_path(config_dir)) {
            (Some(p), _) => {
                crate::pretrain::model_file(&crate::pretrain::pretrain_dir(self, backbone, p))
            }
            (None, Some(path)) => path,
            (None, None) => {
                unreachable!("validated: a backbone has a checkpoint or a pretrain entry")
            }
        }
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
    /// The output folder, the Slurm resources and the download sources are
    /// left out: the study is wherever its folder is, however it was run.
    pub fn to_resolved_toml(&self) -> String {
        let mut identity = self.clone();
        identity.study.output_dir = None;
        identity.slurm = None;
        identity.backbones.iter_mut().for_each(|b| b.source = None);
        toml::to_string_pretty(&identity).expect("a study config always serialises to TOML")
    }

    /// SHA-256 (hex) of the resolved config: two studies with the same hash
    /// ran with the same settings, wherever their folders are.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.to_resolved_toml().as_bytes()))
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let err = |field: &str, message: String| Err((field.to_string(), message));
        check_name("study.name", &self.study.name)?;
        if self.study.seeds.is_empty() {
            return err("study.seeds", "needs at least one seed".into());
        }
        let mut seeds = self.study.seeds.clone();
        seeds.sort_unstable();
        if let Some(w) = seeds.windows(2).find(|w| w[0] == w[1]) {
            return err("study.seeds", format!("seed {} appears twice", w[0]));
        }
        if self.datasets.medical.is_empty() {
            return err(
                "datasets.medical",
                "needs at least one medical data set".into(),
            );
        }
        let mut dataset_names = Vec::new();
        for (i, ds) in self.datasets.medical.iter().enumerate() {
            let at = if self.datasets.medical.len() == 1 {
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
            check_name(&format!("{at}.name"), name)?;
            if dataset_names.contains(&name) {
                return err(
                    &format!("{at}.name"),
                    format!("data set name `{name}` is used twice; give each entry its own `name`"),
                );
            }
            dataset_names.push(name);
            ds.validate(&at)?;
        }
        if self.datasets.natural.name.is_some() {
            return err("datasets.natural.name", "the natural data set has no name (it is the same for every medical one); remove it".into());
        }
        self.datasets.natural.validate("datasets.natural")?;
        let mut names = Vec::new();
        for (i, b) in self.backbones.iter().enumerate() {
            let at = |f: &str| format!("backbones[{i}].{f}");
            check_name(&at("name"), &b.name)?;
            if names.contains(&&b.name) {
                return err(
                    &at("name"),
                    format!("backbone name `{}` is used twice", b.name),
                );
            }
            names.push(&b.name);
            if !(8..=4096).contains(&b.input_size) {
                return err(
                    &at("input_size"),
                    format!("{} is not in 8..=4096", b.input_size),
                );
            }
            match (&b.checkpoint, &b.pretrain) {
                (Some(_), Some(_)) => {
                    return err(
                        &at("pretrain"),
                        "a backbone has a `checkpoint` or a `pretrain` entry, not both".into(),
                    );
                }
                (None, None) => {
                    return err(
                        &at("checkpoint"),
                        "missing: give a checkpoint file, or a `pretrain` entry".into(),
                    );
                }
                (None, Some(p)) => {
                    p.validate(&at("pretrain"), b.input_size, b.heads)?;
                    for (name, set) in [
                        ("source", b.source.is_some()),
                        ("prefix", b.prefix.is_some()),
                        ("quick_gelu", b.quick_gelu),
                        ("pos_resize", b.pos_resize.is_some()),
                    ] {
                        if set {
                            return err(&at(name), "not used by a pre-trained backbone (timm ViT names, GELU); remove it".into());
                        }
                    }
                    if !matches!(b.family, Family::Auto | Family::Vit) {
                        return err(
                            &at("family"),
                            format!(
                                "a pre-trained backbone is a `vit` (timm names), not `{}`",
                                b.family.name()
                            ),
                        );
                    }
                }
                (Some(_), None) => {}
            }
            if let Some(std) = b.std
                && std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            {
                return err(&at("std"), format!("{std:?}: every value must be positive"));
            }
            if let Some(mean) = b.mean
                && mean.iter().any(|m| !m.is_finite())
            {
                return err(&at("mean"), format!("{mean:?}: every value must be finite"));
            }
        }
        if self.methods.is_empty() {
            return err(
                "methods",
                "needs at least one method (or none given: `full`)".into(),
            );
        }
        let mut method_names = Vec::new();
        for (i, m) in self.methods.iter().enumerate() {
            m.validate(&format!("methods[{i}]"), self.training.epochs)?;
            if method_names.contains(&&m.name) {
                return err(
                    &format!("methods[{i}].name"),
                    format!("method name `{}` is used twice", m.name),
                );
            }
            method_names.push(&m.name);
        }
        self.training.validate()?;
        self.evaluation.validate()?;
        Ok(())
    }
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

impl TrainingConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((format!("training.{f}"), m));
        if self.epochs == 0 {
            return err("epochs", "must be at least 1".into());
        }
        if self.batch_size == 0 {
            return err("batch_size", "must be at least 1".into());
        }
        for (name, v) in [("lr_backbone", self.lr_backbone), ("lr_head", self.lr_head)] {
            if !(v.is_finite() && v >= 0.0) {
                return err(name, format!("{v} is not a non-negative number"));
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return err(
                "weight_decay",
                format!("{} is not a non-negative number", self.weight_decay),
            );
        }
        if self.warmup_epochs > self.epochs {
            return err(
                "warmup_epochs",
                format!("{} exceeds epochs ({})", self.warmup_epochs, self.epochs),
            );
        }
        let [lo, hi] = self.rrc_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return err(
                "rrc_scale",
                format!("[{lo}, {hi}] must satisfy 0 < lo <= hi <= 1"),
            );
        }
        match self.batch_parts {
            Some(0) => {
                return err(
                    "batch_parts",
                    "must be at least 1 (or left out: one per thread)".into(),
                );
            }
            Some(p) if p > self.batch_size => {
                return err(
                    "batch_parts",
                    format!(
                        "{p} parts exceed batch_size ({}): a part needs a row",
                        self.batch_size
                    ),
                );
            }
            _ => {}
        }
        Ok(())
    }
}

impl EvaluationConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((format!("evaluation.{f}"), m));
        if self.batch_size == 0 {
            return err("batch_size", "must be at least 1".into());
        }
        if self.ece_bins == 0 {
            return err("ece_bins", "must be at least 1".into());
        }
        if self.knn_k.is_empty() || self.knn_k.contains(&0) {
            return err(
                "knn_k",
                format!("{:?}: needs values of at least 1", self.knn_k),
            );
        }
        if !self.knn_k.contains(&self.knn_report_k) {
            return err(
                "knn_report_k",
                format!("{} is not one of knn_k {:?}", self.knn_report_k, self.knn_k),
            );
        }
        if !(self.knn_temperature.is_finite() && self.knn_temperature > 0.0) {
            return err(
                "knn_temperature",
                format!("{} is not positive", self.knn_temperature),
            );
        }
        if self.fit_levels < 2 {
            return err("fit_levels", "a line needs at least 2 levels".into());
        }
        for (name, v) in [
            ("bootstrap_resamples", self.bootstrap_resamples),
            ("permutation_resamples", self.permutation_resamples),
        ] {
            if v == 0 {
                return err(name, "must be at least 1".into());
            }
        }
        for (name, v) in [
            ("similarity_threshold", self.similarity_threshold),
            ("accuracy_tolerance", self.accuracy_tolerance),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return err(name, format!("{v} is not in [0, 1]"));
            }
        }
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

/// Resolves a relative data or checkpoint path against `SIM_DATA_DIR`.
pub fn resolve_data_path(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        crate::data_dir().join(path)
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

    fn parse(text: &str) -> Result<StudyConfig, ConfigError> {
        StudyConfig::from_toml_str(text, Path::new("study.toml"))
    }

    #[test]
    fn precision_is_f32_by_default_and_only_another_one_changes_the_hash() {
        let f32 = parse(MINIMAL).unwrap();
        assert_eq!(f32.training.precision, Precision::F32);
        // Studies made before the option keep their hash: f32 is not written.
        assert!(
            !f32.to_resolved_toml().contains("precision"),
            "{}",
            f32.to_resolved_toml()
        );
        let stated = parse(&format!("{MINIMAL}[training]\nprecision = \"f32\"\n")).unwrap();
        assert_eq!(stated.hash(), f32.hash());
        let bf16 = parse(&format!("{MINIMAL}[training]\nprecision = \"bf16\"\n")).unwrap();
        assert_eq!(bf16.training.precision, Precision::Bf16);
        assert!(bf16.to_resolved_toml().contains("precision = \"bf16\""));
        assert_ne!(bf16.hash(), f32.hash());
        let err = parse(&format!("{MINIMAL}[training]\nprecision = \"fp8\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("precision") && err.contains("fp8"), "{err}");
    }

    #[test]
    fn batch_parts_are_one_per_thread_by_default_and_a_number_changes_the_hash() {
        let default = parse(MINIMAL).unwrap();
        assert_eq!(default.training.batch_parts, None);
        assert!(
            !default.to_resolved_toml().contains("batch_parts"),
            "{}",
            default.to_resolved_toml()
        );
        let two = parse(&format!("{MINIMAL}[training]\nbatch_parts = 2\n")).unwrap();
        assert_eq!(two.training.batch_parts, Some(2));
        assert_ne!(two.hash(), default.hash());
        let err = parse(&format!("{MINIMAL}[training]\nbatch_parts = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("training.batch_parts") && err.contains("at least 1"),
            "{err}"
        );
        // More parts than a batch has rows: threads for nothing (a typo's 1000 would start a thousand).
        let err = parse(&format!(
            "{MINIMAL}[training]\nbatch_size = 16\nbatch_parts = 17\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("training.batch_parts") && err.contains("batch_size (16)"),
            "{err}"
        );
        assert!(
            parse(&format!(
                "{MINIMAL}[training]\nbatch_size = 16\nbatch_parts = 16\n"
            ))
            .is_ok()
        );
    }

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
    fn checkpoint_paths_resolve_against_the_config_or_the_data_folder() {
        let c = parse(MINIMAL).unwrap();
        let mut b = c.backbones[0].clone();
        let dir = Path::new("/studies/configs");
        let path = |b: &BackboneConfig| c.backbone_file(b, dir);
        b.checkpoint = Some("./ckpt/a.safetensors".into());
        assert_eq!(path(&b), Path::new("/studies/configs/./ckpt/a.safetensors"));
        b.checkpoint = Some("../a.safetensors".into());
        assert_eq!(path(&b), Path::new("/studies/configs/../a.safetensors"));
        b.checkpoint = Some("/abs/a.safetensors".into());
        assert_eq!(path(&b), Path::new("/abs/a.safetensors"));
        b.checkpoint = Some("checkpoints/a.safetensors".into());
        assert_eq!(
            path(&b),
            crate::data_dir().join("checkpoints/a.safetensors")
        );
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
    fn unknown_dataset_kind_is_rejected() {
        let msg = parse(&MINIMAL.replace("kind = \"ham10000\"", "kind = \"ham1000\""))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("datasets.medical.kind"), "{msg}");
        assert!(msg.contains("ham1000"), "{msg}");
    }

    #[test]
    fn out_of_range_values_are_rejected_with_their_field() {
        for (extra, field) in [
            ("[training]\nwarmup_epochs = 30\n", "training.warmup_epochs"),
            ("[training]\nrrc_scale = [0.9, 0.5]\n", "training.rrc_scale"),
            (
                "[evaluation]\nknn_report_k = 7\n",
                "evaluation.knn_report_k",
            ),
        ] {
            let msg = parse(&format!("{MINIMAL}\n{extra}"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(field), "{field}: {msg}");
        }
        let msg = parse(&MINIMAL.replace(
            "root = \"imagenette\"",
            "root = \"imagenette\"\ncrop_ratio = 1.5",
        ))
        .unwrap_err()
        .to_string();
        assert!(msg.contains("datasets.natural.crop_ratio"), "{msg}");
        let msg = parse(&MINIMAL.replace(
            "root = \"imagenette\"",
            "root = \"imagenette\"\ngroups = \"g.csv\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(msg.contains("datasets.natural.groups"), "{msg}");
        let msg = parse(&MINIMAL.replace("name = \"vit\"", "name = \"../vit\""))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("backbones[0].name"), "{msg}");
    }

    const TWO_MEDICAL: &str = r#"
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
            "{TWO_MEDICAL}[[methods]]\nname = \"full\"\nkind = \"full\"\n[[methods]]\nname = \"probe\"\nkind = \"lp-ft\"\nprobe_epochs = 1\n"
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
    fn methods_default_to_full_and_their_fields_are_checked() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.methods, [MethodConfig::full("full")]);
        assert_eq!(parse(&c.to_resolved_toml()).unwrap(), c);
        let with = |m: &str| {
            parse(&format!(
                "{MINIMAL}\n[training]\nepochs = 3\n[[methods]]\nname = \"m\"\n{m}"
            ))
        };
        let ok = with("kind = \"l2-sp\"\nalpha = 0.01\nbeta = 0.01\nlayer_decay = 0.75\n").unwrap();
        assert_eq!(ok.methods[0].kind, MethodKind::L2Sp);
        let ok = with("kind = \"rep-sim\"\nweight = 2.0\nwise_ft = [0.0, 0.5]\n").unwrap();
        assert_eq!(
            (
                ok.methods[0].kind,
                ok.methods[0].weight,
                ok.methods[0].wise_ft.as_deref()
            ),
            (MethodKind::RepSim, Some(2.0), Some(&[0.0, 0.5][..]))
        );
        for (body, field, says) in [
            ("kind = \"lp-ft\"\n", "methods[0].probe_epochs", "needs it"),
            (
                "kind = \"lp-ft\"\nprobe_epochs = 3\n",
                "methods[0].probe_epochs",
                "not in 1..3",
            ),
            (
                "kind = \"full\"\nalpha = 0.1\n",
                "methods[0].alpha",
                "not used",
            ),
            (
                "kind = \"l2-sp\"\nalpha = -1.0\nbeta = 0.0\n",
                "methods[0].alpha",
                "non-negative",
            ),
            (
                "kind = \"full\"\nlayer_decay = 1.5\n",
                "methods[0].layer_decay",
                "(0, 1]",
            ),
            ("kind = \"rep-sim\"\n", "methods[0].weight", "needs it"),
            (
                "kind = \"rep-sim\"\nweight = -0.5\n",
                "methods[0].weight",
                "non-negative",
            ),
            (
                "kind = \"l2-sp\"\nalpha = 0.1\nbeta = 0.1\nweight = 1.0\n",
                "methods[0].weight",
                "not used",
            ),
            ("kind = \"full-ft\"\n", "methods[0].kind", "full-ft"),
            (
                "kind = \"full\"\nwise_ft = [0.5, 0.25]\n",
                "methods[0].wise_ft",
                "increasing",
            ),
            (
                "kind = \"full\"\nwise_ft = [0.5, 1.0]\n",
                "methods[0].wise_ft",
                "[0, 1)",
            ),
            (
                "kind = \"full\"\nwise_ft = []\n",
                "methods[0].wise_ft",
                "increasing",
            ),
        ] {
            let msg = with(body).unwrap_err().to_string();
            assert!(msg.contains(field) && msg.contains(says), "{body}: {msg}");
        }
        let twice = parse(&format!(
            "{MINIMAL}[[methods]]\nname = \"m\"\nkind = \"full\"\n[[methods]]\nname = \"m\"\nkind = \"full\"\n"
        ));
        assert!(twice.unwrap_err().to_string().contains("methods[1].name"));
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
