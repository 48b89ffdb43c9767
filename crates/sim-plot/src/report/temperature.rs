//! The report's "Calibration after temperature scaling": how much of the
//! fine-tuned models' miscalibration one parameter, fitted on the
//! validation split, removes, and whether finding 2's linear relation
//! between similarity and ECE is still there on the scaled ECE (Table 2's
//! `ece_scaled` fits).

use super::fit_words;
use crate::study::Study;
use sim_metrics::findings;
use sim_study::tables::col;
use std::fmt::Write;

/// The section's text: a line per (data set, method) and backbone with
/// scaled epochs, then the fits on the scaled ECE.
pub(super) fn after_scaling(study: &Study) -> String {
    let mut lines = String::new();
    let mut clear = (0, 0);
    for facet in study.facets() {
        let f = study.facet(&facet);
        let label = study
            .facet_label(&facet.dataset, &facet.method)
            .map_or(String::new(), |l| format!("`{l}` / "));
        for b in f.backbones_with_runs() {
            let finals = f.final_epochs(b);
            let scaled: Vec<_> = finals
                .iter()
                .filter_map(|r| Some((r, r.temperature?, r.ece_scaled?, r.nll_scaled?)))
                .collect();
            if scaled.is_empty() {
                continue;
            }
            let n = scaled.len() as f64;
            let mean =
                |get: fn(&(_, f64, f64, f64)) -> f64| scaled.iter().map(get).sum::<f64>() / n;
            let before = scaled.iter().map(|s| s.0.scores.ece).sum::<f64>() / n;
            let nll_before = scaled.iter().map(|s| s.0.nll).sum::<f64>() / n;
            let (t, after, nll_after) = (mean(|s| s.1), mean(|s| s.2), mean(|s| s.3));
            // The temperature minimises the validation NLL, not the test
            // ECE: the ECE may come out higher, and is then said so.
            let removed = match 100.0 * (1.0 - after / before) {
                _ if before <= 0.0 => "nothing to remove".to_string(),
                share if share >= 0.0 => format!("{share:.0} % of it removed"),
                share => format!("{:.0} % higher after", -share),
            };
            let fit = f.fits.iter().find(|x| {
                x.backbone == b && x.metric == col::ECE_SCALED && x.points == col::POINTS_FINE_TUNED
            });
            let fit_text = fit.map_or(String::new(), |x| {
                if let (Some(r), Some(ci)) = (x.r, x.slope_ci()) {
                    clear.1 += 1;
                    if findings::is_clear_relation(r, ci) {
                        clear.0 += 1;
                    }
                }
                format!("; over the fine-tuned epochs, {}", fit_words(x))
            });
            let _ = writeln!(
                lines,
                "- {label}`{b}` ({} runs): ECE {before:.3} → {after:.3} at T = {t:.2} on \
                    average ({removed}); NLL {nll_before:.3} → {nll_after:.3}{fit_text}.",
                scaled.len()
            );
        }
    }
    if lines.is_empty() {
        return "No data set of this study has a validation split, so no temperature was \
            fitted: give a medical data set `validation_fraction` (MedMNIST brings its own \
            `val`).\n"
            .into();
    }
    let intro = "At each finished run's last epoch, mean over the runs: the test ECE before \
        and after dividing the logits by the temperature that minimises the NLL on the \
        validation split (`tables/epochs.parquet`, `temperature`, `ece_scaled`, \
        `nll_scaled`); the fits are Table 2's `ece_scaled` rows.";
    let finding = if clear.1 == 0 {
        String::new()
    } else {
        format!(
            "\nFinding 2 on the scaled ECE: a clear linear relation (|r| ≥ 0.5, slope \
                interval without 0) for {} of {} fits.",
            clear.0, clear.1
        )
    };
    format!("{intro}\n\n{lines}{finding}\n")
}
