//! The summaries of a (medical data set, method)'s finished runs: Table 1
//! (`backbones`), Figure 5's fits, the similarity space, the permutation
//! tests between backbones (and, across methods, between methods), and the
//! findings' verdicts.

use super::Facet;
use super::evaluations::{EpochMetrics, LeftOut, Run};
use super::per_epoch::report_k;
use crate::MetricError;
use crate::cka::Estimator;
use crate::findings::{Certainty, calibration_follows_similarity, forgets_less, runs_beside_best};
use crate::fit::{level_fit, pearson, spearman};
use crate::similarity::Measure;
use crate::space::{RunPoint, similarity_space};
use crate::stats::{LEVEL, PermutationTest, draw_resamples, mean_interval, permutation_test};
use sim_study::config::{Paradigm, SelectOn, StudyConfig};
use sim_study::eval_file::{Layer, Probe, Token};
use sim_study::tables::col;
use sim_study::tables::rows::{
    BackboneRow, ComparisonRow, FitRow, MethodComparisonRow, SpaceRow, Summary, Table1Metric,
    Table1Stats, VerdictRow,
};

/// Reads one calibration metric off an epoch's metrics, where it was measured.
type MetricOf = fn(&EpochMetrics) -> Option<f64>;

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

/// A run's value of a Table 1 metric, at its last epoch (k-NN also before
/// fine-tuning), k-NN at the `report`-th k. A run whose last evaluation
/// left the natural images out (a `dump.epochs` without the last epoch) has
/// no k-NN after: left out of those means.
fn table1_value(metric: Table1Metric, r: &Run<'_>, report: usize) -> Option<f64> {
    let last = r.last();
    match metric {
        Table1Metric::Accuracy => Some(last.accuracy),
        Table1Metric::BalancedAccuracy => Some(last.balanced_accuracy),
        Table1Metric::MacroF1 => Some(last.macro_f1),
        Table1Metric::Auroc => last.auroc,
        Table1Metric::Ece => Some(last.ece),
        Table1Metric::Similarity => Some(Run::similarity(last)),
        Table1Metric::KnnBefore => r.epochs[0].1.knn_at(report),
        Table1Metric::KnnAfter => last.knn_at(report),
    }
}

/// Table 1: per backbone with finished runs (or runs left out), each
/// metric's mean, std and the mean's bootstrap interval over its finished runs.
pub(super) fn backbones(
    runs: &[Run<'_>],
    left_out: &[LeftOut<'_>],
    config: &StudyConfig,
    facet: Facet,
) -> Vec<BackboneRow> {
    let report = report_k(config);
    let e = &config.evaluation;
    let runs: Vec<&Run<'_>> = runs.iter().filter(|r| r.finished()).collect();
    let names = config
        .backbones
        .iter()
        .map(|b| b.name.as_str())
        .filter(|n| {
            runs.iter().any(|r| r.backbone == *n) || left_out.iter().any(|l| l.backbone == *n)
        });
    names
        .map(|name| {
            let left: Vec<&LeftOut<'_>> = left_out.iter().filter(|l| l.backbone == name).collect();
            let own: Vec<&&Run<'_>> = runs.iter().filter(|r| r.backbone == name).collect();
            let stats = Table1Metric::ALL
                .into_iter()
                .map(|metric| {
                    let values: Vec<f64> = own
                        .iter()
                        .filter_map(|r| table1_value(metric, r, report))
                        .collect();
                    let (mean, std) = mean_std(&values);
                    let ci = (!values.is_empty()).then(|| {
                        let resamples =
                            draw_resamples(values.len(), e.bootstrap_resamples, e.bootstrap_seed);
                        mean_interval(&values, &resamples, LEVEL)
                    });
                    Summary {
                        mean,
                        std,
                        ci_low: ci.map(|c| c.0),
                        ci_high: ci.map(|c| c.1),
                    }
                })
                .collect();
            BackboneRow {
                dataset: facet.dataset.into(),
                method: facet.method.into(),
                backbone: name.into(),
                runs: own.len() as u32,
                runs_left_out: left.len() as u32,
                left_out: left
                    .iter()
                    .map(|l| format!("seed {}: {}", l.seed, l.why))
                    .collect::<Vec<_>>()
                    .join("; "),
                stats: Table1Stats(stats),
            }
        })
        .collect()
}

/// Figure 5 / Table 2: every (run, epoch, layer) point's medical CLS CKA
/// against that epoch's calibration, per backbone and metric.
/// Figure 5's fits, each twice: over the fine-tuned epochs (≥ 1: the fit
/// finding 2 reads) and with epoch 0 added (its similarity is 1 at every
/// layer by definition, its calibration that of [`Head::epoch0`]).
pub(super) fn fits(runs: &[Run<'_>], config: &StudyConfig, facet: Facet) -> Vec<FitRow> {
    let metrics: [(&str, MetricOf); 4] = [
        (col::ECE, |m| Some(m.ece)),
        (col::MCE, |m| Some(m.mce)),
        (col::ADAPTIVE_ECE, |m| Some(m.adaptive_ece)),
        // Only where the data set has a validation split.
        (col::ECE_SCALED, |m| m.scaled.as_ref().map(|s| s.ece)),
    ];
    let mut rows = Vec::new();
    for b in &config.backbones {
        for (name, get) in metrics {
            for (which, first_epoch) in [(col::POINTS_FINE_TUNED, 1), (col::POINTS_WITH_EPOCH0, 0)]
            {
                let (mut sim, mut y) = (vec![], vec![]);
                for r in runs.iter().filter(|r| r.backbone == b.name && r.finished()) {
                    for (_, m) in r.epochs.iter().filter(|(e, _)| *e >= first_epoch) {
                        let Some(value) = get(m) else { continue };
                        for (&(p, _, t), &(biased, _)) in &m.cka {
                            if p == Probe::Medical && t == Token::Cls {
                                sim.push(biased);
                                y.push(value);
                            }
                        }
                    }
                }
                if sim.is_empty() {
                    continue;
                }
                // A fit that cannot be made (too few levels, no spread) is a row
                // that says why, with empty numbers, not a NaN.
                let fit = level_fit(&sim, &y, config.evaluation.fit_levels);
                let (pearson_raw, spearman_raw) = (pearson(&sim, &y).ok(), spearman(&sim, &y).ok());
                let fitted = fit.as_ref().ok();
                rows.push(FitRow {
                    dataset: facet.dataset.into(),
                    method: facet.method.into(),
                    backbone: b.name.clone(),
                    metric: name.into(),
                    points: which.into(),
                    slope: fitted.map(|f| f.slope),
                    intercept: fitted.map(|f| f.intercept),
                    r: fitted.map(|f| f.r),
                    r2: fitted.map(|f| f.r2),
                    slope_ci_low: fitted.map(|f| f.slope_ci_low),
                    slope_ci_high: fitted.map(|f| f.slope_ci_high),
                    pearson_raw,
                    spearman_raw,
                    n_points: sim.len() as u32,
                    n_levels: fitted.map_or(0, |f| f.levels.len() as u32),
                    status: fit
                        .as_ref()
                        .map_or_else(|e| e.to_string(), |_| "ok".to_string()),
                });
            }
        }
    }
    rows
}

/// The accuracy that picks θ* among a backbone's runs
/// (`evaluation.select_on`): its last epoch's test accuracy, or its
/// validation accuracy, which a data set without a validation split lacks.
fn selection_accuracy(r: &Run<'_>, select_on: SelectOn, facet: Facet) -> Result<f64, MetricError> {
    let last = r.last();
    match select_on {
        SelectOn::Test => Ok(last.accuracy),
        SelectOn::Validation => last.validation_accuracy.ok_or_else(|| {
            MetricError::input(
                "evaluation.select_on",
                format!(
                    "`validation`, but `{}` has no validation split ({} seed {} has no \
                        validation logits): give it validation_fraction",
                    facet.dataset, r.backbone, r.seed
                ),
            )
        }),
    }
}

/// The similarity space T_X(η, ε): every finished run's final similarity,
/// accuracy and divergence from its backbone's best run.
pub(super) fn space(
    runs: &[Run<'_>],
    config: &StudyConfig,
    facet: Facet,
) -> Result<Vec<SpaceRow>, MetricError> {
    let finished: Vec<&Run<'_>> = runs.iter().filter(|r| r.finished()).collect();
    let e = &config.evaluation;
    let points: Vec<RunPoint> = finished
        .iter()
        .map(|r| {
            Ok(RunPoint {
                backbone: r.backbone.to_owned(),
                seed: r.seed,
                similarity: Run::similarity(r.last()),
                accuracy: r.last().accuracy,
                selected_by: selection_accuracy(r, e.select_on, facet)?,
            })
        })
        .collect::<Result<_, MetricError>>()?;
    let space = similarity_space(&points, e.similarity_threshold, e.accuracy_tolerance)?;
    Ok(space
        .into_iter()
        .zip(&finished)
        .map(|(p, r)| SpaceRow {
            dataset: facet.dataset.into(),
            method: facet.method.into(),
            backbone: p.backbone,
            seed: p.seed,
            similarity: p.similarity,
            similarity_ci_low: r.similarity_interval.map(|i| i.0),
            similarity_ci_high: r.similarity_interval.map(|i| i.1),
            accuracy: p.accuracy,
            divergence: p.divergence,
            reference_seed: p.reference_seed,
            in_space: p.in_space,
        })
        .collect())
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
) -> Result<Vec<Comparison<'a>>, MetricError> {
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
            let test = permutation_test(&a.1, &b.1, e.permutation_resamples, e.bootstrap_seed)?;
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

/// The finished runs' final similarities of one backbone.
pub(super) fn final_similarities(runs: &[Run<'_>], backbone: &str) -> Vec<f64> {
    runs.iter()
        .filter(|r| r.finished() && r.backbone == backbone)
        .map(|r| Run::similarity(r.last()))
        .collect()
}

/// Per pair of backbones with finished runs: does one keep more similarity
/// than the other (one data set and method)?
pub(super) fn comparisons(
    runs: &[Run<'_>],
    config: &StudyConfig,
    facet: Facet,
) -> Result<Vec<ComparisonRow>, MetricError> {
    let groups: Vec<(&str, Vec<f64>)> = config
        .backbones
        .iter()
        .map(|b| (b.name.as_str(), final_similarities(runs, &b.name)))
        .collect();
    Ok(compare_groups(&groups, config)?
        .into_iter()
        .map(|c| ComparisonRow {
            dataset: facet.dataset.into(),
            method: facet.method.into(),
            backbone_a: c.a.into(),
            backbone_b: c.b.into(),
            runs_a: c.runs[0],
            runs_b: c.runs[1],
            similarity_a: c.means[0],
            similarity_b: c.means[1],
            difference: c.test.difference,
            p_value: c.test.p_value,
            exact: c.test.exact,
            permutations: c.test.permutations as u64,
        })
        .collect())
}

/// Per data set, backbone and pair of methods with finished runs: does one
/// method keep more similarity than the other? `finals` holds every
/// (data set, method, backbone)'s final similarities.
pub(super) fn method_comparisons(
    finals: &[(&str, &str, &str, Vec<f64>)],
    config: &StudyConfig,
) -> Result<Vec<MethodComparisonRow>, MetricError> {
    let mut rows = Vec::new();
    for dataset in config.medical_names() {
        for backbone in &config.backbones {
            let groups: Vec<(&str, Vec<f64>)> = finals
                .iter()
                .filter(|(d, _, b, _)| *d == dataset && *b == backbone.name)
                .map(|(_, m, _, v)| (*m, v.clone()))
                .collect();
            for c in compare_groups(&groups, config)? {
                rows.push(MethodComparisonRow {
                    dataset: dataset.into(),
                    backbone: backbone.name.clone(),
                    method_a: c.a.into(),
                    method_b: c.b.into(),
                    runs_a: c.runs[0],
                    runs_b: c.runs[1],
                    similarity_a: c.means[0],
                    similarity_b: c.means[1],
                    difference: c.test.difference,
                    p_value: c.test.p_value,
                    exact: c.test.exact,
                    permutations: c.test.permutations as u64,
                });
            }
        }
    }
    Ok(rows)
}

/// The measures a verdict is read under: biased CKA on the CLS token (the
/// study's similarity), debiased CKA on it, and biased CKA on the mean of
/// the patch tokens.
const VERDICT_MEASURES: [(Estimator, Token); 3] = [
    (Estimator::Biased, Token::Cls),
    (Estimator::Debiased, Token::Cls),
    (Estimator::Biased, Token::PatchMean),
];

/// Per run, the (similarity, ECE) points of its fine-tuned epochs (epoch 0,
/// scored by a probe's head, is not one): finding 2's points, the
/// similarities of an epoch those `at` reads (one per layer).
fn fine_tuned_points(
    runs: &[&Run<'_>],
    at: impl Fn(&EpochMetrics) -> Vec<f64>,
) -> Vec<Vec<(f64, f64)>> {
    runs.iter()
        .map(|r| {
            r.epochs
                .iter()
                .filter(|(epoch, _)| *epoch >= 1)
                .flat_map(|(_, m)| at(m).into_iter().map(|s| (s, m.ece)))
                .collect()
        })
        .collect()
}

/// An epoch's medical-probe CKA to epoch 0 at `layer` under a measure.
fn cka_at(m: &EpochMetrics, layer: Layer, (estimator, token): (Estimator, Token)) -> Option<f64> {
    let (biased, debiased) = *m.cka.get(&(Probe::Medical, layer, token))?;
    Some(if estimator == Estimator::Debiased {
        debiased
    } else {
        biased
    })
}

impl Facet<'_> {
    /// A verdict row of this facet: `finding` under `measure` (its name and
    /// token) for `backbone` (finding 3: `versus` the self-supervised one).
    fn verdict(
        &self,
        finding: u32,
        (measure, token): (&str, &str),
        (backbone, versus): (&str, Option<&str>),
        certainty: Certainty,
    ) -> VerdictRow {
        VerdictRow {
            dataset: self.dataset.into(),
            method: self.method.into(),
            finding,
            measure: measure.into(),
            token: token.into(),
            backbone: backbone.into(),
            versus: versus.map(str::to_owned),
            estimate: certainty.estimate,
            estimate_ci_low: certainty.interval.map(|i| i.0),
            estimate_ci_high: certainty.interval.map(|i| i.1),
            share: certainty.share,
            resamples: certainty.resamples as u32,
        }
    }
}

/// Per measure and backbone with finished runs, findings 1 and 2; per pair
/// of a supervised and a self-supervised backbone, finding 3 (k-NN top-1,
/// no similarity measure). Each with the share of resamples of the runs in
/// which it holds ([`crate::findings`]). A backbone's runs are resampled
/// with the bootstrap seed; finding 3's self-supervised side with the next
/// seed, so the two groups are drawn independently.
pub(super) fn verdicts(
    runs: &[Run<'_>],
    config: &StudyConfig,
    facet: Facet,
) -> Result<Vec<VerdictRow>, MetricError> {
    let e = &config.evaluation;
    let report = report_k(config);
    let finished = |b: &str| {
        runs.iter()
            .filter(|r| r.finished() && r.backbone == b)
            .collect::<Vec<_>>()
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
            let row = |finding, certainty| {
                facet.verdict(finding, (measure_name, token), (b, None), certainty)
            };
            // Tables of evaluations without this measure's tensors have no rows for it.
            let Some(points) = runs
                .iter()
                .map(|r| {
                    let similarity = cka_at(r.last(), Layer::Final, measure)?;
                    Some(
                        selection_accuracy(r, e.select_on, facet).map(|selected_by| RunPoint {
                            backbone: b.to_owned(),
                            seed: r.seed,
                            similarity,
                            accuracy: r.last().accuracy,
                            selected_by,
                        }),
                    )
                })
                .collect::<Option<Result<Vec<_>, _>>>()
                .transpose()?
            else {
                continue;
            };
            rows.push(row(
                1,
                runs_beside_best(
                    &points,
                    e.similarity_threshold,
                    e.accuracy_tolerance,
                    &resamples,
                )?,
            ));
            let fitted = fine_tuned_points(&runs, |m| {
                m.cka
                    .keys()
                    .filter(|(p, _, t)| *p == Probe::Medical && *t == measure.1)
                    .filter_map(|&(_, layer, _)| cka_at(m, layer, measure))
                    .collect()
            });
            // A fit that cannot be made has no verdict row; fits.parquet says why.
            if let Ok(c) = calibration_follows_similarity(&fitted, e.fit_levels, &resamples) {
                rows.push(row(2, c));
            }
        }
        // Finding 2 under the study's other measures (finding 1's η is a
        // CKA level): the same fit on the same points, each measure's value
        // oriented so that larger is more similar (a distance negated).
        let others = e
            .similarity
            .measures
            .iter()
            .filter(|m| !matches!(m, Measure::Cka | Measure::CkaDebiased));
        for &measure in others {
            let fitted = fine_tuned_points(&runs, |m| {
                m.measures
                    .iter()
                    .filter(|((_, x), _)| *x == measure)
                    .map(|(_, &(value, _))| measure.oriented(value))
                    .collect()
            });
            if let Ok(c) = calibration_follows_similarity(&fitted, e.fit_levels, &resamples) {
                let name = (measure.name(), Token::Cls.name());
                rows.push(facet.verdict(2, name, (b, None), c));
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
            let certainty = forgets_less(&s_drops, &o_drops, [&resamples[0], &resamples[1]])?;
            let measure = (col::KNN_TOP1, Token::Cls.name());
            rows.push(facet.verdict(3, measure, (s, Some(o)), certainty));
        }
    }
    Ok(rows)
}
