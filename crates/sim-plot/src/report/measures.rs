//! The report's "Do the measures agree?": each finding's verdict under
//! every similarity measure of the study, side by side, and whether each
//! fine-tuned model's similarity is above the measure's chance level.

use super::{NO_VERDICTS, Verdict, aggregate, verdict_rows};
use crate::study::{Study, VerdictRow};
use sim_metrics::findings;
use sim_metrics::similarity::Measure;
use sim_study::tables::col;

/// The columns of the verdict table: heading, `measure`, `token`. The three
/// readings of CKA, then the study's other measures (on the CLS token).
fn columns(study: &Study) -> Vec<(String, &'static str, &'static str)> {
    let cka = [
        ("biased CKA, CLS", col::CKA, "cls"),
        ("debiased CKA, CLS", col::CKA_DEBIASED, "cls"),
        ("biased CKA, patch mean", col::CKA, "patch_mean"),
    ];
    let mut columns: Vec<_> = cka.iter().map(|&(h, m, t)| (h.to_owned(), m, t)).collect();
    columns.extend(others(study).map(|m| (m.name().to_owned(), m.name(), "cls")));
    columns
}

/// The study's measures besides CKA.
fn others(study: &Study) -> impl Iterator<Item = Measure> + '_ {
    let measures = &study.config.evaluation.similarity.measures;
    measures
        .iter()
        .copied()
        .filter(|m| !matches!(m, Measure::Cka | Measure::CkaDebiased))
}

/// Per facet and finding, the verdict under each of [`columns`]. Finding 1
/// is read under CKA only (η of T_X is a CKA level); finding 3 reads k-NN
/// top-1, which no similarity measure changes: its verdict stands in every
/// column.
pub(super) fn by_measure(study: &Study) -> String {
    if study.verdicts.is_none() {
        return format!("{NO_VERDICTS}.\n");
    }
    let claims = [
        (1, "1. runs besides θ* inside T_X"),
        (2, "2. ECE linear in similarity"),
        (3, "3. supervised forgets less (k-NN top-1)"),
    ];
    let columns = columns(study);
    let several = study.several_facets();
    let mut t = header(study, "finding", columns.iter().map(|c| c.0.as_str()));
    for facet in study.facets() {
        let rows = study.facet(&facet);
        for (finding, claim) in claims {
            t.push_str(&if several {
                format!("\n| {} | {claim} |", facet.label())
            } else {
                format!("\n| {claim} |")
            });
            for (i, &(_, measure, token)) in columns.iter().enumerate() {
                let at = match finding {
                    3 => (col::KNN_TOP1, "cls"),
                    1 if i >= 3 => {
                        t.push_str(" — |");
                        continue;
                    }
                    _ => (measure, token),
                };
                let found = verdict_rows(&rows, finding, at).unwrap_or_default();
                let noun = if finding == 3 { "pair" } else { "backbone" };
                t.push_str(&format!(" {} |", cell(&found, noun)));
            }
        }
    }
    let more = if columns.len() > 3 {
        " Finding 2 under the other measures fits ECE on each measure's value \
         (Procrustes: the negated distance) at every layer, as for CKA; finding 1 \
         has no verdict there (—): T_X's η is a CKA level."
    } else {
        " Add measures with `[evaluation.similarity] measures = [...]` (docs/SPEC.md)."
    };
    format!(
        "The same verdicts (share of resamples, as above) with the similarity read \
         several ways; each cell counts the backbones (finding 3: \
         supervised/self-supervised pairs) it holds for.{more}\n\n{t}\n"
    )
}

/// A table's first line and rule: the facet column where there are several.
fn header<'a>(study: &Study, first: &str, headings: impl Iterator<Item = &'a str>) -> String {
    let several = study.several_facets();
    let facet = match (study.several_datasets(), study.methods.len() > 1) {
        (true, true) => "data set / method",
        (false, true) => "method",
        _ => "data set",
    };
    let mut t = if several {
        format!("| {facet} | {first} |")
    } else {
        format!("| {first} |")
    };
    let mut count = 0;
    for h in headings {
        t.push_str(&format!(" {h} |"));
        count += 1;
    }
    t.push_str(if several { "\n|---|---|" } else { "\n|---|" });
    t.push_str(&"---|".repeat(count));
    t
}

/// A table cell: the verdict over a finding's rows, short.
fn cell(rows: &[&VerdictRow], noun: &str) -> String {
    let n = rows.len();
    let holds = rows
        .iter()
        .filter(|r| findings::Verdict::of_share(r.share) == findings::Verdict::Holds)
        .count();
    match aggregate(rows, noun).0 {
        Verdict::CannotSay => "—".into(),
        Verdict::Holds => format!("holds ({n} of {n})"),
        Verdict::Partly => format!("holds for {holds} of {n}"),
        Verdict::Undecided => format!("undecided (0 of {n})"),
        Verdict::DoesNotHold => format!("does not hold (0 of {n})"),
    }
}

/// Per facet, backbone and measure: the mean final similarity of the
/// finished runs (final layer, medical probe, CLS) beside the measure's
/// chance level, and how many runs are above it; then which are not.
pub(super) fn above_chance(study: &Study) -> String {
    let Some(rows) = &study.similarity else {
        return "Chance levels: the tables were made before `similarity.parquet` existed; \
                run `sim-metrics study` again.\n"
            .into();
    };
    let measures = &study.config.evaluation.similarity.measures;
    let several = study.several_facets();
    let mut t = header(study, "backbone", measures.iter().map(|m| m.name()));
    let mut below = Vec::new();
    for facet in study.facets() {
        let f = study.facet(&facet);
        for backbone in &study.backbones {
            // Each finished run's last epoch.
            let mut last = std::collections::BTreeMap::new();
            for e in f
                .epochs
                .iter()
                .filter(|e| e.backbone == *backbone && e.finished())
            {
                let at = last.entry(e.seed).or_insert(e.epoch);
                *at = (*at).max(e.epoch);
            }
            if last.is_empty() {
                continue;
            }
            t.push_str(&if several {
                format!("\n| {} | `{backbone}` |", facet.label())
            } else {
                format!("\n| `{backbone}` |")
            });
            for m in measures {
                let finals: Vec<_> = rows
                    .iter()
                    .filter(|r| r.is_final && r.backbone == *backbone && r.measure == m.name())
                    .filter(|r| last.get(&r.seed) == Some(&r.epoch))
                    .filter(|r| f.datasets[0] == r.dataset && f.methods[0] == r.method)
                    .collect();
                if finals.is_empty() {
                    t.push_str(" — |");
                    continue;
                }
                let mean = finals.iter().map(|r| r.value).sum::<f64>() / finals.len() as f64;
                let Some(null) = finals[0].null_mean else {
                    t.push_str(&format!(" {mean:.3} (no chance level) |"));
                    continue;
                };
                let above = finals
                    .iter()
                    .filter(|r| r.above_chance == Some(true))
                    .count();
                let n = finals.len();
                t.push_str(&format!(" {mean:.3} vs {null:.3}: {above} of {n} above |"));
                if above < n {
                    let on = if several {
                        format!(" on {}", facet.label())
                    } else {
                        String::new()
                    };
                    below.push(format!(
                        "`{backbone}` under {m}{on}: {} of {n} runs",
                        n - above
                    ));
                }
            }
        }
    }
    let verdict = if below.is_empty() {
        "Every finished run's final similarity is above chance under every measure.".to_string()
    } else {
        format!("**Not above chance**: {}.", below.join("; "))
    };
    format!(
        "Each measure's mean final similarity over the finished runs beside its chance \
         level (the pre-trained features against themselves with the test images \
         permuted: the mean over `null_resamples` permutations), and the runs above \
         the permutations' 95th percentile (Procrustes, a distance: below the 5th). \
         {verdict}\n\n{t}\n"
    )
}
