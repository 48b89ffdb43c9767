//! `[evaluation]`: what is measured after each epoch (docs/SPEC.md,
//! "Representation quality") and how the tables' intervals are drawn.

use super::similarity::SimilarityConfig;
use serde::{Deserialize, Serialize};

/// What to measure after each epoch (docs/SPEC.md, "Representation quality").
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
    /// η of T_X(η, ε). docs/SPEC.md gives no value; this default is the project's.
    pub similarity_threshold: f64,
    /// ε of T_X(η, ε). docs/SPEC.md gives no value; this default is the project's.
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
    /// Which split's accuracy picks θ*, each backbone's best run (tables
    /// only): `test`, the paper's (optimistic: the test set both picks and
    /// scores), or `validation` (every medical data set needs a validation
    /// split). Default `test`.
    #[serde(skip_serializing_if = "SelectOn::is_test")]
    pub select_on: SelectOn,
    /// `[evaluation.similarity]`: the measures besides CKA (tables only).
    #[serde(skip_serializing_if = "SimilarityConfig::is_default")]
    pub similarity: SimilarityConfig,
}

/// The split whose accuracy picks θ*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectOn {
    #[default]
    Test,
    Validation,
}

impl SelectOn {
    fn is_test(&self) -> bool {
        *self == SelectOn::Test
    }
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
            select_on: SelectOn::Test,
            similarity: SimilarityConfig::default(),
        }
    }
}

impl EvaluationConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
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
        self.similarity.validate()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, parse};

    #[test]
    fn each_evaluation_rule_names_its_field() {
        for (extra, field) in [
            ("batch_size = 0", "evaluation.batch_size"),
            ("ece_bins = 0", "evaluation.ece_bins"),
            ("knn_k = []", "evaluation.knn_k"),
            ("knn_report_k = 7", "evaluation.knn_report_k"),
            ("knn_temperature = 0.0", "evaluation.knn_temperature"),
            ("fit_levels = 1", "evaluation.fit_levels"),
            ("bootstrap_resamples = 0", "evaluation.bootstrap_resamples"),
            (
                "permutation_resamples = 0",
                "evaluation.permutation_resamples",
            ),
            (
                "similarity_threshold = 1.5",
                "evaluation.similarity_threshold",
            ),
            ("accuracy_tolerance = -0.1", "evaluation.accuracy_tolerance"),
        ] {
            let msg = parse(&format!("{MINIMAL}\n[evaluation]\n{extra}\n"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(field), "{field}: {msg}");
        }
    }
}
