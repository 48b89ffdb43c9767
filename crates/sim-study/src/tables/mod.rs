//! The study tables (`<study>/tables/*.parquet`): their file names and
//! column names, each table's row type ([`rows`]) and how rows become a
//! Parquet file and come back ([`schema`]), in one place for the writer
//! (`sim-metrics study`) and the readers (`sim-plot`, the tests, anyone's
//! own scripts). What each column means, and its unit: docs/SPEC.md,
//! "Study tables".

pub mod rows;
pub mod schema;
pub mod selection;

/// File names, in `<study>/tables/`.
pub mod file {
    /// One row per run × epoch.
    pub const EPOCHS: &str = "epochs.parquet";
    /// One row per run × epoch × layer × token × probe.
    pub const LAYERS: &str = "layers.parquet";
    /// One row per run × epoch × layer (medical probe, CLS) × measure of
    /// `evaluation.similarity.measures`, with the measure's chance level.
    pub const SIMILARITY: &str = "similarity.parquet";
    /// One row per data set × backbone: means over its finished runs.
    pub const BACKBONES: &str = "backbones.parquet";
    /// One row per data set × backbone × calibration metric: Figure 5's fit.
    pub const FITS: &str = "fits.parquet";
    /// One row per finished run: the similarity space T_X(η, ε).
    pub const SPACE: &str = "space.parquet";
    /// One row per (pre-trained or finished run's final model) × confidence bin.
    pub const RELIABILITY: &str = "reliability.parquet";
    /// One row per model × attention image × patch: Figure 3's maps.
    pub const ATTENTION: &str = "attention.parquet";
    /// One row per data set × backbone × attention image: the pixels, u8 RGB rows.
    pub const ATTENTION_IMAGES: &str = "attention_images.parquet";
    /// One row per data set × pair of backbones: does one keep more
    /// similarity than the other (a permutation test over their runs)?
    pub const COMPARISONS: &str = "comparisons.parquet";
    /// One row per data set × backbone × pair of methods: does one keep
    /// more similarity than the other? Its first columns are `dataset`,
    /// `backbone` (no `method`: it compares them).
    pub const METHOD_COMPARISONS: &str = "method_comparisons.parquet";
    /// One row per finished run of a method with `wise_ft` × α (α = 1: the
    /// last epoch): the WiSE-FT path from θ₀ to θ_ft.
    pub const WISE_FT: &str = "wise_ft.parquet";
    /// One row per data set × backbone: what the pre-trained backbone
    /// knows before fine-tuning (k-NN on the natural images, a linear probe
    /// on the medical task) and, for a backbone the tool pre-trained, how
    /// (objective, epochs, time, final loss). Its first columns are
    /// `dataset`, `backbone` (no `method`: it is before fine-tuning).
    pub const PRETRAIN: &str = "pretrain.parquet";
    /// One row per data set × method × finding × measure × backbone (or,
    /// for finding 3, pair of backbones): the finding's estimate with its
    /// interval and the share of bootstrap resamples of the runs in which it
    /// holds, which the report's verdicts read.
    pub const VERDICTS: &str = "verdicts.parquet";
    /// One row per run × epoch × class of the medical data set: each
    /// class's sensitivity, specificity and one-vs-rest AUROC.
    pub const CLASSES: &str = "classes.parquet";
    /// One row per backbone the tool pre-trained × pre-training epoch: its
    /// learning curve. Its first columns are `backbone`, `objective` (no
    /// data set, no method: it is before both).
    pub const PRETRAIN_EPOCHS: &str = "pretrain_epochs.parquet";
    /// One row per data set × method × backbone (a candidate) × predictor
    /// (`selection::Predictor`): its value, and the candidate's final
    /// balanced accuracy, ECE and forgetting (means over finished runs).
    pub const SELECTION: &str = "selection.parquet";
    /// One row per data set × method × predictor × outcome: how well the
    /// predictor ranks the candidates (weighted Kendall τ, Pearson r, the
    /// regret of its pick), each with its bootstrap interval over seeds.
    pub const SELECTION_SUMMARY: &str = "selection_summary.parquet";
    /// Every table, in the order `sim-metrics study` writes them.
    pub const ALL: [&str; 18] = [
        EPOCHS,
        CLASSES,
        LAYERS,
        SIMILARITY,
        BACKBONES,
        FITS,
        SPACE,
        COMPARISONS,
        WISE_FT,
        RELIABILITY,
        ATTENTION,
        ATTENTION_IMAGES,
        VERDICTS,
        METHOD_COMPARISONS,
        PRETRAIN,
        PRETRAIN_EPOCHS,
        SELECTION,
        SELECTION_SUMMARY,
    ];
}

/// Column names.
pub mod col {
    /// The medical data set: the first column of every table.
    pub const DATASET: &str = "dataset";
    /// The fine-tuning method: the second column of every table.
    pub const METHOD: &str = "method";
    pub const BACKBONE: &str = "backbone";
    pub const SEED: &str = "seed";
    pub const EPOCH: &str = "epoch";
    /// WiSE-FT's α: the backbone (1 − α)θ₀ + αθ_ft.
    pub const ALPHA: &str = "alpha";
    /// A run's status: [`STATUS_FINISHED`], [`STATUS_FAILED`] or [`STATUS_UNFINISHED`].
    pub const STATUS: &str = "status";
    pub const ACCURACY: &str = "accuracy";
    pub const BALANCED_ACCURACY: &str = "balanced_accuracy";
    pub const MACRO_F1: &str = "macro_f1";
    /// Macro one-vs-rest AUROC of the softmax probabilities: the mean over
    /// the classes in the test split (in `classes.parquet`: the class's own).
    pub const AUROC: &str = "auroc";
    /// A class of the medical data set: its label (0-based) and its name in
    /// the split file.
    pub const CLASS: &str = "class";
    pub const CLASS_NAME: &str = "class_name";
    /// The test images of a class.
    pub const SUPPORT: &str = "support";
    /// TP / (TP + FN): the recall of a class; null where the test split has none of it.
    pub const SENSITIVITY: &str = "sensitivity";
    /// TN / (TN + FP); null where every test image is of the class.
    pub const SPECIFICITY: &str = "specificity";
    pub const ECE: &str = "ece";
    pub const MCE: &str = "mce";
    pub const ADAPTIVE_ECE: &str = "adaptive_ece";
    /// Negative log-likelihood of the test labels (nats).
    pub const NLL: &str = "nll";
    /// Multi-class Brier score, mean Σ_k (p_k − 1[k = y])², in [0, 2].
    pub const BRIER: &str = "brier";
    /// The temperature fitted on the validation split (null without one).
    pub const TEMPERATURE: &str = "temperature";
    /// The test-set measures after temperature scaling.
    pub const ECE_SCALED: &str = "ece_scaled";
    pub const MCE_SCALED: &str = "mce_scaled";
    pub const NLL_SCALED: &str = "nll_scaled";
    pub const BRIER_SCALED: &str = "brier_scaled";
    /// Whether a reliability bin is of the temperature-scaled logits.
    pub const TEMPERATURE_SCALED: &str = "temperature_scaled";
    pub const SIMILARITY: &str = "similarity";
    pub const KNN_TOP1: &str = "knn_top1";
    pub const LAYER: &str = "layer";
    pub const IS_FINAL: &str = "is_final";
    pub const TOKEN: &str = "token";
    pub const PROBE: &str = "probe";
    pub const CKA: &str = "cka";
    pub const CKA_DEBIASED: &str = "cka_debiased";
    pub const RUNS: &str = "runs";
    pub const RUNS_LEFT_OUT: &str = "runs_left_out";
    pub const LEFT_OUT: &str = "left_out";
    pub const KNN_BEFORE: &str = "knn_before";
    pub const KNN_AFTER: &str = "knn_after";
    pub const METRIC: &str = "metric";
    pub const SLOPE: &str = "slope";
    pub const INTERCEPT: &str = "intercept";
    pub const R: &str = "r";
    pub const R2: &str = "r2";
    pub const SLOPE_CI_LOW: &str = "slope_ci_low";
    pub const SLOPE_CI_HIGH: &str = "slope_ci_high";
    pub const PEARSON_RAW: &str = "pearson_raw";
    pub const SPEARMAN_RAW: &str = "spearman_raw";
    pub const N_POINTS: &str = "n_points";
    pub const N_LEVELS: &str = "n_levels";
    /// A fit's status: `ok`, or why no fit could be made.
    pub const FIT_STATUS: &str = "status";
    pub const DIVERGENCE: &str = "divergence";
    pub const REFERENCE_SEED: &str = "reference_seed";
    pub const IN_SPACE: &str = "in_space";
    pub const BIN: &str = "bin";
    pub const BIN_LOW: &str = "bin_low";
    pub const BIN_HIGH: &str = "bin_high";
    pub const COUNT: &str = "count";
    pub const CONFIDENCE: &str = "confidence";
    pub const IMAGE: &str = "image";
    pub const IMAGE_ID: &str = "image_id";
    pub const ROW: &str = "row";
    pub const COLUMN: &str = "column";
    pub const ATTENTION: &str = "attention";
    pub const PATCH_NORM: &str = "patch_norm";
    pub const SIZE: &str = "size";
    pub const PIXELS: &str = "pixels";

    pub const SIMILARITY_CI_LOW: &str = "similarity_ci_low";
    pub const SIMILARITY_CI_HIGH: &str = "similarity_ci_high";
    pub const BACKBONE_A: &str = "backbone_a";
    pub const BACKBONE_B: &str = "backbone_b";
    pub const METHOD_A: &str = "method_a";
    pub const METHOD_B: &str = "method_b";
    pub const RUNS_A: &str = "runs_a";
    pub const RUNS_B: &str = "runs_b";
    pub const SIMILARITY_A: &str = "similarity_a";
    pub const SIMILARITY_B: &str = "similarity_b";
    pub const DIFFERENCE: &str = "difference";
    pub const P_VALUE: &str = "p_value";
    pub const EXACT: &str = "exact";
    pub const PERMUTATIONS: &str = "permutations";

    /// How the backbone was pre-trained: `supervised`, `dino`, `none`
    /// (random initialisation) for the tool's own, `checkpoint` for a file.
    pub const OBJECTIVE: &str = "objective";
    pub const PRETRAIN_EPOCHS: &str = "pretrain_epochs";
    pub const PRETRAIN_MINUTES: &str = "pretrain_minutes";
    pub const PRETRAIN_IMAGES_PER_S: &str = "pretrain_images_per_s";
    /// The last pre-training epoch's mean loss.
    pub const PRETRAIN_LOSS: &str = "pretrain_loss";
    /// Linear probe (frozen epoch-0 features, medical train split) scored on the test split.
    pub const PROBE_BALANCED_ACCURACY: &str = "probe_balanced_accuracy";
    pub const PROBE_ACCURACY: &str = "probe_accuracy";
    /// The seconds a pre-training epoch's steps took.
    pub const SECONDS: &str = "seconds";
    /// DINO: the teacher output's mean per-image entropy (nats).
    pub const TEACHER_ENTROPY: &str = "teacher_entropy";
    /// DINO: exp of the entropy of the teacher's batch-mean output, the
    /// prototypes a batch is spread over (the last epoch's in
    /// `pretrain.parquet`).
    pub const EFFECTIVE_PROTOTYPES: &str = "effective_prototypes";
    /// Value of `objective` for a backbone read from a checkpoint file.
    pub const OBJECTIVE_CHECKPOINT: &str = "checkpoint";

    /// Whose head scored an evaluation's accuracy and calibration: the
    /// run's fine-tuned one; at epoch 0, a linear probe fitted on the frozen
    /// features of the medical train split (`probe`), or, in an epoch 0 made
    /// before those features were kept, the head drawn from the split seed
    /// (`random`).
    pub const HEAD: &str = "head";
    pub const HEAD_FINE_TUNED: &str = "fine-tuned";
    pub const HEAD_PROBE: &str = "probe";
    pub const HEAD_RANDOM: &str = "random";

    /// The points a fit of `fits.parquet` is made from: the fine-tuned
    /// epochs (`fine-tuned epochs`, the default of Figure 5 and finding 2),
    /// or those and epoch 0 with its head (`with epoch 0`).
    pub const POINTS: &str = "points";
    pub const POINTS_FINE_TUNED: &str = "fine-tuned epochs";
    pub const POINTS_WITH_EPOCH0: &str = "with epoch 0";

    /// The paper's finding a verdict row is about: 1 (runs inside
    /// T_X(η, ε) besides θ*), 2 (ECE linear in similarity), 3 (supervised
    /// forgets less k-NN top-1 than self-supervised).
    pub const FINDING: &str = "finding";
    /// The similarity measure of a row (`Measure::name`: `cka`, `svcca`, …);
    /// in a verdict row, or for finding 3, [`KNN_TOP1`].
    pub const MEASURE: &str = "measure";
    /// A measure's value (Procrustes: a distance, 0 = the same shape).
    pub const VALUE: &str = "value";
    /// The measure between the pre-trained features and themselves with
    /// the test images permuted: its mean over the permutations, and the
    /// bound 95 % of them stay below (above, for a distance).
    pub const NULL_MEAN: &str = "null_mean";
    pub const NULL_Q95: &str = "null_q95";
    /// Whether the value is more similar than [`NULL_Q95`].
    pub const ABOVE_CHANCE: &str = "above_chance";
    /// Finding 3's self-supervised backbone (`backbone` is the supervised
    /// one); null for findings 1 and 2.
    pub const VERSUS: &str = "versus";
    /// Finding 1: runs besides θ* inside T_X; finding 2: the fit's slope
    /// (ECE per unit similarity); finding 3: the self-supervised backbone's
    /// mean k-NN top-1 drop minus the supervised one's (fraction, not points).
    pub const ESTIMATE: &str = "estimate";
    /// The estimate's 95 % bootstrap interval over resamples of the runs.
    pub const ESTIMATE_CI_LOW: &str = "estimate_ci_low";
    pub const ESTIMATE_CI_HIGH: &str = "estimate_ci_high";
    /// The share of resamples of the runs in which the finding holds.
    pub const SHARE: &str = "share";
    pub const RESAMPLES: &str = "resamples";

    /// A model-selection predictor (`selection::Predictor::name`), when it
    /// is known (`selection::Kind::name`), and an outcome (`selection::Outcome::name`).
    pub const PREDICTOR: &str = "predictor";
    pub const PREDICTOR_KIND: &str = "kind";
    pub const OUTCOME: &str = "outcome";
    /// A candidate's final mean k-NN top-1 drop on the natural images (fraction).
    pub const FORGETTING: &str = "forgetting";
    /// Candidates a predictor was judged on.
    pub const CANDIDATES: &str = "candidates";
    /// Weighted Kendall τ (hyperbolic weights, scipy's `weightedtau`)
    /// between the predictor and the outcome, both oriented better-is-higher.
    pub const KENDALL_TAU: &str = "kendall_tau";
    pub const PEARSON_R: &str = "pearson_r";
    /// The outcome's gap between the best candidate and the predictor's pick.
    pub const REGRET: &str = "regret";
    /// The backbone the predictor ranks first.
    pub const PICK: &str = "pick";
    /// τ minus the linear probe's τ for the same outcome.
    pub const TAU_MINUS_PROBE: &str = "tau_minus_probe";
    /// Each one's 95 % bootstrap interval over resamples of the seeds.
    pub const KENDALL_TAU_CI_LOW: &str = "kendall_tau_ci_low";
    pub const KENDALL_TAU_CI_HIGH: &str = "kendall_tau_ci_high";
    pub const PEARSON_R_CI_LOW: &str = "pearson_r_ci_low";
    pub const PEARSON_R_CI_HIGH: &str = "pearson_r_ci_high";
    pub const REGRET_CI_LOW: &str = "regret_ci_low";
    pub const REGRET_CI_HIGH: &str = "regret_ci_high";
    pub const TAU_MINUS_PROBE_CI_LOW: &str = "tau_minus_probe_ci_low";
    pub const TAU_MINUS_PROBE_CI_HIGH: &str = "tau_minus_probe_ci_high";

    pub const STATUS_FINISHED: &str = "finished";
    pub const STATUS_FAILED: &str = "failed";
    pub const STATUS_UNFINISHED: &str = "unfinished";

    /// `knn_top1_k<k>`: k-NN top-1 with k neighbours.
    pub fn knn_top1_at(k: usize) -> String {
        format!("{KNN_TOP1}_k{k}")
    }

    /// The k of a `knn_top1_k<k>` column name; none for any other name.
    pub fn knn_top1_k_of(name: &str) -> Option<usize> {
        name.strip_prefix(KNN_TOP1)?
            .strip_prefix("_k")?
            .parse()
            .ok()
    }

    /// `<metric>_mean`, a mean over finished runs in the backbones table.
    pub fn mean(metric: &str) -> String {
        format!("{metric}_mean")
    }

    /// `<metric>_std`, the sample standard deviation beside it.
    pub fn std(metric: &str) -> String {
        format!("{metric}_std")
    }

    /// `<metric>_ci_low` and `<metric>_ci_high`: the mean's 95 % bootstrap
    /// interval over the runs (resampling seeds).
    pub fn ci(metric: &str) -> [String; 2] {
        [format!("{metric}_ci_low"), format!("{metric}_ci_high")]
    }
}
