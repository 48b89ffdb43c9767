//! A backbone's `pretrain = { … }` entry: the tool pre-trains the backbone
//! itself (`sim-train pretrain`) on the study's natural images instead of
//! reading a checkpoint. Where it is made: `crate::layout::pretrain_dir`;
//! its committed state: `crate::pretrain_state`.

use serde::{Deserialize, Serialize};

/// How a backbone is pre-trained, on the study's natural images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    pub objective: Objective,
    /// The data set pre-trained on (its train split): `natural`, the
    /// study's natural images (the only one for now).
    #[serde(default = "default_dataset")]
    pub dataset: String,
    /// Passes over the train split; 0 (and only 0) with objective `none`.
    #[serde(default)]
    pub epochs: u32,
    /// The length, in epochs, of the schedules: the learning rate's cosine
    /// and, for DINO, the teacher momentum's and the weight decay's. Left
    /// out: `epochs`. Longer, the pre-training stops part-way along them
    /// (where a longer run would be after `epochs` epochs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_epochs: Option<u32>,
    /// Token width D.
    pub width: usize,
    /// Transformer blocks.
    pub depth: usize,
    /// Patch side in pixels; divides the backbone's `input_size`.
    pub patch: usize,
    /// MLP hidden width = mlp_ratio × D (timm: 4).
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: usize,
    /// Seeds the initialisation, the data order and the augmentation.
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// AdamW's peak learning rate (after warm-up, then cosine to zero).
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    #[serde(default = "default_warmup")]
    pub warmup_epochs: u32,
    /// RandomResizedCrop area range of the supervised crops and of DINO's
    /// two global crops.
    #[serde(default = "default_global_scale")]
    pub crop_scale: [f64; 2],
    /// supervised: label smoothing of the cross-entropy.
    #[serde(default = "default_label_smoothing")]
    pub label_smoothing: f64,
    /// dino: the self-distillation settings.
    #[serde(default)]
    pub dino: DinoConfig,
    /// The learning curve: k-NN top-1 on the natural validation split after
    /// every `knn_every`-th epoch and the last (0: the last only).
    #[serde(default = "default_knn_every")]
    pub knn_every: u32,
}

/// The pre-training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// No training: the random initialisation (timm's), a control.
    None,
    /// Classification of the natural images' labels, cross-entropy.
    Supervised,
    /// Self-distillation without labels (Caron et al. 2021, DINO).
    Dino,
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Objective::None => "none",
            Objective::Supervised => "supervised",
            Objective::Dino => "dino",
        }
    }
}

/// DINO's settings (Caron et al. 2021), scaled to small images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DinoConfig {
    /// Local crops per image (besides the two global ones).
    pub local_crops: usize,
    /// Local crop side in pixels; a multiple of the patch.
    pub local_size: u32,
    /// RandomResizedCrop area range of the local crops.
    pub local_scale: [f64; 2],
    /// Prototypes K of the projection head's output.
    pub out_dim: usize,
    /// Hidden width of the head's MLP.
    pub hidden_dim: usize,
    /// Width of the L2-normalised bottleneck before the prototypes.
    pub bottleneck_dim: usize,
    /// Teacher softmax temperature (sharpening).
    pub teacher_temp: f64,
    pub student_temp: f64,
    /// EMA momentum of the teacher at the first step; it follows a cosine
    /// to 1 at the last step.
    pub teacher_momentum: f64,
    /// EMA momentum of the centre subtracted from the teacher's output.
    pub center_momentum: f64,
    /// The teacher temperature at the first epoch, rising linearly to
    /// `teacher_temp` over `teacher_temp_warmup_epochs` (0: none).
    pub warmup_teacher_temp: f64,
    pub teacher_temp_warmup_epochs: u32,
    /// Epochs in which the prototypes (the head's last layer) do not
    /// move: DINO's guard against an early collapse.
    pub freeze_last_layer_epochs: u32,
    /// The weight decay at the last step: it follows a cosine from the
    /// pre-training's `weight_decay` (biases and norms never decay).
    pub weight_decay_end: f64,
    /// Probability of colour jitter of a view (brightness 0.4, contrast
    /// 0.4, saturation 0.2, hue 0.1).
    pub colour_jitter: f64,
    /// Probability that a view is turned grey.
    pub greyscale: f64,
    /// Probability of a Gaussian blur of the first global view, the second,
    /// and each local view.
    pub blur: [f64; 3],
    /// The blur's σ range in pixels at 224 px, scaled to each view's side.
    pub blur_sigma: [f64; 2],
    /// Probability that the second global view is solarised.
    pub solarize: f64,
}

impl Default for DinoConfig {
    fn default() -> Self {
        DinoConfig {
            local_crops: 4,
            local_size: 16,
            local_scale: [0.1, 0.4],
            out_dim: 1024,
            hidden_dim: 512,
            bottleneck_dim: 64,
            teacher_temp: 0.04,
            student_temp: 0.1,
            teacher_momentum: 0.996,
            center_momentum: 0.9,
            warmup_teacher_temp: 0.04,
            teacher_temp_warmup_epochs: 0,
            freeze_last_layer_epochs: 1,
            weight_decay_end: 0.4,
            colour_jitter: 0.8,
            greyscale: 0.2,
            blur: [1.0, 0.1, 0.5],
            blur_sigma: [0.1, 2.0],
            solarize: 0.2,
        }
    }
}

fn default_dataset() -> String {
    "natural".into()
}

fn default_mlp_ratio() -> usize {
    4
}

fn default_batch_size() -> usize {
    64
}

fn default_lr() -> f64 {
    1e-3
}

fn default_weight_decay() -> f64 {
    0.05
}

fn default_warmup() -> u32 {
    1
}

fn default_global_scale() -> [f64; 2] {
    [0.35, 1.0]
}

fn default_knn_every() -> u32 {
    5
}

fn default_label_smoothing() -> f64 {
    0.1
}

impl PretrainConfig {
    /// The schedules' length in epochs: `schedule_epochs`, else `epochs`.
    pub fn schedule_length(&self) -> u32 {
        self.schedule_epochs.unwrap_or(self.epochs)
    }

    /// Whether `epoch` is on the k-NN learning curve: every `knn_every`-th
    /// epoch and the last.
    pub fn measures_knn_at(&self, epoch: u32) -> bool {
        epoch == self.epochs || (self.knn_every > 0 && epoch.is_multiple_of(self.knn_every))
    }

    /// The epochs whose backbone the pre-training keeps besides its final
    /// model (`crate::layout::pretrained_snapshot`): the learning curve's
    /// epochs before the last.
    pub fn snapshot_epochs(&self) -> impl Iterator<Item = u32> + '_ {
        (1..self.epochs).filter(|&e| self.measures_knn_at(e))
    }

    /// Whether a backbone may be this pre-training's model after `epoch`
    /// (`pretrain_epoch`): a kept snapshot. The message says why not.
    pub fn check_snapshot(&self, epoch: u32) -> Result<(), String> {
        if epoch == self.epochs {
            return Err(format!(
                "{epoch} is the pre-training's last epoch, its final model: leave \
                 `pretrain_epoch` out"
            ));
        }
        if !self.snapshot_epochs().any(|e| e == epoch) {
            let kept: Vec<String> = self.snapshot_epochs().map(|e| e.to_string()).collect();
            return Err(format!(
                "{epoch}: the pre-training keeps its backbone after the epochs of its k-NN \
                 learning curve (every `knn_every` = {} epochs) before its last ({}): {}",
                self.knn_every,
                self.epochs,
                if kept.is_empty() {
                    "none".to_string()
                } else {
                    kept.join(", ")
                }
            ));
        }
        Ok(())
    }

    /// Checks every rule; errors name the field under `at`
    /// (`backbones[1].pretrain`). `input_size` and `heads` are the backbone's.
    pub fn validate(
        &self,
        at: &str,
        input_size: u32,
        heads: Option<usize>,
    ) -> Result<(), (String, String)> {
        let field = |f: &str| format!("{at}.{f}");
        let err = |f: &str, m: String| Err((field(f), m));
        if self.dataset != "natural" {
            return err(
                "dataset",
                format!(
                    "`{}`: only `natural` (the study's natural images) can be pre-trained on",
                    self.dataset
                ),
            );
        }
        match (self.objective, self.epochs) {
            (Objective::None, 0) => {}
            (Objective::None, e) => {
                return err(
                    "epochs",
                    format!("{e}: objective `none` is the random initialisation; remove it"),
                );
            }
            (_, 0) => return err("epochs", "must be at least 1".into()),
            _ => {}
        }
        for (name, v) in [
            ("width", self.width),
            ("depth", self.depth),
            ("patch", self.patch),
            ("mlp_ratio", self.mlp_ratio),
            ("batch_size", self.batch_size),
        ] {
            if v == 0 {
                return err(name, "must be at least 1".into());
            }
        }
        if !(input_size as usize).is_multiple_of(self.patch) {
            return err(
                "patch",
                format!(
                    "{} does not divide the backbone's input_size {input_size}",
                    self.patch
                ),
            );
        }
        match heads {
            None => {
                return Err((
                    at.trim_end_matches(".pretrain").to_string() + ".heads",
                    "a pre-trained backbone needs its number of attention heads".into(),
                ));
            }
            Some(h) if h == 0 || !self.width.is_multiple_of(h) => {
                return Err((
                    at.trim_end_matches(".pretrain").to_string() + ".heads",
                    format!("{h} does not divide the width {}", self.width),
                ));
            }
            Some(_) => {}
        }
        for (name, v) in [("lr", self.lr), ("weight_decay", self.weight_decay)] {
            if !(v.is_finite() && v >= 0.0) {
                return err(name, format!("{v} is not a non-negative number"));
            }
        }
        if let Some(s) = self.schedule_epochs
            && s < self.epochs
        {
            return err(
                "schedule_epochs",
                format!(
                    "{s} is shorter than epochs ({}): the schedules would end before the \
                     pre-training",
                    self.epochs
                ),
            );
        }
        if self.epochs > 0 && self.warmup_epochs > self.epochs {
            return err(
                "warmup_epochs",
                format!("{} exceeds epochs ({})", self.warmup_epochs, self.epochs),
            );
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return err(
                "label_smoothing",
                format!("{} is not in [0, 1)", self.label_smoothing),
            );
        }
        let d = &self.dino;
        for (name, [lo, hi]) in [
            ("crop_scale", self.crop_scale),
            ("dino.local_scale", d.local_scale),
        ] {
            if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
                return err(name, format!("[{lo}, {hi}] must satisfy 0 < lo <= hi <= 1"));
            }
        }
        if self.objective == Objective::Dino {
            if d.local_size == 0 || !(d.local_size as usize).is_multiple_of(self.patch) {
                return err(
                    "dino.local_size",
                    format!(
                        "{} is not a positive multiple of the patch {}",
                        d.local_size, self.patch
                    ),
                );
            }
            for (name, v) in [
                ("dino.out_dim", d.out_dim),
                ("dino.hidden_dim", d.hidden_dim),
                ("dino.bottleneck_dim", d.bottleneck_dim),
            ] {
                if v == 0 {
                    return err(name, "must be at least 1".into());
                }
            }
            for (name, v) in [
                ("dino.teacher_temp", d.teacher_temp),
                ("dino.student_temp", d.student_temp),
            ] {
                if !(v.is_finite() && v > 0.0) {
                    return err(name, format!("{v} is not positive"));
                }
            }
            let probabilities = [
                ("dino.teacher_momentum", d.teacher_momentum),
                ("dino.center_momentum", d.center_momentum),
                ("dino.colour_jitter", d.colour_jitter),
                ("dino.greyscale", d.greyscale),
                ("dino.blur[0]", d.blur[0]),
                ("dino.blur[1]", d.blur[1]),
                ("dino.blur[2]", d.blur[2]),
                ("dino.solarize", d.solarize),
            ];
            for (name, v) in probabilities {
                if !(0.0..=1.0).contains(&v) {
                    return err(name, format!("{v} is not in [0, 1]"));
                }
            }
            if !(d.warmup_teacher_temp.is_finite() && d.warmup_teacher_temp > 0.0) {
                return err(
                    "dino.warmup_teacher_temp",
                    format!("{} is not positive", d.warmup_teacher_temp),
                );
            }
            for (name, v) in [
                (
                    "dino.teacher_temp_warmup_epochs",
                    d.teacher_temp_warmup_epochs,
                ),
                ("dino.freeze_last_layer_epochs", d.freeze_last_layer_epochs),
            ] {
                if v > self.epochs {
                    return err(name, format!("{v} exceeds epochs ({})", self.epochs));
                }
            }
            if !(d.weight_decay_end.is_finite() && d.weight_decay_end >= 0.0) {
                return err(
                    "dino.weight_decay_end",
                    format!("{} is not a non-negative number", d.weight_decay_end),
                );
            }
            let [lo, hi] = d.blur_sigma;
            if !(lo > 0.0 && lo <= hi) {
                return err(
                    "dino.blur_sigma",
                    format!("[{lo}, {hi}] must satisfy 0 < lo <= hi"),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::StudyConfig;
    use std::path::Path;

    const BODY: &str = r#"objective = "supervised", epochs = 3, width = 64, depth = 2, patch = 4"#;

    /// The config tests' minimal study, its backbone pre-trained with `body`.
    fn config_with(body: &str, heads: &str) -> Result<StudyConfig, String> {
        let backbone = format!("input_size = 32\n{heads}\npretrain = {{ {body} }}\n");
        let text = crate::config::tests::MINIMAL.replace(
            "checkpoint = \"checkpoints/vit.safetensors\"\nfamily = \"vit\"\n",
            &backbone,
        );
        StudyConfig::from_toml_str(&text, Path::new("s.toml")).map_err(|e| e.to_string())
    }

    pub(crate) fn config(extra: &str) -> Result<StudyConfig, String> {
        config_with(&format!("{BODY}{extra}"), "heads = 2")
    }

    #[test]
    fn a_pretrain_entry_is_read_with_its_defaults() {
        let c = config("").unwrap();
        let p = c.backbones[0].pretrain().unwrap();
        assert_eq!(
            (p.objective, p.epochs, p.width, p.dataset.as_str()),
            (Objective::Supervised, 3, 64, "natural")
        );
        assert_eq!(p.dino, DinoConfig::default());
        let dir = crate::layout::pretrain_dir(&c, &c.backbones[0], p);
        assert!(
            dir.to_string_lossy()
                .starts_with("studies/pretrained/supervised-"),
            "{}",
            dir.display()
        );
    }

    /// The minimal study with one backbone entry per (name, extra lines),
    /// each pre-trained with BODY and `knn_every = 2` (the curve: 2, 3).
    fn zoo(entries: &[(&str, &str)]) -> Result<StudyConfig, String> {
        let mut text = crate::config::tests::MINIMAL
            .split("[[backbones]]")
            .next()
            .unwrap()
            .to_string();
        for (name, extra) in entries {
            text.push_str(&format!(
                "[[backbones]]\nname = \"{name}\"\ninput_size = 32\nheads = 2\n{extra}\n\
                 pretrain = {{ {BODY}, knn_every = 2 }}\n"
            ));
        }
        StudyConfig::from_toml_str(&text, Path::new("s.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_snapshot_is_an_epoch_of_the_learning_curve_before_the_last() {
        let c = zoo(&[("vit", "pretrain_epoch = 2")]).unwrap();
        assert_eq!(c.backbones[0].pretrain_epoch(), Some(2));
        assert!(
            c.backbone_file(&c.backbones[0])
                .ends_with("model-epoch-002.safetensors")
        );
        let odd = zoo(&[("vit", "pretrain_epoch = 1")]).unwrap_err();
        assert!(odd.contains("backbones[0].pretrain_epoch"), "{odd}");
        assert!(odd.contains("before its last (3): 2"), "{odd}");
        let last = zoo(&[("vit", "pretrain_epoch = 3")]).unwrap_err();
        assert!(
            last.contains("its final model: leave `pretrain_epoch` out"),
            "{last}"
        );
        let every = config(", knn_every = 1").unwrap();
        let kept: Vec<u32> = every.backbones[0]
            .pretrain()
            .unwrap()
            .snapshot_epochs()
            .collect();
        assert_eq!(kept, [1, 2]);
    }

    #[test]
    fn pretrain_epoch_without_a_pretrain_entry_is_an_error() {
        let text = crate::config::tests::MINIMAL.replace(
            "family = \"vit\"\n",
            "family = \"vit\"\npretrain_epoch = 2\n",
        );
        let e = StudyConfig::from_toml_str(&text, Path::new("s.toml")).unwrap_err();
        assert!(e.to_string().contains("it needs a `pretrain` entry"), "{e}");
    }

    #[test]
    fn snapshots_of_one_pretraining_share_its_folder_and_pretrain_once() {
        let c = zoo(&[("vit", ""), ("vit-e2", "pretrain_epoch = 2")]).unwrap();
        let (a, b) = (
            c.backbone_file(&c.backbones[0]),
            c.backbone_file(&c.backbones[1]),
        );
        assert_eq!(a.parent(), b.parent());
        assert!(a.ends_with("model.safetensors"));
        assert!(b.ends_with("model-epoch-002.safetensors"));
        let names: Vec<&str> = c.pretrainings().iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["vit"]);
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases = [
            ("patch = 4", "patch = 5", "backbones[0].pretrain.patch"),
            ("epochs = 3", "epochs = 0", "backbones[0].pretrain.epochs"),
            ("width = 64", "width = 0", "backbones[0].pretrain.width"),
            (
                "patch = 4",
                "patch = 4, lr = -1.0",
                "backbones[0].pretrain.lr",
            ),
            (
                "patch = 4",
                "patch = 4, label_smoothing = 1.0",
                "backbones[0].pretrain.label_smoothing",
            ),
            (
                "epochs = 3",
                "epochs = 3, schedule_epochs = 2",
                "backbones[0].pretrain.schedule_epochs",
            ),
            (
                "patch = 4",
                "patch = 4, crop_scale = [0.5, 0.2]",
                "backbones[0].pretrain.crop_scale",
            ),
            (
                "patch = 4",
                "patch = 4, dataset = \"ham10000\"",
                "backbones[0].pretrain.dataset",
            ),
            (
                "patch = 4",
                "patch = 4, warmup_epochs = 9",
                "backbones[0].pretrain.warmup_epochs",
            ),
            (
                "\"supervised\", epochs = 3",
                "\"none\", epochs = 3",
                "backbones[0].pretrain.epochs",
            ),
            (
                "\"supervised\"",
                "\"dino\", dino = { local_size = 6 }",
                "backbones[0].pretrain.dino.local_size",
            ),
            (
                "\"supervised\"",
                "\"dino\", dino = { teacher_temp = 0.0 }",
                "backbones[0].pretrain.dino.teacher_temp",
            ),
            (
                "\"supervised\"",
                "\"dino\", dino = { teacher_momentum = 1.5 }",
                "backbones[0].pretrain.dino.teacher_momentum",
            ),
            (
                "\"supervised\"",
                "\"dino\", dino = { blur = [1.0, 1.2, 0.5] }",
                "backbones[0].pretrain.dino.blur[1]",
            ),
            (
                "\"supervised\"",
                "\"dino\", dino = { solarize = -0.1 }",
                "backbones[0].pretrain.dino.solarize",
            ),
            (
                "\"supervised\"",
                "\"dino\", dino = { freeze_last_layer_epochs = 4 }",
                "backbones[0].pretrain.dino.freeze_last_layer_epochs",
            ),
            (
                "\"supervised\"",
                "\"dino\", dino = { teacher_temp_warmup_epochs = 4 }",
                "backbones[0].pretrain.dino.teacher_temp_warmup_epochs",
            ),
            (
                "\"supervised\"",
                "\"dino\", dino = { blur_sigma = [2.0, 0.1] }",
                "backbones[0].pretrain.dino.blur_sigma",
            ),
            (
                "\"supervised\"",
                "\"dino\", dino = { weight_decay_end = -1.0 }",
                "backbones[0].pretrain.dino.weight_decay_end",
            ),
        ];
        for (from, to, field) in cases {
            let msg = config_with(&BODY.replace(from, to), "heads = 2")
                .map(|_| ())
                .unwrap_err();
            assert!(msg.contains(field), "{to}: {msg}");
        }
        let msg = config_with(BODY, "").map(|_| ()).unwrap_err();
        assert!(msg.contains("backbones[0].heads"), "{msg}");
        let msg = config_with(BODY, "heads = 3").map(|_| ()).unwrap_err();
        assert!(
            msg.contains("backbones[0].heads") && msg.contains("does not divide the width 64"),
            "{msg}"
        );
        let dino = config_with(
            &BODY.replace("\"supervised\"", "\"dino\", dino = { local_size = 16 }"),
            "heads = 2",
        )
        .unwrap();
        assert_eq!(dino.backbones[0].pretrain().unwrap().dino.local_size, 16);
        assert!(
            config_with(
                r#"objective = "none", width = 64, depth = 2, patch = 4"#,
                "heads = 2"
            )
            .is_ok()
        );
    }
}
