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
//! Columns and units: README, "Study tables".

use crate::MetricError;
use crate::arrays::{FloatArray, to_labels, to_matrix};
use crate::calibration::{Binning, calibration};
use crate::cka::{CkaOptions, CkaReference, Estimator, Kernel};
use crate::classification::classification_scores;
use crate::findings::{Certainty, calibration_follows_similarity, forgets_less, runs_beside_best};
use crate::fit::{level_fit, pearson, spearman};
use crate::knn::knn_accuracy;
use crate::space::{RunPoint, similarity_space};
use crate::stats::{
    CkaBootstrap, LEVEL, PermutationTest, draw_resamples, mean_interval, permutation_test,
};
use polars::prelude::*;
use sim_study::config::{Paradigm, RunId};
use sim_study::eval_file::{self, EvalFile, Layer, Probe, Token};
use sim_study::lock::DirLock;
use sim_study::manifest::Manifest;
use sim_study::run_state::{RunState, Status};
use sim_study::tables::{col, file as table_file};
use sim_study::{StudyConfig, StudyDir, crash, remove_leftovers};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Reads one calibration metric off an epoch's metrics.
type MetricOf = fn(&EpochMetrics) -> f64;

/// What went wrong, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TableError(String);

fn err(path: &Path, message: impl std::fmt::Display) -> TableError {
    TableError(format!("{}: {message}", path.display()))
}

fn matrix(file: &EvalFile, name: &str) -> Result<FloatArray, TableError> {
    let (shape, values) = file.decoded(name).map_err(TableError)?;
    to_matrix(name, shape, values).map_err(|e| err(&file.path, e))
}

fn labels(file: &EvalFile, name: &str) -> Result<Vec<i64>, TableError> {
    let (shape, values) = file.decoded(name).map_err(TableError)?;
    to_labels(name, shape, values).map_err(|e| err(&file.path, e))
}

/// The per-epoch numbers of one evaluation file.
struct EpochMetrics {
    /// Whose logits the accuracy and calibration come from (`col::HEAD_*`).
    head: &'static str,
    accuracy: f64,
    balanced_accuracy: f64,
    macro_f1: f64,
    ece: f64,
    mce: f64,
    adaptive_ece: f64,
    /// The equal-width bins of `ece`.
    reliability: Vec<crate::calibration::Bin>,
    /// Last-block CLS attention and patch-token norms of the attention
    /// images (images × patches, row-major), where the file has them.
    attention: Option<AttentionMaps>,
    /// Top-1 per k of the study's knn_k; none where the evaluation left the
    /// natural images out (`evaluation.natural_every_epoch = false`).
    knn: Option<Vec<f64>>,
    /// (probe, layer, token) → (biased, debiased) linear CKA to epoch 0.
    cka: BTreeMap<(Probe, Layer, Token), (f64, f64)>,
}

impl EpochMetrics {
    /// k-NN top-1 at the `i`-th k, where the natural images were evaluated.
    fn knn_at(&self, i: usize) -> Option<f64> {
        self.knn.as_ref().map(|k| k[i])
    }
}

/// Figure 3's maps of one evaluation.
struct AttentionMaps {
    images: usize,
    patches: usize,
    attention: Vec<f64>,
    patch_norm: Vec<f64>,
}

impl AttentionMaps {
    fn read(file: &EvalFile) -> Result<Option<AttentionMaps>, TableError> {
        if !file.has(eval_file::ATTENTION_PATCH_NORM) {
            return Ok(None); // written before patch norms were kept
        }
        let attention = matrix(file, eval_file::ATTENTION)?;
        let norms = matrix(file, eval_file::ATTENTION_PATCH_NORM)?;
        if (norms.rows, norms.cols) != (attention.rows, attention.cols) {
            return Err(err(
                &file.path,
                "attention and attention.patch_norm differ in shape",
            ));
        }
        Ok(Some(AttentionMaps {
            images: attention.rows,
            patches: attention.cols,
            attention: attention.data,
            patch_norm: norms.data,
        }))
    }
}

/// The CKA references of one backbone: its epoch-0 probe features.
struct References {
    by_probe: BTreeMap<(Probe, Layer, Token), (CkaReference, CkaReference)>,
}

impl References {
    fn new(pretrained: &EvalFile) -> Result<References, TableError> {
        let mut by_probe = BTreeMap::new();
        for key @ (probe, layer, token) in pretrained.probes() {
            let x = matrix(pretrained, &eval_file::probe_tensor(probe, layer, token))?;
            // The embedding layer's CLS token is the same for every image (the
            // class token plus its position): CKA is undefined there, so
            // that (layer, token) has no rows.
            if x.data
                .chunks_exact(x.cols)
                .all(|row| row == &x.data[..x.cols])
            {
                continue;
            }
            let make = |estimator| {
                CkaReference::new(
                    x.view(),
                    CkaOptions {
                        estimator,
                        kernel: Kernel::Linear,
                    },
                )
                .map_err(|e| err(&pretrained.path, e))
            };
            by_probe.insert(key, (make(Estimator::Biased)?, make(Estimator::Debiased)?));
        }
        let headline = eval_file::probe_tensor(Probe::Medical, Layer::Final, Token::Cls);
        if !by_probe.contains_key(&(Probe::Medical, Layer::Final, Token::Cls)) {
            return Err(err(
                &pretrained.path,
                format!("no `{headline}`: the study's similarity is measured on it"),
            ));
        }
        Ok(References { by_probe })
    }
}

/// The numbers of a fine-tuned model's evaluation, scored by its own head.
fn epoch_metrics(
    file: &EvalFile,
    refs: &References,
    config: &StudyConfig,
) -> Result<EpochMetrics, TableError> {
    let head = Head {
        name: col::HEAD_FINE_TUNED,
        logits: matrix(file, eval_file::TEST_LOGITS)?,
    };
    scored_metrics(file, refs, config, head)
}

/// The test-set logits an evaluation's accuracy and calibration come from,
/// and whose they are.
struct Head {
    name: &'static str,
    logits: FloatArray,
}

impl Head {
    /// Epoch 0's head: a linear probe fitted on the frozen features of the
    /// medical train split ([`crate::probe`]), scoring the test set's
    /// final-norm CLS features (the rows of `test.logits`, in order). The
    /// head the file's logits come from was drawn at random from the split
    /// seed: it says nothing about the representation, so it is used only
    /// for an epoch 0 made before the train features were kept.
    fn epoch0(pretrained: &EvalFile) -> Result<Head, TableError> {
        if !pretrained.has(eval_file::TRAIN_FEATURES) {
            return Ok(Head {
                name: col::HEAD_RANDOM,
                logits: matrix(pretrained, eval_file::TEST_LOGITS)?,
            });
        }
        let train = matrix(pretrained, eval_file::TRAIN_FEATURES)?;
        let train_y: Vec<usize> = labels(pretrained, eval_file::TRAIN_LABELS)?
            .into_iter()
            .map(|l| l as usize)
            .collect();
        let test = matrix(
            pretrained,
            &eval_file::probe_tensor(Probe::Medical, Layer::Final, Token::Cls),
        )?;
        let probe = crate::probe::fit(
            &train.data,
            train.cols,
            &train_y,
            crate::probe::ProbeOptions::default(),
        )
        .map_err(|e| err(&pretrained.path, e))?;
        let logits = probe.logits(&test.data);
        let logits = FloatArray {
            name: format!("{}: the probe's test logits", pretrained.path.display()),
            rows: test.rows,
            cols: probe.classes,
            data: logits,
        };
        Ok(Head {
            name: col::HEAD_PROBE,
            logits,
        })
    }
}

/// An evaluation's numbers with its accuracy and calibration scored by `head`.
fn scored_metrics(
    file: &EvalFile,
    refs: &References,
    config: &StudyConfig,
    head: Head,
) -> Result<EpochMetrics, TableError> {
    let (matrix, read_labels) = (
        |name: &str| matrix(file, name),
        |name: &str| labels(file, name),
    );
    let e = &config.evaluation;
    let logits = head.logits;
    let labels = read_labels(eval_file::TEST_LABELS)?;
    let at = |m: MetricError| err(&file.path, m);
    let uniform = calibration(logits.view(), &labels, e.ece_bins, Binning::Uniform).map_err(at)?;
    let adaptive =
        calibration(logits.view(), &labels, e.ece_bins, Binning::Quantile).map_err(at)?;
    let (_, predicted) = crate::calibration::confidences(logits.view()).map_err(at)?;
    let truth: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    let scores = classification_scores(&predicted, &truth).map_err(at)?;
    let natural = file.has(eval_file::KNN_BANK);
    let knn = if natural {
        let (bank, query) = (matrix(eval_file::KNN_BANK)?, matrix(eval_file::KNN_QUERY)?);
        let (bank_y, query_y) = (
            read_labels(eval_file::KNN_BANK_LABELS)?,
            read_labels(eval_file::KNN_QUERY_LABELS)?,
        );
        Some(
            knn_accuracy(
                bank.view(),
                &bank_y,
                query.view(),
                &query_y,
                &e.knn_k,
                e.knn_temperature,
            )
            .map_err(at)?
            .iter()
            .map(|r| r.top1)
            .collect(),
        )
    } else {
        None
    };
    let mut cka = BTreeMap::new();
    for (&(probe, layer, token), (biased, debiased)) in refs
        .by_probe
        .iter()
        .filter(|((probe, ..), _)| natural || *probe != Probe::Natural)
    {
        let y = matrix(&eval_file::probe_tensor(probe, layer, token))?;
        cka.insert(
            (probe, layer, token),
            (
                biased.compare(y.view()).map_err(at)?,
                debiased.compare(y.view()).map_err(at)?,
            ),
        );
    }
    Ok(EpochMetrics {
        head: head.name,
        accuracy: scores.accuracy,
        balanced_accuracy: scores.balanced_accuracy,
        macro_f1: scores.macro_f1,
        ece: uniform.ece,
        mce: uniform.mce,
        reliability: uniform.bins,
        adaptive_ece: adaptive.ece,
        attention: AttentionMaps::read(file)?,
        knn,
        cka,
    })
}

/// A run's evaluations, epoch 0 first, up to the last epoch its `run.toml`
/// commits (a later file is a leftover of an interrupted attempt).
struct Run<'a> {
    backbone: &'a str,
    seed: u64,
    status: Status,
    epochs: Vec<(u32, Rc<EpochMetrics>)>,
    /// A finished run's final similarity, bootstrapped over its test images.
    similarity_interval: Option<(f64, f64)>,
    /// A finished run's WiSE-FT backbones (methods with `wise_ft`), by α.
    wise_ft: Vec<(f64, EpochMetrics)>,
}

impl Run<'_> {
    fn last(&self) -> &EpochMetrics {
        &self.epochs.last().expect("epoch 0 is always there").1
    }

    /// Summaries (means over runs, fits, the similarity space) take finished
    /// runs only: a failed or unfinished run's last epoch is not a final one.
    fn finished(&self) -> bool {
        self.status == Status::Finished
    }

    /// "The" similarity of docs/SPEC.md: final-norm CLS CKA on the medical probe.
    fn similarity(m: &EpochMetrics) -> f64 {
        m.cka[&(Probe::Medical, Layer::Final, Token::Cls)].0
    }
}

/// The 95 % bootstrap interval of a run's final similarity (the medical
/// probe's final-norm CLS CKA to epoch 0) over resamples of its test images.
fn similarity_interval(
    pretrained: &EvalFile,
    last: &Path,
    config: &StudyConfig,
) -> Result<(f64, f64), TableError> {
    let name = eval_file::probe_tensor(Probe::Medical, Layer::Final, Token::Cls);
    let x = matrix(pretrained, &name)?;
    let y = matrix(&EvalFile::open(last).map_err(TableError)?, &name)?;
    let boot = CkaBootstrap::new(x.view(), y.view()).map_err(|e| err(last, e))?;
    let e = &config.evaluation;
    Ok(boot.interval(
        &draw_resamples(x.rows, e.bootstrap_resamples, e.bootstrap_seed),
        LEVEL,
    ))
}

/// A backbone's epoch-0 evaluation on a data set: the file, its CKA
/// references and its metrics (scored by [`Head::epoch0`]); read once, for
/// every method and for `pretrain.parquet`.
struct Epoch0 {
    file: EvalFile,
    refs: References,
    metrics: Rc<EpochMetrics>,
}

/// The study's epoch 0s by file, or why one cannot be used.
type Epoch0s = BTreeMap<PathBuf, Rc<Result<Epoch0, String>>>;

fn read_pretrained(
    path: &Path,
    config: &StudyConfig,
    read: &mut Epoch0s,
) -> Rc<Result<Epoch0, String>> {
    let read_one = || -> Result<Epoch0, TableError> {
        let file = EvalFile::open(path).map_err(TableError)?;
        let refs = References::new(&file)?;
        let metrics = Rc::new(scored_metrics(&file, &refs, config, Head::epoch0(&file)?)?);
        Ok(Epoch0 {
            file,
            refs,
            metrics,
        })
    };
    read.entry(path.to_owned())
        .or_insert_with(|| Rc::new(read_one().map_err(|e| e.0)))
        .clone()
}

/// A run of the config that no summary includes, and why.
struct LeftOut<'a> {
    backbone: &'a str,
    seed: u64,
    why: String,
}

/// What the tables are made from, as it is now: the config, every data
/// set's epoch 0, every run's `run.toml` and the evaluations it commits,
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

/// The runs of one medical data set and method: those with a committed
/// epoch, those left out of the summaries (and why), and the backbones'
/// attention images.
struct DatasetRuns<'a> {
    runs: Vec<Run<'a>>,
    left_out: Vec<LeftOut<'a>>,
    images: Vec<AttentionImage>,
}

fn read_runs<'a>(
    study: &StudyDir,
    config: &'a StudyConfig,
    dataset: &str,
    method: &str,
    epoch0s: &mut Epoch0s,
) -> Result<DatasetRuns<'a>, TableError> {
    let mut runs = Vec::new();
    let mut left_out = Vec::new();
    let mut images = Vec::new();
    let method_config = config
        .method(method)
        .map_err(|e| err(&study.resolved_config(), e))?;
    for backbone in &config.backbones {
        let name = backbone.name.as_str();
        let run_id = |seed| RunId {
            dataset: dataset.to_owned(),
            backbone: name.to_owned(),
            method: method.to_owned(),
            seed,
        };
        let pretrained_path = study.pretrained_eval(dataset, name);
        if !pretrained_path.exists() {
            left_out.extend(config.study.seeds.iter().map(|&seed| LeftOut {
                backbone: name,
                seed,
                why: "not started".into(),
            }));
            continue;
        }
        // An epoch 0 that cannot be used (a damaged file, the NaN features of
        // a diverging backbone) leaves that backbone's runs out, said why,
        // rather than every table of the study.
        let read = read_pretrained(&pretrained_path, config, epoch0s);
        let Epoch0 {
            file: pretrained,
            refs,
            metrics: epoch0,
        } = match read.as_ref() {
            Ok(read) => read,
            Err(e) => {
                for &seed in &config.study.seeds {
                    let run = match RunState::read(&study.run_dir(&run_id(seed))) {
                        Ok(Some(state)) => state.to_string(),
                        Ok(None) => "not started".into(),
                        Err(why) => why,
                    };
                    left_out.push(LeftOut {
                        backbone: name,
                        seed,
                        why: format!("{run}; epoch 0 unusable: {e}"),
                    });
                }
                continue;
            }
        };
        images.extend(attention_images(name, pretrained)?);
        for &seed in &config.study.seeds {
            let state = match RunState::read(&study.run_dir(&run_id(seed))) {
                Ok(Some(state)) => state,
                Ok(None) => {
                    left_out.push(LeftOut {
                        backbone: name,
                        seed,
                        why: "not started".into(),
                    });
                    continue;
                }
                Err(why) => {
                    left_out.push(LeftOut {
                        backbone: name,
                        seed,
                        why,
                    });
                    continue;
                }
            };
            let mut epochs = vec![(0, epoch0.clone())];
            // Epochs not dumped (`dump.epochs`) have no file.
            let read: Result<(), TableError> =
                (1..=state.last_finished_epoch).try_for_each(|epoch| {
                    let path = study.epoch_eval(&run_id(seed), epoch);
                    if path.exists() {
                        let file = EvalFile::open(&path).map_err(TableError)?;
                        epochs.push((epoch, Rc::new(epoch_metrics(&file, refs, config)?)));
                    }
                    Ok(())
                });
            if let Err(e) = read {
                left_out.push(LeftOut {
                    backbone: name,
                    seed,
                    why: format!("unreadable evaluation: {e}"),
                });
                continue;
            }
            if state.status != Status::Finished {
                left_out.push(LeftOut {
                    backbone: name,
                    seed,
                    why: state.to_string(),
                });
            }
            let last_epoch = epochs.last().map_or(0, |e| e.0);
            let similarity_interval = match state.status {
                Status::Finished if last_epoch > 0 => Some(similarity_interval(
                    pretrained,
                    &study.epoch_eval(&run_id(seed), last_epoch),
                    config,
                )?),
                _ => None,
            };
            let alphas = match state.status {
                Status::Finished => method_config.wise_ft.as_deref().unwrap_or_default(),
                _ => &[],
            };
            let wise_ft = alphas
                .iter()
                .map(|&alpha| {
                    let file = EvalFile::open(&study.wise_ft_eval(&run_id(seed), alpha))
                        .map_err(TableError)?;
                    Ok((alpha, epoch_metrics(&file, refs, config)?))
                })
                .collect::<Result<Vec<_>, TableError>>()?;
            if epochs.len() > 1 {
                runs.push(Run {
                    backbone: name,
                    seed,
                    status: state.status,
                    epochs,
                    similarity_interval,
                    wise_ft,
                });
            }
        }
    }
    Ok(DatasetRuns {
        runs,
        left_out,
        images,
    })
}

/// Reads every committed evaluation of the study and writes its tables, each
/// the rows of every medical data set and method with `dataset` and `method`
/// columns first; returns the files written.
pub fn write_study_tables(study_dir: &Path) -> Result<Vec<PathBuf>, TableError> {
    let study = StudyDir::new(study_dir);
    let config = study.read_config().map_err(TableError)?;
    study.check_layout().map_err(|e| err(study_dir, e))?;
    let manifest = inputs_manifest(
        &study,
        &config,
        Manifest::read(&study.tables_manifest()).as_ref(),
    )?;
    let mut tables: Vec<(&str, DataFrame)> = Vec::new();
    let mut epoch0s = Epoch0s::new();
    // (data set, method, backbone, final similarities): the methods' tests.
    let mut finals = Vec::new();
    let facets = config
        .medical_names()
        .into_iter()
        .flat_map(|d| config.methods.iter().map(move |m| (d, m.name.as_str())));
    for (dataset, method) in facets {
        let DatasetRuns {
            runs,
            left_out,
            images,
        } = read_runs(&study, &config, dataset, method, &mut epoch0s)?;
        for l in &left_out {
            eprintln!(
                "{dataset}/{}/{method} seed {}: left out of the summaries: {}",
                l.backbone, l.seed, l.why
            );
        }
        if runs.is_empty() {
            continue;
        }
        finals.extend(config.backbones.iter().map(|b| {
            (
                dataset,
                method,
                b.name.as_str(),
                final_similarities(&runs, &b.name),
            )
        }));
        let frames = [
            (table_file::EPOCHS, epochs_table(&runs, &config)),
            (table_file::LAYERS, layers_table(&runs)),
            (
                table_file::BACKBONES,
                backbones_table(&runs, &left_out, &config),
            ),
            (table_file::FITS, fits_table(&runs, &config)),
            (table_file::SPACE, space_table(&runs, &config)),
            (table_file::COMPARISONS, comparisons_table(&runs, &config)),
            (table_file::VERDICTS, verdicts_table(&runs, &config)),
            (table_file::WISE_FT, wise_ft_table(&runs, &config)),
            (table_file::RELIABILITY, reliability_table(&runs)),
            (table_file::ATTENTION, attention_table(&runs, &images)),
            (
                table_file::ATTENTION_IMAGES,
                attention_images_table(&images),
            ),
        ];
        for (i, (name, frame)) in frames.into_iter().enumerate() {
            let at = |e: PolarsError| err(&study.table(name), e);
            let mut frame = frame.map_err(at)?;
            frame
                .insert_column(0, col(col::DATASET, vec![dataset; frame.height()]))
                .map_err(at)?;
            frame
                .insert_column(1, col(col::METHOD, vec![method; frame.height()]))
                .map_err(at)?;
            match tables.get_mut(i) {
                Some((_, all)) => {
                    all.vstack_mut(&frame).map_err(at)?;
                }
                None => tables.push((name, frame)),
            }
        }
    }
    if tables.is_empty() {
        return Err(err(study_dir, "no finished epoch in any run yet"));
    }
    let path = study.table(table_file::METHOD_COMPARISONS);
    tables.push((
        table_file::METHOD_COMPARISONS,
        method_comparisons_table(&finals, &config).map_err(|e| err(&path, e))?,
    ));
    let path = study.table(table_file::PRETRAIN);
    tables.push((
        table_file::PRETRAIN,
        pretrain_table(&study, &config, &mut epoch0s)?
            .into_frame()
            .map_err(|e| err(&path, e))?,
    ));
    let path = study.table(table_file::PRETRAIN_EPOCHS);
    tables.push((
        table_file::PRETRAIN_EPOCHS,
        pretrain_epochs_table(&study, &config)?.map_err(|e| err(&path, e))?,
    ));
    // A test stands here to commit a run while the tables are computed.
    crash::pause("tables-computed");
    let tables_dir = study.tables_dir();
    let _lock = DirLock::wait(&tables_dir).map_err(|e| err(&tables_dir, e))?;
    remove_leftovers(&tables_dir).map_err(|e| err(&tables_dir, e))?;
    Manifest::remove(&study.tables_manifest()).map_err(|e| err(&study.tables_manifest(), e))?;
    let mut written = Vec::new();
    for (name, mut frame) in tables {
        let path = study.table(name);
        frame.rechunk_mut();
        sim_study::write_atomic_with(&path, |w| {
            ParquetWriter::new(w)
                .finish(&mut frame)
                .map(|_| ())
                .map_err(std::io::Error::other)
        })
        .map_err(|e| err(&path, e))?;
        written.push(path);
    }
    // Last: the tables vouch for these inputs only once all are written.
    manifest
        .write(&study.tables_manifest())
        .map_err(|e| err(&study.tables_manifest(), e))?;
    Ok(written)
}

fn col<T, P: ?Sized>(name: &str, values: T) -> Column
where
    Series: NamedFrom<T, P>,
{
    Column::from(Series::new(name.into(), values))
}

fn epochs_table(runs: &[Run<'_>], config: &StudyConfig) -> PolarsResult<DataFrame> {
    let rows: Vec<(&Run<'_>, u32, &EpochMetrics)> = runs
        .iter()
        .flat_map(|r| r.epochs.iter().map(move |(e, m)| (r, *e, &**m)))
        .collect();
    let mut columns = vec![
        col(
            col::BACKBONE,
            rows.iter().map(|(r, _, _)| r.backbone).collect::<Vec<_>>(),
        ),
        col(
            col::SEED,
            rows.iter().map(|(r, _, _)| r.seed).collect::<Vec<u64>>(),
        ),
        col(
            col::EPOCH,
            rows.iter().map(|(_, e, _)| *e).collect::<Vec<u32>>(),
        ),
        col(
            col::STATUS,
            rows.iter()
                .map(|(r, _, _)| status_name(r.status))
                .collect::<Vec<_>>(),
        ),
        col(
            col::HEAD,
            rows.iter().map(|(_, _, m)| m.head).collect::<Vec<_>>(),
        ),
    ];
    columns.extend(metric_columns(
        &rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        config,
    ));
    DataFrame::new_infer_height(columns)
}

/// The columns of one model's evaluation, shared by `epochs.parquet` and
/// `wise_ft.parquet`: accuracy … similarity, `knn_top1` and `knn_top1_k<k>`.
fn metric_columns(models: &[&EpochMetrics], config: &StudyConfig) -> Vec<Column> {
    let f = |get: fn(&EpochMetrics) -> f64| models.iter().map(|m| get(m)).collect::<Vec<f64>>();
    let report = config
        .evaluation
        .knn_k
        .iter()
        .position(|&k| k == config.evaluation.knn_report_k)
        .expect("validated");
    let mut columns = vec![
        col(col::ACCURACY, f(|m| m.accuracy)),
        col(col::BALANCED_ACCURACY, f(|m| m.balanced_accuracy)),
        col(col::MACRO_F1, f(|m| m.macro_f1)),
        col(col::ECE, f(|m| m.ece)),
        col(col::MCE, f(|m| m.mce)),
        col(col::ADAPTIVE_ECE, f(|m| m.adaptive_ece)),
        col(col::SIMILARITY, f(Run::similarity)),
        col(
            col::KNN_TOP1,
            models.iter().map(|m| m.knn_at(report)).collect::<Vec<_>>(),
        ),
    ];
    for (i, &k) in config.evaluation.knn_k.iter().enumerate() {
        columns.push(col(
            &col::knn_top1_at(k),
            models.iter().map(|m| m.knn_at(i)).collect::<Vec<_>>(),
        ));
    }
    columns
}

/// Per finished run of a method with `wise_ft`: its WiSE-FT backbones by
/// increasing α, then α = 1, the last epoch itself.
fn wise_ft_table(runs: &[Run<'_>], config: &StudyConfig) -> PolarsResult<DataFrame> {
    let rows: Vec<(&Run<'_>, f64, &EpochMetrics)> = runs
        .iter()
        .filter(|r| !r.wise_ft.is_empty())
        .flat_map(|r| {
            r.wise_ft
                .iter()
                .map(move |(a, m)| (r, *a, m))
                .chain(std::iter::once((r, 1.0, r.last())))
        })
        .collect();
    let mut columns = vec![
        col(
            col::BACKBONE,
            rows.iter().map(|(r, _, _)| r.backbone).collect::<Vec<_>>(),
        ),
        col(
            col::SEED,
            rows.iter().map(|(r, _, _)| r.seed).collect::<Vec<u64>>(),
        ),
        col(
            col::ALPHA,
            rows.iter().map(|(_, a, _)| *a).collect::<Vec<f64>>(),
        ),
    ];
    columns.extend(metric_columns(
        &rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        config,
    ));
    DataFrame::new_infer_height(columns)
}

fn layers_table(runs: &[Run<'_>]) -> PolarsResult<DataFrame> {
    let (mut backbone, mut seed, mut epoch, mut layer, mut is_final) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut token, mut probe, mut cka, mut cka_debiased) = (vec![], vec![], vec![], vec![]);
    for r in runs {
        // The final norm is numbered after the last block.
        let blocks = r.epochs[0].1.cka.keys().filter_map(|(_, l, _)| match l {
            Layer::Index(i) => Some(*i as u32),
            Layer::Final => None,
        });
        let final_index = blocks.max().map_or(0, |m| m + 1);
        for (e, m) in &r.epochs {
            for (&(p, l, t), &(biased, debiased)) in &m.cka {
                backbone.push(r.backbone);
                seed.push(r.seed);
                epoch.push(*e);
                layer.push(match l {
                    Layer::Index(i) => i as u32,
                    Layer::Final => final_index,
                });
                is_final.push(l == Layer::Final);
                token.push(t.name());
                probe.push(p.name());
                cka.push(biased);
                cka_debiased.push(debiased);
            }
        }
    }
    DataFrame::new_infer_height(vec![
        col(col::BACKBONE, backbone),
        col(col::SEED, seed),
        col(col::EPOCH, epoch),
        col(col::LAYER, layer),
        col(col::IS_FINAL, is_final),
        col(col::TOKEN, token),
        col(col::PROBE, probe),
        col(col::CKA, cka),
        col(col::CKA_DEBIASED, cka_debiased),
    ])
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Running => col::STATUS_UNFINISHED,
        Status::Finished => col::STATUS_FINISHED,
        Status::Failed => col::STATUS_FAILED,
    }
}

/// Mean and sample standard deviation (0 for a single run); none without runs.
fn mean_std(v: &[f64]) -> (Option<f64>, Option<f64>) {
    if v.is_empty() {
        return (None, None);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (Some(mean), Some(var.sqrt()))
}

/// Per backbone, over its finished runs (`runs`), with the runs left out
/// counted (`runs_left_out`) and explained (`left_out`: "seed 3: failed after
/// epoch 1: …; seed 4: not started").
fn backbones_table(
    runs: &[Run<'_>],
    left_out: &[LeftOut<'_>],
    config: &StudyConfig,
) -> PolarsResult<DataFrame> {
    let report = config
        .evaluation
        .knn_k
        .iter()
        .position(|&k| k == config.evaluation.knn_report_k)
        .expect("validated");
    let runs: Vec<&Run<'_>> = runs.iter().filter(|r| r.finished()).collect();
    let names: Vec<&str> = config
        .backbones
        .iter()
        .map(|b| b.name.as_str())
        .filter(|n| {
            runs.iter().any(|r| r.backbone == *n) || left_out.iter().any(|l| l.backbone == *n)
        })
        .collect();
    let left: Vec<Vec<&LeftOut<'_>>> = names
        .iter()
        .map(|n| left_out.iter().filter(|l| l.backbone == *n).collect())
        .collect();
    // A run whose last evaluation left the natural images out (a `dump.epochs`
    // without the last epoch) has no k-NN after: left out of those means.
    type RunMetric = fn(&Run<'_>, usize) -> Option<f64>;
    let metrics: [(&str, RunMetric); 7] = [
        (col::ACCURACY, |r, _| Some(r.last().accuracy)),
        (col::BALANCED_ACCURACY, |r, _| {
            Some(r.last().balanced_accuracy)
        }),
        (col::MACRO_F1, |r, _| Some(r.last().macro_f1)),
        (col::ECE, |r, _| Some(r.last().ece)),
        (col::SIMILARITY, |r, _| Some(Run::similarity(r.last()))),
        (col::KNN_BEFORE, |r, k| r.epochs[0].1.knn_at(k)),
        (col::KNN_AFTER, |r, k| r.last().knn_at(k)),
    ];
    let mut columns = vec![
        col(col::BACKBONE, names.clone()),
        col(
            col::RUNS,
            names
                .iter()
                .map(|n| runs.iter().filter(|r| r.backbone == *n).count() as u32)
                .collect::<Vec<_>>(),
        ),
        col(
            col::RUNS_LEFT_OUT,
            left.iter().map(|l| l.len() as u32).collect::<Vec<_>>(),
        ),
        col(
            col::LEFT_OUT,
            left.iter()
                .map(|l| {
                    l.iter()
                        .map(|l| format!("seed {}: {}", l.seed, l.why))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .collect::<Vec<_>>(),
        ),
    ];
    for (metric, get) in metrics {
        let stats: Vec<(Option<f64>, Option<f64>)> = names
            .iter()
            .map(|n| {
                mean_std(
                    &runs
                        .iter()
                        .filter(|r| r.backbone == *n)
                        .filter_map(|r| get(r, report))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        columns.push(col(
            &col::mean(metric),
            stats.iter().map(|s| s.0).collect::<Vec<_>>(),
        ));
        columns.push(col(
            &col::std(metric),
            stats.iter().map(|s| s.1).collect::<Vec<_>>(),
        ));
        let intervals: Vec<Option<(f64, f64)>> = names
            .iter()
            .map(|n| {
                let values: Vec<f64> = runs
                    .iter()
                    .filter(|r| r.backbone == *n)
                    .filter_map(|r| get(r, report))
                    .collect();
                let e = &config.evaluation;
                (!values.is_empty()).then(|| {
                    mean_interval(
                        &values,
                        &draw_resamples(values.len(), e.bootstrap_resamples, e.bootstrap_seed),
                        LEVEL,
                    )
                })
            })
            .collect();
        let [low, high] = col::ci(metric);
        columns.push(col(
            &low,
            intervals.iter().map(|i| i.map(|i| i.0)).collect::<Vec<_>>(),
        ));
        columns.push(col(
            &high,
            intervals.iter().map(|i| i.map(|i| i.1)).collect::<Vec<_>>(),
        ));
    }
    DataFrame::new_infer_height(columns)
}

/// Figure 5 / Table 2: every (run, epoch, layer) point's medical CLS CKA
/// against that epoch's calibration, per backbone and metric.
/// Figure 5's fits, each twice: over the fine-tuned epochs (≥ 1: the fit
/// finding 2 reads) and with epoch 0 added (its similarity is 1 at every
/// layer by definition, its calibration that of [`Head::epoch0`]).
fn fits_table(runs: &[Run<'_>], config: &StudyConfig) -> PolarsResult<DataFrame> {
    let metrics: [(&str, MetricOf); 3] = [
        (col::ECE, |m| m.ece),
        (col::MCE, |m| m.mce),
        (col::ADAPTIVE_ECE, |m| m.adaptive_ece),
    ];
    let (mut backbone, mut metric, mut points, mut status) = (vec![], vec![], vec![], vec![]);
    let mut values: [Vec<Option<f64>>; 8] = Default::default();
    let (mut n_points, mut n_levels) = (vec![], vec![]);
    for b in &config.backbones {
        for (name, get) in metrics {
            for (which, first_epoch) in [(col::POINTS_FINE_TUNED, 1), (col::POINTS_WITH_EPOCH0, 0)]
            {
                let (mut sim, mut y) = (vec![], vec![]);
                for r in runs.iter().filter(|r| r.backbone == b.name && r.finished()) {
                    for (_, m) in r.epochs.iter().filter(|(e, _)| *e >= first_epoch) {
                        for (&(p, _, t), &(biased, _)) in &m.cka {
                            if p == Probe::Medical && t == Token::Cls {
                                sim.push(biased);
                                y.push(get(m));
                            }
                        }
                    }
                }
                if sim.is_empty() {
                    continue;
                }
                backbone.push(b.name.as_str());
                metric.push(name);
                points.push(which);
                n_points.push(sim.len() as u32);
                // A fit that cannot be made (too few levels, no spread) is a row
                // that says why, with empty numbers, not a NaN.
                let fit = level_fit(&sim, &y, config.evaluation.fit_levels);
                let raw = (pearson(&sim, &y), spearman(&sim, &y));
                n_levels.push(fit.as_ref().map_or(0, |f| f.levels.len() as u32));
                let row = match &fit {
                    Ok(f) => [
                        Some(f.slope),
                        Some(f.intercept),
                        Some(f.r),
                        Some(f.r2),
                        Some(f.slope_ci_low),
                        Some(f.slope_ci_high),
                    ],
                    Err(_) => [None; 6],
                };
                for (v, x) in values.iter_mut().zip(
                    row.into_iter()
                        .chain([raw.0.clone().ok(), raw.1.clone().ok()]),
                ) {
                    v.push(x);
                }
                status.push(
                    fit.as_ref()
                        .map_or_else(|e| e.to_string(), |_| "ok".to_string()),
                );
            }
        }
    }
    let [slope, intercept, r, r2, lo, hi, pr, sr] = values;
    DataFrame::new_infer_height(vec![
        col(col::BACKBONE, backbone),
        col(col::METRIC, metric),
        col(col::POINTS, points),
        col(col::SLOPE, slope),
        col(col::INTERCEPT, intercept),
        col(col::R, r),
        col(col::R2, r2),
        col(col::SLOPE_CI_LOW, lo),
        col(col::SLOPE_CI_HIGH, hi),
        col(col::PEARSON_RAW, pr),
        col(col::SPEARMAN_RAW, sr),
        col(col::N_POINTS, n_points),
        col(col::N_LEVELS, n_levels),
        col(col::FIT_STATUS, status),
    ])
}

fn space_table(runs: &[Run<'_>], config: &StudyConfig) -> PolarsResult<DataFrame> {
    let points: Vec<RunPoint> = runs
        .iter()
        .filter(|r| r.finished())
        .map(|r| RunPoint {
            backbone: r.backbone.to_owned(),
            seed: r.seed,
            similarity: Run::similarity(r.last()),
            accuracy: r.last().accuracy,
        })
        .collect();
    let e = &config.evaluation;
    let space = similarity_space(&points, e.similarity_threshold, e.accuracy_tolerance)
        .map_err(|m| PolarsError::ComputeError(m.to_string().into()))?;
    let intervals: Vec<Option<(f64, f64)>> = runs
        .iter()
        .filter(|r| r.finished())
        .map(|r| r.similarity_interval)
        .collect();
    DataFrame::new_infer_height(vec![
        col(
            col::BACKBONE,
            space
                .iter()
                .map(|p| p.backbone.as_str())
                .collect::<Vec<_>>(),
        ),
        col(col::SEED, space.iter().map(|p| p.seed).collect::<Vec<_>>()),
        col(
            col::SIMILARITY,
            space.iter().map(|p| p.similarity).collect::<Vec<_>>(),
        ),
        col(
            col::SIMILARITY_CI_LOW,
            intervals.iter().map(|i| i.map(|i| i.0)).collect::<Vec<_>>(),
        ),
        col(
            col::SIMILARITY_CI_HIGH,
            intervals.iter().map(|i| i.map(|i| i.1)).collect::<Vec<_>>(),
        ),
        col(
            col::ACCURACY,
            space.iter().map(|p| p.accuracy).collect::<Vec<_>>(),
        ),
        col(
            col::DIVERGENCE,
            space.iter().map(|p| p.divergence).collect::<Vec<_>>(),
        ),
        col(
            col::REFERENCE_SEED,
            space.iter().map(|p| p.reference_seed).collect::<Vec<_>>(),
        ),
        col(
            col::IN_SPACE,
            space.iter().map(|p| p.in_space).collect::<Vec<_>>(),
        ),
    ])
}

/// One permutation test between two groups of runs (`a` the group whose
/// mean final similarity is higher): does a keep more similarity than b?
struct Comparison<'a> {
    a: &'a str,
    b: &'a str,
    runs: [u32; 2],
    means: [f64; 2],
    test: PermutationTest,
}

/// Every pair of the non-empty `groups` (name, runs' final similarities),
/// in their order: the one-sided permutation test of "the group with the
/// higher mean keeps more similarity than the other".
fn compare_groups<'a>(
    groups: &[(&'a str, Vec<f64>)],
    config: &StudyConfig,
) -> PolarsResult<Vec<Comparison<'a>>> {
    let present: Vec<&(&str, Vec<f64>)> = groups.iter().filter(|(_, v)| !v.is_empty()).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut rows = Vec::new();
    for (i, first) in present.iter().enumerate() {
        for second in &present[i + 1..] {
            let (a, b) = if mean(&second.1) > mean(&first.1) {
                (second, first)
            } else {
                (first, second)
            };
            let e = &config.evaluation;
            let test = permutation_test(&a.1, &b.1, e.permutation_resamples, e.bootstrap_seed)
                .map_err(|m| PolarsError::ComputeError(m.to_string().into()))?;
            rows.push(Comparison {
                a: a.0,
                b: b.0,
                runs: [a.1.len() as u32, b.1.len() as u32],
                means: [mean(&a.1), mean(&b.1)],
                test,
            });
        }
    }
    Ok(rows)
}

/// The columns of a comparisons table, the groups' names under `names`
/// (`backbone_a`, `backbone_b` or `method_a`, `method_b`).
fn comparison_columns(names: [&str; 2], rows: &[Comparison<'_>]) -> Vec<Column> {
    vec![
        col(names[0], rows.iter().map(|r| r.a).collect::<Vec<_>>()),
        col(names[1], rows.iter().map(|r| r.b).collect::<Vec<_>>()),
        col(
            col::RUNS_A,
            rows.iter().map(|r| r.runs[0]).collect::<Vec<_>>(),
        ),
        col(
            col::RUNS_B,
            rows.iter().map(|r| r.runs[1]).collect::<Vec<_>>(),
        ),
        col(
            col::SIMILARITY_A,
            rows.iter().map(|r| r.means[0]).collect::<Vec<_>>(),
        ),
        col(
            col::SIMILARITY_B,
            rows.iter().map(|r| r.means[1]).collect::<Vec<_>>(),
        ),
        col(
            col::DIFFERENCE,
            rows.iter().map(|r| r.test.difference).collect::<Vec<_>>(),
        ),
        col(
            col::P_VALUE,
            rows.iter().map(|r| r.test.p_value).collect::<Vec<_>>(),
        ),
        col(
            col::EXACT,
            rows.iter().map(|r| r.test.exact).collect::<Vec<_>>(),
        ),
        col(
            col::PERMUTATIONS,
            rows.iter()
                .map(|r| r.test.permutations as u64)
                .collect::<Vec<_>>(),
        ),
    ]
}

/// The finished runs' final similarities of one backbone.
fn final_similarities(runs: &[Run<'_>], backbone: &str) -> Vec<f64> {
    runs.iter()
        .filter(|r| r.finished() && r.backbone == backbone)
        .map(|r| Run::similarity(r.last()))
        .collect()
}

/// Per pair of backbones with finished runs: does one keep more similarity
/// than the other (one data set and method)?
fn comparisons_table(runs: &[Run<'_>], config: &StudyConfig) -> PolarsResult<DataFrame> {
    let groups: Vec<(&str, Vec<f64>)> = config
        .backbones
        .iter()
        .map(|b| (b.name.as_str(), final_similarities(runs, &b.name)))
        .collect();
    DataFrame::new_infer_height(comparison_columns(
        [col::BACKBONE_A, col::BACKBONE_B],
        &compare_groups(&groups, config)?,
    ))
}

/// Per data set, backbone and pair of methods with finished runs: does one
/// method keep more similarity than the other? `finals` holds every
/// (data set, method, backbone)'s final similarities.
fn method_comparisons_table(
    finals: &[(&str, &str, &str, Vec<f64>)],
    config: &StudyConfig,
) -> PolarsResult<DataFrame> {
    let (mut datasets, mut backbones, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    for dataset in config.medical_names() {
        for backbone in &config.backbones {
            let groups: Vec<(&str, Vec<f64>)> = finals
                .iter()
                .filter(|(d, _, b, _)| *d == dataset && *b == backbone.name)
                .map(|(_, m, _, v)| (*m, v.clone()))
                .collect();
            for row in compare_groups(&groups, config)? {
                datasets.push(dataset);
                backbones.push(backbone.name.as_str());
                rows.push(row);
            }
        }
    }
    let mut columns = vec![col(col::DATASET, datasets), col(col::BACKBONE, backbones)];
    columns.extend(comparison_columns([col::METHOD_A, col::METHOD_B], &rows));
    DataFrame::new_infer_height(columns)
}

/// The measures a verdict is read under: biased CKA on the CLS token (the
/// study's similarity), debiased CKA on it, and biased CKA on the mean of
/// the patch tokens.
const VERDICT_MEASURES: [(Estimator, Token); 3] = [
    (Estimator::Biased, Token::Cls),
    (Estimator::Debiased, Token::Cls),
    (Estimator::Biased, Token::PatchMean),
];

/// An epoch's medical-probe CKA to epoch 0 at `layer` under a measure.
fn cka_at(m: &EpochMetrics, layer: Layer, (estimator, token): (Estimator, Token)) -> Option<f64> {
    let (biased, debiased) = *m.cka.get(&(Probe::Medical, layer, token))?;
    Some(if estimator == Estimator::Debiased {
        debiased
    } else {
        biased
    })
}

/// One row of `verdicts.parquet` (one data set and method).
struct VerdictRow<'a> {
    finding: u32,
    measure: &'static str,
    token: &'static str,
    backbone: &'a str,
    versus: Option<&'a str>,
    certainty: Certainty,
}

/// Per measure and backbone with finished runs, findings 1 and 2; per pair
/// of a supervised and a self-supervised backbone, finding 3 (k-NN top-1,
/// no similarity measure). Each with the share of resamples of the runs in
/// which it holds ([`crate::findings`]). A backbone's runs are resampled
/// with the bootstrap seed; finding 3's self-supervised side with the next
/// seed, so the two groups are drawn independently.
fn verdicts_table(runs: &[Run<'_>], config: &StudyConfig) -> PolarsResult<DataFrame> {
    let e = &config.evaluation;
    let report = e
        .knn_k
        .iter()
        .position(|&k| k == e.knn_report_k)
        .expect("validated");
    let finished = |b: &str| {
        runs.iter()
            .filter(|r| r.finished() && r.backbone == b)
            .collect::<Vec<_>>()
    };
    let compute = |m: Result<Certainty, MetricError>| {
        m.map_err(|m| PolarsError::ComputeError(m.to_string().into()))
    };
    let mut rows = Vec::new();
    for b in config.backbones.iter().map(|b| b.name.as_str()) {
        let runs = finished(b);
        if runs.is_empty() {
            continue;
        }
        let resamples = draw_resamples(runs.len(), e.bootstrap_resamples, e.bootstrap_seed);
        for measure in VERDICT_MEASURES {
            let (measure_name, token) = (
                if measure.0 == Estimator::Debiased {
                    col::CKA_DEBIASED
                } else {
                    col::CKA
                },
                measure.1.name(),
            );
            let row = |finding, certainty| VerdictRow {
                finding,
                measure: measure_name,
                token,
                backbone: b,
                versus: None,
                certainty,
            };
            // Tables of evaluations without this measure's tensors have no rows for it.
            let Some(points) = runs
                .iter()
                .map(|r| {
                    Some(RunPoint {
                        backbone: b.to_owned(),
                        seed: r.seed,
                        similarity: cka_at(r.last(), Layer::Final, measure)?,
                        accuracy: r.last().accuracy,
                    })
                })
                .collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            rows.push(row(
                1,
                compute(runs_beside_best(
                    &points,
                    e.similarity_threshold,
                    e.accuracy_tolerance,
                    &resamples,
                ))?,
            ));
            let fitted: Vec<Vec<(f64, f64)>> = runs
                .iter()
                .map(|r| {
                    r.epochs
                        .iter()
                        .filter(|(epoch, _)| *epoch >= 1)
                        .flat_map(|(_, m)| {
                            m.cka
                                .keys()
                                .filter(|(p, _, t)| *p == Probe::Medical && *t == measure.1)
                                .filter_map(|&(_, layer, _)| {
                                    Some((cka_at(m, layer, measure)?, m.ece))
                                })
                                .collect::<Vec<_>>()
                        })
                        .collect()
                })
                .collect();
            // A fit that cannot be made has no verdict row; fits.parquet says why.
            if let Ok(c) = calibration_follows_similarity(&fitted, e.fit_levels, &resamples) {
                rows.push(row(2, c));
            }
        }
    }
    let sides = |p: Paradigm| {
        config
            .backbones
            .iter()
            .filter(move |b| b.paradigm() == p)
            .map(|b| b.name.as_str())
            .filter(|b| !finished(b).is_empty())
    };
    for s in sides(Paradigm::Supervised) {
        for o in sides(Paradigm::SelfSupervised) {
            let drops = |b: &str| {
                finished(b)
                    .iter()
                    .filter_map(|r| Some(r.epochs[0].1.knn_at(report)? - r.last().knn_at(report)?))
                    .collect::<Vec<f64>>()
            };
            let (s_drops, o_drops) = (drops(s), drops(o));
            if s_drops.is_empty() || o_drops.is_empty() {
                continue; // no k-NN after fine-tuning: nothing to compare
            }
            let resamples = [
                draw_resamples(s_drops.len(), e.bootstrap_resamples, e.bootstrap_seed),
                draw_resamples(
                    o_drops.len(),
                    e.bootstrap_resamples,
                    e.bootstrap_seed.wrapping_add(1),
                ),
            ];
            let certainty = compute(forgets_less(
                &s_drops,
                &o_drops,
                [&resamples[0], &resamples[1]],
            ))?;
            rows.push(VerdictRow {
                finding: 3,
                measure: col::KNN_TOP1,
                token: Token::Cls.name(),
                backbone: s,
                versus: Some(o),
                certainty,
            });
        }
    }
    let c = |f: fn(&VerdictRow<'_>) -> Option<f64>| rows.iter().map(f).collect::<Vec<_>>();
    DataFrame::new_infer_height(vec![
        col(
            col::FINDING,
            rows.iter().map(|r| r.finding).collect::<Vec<_>>(),
        ),
        col(
            col::MEASURE,
            rows.iter().map(|r| r.measure).collect::<Vec<_>>(),
        ),
        col(col::TOKEN, rows.iter().map(|r| r.token).collect::<Vec<_>>()),
        col(
            col::BACKBONE,
            rows.iter().map(|r| r.backbone).collect::<Vec<_>>(),
        ),
        col(
            col::VERSUS,
            rows.iter().map(|r| r.versus).collect::<Vec<_>>(),
        ),
        col(
            col::ESTIMATE,
            rows.iter()
                .map(|r| r.certainty.estimate)
                .collect::<Vec<_>>(),
        ),
        col(
            col::ESTIMATE_CI_LOW,
            c(|r| r.certainty.interval.map(|i| i.0)),
        ),
        col(
            col::ESTIMATE_CI_HIGH,
            c(|r| r.certainty.interval.map(|i| i.1)),
        ),
        col(
            col::SHARE,
            rows.iter().map(|r| r.certainty.share).collect::<Vec<_>>(),
        ),
        col(
            col::RESAMPLES,
            rows.iter()
                .map(|r| r.certainty.resamples as u32)
                .collect::<Vec<_>>(),
        ),
    ])
}

/// `pretrain.parquet`'s rows: per data set and backbone with an epoch 0.
#[derive(Default)]
struct PretrainRows<'a> {
    dataset: Vec<&'a str>,
    backbone: Vec<&'a str>,
    objective: Vec<&'a str>,
    epochs: Vec<Option<u32>>,
    minutes: Vec<Option<f64>>,
    images_per_s: Vec<Option<f64>>,
    loss: Vec<Option<f64>>,
    knn: Vec<f64>,
    probe_balanced: Vec<Option<f64>>,
    probe_accuracy: Vec<Option<f64>>,
    effective_prototypes: Vec<Option<f64>>,
}

impl PretrainRows<'_> {
    fn into_frame(self) -> PolarsResult<DataFrame> {
        DataFrame::new_infer_height(vec![
            col(col::DATASET, self.dataset),
            col(col::BACKBONE, self.backbone),
            col(col::OBJECTIVE, self.objective),
            col(col::PRETRAIN_EPOCHS, self.epochs),
            col(col::PRETRAIN_MINUTES, self.minutes),
            col(col::PRETRAIN_IMAGES_PER_S, self.images_per_s),
            col(col::PRETRAIN_LOSS, self.loss),
            col(col::KNN_TOP1, self.knn),
            col(col::PROBE_BALANCED_ACCURACY, self.probe_balanced),
            col(col::PROBE_ACCURACY, self.probe_accuracy),
            col(col::EFFECTIVE_PROTOTYPES, self.effective_prototypes),
        ])
    }
}

/// A backbone's pretrain folder as the study folder `study` sees it (its
/// `pretrained/` sibling, wherever the study moved).
fn pretrain_state(
    study: &StudyDir,
    config: &StudyConfig,
    b: &sim_study::config::BackboneConfig,
) -> Result<Option<sim_study::pretrain_state::PretrainState>, TableError> {
    use sim_study::layout::pretrain_dir;
    use sim_study::pretrain_state::PretrainState;
    let Some(p) = b.pretrain() else {
        return Ok(None);
    };
    let mut located = config.clone();
    located.study.output_dir = Some(study.root().to_owned());
    PretrainState::read(&pretrain_dir(&located, b, p)).map_err(TableError)
}

/// The learning curves: per backbone the tool pre-trained, one row per
/// finished epoch of its `pretrain.toml` (loss, time, DINO's teacher
/// entropy and prototypes in use, and k-NN top-1 where measured).
fn pretrain_epochs_table(
    study: &StudyDir,
    config: &StudyConfig,
) -> Result<PolarsResult<DataFrame>, TableError> {
    let (mut backbone, mut objective, mut epoch) = (Vec::new(), Vec::new(), Vec::new());
    let (mut loss, mut seconds, mut entropy, mut prototypes, mut knn) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for b in &config.backbones {
        let Some(state) = pretrain_state(study, config, b)? else {
            continue;
        };
        for h in &state.history {
            backbone.push(b.name.as_str());
            objective.push(state.objective.name());
            epoch.push(h.epoch);
            loss.push(h.loss);
            seconds.push(h.seconds);
            entropy.push(h.teacher_entropy);
            prototypes.push(h.effective_prototypes);
            knn.push(h.knn_top1);
        }
    }
    Ok(DataFrame::new_infer_height(vec![
        col(col::BACKBONE, backbone),
        col(col::OBJECTIVE, objective),
        col(col::EPOCH, epoch),
        col(col::PRETRAIN_LOSS, loss),
        col(col::SECONDS, seconds),
        col(col::TEACHER_ENTROPY, entropy),
        col(col::EFFECTIVE_PROTOTYPES, prototypes),
        col(col::KNN_TOP1, knn),
    ]))
}

/// What each backbone knows before fine-tuning: k-NN top-1 on the natural
/// images (k = `knn_report_k`) and a linear probe on the medical task (epoch
/// 0 scored by the probe's head: [`Head::epoch0`]), from its epoch-0
/// evaluation; how the tool pre-trained it, from its pretrain folder's
/// `pretrain.toml` (beside the study folder).
fn pretrain_table<'a>(
    study: &StudyDir,
    config: &'a StudyConfig,
    epoch0s: &mut Epoch0s,
) -> Result<PretrainRows<'a>, TableError> {
    let mut rows = PretrainRows::default();
    for dataset in config.medical_names() {
        for b in &config.backbones {
            let path = study.pretrained_eval(dataset, &b.name);
            if !path.exists() {
                continue;
            }
            // An epoch 0 that cannot be measured (the NaN features of a
            // diverging backbone) leaves that row out, as the other tables do.
            let read = read_pretrained(&path, config, epoch0s);
            let metrics = match read.as_ref() {
                Ok(epoch0) => &epoch0.metrics,
                Err(e) => {
                    eprintln!(
                        "{dataset}/{}: left out of {}: {e}",
                        b.name,
                        table_file::PRETRAIN
                    );
                    continue;
                }
            };
            let at_report_k = config
                .evaluation
                .knn_k
                .iter()
                .position(|&k| k == config.evaluation.knn_report_k)
                .expect("knn_report_k is one of knn_k");
            let Some(knn) = metrics.knn_at(at_report_k) else {
                eprintln!(
                    "{dataset}/{}: left out of {}: its epoch 0 has no natural images",
                    b.name,
                    table_file::PRETRAIN
                );
                continue;
            };
            let probe = (metrics.head == col::HEAD_PROBE)
                .then_some((metrics.accuracy, metrics.balanced_accuracy));
            let state = pretrain_state(study, config, b)?;
            let last = state.as_ref().and_then(|s| s.history.last());
            rows.dataset.push(dataset);
            rows.backbone.push(&b.name);
            rows.objective.push(
                b.pretrain()
                    .map_or(col::OBJECTIVE_CHECKPOINT, |p| p.objective.name()),
            );
            rows.epochs.push(b.pretrain().map(|p| p.epochs));
            rows.minutes.push(
                state
                    .as_ref()
                    .filter(|s| !s.history.is_empty())
                    .map(|s| s.minutes()),
            );
            rows.images_per_s
                .push(state.as_ref().filter(|s| !s.history.is_empty()).map(|s| {
                    s.history.iter().map(|h| h.images_per_s).sum::<f64>() / s.history.len() as f64
                }));
            rows.loss.push(last.map(|h| h.loss));
            rows.knn.push(knn);
            rows.probe_balanced.push(probe.map(|p| p.1));
            rows.probe_accuracy.push(probe.map(|p| p.0));
            rows.effective_prototypes
                .push(last.and_then(|h| h.effective_prototypes));
        }
    }
    Ok(rows)
}

/// The models Figures 3 and the reliability diagram compare: each backbone's
/// pre-trained model (epoch 0, seed null) and every finished run's final one.
fn compared_models<'r, 'a>(
    runs: &'r [Run<'a>],
) -> Vec<(&'a str, Option<u64>, u32, &'r EpochMetrics)> {
    let mut models = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in runs.iter().filter(|r| r.finished()) {
        if seen.insert(r.backbone) {
            models.push((r.backbone, None, 0, &*r.epochs[0].1));
        }
        let (epoch, last) = r.epochs.last().expect("epoch 0 is always there");
        models.push((r.backbone, Some(r.seed), *epoch, &**last));
    }
    models
}

/// The reliability diagram's bins (equal-width, `evaluation.ece_bins`).
fn reliability_table(runs: &[Run<'_>]) -> PolarsResult<DataFrame> {
    let (mut backbone, mut seed, mut epoch, mut bin) = (vec![], vec![], vec![], vec![]);
    let (mut low, mut high, mut count, mut accuracy, mut confidence) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (b, s, e, m) in compared_models(runs) {
        for (i, bin_stats) in m.reliability.iter().enumerate() {
            backbone.push(b);
            seed.push(s);
            epoch.push(e);
            bin.push(i as u32);
            low.push(bin_stats.lower);
            high.push(bin_stats.upper);
            count.push(bin_stats.count as u32);
            let filled = bin_stats.count > 0;
            accuracy.push(filled.then_some(bin_stats.accuracy));
            confidence.push(filled.then_some(bin_stats.confidence));
        }
    }
    DataFrame::new_infer_height(vec![
        col(col::BACKBONE, backbone),
        col(col::SEED, seed),
        col(col::EPOCH, epoch),
        col(col::BIN, bin),
        col(col::BIN_LOW, low),
        col(col::BIN_HIGH, high),
        col(col::COUNT, count),
        col(col::ACCURACY, accuracy),
        col(col::CONFIDENCE, confidence),
    ])
}

/// One backbone's attention images, from its epoch-0 evaluation.
struct AttentionImage {
    backbone: String,
    id: String,
    size: u32,
    pixels: Vec<u8>,
}

fn attention_images(
    backbone: &str,
    pretrained: &EvalFile,
) -> Result<Vec<AttentionImage>, TableError> {
    if !pretrained.has(eval_file::ATTENTION_IMAGES) {
        return Ok(Vec::new());
    }
    let ids = pretrained.metadata().map_err(TableError)?.attention_ids;
    let (shape, values) = pretrained
        .decoded(eval_file::ATTENTION_IMAGES)
        .map_err(TableError)?;
    let crate::arrays::Values::Int(values) = values else {
        return Err(err(
            &pretrained.path,
            format!("{}: not u8 pixels", eval_file::ATTENTION_IMAGES),
        ));
    };
    let [n, h, w, 3] = shape[..] else {
        return Err(err(
            &pretrained.path,
            format!(
                "{}: shape {shape:?}, expected [n, size, size, 3]",
                eval_file::ATTENTION_IMAGES
            ),
        ));
    };
    if h != w || ids.len() != n {
        return Err(err(
            &pretrained.path,
            format!(
                "{}: {n} images of {h} × {w} for {} ids",
                eval_file::ATTENTION_IMAGES,
                ids.len()
            ),
        ));
    }
    let per_image = h * w * 3;
    Ok(ids
        .into_iter()
        .zip(values.chunks_exact(per_image))
        .map(|(id, px)| AttentionImage {
            backbone: backbone.to_owned(),
            id,
            size: h as u32,
            pixels: px.iter().map(|&v| v as u8).collect(),
        })
        .collect())
}

/// Figure 3's maps: per model, image and patch (row, column of the grid).
fn attention_table(runs: &[Run<'_>], images: &[AttentionImage]) -> PolarsResult<DataFrame> {
    let (mut backbone, mut seed, mut epoch, mut image, mut image_id) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut row, mut column, mut attention, mut patch_norm) = (vec![], vec![], vec![], vec![]);
    for (b, s, e, m) in compared_models(runs) {
        let Some(maps) = &m.attention else { continue };
        let grid = (maps.patches as f64).sqrt().round() as usize;
        let ids: Vec<&str> = images
            .iter()
            .filter(|i| i.backbone == b)
            .map(|i| i.id.as_str())
            .collect();
        if grid * grid != maps.patches {
            continue; // not a square grid: no map to draw
        }
        for i in 0..maps.images {
            for p in 0..maps.patches {
                backbone.push(b);
                seed.push(s);
                epoch.push(e);
                image.push(i as u32);
                image_id.push(ids.get(i).copied().unwrap_or(""));
                row.push((p / grid) as u32);
                column.push((p % grid) as u32);
                attention.push(maps.attention[i * maps.patches + p]);
                patch_norm.push(maps.patch_norm[i * maps.patches + p]);
            }
        }
    }
    DataFrame::new_infer_height(vec![
        col(col::BACKBONE, backbone),
        col(col::SEED, seed),
        col(col::EPOCH, epoch),
        col(col::IMAGE, image),
        col(col::IMAGE_ID, image_id),
        col(col::ROW, row),
        col(col::COLUMN, column),
        col(col::ATTENTION, attention),
        col(col::PATCH_NORM, patch_norm),
    ])
}

/// Figure 3's images: u8 RGB, row-major, `size × size × 3` bytes each.
fn attention_images_table(images: &[AttentionImage]) -> PolarsResult<DataFrame> {
    let mut image = Vec::new();
    let mut index = std::collections::BTreeMap::<&str, u32>::new();
    for i in images {
        let next = index.entry(&i.backbone).or_insert(0);
        image.push(*next);
        *next += 1;
    }
    DataFrame::new_infer_height(vec![
        col(
            col::BACKBONE,
            images
                .iter()
                .map(|i| i.backbone.as_str())
                .collect::<Vec<_>>(),
        ),
        col(col::IMAGE, image),
        col(
            col::IMAGE_ID,
            images.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ),
        col(col::SIZE, images.iter().map(|i| i.size).collect::<Vec<_>>()),
        col(
            col::PIXELS,
            images
                .iter()
                .map(|i| i.pixels.as_slice())
                .collect::<Vec<&[u8]>>(),
        ),
    ])
}
