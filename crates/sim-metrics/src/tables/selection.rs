//! `selection.parquet` and `selection_summary.parquet`: every (data set,
//! method)'s backbones as candidates ([`crate::selection`]), their
//! predictors and outcomes, and how each predictor ranks them.
//!
//! Before fine-tuning: the transferability scores of the backbone's frozen
//! features of the medical train split (its epoch-0 evaluation keeps them),
//! its linear probe and k-NN (`pretrain.parquet`'s rows). After epoch 1 and
//! at the last epoch: the finished runs' rows of `epochs.parquet`.

use super::TableError;
use super::evaluations::{Epoch0s, read_pretrained};
use crate::arrays::to_matrix;
use crate::selection::{
    Candidate, Estimate, MIN_CANDIDATES, Outcome, Predictor, RunRecord, Score, judge,
};
use crate::stats::draw_resamples;
use crate::transferability::each_score;
use sim_study::StudyDir;
use sim_study::config::StudyConfig;
use sim_study::eval_file::{TRAIN_FEATURES, TRAIN_LABELS};
use sim_study::tables::rows::{EpochRow, PretrainRow, SelectionRow, SelectionSummaryRow};
use sim_study::tensors::Values;

/// The rows of both tables (none for a (data set, method) with fewer than
/// [`MIN_CANDIDATES`] candidates with a finished run).
pub(super) fn selection(
    study: &StudyDir,
    config: &StudyConfig,
    epochs: &[EpochRow],
    pretrain: &[PretrainRow],
    epoch0s: &mut Epoch0s,
) -> (Vec<SelectionRow>, Vec<SelectionSummaryRow>) {
    let seeds = &config.study.seeds;
    let resamples = draw_resamples(
        seeds.len(),
        config.evaluation.bootstrap_resamples,
        config.evaluation.bootstrap_seed,
    );
    let (mut rows, mut summary) = (Vec::new(), Vec::new());
    for dataset in config.medical_names() {
        // Before fine-tuning, a backbone's predictors are the same for every method.
        let before: Vec<Vec<(Predictor, f64)>> = config
            .backbones
            .iter()
            .map(|b| before_fine_tuning(study, config, dataset, &b.name, pretrain, epoch0s))
            .collect();
        for method in &config.methods {
            let candidates: Vec<Candidate> = config
                .backbones
                .iter()
                .zip(&before)
                .map(|(b, before)| Candidate {
                    backbone: b.name.clone(),
                    before: before.clone(),
                    runs: finished_runs(epochs, dataset, &method.name, &b.name, seeds),
                })
                .filter(|c| !c.runs.is_empty())
                .collect();
            if candidates.len() < MIN_CANDIDATES {
                continue;
            }
            let (r, j) = rows_of(&candidates, seeds.len(), &resamples, dataset, &method.name);
            rows.extend(r);
            summary.extend(j);
        }
    }
    (rows, summary)
}

/// The rows of both tables for one (data set, method)'s `candidates`,
/// judged over `resamples` of the study's `seeds` seeds
/// ([`crate::selection::judge`]).
pub fn rows_of(
    candidates: &[Candidate],
    seeds: usize,
    resamples: &[Vec<usize>],
    dataset: &str,
    method: &str,
) -> (Vec<SelectionRow>, Vec<SelectionSummaryRow>) {
    let rows = candidate_rows(candidates, dataset, method).collect();
    let interval = |e: Option<Estimate>| e.and_then(|e| e.interval);
    let summary = judge(candidates, seeds, resamples)
        .into_iter()
        .map(|j| SelectionSummaryRow {
            dataset: dataset.into(),
            method: method.into(),
            predictor: j.predictor.name().into(),
            kind: j.predictor.kind().name().into(),
            outcome: j.outcome.name().into(),
            candidates: j.candidates as u32,
            kendall_tau: j.tau.value,
            kendall_tau_ci_low: interval(Some(j.tau)).map(|i| i.0),
            kendall_tau_ci_high: interval(Some(j.tau)).map(|i| i.1),
            pearson_r: j.pearson.map(|e| e.value),
            pearson_r_ci_low: interval(j.pearson).map(|i| i.0),
            pearson_r_ci_high: interval(j.pearson).map(|i| i.1),
            regret: j.regret.value,
            regret_ci_low: interval(Some(j.regret)).map(|i| i.0),
            regret_ci_high: interval(Some(j.regret)).map(|i| i.1),
            pick: j.pick,
            tau_minus_probe: j.tau_minus_probe.map(|e| e.value),
            tau_minus_probe_ci_low: interval(j.tau_minus_probe).map(|i| i.0),
            tau_minus_probe_ci_high: interval(j.tau_minus_probe).map(|i| i.1),
        })
        .collect();
    (rows, summary)
}

/// One row per candidate × predictor it has.
fn candidate_rows<'a>(
    candidates: &'a [Candidate],
    dataset: &'a str,
    method: &'a str,
) -> impl Iterator<Item = SelectionRow> + 'a {
    candidates.iter().flat_map(move |c| {
        let outcome = |o| c.outcome(o);
        Predictor::ALL.into_iter().filter_map(move |p| {
            Some(SelectionRow {
                dataset: dataset.into(),
                method: method.into(),
                backbone: c.backbone.clone(),
                predictor: p.name().into(),
                kind: p.kind().name().into(),
                value: c.value(p)?,
                runs: c.runs.len() as u32,
                balanced_accuracy: outcome(Outcome::BalancedAccuracy)?,
                ece: outcome(Outcome::Ece)?,
                forgetting: outcome(Outcome::Forgetting),
            })
        })
    })
}

/// The backbone's predictors before fine-tuning on `dataset`: each
/// transferability score its epoch-0 evaluation allows (a score that
/// cannot be computed is left out with a warning saying why), its linear
/// probe and k-NN.
fn before_fine_tuning(
    study: &StudyDir,
    config: &StudyConfig,
    dataset: &str,
    backbone: &str,
    pretrain: &[PretrainRow],
    epoch0s: &mut Epoch0s,
) -> Vec<(Predictor, f64)> {
    let mut out = Vec::new();
    let path = study.pretrained_eval(dataset, backbone);
    if path.exists() {
        match train_features(&read_pretrained(&path, config, epoch0s)) {
            Ok((x, y)) => match each_score(x.view(), &y, TRAIN_LABELS, &Score::ALL) {
                Ok(values) => {
                    for (score, value) in Score::ALL.into_iter().zip(values) {
                        match value {
                            Ok(v) => out.push((Predictor::Score(score), v)),
                            Err(e) => tracing::warn!(
                                "{dataset}/{backbone}: no {score} in the selection tables: {e}"
                            ),
                        }
                    }
                }
                Err(e) => tracing::warn!(
                    "{dataset}/{backbone}: no transferability scores in the selection tables: {e}"
                ),
            },
            Err(e) => tracing::warn!(
                "{dataset}/{backbone}: no transferability scores in the selection tables: {e}"
            ),
        }
    }
    if let Some(row) = pretrain
        .iter()
        .find(|r| r.dataset == dataset && r.backbone == backbone)
    {
        if let Some(probe) = row.probe_balanced_accuracy {
            out.push((Predictor::LinearProbe, probe));
        }
        out.push((Predictor::Knn, row.knn_top1));
    }
    out
}

/// The medical train split's frozen features and labels of an epoch 0.
fn train_features(
    epoch0: &Result<super::evaluations::Epoch0, String>,
) -> Result<(crate::arrays::FloatArray, Vec<i64>), TableError> {
    let e = epoch0.as_ref().map_err(|m| TableError(m.clone()))?;
    let (shape, values) = e.file.decoded(TRAIN_FEATURES).map_err(TableError)?;
    let x = to_matrix(TRAIN_FEATURES, shape, values).map_err(|m| TableError(m.to_string()))?;
    let (_, labels) = e.file.decoded(TRAIN_LABELS).map_err(TableError)?;
    let Values::Int(y) = labels else {
        return Err(TableError(format!("{TRAIN_LABELS}: not integers")));
    };
    Ok((x, y))
}

/// The finished runs of a candidate: epoch 1's predictors, the last
/// epoch's outcomes, forgetting from the k-NN of epochs 0 and last.
fn finished_runs(
    epochs: &[EpochRow],
    dataset: &str,
    method: &str,
    backbone: &str,
    seeds: &[u64],
) -> Vec<RunRecord> {
    seeds
        .iter()
        .enumerate()
        .filter_map(|(index, &seed)| {
            let rows: Vec<&EpochRow> = epochs
                .iter()
                .filter(|r| {
                    r.dataset == dataset
                        && r.method == method
                        && r.backbone == backbone
                        && r.seed == seed
                        && r.finished()
                })
                .collect();
            let last = rows.iter().max_by_key(|r| r.epoch)?;
            let first = rows.iter().find(|r| r.epoch == 1)?;
            let knn_before = rows
                .iter()
                .find(|r| r.epoch == 0)
                .and_then(|r| r.kept.knn_top1);
            let mut outcomes = vec![
                (Outcome::BalancedAccuracy, last.scores.balanced_accuracy),
                (Outcome::Ece, last.scores.ece),
            ];
            if let (Some(before), Some(after)) = (knn_before, last.kept.knn_top1) {
                outcomes.push((Outcome::Forgetting, before - after));
            }
            Some(RunRecord {
                seed: index,
                first_epoch: vec![
                    (Predictor::SimilarityEpoch1, first.kept.similarity),
                    (
                        Predictor::BalancedAccuracyEpoch1,
                        first.scores.balanced_accuracy,
                    ),
                    (Predictor::EceEpoch1, first.scores.ece),
                ],
                outcomes,
            })
        })
        .collect()
}
