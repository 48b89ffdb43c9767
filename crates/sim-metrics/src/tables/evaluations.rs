//! Reading a study's evaluation files: every run's committed epochs (and
//! WiSE-FT backbones) turned into the numbers the tables are made of, each
//! epoch's CKA to its data set's epoch 0, and the attention images.

use super::{TableError, err};
use crate::MatRef;
use crate::MetricError;
use crate::arrays::{FloatArray, to_labels, to_matrix};
use crate::calibration::{Binning, calibration};
use crate::cka::{CkaOptions, CkaReference, Estimator, Kernel};
use crate::classification::{ClassScores, class_scores, classification_scores, macro_auroc};
use crate::knn::knn_accuracy;
use crate::similarity::{ChanceLevel, Measure, MeasureOptions, Prepared, chance_level};
use crate::stats::draw_permutations;
use crate::stats::{CkaBootstrap, LEVEL, draw_resamples};
use crate::temperature::{fit_temperature, proper_scores, scaled};
use sim_study::config::RunId;
use sim_study::eval_file::{self, EvalFile, Layer, Probe, Token};
use sim_study::run_state::{RunState, Status};
use sim_study::tables::col;
use sim_study::{StudyConfig, StudyDir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub(super) fn matrix(file: &EvalFile, name: &str) -> Result<FloatArray, TableError> {
    let (shape, values) = file.decoded(name).map_err(TableError)?;
    to_matrix(name, shape, values).map_err(|e| err(&file.path, e))
}

pub(super) fn labels(file: &EvalFile, name: &str) -> Result<Vec<i64>, TableError> {
    let (shape, values) = file.decoded(name).map_err(TableError)?;
    to_labels(name, shape, values).map_err(|e| err(&file.path, e))
}

/// The per-epoch numbers of one evaluation file.
pub(super) struct EpochMetrics {
    /// Whose logits the accuracy and calibration come from (`col::HEAD_*`).
    pub(super) head: &'static str,
    pub(super) accuracy: f64,
    pub(super) balanced_accuracy: f64,
    pub(super) macro_f1: f64,
    /// Macro one-vs-rest AUROC; none where no class has both positives and
    /// negatives in the test split.
    pub(super) auroc: Option<f64>,
    /// Each class's sensitivity, specificity and AUROC, by label.
    pub(super) classes: Vec<ClassScores>,
    /// Negative log-likelihood and Brier score of the test logits.
    pub(super) nll: f64,
    pub(super) brier: f64,
    /// The test calibration after temperature scaling; none without a
    /// validation split.
    pub(super) scaled: Option<TemperatureScaled>,
    /// Accuracy on the validation split, where the data set has one
    /// (`evaluation.select_on = "validation"` picks θ* by it).
    pub(super) validation_accuracy: Option<f64>,
    pub(super) ece: f64,
    pub(super) mce: f64,
    pub(super) adaptive_ece: f64,
    /// The equal-width bins of `ece`.
    pub(super) reliability: Vec<crate::calibration::Bin>,
    /// Last-block CLS attention and patch-token norms of the attention
    /// images (images × patches, row-major), where the file has them.
    pub(super) attention: Option<AttentionMaps>,
    /// Top-1 per k of the study's knn_k; none where the evaluation left the
    /// natural images out (`evaluation.natural_every_epoch = false`).
    pub(super) knn: Option<Vec<f64>>,
    /// (probe, layer, token) → (biased, debiased) linear CKA to epoch 0.
    pub(super) cka: BTreeMap<(Probe, Layer, Token), (f64, f64)>,
    /// (layer, measure) → the measure to epoch 0 on the medical probe's
    /// CLS token, and its chance level (`evaluation.similarity`).
    pub(super) measures: BTreeMap<(Layer, Measure), (f64, Option<ChanceLevel>)>,
}

impl EpochMetrics {
    /// k-NN top-1 at the `i`-th k, where the natural images were evaluated.
    pub(super) fn knn_at(&self, i: usize) -> Option<f64> {
        self.knn.as_ref().map(|k| k[i])
    }
}

/// The test set's calibration after temperature scaling: T fitted on the
/// same head's validation logits, the test logits divided by it.
pub(super) struct TemperatureScaled {
    pub(super) temperature: f64,
    pub(super) ece: f64,
    pub(super) mce: f64,
    pub(super) nll: f64,
    pub(super) brier: f64,
    /// The equal-width bins of `ece`.
    pub(super) reliability: Vec<crate::calibration::Bin>,
}

impl TemperatureScaled {
    fn new(
        test: &FloatArray,
        validation: &FloatArray,
        validation_truth: &[usize],
        test_labels: &[i64],
        bins: usize,
    ) -> Result<TemperatureScaled, MetricError> {
        let temperature = fit_temperature(validation.view(), validation_truth)?;
        let data = scaled(test.view(), temperature);
        let scaled_test = MatRef::new(&data, test.rows, test.cols, "scaled test logits")?;
        let uniform = calibration(scaled_test, test_labels, bins, Binning::Uniform)?;
        let truth: Vec<usize> = test_labels.iter().map(|&l| l as usize).collect();
        let proper = proper_scores(test.view(), &truth, temperature)?;
        Ok(TemperatureScaled {
            temperature,
            ece: uniform.ece,
            mce: uniform.mce,
            nll: proper.nll,
            brier: proper.brier,
            reliability: uniform.bins,
        })
    }
}

/// Figure 3's maps of one evaluation.
pub(super) struct AttentionMaps {
    pub(super) images: usize,
    pub(super) patches: usize,
    pub(super) attention: Vec<f64>,
    pub(super) patch_norm: Vec<f64>,
}

impl AttentionMaps {
    pub(super) fn read(file: &EvalFile) -> Result<Option<AttentionMaps>, TableError> {
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

/// The similarity references of one backbone: its epoch-0 probe features.
pub(super) struct References {
    pub(super) by_probe: BTreeMap<(Probe, Layer, Token), (CkaReference, CkaReference)>,
    /// The study's measures on the medical probe's CLS token, per layer.
    pub(super) measures: BTreeMap<(Layer, Measure), MeasureReference>,
}

/// A measure's pre-trained side on one layer, prepared once, and its
/// chance level: the measure against the same features with the test
/// images permuted (`null_resamples` permutations drawn from
/// `bootstrap_seed`; none where that is 0).
pub(super) struct MeasureReference {
    pub(super) side: Prepared,
    pub(super) chance: Option<ChanceLevel>,
}

impl MeasureReference {
    fn new(
        measure: Measure,
        x: &FloatArray,
        config: &StudyConfig,
        path: &Path,
    ) -> Result<MeasureReference, TableError> {
        let e = &config.evaluation;
        let at = |m: MetricError| err(path, m);
        let side =
            Prepared::new(measure, x.view(), MeasureOptions::from(&e.similarity)).map_err(at)?;
        let resamples = e.similarity.null_resamples;
        let chance = (resamples > 0)
            .then(|| {
                chance_level(
                    &side,
                    &draw_permutations(x.rows, resamples, e.bootstrap_seed),
                )
            })
            .transpose()
            .map_err(at)?;
        Ok(MeasureReference { side, chance })
    }

    /// The measure from the pre-trained side to `y`, and the chance level.
    fn compare(&self, y: &FloatArray) -> Result<(f64, Option<ChanceLevel>), MetricError> {
        let options = self.side.options();
        let other = Prepared::new(self.side.measure(), y.view(), options)?;
        Ok((self.side.compare(&other)?, self.chance))
    }
}

impl References {
    pub(super) fn new(
        pretrained: &EvalFile,
        config: &StudyConfig,
    ) -> Result<References, TableError> {
        let mut by_probe = BTreeMap::new();
        let mut measures = BTreeMap::new();
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
            if (probe, token) == (Probe::Medical, Token::Cls) {
                for &m in &config.evaluation.similarity.measures {
                    let reference = MeasureReference::new(m, &x, config, &pretrained.path)?;
                    measures.insert((layer, m), reference);
                }
            }
        }
        let headline = eval_file::probe_tensor(Probe::Medical, Layer::Final, Token::Cls);
        if !by_probe.contains_key(&(Probe::Medical, Layer::Final, Token::Cls)) {
            return Err(err(
                &pretrained.path,
                format!("no `{headline}`: the study's similarity is measured on it"),
            ));
        }
        Ok(References { by_probe, measures })
    }
}

/// The numbers of a fine-tuned model's evaluation, scored by its own head.
pub(super) fn epoch_metrics(
    file: &EvalFile,
    refs: &References,
    config: &StudyConfig,
) -> Result<EpochMetrics, TableError> {
    let head = Head {
        name: col::HEAD_FINE_TUNED,
        logits: matrix(file, eval_file::TEST_LOGITS)?,
        validation: file
            .has(eval_file::VAL_LOGITS)
            .then(|| matrix(file, eval_file::VAL_LOGITS))
            .transpose()?,
    };
    scored_metrics(file, refs, config, head)
}

/// The test-set logits an evaluation's accuracy and calibration come from,
/// whose they are, and the same head's validation-split logits where the
/// data set has a validation split (temperature scaling is fitted on them).
pub(super) struct Head {
    pub(super) name: &'static str,
    pub(super) logits: FloatArray,
    pub(super) validation: Option<FloatArray>,
}

impl Head {
    /// Epoch 0's head: a linear probe fitted on the frozen features of the
    /// medical train split ([`crate::probe`]), scoring the test set's
    /// final-norm CLS features (the rows of `test.logits`, in order). The
    /// head the file's logits come from was drawn at random from the split
    /// seed: it says nothing about the representation, so it is used only
    /// for an epoch 0 made before the train features were kept.
    pub(super) fn epoch0(pretrained: &EvalFile) -> Result<Head, TableError> {
        if !pretrained.has(eval_file::TRAIN_FEATURES) {
            return Ok(Head {
                name: col::HEAD_RANDOM,
                logits: matrix(pretrained, eval_file::TEST_LOGITS)?,
                validation: None,
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
        let logits_of = |x: &FloatArray, split: &str| FloatArray {
            name: format!("{}: the probe's {split} logits", pretrained.path.display()),
            rows: x.rows,
            cols: probe.classes,
            data: probe.logits(&x.data),
        };
        let validation = pretrained
            .has(eval_file::VAL_FEATURES)
            .then(|| matrix(pretrained, eval_file::VAL_FEATURES))
            .transpose()?;
        Ok(Head {
            name: col::HEAD_PROBE,
            logits: logits_of(&test, "test"),
            validation: validation.map(|v| logits_of(&v, "validation")),
        })
    }
}

/// An evaluation's numbers with its accuracy and calibration scored by `head`.
pub(super) fn scored_metrics(
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
    let classes = class_scores(logits.view(), &truth).map_err(at)?;
    let proper = proper_scores(logits.view(), &truth, 1.0).map_err(at)?;
    // The validation split's logits and labels, where the data set has one.
    let validation = match head.validation {
        Some(v) => {
            let truth: Vec<usize> = read_labels(eval_file::VAL_LABELS)?
                .into_iter()
                .map(|l| l as usize)
                .collect();
            Some((v, truth))
        }
        None => None,
    };
    let scaled = validation
        .as_ref()
        .map(|(v, truth)| TemperatureScaled::new(&logits, v, truth, &labels, e.ece_bins))
        .transpose()
        .map_err(at)?;
    let validation_accuracy = validation
        .as_ref()
        .map(|(v, truth)| {
            let (_, predicted) = crate::calibration::confidences(v.view())?;
            classification_scores(&predicted, truth).map(|s| s.accuracy)
        })
        .transpose()
        .map_err(at)?;
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
    let mut measured = BTreeMap::new();
    for (&(probe, layer, token), (biased, debiased)) in refs
        .by_probe
        .iter()
        .filter(|((probe, ..), _)| natural || *probe != Probe::Natural)
    {
        let y = matrix(&eval_file::probe_tensor(probe, layer, token))?;
        let values = (
            biased.compare(y.view()).map_err(at)?,
            debiased.compare(y.view()).map_err(at)?,
        );
        cka.insert((probe, layer, token), values);
        if (probe, token) != (Probe::Medical, Token::Cls) {
            continue;
        }
        for &measure in &e.similarity.measures {
            let reference = &refs.measures[&(layer, measure)];
            let value = match measure {
                Measure::Cka => (values.0, reference.chance),
                Measure::CkaDebiased => (values.1, reference.chance),
                _ => reference.compare(&y).map_err(at)?,
            };
            measured.insert((layer, measure), value);
        }
    }
    Ok(EpochMetrics {
        head: head.name,
        accuracy: scores.accuracy,
        balanced_accuracy: scores.balanced_accuracy,
        macro_f1: scores.macro_f1,
        auroc: macro_auroc(&classes),
        classes,
        nll: proper.nll,
        brier: proper.brier,
        scaled,
        validation_accuracy,
        ece: uniform.ece,
        mce: uniform.mce,
        reliability: uniform.bins,
        adaptive_ece: adaptive.ece,
        attention: AttentionMaps::read(file)?,
        knn,
        cka,
        measures: measured,
    })
}

/// A run's evaluations, epoch 0 first, up to the last epoch its `run.toml`
/// commits (a later file is a leftover of an interrupted attempt).
pub(super) struct Run<'a> {
    pub(super) backbone: &'a str,
    pub(super) seed: u64,
    pub(super) status: Status,
    pub(super) epochs: Vec<(u32, Rc<EpochMetrics>)>,
    /// A finished run's final similarity, bootstrapped over its test images.
    pub(super) similarity_interval: Option<(f64, f64)>,
    /// A finished run's WiSE-FT backbones (methods with `wise_ft`), by α.
    pub(super) wise_ft: Vec<(f64, EpochMetrics)>,
}

impl Run<'_> {
    pub(super) fn last(&self) -> &EpochMetrics {
        &self.epochs.last().expect("epoch 0 is always there").1
    }

    /// Summaries (means over runs, fits, the similarity space) take finished
    /// runs only: a failed or unfinished run's last epoch is not a final one.
    pub(super) fn finished(&self) -> bool {
        self.status == Status::Finished
    }

    /// "The" similarity of docs/SPEC.md: final-norm CLS CKA on the medical probe.
    pub(super) fn similarity(m: &EpochMetrics) -> f64 {
        m.cka[&(Probe::Medical, Layer::Final, Token::Cls)].0
    }
}

/// The 95 % bootstrap interval of a run's final similarity (the medical
/// probe's final-norm CLS CKA to epoch 0) over resamples of its test images.
pub(super) fn similarity_interval(
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
pub(super) struct Epoch0 {
    pub(super) file: EvalFile,
    pub(super) refs: References,
    pub(super) metrics: Rc<EpochMetrics>,
}

/// The study's epoch 0s by file, or why one cannot be used.
pub(super) type Epoch0s = BTreeMap<PathBuf, Rc<Result<Epoch0, String>>>;

pub(super) fn read_pretrained(
    path: &Path,
    config: &StudyConfig,
    read: &mut Epoch0s,
) -> Rc<Result<Epoch0, String>> {
    let read_one = || -> Result<Epoch0, TableError> {
        let file = EvalFile::open(path).map_err(TableError)?;
        let refs = References::new(&file, config)?;
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
pub(super) struct LeftOut<'a> {
    pub(super) backbone: &'a str,
    pub(super) seed: u64,
    pub(super) why: String,
}

/// The runs of one medical data set and method: those with a committed
/// epoch, those left out of the summaries (and why), and the backbones'
/// attention images.
pub(super) struct DatasetRuns<'a> {
    pub(super) runs: Vec<Run<'a>>,
    pub(super) left_out: Vec<LeftOut<'a>>,
    pub(super) images: Vec<AttentionImage>,
}

pub(super) fn read_runs<'a>(
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

/// One backbone's attention images, from its epoch-0 evaluation.
pub(super) struct AttentionImage {
    pub(super) backbone: String,
    pub(super) id: String,
    pub(super) size: u32,
    pub(super) pixels: Vec<u8>,
}

pub(super) fn attention_images(
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
