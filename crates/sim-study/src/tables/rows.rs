//! Every study table's row type: one struct per table, its fields the
//! table's columns in order (what each means: docs/SPEC.md, "Study tables").
//! `sim-metrics study` writes these rows and `sim-plot` reads them, through
//! [`super::schema`]; adding a column is one field here plus its computation.

use super::col;
use super::file;
use super::schema::{Cell, Field, Shape, Spread, column, columns, table};
use polars::prelude::{Column, DataFrame};

columns! {
    /// A fine-tuned model's scores on the medical test split, as
    /// `epochs.parquet` and `wise_ft.parquet` both report them.
    pub struct TestScores {
        accuracy: f64 = col::ACCURACY,
        balanced_accuracy: f64 = col::BALANCED_ACCURACY,
        macro_f1: f64 = col::MACRO_F1,
        /// None where no class has both positives and negatives in the test split.
        auroc: Option<f64> = col::AUROC,
        ece: f64 = col::ECE,
        mce: f64 = col::MCE,
        adaptive_ece: f64 = col::ADAPTIVE_ECE,
    }
}

columns! {
    /// What a fine-tuned model kept of its pre-training, as `epochs.parquet`
    /// and `wise_ft.parquet` both report it: its similarity to the
    /// pre-trained model and its k-NN top-1 on the natural images.
    pub struct Kept {
        similarity: f64 = col::SIMILARITY,
        /// At `evaluation.knn_report_k`; none for an epoch whose evaluation
        /// left the natural images out (`evaluation.natural_every_epoch`).
        knn_top1: Option<f64> = col::KNN_TOP1,
        /// At every k of `evaluation.knn_k`.
        knn_top1_k: KnnByK = Spread,
    }
}

table! {
    /// `epochs.parquet`: one row per run × epoch (epoch 0: the pre-trained model).
    pub struct EpochRow in file::EPOCHS {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        backbone: String = col::BACKBONE,
        seed: u64 = col::SEED,
        epoch: u32 = col::EPOCH,
        /// The run's status ([`RunStatus`] as text).
        status: String = col::STATUS,
        /// Whose head scored accuracy and calibration (`col::HEAD_*`).
        head: String = col::HEAD,
        scores: TestScores = Spread,
        nll: f64 = col::NLL,
        brier: f64 = col::BRIER,
        /// Temperature scaling, fitted on the validation split; all none
        /// where the data set has none.
        temperature: Option<f64> = col::TEMPERATURE,
        ece_scaled: Option<f64> = col::ECE_SCALED,
        mce_scaled: Option<f64> = col::MCE_SCALED,
        nll_scaled: Option<f64> = col::NLL_SCALED,
        brier_scaled: Option<f64> = col::BRIER_SCALED,
        kept: Kept = Spread,
    }
}

impl EpochRow {
    /// Whether its run finished.
    pub fn finished(&self) -> bool {
        self.status == col::STATUS_FINISHED
    }
}

table! {
    /// `classes.parquet`: one row per run × epoch × class, scored by the
    /// same head as its `epochs.parquet` row (epoch 0: the linear probe).
    pub struct ClassRow in file::CLASSES {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        backbone: String = col::BACKBONE,
        seed: u64 = col::SEED,
        epoch: u32 = col::EPOCH,
        head: String = col::HEAD,
        class: u32 = col::CLASS,
        class_name: String = col::CLASS_NAME,
        support: u32 = col::SUPPORT,
        sensitivity: Option<f64> = col::SENSITIVITY,
        specificity: Option<f64> = col::SPECIFICITY,
        auroc: Option<f64> = col::AUROC,
    }
}

table! {
    /// `wise_ft.parquet`: one row per finished run of a method with
    /// `wise_ft` × α (α = 1: the last epoch itself).
    pub struct WiseFtRow in file::WISE_FT {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        backbone: String = col::BACKBONE,
        seed: u64 = col::SEED,
        alpha: f64 = col::ALPHA,
        scores: TestScores = Spread,
        kept: Kept = Spread,
    }
}

table! {
    /// `layers.parquet`: one row per run × epoch × layer × token × probe set.
    pub struct LayerRow in file::LAYERS {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        backbone: String = col::BACKBONE,
        seed: u64 = col::SEED,
        epoch: u32 = col::EPOCH,
        /// The final norm is numbered after the last block.
        layer: u32 = col::LAYER,
        is_final: bool = col::IS_FINAL,
        /// `cls` or `patch_mean`.
        token: String = col::TOKEN,
        /// `medical` or `natural`.
        probe: String = col::PROBE,
        cka: f64 = col::CKA,
        cka_debiased: f64 = col::CKA_DEBIASED,
    }
}

table! {
    /// `similarity.parquet`: one row per run × epoch × layer × measure, on
    /// the medical probe's CLS token (epoch 0 is the pre-trained model).
    pub struct SimilarityRow in file::SIMILARITY {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        backbone: String = col::BACKBONE,
        seed: u64 = col::SEED,
        epoch: u32 = col::EPOCH,
        /// The final norm is numbered after the last block.
        layer: u32 = col::LAYER,
        is_final: bool = col::IS_FINAL,
        /// `Measure::name`.
        measure: String = col::MEASURE,
        value: f64 = col::VALUE,
        /// None where `null_resamples = 0`.
        null_mean: Option<f64> = col::NULL_MEAN,
        null_q95: Option<f64> = col::NULL_Q95,
        above_chance: Option<bool> = col::ABOVE_CHANCE,
    }
}

table! {
    /// `backbones.parquet`: one row per data set × method × backbone, Table 1's numbers.
    pub struct BackboneRow in file::BACKBONES {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        backbone: String = col::BACKBONE,
        /// Finished runs, which the summaries are over.
        runs: u32 = col::RUNS,
        runs_left_out: u32 = col::RUNS_LEFT_OUT,
        /// Which runs were left out and why (`seed 3: failed after epoch 1: …`).
        left_out: String = col::LEFT_OUT,
        /// One per [`Table1Metric::ALL`], in its order.
        stats: Table1Stats = Spread,
    }
}

impl BackboneRow {
    /// The summary of `metric`.
    pub fn stat(&self, metric: Table1Metric) -> Summary {
        let i = Table1Metric::ALL.iter().position(|m| *m == metric);
        i.and_then(|i| self.stats.0.get(i))
            .copied()
            .unwrap_or_default()
    }
}

/// A metric of Table 1 (`backbones.parquet`): each finished run's value at
/// its last epoch (k-NN also before fine-tuning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table1Metric {
    Accuracy,
    BalancedAccuracy,
    MacroF1,
    Auroc,
    Ece,
    Similarity,
    KnnBefore,
    KnnAfter,
}

impl Table1Metric {
    /// Every one, in the order of `backbones.parquet`'s columns.
    pub const ALL: [Table1Metric; 8] = [
        Table1Metric::Accuracy,
        Table1Metric::BalancedAccuracy,
        Table1Metric::MacroF1,
        Table1Metric::Auroc,
        Table1Metric::Ece,
        Table1Metric::Similarity,
        Table1Metric::KnnBefore,
        Table1Metric::KnnAfter,
    ];

    /// Its name, the stem of its columns (`accuracy_mean`, …).
    pub fn name(self) -> &'static str {
        match self {
            Table1Metric::Accuracy => col::ACCURACY,
            Table1Metric::BalancedAccuracy => col::BALANCED_ACCURACY,
            Table1Metric::MacroF1 => col::MACRO_F1,
            Table1Metric::Auroc => col::AUROC,
            Table1Metric::Ece => col::ECE,
            Table1Metric::Similarity => col::SIMILARITY,
            Table1Metric::KnnBefore => col::KNN_BEFORE,
            Table1Metric::KnnAfter => col::KNN_AFTER,
        }
    }
}

/// One metric of Table 1 over a backbone's finished runs: the mean, the
/// sample standard deviation and the mean's 95 % bootstrap interval over
/// the runs (all none without a finished run).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

impl Summary {
    pub fn ci(&self) -> Option<(f64, f64)> {
        self.ci_low.zip(self.ci_high)
    }
}

/// Table 1's summaries of one backbone, one per [`Table1Metric::ALL`]: the
/// columns `<metric>_mean`, `_std`, `_ci_low`, `_ci_high` per metric.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table1Stats(pub Vec<Summary>);

impl Field for Table1Stats {
    type Name = Spread;
    fn columns(_: Spread, values: Vec<&Self>, _: &Shape) -> Vec<Column> {
        let mut columns = Vec::new();
        for (i, metric) in Table1Metric::ALL.iter().map(|m| m.name()).enumerate() {
            let part = |get: fn(&Summary) -> Option<f64>| -> Vec<Option<f64>> {
                values.iter().map(|v| v.0.get(i).and_then(get)).collect()
            };
            let [low, high] = col::ci(metric);
            columns.push(Cell::column(&col::mean(metric), part(|s| s.mean)));
            columns.push(Cell::column(&col::std(metric), part(|s| s.std)));
            columns.push(Cell::column(&low, part(|s| s.ci_low)));
            columns.push(Cell::column(&high, part(|s| s.ci_high)));
        }
        columns
    }

    fn read(_: Spread, frame: &DataFrame) -> Result<Vec<Self>, String> {
        let mut stats = vec![Table1Stats::default(); frame.height()];
        for metric in Table1Metric::ALL.map(Table1Metric::name) {
            let [low, high] = col::ci(metric);
            let read = |name: &str| -> Result<Vec<Option<f64>>, String> {
                Cell::read(column(frame, name)?)
            };
            let (mean, std) = (read(&col::mean(metric))?, read(&col::std(metric))?);
            let (low, high) = (read(&low)?, read(&high)?);
            for (i, s) in stats.iter_mut().enumerate() {
                s.0.push(Summary {
                    mean: mean[i],
                    std: std[i],
                    ci_low: low[i],
                    ci_high: high[i],
                });
            }
        }
        Ok(stats)
    }
}

/// k-NN top-1 at each k of `evaluation.knn_k`: the columns `knn_top1_k<k>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KnnByK(pub Vec<(usize, Option<f64>)>);

impl KnnByK {
    /// The value at `k`, if measured.
    pub fn at(&self, k: usize) -> Option<f64> {
        self.0.iter().find(|(at, _)| *at == k).and_then(|(_, v)| *v)
    }
}

impl Field for KnnByK {
    type Name = Spread;
    fn columns(_: Spread, values: Vec<&Self>, shape: &Shape) -> Vec<Column> {
        shape
            .knn_k
            .iter()
            .map(|&k| {
                let at: Vec<Option<f64>> = values.iter().map(|v| v.at(k)).collect();
                Cell::column(&col::knn_top1_at(k), at)
            })
            .collect()
    }

    fn read(_: Spread, frame: &DataFrame) -> Result<Vec<Self>, String> {
        let mut rows = vec![KnnByK::default(); frame.height()];
        for c in frame.columns() {
            let Some(k) = col::knn_top1_k_of(c.name()) else {
                continue;
            };
            let values: Vec<Option<f64>> = Cell::read(c)?;
            for (row, v) in rows.iter_mut().zip(values) {
                row.0.push((k, v));
            }
        }
        Ok(rows)
    }
}

table! {
    /// `fits.parquet`: one row per data set × method × backbone ×
    /// calibration metric × points: Figure 5's fit.
    pub struct FitRow in file::FITS {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        backbone: String = col::BACKBONE,
        /// `ece`, `mce` or `adaptive_ece`.
        metric: String = col::METRIC,
        /// `col::POINTS_FINE_TUNED` or `col::POINTS_WITH_EPOCH0`.
        points: String = col::POINTS,
        slope: Option<f64> = col::SLOPE,
        intercept: Option<f64> = col::INTERCEPT,
        r: Option<f64> = col::R,
        r2: Option<f64> = col::R2,
        slope_ci_low: Option<f64> = col::SLOPE_CI_LOW,
        slope_ci_high: Option<f64> = col::SLOPE_CI_HIGH,
        pearson_raw: Option<f64> = col::PEARSON_RAW,
        spearman_raw: Option<f64> = col::SPEARMAN_RAW,
        n_points: u32 = col::N_POINTS,
        n_levels: u32 = col::N_LEVELS,
        /// `ok`, or why no fit could be made.
        status: String = col::FIT_STATUS,
    }
}

impl FitRow {
    pub fn slope_ci(&self) -> Option<(f64, f64)> {
        self.slope_ci_low.zip(self.slope_ci_high)
    }
}

table! {
    /// `space.parquet`: one row per finished run, in the similarity space T_X(η, ε).
    pub struct SpaceRow in file::SPACE {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        backbone: String = col::BACKBONE,
        seed: u64 = col::SEED,
        similarity: f64 = col::SIMILARITY,
        /// Its 95 % bootstrap interval over the test images.
        similarity_ci_low: Option<f64> = col::SIMILARITY_CI_LOW,
        similarity_ci_high: Option<f64> = col::SIMILARITY_CI_HIGH,
        accuracy: f64 = col::ACCURACY,
        divergence: f64 = col::DIVERGENCE,
        reference_seed: u64 = col::REFERENCE_SEED,
        in_space: bool = col::IN_SPACE,
    }
}

impl SpaceRow {
    pub fn similarity_ci(&self) -> Option<(f64, f64)> {
        self.similarity_ci_low.zip(self.similarity_ci_high)
    }
}

table! {
    /// `comparisons.parquet`: one row per data set × method × pair of
    /// backbones: does `backbone_a` (the higher mean) keep more similarity?
    pub struct ComparisonRow in file::COMPARISONS {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        backbone_a: String = col::BACKBONE_A,
        backbone_b: String = col::BACKBONE_B,
        runs_a: u32 = col::RUNS_A,
        runs_b: u32 = col::RUNS_B,
        similarity_a: f64 = col::SIMILARITY_A,
        similarity_b: f64 = col::SIMILARITY_B,
        difference: f64 = col::DIFFERENCE,
        p_value: f64 = col::P_VALUE,
        exact: bool = col::EXACT,
        permutations: u64 = col::PERMUTATIONS,
    }
}

table! {
    /// `method_comparisons.parquet`: one row per data set × backbone × pair
    /// of methods: does `method_a` (the higher mean) keep more similarity?
    pub struct MethodComparisonRow in file::METHOD_COMPARISONS {
        dataset: String = col::DATASET,
        backbone: String = col::BACKBONE,
        method_a: String = col::METHOD_A,
        method_b: String = col::METHOD_B,
        runs_a: u32 = col::RUNS_A,
        runs_b: u32 = col::RUNS_B,
        similarity_a: f64 = col::SIMILARITY_A,
        similarity_b: f64 = col::SIMILARITY_B,
        difference: f64 = col::DIFFERENCE,
        p_value: f64 = col::P_VALUE,
        exact: bool = col::EXACT,
        permutations: u64 = col::PERMUTATIONS,
    }
}

table! {
    /// `verdicts.parquet`: one finding under one measure for one backbone
    /// (finding 3: a supervised backbone `versus` a self-supervised one).
    pub struct VerdictRow in file::VERDICTS {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        finding: u32 = col::FINDING,
        /// A measure's name (`cka`, `svcca`, …) or (finding 3) `knn_top1`.
        measure: String = col::MEASURE,
        token: String = col::TOKEN,
        backbone: String = col::BACKBONE,
        versus: Option<String> = col::VERSUS,
        estimate: f64 = col::ESTIMATE,
        estimate_ci_low: Option<f64> = col::ESTIMATE_CI_LOW,
        estimate_ci_high: Option<f64> = col::ESTIMATE_CI_HIGH,
        /// The share of resamples of the runs in which the finding holds.
        share: f64 = col::SHARE,
        resamples: u32 = col::RESAMPLES,
    }
}

impl VerdictRow {
    pub fn estimate_ci(&self) -> Option<(f64, f64)> {
        self.estimate_ci_low.zip(self.estimate_ci_high)
    }
}

table! {
    /// `pretrain.parquet`: one row per data set × backbone: what it knows
    /// before fine-tuning and, for one the tool pre-trained, how it was made.
    pub struct PretrainRow in file::PRETRAIN {
        dataset: String = col::DATASET,
        backbone: String = col::BACKBONE,
        /// `supervised`, `dino`, `none`, or `checkpoint` for a file.
        objective: String = col::OBJECTIVE,
        epochs: Option<u32> = col::PRETRAIN_EPOCHS,
        minutes: Option<f64> = col::PRETRAIN_MINUTES,
        images_per_s: Option<f64> = col::PRETRAIN_IMAGES_PER_S,
        loss: Option<f64> = col::PRETRAIN_LOSS,
        knn_top1: f64 = col::KNN_TOP1,
        probe_balanced_accuracy: Option<f64> = col::PROBE_BALANCED_ACCURACY,
        probe_accuracy: Option<f64> = col::PROBE_ACCURACY,
        /// DINO: the prototypes in use in the last pre-training epoch.
        effective_prototypes: Option<f64> = col::EFFECTIVE_PROTOTYPES,
    }
}

table! {
    /// `pretrain_epochs.parquet`: one epoch of a backbone the tool pre-trained.
    pub struct PretrainEpochRow in file::PRETRAIN_EPOCHS {
        backbone: String = col::BACKBONE,
        objective: String = col::OBJECTIVE,
        epoch: u32 = col::EPOCH,
        loss: f64 = col::PRETRAIN_LOSS,
        seconds: f64 = col::SECONDS,
        teacher_entropy: Option<f64> = col::TEACHER_ENTROPY,
        /// DINO: the prototypes the teacher spreads a batch over.
        effective_prototypes: Option<f64> = col::EFFECTIVE_PROTOTYPES,
        /// Measured every `pretrain.knn_every` epochs and at the last.
        knn_top1: Option<f64> = col::KNN_TOP1,
    }
}

table! {
    /// `reliability.parquet`: one row per model × confidence bin (the
    /// pre-trained model: seed none, epoch 0), before temperature scaling
    /// and, where the data set has a validation split, after it.
    pub struct BinRow in file::RELIABILITY {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        backbone: String = col::BACKBONE,
        seed: Option<u64> = col::SEED,
        epoch: u32 = col::EPOCH,
        /// The bins of the logits divided by the fitted temperature.
        temperature_scaled: bool = col::TEMPERATURE_SCALED,
        bin: u32 = col::BIN,
        low: f64 = col::BIN_LOW,
        high: f64 = col::BIN_HIGH,
        count: u32 = col::COUNT,
        /// None for an empty bin.
        accuracy: Option<f64> = col::ACCURACY,
        confidence: Option<f64> = col::CONFIDENCE,
    }
}

table! {
    /// `attention.parquet`: one row per model × attention image × patch.
    pub struct PatchRow in file::ATTENTION {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        backbone: String = col::BACKBONE,
        seed: Option<u64> = col::SEED,
        epoch: u32 = col::EPOCH,
        image: u32 = col::IMAGE,
        image_id: String = col::IMAGE_ID,
        row: u32 = col::ROW,
        column: u32 = col::COLUMN,
        /// The last block's CLS-to-patch attention, mean over heads.
        attention: f64 = col::ATTENTION,
        patch_norm: f64 = col::PATCH_NORM,
    }
}

table! {
    /// `attention_images.parquet`: one row per data set × method ×
    /// backbone × attention image: its pixels, u8 RGB rows.
    pub struct ImageRow in file::ATTENTION_IMAGES {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        backbone: String = col::BACKBONE,
        image: u32 = col::IMAGE,
        image_id: String = col::IMAGE_ID,
        size: u32 = col::SIZE,
        pixels: Vec<u8> = col::PIXELS,
    }
}

table! {
    /// `selection.parquet`: one row per candidate (data set × method ×
    /// backbone) × predictor it has a value of (`selection::Predictor`).
    pub struct SelectionRow in file::SELECTION {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        backbone: String = col::BACKBONE,
        predictor: String = col::PREDICTOR,
        /// `selection::Kind::name`.
        kind: String = col::PREDICTOR_KIND,
        /// Epoch-1 predictors: the mean over the finished runs.
        value: f64 = col::VALUE,
        /// Finished runs, whose last epochs the outcomes are means over.
        runs: u32 = col::RUNS,
        balanced_accuracy: f64 = col::BALANCED_ACCURACY,
        ece: f64 = col::ECE,
        /// None where a run has no k-NN before or after.
        forgetting: Option<f64> = col::FORGETTING,
    }
}

table! {
    /// `selection_summary.parquet`: one row per data set × method ×
    /// predictor × outcome: how the predictor ranks the candidates against
    /// the outcome, both oriented better-is-higher. Intervals: 95 %
    /// bootstrap over resamples of the seeds; none where a resample leaves
    /// fewer than 3 candidates.
    pub struct SelectionSummaryRow in file::SELECTION_SUMMARY {
        dataset: String = col::DATASET,
        method: String = col::METHOD,
        predictor: String = col::PREDICTOR,
        kind: String = col::PREDICTOR_KIND,
        outcome: String = col::OUTCOME,
        candidates: u32 = col::CANDIDATES,
        kendall_tau: f64 = col::KENDALL_TAU,
        kendall_tau_ci_low: Option<f64> = col::KENDALL_TAU_CI_LOW,
        kendall_tau_ci_high: Option<f64> = col::KENDALL_TAU_CI_HIGH,
        /// None where the predictor is the same for every candidate.
        pearson_r: Option<f64> = col::PEARSON_R,
        pearson_r_ci_low: Option<f64> = col::PEARSON_R_CI_LOW,
        pearson_r_ci_high: Option<f64> = col::PEARSON_R_CI_HIGH,
        /// In the outcome's unit, ≥ 0.
        regret: f64 = col::REGRET,
        regret_ci_low: Option<f64> = col::REGRET_CI_LOW,
        regret_ci_high: Option<f64> = col::REGRET_CI_HIGH,
        pick: String = col::PICK,
        /// None for the linear probe itself.
        tau_minus_probe: Option<f64> = col::TAU_MINUS_PROBE,
        tau_minus_probe_ci_low: Option<f64> = col::TAU_MINUS_PROBE_CI_LOW,
        tau_minus_probe_ci_high: Option<f64> = col::TAU_MINUS_PROBE_CI_HIGH,
    }
}
