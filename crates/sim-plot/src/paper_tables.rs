//! The paper's two tables, as Markdown (to read, and paste) and CSV (to load).
//! Table 1, per backbone over its finished runs: accuracy, balanced accuracy,
//! macro F1, macro AUROC, ECE, k-NN top-1 before and after fine-tuning, final similarity,
//! as mean ± sd, and n. Table 2, per backbone and calibration metric: the
//! discretised linear fit of Figure 5. With several medical data sets or
//! methods, a row per data set, method and backbone (Markdown: `data set`
//! and `method` columns first where there are several); the CSV files
//! always have both columns.

use crate::study::{Study, Summary, Table1Metric};
use sim_study::StudyDir;
use sim_study::tables::col;
use std::path::PathBuf;

/// Table 1's metric columns and their headers, in the paper's order (the
/// final similarity last); every one of [`Table1Metric::ALL`] once.
const TABLE1_COLUMNS: [(Table1Metric, &str); 8] = [
    (Table1Metric::Accuracy, "accuracy"),
    (Table1Metric::BalancedAccuracy, "balanced accuracy"),
    (Table1Metric::MacroF1, "macro F1"),
    (Table1Metric::Auroc, "AUROC"),
    (Table1Metric::Ece, "ECE"),
    (Table1Metric::KnnBefore, "k-NN before"),
    (Table1Metric::KnnAfter, "k-NN after"),
    (Table1Metric::Similarity, "final similarity"),
];

/// `0.812 ± 0.010 [0.801, 0.822]` (mean ± sd [95 % bootstrap interval of
/// the mean]), or `–` without runs.
fn cell(s: Summary) -> String {
    match (s.mean, s.std, s.ci()) {
        (Some(m), Some(sd), Some((lo, hi))) => format!("{m:.3} ± {sd:.3} [{lo:.3}, {hi:.3}]"),
        (Some(m), Some(sd), None) => format!("{m:.3} ± {sd:.3}"),
        _ => "–".into(),
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v:.6}"))
}

/// Writes `tables/table1.{md,csv}` and `tables/table2.{md,csv}` of the study folder `dir`; returns them.
pub fn write(study: &Study, dir: &StudyDir) -> anyhow::Result<Vec<PathBuf>> {
    let (datasets, methods) = (study.several_datasets(), study.methods.len() > 1);
    // The Markdown's first cells: the data set and the method (where there
    // are several) and the backbone.
    let key = |dataset: &str, method: &str, backbone: &str| {
        let mut cells = Vec::new();
        if datasets {
            cells.push(dataset);
        }
        if methods {
            cells.push(method);
        }
        cells.push(backbone);
        cells.join(" | ")
    };
    let key_header = format!("| {}", key("data set", "method", "backbone"));
    let key_rule = "|---".repeat(1 + usize::from(datasets) + usize::from(methods));
    let mut md1 = format!(
        "{key_header} | n | {} |\n{key_rule}|---|{}\n",
        TABLE1_COLUMNS.map(|(_, header)| header).join(" | "),
        "---|".repeat(TABLE1_COLUMNS.len())
    );
    let mut csv1 = format!(
        "{},{},{},{}",
        col::DATASET,
        col::METHOD,
        col::BACKBONE,
        col::RUNS
    );
    for m in TABLE1_COLUMNS.map(|(m, _)| m.name()) {
        let [low, high] = col::ci(m);
        csv1.push_str(&format!(",{},{},{low},{high}", col::mean(m), col::std(m)));
    }
    csv1.push('\n');
    for row in &study.summaries {
        let cells: Vec<String> = TABLE1_COLUMNS
            .iter()
            .map(|(m, _)| cell(row.stat(*m)))
            .collect();
        md1.push_str(&format!(
            "| {} | {} | {} |\n",
            key(&row.dataset, &row.method, &row.backbone),
            row.runs,
            cells.join(" | ")
        ));
        csv1.push_str(&format!(
            "{},{},{},{}",
            row.dataset, row.method, row.backbone, row.runs
        ));
        for (m, _) in TABLE1_COLUMNS {
            let s = row.stat(m);
            csv1.push_str(&format!(
                ",{},{},{},{}",
                opt(s.mean),
                opt(s.std),
                opt(s.ci().map(|c| c.0)),
                opt(s.ci().map(|c| c.1))
            ));
        }
        csv1.push('\n');
    }
    let left: Vec<String> = study
        .summaries
        .iter()
        .filter(|r| r.runs_left_out > 0)
        .map(|r| {
            format!(
                "{}: {}",
                key(&r.dataset, &r.method, &r.backbone).replace(" | ", "/"),
                r.left_out
            )
        })
        .collect();
    md1.push_str(&format!(
        "\nMean ± sample standard deviation [95 % bootstrap interval of the mean, \
            resampling runs] over each backbone's finished runs, at their last epoch; \
            fractions in [0, 1]; k-NN top-1 on the natural images at k = {}.\n",
        study.config.evaluation.knn_report_k
    ));
    if !left.is_empty() {
        md1.push_str(&format!("Runs left out: {}.\n", left.join("; ")));
    }

    let mut md2 = format!(
        "{key_header} | metric | fitted | slope | 95 % CI of the slope | intercept | r | R² \
            | points | levels | status |\n{key_rule}|---|---|---|---|---|---|---|---|---|---|\n"
    );
    let mut csv2 = [
        col::DATASET,
        col::METHOD,
        col::BACKBONE,
        col::METRIC,
        col::POINTS,
        col::SLOPE,
        col::SLOPE_CI_LOW,
        col::SLOPE_CI_HIGH,
        col::INTERCEPT,
        col::R,
        col::R2,
        col::N_POINTS,
        col::N_LEVELS,
        col::FIT_STATUS,
    ]
    .join(",")
        + "\n";
    let num = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
    for f in &study.fits {
        let ci = f
            .slope_ci()
            .map_or("–".to_string(), |(lo, hi)| format!("[{lo:.3}, {hi:.3}]"));
        md2.push_str(&format!(
            "| {} | {} | {} | {} | {ci} | {} | {} | {} | {} | {} | {} |\n",
            key(&f.dataset, &f.method, &f.backbone),
            f.metric,
            f.points,
            num(f.slope),
            num(f.intercept),
            num(f.r),
            num(f.r2),
            f.n_points,
            f.n_levels,
            f.status
        ));
        let (lo, hi) = (f.slope_ci().map(|c| c.0), f.slope_ci().map(|c| c.1));
        csv2.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},\"{}\"\n",
            f.dataset,
            f.method,
            f.backbone,
            f.metric,
            f.points,
            opt(f.slope),
            opt(lo),
            opt(hi),
            opt(f.intercept),
            opt(f.r),
            opt(f.r2),
            f.n_points,
            f.n_levels,
            f.status.replace('"', "'")
        ));
    }
    md2.push_str(&format!(
        "\nThe metric on similarity (medical test set, CLS CKA to the pre-trained model) \
            over every (finished run, epoch, layer), discretised into {} evenly spaced \
            similarity levels; least squares through the level means. Each fit twice: over \
            the fine-tuned epochs (what finding 2 reads), and with epoch 0 added \
            (similarity 1 at every layer by definition; its calibration that of a linear \
            probe's head on the frozen features).\n",
        study.config.evaluation.fit_levels
    ));
    let mut written = Vec::new();
    for (path, text) in [
        (dir.paper_table(1, "md"), md1),
        (dir.paper_table(1, "csv"), csv1),
        (dir.paper_table(2, "md"), md2),
        (dir.paper_table(2, "csv"), csv2),
    ] {
        sim_study::write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table1_has_a_column_for_every_metric_once() {
        for m in Table1Metric::ALL {
            let n = TABLE1_COLUMNS.iter().filter(|(c, _)| *c == m).count();
            assert_eq!(n, 1, "{m:?}");
        }
    }
}
