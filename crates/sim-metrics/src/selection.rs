//! Predictive model selection: does a predictor known before fine-tuning
//! (a transferability score, the linear probe, k-NN) or after its first
//! epoch (similarity, balanced accuracy, ECE) rank the candidates as their
//! fine-tuning turned out? (docs/SPEC.md, "Model selection".)
//!
//! Per data set and method, every backbone is a candidate; its outcomes
//! are means over its finished runs' last epochs. A predictor is judged
//! against each outcome, both oriented so that higher is better, by the
//! weighted Kendall τ ([`weighted_tau`]: the order of the best candidates
//! counts most), Pearson's r, and the regret of picking its top candidate
//! (the outcome's gap to the best candidate's). Each comes with a 95 %
//! bootstrap interval over resamples of the seeds (every candidate's runs
//! of the drawn seeds, so a resample keeps the candidates paired), and τ
//! also as its difference to the linear probe's on the same resamples.

use crate::fit::{pearson, weighted_tau};
use crate::stats::percentile_interval;
pub use sim_study::tables::selection::{Kind, Outcome, Predictor, Score};

/// Fewer candidates than this rank nothing worth a number.
pub const MIN_CANDIDATES: usize = 3;

/// A finished run of a candidate.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// Its seed's index in the study's seed list.
    pub seed: usize,
    /// Its predictors after epoch 1.
    pub first_epoch: Vec<(Predictor, f64)>,
    /// What its last epoch gave.
    pub outcomes: Vec<(Outcome, f64)>,
}

/// A backbone fine-tuned on one data set with one method.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub backbone: String,
    /// Predictors of the pre-trained backbone (no seed).
    pub before: Vec<(Predictor, f64)>,
    pub runs: Vec<RunRecord>,
}

/// A candidate's predictors and outcomes with its runs weighted by how
/// often their seed is drawn.
struct Means {
    predictors: Vec<(Predictor, f64)>,
    outcomes: Vec<(Outcome, f64)>,
}

impl Candidate {
    /// Predictor `p`'s value: its own before fine-tuning, else the mean
    /// over the runs.
    pub fn value(&self, p: Predictor) -> Option<f64> {
        self.means(&[])
            .predictors
            .iter()
            .find(|v| v.0 == p)
            .map(|v| v.1)
    }

    /// Outcome `o`'s mean over the runs.
    pub fn outcome(&self, o: Outcome) -> Option<f64> {
        self.means(&[])
            .outcomes
            .iter()
            .find(|v| v.0 == o)
            .map(|v| v.1)
    }

    /// `counts[seed]`: how often each seed is drawn (empty: each once).
    fn means(&self, counts: &[f64]) -> Means {
        let weight = |r: &RunRecord| counts.get(r.seed).copied().unwrap_or(1.0);
        fn mean<K: PartialEq + Copy>(
            runs: &[RunRecord],
            weight: &dyn Fn(&RunRecord) -> f64,
            key: K,
            of: fn(&RunRecord) -> &[(K, f64)],
        ) -> Option<f64> {
            let (mut sum, mut total) = (0.0, 0.0);
            for r in runs {
                if let Some(v) = of(r).iter().find(|v| v.0 == key) {
                    sum += weight(r) * v.1;
                    total += weight(r);
                }
            }
            (total > 0.0).then(|| sum / total)
        }
        let mut predictors = self.before.clone();
        for p in Predictor::ALL
            .into_iter()
            .filter(|p| p.kind() == Kind::FirstEpoch)
        {
            if let Some(v) = mean(&self.runs, &weight, p, |r| &r.first_epoch) {
                predictors.push((p, v));
            }
        }
        let outcomes = Outcome::ALL
            .into_iter()
            .filter_map(|o| Some((o, mean(&self.runs, &weight, o, |r| &r.outcomes)?)))
            .collect();
        Means {
            predictors,
            outcomes,
        }
    }
}

/// A number and its 95 % bootstrap interval (none where no resample had it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub interval: Option<(f64, f64)>,
}

/// How one predictor ranks the candidates against one outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub predictor: Predictor,
    pub outcome: Outcome,
    pub candidates: usize,
    pub tau: Estimate,
    /// None where the predictor's values cannot correlate (all equal).
    pub pearson: Option<Estimate>,
    /// In the outcome's unit, ≥ 0.
    pub regret: Estimate,
    /// The backbone the predictor ranks first.
    pub pick: String,
    /// τ minus the linear probe's; none for the probe, or without it.
    pub tau_minus_probe: Option<Estimate>,
}

/// One ranking of the candidates by a predictor against an outcome.
struct Ranking {
    tau: f64,
    pearson: Option<f64>,
    regret: f64,
    pick: usize,
}

fn oriented(v: f64, higher_is_better: bool) -> f64 {
    if higher_is_better { v } else { -v }
}

fn rank(means: &[Option<Means>], p: Predictor, o: Outcome) -> Option<Ranking> {
    let mut who = Vec::new();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (i, m) in means.iter().enumerate() {
        let Some(m) = m else { continue };
        let value = m.predictors.iter().find(|v| v.0 == p);
        let outcome = m.outcomes.iter().find(|v| v.0 == o);
        if let (Some(v), Some(out)) = (value, outcome) {
            who.push(i);
            x.push(oriented(v.1, p.higher_is_better()));
            y.push(oriented(out.1, o.higher_is_better()));
        }
    }
    if who.len() < MIN_CANDIDATES {
        return None;
    }
    let tau = weighted_tau(&x, &y).ok()?;
    let top = (0..x.len()).fold(0, |best, i| if x[i] > x[best] { i } else { best });
    let best = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(Ranking {
        tau,
        pearson: pearson(&x, &y).ok(),
        regret: best - y[top],
        pick: who[top],
    })
}

/// Every predictor against every outcome over `candidates`, with
/// intervals over `resamples` (each a draw of seed indices in 0..seeds).
/// A pair with fewer than [`MIN_CANDIDATES`] candidates, or a predictor
/// equal for all, is left out.
pub fn judge(candidates: &[Candidate], seeds: usize, resamples: &[Vec<usize>]) -> Vec<Judgement> {
    let all: Vec<Option<Means>> = candidates.iter().map(|c| Some(c.means(&[]))).collect();
    let drawn: Vec<Vec<Option<Means>>> = resamples
        .iter()
        .map(|draw| {
            let mut counts = vec![0.0; seeds];
            draw.iter().for_each(|&s| counts[s] += 1.0);
            candidates
                .iter()
                .map(|c| {
                    let m = c.means(&counts);
                    // A candidate none of whose runs was drawn is not in the resample.
                    let drawn_runs = c.runs.iter().any(|r| counts[r.seed] > 0.0);
                    drawn_runs.then_some(m)
                })
                .collect()
        })
        .collect();
    let interval =
        |values: Vec<f64>| (!values.is_empty()).then(|| percentile_interval(values, 0.95));
    let mut out = Vec::new();
    for o in Outcome::ALL {
        let probe: Vec<Option<f64>> = drawn
            .iter()
            .map(|m| rank(m, Predictor::LinearProbe, o).map(|r| r.tau))
            .collect();
        let probe_all = rank(&all, Predictor::LinearProbe, o).map(|r| r.tau);
        for p in Predictor::ALL {
            let Some(whole) = rank(&all, p, o) else {
                continue;
            };
            let ranked: Vec<Option<Ranking>> = drawn.iter().map(|m| rank(m, p, o)).collect();
            let each = |f: fn(&Ranking) -> Option<f64>| {
                interval(ranked.iter().flatten().filter_map(f).collect())
            };
            let tau_minus_probe = (p != Predictor::LinearProbe)
                .then_some(probe_all)
                .flatten()
                .map(|probe_tau| Estimate {
                    value: whole.tau - probe_tau,
                    interval: interval(
                        ranked
                            .iter()
                            .zip(&probe)
                            .filter_map(|(r, q)| Some(r.as_ref()?.tau - (*q)?))
                            .collect(),
                    ),
                });
            out.push(Judgement {
                predictor: p,
                outcome: o,
                candidates: candidates
                    .iter()
                    .filter(|c| c.value(p).is_some() && c.outcome(o).is_some())
                    .count(),
                tau: Estimate {
                    value: whole.tau,
                    interval: each(|r| Some(r.tau)),
                },
                pearson: whole.pearson.map(|value| Estimate {
                    value,
                    interval: each(|r| r.pearson),
                }),
                regret: Estimate {
                    value: whole.regret,
                    interval: each(|r| Some(r.regret)),
                },
                pick: candidates[whole.pick].backbone.clone(),
                tau_minus_probe,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::draw_resamples;

    /// Candidate i of `n`: final balanced accuracy 0.5 + 0.1 i (+ a seed's
    /// noise), ECE 0.2 − 0.01 i, LogME = `logme(i)`, the probe = 0.4 + 0.1 i
    /// with candidates 1 and 2 swapped, similarity after epoch 1 = the
    /// seed's accuracy.
    fn candidates(n: usize, logme: impl Fn(usize) -> f64) -> Vec<Candidate> {
        (0..n)
            .map(|i| {
                let probe = match i {
                    1 => 2,
                    2 => 1,
                    _ => i,
                };
                Candidate {
                    backbone: format!("b{i}"),
                    before: vec![
                        (Predictor::Score(Score::Logme), logme(i)),
                        (Predictor::LinearProbe, 0.4 + 0.1 * probe as f64),
                    ],
                    runs: (0..4)
                        .map(|seed| {
                            let acc = 0.5 + 0.1 * i as f64 + 0.01 * seed as f64;
                            RunRecord {
                                seed,
                                first_epoch: vec![
                                    (Predictor::SimilarityEpoch1, acc),
                                    (Predictor::EceEpoch1, 0.2 - 0.01 * i as f64),
                                ],
                                outcomes: vec![
                                    (Outcome::BalancedAccuracy, acc),
                                    (Outcome::Ece, 0.2 - 0.01 * i as f64),
                                ],
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    fn find(j: &[Judgement], p: Predictor, o: Outcome) -> &Judgement {
        j.iter()
            .find(|j| j.predictor == p && j.outcome == o)
            .unwrap_or_else(|| panic!("no judgement of {} against {}", p.name(), o.name()))
    }

    #[test]
    fn a_predictor_in_the_outcomes_order_ranks_perfectly_and_picks_the_best() {
        let c = candidates(5, |i| i as f64);
        let j = judge(&c, 4, &draw_resamples(4, 200, 1));
        let logme = find(
            &j,
            Predictor::Score(Score::Logme),
            Outcome::BalancedAccuracy,
        );
        assert_eq!(logme.tau.value, 1.0);
        assert_eq!(logme.tau.interval, Some((1.0, 1.0)));
        assert_eq!((logme.regret.value, logme.pick.as_str()), (0.0, "b4"));
        assert_eq!(logme.candidates, 5);
        // Lower ECE is better: the ECE after epoch 1 ranks the final ECE perfectly.
        let ece = find(&j, Predictor::EceEpoch1, Outcome::Ece);
        assert_eq!((ece.tau.value, ece.pick.as_str()), (1.0, "b4"));
        // The probe swaps two middle candidates: below 1, and LogME beats it.
        let probe = find(&j, Predictor::LinearProbe, Outcome::BalancedAccuracy);
        assert!(
            probe.tau.value < 1.0 && probe.tau.value > 0.5,
            "{:?}",
            probe.tau
        );
        assert!(probe.tau_minus_probe.is_none());
        let beats = logme.tau_minus_probe.unwrap();
        assert!((beats.value - (1.0 - probe.tau.value)).abs() < 1e-12);
        let (low, high) = beats.interval.unwrap();
        assert!(low <= beats.value && beats.value <= high);
    }

    #[test]
    fn a_reversed_predictor_picks_the_worst_and_regrets_the_whole_range() {
        let c = candidates(4, |i| -(i as f64));
        let j = judge(&c, 4, &[]);
        let logme = find(
            &j,
            Predictor::Score(Score::Logme),
            Outcome::BalancedAccuracy,
        );
        assert_eq!(logme.tau.value, -1.0);
        assert_eq!(logme.pick, "b0");
        assert!(
            (logme.regret.value - 0.3).abs() < 1e-12,
            "{:?}",
            logme.regret
        );
        assert_eq!(logme.tau.interval, None, "no resamples, no interval");
    }

    #[test]
    fn fewer_than_three_candidates_or_a_constant_predictor_are_left_out() {
        assert!(judge(&candidates(2, |i| i as f64), 4, &[]).is_empty());
        let j = judge(&candidates(4, |_| 1.0), 4, &[]);
        assert!(
            j.iter()
                .all(|j| j.predictor != Predictor::Score(Score::Logme)),
            "a constant score ranks nothing"
        );
    }

    #[test]
    fn a_resample_averages_the_drawn_seeds_runs() {
        let c = &candidates(3, |i| i as f64)[2];
        let counts = [3.0, 0.0, 0.0, 1.0];
        let m = c.means(&counts);
        let acc = m
            .outcomes
            .iter()
            .find(|o| o.0 == Outcome::BalancedAccuracy)
            .unwrap()
            .1;
        assert!((acc - (3.0 * 0.70 + 0.73) / 4.0).abs() < 1e-12, "{acc}");
    }
}
