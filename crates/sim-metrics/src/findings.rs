//! The paper's three findings as numbers, each with how sure a study can be
//! of it.
//!
//! A finding is read per backbone (finding 3: per pair of a supervised and a
//! self-supervised backbone) from its finished runs: an estimate, its 95 %
//! bootstrap interval, and the share of resamples of the runs (the seed
//! bootstrap of Table 1's intervals, [`crate::stats::draw_resamples`]) in
//! which the finding holds. A verdict is stated only where that share is at
//! least [`HOLDS_AT`] ("holds") or at most [`FAILS_AT`] ("does not hold");
//! between, it is undecided: a verdict that another draw of seeds, or the
//! rounding of a sum, could flip is not a finding.
//!
//! 1. [`runs_beside_best`]: runs besides θ* inside T_X(η, ε) exist.
//! 2. [`calibration_follows_similarity`]: the discretised fit of calibration
//!    on similarity is a clear linear relation ([`is_clear_relation`]).
//! 3. [`forgets_less`]: the supervised backbone's k-NN top-1 drops less.

use crate::MetricError;
use crate::fit::level_fit;
use crate::space::{RunPoint, similarity_space};
use crate::stats::{LEVEL, percentile_interval};

/// The share of resamples from which a finding holds.
pub const HOLDS_AT: f64 = 0.95;
/// The share of resamples up to which a finding does not hold.
pub const FAILS_AT: f64 = 0.05;

/// What a share of resamples lets a study say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Holds,
    Undecided,
    DoesNotHold,
}

impl Verdict {
    /// "Holds" at a share of at least [`HOLDS_AT`], "does not hold" at most
    /// [`FAILS_AT`], undecided between.
    pub fn of_share(share: f64) -> Verdict {
        if share >= HOLDS_AT {
            Verdict::Holds
        } else if share <= FAILS_AT {
            Verdict::DoesNotHold
        } else {
            Verdict::Undecided
        }
    }
}

/// A finding's estimate on the runs, its interval and share over resamples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Certainty {
    pub estimate: f64,
    /// The estimate's 95 % percentile interval over the resamples that
    /// allow it (`None` where none does: every resample's fit failed).
    pub interval: Option<(f64, f64)>,
    /// The share of resamples in which the finding holds.
    pub share: f64,
    pub resamples: usize,
}

impl Certainty {
    pub fn verdict(&self) -> Verdict {
        Verdict::of_share(self.share)
    }
}

/// From the estimate on the runs and, per resample, its value (`None`: it
/// cannot be had from that resample, which then does not hold).
fn certainty(estimate: f64, per_resample: Vec<(Option<f64>, bool)>) -> Certainty {
    let resamples = per_resample.len();
    let holds = per_resample.iter().filter(|(_, h)| *h).count();
    let values: Vec<f64> = per_resample.into_iter().filter_map(|(v, _)| v).collect();
    let interval = (!values.is_empty()).then(|| percentile_interval(values, LEVEL));
    Certainty {
        estimate,
        interval,
        share: holds as f64 / resamples.max(1) as f64,
        resamples,
    }
}

/// Finding 1 for one backbone's finished runs: how many runs besides θ*
/// are inside T_X(η, ε) (θ* drawn again in each resample: its best run).
/// Holds in a resample with at least one; a run drawn twice counts twice.
pub fn runs_beside_best(
    runs: &[RunPoint],
    eta: f64,
    epsilon: f64,
    resamples: &[Vec<usize>],
) -> Result<Certainty, MetricError> {
    let beside_best = |points: &[RunPoint]| -> Result<f64, MetricError> {
        let space = similarity_space(points, eta, epsilon)?;
        Ok(space
            .iter()
            .filter(|p| p.in_space && p.seed != p.reference_seed)
            .count() as f64)
    };
    let estimate = beside_best(runs)?;
    let per_resample = resamples
        .iter()
        .map(|r| {
            let drawn: Vec<RunPoint> = r.iter().map(|&i| runs[i].clone()).collect();
            beside_best(&drawn).map(|n| (Some(n), n > 0.0))
        })
        .collect::<Result<_, _>>()?;
    Ok(certainty(estimate, per_resample))
}

/// Whether a fit is a clear linear relation: |r| ≥ 0.5 and a slope
/// interval clear of 0.
pub fn is_clear_relation(r: f64, slope_ci: (f64, f64)) -> bool {
    r.abs() >= 0.5 && (slope_ci.0 > 0.0 || slope_ci.1 < 0.0)
}

/// Finding 2 for one backbone: each finished run's (similarity, calibration)
/// points, fitted with `levels` levels ([`level_fit`]). The estimate is the
/// slope; a resample holds where its fit is a clear linear relation, and
/// does not where no fit can be made from it.
pub fn calibration_follows_similarity(
    runs: &[Vec<(f64, f64)>],
    levels: usize,
    resamples: &[Vec<usize>],
) -> Result<Certainty, MetricError> {
    let fit = |drawn: &mut dyn Iterator<Item = usize>| {
        let (x, y): (Vec<f64>, Vec<f64>) = drawn.flat_map(|i| runs[i].iter().copied()).unzip();
        level_fit(&x, &y, levels)
    };
    let estimate = fit(&mut (0..runs.len()))?.slope;
    let per_resample = resamples
        .iter()
        .map(|r| match fit(&mut r.iter().copied()) {
            Ok(f) => (
                Some(f.slope),
                is_clear_relation(f.r, (f.slope_ci_low, f.slope_ci_high)),
            ),
            Err(_) => (None, false),
        })
        .collect();
    Ok(certainty(estimate, per_resample))
}

/// Finding 3 for one pair: each finished run's k-NN top-1 drop (before
/// fine-tuning minus after) of the supervised backbone and of the
/// self-supervised one, each group resampled on its own
/// (`resamples[0]`, `resamples[1]`). The estimate is the self-supervised
/// mean drop minus the supervised one; a resample holds where it is > 0.
pub fn forgets_less(
    supervised: &[f64],
    other: &[f64],
    resamples: [&[Vec<usize>]; 2],
) -> Result<Certainty, MetricError> {
    for (name, group) in [("supervised", supervised), ("self-supervised", other)] {
        if group.is_empty() {
            return Err(MetricError::input(name, "no finished run"));
        }
        if let Some(v) = group.iter().find(|v| !v.is_finite()) {
            return Err(MetricError::input(
                name,
                format!("k-NN drop {v} is not finite"),
            ));
        }
    }
    let mean = |v: &[f64], r: &[usize]| r.iter().map(|&i| v[i]).sum::<f64>() / r.len() as f64;
    let all = |v: &[f64]| (0..v.len()).collect::<Vec<_>>();
    let estimate = mean(other, &all(other)) - mean(supervised, &all(supervised));
    let per_resample = resamples[0]
        .iter()
        .zip(resamples[1])
        .map(|(s, o)| {
            let d = mean(other, o) - mean(supervised, s);
            (Some(d), d > 0.0)
        })
        .collect();
    Ok(certainty(estimate, per_resample))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::draw_resamples;

    #[test]
    fn a_verdict_needs_95_percent_of_resamples_either_way() {
        assert_eq!(Verdict::of_share(0.95), Verdict::Holds);
        assert_eq!(Verdict::of_share(0.9499), Verdict::Undecided);
        assert_eq!(Verdict::of_share(0.5), Verdict::Undecided);
        assert_eq!(Verdict::of_share(0.0501), Verdict::Undecided);
        assert_eq!(Verdict::of_share(0.05), Verdict::DoesNotHold);
    }

    fn run(seed: u64, similarity: f64, accuracy: f64) -> RunPoint {
        RunPoint {
            backbone: "b".into(),
            seed,
            similarity,
            accuracy,
            selected_by: accuracy,
        }
    }

    #[test]
    fn one_run_beside_the_best_is_undecided_and_many_hold() {
        // Two runs, both inside: a resample holds unless it draws one run
        // twice (then that run is θ*), so about half do.
        let two = [run(0, 0.9, 0.80), run(1, 0.9, 0.79)];
        let c = runs_beside_best(&two, 0.5, 0.02, &draw_resamples(2, 1000, 0)).unwrap();
        assert_eq!(c.estimate, 1.0);
        assert!((c.share - 0.5).abs() < 0.06, "{c:?}");
        assert_eq!(c.verdict(), Verdict::Undecided);
        // Ten runs, all inside: only a resample of one run drawn ten times fails.
        let ten: Vec<RunPoint> = (0..10)
            .map(|s| run(s, 0.9, 0.8 - s as f64 * 1e-3))
            .collect();
        let c = runs_beside_best(&ten, 0.5, 0.02, &draw_resamples(10, 1000, 0)).unwrap();
        assert_eq!((c.estimate, c.verdict()), (9.0, Verdict::Holds));
        // None inside (similarity below η): never holds.
        let low: Vec<RunPoint> = (0..10).map(|s| run(s, 0.1, 0.8)).collect();
        let c = runs_beside_best(&low, 0.5, 0.02, &draw_resamples(10, 1000, 0)).unwrap();
        assert_eq!(
            (c.estimate, c.share, c.interval),
            (0.0, 0.0, Some((0.0, 0.0)))
        );
    }

    /// Runs whose points lie on ECE = 0.3 − 0.2 · similarity, at the
    /// similarities 0, 0.1, …, 0.9 (each a level of a 10-level fit, so the
    /// discretisation moves no point).
    fn linear_runs() -> Vec<Vec<(f64, f64)>> {
        (0..8)
            .map(|_| {
                (0..10)
                    .map(|i| (0.1 * i as f64, 0.3 - 0.02 * i as f64))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_clean_line_holds_in_every_resample_and_noise_alone_does_not() {
        let resamples = draw_resamples(8, 500, 0);
        let line = calibration_follows_similarity(&linear_runs(), 10, &resamples).unwrap();
        assert!((line.estimate + 0.2).abs() < 1e-9, "{line:?}");
        assert_eq!(line.share, 1.0);
        let (lo, hi) = line.interval.unwrap();
        assert!(lo <= -0.2 + 1e-9 && hi >= -0.2 - 1e-9, "{line:?}");
        // Points whose calibration does not follow similarity at all.
        let noise: Vec<Vec<(f64, f64)>> = linear_runs()
            .into_iter()
            .enumerate()
            .map(|(seed, pts)| {
                pts.into_iter()
                    .enumerate()
                    .map(|(i, (s, _))| (s, 0.1 + 0.05 * ((seed * 13 + i * 29) as f64).sin()))
                    .collect()
            })
            .collect();
        let flat = calibration_follows_similarity(&noise, 10, &resamples).unwrap();
        assert_ne!(flat.verdict(), Verdict::Holds, "{flat:?}");
    }

    #[test]
    fn a_fit_that_cannot_be_made_is_an_error_and_the_rule_is_r_and_the_interval() {
        let one_level = vec![vec![(0.5, 0.1), (0.5, 0.2), (0.5, 0.3)]];
        assert!(calibration_follows_similarity(&one_level, 5, &draw_resamples(1, 10, 0)).is_err());
        assert!(is_clear_relation(-0.6, (-0.3, -0.1)));
        assert!(!is_clear_relation(-0.4, (-0.3, -0.1)), "|r| < 0.5");
        assert!(!is_clear_relation(0.9, (-0.1, 0.3)), "the interval holds 0");
    }

    #[test]
    fn alike_drops_are_undecided_and_clearly_smaller_ones_hold() {
        let drops = [0.10, 0.12, 0.08, 0.11, 0.09, 0.10, 0.13, 0.07];
        let (a, b) = (draw_resamples(8, 2000, 0), draw_resamples(8, 2000, 1));
        let alike = forgets_less(&drops, &drops, [&a, &b]).unwrap();
        assert_eq!(alike.estimate, 0.0);
        assert!((alike.share - 0.5).abs() < 0.05, "{alike:?}");
        assert_eq!(alike.verdict(), Verdict::Undecided);
        let more: Vec<f64> = drops.iter().map(|d| d + 0.1).collect();
        let clear = forgets_less(&drops, &more, [&a, &b]).unwrap();
        assert!((clear.estimate - 0.1).abs() < 1e-12);
        assert_eq!(clear.verdict(), Verdict::Holds);
        assert_eq!(
            forgets_less(&more, &drops, [&a, &b]).unwrap().verdict(),
            Verdict::DoesNotHold
        );
        let err = forgets_less(&[], &drops, [&a, &b]).unwrap_err();
        assert_eq!(err.name, "supervised");
    }
}
