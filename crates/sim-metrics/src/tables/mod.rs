//! `sim-metrics study`: from a study's evaluation files to its Parquet tables.
//!
//! For every medical data set and backbone of the study's resolved config,
//! the pre-trained evaluation (epoch 0) is the CKA reference of every probe tensor, prepared
//! once ([`CkaReference`]) and compared with every run's every epoch. Runs
//! contribute the evaluation files of the epochs their `run.toml` commits (and
//! only those `dump.epochs` asks for), so the tables can be made while a study
//! runs: the per-epoch tables hold every run with its status, the summaries
//! (backbones, fits, space) finished runs only, saying which were left out.
//! Each (data set, method)'s tables are made alone (θ*, the fits and the
//! means are per data set and method) and stacked, with `dataset` and
//! `method` columns first.
//! The rows are `sim_study::tables::rows`, written through its schema;
//! columns and units: docs/SPEC.md, "Study tables".
//!
//! - [`evaluations`]: the evaluation files read into runs and their numbers;
//! - [`per_epoch`], [`summaries`], [`pretrain`], [`selection`]: the tables'
//!   rows from them;
//! - here: the order of it all, the writing, and when the tables are up to date.

mod evaluations;
mod per_epoch;
mod pretrain;
mod selection;
mod summaries;

pub use selection::rows_of as selection_rows;

use crate::MetricError;
use evaluations::{DatasetRuns, Epoch0s, read_runs};
use sim_study::config::DatasetId;
use sim_study::lock::DirLock;
use sim_study::manifest::Manifest;
use sim_study::run_state::{RunState, Status};
use sim_study::split_file;
use sim_study::tables::file as table_file;
use sim_study::tables::rows::{
    BackboneRow, BinRow, ClassRow, ComparisonRow, EpochRow, FitRow, ImageRow, LayerRow,
    MethodComparisonRow, PatchRow, PretrainEpochRow, PretrainRow, SelectionRow,
    SelectionSummaryRow, SimilarityRow, SpaceRow, VerdictRow, WiseFtRow,
};
use sim_study::tables::schema::{self, Shape, Table};
use sim_study::{StudyConfig, StudyDir, crash, remove_leftovers};
use std::path::{Path, PathBuf};

/// What went wrong, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TableError(String);

fn err(path: &Path, message: impl std::fmt::Display) -> TableError {
    TableError(format!("{}: {message}", path.display()))
}

/// What the tables are made from, as it is now: the config, every data
/// set's split file and epoch 0, every run's `run.toml` and the evaluations it commits,
/// and the tool (its version and BLAS). Computed before the evaluations
/// are read, so a run committed meanwhile makes the tables stale rather
/// than missing from them for good ([`up_to_date`]).
fn inputs_manifest(
    study: &StudyDir,
    config: &StudyConfig,
    known: Option<&Manifest>,
) -> Result<Manifest, TableError> {
    let blas = crate::blas::blas().map_or("gemm crate".to_string(), |b| b.name.clone());
    let mut manifest = Manifest::new(format!(
        "sim-metrics {} ({blas})",
        env!("CARGO_PKG_VERSION")
    ));
    let root = study.root();
    let mut add = |path: &Path| {
        let relative = path
            .strip_prefix(root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        manifest
            .add(root, &relative, known)
            .map_err(|e| err(path, e))
    };
    add(&study.resolved_config())?;
    add(&study.config_hash())?;
    for dataset in config.medical_names() {
        // Its class names (classes.parquet).
        add(&study.split_csv(&DatasetId::Medical(dataset.into())))?;
        for backbone in &config.backbones {
            add(&study.pretrained_eval(dataset, &backbone.name))?;
        }
    }
    for run in config.runs() {
        let dir = study.run_dir(&run);
        add(&RunState::path(&dir))?;
        let Ok(Some(state)) = RunState::read(&dir) else {
            continue;
        };
        for epoch in 1..=state.last_finished_epoch {
            add(&study.epoch_eval(&run, epoch))?;
        }
        if state.status == Status::Finished {
            for &alpha in config
                .method(&run.method)
                .ok()
                .and_then(|m| m.wise_ft.as_deref())
                .unwrap_or_default()
            {
                add(&study.wise_ft_eval(&run, alpha))?;
            }
        }
    }
    Ok(manifest)
}

/// Whether the tables were made from the study as it is now (its config,
/// evaluations and `run.toml`s, by content) by this tool: then writing them
/// again would give the same tables.
pub fn up_to_date(study_dir: &Path) -> bool {
    let study = StudyDir::new(study_dir);
    let tables: Vec<PathBuf> = table_file::ALL.iter().map(|t| study.table(t)).collect();
    sim_study::manifest::up_to_date(&study.tables_manifest(), &tables, |written| {
        let config = study.read_config().ok()?;
        inputs_manifest(&study, &config, Some(written)).ok()
    })
}

/// Reads every run of the study at `study_dir` and writes its tables;
/// returns the files written.
pub fn write_study_tables(study_dir: &Path) -> Result<Vec<PathBuf>, TableError> {
    let study = StudyDir::new(study_dir);
    let config = study.read_config().map_err(TableError)?;
    study.check_layout().map_err(|e| err(study_dir, e))?;
    let manifest = inputs_manifest(
        &study,
        &config,
        Manifest::read(&study.tables_manifest()).as_ref(),
    )?;
    let at = |name: &'static str| {
        let path = study.table(name);
        move |e: MetricError| err(&path, e)
    };
    let mut tables = Tables::default();
    let mut epoch0s = Epoch0s::new();
    // (data set, method, backbone, final similarities): the methods' tests.
    let mut finals = Vec::new();
    let facets = config
        .medical_names()
        .into_iter()
        .flat_map(|d| config.methods.iter().map(move |m| (d, m.name.as_str())));
    let mut any_runs = false;
    for (dataset, method) in facets {
        let DatasetRuns {
            runs,
            left_out,
            images,
        } = read_runs(&study, &config, dataset, method, &mut epoch0s)?;
        for l in &left_out {
            tracing::warn!(
                "{dataset}/{}/{method} seed {}: left out of the summaries: {}",
                l.backbone,
                l.seed,
                l.why
            );
        }
        if runs.is_empty() {
            continue;
        }
        any_runs = true;
        let facet = Facet { dataset, method };
        finals.extend(config.backbones.iter().map(|b| {
            (
                dataset,
                method,
                b.name.as_str(),
                summaries::final_similarities(&runs, &b.name),
            )
        }));
        let t = &mut tables;
        t.epochs.extend(per_epoch::epochs(&runs, &config, facet));
        let split = study.split_csv(&DatasetId::Medical(dataset.into()));
        let class_names = split_file::class_names(&split).map_err(TableError)?;
        let classes = per_epoch::classes(&runs, &class_names, facet);
        t.classes.extend(classes.map_err(|e| err(&split, e))?);
        t.layers.extend(per_epoch::layers(&runs, facet));
        t.similarity.extend(per_epoch::similarity(&runs, facet));
        t.backbones
            .extend(summaries::backbones(&runs, &left_out, &config, facet));
        t.fits.extend(summaries::fits(&runs, &config, facet));
        let space = summaries::space(&runs, &config, facet);
        t.space.extend(space.map_err(at(table_file::SPACE))?);
        let comparisons = summaries::comparisons(&runs, &config, facet);
        t.comparisons
            .extend(comparisons.map_err(at(table_file::COMPARISONS))?);
        let verdicts = summaries::verdicts(&runs, &config, facet);
        t.verdicts
            .extend(verdicts.map_err(at(table_file::VERDICTS))?);
        t.wise_ft.extend(per_epoch::wise_ft(&runs, &config, facet));
        t.reliability.extend(per_epoch::reliability(&runs, facet));
        t.attention
            .extend(per_epoch::attention(&runs, &images, facet));
        t.images.extend(per_epoch::attention_images(&images, facet));
    }
    if !any_runs {
        return Err(err(study_dir, "no finished epoch in any run yet"));
    }
    let method_comparisons = summaries::method_comparisons(&finals, &config);
    tables.method_comparisons = method_comparisons.map_err(at(table_file::METHOD_COMPARISONS))?;
    tables.pretrain = pretrain::pretrain(&study, &config, &mut epoch0s)?;
    tables.pretrain_epochs = pretrain::pretrain_epochs(&study, &config)?;
    (tables.selection, tables.selection_summary) = selection::selection(
        &study,
        &config,
        &tables.epochs,
        &tables.pretrain,
        &mut epoch0s,
    );
    // A test stands here to commit a run while the tables are computed.
    crash::pause("tables-computed");
    let tables_dir = study.tables_dir();
    let _lock = DirLock::wait(&tables_dir).map_err(|e| err(&tables_dir, e))?;
    remove_leftovers(&tables_dir).map_err(|e| err(&tables_dir, e))?;
    Manifest::remove(&study.tables_manifest()).map_err(|e| err(&study.tables_manifest(), e))?;
    let written = tables.write(
        &study,
        &Shape {
            knn_k: config.evaluation.knn_k.clone(),
        },
    )?;
    // Last: the tables vouch for these inputs only once all are written.
    manifest
        .write(&study.tables_manifest())
        .map_err(|e| err(&study.tables_manifest(), e))?;
    Ok(written)
}

/// The (medical data set, method) a facet's rows are about.
#[derive(Debug, Clone, Copy)]
struct Facet<'a> {
    dataset: &'a str,
    method: &'a str,
}

/// Every table's rows, gathered over the facets.
#[derive(Default)]
struct Tables {
    epochs: Vec<EpochRow>,
    classes: Vec<ClassRow>,
    layers: Vec<LayerRow>,
    similarity: Vec<SimilarityRow>,
    backbones: Vec<BackboneRow>,
    fits: Vec<FitRow>,
    space: Vec<SpaceRow>,
    comparisons: Vec<ComparisonRow>,
    verdicts: Vec<VerdictRow>,
    wise_ft: Vec<WiseFtRow>,
    reliability: Vec<BinRow>,
    attention: Vec<PatchRow>,
    images: Vec<ImageRow>,
    method_comparisons: Vec<MethodComparisonRow>,
    pretrain: Vec<PretrainRow>,
    pretrain_epochs: Vec<PretrainEpochRow>,
    selection: Vec<SelectionRow>,
    selection_summary: Vec<SelectionSummaryRow>,
}

impl Tables {
    /// Writes every table, in the order of `file::ALL`; returns the files.
    fn write(&self, study: &StudyDir, shape: &Shape) -> Result<Vec<PathBuf>, TableError> {
        /// Writes one table's rows into its file.
        fn one<T: Table>(
            study: &StudyDir,
            rows: &[T],
            shape: &Shape,
        ) -> Result<PathBuf, TableError> {
            let path = study.table(T::FILE);
            schema::write(&path, rows, shape).map_err(|e| TableError(e.to_string()))?;
            Ok(path)
        }
        macro_rules! write_all {
            ($($rows:ident),*) => {
                Ok(vec![$( one(study, &self.$rows, shape)?, )*])
            };
        }
        write_all!(
            epochs,
            classes,
            layers,
            similarity,
            backbones,
            fits,
            space,
            comparisons,
            wise_ft,
            reliability,
            attention,
            images,
            verdicts,
            method_comparisons,
            pretrain,
            pretrain_epochs,
            selection,
            selection_summary
        )
    }
}
