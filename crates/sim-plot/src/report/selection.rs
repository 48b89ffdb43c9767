//! The report's "Could we have picked the backbone before fine-tuning?":
//! per (data set, method), which transferability score ranks the candidate
//! backbones most like their final balanced accuracy, whether it beats the
//! linear probe, whether the similarity after epoch 1 (the paper's claim of
//! "predictive model selection") ranks them at all, and every predictor's
//! τ against each outcome (`tables/selection_summary.parquet`).

use crate::study::{SelectionSummaryRow, Study};
use sim_metrics::selection::{Kind, Outcome, Predictor};
use std::fmt::Write;

/// `0.62 [0.41, 0.80]`, or the value alone without an interval.
fn with_interval(value: f64, low: Option<f64>, high: Option<f64>) -> String {
    match (low, high) {
        (Some(l), Some(h)) => format!("{value:.2} [{l:.2}, {h:.2}]"),
        _ => format!("{value:.2}"),
    }
}

fn tau(row: &SelectionSummaryRow) -> String {
    with_interval(
        row.kendall_tau,
        row.kendall_tau_ci_low,
        row.kendall_tau_ci_high,
    )
}

/// How an interval of a difference (or a τ) sits against 0: above, below,
/// or across.
#[derive(Debug, PartialEq)]
enum Side {
    Above,
    Below,
    Across,
}

fn side(low: Option<f64>, high: Option<f64>) -> Side {
    match (low, high) {
        (Some(l), _) if l > 0.0 => Side::Above,
        (_, Some(h)) if h < 0.0 => Side::Below,
        _ => Side::Across,
    }
}

/// The section's text, or why there is none.
pub(super) fn selection(study: &Study) -> String {
    let Some(summary) = study.selection_summary.as_ref().filter(|s| !s.is_empty()) else {
        return "No (data set, method) of this study has 3 backbones with a finished run: \
            model selection ranks at least 3 candidates (`configs/selection.toml` has 12).\n"
            .into();
    };
    let mut r = String::from(
        "Every backbone of a (data set, method) is a candidate. Each predictor, known \
         before fine-tuning (transferability scores of the frozen features of the medical \
         train split, the linear probe, k-NN on the natural images) or after the first \
         epoch (similarity, balanced accuracy, ECE), is judged by the weighted Kendall τ \
         between its ranking of the candidates and their final outcome (1: the same order, \
         the best first; 0: unrelated), and by the regret of fine-tuning its top pick; \
         95 % bootstrap intervals over the seeds (`tables/selection_summary.parquet`).\n\n",
    );
    for facet in study.facets() {
        let rows: Vec<&SelectionSummaryRow> = summary
            .iter()
            .filter(|s| s.dataset == facet.dataset && s.method == facet.method)
            .collect();
        if rows.is_empty() {
            continue;
        }
        if study.several_facets() {
            let _ = writeln!(r, "**`{}`**\n", facet.label());
        }
        let _ = writeln!(r, "{}\n", facet_words(&rows));
        let _ = writeln!(r, "{}", table(&rows));
    }
    r
}

/// The row of predictor `p` against outcome `o`.
fn find<'a>(
    rows: &[&'a SelectionSummaryRow],
    p: Predictor,
    o: Outcome,
) -> Option<&'a SelectionSummaryRow> {
    rows.iter()
        .copied()
        .find(|r| r.predictor == p.name() && r.outcome == o.name())
}

/// The rows against the final balanced accuracy of the predictors `which`
/// picks, in table order.
fn against_accuracy<'a>(
    rows: &[&'a SelectionSummaryRow],
    which: impl Fn(Predictor) -> bool,
) -> Vec<&'a SelectionSummaryRow> {
    rows.iter()
        .copied()
        .filter(|r| {
            r.outcome == Outcome::BalancedAccuracy.name()
                && Predictor::parse(&r.predictor).is_some_and(&which)
        })
        .collect()
}

/// The row of the highest τ (the last on a tie).
fn highest(rows: Vec<&SelectionSummaryRow>) -> Option<&SelectionSummaryRow> {
    rows.into_iter()
        .max_by(|a, b| a.kendall_tau.total_cmp(&b.kendall_tau))
}

/// The best score before fine-tuning, against the probe; the similarity
/// after epoch 1, against chance and the best score.
fn facet_words(rows: &[&SelectionSummaryRow]) -> String {
    let accuracy = Outcome::BalancedAccuracy;
    let scores = against_accuracy(rows, |p| matches!(p, Predictor::Score(_)));
    // The first in predictor order of those with the highest τ; ties named together.
    let best =
        scores
            .iter()
            .copied()
            .fold(None, |best: Option<&SelectionSummaryRow>, r| match best {
                Some(b) if b.kendall_tau >= r.kendall_tau => Some(b),
                _ => Some(r),
            });
    let mut words = String::new();
    let candidates = rows.first().map_or(0, |r| r.candidates);
    let _ = write!(words, "{candidates} candidates. ");
    let Some(best) = best else {
        return words
            + "No transferability score could be computed (see the warnings of `sim-metrics study`).";
    };
    let tied: Vec<String> = scores
        .iter()
        .filter(|r| r.kendall_tau == best.kendall_tau)
        .map(|r| format!("**{}**", r.predictor))
        .collect();
    let who = match tied.split_last() {
        Some((one, [])) => format!("{one} ranks"),
        Some((last, init)) => format!("{} and {last} (tied) rank", init.join(", ")),
        None => String::new(),
    };
    let _ = write!(
        words,
        "Before fine-tuning, {who} them best against the final balanced accuracy: \
         τ = {}; the pick of **{}**, `{}`, {}",
        tau(best),
        best.predictor,
        best.pick,
        regret_words(best),
    );
    match (
        find(rows, Predictor::LinearProbe, accuracy),
        best.tau_minus_probe,
    ) {
        (Some(probe), Some(diff)) => {
            let verdict = match side(best.tau_minus_probe_ci_low, best.tau_minus_probe_ci_high) {
                Side::Above => "beats the linear probe",
                Side::Below => "does worse than the linear probe",
                Side::Across => "is no better or worse than the linear probe within the interval",
            };
            let _ = write!(
                words,
                "; it {verdict} (the probe's τ = {}, the difference {}).",
                tau(probe),
                with_interval(
                    diff,
                    best.tau_minus_probe_ci_low,
                    best.tau_minus_probe_ci_high
                )
            );
        }
        _ => words.push_str("; no linear probe to compare with (epoch 0 kept no train features)."),
    }
    // The probe or k-NN may rank better still than every score.
    let baselines = against_accuracy(rows, |p| {
        matches!(p, Predictor::LinearProbe | Predictor::Knn)
    });
    if let Some(other) = highest(baselines).filter(|r| r.kendall_tau > best.kendall_tau) {
        let _ = write!(
            words,
            " Better still before fine-tuning: `{}` (τ = {}).",
            other.predictor,
            tau(other)
        );
    }
    if let Some(sim) = find(rows, Predictor::SimilarityEpoch1, accuracy) {
        let claim = match side(sim.kendall_tau_ci_low, sim.kendall_tau_ci_high) {
            Side::Above => {
                "ranks the candidates better than chance: the paper's claim of \
                predictive model selection holds here"
            }
            Side::Below => {
                "ranks them in reverse (more similarity kept, lower accuracy): \
                the paper's claim of predictive model selection does not hold here"
            }
            Side::Across => {
                "does not rank them better than chance within the interval: \
                the paper's claim of predictive model selection is not shown here"
            }
        };
        let versus = if sim.kendall_tau > best.kendall_tau {
            "above"
        } else {
            "below"
        };
        let _ = write!(
            words,
            " After epoch 1, the similarity to the pre-trained model (τ = {}) {claim}; its τ \
             is {versus} the best score's before fine-tuning.",
            tau(sim)
        );
    }
    if let Some(early) = highest(against_accuracy(rows, |p| p.kind() == Kind::FirstEpoch)) {
        let _ = write!(
            words,
            " The best predictor after epoch 1 is `{}` (τ = {}).",
            early.predictor,
            tau(early)
        );
    }
    words
}

/// How far the predictor's pick falls short of the best candidate.
fn regret_words(row: &SelectionSummaryRow) -> String {
    let points = |v: f64| format!("{:.1}", v * 100.0);
    let interval = match (row.regret_ci_low, row.regret_ci_high) {
        (Some(l), Some(h)) => format!(
            " (interval over seeds: {} to {} points)",
            points(l),
            points(h)
        ),
        _ => String::new(),
    };
    if row.regret == 0.0 {
        return format!("is the best candidate{interval}");
    }
    format!(
        "is {} points of balanced accuracy below the best candidate{interval}",
        points(row.regret)
    )
}

/// Every predictor's τ against each outcome, with intervals.
fn table(rows: &[&SelectionSummaryRow]) -> String {
    let mut t = String::from(
        "| predictor | known | τ vs balanced accuracy | τ vs ECE | τ vs forgetting | \
         regret (balanced acc., points) | pick |\n|---|---|---|---|---|---|---|\n",
    );
    for p in Predictor::ALL {
        let Some(acc) = find(rows, p, Outcome::BalancedAccuracy) else {
            continue;
        };
        let cell = |o| find(rows, p, o).map_or("—".to_string(), tau);
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | `{}` |",
            p.name(),
            p.kind().name(),
            tau(acc),
            cell(Outcome::Ece),
            cell(Outcome::Forgetting),
            with_interval(
                acc.regret * 100.0,
                acc.regret_ci_low.map(|v| v * 100.0),
                acc.regret_ci_high.map(|v| v * 100.0)
            ),
            acc.pick
        );
    }
    t
}
