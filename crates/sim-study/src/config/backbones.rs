//! `[[backbones]]`: each pre-trained model a study fine-tunes, where its
//! weights come from (a checkpoint file or a pre-training the tool runs),
//! and how its images are normalised.

use super::datasets::resolve_data_path;
use super::pretrain::{Objective, PretrainConfig};
use crate::hub::HubFile;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A backbone of the study: where its weights come from, and how its
/// images are fed to it. Written in TOML as [`BackboneEntry`]; read, it
/// has exactly one source of weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "BackboneEntry", into = "BackboneEntry")]
pub struct BackboneConfig {
    /// Short name: the run folder `runs/<dataset>/<name>/` and the figures' legend.
    pub name: String,
    pub weights: Weights,
    pub family: Family,
    /// Key prefix to strip (`visual.`, `backbone.`, `vit.`); detected when absent.
    pub prefix: Option<String>,
    /// Input side in pixels (docs/SPEC.md: 224 on GPU; smaller at CPU scale).
    pub input_size: u32,
    /// Per-channel mean/std; default: the family's own (docs/SPEC.md).
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    /// Attention heads, which no tensor shape says: default the number the
    /// file's metadata records (files this tool wrote), else width / 64 (ViT-S/B/L).
    pub heads: Option<usize>,
    /// QuickGELU instead of GELU: OpenAI-trained CLIP weights need it.
    pub quick_gelu: bool,
    /// Position-embedding resizing; default: the rule of the checkpoint's naming.
    pub pos_resize: Option<PosResize>,
}

/// Where a backbone's weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    /// A safetensors file (`checkpoint`): a path starting with `./` or
    /// `../` is relative to the config file, other relative paths to
    /// `SIM_DATA_DIR`.
    Checkpoint {
        path: PathBuf,
        /// Where a missing file is downloaded from (`source`). Not part of
        /// the study's identity (the file's SHA-256 is).
        download: Option<HubFile>,
    },
    /// A file on the Hugging Face Hub (`source` without `checkpoint`),
    /// used from the Hugging Face cache ([`crate::hub`]) and downloaded
    /// into it when missing.
    Hub(HubFile),
    /// Pre-trained by the tool itself (`pretrain = { … }`, `sim-train
    /// pretrain`): its file is made in [`crate::layout::pretrain_dir`].
    Pretrain {
        pretrain: Box<PretrainConfig>,
        /// `pretrain_epoch`: the backbone as it was after this epoch of its
        /// pre-training (a snapshot kept as it ran), not after the last;
        /// several entries with one `pretrain` and different epochs share
        /// one pre-training (a zoo of graded backbones).
        epoch: Option<u32>,
    },
}

impl TryFrom<BackboneEntry> for BackboneConfig {
    type Error = String;

    fn try_from(e: BackboneEntry) -> Result<BackboneConfig, String> {
        let source = e
            .source
            .as_deref()
            .map(HubFile::parse)
            .transpose()
            .map_err(|m| format!("source {m}"))?;
        if e.pretrain_epoch.is_some() && e.pretrain.is_none() {
            return Err(
                "`pretrain_epoch` names an epoch of the backbone's own pre-training: it needs a \
                 `pretrain` entry"
                    .into(),
            );
        }
        let weights = match (e.checkpoint, e.pretrain, source) {
            (Some(_), Some(_), _) => {
                return Err("a backbone has a `checkpoint` or a `pretrain` entry, not both".into());
            }
            (None, Some(_), Some(_)) => {
                return Err(
                    "`source` downloads a checkpoint; a pre-trained backbone has none: remove it"
                        .into(),
                );
            }
            (None, None, None) => {
                return Err(
                    "no `checkpoint`, `source` or `pretrain` entry: give one of them".into(),
                );
            }
            (Some(path), None, download) => Weights::Checkpoint { path, download },
            (None, None, Some(file)) => Weights::Hub(file),
            (None, Some(p), None) => Weights::Pretrain {
                pretrain: Box::new(p),
                epoch: e.pretrain_epoch,
            },
        };
        Ok(BackboneConfig {
            name: e.name,
            weights,
            family: e.family,
            prefix: e.prefix,
            input_size: e.input_size,
            mean: e.mean,
            std: e.std,
            heads: e.heads,
            quick_gelu: e.quick_gelu,
            pos_resize: e.pos_resize,
        })
    }
}

impl From<BackboneConfig> for BackboneEntry {
    fn from(b: BackboneConfig) -> BackboneEntry {
        let (checkpoint, source, pretrain, pretrain_epoch) = match b.weights {
            Weights::Checkpoint { path, download } => {
                (Some(path), download.map(|f| f.to_string()), None, None)
            }
            Weights::Hub(file) => (None, Some(file.to_string()), None, None),
            Weights::Pretrain { pretrain, epoch } => (None, None, Some(*pretrain), epoch),
        };
        BackboneEntry {
            name: b.name,
            source,
            checkpoint,
            pretrain,
            pretrain_epoch,
            family: b.family,
            prefix: b.prefix,
            input_size: b.input_size,
            mean: b.mean,
            std: b.std,
            heads: b.heads,
            quick_gelu: b.quick_gelu,
            pos_resize: b.pos_resize,
        }
    }
}

impl BackboneConfig {
    /// The pre-training that makes it, for a backbone the tool pre-trains.
    pub fn pretrain(&self) -> Option<&PretrainConfig> {
        match &self.weights {
            Weights::Pretrain { pretrain, .. } => Some(pretrain),
            Weights::Checkpoint { .. } | Weights::Hub(_) => None,
        }
    }

    /// The pre-training epoch whose snapshot it is (`pretrain_epoch`); none
    /// for the pre-training's final model or a checkpoint.
    pub fn pretrain_epoch(&self) -> Option<u32> {
        match &self.weights {
            Weights::Pretrain { epoch, .. } => *epoch,
            Weights::Checkpoint { .. } | Weights::Hub(_) => None,
        }
    }

    /// Checks its rules; errors name the field under `at` (`backbones[1]`).
    pub(super) fn validate(&self, at: &str) -> Result<(), (String, String)> {
        let at = |f: &str| format!("{at}.{f}");
        let err = |f: &str, m: String| Err((at(f), m));
        super::check_name(&at("name"), &self.name)?;
        if !(8..=4096).contains(&self.input_size) {
            return err(
                "input_size",
                format!("{} is not in 8..=4096", self.input_size),
            );
        }
        if let Weights::Pretrain { pretrain: p, epoch } = &self.weights {
            p.validate(&at("pretrain"), self.input_size, self.heads)?;
            if let Some(e) = *epoch {
                p.check_snapshot(e).map_err(|m| (at("pretrain_epoch"), m))?;
            }
            for (name, set) in [
                ("prefix", self.prefix.is_some()),
                ("quick_gelu", self.quick_gelu),
                ("pos_resize", self.pos_resize.is_some()),
            ] {
                if set {
                    return err(
                        name,
                        "not used by a pre-trained backbone (timm ViT names, GELU); remove it"
                            .into(),
                    );
                }
            }
            if !matches!(self.family, Family::Auto | Family::Vit) {
                return err(
                    "family",
                    format!(
                        "a pre-trained backbone is a `vit` (timm names), not `{}`",
                        self.family.name()
                    ),
                );
            }
        }
        if let Some(std) = self.std
            && std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return err("std", format!("{std:?}: every value must be positive"));
        }
        if let Some(mean) = self.mean
            && mean.iter().any(|m| !m.is_finite())
        {
            return err("mean", format!("{mean:?}: every value must be finite"));
        }
        Ok(())
    }
}

/// A `[[backbones]]` entry as written: `checkpoint` and `pretrain` side by
/// side, one of them required ([`BackboneConfig`] holds which).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackboneEntry {
    /// Short name: the run folder `runs/<name>/seed-NN` and the figures' legend.
    name: String,
    /// The file on the Hugging Face Hub: `hf:<owner>/<repo>/<file>` or
    /// `hf:<owner>/<repo>@<revision>/<file>`. Alone, the file is used from
    /// the Hugging Face cache (downloaded into it when missing); with
    /// `checkpoint`, downloaded to that path when missing, and then not part
    /// of the study's identity (the file's SHA-256 is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// safetensors checkpoint; a path starting with `./` or `../` is relative
    /// to the config file, other relative paths to `SIM_DATA_DIR`. Exactly
    /// one of `checkpoint`, `source` alone and `pretrain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoint: Option<PathBuf>,
    /// Pre-trained by the tool itself (`sim-train pretrain`) instead of
    /// downloaded: its file is made in [`crate::layout::pretrain_dir`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pretrain: Option<PretrainConfig>,
    /// With `pretrain`: the backbone after this epoch of the pre-training
    /// (a k-NN learning-curve epoch, whose snapshot the pre-training keeps),
    /// not after its last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pretrain_epoch: Option<u32>,
    #[serde(default)]
    family: Family,
    /// Key prefix to strip (`visual.`, `backbone.`, `vit.`); detected when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    /// Input side in pixels (docs/SPEC.md: 224 on GPU; smaller at CPU scale).
    #[serde(default = "default_input_size")]
    input_size: u32,
    /// Per-channel mean/std; default: the family's own (docs/SPEC.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mean: Option<[f32; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    std: Option<[f32; 3]>,
    /// Attention heads, which no tensor shape says: default the number the
    /// file's metadata records (files this tool wrote), else width / 64 (ViT-S/B/L).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    heads: Option<usize>,
    /// QuickGELU instead of GELU: OpenAI-trained CLIP weights need it.
    #[serde(default)]
    quick_gelu: bool,
    /// Position-embedding resizing; default: the rule of the checkpoint's naming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pos_resize: Option<PosResize>,
}

impl BackboneConfig {
    /// How the backbone was pre-trained, as finding 3 sides it: by its
    /// `pretrain` objective where the tool made it, else by its family.
    pub fn paradigm(&self) -> Paradigm {
        if let Some(p) = self.pretrain() {
            return match p.objective {
                Objective::Supervised => Paradigm::Supervised,
                Objective::Dino => Paradigm::SelfSupervised,
                Objective::None => Paradigm::Neither,
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
}

/// A checkpoint path as the config means it: `./…` and `../…` relative to
/// `config_dir`, the config file's folder; other relative paths to
/// `SIM_DATA_DIR`; absolute paths are themselves.
pub(super) fn locate_checkpoint(path: &Path, config_dir: &Path) -> PathBuf {
    if path.starts_with(".") || path.starts_with("..") {
        config_dir.join(path)
    } else {
        resolve_data_path(path)
    }
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

    /// The family's own normalisation (docs/SPEC.md), or `None` for `auto`.
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

/// How position embeddings are resized to another patch grid (docs/SPEC.md,
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

fn default_input_size() -> u32 {
    224
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StudyConfig;
    use crate::config::tests::{MINIMAL, parse};

    #[test]
    fn checkpoint_paths_resolve_against_the_config_or_the_data_folder() {
        let c = StudyConfig::from_toml_str(MINIMAL, Path::new("/studies/configs/s.toml")).unwrap();
        let mut b = c.backbones[0].clone();
        let path = |b: &BackboneConfig| c.backbone_file(b);
        let at = |p: &str| Weights::Checkpoint {
            path: p.into(),
            download: None,
        };
        b.weights = at("./ckpt/a.safetensors");
        assert_eq!(path(&b), Path::new("/studies/configs/./ckpt/a.safetensors"));
        b.weights = at("../a.safetensors");
        assert_eq!(path(&b), Path::new("/studies/configs/../a.safetensors"));
        b.weights = at("/abs/a.safetensors");
        assert_eq!(path(&b), Path::new("/abs/a.safetensors"));
        b.weights = at("checkpoints/a.safetensors");
        assert_eq!(
            path(&b),
            crate::data_dir().join("checkpoints/a.safetensors")
        );
    }

    #[test]
    fn a_backbone_has_exactly_one_source_of_weights() {
        let checkpoint = "checkpoint = \"checkpoints/vit.safetensors\"\n";
        let pretrain = "input_size = 32\nheads = 2\npretrain = { objective = \"none\", \
            width = 8, depth = 1, patch = 4 }\n";
        let both = MINIMAL.replace(checkpoint, &format!("{checkpoint}{pretrain}"));
        let msg = parse(&both).unwrap_err().to_string();
        assert!(
            msg.contains("backbones[0]") && msg.contains("not both"),
            "{msg}"
        );
        let neither = MINIMAL.replace(checkpoint, "");
        let msg = parse(&neither).unwrap_err().to_string();
        assert!(
            msg.contains("backbones[0]") && msg.contains("no `checkpoint`, `source` or `pretrain`"),
            "{msg}"
        );
        let made = parse(&MINIMAL.replace(checkpoint, pretrain)).unwrap();
        assert!(made.backbones[0].pretrain().is_some());
        assert_eq!(
            made.backbones[0].family,
            Family::Vit,
            "a pre-trained backbone is a timm ViT"
        );
        let downloaded = MINIMAL.replace(checkpoint, &format!("{pretrain}source = \"hf:a/b/c\"\n"));
        let msg = parse(&downloaded).unwrap_err().to_string();
        assert!(
            msg.contains("backbones[0]") && msg.contains("`source`"),
            "{msg}"
        );
        // A `source` alone: the file in the Hugging Face cache, the source
        // kept in the study's identity; a malformed one names its field.
        let hub = parse(&MINIMAL.replace(
            checkpoint,
            "source = \"hf:acme/vit@v2/model.safetensors\"\n",
        ))
        .unwrap();
        assert!(matches!(&hub.backbones[0].weights, Weights::Hub(f) if f.revision == "v2"));
        assert!(
            hub.to_resolved_toml()
                .contains("source = \"hf:acme/vit@v2/model.safetensors\"")
        );
        let with_path = parse(&MINIMAL.replace(
            checkpoint,
            &format!("{checkpoint}source = \"hf:acme/vit/model.safetensors\"\n"),
        ))
        .unwrap();
        assert!(!with_path.to_resolved_toml().contains("source"));
        let msg = parse(&MINIMAL.replace(checkpoint, "source = \"acme/vit/model.safetensors\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("backbones[0]") && msg.contains("hf:<owner>/<repo>/<file>"),
            "{msg}"
        );
        // Read and written back, an entry is the same TOML (the study's hash).
        let c = parse(MINIMAL).unwrap();
        assert!(
            c.to_resolved_toml()
                .contains("checkpoint = \"checkpoints/vit.safetensors\"")
        );
    }

    #[test]
    fn each_backbone_rule_names_its_field() {
        let pretrain = "input_size = 32\nheads = 2\npretrain = { objective = \"none\", \
            width = 8, depth = 1, patch = 4 }\n";
        let made = |extra: &str| {
            MINIMAL.replace(
                "checkpoint = \"checkpoints/vit.safetensors\"\nfamily = \"vit\"\n",
                &format!("{pretrain}{extra}"),
            )
        };
        for (text, field) in [
            (
                MINIMAL.replace("name = \"vit\"", "name = \"../vit\""),
                "backbones[0].name",
            ),
            (
                MINIMAL.replace("family = \"vit\"", "family = \"vit\"\ninput_size = 4"),
                "backbones[0].input_size",
            ),
            (
                MINIMAL.replace(
                    "family = \"vit\"",
                    "family = \"vit\"\nstd = [1.0, 0.0, 1.0]",
                ),
                "backbones[0].std",
            ),
            (
                MINIMAL.replace(
                    "family = \"vit\"",
                    "family = \"vit\"\nmean = [1.0, nan, 1.0]",
                ),
                "backbones[0].mean",
            ),
            (made("prefix = \"visual.\"\n"), "backbones[0].prefix"),
            (made("quick_gelu = true\n"), "backbones[0].quick_gelu"),
            (
                made("pos_resize = \"bicubic\"\n"),
                "backbones[0].pos_resize",
            ),
            (made("family = \"dinov2\"\n"), "backbones[0].family"),
            (
                format!("{MINIMAL}[[backbones]]\nname = \"vit\"\ncheckpoint = \"b.safetensors\"\n"),
                "backbones[1].name",
            ),
        ] {
            let msg = parse(&text).unwrap_err().to_string();
            assert!(msg.contains(field), "{field}: {msg}");
        }
    }
}
