//! The report's "Per class": each class's sensitivity, specificity and
//! one-vs-rest AUROC at the finished runs' last epoch, per backbone: what a
//! medical reviewer reads first, since the rare classes (melanoma among
//! them) are the ones a model must not miss and overall accuracy hides.

use crate::figures::mean_std;
use crate::study::{ClassRow, Study};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The section's text: a table per (data set, method), a row per class.
pub(super) fn per_class(study: &Study) -> String {
    let Some(classes) = &study.classes else {
        return "No per-class scores: the tables were made before `classes.parquet` \
            existed; make them again (`sim-metrics study`)."
            .into();
    };
    let mut r = String::from(
        "At each finished run's last epoch, mean over the runs \
         (`tables/classes.parquet`): sensitivity (recall) ± sd / specificity / \
         one-vs-rest AUROC of the class's softmax probability; `–` where the test \
         split has no image of the class.\n",
    );
    for facet in study.facets() {
        let facet_study = study.facet(&facet);
        let rows = last_epochs(&facet_study, classes);
        if rows.is_empty() {
            continue;
        }
        if study.several_facets() {
            let _ = write!(r, "\n`{}`:\n", facet.label());
        }
        let _ = write!(r, "\n{}", table(&facet_study, &rows));
    }
    r
}

/// The class rows of each finished run's last epoch in the facet's study.
fn last_epochs<'a>(facet: &Study, classes: &'a [ClassRow]) -> Vec<&'a ClassRow> {
    let mut last = BTreeMap::<(&str, u64), u32>::new();
    for e in facet.epochs.iter().filter(|e| e.finished()) {
        let at = last.entry((e.backbone.as_str(), e.seed)).or_insert(e.epoch);
        *at = (*at).max(e.epoch);
    }
    let (dataset, method) = (&facet.datasets[0], &facet.methods[0]);
    classes
        .iter()
        .filter(|c| (&c.dataset, &c.method) == (dataset, method))
        .filter(|c| last.get(&(c.backbone.as_str(), c.seed)) == Some(&c.epoch))
        .collect()
}

/// A Markdown table: a row per class (its name and test images), a column
/// per backbone with runs.
fn table(study: &Study, rows: &[&ClassRow]) -> String {
    let backbones: Vec<&String> = study
        .backbones
        .iter()
        .filter(|b| rows.iter().any(|r| &r.backbone == *b))
        .collect();
    let mut by_class = BTreeMap::<u32, (&str, u32)>::new();
    for r in rows {
        by_class.insert(r.class, (&r.class_name, r.support));
    }
    let names: Vec<String> = backbones.iter().map(|b| format!("`{b}`")).collect();
    let mut t = format!(
        "| class (test images) | {} |\n|---|{}\n",
        names.join(" | "),
        "---|".repeat(backbones.len())
    );
    for (class, (name, support)) in by_class {
        let cells: Vec<String> = backbones
            .iter()
            .map(|b| {
                let own: Vec<&&ClassRow> = rows
                    .iter()
                    .filter(|r| r.class == class && &r.backbone == *b)
                    .collect();
                cell(&own)
            })
            .collect();
        let _ = writeln!(t, "| `{name}` ({support}) | {} |", cells.join(" | "));
    }
    t
}

/// `0.61 ± 0.05 / 0.93 / 0.88` over one class's rows of one backbone.
fn cell(rows: &[&&ClassRow]) -> String {
    let values = |of: fn(&ClassRow) -> Option<f64>| -> Vec<f64> {
        rows.iter().filter_map(|r| of(r)).collect()
    };
    let mean = |v: &[f64]| {
        if v.is_empty() {
            "–".to_string()
        } else {
            format!("{:.2}", mean_std(v).0)
        }
    };
    let sensitivity = values(|r| r.sensitivity);
    let sensitivity = if sensitivity.is_empty() {
        "–".to_string()
    } else {
        let (m, sd) = mean_std(&sensitivity);
        format!("{m:.2} ± {sd:.2}")
    };
    format!(
        "{sensitivity} / {} / {}",
        mean(&values(|r| r.specificity)),
        mean(&values(|r| r.auroc))
    )
}
