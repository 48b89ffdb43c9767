//! `[evaluation.similarity]`: which similarity measures a study's tables
//! hold besides linear CKA, their parameters, and the resamples of their
//! chance level (docs/SPEC.md, "Similarity measures").
//!
//! These settings change only the tables, never a run: they are left out of
//! the study's identity ([`crate::StudyConfig::hash`]), so a finished study
//! can be measured again with other measures.

use serde::{Deserialize, Serialize};

/// A similarity measure between two representations of the same samples.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Measure {
    /// Linear CKA, biased HSIC (Kornblith et al. 2019): the study's similarity.
    Cka,
    /// Linear CKA, unbiased HSIC (Song et al. 2012).
    CkaDebiased,
    /// Mean canonical correlation of the top principal directions (Raghu et al. 2017).
    Svcca,
    /// Canonical correlations weighted by their share of one side (Morcos et al. 2018).
    Pwcca,
    /// Angular orthogonal-Procrustes distance (Williams et al. 2021): 0 = same shape.
    Procrustes,
    /// Spearman correlation of correlation-distance RDMs (Kriegeskorte et al. 2008).
    Rsa,
    /// Mean shared share of k nearest neighbours (Huh et al. 2024).
    MutualKnn,
    /// CKA restricted to mutual k-nearest-neighbour pairs (Huh et al. 2024).
    Cknna,
}

impl Measure {
    pub const ALL: [Measure; 8] = [
        Measure::Cka,
        Measure::CkaDebiased,
        Measure::Svcca,
        Measure::Pwcca,
        Measure::Procrustes,
        Measure::Rsa,
        Measure::MutualKnn,
        Measure::Cknna,
    ];

    /// The name in configs, tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Measure::Cka => "cka",
            Measure::CkaDebiased => "cka_debiased",
            Measure::Svcca => "svcca",
            Measure::Pwcca => "pwcca",
            Measure::Procrustes => "procrustes",
            Measure::Rsa => "rsa",
            Measure::MutualKnn => "mutual_knn",
            Measure::Cknna => "cknna",
        }
    }

    /// Whether a larger value means more similar (all but Procrustes, a distance).
    pub fn higher_is_similar(self) -> bool {
        self != Measure::Procrustes
    }

    /// The value oriented so that larger is more similar (a distance negated):
    /// what verdicts and correlations across measures read.
    pub fn oriented(self, value: f64) -> f64 {
        if self.higher_is_similar() {
            value
        } else {
            -value
        }
    }
}

impl std::fmt::Display for Measure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `[evaluation.similarity]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimilarityConfig {
    /// Measures of `similarity.parquet`, on the headline representation
    /// (medical probe, final norm, CLS). Default: CKA alone.
    pub measures: Vec<Measure>,
    /// SVCCA keeps the top principal directions that explain this share of
    /// each side's variance.
    pub svcca_variance: f64,
    /// RSA compares RDMs of at most this many samples (evenly spaced in
    /// the test set's order): an RDM has n² entries.
    pub rsa_max_samples: usize,
    /// The k of mutual k-NN and CKNNA.
    pub alignment_k: usize,
    /// Row permutations of the chance level of each measure (0: none).
    pub null_resamples: usize,
}

impl Default for SimilarityConfig {
    fn default() -> Self {
        SimilarityConfig {
            measures: vec![Measure::Cka],
            svcca_variance: 0.99,
            rsa_max_samples: 2000,
            alignment_k: 10,
            null_resamples: 20,
        }
    }
}

impl SimilarityConfig {
    pub fn is_default(&self) -> bool {
        *self == SimilarityConfig::default()
    }

    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((format!("evaluation.similarity.{f}"), m));
        if self.measures.is_empty() {
            return err("measures", "needs at least one measure".into());
        }
        if let Some(m) = self
            .measures
            .iter()
            .enumerate()
            .find_map(|(i, m)| self.measures[..i].contains(m).then_some(m))
        {
            return err("measures", format!("`{m}` is listed twice"));
        }
        if !(self.svcca_variance > 0.0 && self.svcca_variance <= 1.0) {
            return err(
                "svcca_variance",
                format!("{} is not in (0, 1]", self.svcca_variance),
            );
        }
        if self.rsa_max_samples < 4 {
            return err(
                "rsa_max_samples",
                "an RDM correlation needs at least 4 samples".into(),
            );
        }
        if self.alignment_k < 2 {
            return err("alignment_k", "CKNNA needs at least 2 neighbours".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Measure;
    use crate::config::tests::{MINIMAL, parse};

    #[test]
    fn each_similarity_rule_names_its_field() {
        for (extra, field) in [
            ("measures = []", "evaluation.similarity.measures"),
            (
                "measures = [\"rsa\", \"rsa\"]",
                "evaluation.similarity.measures",
            ),
            (
                "svcca_variance = 0.0",
                "evaluation.similarity.svcca_variance",
            ),
            (
                "svcca_variance = 1.5",
                "evaluation.similarity.svcca_variance",
            ),
            (
                "rsa_max_samples = 3",
                "evaluation.similarity.rsa_max_samples",
            ),
            ("alignment_k = 1", "evaluation.similarity.alignment_k"),
        ] {
            let msg = parse(&format!("{MINIMAL}\n[evaluation.similarity]\n{extra}\n"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(field), "{field}: {msg}");
        }
        let msg = parse(&format!(
            "{MINIMAL}\n[evaluation.similarity]\nmeasures = [\"cca\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(msg.contains("cca"), "{msg}");
    }

    #[test]
    fn measures_change_the_tables_not_the_study() {
        let plain = parse(MINIMAL).unwrap();
        assert!(!plain.to_resolved_toml().contains("[evaluation.similarity]"));
        let all = parse(&format!(
            "{MINIMAL}\n[evaluation.similarity]\nmeasures = [{}]\nnull_resamples = 5\n",
            Measure::ALL
                .iter()
                .map(|m| format!("\"{m}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .unwrap();
        assert_eq!(all.evaluation.similarity.measures, Measure::ALL);
        // study.toml says which measures the tables hold; the hash, which
        // runs are checked against, does not change.
        assert!(all.to_resolved_toml().contains("mutual_knn"));
        assert_eq!(all.hash(), plain.hash());
    }

    #[test]
    fn names_are_the_serde_and_command_line_names() {
        use clap::ValueEnum;
        for m in Measure::ALL {
            let toml_name: String = toml::Value::try_from(m)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(toml_name, m.name());
            assert_eq!(Measure::from_str(m.name(), false), Ok(m));
        }
    }
}
