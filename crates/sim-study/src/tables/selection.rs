//! The vocabulary of predictive model selection (`selection.parquet`,
//! `selection_summary.parquet`; docs/SPEC.md, "Model selection"): the
//! transferability scores, every predictor a candidate is ranked by, and
//! the outcomes the rankings are judged against, each with its name in the
//! tables and whether higher is better.

/// A transferability score computed on a backbone's frozen features of the
/// medical train split (`sim_metrics::transferability`; all: higher
/// predicts a better transfer).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Score {
    Logme,
    Hscore,
    Nleep,
    Gbc,
    Transrate,
    Sfda,
}

impl Score {
    pub const ALL: [Score; 6] = [
        Score::Logme,
        Score::Hscore,
        Score::Nleep,
        Score::Gbc,
        Score::Transrate,
        Score::Sfda,
    ];

    /// Its name on the command line, in JSON and in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Score::Logme => "logme",
            Score::Hscore => "hscore",
            Score::Nleep => "nleep",
            Score::Gbc => "gbc",
            Score::Transrate => "transrate",
            Score::Sfda => "sfda",
        }
    }
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// When a predictor is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Before fine-tuning: from the pre-trained backbone alone.
    Before,
    /// After the first epoch of fine-tuning (a mean over the seeds).
    FirstEpoch,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Before => "before fine-tuning",
            Kind::FirstEpoch => "after epoch 1",
        }
    }
}

/// Something a candidate (data set × backbone × method) is ranked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Predictor {
    Score(Score),
    /// The linear probe's balanced accuracy on the medical test split
    /// (`pretrain.parquet`): the baseline a score must beat.
    LinearProbe,
    /// k-NN top-1 on the natural images before fine-tuning.
    Knn,
    /// The similarity to the pre-trained model after epoch 1.
    SimilarityEpoch1,
    BalancedAccuracyEpoch1,
    EceEpoch1,
}

impl Predictor {
    /// Every predictor, in table order.
    pub const ALL: [Predictor; 11] = [
        Predictor::Score(Score::Logme),
        Predictor::Score(Score::Hscore),
        Predictor::Score(Score::Nleep),
        Predictor::Score(Score::Gbc),
        Predictor::Score(Score::Transrate),
        Predictor::Score(Score::Sfda),
        Predictor::LinearProbe,
        Predictor::Knn,
        Predictor::SimilarityEpoch1,
        Predictor::BalancedAccuracyEpoch1,
        Predictor::EceEpoch1,
    ];

    /// Its name in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Predictor::Score(s) => s.name(),
            Predictor::LinearProbe => "linear_probe",
            Predictor::Knn => "knn",
            Predictor::SimilarityEpoch1 => "similarity_epoch1",
            Predictor::BalancedAccuracyEpoch1 => "balanced_accuracy_epoch1",
            Predictor::EceEpoch1 => "ece_epoch1",
        }
    }

    pub fn parse(name: &str) -> Option<Predictor> {
        Predictor::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn kind(self) -> Kind {
        match self {
            Predictor::Score(_) | Predictor::LinearProbe | Predictor::Knn => Kind::Before,
            Predictor::SimilarityEpoch1
            | Predictor::BalancedAccuracyEpoch1
            | Predictor::EceEpoch1 => Kind::FirstEpoch,
        }
    }

    /// Whether a higher value predicts a better candidate: all but the
    /// ECE. (Similarity is read as the paper's claim would have it: more
    /// kept, better.)
    pub fn higher_is_better(self) -> bool {
        self != Predictor::EceEpoch1
    }
}

/// What a candidate's fine-tuning gave, the mean over its finished runs'
/// last epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    BalancedAccuracy,
    Ece,
    /// k-NN top-1 on the natural images before fine-tuning minus after.
    Forgetting,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::BalancedAccuracy, Outcome::Ece, Outcome::Forgetting];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::BalancedAccuracy => "balanced_accuracy",
            Outcome::Ece => "ece",
            Outcome::Forgetting => "forgetting",
        }
    }

    pub fn parse(name: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.name() == name)
    }

    pub fn higher_is_better(self) -> bool {
        self == Outcome::BalancedAccuracy
    }
}
