//! A study as the figures see it: its tables (`<study>/tables/*.parquet`)
//! read into the rows of `sim_study::tables::rows`, and its resolved
//! config (`study.toml`: the backbones' order and families, η, ε, the fit's
//! levels). Nothing of the training state is read.

use anyhow::bail;
use sim_study::StudyDir;
use sim_study::config::{Measure, StudyConfig};
use sim_study::eval_file::{Probe, Token};
pub use sim_study::tables::rows::{
    BackboneRow, BinRow, ClassRow, ComparisonRow, EpochRow, FitRow, ImageRow, LayerRow,
    MethodComparisonRow, PatchRow, PretrainEpochRow, PretrainRow, SelectionRow,
    SelectionSummaryRow, SimilarityRow, SpaceRow, Summary, Table1Metric, VerdictRow, WiseFtRow,
};
use sim_study::tables::schema::{self, Table};
use sim_study::tables::{col, file};
use std::path::Path;

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

/// The mean over runs of one backbone's WiSE-FT backbones at one α.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WiseFtMean {
    pub alpha: f64,
    pub similarity: f64,
    pub accuracy: f64,
    pub ece: f64,
    pub runs: usize,
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
    /// Absent in tables made before per-class scores were kept.
    pub classes: Option<Vec<ClassRow>>,
    /// The medical probe set's rows only: what every figure reads.
    pub layers: Vec<LayerRow>,
    /// Absent in tables made before the measures besides CKA.
    pub similarity: Option<Vec<SimilarityRow>>,
    /// The measure `epochs`' similarity and `layers`' CKA hold: linear CKA,
    /// unless [`Study::for_measure`] put another in their place.
    pub measure: Measure,
    pub summaries: Vec<BackboneRow>,
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
    /// Absent in tables made before model selection; empty where no (data
    /// set, method) had 3 candidates.
    pub selection: Option<Vec<SelectionRow>>,
    pub selection_summary: Option<Vec<SelectionSummaryRow>>,
}

impl Study {
    pub fn read(dir: &Path) -> anyhow::Result<Study> {
        let study = StudyDir::new(dir);
        let config = study.read_config().map_err(anyhow::Error::msg)?;
        if !study.table(file::EPOCHS).exists() {
            bail!(
                "{}: no tables yet; run `sim-metrics study --study {}` first",
                study.tables_dir().display(),
                dir.display()
            );
        }
        fn table<T: Table>(study: &StudyDir) -> anyhow::Result<Vec<T>> {
            Ok(schema::read(&study.table(T::FILE))?)
        }
        /// `None` where a study's tables were made before the table existed.
        fn optional<T: Table>(study: &StudyDir) -> anyhow::Result<Option<Vec<T>>> {
            let path = study.table(T::FILE);
            path.exists().then(|| table(study)).transpose()
        }
        // Epochs first: a table of an earlier version says so before any other is missed.
        let epochs = table(&study)?;
        let mut layers: Vec<LayerRow> = table(&study)?;
        layers.retain(|l| l.probe == Probe::Medical.name());
        Ok(Study {
            datasets: config
                .medical_names()
                .into_iter()
                .map(String::from)
                .collect(),
            methods: config.methods.iter().map(|m| m.name.clone()).collect(),
            backbones: config.backbones.iter().map(|b| b.name.clone()).collect(),
            config,
            epochs,
            classes: optional(&study)?,
            layers,
            similarity: optional(&study)?,
            measure: Measure::Cka,
            summaries: table(&study)?,
            fits: table(&study)?,
            space: table(&study)?,
            comparisons: optional(&study)?,
            method_comparisons: optional(&study)?,
            wise_ft: optional(&study)?,
            pretrain: optional(&study)?,
            verdicts: optional(&study)?,
            pretrain_epochs: optional(&study)?,
            reliability: optional(&study)?,
            attention: optional(&study)?,
            images: optional(&study)?,
            selection: optional(&study)?,
            selection_summary: optional(&study)?,
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
                    similarity: mean(|r| r.kept.similarity),
                    accuracy: mean(|r| r.scores.accuracy),
                    ece: mean(|r| r.scores.ece),
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

    /// The study drawn under `measure` (`sim-plot --measure`): each epoch's
    /// similarity and each layer's CLS CKA replaced by the measure's value
    /// in `similarity.parquet` (the CKA columns then hold that measure, as
    /// [`Study::measure`] says), and each run's final similarity in the
    /// space rows too, without their intervals (T_X membership stays CKA's:
    /// Figure 2 is not drawn under another measure); the patch-mean rows
    /// and the fits, which are CKA's alone, left out.
    pub fn for_measure(&self, measure: Measure) -> anyhow::Result<Study> {
        if measure == Measure::Cka {
            return Ok(self.clone());
        }
        let rows: Vec<&SimilarityRow> = self
            .similarity
            .iter()
            .flatten()
            .filter(|r| r.measure == measure.name())
            .collect();
        if rows.is_empty() {
            bail!(
                "{}: no rows of measure `{measure}`: add it to `[evaluation.similarity] \
                 measures` in study.toml and run `sim-metrics study` again",
                file::SIMILARITY
            );
        }
        let key = |d: &str, m: &str, b: &str, s: u64, e: u32| {
            (d.to_owned(), m.to_owned(), b.to_owned(), s, e)
        };
        let finals: std::collections::HashMap<_, f64> = rows
            .iter()
            .filter(|r| r.is_final)
            .map(|r| {
                (
                    key(&r.dataset, &r.method, &r.backbone, r.seed, r.epoch),
                    r.value,
                )
            })
            .collect();
        let mut epochs = Vec::with_capacity(self.epochs.len());
        for e in &self.epochs {
            let Some(&value) =
                finals.get(&key(&e.dataset, &e.method, &e.backbone, e.seed, e.epoch))
            else {
                bail!(
                    "{}: no `{measure}` of {}/{}/{} seed {} epoch {}, which {} has: \
                     run `sim-metrics study` again",
                    file::SIMILARITY,
                    e.dataset,
                    e.method,
                    e.backbone,
                    e.seed,
                    e.epoch,
                    file::EPOCHS
                );
            };
            let mut e = e.clone();
            e.kept.similarity = value;
            epochs.push(e);
        }
        let last_epoch = |d: &str, m: &str, b: &str, s: u64| {
            epochs
                .iter()
                .filter(|e: &&EpochRow| {
                    (&*e.dataset, &*e.method, &*e.backbone, e.seed) == (d, m, b, s)
                })
                .max_by_key(|e| e.epoch)
                .map(|e| e.kept.similarity)
        };
        let mut space = Vec::with_capacity(self.space.len());
        for p in &self.space {
            let Some(value) = last_epoch(&p.dataset, &p.method, &p.backbone, p.seed) else {
                bail!(
                    "{}: run {}/{}/{} seed {} has no epoch in {}",
                    file::SPACE,
                    p.dataset,
                    p.method,
                    p.backbone,
                    p.seed,
                    file::EPOCHS
                );
            };
            space.push(SpaceRow {
                similarity: value,
                similarity_ci_low: None,
                similarity_ci_high: None,
                ..p.clone()
            });
        }
        let layers = rows
            .iter()
            .map(|r| LayerRow {
                dataset: r.dataset.clone(),
                method: r.method.clone(),
                backbone: r.backbone.clone(),
                seed: r.seed,
                epoch: r.epoch,
                layer: r.layer,
                is_final: r.is_final,
                token: Token::Cls.name().to_owned(),
                probe: Probe::Medical.name().to_owned(),
                cka: r.value,
                cka_debiased: r.value,
            })
            .collect();
        Ok(Study {
            epochs,
            layers,
            measure,
            space,
            fits: Vec::new(),
            wise_ft: None,
            ..self.clone()
        })
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
            classes: self.classes.as_ref().map(|r| rows!(r)),
            layers: rows!(self.layers),
            similarity: self.similarity.as_ref().map(|r| rows!(r)),
            measure: self.measure,
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
            selection: self.selection.as_ref().map(|r| rows!(r)),
            selection_summary: self.selection_summary.as_ref().map(|r| rows!(r)),
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
            .filter(|r| r.backbone == backbone && r.finished())
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
                "epoch 0 scored by a linear probe fitted on the frozen features of the \
                    medical train split"
            }
        }
    }

    pub fn pretrained(&self, backbone: &str) -> Option<&EpochRow> {
        self.epochs
            .iter()
            .find(|r| r.backbone == backbone && r.epoch == 0)
    }
}
