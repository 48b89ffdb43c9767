//! A study as the figures see it: its tables (`<study>/tables/*.parquet`, in
//! the names of `sim_study::tables`) read into typed rows, and its resolved
//! config (`study.toml`: the backbones' order and families, η, ε, the fit's
//! levels). Nothing of the training state is read.

use anyhow::{Context, bail};
use polars::prelude::{Column, DataFrame, ParquetReader, SerReader};
use sim_study::StudyDir;
use sim_study::config::StudyConfig;
use sim_study::tables::{col, file};
use std::path::{Path, PathBuf};

/// One (medical data set, method) of a study, and which of the two its
/// names show (those the study has several of).
#[derive(Debug, Clone, PartialEq)]
pub struct Facet {
    pub dataset: String,
    pub method: String,
    pub show_dataset: bool,
    pub show_method: bool,
}

impl Facet {
    /// How text names it: `ham10000`, `lp-ft` or `ham10000 / lp-ft`.
    pub fn label(&self) -> String {
        match (self.show_dataset, self.show_method) {
            (true, true) => format!("{} / {}", self.dataset, self.method),
            (false, true) => self.method.clone(),
            _ => self.dataset.clone(),
        }
    }

    /// A figure panel's title.
    pub fn title(&self) -> String {
        match (self.show_dataset, self.show_method) {
            (true, true) => format!(
                "medical data set: {} · method: {}",
                self.dataset, self.method
            ),
            (false, true) => format!("method: {}", self.method),
            _ => format!("medical data set: {}", self.dataset),
        }
    }

    /// Its part of a file name: `ham10000`, `lp-ft`, `ham10000_lp-ft`.
    pub fn file_tag(&self) -> String {
        self.label().replace(" / ", "_")
    }
}

/// `epochs.parquet`: one row per run × epoch.
#[derive(Debug, Clone)]
pub struct EpochRow {
    pub dataset: String,
    pub method: String,
    pub backbone: String,
    pub seed: u64,
    pub epoch: u32,
    pub finished: bool,
    /// Whose head scored accuracy and calibration (`col::HEAD_*`): at epoch
    /// 0 a linear probe's (or, in tables of an earlier version, a random one).
    pub head: String,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub ece: f64,
    pub similarity: f64,
    /// None for an epoch whose evaluation left the natural images out
    /// (`evaluation.natural_every_epoch = false`): not epoch 0 nor the last.
    pub knn_top1: Option<f64>,
}

/// `wise_ft.parquet`: one row per finished run × WiSE-FT α (α = 1: the last epoch).
#[derive(Debug, Clone)]
pub struct WiseFtRow {
    pub dataset: String,
    pub method: String,
    pub backbone: String,
    pub seed: u64,
    pub alpha: f64,
    pub accuracy: f64,
    pub ece: f64,
    pub similarity: f64,
    pub knn_top1: f64,
}

/// The mean over runs of one backbone's WiSE-FT backbones at one α.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WiseFtMean {
    pub alpha: f64,
    pub similarity: f64,
    pub accuracy: f64,
    pub ece: f64,
    pub knn_top1: f64,
    pub runs: usize,
}

/// `layers.parquet` (medical probe only): one row per run × epoch × layer × token.
#[derive(Debug, Clone)]
pub struct LayerRow {
    pub dataset: String,
    pub method: String,
    pub backbone: String,
    pub seed: u64,
    pub epoch: u32,
    pub layer: u32,
    pub is_final: bool,
    pub cls: bool,
    pub cka: f64,
}

/// `backbones.parquet`.
#[derive(Debug, Clone)]
pub struct SummaryRow {
    pub dataset: String,
    pub method: String,
    pub backbone: String,
    pub runs: u32,
    pub runs_left_out: u32,
    pub left_out: String,
    /// The metrics of Table 1 over the finished runs.
    pub stats: Vec<Summary>,
}

/// One metric of a summary row: mean, sample sd and the mean's 95 %
/// bootstrap interval over seeds (none without a finished run).
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub metric: &'static str,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub ci: Option<(f64, f64)>,
}

/// The metrics of Table 1, as `backbones.parquet` names them.
pub const SUMMARY_METRICS: [&str; 7] = [
    col::ACCURACY,
    col::BALANCED_ACCURACY,
    col::MACRO_F1,
    col::ECE,
    col::KNN_BEFORE,
    col::KNN_AFTER,
    col::SIMILARITY,
];

impl SummaryRow {
    pub fn stat(&self, metric: &str) -> Summary {
        self.stats
            .iter()
            .find(|s| s.metric == metric)
            .copied()
            .unwrap_or(Summary {
                metric: "",
                mean: None,
                std: None,
                ci: None,
            })
    }
}

/// `fits.parquet`.
#[derive(Debug, Clone)]
pub struct FitRow {
    pub dataset: String,
    pub method: String,
    pub backbone: String,
    pub metric: String,
    /// The points fitted: `col::POINTS_FINE_TUNED` or `col::POINTS_WITH_EPOCH0`.
    pub points: String,
    pub slope: Option<f64>,
    pub intercept: Option<f64>,
    pub r: Option<f64>,
    pub r2: Option<f64>,
    pub slope_ci: Option<(f64, f64)>,
    pub n_points: u32,
    pub n_levels: u32,
    pub status: String,
}

/// `space.parquet`: one row per finished run.
#[derive(Debug, Clone)]
pub struct SpaceRow {
    pub dataset: String,
    pub method: String,
    pub backbone: String,
    pub seed: u64,
    pub similarity: f64,
    /// Its 95 % bootstrap interval over the test images.
    pub similarity_ci: Option<(f64, f64)>,
    pub accuracy: f64,
    pub reference_seed: u64,
    pub in_space: bool,
}

/// A one-sided permutation test over runs' final similarities: does group
/// `a` (the higher mean) keep more similarity than group `b`?
#[derive(Debug, Clone)]
pub struct PermutationRow {
    pub a: String,
    pub b: String,
    pub runs_a: u32,
    pub runs_b: u32,
    pub similarity_a: f64,
    pub similarity_b: f64,
    pub p_value: f64,
    pub exact: bool,
    pub permutations: u64,
}

/// `comparisons.parquet`: backbone against backbone, per facet.
#[derive(Debug, Clone)]
pub struct ComparisonRow {
    pub dataset: String,
    pub method: String,
    pub test: PermutationRow,
}

/// `method_comparisons.parquet`: method against method, per data set and backbone.
#[derive(Debug, Clone)]
pub struct MethodComparisonRow {
    pub dataset: String,
    pub backbone: String,
    pub test: PermutationRow,
}

/// `pretrain.parquet`: what each backbone knows before fine-tuning, and how
/// the tool pre-trained it (the `pretrain_*` fields: none for a checkpoint).
#[derive(Debug, Clone)]
pub struct PretrainRow {
    pub dataset: String,
    pub backbone: String,
    pub objective: String,
    pub epochs: u32,
    pub minutes: Option<f64>,
    pub images_per_s: Option<f64>,
    pub loss: Option<f64>,
    pub knn_top1: f64,
    pub probe_balanced_accuracy: Option<f64>,
    /// DINO: the prototypes in use in the last pre-training epoch.
    pub effective_prototypes: Option<f64>,
}

/// `pretrain_epochs.parquet`: one epoch of a backbone the tool pre-trained.
#[derive(Debug, Clone)]
pub struct PretrainEpochRow {
    pub backbone: String,
    pub objective: String,
    pub epoch: u32,
    pub loss: f64,
    /// DINO: the prototypes the teacher spreads a batch over.
    pub effective_prototypes: Option<f64>,
    /// Where it was measured (every few epochs and the last).
    pub knn_top1: Option<f64>,
}

/// `verdicts.parquet`: one finding under one measure, for one backbone (or,
/// for finding 3, a supervised backbone `versus` a self-supervised one).
#[derive(Debug, Clone)]
pub struct VerdictRow {
    pub dataset: String,
    pub method: String,
    pub finding: u32,
    /// `col::CKA`, `col::CKA_DEBIASED` or (finding 3) `col::KNN_TOP1`.
    pub measure: String,
    pub token: String,
    pub backbone: String,
    pub versus: Option<String>,
    pub estimate: f64,
    pub estimate_ci: Option<(f64, f64)>,
    pub share: f64,
    pub resamples: u32,
}

/// `reliability.parquet`: one row per model × bin (seed none: pre-trained).
#[derive(Debug, Clone)]
pub struct BinRow {
    pub dataset: String,
    pub method: String,
    pub backbone: String,
    pub seed: Option<u64>,
    pub low: f64,
    pub high: f64,
    pub count: u32,
    pub accuracy: Option<f64>,
    pub confidence: Option<f64>,
}

/// `attention.parquet`: one row per model × image × patch.
#[derive(Debug, Clone)]
pub struct PatchRow {
    pub dataset: String,
    pub method: String,
    pub backbone: String,
    pub seed: Option<u64>,
    pub image: u32,
    pub row: u32,
    pub column: u32,
    pub attention: f64,
    pub patch_norm: f64,
}

/// `attention_images.parquet`.
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub dataset: String,
    pub method: String,
    pub backbone: String,
    pub image: u32,
    pub image_id: String,
    pub size: u32,
    pub pixels: Vec<u8>,
}

/// Everything the figures, tables and report read.
#[derive(Clone)]
pub struct Study {
    pub config: StudyConfig,
    /// The medical data sets and the methods in the config's order: the
    /// order of facets.
    pub datasets: Vec<String>,
    pub methods: Vec<String>,
    /// Backbone names in the config's order: the order of legends and colours.
    pub backbones: Vec<String>,
    pub epochs: Vec<EpochRow>,
    pub layers: Vec<LayerRow>,
    pub summaries: Vec<SummaryRow>,
    pub fits: Vec<FitRow>,
    pub space: Vec<SpaceRow>,
    /// `None` where the table is absent (a study made before it existed).
    pub comparisons: Option<Vec<ComparisonRow>>,
    /// Absent in tables made before methods were compared.
    pub method_comparisons: Option<Vec<MethodComparisonRow>>,
    /// Absent in tables made before WiSE-FT.
    pub wise_ft: Option<Vec<WiseFtRow>>,
    /// Absent in tables made before pre-training.
    pub pretrain: Option<Vec<PretrainRow>>,
    /// Absent in tables made before the learning curves were kept.
    pub pretrain_epochs: Option<Vec<PretrainEpochRow>>,
    /// Absent in tables made before verdicts had a certainty.
    pub verdicts: Option<Vec<VerdictRow>>,
    pub reliability: Option<Vec<BinRow>>,
    pub attention: Option<Vec<PatchRow>>,
    pub images: Option<Vec<ImageRow>>,
}

impl Study {
    pub fn read(dir: &Path) -> anyhow::Result<Study> {
        let study = StudyDir::new(dir);
        let config = study.read_config().map_err(anyhow::Error::msg)?;
        let tables = study.tables_dir();
        if !study.table(file::EPOCHS).exists() {
            bail!(
                "{}: no tables yet; run `sim-metrics study --study {}` first",
                tables.display(),
                dir.display()
            );
        }
        let table = |name: &str| Table::read(&study.table(name));
        // Tables of a version before data sets were an axis lack `dataset`.
        let epochs = table(file::EPOCHS)?;
        if epochs.frame.column(col::DATASET).is_err() {
            bail!(
                "{}: tables written by an earlier version (no `dataset` column); run `sim-metrics study --study {}` again",
                tables.display(),
                dir.display()
            );
        }
        let optional = |name: &str| -> anyhow::Result<Option<Table>> {
            let path = study.table(name);
            if path.exists() {
                Table::read(&path).map(Some)
            } else {
                Ok(None)
            }
        };
        Ok(Study {
            datasets: config
                .medical_names()
                .into_iter()
                .map(String::from)
                .collect(),
            methods: config.methods.iter().map(|m| m.name.clone()).collect(),
            backbones: config.backbones.iter().map(|b| b.name.clone()).collect(),
            config,
            epochs: epoch_rows(&epochs)?,
            layers: layer_rows(&table(file::LAYERS)?)?,
            summaries: summary_rows(&table(file::BACKBONES)?)?,
            fits: fit_rows(&table(file::FITS)?)?,
            space: space_rows(&table(file::SPACE)?)?,
            comparisons: optional(file::COMPARISONS)?
                .map(|t| comparison_rows(&t))
                .transpose()?,
            method_comparisons: optional(file::METHOD_COMPARISONS)?
                .map(|t| method_comparison_rows(&t))
                .transpose()?,
            wise_ft: optional(file::WISE_FT)?
                .map(|t| wise_ft_rows(&t))
                .transpose()?,
            pretrain: optional(file::PRETRAIN)?
                .map(|t| pretrain_rows(&t))
                .transpose()?,
            verdicts: optional(file::VERDICTS)?
                .map(|t| verdict_rows(&t))
                .transpose()?,
            pretrain_epochs: optional(file::PRETRAIN_EPOCHS)?
                .map(|t| pretrain_epoch_rows(&t))
                .transpose()?,
            reliability: optional(file::RELIABILITY)?
                .map(|t| bin_rows(&t))
                .transpose()?,
            attention: optional(file::ATTENTION)?
                .map(|t| patch_rows(&t))
                .transpose()?,
            images: optional(file::ATTENTION_IMAGES)?
                .map(|t| image_rows(&t))
                .transpose()?,
        })
    }

    /// Every (medical data set, method) of the study, in config order: what
    /// figures, findings and tests are made per.
    pub fn facets(&self) -> Vec<Facet> {
        let (show_dataset, show_method) = (self.several_datasets(), self.methods.len() > 1);
        let facet = |d: &String, m: &String| Facet {
            dataset: d.clone(),
            method: m.clone(),
            show_dataset,
            show_method,
        };
        self.datasets
            .iter()
            .flat_map(|d| self.methods.iter().map(move |m| facet(d, m)))
            .collect()
    }

    /// The WiSE-FT rows of `backbone` averaged over runs at each α, by
    /// increasing α (call it on one facet's rows).
    pub fn wise_ft_means(&self, backbone: &str) -> Vec<WiseFtMean> {
        let rows: Vec<&WiseFtRow> = self
            .wise_ft
            .iter()
            .flatten()
            .filter(|r| r.backbone == backbone)
            .collect();
        let mut alphas: Vec<f64> = rows.iter().map(|r| r.alpha).collect();
        alphas.sort_by(f64::total_cmp);
        alphas.dedup();
        alphas
            .into_iter()
            .map(|alpha| {
                let at: Vec<&&WiseFtRow> = rows.iter().filter(|r| r.alpha == alpha).collect();
                let mean = |f: fn(&WiseFtRow) -> f64| {
                    at.iter().map(|r| f(r)).sum::<f64>() / at.len() as f64
                };
                WiseFtMean {
                    alpha,
                    similarity: mean(|r| r.similarity),
                    accuracy: mean(|r| r.accuracy),
                    ece: mean(|r| r.ece),
                    knn_top1: mean(|r| r.knn_top1),
                    runs: at.len(),
                }
            })
            .collect()
    }

    /// The study with only its methods that ask for WiSE-FT: the facets of
    /// the WiSE-FT figure.
    pub fn with_wise_ft(&self) -> Study {
        let wise_ft = |m: &String| self.config.method(m).is_ok_and(|c| c.wise_ft.is_some());
        Study {
            methods: self
                .methods
                .iter()
                .filter(|m| wise_ft(m))
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    /// The study's rows of one facet.
    pub fn facet(&self, facet: &Facet) -> Study {
        let (d, m) = (facet.dataset.as_str(), facet.method.as_str());
        fn keep<R: Clone>(
            rows: &[R],
            of: impl Fn(&R) -> (&str, &str),
            key: (&str, &str),
        ) -> Vec<R> {
            rows.iter().filter(|r| of(r) == key).cloned().collect()
        }
        macro_rules! rows {
            ($rows:expr) => {
                keep(&$rows, |r| (r.dataset.as_str(), r.method.as_str()), (d, m))
            };
        }
        Study {
            config: self.config.clone(),
            datasets: vec![d.to_owned()],
            methods: vec![m.to_owned()],
            backbones: self.backbones.clone(),
            epochs: rows!(self.epochs),
            layers: rows!(self.layers),
            summaries: rows!(self.summaries),
            fits: rows!(self.fits),
            space: rows!(self.space),
            comparisons: self.comparisons.as_ref().map(|r| rows!(r)),
            method_comparisons: self
                .method_comparisons
                .as_ref()
                .map(|r| r.iter().filter(|r| r.dataset == d).cloned().collect()),
            wise_ft: self.wise_ft.as_ref().map(|r| rows!(r)),
            pretrain: self
                .pretrain
                .as_ref()
                .map(|r| r.iter().filter(|r| r.dataset == d).cloned().collect()),
            verdicts: self.verdicts.as_ref().map(|r| rows!(r)),
            pretrain_epochs: self.pretrain_epochs.clone(),
            reliability: self.reliability.as_ref().map(|r| rows!(r)),
            attention: self.attention.as_ref().map(|r| rows!(r)),
            images: self.images.as_ref().map(|r| rows!(r)),
        }
    }

    /// Whether the study has several medical data sets.
    pub fn several_datasets(&self) -> bool {
        self.datasets.len() > 1
    }

    /// How text names the facet of a row (`ham10000 / lp-ft`), or `None`
    /// where the study has one facet.
    pub fn facet_label(&self, dataset: &str, method: &str) -> Option<String> {
        let facet = Facet {
            dataset: dataset.into(),
            method: method.into(),
            show_dataset: self.several_datasets(),
            show_method: self.methods.len() > 1,
        };
        self.several_facets().then(|| facet.label())
    }

    /// Whether the study has several facets (data sets or methods): then
    /// figures, tables and findings show them side by side.
    pub fn several_facets(&self) -> bool {
        self.facets().len() > 1
    }

    /// The backbones that have at least one finished run, in order.
    pub fn backbones_with_runs(&self) -> Vec<&str> {
        self.backbones
            .iter()
            .map(String::as_str)
            .filter(|b| !self.final_epochs(b).is_empty())
            .collect()
    }

    /// Each finished run's last epoch.
    pub fn final_epochs(&self, backbone: &str) -> Vec<&EpochRow> {
        let mut last: Vec<&EpochRow> = Vec::new();
        for row in self
            .epochs
            .iter()
            .filter(|r| r.backbone == backbone && r.finished)
        {
            match last.iter_mut().find(|l| l.seed == row.seed) {
                Some(l) if l.epoch < row.epoch => *l = row,
                Some(_) => {}
                None => last.push(row),
            }
        }
        last
    }

    /// The pre-trained model's row (epoch 0) of a backbone.
    /// How epoch 0's accuracy and calibration were scored, for captions:
    /// "epoch 0 scored by a linear probe on the frozen features".
    pub fn epoch0_head(&self) -> &'static str {
        match self
            .epochs
            .iter()
            .find(|e| e.epoch == 0)
            .map(|e| e.head.as_str())
        {
            Some(col::HEAD_RANDOM) => {
                "epoch 0 scored by a head drawn at random (tables of an earlier version)"
            }
            _ => {
                "epoch 0 scored by a linear probe fitted on the frozen features of the medical train split"
            }
        }
    }

    pub fn pretrained(&self, backbone: &str) -> Option<&EpochRow> {
        self.epochs
            .iter()
            .find(|r| r.backbone == backbone && r.epoch == 0)
    }
}

/// A Parquet table, read once, named in errors.
struct Table {
    path: PathBuf,
    frame: DataFrame,
}

impl Table {
    fn read(path: &Path) -> anyhow::Result<Table> {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let frame = ParquetReader::new(f)
            .finish()
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Table {
            path: path.to_owned(),
            frame,
        })
    }

    fn column(&self, name: &str) -> anyhow::Result<&Column> {
        self.frame
            .column(name)
            .with_context(|| format!("{}: no column `{name}`", self.path.display()))
    }

    /// A column of numbers; a NaN or infinite value reads as missing, so
    /// that no figure, table or sentence shows `NaN ± NaN`.
    fn f64s(&self, name: &str) -> anyhow::Result<Vec<Option<f64>>> {
        let c = self
            .column(name)?
            .f64()
            .with_context(|| format!("{}: column `{name}`", self.path.display()))?;
        Ok((0..c.len())
            .map(|i| c.get(i).filter(|v| v.is_finite()))
            .collect())
    }

    /// A column that has no nulls.
    fn values(&self, name: &str) -> anyhow::Result<Vec<f64>> {
        self.f64s(name)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.with_context(|| {
                    format!(
                        "{}: column `{name}` is null or not finite at row {i}",
                        self.path.display()
                    )
                })
            })
            .collect()
    }

    fn strs(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let c = self
            .column(name)?
            .str()
            .with_context(|| format!("{}: column `{name}`", self.path.display()))?;
        Ok((0..c.len())
            .map(|i| c.get(i).unwrap_or_default().to_string())
            .collect())
    }

    /// A text column that tables of an earlier version lack.
    fn optional_strs(&self, name: &str) -> anyhow::Result<Option<Vec<String>>> {
        if self.frame.column(name).is_err() {
            return Ok(None);
        }
        self.strs(name).map(Some)
    }

    fn u32s(&self, name: &str) -> anyhow::Result<Vec<u32>> {
        let c = self
            .column(name)?
            .u32()
            .with_context(|| format!("{}: column `{name}`", self.path.display()))?;
        Ok((0..c.len()).map(|i| c.get(i).unwrap_or_default()).collect())
    }

    fn u64s(&self, name: &str) -> anyhow::Result<Vec<Option<u64>>> {
        let c = self
            .column(name)?
            .u64()
            .with_context(|| format!("{}: column `{name}`", self.path.display()))?;
        Ok((0..c.len()).map(|i| c.get(i)).collect())
    }

    fn bools(&self, name: &str) -> anyhow::Result<Vec<bool>> {
        let c = self
            .column(name)?
            .bool()
            .with_context(|| format!("{}: column `{name}`", self.path.display()))?;
        Ok((0..c.len()).map(|i| c.get(i).unwrap_or_default()).collect())
    }
}

fn epoch_rows(t: &Table) -> anyhow::Result<Vec<EpochRow>> {
    let (dataset, method) = (t.strs(col::DATASET)?, t.strs(col::METHOD)?);
    let (backbone, seed, epoch, status) = (
        t.strs(col::BACKBONE)?,
        t.u64s(col::SEED)?,
        t.u32s(col::EPOCH)?,
        t.strs(col::STATUS)?,
    );
    let (acc, bal, ece) = (
        t.values(col::ACCURACY)?,
        t.values(col::BALANCED_ACCURACY)?,
        t.values(col::ECE)?,
    );
    let (sim, knn) = (t.values(col::SIMILARITY)?, t.f64s(col::KNN_TOP1)?);
    // Tables of an earlier version scored epoch 0 by its random head.
    let head = t.optional_strs(col::HEAD)?;
    let head_of = |i: usize| match &head {
        Some(h) => h[i].clone(),
        None if epoch[i] == 0 => col::HEAD_RANDOM.to_string(),
        None => col::HEAD_FINE_TUNED.to_string(),
    };
    Ok((0..backbone.len())
        .map(|i| EpochRow {
            dataset: dataset[i].clone(),
            method: method[i].clone(),
            backbone: backbone[i].clone(),
            seed: seed[i].unwrap_or_default(),
            epoch: epoch[i],
            finished: status[i] == col::STATUS_FINISHED,
            head: head_of(i),
            accuracy: acc[i],
            balanced_accuracy: bal[i],
            ece: ece[i],
            similarity: sim[i],
            knn_top1: knn[i],
        })
        .collect())
}

fn wise_ft_rows(t: &Table) -> anyhow::Result<Vec<WiseFtRow>> {
    let (dataset, method) = (t.strs(col::DATASET)?, t.strs(col::METHOD)?);
    let (backbone, seed, alpha) = (
        t.strs(col::BACKBONE)?,
        t.u64s(col::SEED)?,
        t.values(col::ALPHA)?,
    );
    let (acc, ece, sim, knn) = (
        t.values(col::ACCURACY)?,
        t.values(col::ECE)?,
        t.values(col::SIMILARITY)?,
        t.values(col::KNN_TOP1)?,
    );
    Ok((0..backbone.len())
        .map(|i| WiseFtRow {
            dataset: dataset[i].clone(),
            method: method[i].clone(),
            backbone: backbone[i].clone(),
            seed: seed[i].unwrap_or_default(),
            alpha: alpha[i],
            accuracy: acc[i],
            ece: ece[i],
            similarity: sim[i],
            knn_top1: knn[i],
        })
        .collect())
}

fn layer_rows(t: &Table) -> anyhow::Result<Vec<LayerRow>> {
    let (dataset, method) = (t.strs(col::DATASET)?, t.strs(col::METHOD)?);
    let (backbone, seed, epoch, layer) = (
        t.strs(col::BACKBONE)?,
        t.u64s(col::SEED)?,
        t.u32s(col::EPOCH)?,
        t.u32s(col::LAYER)?,
    );
    let (is_final, token, probe, cka) = (
        t.bools(col::IS_FINAL)?,
        t.strs(col::TOKEN)?,
        t.strs(col::PROBE)?,
        t.values(col::CKA)?,
    );
    Ok((0..backbone.len())
        .filter(|&i| probe[i] == sim_study::eval_file::Probe::Medical.name())
        .map(|i| LayerRow {
            dataset: dataset[i].clone(),
            method: method[i].clone(),
            backbone: backbone[i].clone(),
            seed: seed[i].unwrap_or_default(),
            epoch: epoch[i],
            layer: layer[i],
            is_final: is_final[i],
            cls: token[i] == sim_study::eval_file::Token::Cls.name(),
            cka: cka[i],
        })
        .collect())
}

fn summary_rows(t: &Table) -> anyhow::Result<Vec<SummaryRow>> {
    let (dataset, method) = (t.strs(col::DATASET)?, t.strs(col::METHOD)?);
    let (backbone, runs, left, why) = (
        t.strs(col::BACKBONE)?,
        t.u32s(col::RUNS)?,
        t.u32s(col::RUNS_LEFT_OUT)?,
        t.strs(col::LEFT_OUT)?,
    );
    let mut stats = Vec::new();
    for metric in SUMMARY_METRICS {
        let [low, high] = col::ci(metric);
        stats.push((
            metric,
            t.f64s(&col::mean(metric))?,
            t.f64s(&col::std(metric))?,
            t.f64s(&low)?,
            t.f64s(&high)?,
        ));
    }
    Ok((0..backbone.len())
        .map(|i| SummaryRow {
            dataset: dataset[i].clone(),
            method: method[i].clone(),
            backbone: backbone[i].clone(),
            runs: runs[i],
            runs_left_out: left[i],
            left_out: why[i].clone(),
            stats: stats
                .iter()
                .map(|(m, mean, std, low, high)| Summary {
                    metric: m,
                    mean: mean[i],
                    std: std[i],
                    ci: low[i].zip(high[i]),
                })
                .collect(),
        })
        .collect())
}

fn fit_rows(t: &Table) -> anyhow::Result<Vec<FitRow>> {
    let (dataset, method) = (t.strs(col::DATASET)?, t.strs(col::METHOD)?);
    let (backbone, metric, status) = (
        t.strs(col::BACKBONE)?,
        t.strs(col::METRIC)?,
        t.strs(col::FIT_STATUS)?,
    );
    let (slope, intercept, r, r2) = (
        t.f64s(col::SLOPE)?,
        t.f64s(col::INTERCEPT)?,
        t.f64s(col::R)?,
        t.f64s(col::R2)?,
    );
    let (lo, hi) = (t.f64s(col::SLOPE_CI_LOW)?, t.f64s(col::SLOPE_CI_HIGH)?);
    let (points, levels) = (t.u32s(col::N_POINTS)?, t.u32s(col::N_LEVELS)?);
    // Tables of an earlier version fitted every epoch.
    let which = t
        .optional_strs(col::POINTS)?
        .unwrap_or_else(|| vec![col::POINTS_WITH_EPOCH0.to_string(); backbone.len()]);
    Ok((0..backbone.len())
        .map(|i| FitRow {
            dataset: dataset[i].clone(),
            method: method[i].clone(),
            backbone: backbone[i].clone(),
            metric: metric[i].clone(),
            points: which[i].clone(),
            slope: slope[i],
            intercept: intercept[i],
            r: r[i],
            r2: r2[i],
            slope_ci: lo[i].zip(hi[i]),
            n_points: points[i],
            n_levels: levels[i],
            status: status[i].clone(),
        })
        .collect())
}

fn space_rows(t: &Table) -> anyhow::Result<Vec<SpaceRow>> {
    let (dataset, method) = (t.strs(col::DATASET)?, t.strs(col::METHOD)?);
    let (backbone, seed, sim, acc) = (
        t.strs(col::BACKBONE)?,
        t.u64s(col::SEED)?,
        t.values(col::SIMILARITY)?,
        t.values(col::ACCURACY)?,
    );
    let (reference, inside) = (t.u64s(col::REFERENCE_SEED)?, t.bools(col::IN_SPACE)?);
    let (low, high) = (
        t.f64s(col::SIMILARITY_CI_LOW)?,
        t.f64s(col::SIMILARITY_CI_HIGH)?,
    );
    Ok((0..backbone.len())
        .map(|i| SpaceRow {
            dataset: dataset[i].clone(),
            method: method[i].clone(),
            backbone: backbone[i].clone(),
            seed: seed[i].unwrap_or_default(),
            similarity: sim[i],
            similarity_ci: low[i].zip(high[i]),
            accuracy: acc[i],
            reference_seed: reference[i].unwrap_or_default(),
            in_space: inside[i],
        })
        .collect())
}

/// The permutation tests of a comparisons table, its groups named in the
/// columns `names` (a, b).
fn permutation_rows(t: &Table, names: [&str; 2]) -> anyhow::Result<Vec<PermutationRow>> {
    let (a, b, runs_a, runs_b) = (
        t.strs(names[0])?,
        t.strs(names[1])?,
        t.u32s(col::RUNS_A)?,
        t.u32s(col::RUNS_B)?,
    );
    let (sim_a, sim_b, p, exact, n) = (
        t.values(col::SIMILARITY_A)?,
        t.values(col::SIMILARITY_B)?,
        t.values(col::P_VALUE)?,
        t.bools(col::EXACT)?,
        t.u64s(col::PERMUTATIONS)?,
    );
    Ok((0..a.len())
        .map(|i| PermutationRow {
            a: a[i].clone(),
            b: b[i].clone(),
            runs_a: runs_a[i],
            runs_b: runs_b[i],
            similarity_a: sim_a[i],
            similarity_b: sim_b[i],
            p_value: p[i],
            exact: exact[i],
            permutations: n[i].unwrap_or_default(),
        })
        .collect())
}

fn comparison_rows(t: &Table) -> anyhow::Result<Vec<ComparisonRow>> {
    let (dataset, method) = (t.strs(col::DATASET)?, t.strs(col::METHOD)?);
    let tests = permutation_rows(t, [col::BACKBONE_A, col::BACKBONE_B])?;
    Ok(tests
        .into_iter()
        .enumerate()
        .map(|(i, test)| ComparisonRow {
            dataset: dataset[i].clone(),
            method: method[i].clone(),
            test,
        })
        .collect())
}

fn method_comparison_rows(t: &Table) -> anyhow::Result<Vec<MethodComparisonRow>> {
    let (dataset, backbone) = (t.strs(col::DATASET)?, t.strs(col::BACKBONE)?);
    let tests = permutation_rows(t, [col::METHOD_A, col::METHOD_B])?;
    Ok(tests
        .into_iter()
        .enumerate()
        .map(|(i, test)| MethodComparisonRow {
            dataset: dataset[i].clone(),
            backbone: backbone[i].clone(),
            test,
        })
        .collect())
}

fn pretrain_rows(t: &Table) -> anyhow::Result<Vec<PretrainRow>> {
    let (dataset, backbone, objective, epochs) = (
        t.strs(col::DATASET)?,
        t.strs(col::BACKBONE)?,
        t.strs(col::OBJECTIVE)?,
        t.u32s(col::PRETRAIN_EPOCHS)?,
    );
    let (minutes, images_per_s, loss) = (
        t.f64s(col::PRETRAIN_MINUTES)?,
        t.f64s(col::PRETRAIN_IMAGES_PER_S)?,
        t.f64s(col::PRETRAIN_LOSS)?,
    );
    let (knn, probe) = (
        t.values(col::KNN_TOP1)?,
        t.f64s(col::PROBE_BALANCED_ACCURACY)?,
    );
    // Tables of an earlier version did not keep it.
    let prototypes = if t.frame.column(col::EFFECTIVE_PROTOTYPES).is_ok() {
        t.f64s(col::EFFECTIVE_PROTOTYPES)?
    } else {
        vec![None; backbone.len()]
    };
    Ok((0..backbone.len())
        .map(|i| PretrainRow {
            dataset: dataset[i].clone(),
            backbone: backbone[i].clone(),
            objective: objective[i].clone(),
            epochs: epochs[i],
            minutes: minutes[i],
            images_per_s: images_per_s[i],
            loss: loss[i],
            knn_top1: knn[i],
            probe_balanced_accuracy: probe[i],
            effective_prototypes: prototypes[i],
        })
        .collect())
}

fn pretrain_epoch_rows(t: &Table) -> anyhow::Result<Vec<PretrainEpochRow>> {
    let (backbone, objective, epoch, loss) = (
        t.strs(col::BACKBONE)?,
        t.strs(col::OBJECTIVE)?,
        t.u32s(col::EPOCH)?,
        t.values(col::PRETRAIN_LOSS)?,
    );
    let (prototypes, knn) = (t.f64s(col::EFFECTIVE_PROTOTYPES)?, t.f64s(col::KNN_TOP1)?);
    Ok((0..backbone.len())
        .map(|i| PretrainEpochRow {
            backbone: backbone[i].clone(),
            objective: objective[i].clone(),
            epoch: epoch[i],
            loss: loss[i],
            effective_prototypes: prototypes[i],
            knn_top1: knn[i],
        })
        .collect())
}

fn verdict_rows(t: &Table) -> anyhow::Result<Vec<VerdictRow>> {
    let (dataset, method, finding) = (
        t.strs(col::DATASET)?,
        t.strs(col::METHOD)?,
        t.u32s(col::FINDING)?,
    );
    let (measure, token, backbone, versus) = (
        t.strs(col::MEASURE)?,
        t.strs(col::TOKEN)?,
        t.strs(col::BACKBONE)?,
        t.strs(col::VERSUS)?,
    );
    let (estimate, low, high) = (
        t.values(col::ESTIMATE)?,
        t.f64s(col::ESTIMATE_CI_LOW)?,
        t.f64s(col::ESTIMATE_CI_HIGH)?,
    );
    let (share, resamples) = (t.values(col::SHARE)?, t.u32s(col::RESAMPLES)?);
    Ok((0..backbone.len())
        .map(|i| VerdictRow {
            dataset: dataset[i].clone(),
            method: method[i].clone(),
            finding: finding[i],
            measure: measure[i].clone(),
            token: token[i].clone(),
            backbone: backbone[i].clone(),
            versus: Some(versus[i].clone()).filter(|v| !v.is_empty()),
            estimate: estimate[i],
            estimate_ci: low[i].zip(high[i]),
            share: share[i],
            resamples: resamples[i],
        })
        .collect())
}

fn bin_rows(t: &Table) -> anyhow::Result<Vec<BinRow>> {
    let (dataset, method) = (t.strs(col::DATASET)?, t.strs(col::METHOD)?);
    let (backbone, seed, low, high) = (
        t.strs(col::BACKBONE)?,
        t.u64s(col::SEED)?,
        t.values(col::BIN_LOW)?,
        t.values(col::BIN_HIGH)?,
    );
    let (count, acc, conf) = (
        t.u32s(col::COUNT)?,
        t.f64s(col::ACCURACY)?,
        t.f64s(col::CONFIDENCE)?,
    );
    Ok((0..backbone.len())
        .map(|i| BinRow {
            dataset: dataset[i].clone(),
            method: method[i].clone(),
            backbone: backbone[i].clone(),
            seed: seed[i],
            low: low[i],
            high: high[i],
            count: count[i],
            accuracy: acc[i],
            confidence: conf[i],
        })
        .collect())
}

fn patch_rows(t: &Table) -> anyhow::Result<Vec<PatchRow>> {
    let (dataset, method) = (t.strs(col::DATASET)?, t.strs(col::METHOD)?);
    let (backbone, seed, image) = (
        t.strs(col::BACKBONE)?,
        t.u64s(col::SEED)?,
        t.u32s(col::IMAGE)?,
    );
    let (row, column, attention, norm) = (
        t.u32s(col::ROW)?,
        t.u32s(col::COLUMN)?,
        t.values(col::ATTENTION)?,
        t.values(col::PATCH_NORM)?,
    );
    Ok((0..backbone.len())
        .map(|i| PatchRow {
            dataset: dataset[i].clone(),
            method: method[i].clone(),
            backbone: backbone[i].clone(),
            seed: seed[i],
            image: image[i],
            row: row[i],
            column: column[i],
            attention: attention[i],
            patch_norm: norm[i],
        })
        .collect())
}

fn image_rows(t: &Table) -> anyhow::Result<Vec<ImageRow>> {
    let (dataset, method) = (t.strs(col::DATASET)?, t.strs(col::METHOD)?);
    let (backbone, image, id, size) = (
        t.strs(col::BACKBONE)?,
        t.u32s(col::IMAGE)?,
        t.strs(col::IMAGE_ID)?,
        t.u32s(col::SIZE)?,
    );
    let pixels = t
        .column(col::PIXELS)?
        .binary()
        .with_context(|| format!("{}: column `{}`", t.path.display(), col::PIXELS))?;
    let pixels: Vec<Vec<u8>> = (0..pixels.len())
        .map(|i| pixels.get(i).unwrap_or_default().to_vec())
        .collect();
    let rows: Vec<ImageRow> = (0..backbone.len())
        .map(|i| ImageRow {
            dataset: dataset[i].clone(),
            method: method[i].clone(),
            backbone: backbone[i].clone(),
            image: image[i],
            image_id: id[i].clone(),
            size: size[i],
            pixels: pixels[i].clone(),
        })
        .collect();
    if let Some(bad) = rows
        .iter()
        .find(|r| r.pixels.len() != (r.size * r.size * 3) as usize)
    {
        bail!(
            "{}: image {} of {} has {} bytes for {} × {} RGB",
            t.path.display(),
            bad.image,
            bad.backbone,
            bad.pixels.len(),
            bad.size,
            bad.size
        );
    }
    Ok(rows)
}
