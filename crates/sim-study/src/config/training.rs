//! `[training]`: the fine-tuning hyper-parameters (docs/SPEC.md, "Fine-tuning
//! protocol"), the arithmetic of its products and how a batch is cut.

use serde::{Deserialize, Serialize};

/// Fine-tuning hyper-parameters (docs/SPEC.md, "Fine-tuning protocol").
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

impl TrainingConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClassBalance {
    /// Plain cross-entropy, plain shuffling (docs/SPEC.md default).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{MINIMAL, parse};

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
    fn each_training_rule_names_its_field() {
        for (extra, field) in [
            ("epochs = 0", "training.epochs"),
            ("batch_size = 0", "training.batch_size"),
            ("lr_head = -1.0", "training.lr_head"),
            ("weight_decay = -0.1", "training.weight_decay"),
            ("warmup_epochs = 30", "training.warmup_epochs"),
            ("rrc_scale = [0.9, 0.5]", "training.rrc_scale"),
        ] {
            let msg = parse(&format!("{MINIMAL}\n[training]\n{extra}\n"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(field), "{field}: {msg}");
        }
    }
}
