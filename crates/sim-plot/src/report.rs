//! `report.md`: every figure and table in order, each with one sentence
//! computed from the data, then "The paper's three findings", each stated
//! with this study's numbers: whether it holds here, does not, or cannot be
//! told from this study (and why). With several medical data sets or
//! methods, each finding is stated per facet (data set × method), then
//! whether the facets agree; with several methods, which method keeps the
//! most runs inside T_X(η, ε) for each backbone, and at what accuracy cost.

use crate::figures::Outcome;
use crate::study::VerdictRow;
use crate::study::{ComparisonRow, MethodComparisonRow, Study, Table1Metric};
use sim_metrics::findings;
use sim_study::config::Objective;
use sim_study::config::{BackboneConfig, Family, Paradigm, SelectOn};
use sim_study::tables::col;
use std::fmt::Write;

mod classes;
mod measures;
mod selection;
mod temperature;

/// How the report names a backbone's pre-training: its `pretrain`
/// objective where the tool made it, else its family (the side finding 3
/// puts it on: [`BackboneConfig::paradigm`]).
fn pretraining_words(b: &BackboneConfig) -> String {
    if let Some(p) = b.pretrain() {
        return match p.objective {
            Objective::Supervised => "pre-trained here: supervised".into(),
            Objective::Dino => "pre-trained here: self-supervised, DINO".into(),
            Objective::None => "random initialisation, not pre-trained".into(),
        };
    }
    let name = b.family.name();
    match b.family {
        Family::Vit => format!("family `{name}`: supervised"),
        Family::Dinov2 => format!("family `{name}`: self-supervised"),
        Family::OpenClip => format!("family `{name}`: language-supervised (CLIP)"),
        Family::Auto => "family not given".into(),
    }
}

/// "Pre-trained backbones": what each knows before fine-tuning
/// (`pretrain.parquet`), and whether the tool's own pre-training learned
/// something: self-supervised above the random initialisation on k-NN,
/// supervised above both.
fn pretrained_backbones(study: &Study) -> Option<String> {
    let rows = study.pretrain.as_ref().filter(|r| !r.is_empty())?;
    let mut lines = Vec::new();
    for row in rows {
        let on = if study.several_datasets() {
            format!(" (`{}`)", row.dataset)
        } else {
            String::new()
        };
        let epochs = row.epochs.unwrap_or_default();
        let how = match (
            row.objective.as_str(),
            row.minutes,
            row.images_per_s,
            row.loss,
        ) {
            (col::OBJECTIVE_CHECKPOINT, ..) => "a checkpoint file".to_string(),
            (objective, ..) if objective == Objective::None.name() => {
                "random initialisation".to_string()
            }
            (objective, Some(minutes), Some(images_per_s), Some(loss)) => format!(
                "{objective}, {} epoch{} in {minutes:.1} min at {images_per_s:.0} images/s, \
                    last epoch's loss {loss:.3}{}",
                epochs,
                if epochs == 1 { "" } else { "s" },
                row.effective_prototypes
                    .map_or(String::new(), |k| format!(", {k:.0} prototypes in use"))
            ),
            // Its pretrain.toml is not beside the study folder (a moved study).
            (objective, ..) => format!(
                "{objective}, {epochs} epochs; no record of its pre-training beside the \
                    study folder"
            ),
        };
        let probe = row.probe_balanced_accuracy.map_or(
            "no linear probe (epoch 0 made before it was kept)".to_string(),
            |p| {
                format!(
                    "linear probe on `{}`: balanced accuracy {p:.3}",
                    row.dataset
                )
            },
        );
        lines.push(format!(
            "- `{}`{on} ({how}): k-NN top-1 {:.3} on the natural images; {probe}.",
            row.backbone, row.knn_top1
        ));
    }
    // k-NN does not depend on the medical data set: the first one's rows.
    let first = rows.iter().filter(|r| r.dataset == rows[0].dataset);
    let best = |objective: &str| {
        first
            .clone()
            .filter(|r| r.objective == objective)
            .max_by(|a, b| a.knn_top1.total_cmp(&b.knn_top1))
    };
    let (random, dino, supervised) = (
        best(Objective::None.name()),
        best(Objective::Dino.name()),
        best(Objective::Supervised.name()),
    );
    let points = |a: f64, b: f64| (a - b) * 100.0;
    if let (Some(r), Some(d)) = (random, dino) {
        let gain = points(d.knn_top1, r.knn_top1);
        // Two points: several standard errors of a top-1 on a few thousand queries.
        let verdict = if gain > 2.0 {
            "learned something"
        } else {
            "is not clearly above the random initialisation"
        };
        lines.push(format!(
            "\nSelf-supervised pre-training {verdict}: `{}` {:+.1} points of k-NN top-1 over `{}`.",
            d.backbone, gain, r.backbone
        ));
    }
    if let Some(s) = supervised {
        let others: Vec<String> = [random, dino]
            .into_iter()
            .flatten()
            .map(|o| {
                format!(
                    "{:+.1} over `{}`",
                    points(s.knn_top1, o.knn_top1),
                    o.backbone
                )
            })
            .collect();
        if !others.is_empty() {
            let above = [random, dino]
                .into_iter()
                .flatten()
                .all(|o| s.knn_top1 > o.knn_top1);
            let verdict = if above { "is above" } else { "is not above" };
            lines.push(format!(
                "Supervised pre-training {verdict} the others on k-NN: `{}` {}.",
                s.backbone,
                others.join(", ")
            ));
        }
    }
    Some(lines.join("\n"))
}

/// A figure in the report: its PNGs and its caption, or why it was left out.
fn figure_markdown(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Written { files, caption } => {
            let mut text = String::new();
            for f in files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "png"))
            {
                let file = f.file_name().unwrap_or_default().to_string_lossy();
                let _ = writeln!(text, "![{file}](figures/{file})\n");
            }
            let _ = writeln!(text, "{caption}\n");
            text
        }
        Outcome::LeftOut(why) => format!("Left out: {why}.\n\n"),
    }
}

/// The figure of the "Pre-trained backbones" section; the others are under "Figures".
const PRETRAIN_FIGURE: &str = "pretrain_knn";

/// The report's text. `figures`: each figure's name and what became of it;
/// `tables`: the Markdown of Table 1 and Table 2.
pub fn report(study: &Study, figures: &[(String, Outcome)], tables: [&str; 2]) -> String {
    let mut r = String::new();
    let name = &study.config.study.name;
    let _ = writeln!(r, "# Study `{name}`\n");
    let _ = writeln!(
        r,
        "Regenerated by `sim-plot --study <this folder>` from the study's tables \
            (`tables/*.parquet`) and its config (`study.toml`); \
         every path here is relative to this folder, so the report stays true when the \
         folder moves. \
         Similarity is linear CKA to the pre-trained model on the medical test set \
         (final-norm CLS token unless a figure says otherwise).\n"
    );
    let _ = writeln!(r, "## Runs\n");
    for s in &study.summaries {
        let facet = study
            .facet_label(&s.dataset, &s.method)
            .map_or(String::new(), |l| format!("`{l}` / "));
        let _ = write!(
            r,
            "- {facet}`{}`: {} finished run(s) in the summaries",
            s.backbone, s.runs
        );
        if s.runs_left_out > 0 {
            let _ = write!(r, "; {} left out ({})", s.runs_left_out, s.left_out);
        }
        let _ = writeln!(r, ".");
    }
    if let Some(text) = pretrained_backbones(study) {
        let _ = writeln!(
            r,
            "\n## Pre-trained backbones\n\nBefore fine-tuning (`tables/pretrain.parquet`): \
                k-NN top-1 (k = {}) on the natural images' validation split with their \
                train split as the bank, and a linear probe (logistic regression on the \
                frozen final-norm CLS features of the medical train split) scored on the \
                medical test split.\n\n{text}\n",
            study.config.evaluation.knn_report_k
        );
        if let Some((_, curves)) = figures.iter().find(|(name, _)| name == PRETRAIN_FIGURE) {
            let _ = write!(
                r,
                "The learning curves (`tables/pretrain_epochs.parquet`):\n\n{}",
                figure_markdown(curves)
            );
        }
    }
    let _ = writeln!(r, "\n## Figures\n");
    for (name, outcome) in figures.iter().filter(|(name, _)| name != PRETRAIN_FIGURE) {
        let _ = write!(r, "### {name}\n\n{}", figure_markdown(outcome));
    }
    let per = match (study.several_datasets(), study.methods.len() > 1) {
        (true, true) => "per data set, method and backbone",
        (true, false) => "per data set and backbone",
        (false, true) => "per method and backbone",
        (false, false) => "per backbone",
    };
    let _ = writeln!(r, "## Table 1: {per}\n\n{}\n", tables[0].trim_end());
    let _ = writeln!(
        r,
        "## Per class: sensitivity, specificity, AUROC\n\n{}",
        classes::per_class(study)
    );
    let _ = writeln!(
        r,
        "## Calibration after temperature scaling\n\n{}",
        temperature::after_scaling(study)
    );
    let _ = writeln!(
        r,
        "## Table 2: the fits of Figure 5\n\n{}\n",
        tables[1].trim_end()
    );
    let _ = writeln!(
        r,
        "## Does one backbone keep more similarity than another?\n\n{}\n",
        comparisons(study)
    );
    if study.methods.len() > 1 {
        let _ = writeln!(
            r,
            "## Which method keeps similarity?\n\n{}\n",
            methods(study)
        );
    }
    let wise_ft = study.with_wise_ft();
    if !wise_ft.methods.is_empty() {
        let _ = writeln!(
            r,
            "## WiSE-FT: the path from θ₀ to θ_ft\n\n{}\n",
            wise_ft_paths(&wise_ft)
        );
    }
    let _ = writeln!(r, "## The paper's three findings\n");
    let _ = writeln!(
        r,
        "Each verdict is read from the share of bootstrap resamples of the runs \
            (`tables/verdicts.parquet`) in which the finding holds: \
         it holds at {:.0} % or more, does not hold at {:.0} % or less, and is undecided \
         between, where another draw of seeds could turn it.\n",
        findings::HOLDS_AT * 100.0,
        findings::FAILS_AT * 100.0
    );
    let _ = writeln!(
        r,
        "{}\n",
        theta_star_words(study.config.evaluation.select_on)
    );
    let claims: [(&str, FindingOf); 3] = [
        (
            "Runs that keep both accuracy and similarity exist.",
            finding_space,
        ),
        (
            "Similarity and calibration are linearly related.",
            finding_fit,
        ),
        (
            "Supervised pre-training forgets less than self-supervised pre-training.",
            finding_forgetting,
        ),
    ];
    for (i, (claim, finding)) in claims.into_iter().enumerate() {
        if !study.several_facets() {
            let _ = writeln!(r, "{}. **{claim}** {}\n", i + 1, finding(study).text);
            continue;
        }
        let per_facet: Vec<(String, Finding)> = study
            .facets()
            .iter()
            .map(|f| (f.label(), finding(&study.facet(f))))
            .collect();
        let _ = writeln!(
            r,
            "{}. **{claim}** {}\n",
            i + 1,
            agreement(&per_facet, facets_noun(study))
        );
        for (label, f) in &per_facet {
            let _ = writeln!(r, "   - `{label}`: {}", f.text);
        }
        let _ = writeln!(r);
    }
    let _ = writeln!(
        r,
        "## Do the measures agree?\n\n{}\n{}",
        measures::by_measure(study),
        measures::above_chance(study)
    );
    if study.selection_summary.is_some() {
        let _ = writeln!(
            r,
            "## Could we have picked the backbone before fine-tuning?\n\n{}",
            selection::selection(study)
        );
    }
    r
}

/// How θ* was picked (`evaluation.select_on`).
fn theta_star_words(select_on: SelectOn) -> &'static str {
    match select_on {
        SelectOn::Test => {
            "θ*, each backbone's best run, is picked by test accuracy: the paper's \
            protocol, which is optimistic (the test split both picks and scores it); \
            `evaluation.select_on = \"validation\"` picks it on the validation split."
        }
        SelectOn::Validation => {
            "θ*, each backbone's best run, is picked by validation accuracy \
            (`evaluation.select_on = \"validation\"`); its accuracy and every other number \
            are the test split's."
        }
    }
}

/// The permutation tests of `comparisons.parquet`, a sentence each, and how
/// precisely one run's final similarity is known (its interval over the test
/// images), so a difference can be set against the probe set's noise.
fn comparisons(study: &Study) -> String {
    let mut lines = Vec::new();
    let half_widths: Vec<f64> = study
        .space
        .iter()
        .filter_map(|p| p.similarity_ci().map(|(lo, hi)| (hi - lo) / 2.0))
        .collect();
    if !half_widths.is_empty() {
        let mut sorted = half_widths.clone();
        sorted.sort_by(f64::total_cmp);
        lines.push(format!(
            "One run's final similarity is known to ± {:.3} over its test images (median \
                half-width of the runs' 95 % bootstrap intervals, {} runs; widest ± {:.3}).",
            sorted[sorted.len() / 2],
            sorted.len(),
            sorted[sorted.len() - 1]
        ));
    }
    let Some(rows) = &study.comparisons else {
        lines.push(
            "No comparisons table (tables made before it existed: run `sim-metrics study` again)."
                .into(),
        );
        return lines.join("\n\n");
    };
    if rows.is_empty() {
        lines.push(
            "No two backbones with finished runs on the same data set: nothing to compare.".into(),
        );
    }
    let mut tests = Vec::new();
    for c in rows {
        let on = study
            .facet_label(&c.dataset, &c.method)
            .map_or(String::new(), |l| format!(" (`{l}`)"));
        tests.push(format!("- {}", PermutationRow::from(c).sentence(&on)));
    }
    if !tests.is_empty() {
        lines.push(tests.join("\n"));
    }
    lines.join("\n\n")
}

/// A one-sided permutation test over runs' final similarities, of backbone
/// against backbone or method against method: does `a` (the higher mean)
/// keep more similarity than `b`?
struct PermutationRow<'r> {
    a: &'r str,
    b: &'r str,
    runs_a: u32,
    runs_b: u32,
    similarity_a: f64,
    similarity_b: f64,
    p_value: f64,
    exact: bool,
    permutations: u64,
}

impl<'r> From<&'r ComparisonRow> for PermutationRow<'r> {
    fn from(c: &'r ComparisonRow) -> Self {
        PermutationRow {
            a: &c.backbone_a,
            b: &c.backbone_b,
            runs_a: c.runs_a,
            runs_b: c.runs_b,
            similarity_a: c.similarity_a,
            similarity_b: c.similarity_b,
            p_value: c.p_value,
            exact: c.exact,
            permutations: c.permutations,
        }
    }
}

impl<'r> From<&'r MethodComparisonRow> for PermutationRow<'r> {
    fn from(c: &'r MethodComparisonRow) -> Self {
        PermutationRow {
            a: &c.method_a,
            b: &c.method_b,
            runs_a: c.runs_a,
            runs_b: c.runs_b,
            similarity_a: c.similarity_a,
            similarity_b: c.similarity_b,
            p_value: c.p_value,
            exact: c.exact,
            permutations: c.permutations,
        }
    }
}

impl PermutationRow<'_> {
    /// "`a` keeps more similarity than `b`{on}: means, runs, p (how)."
    fn sentence(&self, on: &str) -> String {
        let how = if self.exact {
            format!(
                "exact, all {} splits of the runs; the smallest p they allow is {:.3}",
                self.permutations,
                1.0 / self.permutations as f64
            )
        } else {
            format!("{} random permutations", self.permutations)
        };
        let verdict = if self.p_value < 0.05 {
            "keeps more similarity than"
        } else {
            "is not shown to keep more similarity than"
        };
        format!(
            "`{}` {verdict} `{}`{on}: mean final similarity {:.3} ({} runs) vs {:.3} ({} \
                runs); one-sided permutation test p = {:.3} ({how}).",
            self.a,
            self.b,
            self.similarity_a,
            self.runs_a,
            self.similarity_b,
            self.runs_b,
            self.p_value
        )
    }
}

/// Per data set and backbone: the method with the most runs inside
/// T_X(η, ε) (more mean similarity on a tie), its accuracy cost (the best
/// method's mean final accuracy minus its own), and the permutation tests
/// between the methods.
fn methods(study: &Study) -> String {
    let mut lines = Vec::new();
    for dataset in &study.datasets {
        for backbone in &study.backbones {
            // (method, runs inside, runs, mean similarity, mean accuracy)
            let per_method: Vec<(&String, usize, usize, f64, f64)> = study
                .methods
                .iter()
                .filter_map(|m| {
                    let runs: Vec<_> = study
                        .space
                        .iter()
                        .filter(|p| {
                            &p.dataset == dataset && &p.method == m && &p.backbone == backbone
                        })
                        .collect();
                    let n = runs.len();
                    let mean = |f: fn(&&crate::study::SpaceRow) -> f64| {
                        runs.iter().map(f).sum::<f64>() / n as f64
                    };
                    (n > 0).then(|| {
                        (
                            m,
                            runs.iter().filter(|p| p.in_space).count(),
                            n,
                            mean(|p| p.similarity),
                            mean(|p| p.accuracy),
                        )
                    })
                })
                .collect();
            let Some(best) = per_method
                .iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(a.3.total_cmp(&b.3)))
            else {
                continue;
            };
            let top_accuracy = per_method
                .iter()
                .map(|m| m.4)
                .fold(f64::NEG_INFINITY, f64::max);
            let on = if study.several_datasets() {
                format!(" on `{dataset}`")
            } else {
                String::new()
            };
            let all: Vec<String> = per_method
                .iter()
                .map(|m| {
                    format!(
                        "`{}` {} of {} (similarity {:.3}, accuracy {:.3})",
                        m.0, m.1, m.2, m.3, m.4
                    )
                })
                .collect();
            lines.push(format!(
                "- `{backbone}`{on}: `{}` keeps the most runs inside T_X ({} of {}), at an \
                    accuracy cost of {:.3} against the most accurate method. Runs inside \
                    per method: {}.",
                best.0,
                best.1,
                best.2,
                top_accuracy - best.4,
                all.join("; ")
            ));
            let tests = study
                .method_comparisons
                .iter()
                .flatten()
                .filter(|c| &c.dataset == dataset && &c.backbone == backbone);
            lines.extend(tests.map(|c| format!("  - {}", PermutationRow::from(c).sentence(""))));
        }
    }
    let e = &study.config.evaluation;
    format!(
        "T_X(η = {}, ε = {}) per method: θ* is the method's own best run. Mean final \
            similarity and accuracy over the method's finished runs.\n\n{}",
        e.similarity_threshold,
        e.accuracy_tolerance,
        lines.join("\n")
    )
}

/// Per facet with WiSE-FT and backbone: the mean similarity and accuracy at
/// each α, and the α of best accuracy.
fn wise_ft_paths(study: &Study) -> String {
    let mut lines = vec![
        "(1 − α)θ₀ + αθ_ft of each finished run's backbone, with its fine-tuned head; α = 1 \
            is the last epoch. Means over the runs."
            .to_string(),
    ];
    for facet in study.facets() {
        let rows = study.facet(&facet);
        for backbone in &study.backbones {
            let means = rows.wise_ft_means(backbone);
            let Some(best) = means
                .iter()
                .max_by(|a, b| a.accuracy.total_cmp(&b.accuracy))
            else {
                continue;
            };
            let path: Vec<String> = means
                .iter()
                .map(|m| {
                    format!(
                        "α = {}: similarity {:.3}, accuracy {:.3}, ECE {:.3}",
                        crate::style::trim(m.alpha),
                        m.similarity,
                        m.accuracy,
                        m.ece
                    )
                })
                .collect();
            let on = if study.several_datasets() {
                format!("{} / {}", facet.dataset, facet.method)
            } else {
                facet.method.clone()
            };
            lines.push(format!(
                "- `{on}` / `{backbone}` ({} runs): most accurate at α = {}. {}.",
                best.runs,
                crate::style::trim(best.alpha),
                path.join("; ")
            ));
        }
    }
    lines.join("\n")
}

/// Whether a finding holds in a study (or a data set of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Holds,
    /// For some backbones (pairs), not all.
    Partly,
    /// For none in enough resamples to say, and not refuted for all.
    Undecided,
    DoesNotHold,
    CannotSay,
}

impl Verdict {
    fn words(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Partly => "holds in part",
            Verdict::Undecided => "is undecided",
            Verdict::DoesNotHold => "does not hold",
            Verdict::CannotSay => "cannot be told",
        }
    }
}

/// How a finding is told from a study (or one data set of it).
type FindingOf = fn(&Study) -> Finding;

/// A finding's verdict and the sentence that states it with the numbers.
struct Finding {
    verdict: Verdict,
    text: String,
}

/// What a study's facets are: its data sets, its methods, or both.
fn facets_noun(study: &Study) -> &'static str {
    match (study.several_datasets(), study.methods.len() > 1) {
        (true, true) => "data sets and methods",
        (false, true) => "methods",
        _ => "data sets",
    }
}

/// Where the facets (data sets, methods) agree on a finding and where not.
fn agreement(per_facet: &[(String, Finding)], noun: &str) -> String {
    let first = per_facet[0].1.verdict;
    if per_facet.iter().all(|(_, f)| f.verdict == first) {
        let on = if first == Verdict::DoesNotHold {
            "any"
        } else {
            "every one"
        };
        return format!("The {noun} agree: it {} on {on}.", first.words());
    }
    let mut groups: Vec<(Verdict, Vec<String>)> = Vec::new();
    for (dataset, f) in per_facet {
        match groups.iter_mut().find(|(v, _)| *v == f.verdict) {
            Some((_, names)) => names.push(format!("`{dataset}`")),
            None => groups.push((f.verdict, vec![format!("`{dataset}`")])),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(v, names)| format!("it {} on {}", v.words(), names.join(", ")))
        .collect();
    format!("The {noun} disagree: {}.", parts.join("; "))
}

/// The measure the findings are stated with: biased CKA on the CLS token.
const HEADLINE: (&str, &str) = (col::CKA, "cls");

/// A finding's rows of `verdicts.parquet` under a measure (`None`: tables
/// made before the verdicts were).
fn verdict_rows<'a>(
    study: &'a Study,
    finding: u32,
    (measure, token): (&str, &str),
) -> Option<Vec<&'a VerdictRow>> {
    let rows = study.verdicts.as_ref()?;
    Some(
        rows.iter()
            .filter(|v| v.finding == finding && v.measure == measure && v.token == token)
            .collect(),
    )
}

const NO_VERDICTS: &str = "Cannot say: the tables were made before `verdicts.parquet` \
    existed; run `sim-metrics study` again";

/// "holds in 97.2 % of 1000 resamples of the runs", led by the row's
/// verdict where it does not hold.
fn share_words(row: &VerdictRow) -> String {
    let share = format!(
        "{:.1} % of {} resamples of the runs",
        row.share * 100.0,
        row.resamples
    );
    match findings::Verdict::of_share(row.share) {
        findings::Verdict::Holds => format!("holds in {share}"),
        findings::Verdict::Undecided => format!("undecided: holds in {share}"),
        findings::Verdict::DoesNotHold => format!("does not hold: holds in {share}"),
    }
}

/// A finding's verdict over its rows (one per backbone, or per pair for
/// finding 3), and the words that lead its sentence.
fn aggregate(rows: &[&VerdictRow], noun: &str) -> (Verdict, String) {
    let verdicts: Vec<findings::Verdict> = rows
        .iter()
        .map(|r| findings::Verdict::of_share(r.share))
        .collect();
    let count = |v: findings::Verdict| verdicts.iter().filter(|x| **x == v).count();
    let (n, holds, undecided, not) = (
        verdicts.len(),
        count(findings::Verdict::Holds),
        count(findings::Verdict::Undecided),
        count(findings::Verdict::DoesNotHold),
    );
    let rest = [(undecided, "undecided"), (not, "does not hold")]
        .iter()
        .filter(|(k, _)| *k > 0)
        .map(|(k, words)| format!("; {words} for {k}"))
        .collect::<String>();
    match () {
        _ if n == 0 => (
            Verdict::CannotSay,
            format!("Cannot say: no {noun} with a verdict"),
        ),
        _ if holds == n => (Verdict::Holds, format!("Holds here for every {noun}")),
        _ if not == n => (
            Verdict::DoesNotHold,
            format!("Does not hold here for any {noun}"),
        ),
        _ if holds > 0 => (
            Verdict::Partly,
            format!("Holds here for {holds} of {n} {noun}s{rest}"),
        ),
        _ => (
            Verdict::Undecided,
            format!("Undecided here: it holds for no {noun} in enough resamples to say{rest}"),
        ),
    }
}

/// The row of `backbone` (finding 1 or 2) among a finding's rows.
fn row_of<'a>(rows: &[&'a VerdictRow], backbone: &str) -> Option<&'a VerdictRow> {
    rows.iter().copied().find(|v| v.backbone == backbone)
}

fn finding_space(study: &Study) -> Finding {
    if study.space.is_empty() {
        return Finding {
            verdict: Verdict::CannotSay,
            text: "Cannot say: no run finished.".into(),
        };
    }
    let e = &study.config.evaluation;
    let Some(rows) = verdict_rows(study, 1, HEADLINE) else {
        return Finding {
            verdict: Verdict::CannotSay,
            text: format!("{NO_VERDICTS}."),
        };
    };
    let mut parts = Vec::new();
    for b in study.backbones_with_runs() {
        let runs: Vec<_> = study.space.iter().filter(|p| p.backbone == b).collect();
        let inside = runs.iter().filter(|p| p.in_space).count();
        let beside_best = runs
            .iter()
            .filter(|p| p.in_space && p.seed != p.reference_seed)
            .count();
        let certainty = row_of(&rows, b).map_or("no verdict".to_string(), share_words);
        parts.push(format!(
            "`{b}` {inside} of {} runs inside, {beside_best} besides θ* ({certainty})",
            runs.len()
        ));
    }
    let (verdict, words) = aggregate(&rows, "backbone");
    let text = format!(
        "{words}: runs besides θ* inside T_X(η = {}, ε = {}). {}.",
        e.similarity_threshold,
        e.accuracy_tolerance,
        parts.join("; ")
    );
    Finding { verdict, text }
}

/// Finding 2, read from the fits over the fine-tuned epochs and their
/// resamples; whether adding epoch 0 (similarity 1 by definition) would
/// change one fit's reading is said beside.
fn finding_fit(study: &Study) -> Finding {
    let fits = |points: &str| {
        study
            .fits
            .iter()
            .filter(|f| f.metric == col::ECE && f.points == points)
            .collect::<Vec<_>>()
    };
    let (fine_tuned, with_epoch0) = (fits(col::POINTS_FINE_TUNED), fits(col::POINTS_WITH_EPOCH0));
    if fine_tuned.is_empty() {
        return Finding {
            verdict: Verdict::CannotSay,
            text: "Cannot say: no fit over fine-tuned epochs (no finished run).".into(),
        };
    }
    let Some(rows) = verdict_rows(study, 2, HEADLINE) else {
        return Finding {
            verdict: Verdict::CannotSay,
            text: format!("{NO_VERDICTS}."),
        };
    };
    let (verdict, words) = aggregate(&rows, "backbone");
    let parts: Vec<String> = fine_tuned
        .iter()
        .map(|f| {
            let Some(row) = row_of(&rows, &f.backbone) else {
                return fit_words(f);
            };
            let interval = row.estimate_ci().map_or(String::new(), |(lo, hi)| {
                format!(", slope 95 % CI over resampled runs [{lo:.3}, {hi:.3}]")
            });
            format!("{}{interval}; {}", fit_words(f), share_words(row))
        })
        .collect();
    let mut text = format!(
        "{words} (over the fine-tuned epochs). {}.",
        parts.join("; ")
    );
    if !with_epoch0.is_empty() {
        let (one_fit, _) = single_fits(&fine_tuned);
        let (with, with_words) = single_fits(&with_epoch0);
        text.push_str(&format!(
            " With epoch 0 added (similarity 1 by definition, calibration of {}), one fit \
                per backbone: {}{}.",
            study.epoch0_head().trim_start_matches("epoch 0 scored by "),
            with_words,
            if with != one_fit {
                ": adding epoch 0 changes the fits' reading, and the \
                verdict is read from the fine-tuned epochs"
            } else {
                ", as without it"
            }
        ));
    }
    Finding { verdict, text }
}

/// One fit of `fits.parquet` in words: the slope per 0.1 CKA, r, R², the
/// slope's interval (Student t over the levels) and whether it is a clear
/// linear relation ([`findings::is_clear_relation`]).
fn fit_words(f: &crate::study::FitRow) -> String {
    let metric = if f.metric == col::ECE_SCALED {
        "temperature-scaled ECE"
    } else {
        "ECE"
    };
    match (f.r, f.r2, f.slope, f.slope_ci()) {
        (Some(r), Some(r2), Some(slope), Some((lo, hi))) => format!(
            "`{}`: {metric} changes {:+.3} per 0.1 CKA, r = {r:.2}, R² = {r2:.2}, slope 95 % CI \
                [{lo:.3}, {hi:.3}] over {} points in {} levels{}",
            f.backbone,
            slope * 0.1,
            f.n_points,
            f.n_levels,
            if findings::is_clear_relation(r, (lo, hi)) {
                ""
            } else {
                " (not a clear linear relation: |r| < 0.5 or the interval holds 0)"
            }
        ),
        _ => format!("`{}`: no fit ({})", f.backbone, f.status),
    }
}

/// How many of the fits are a clear linear relation, as (clear, fitted)
/// and in words.
fn single_fits(fits: &[&crate::study::FitRow]) -> ((usize, usize), String) {
    let fitted: Vec<bool> = fits
        .iter()
        .filter_map(|f| Some(findings::is_clear_relation(f.r?, f.slope_ci()?)))
        .collect();
    let clear = fitted.iter().filter(|c| **c).count();
    let words = match (fitted.len(), clear) {
        (0, _) => "no backbone's points allow a fit".to_string(),
        (n, c) => format!("a clear linear relation for {c} of {n} backbones"),
    };
    ((clear, fitted.len()), words)
}

fn finding_forgetting(study: &Study) -> Finding {
    let (mut supervised, mut other, mut parts) = (0, 0, Vec::new());
    for s in study.summaries.iter().filter(|s| s.runs > 0) {
        let Some(backbone) = study.config.backbones.iter().find(|b| b.name == s.backbone) else {
            continue;
        };
        let after = s.stat(Table1Metric::KnnAfter);
        let (Some(before), Some(after), Some(sd)) =
            (s.stat(Table1Metric::KnnBefore).mean, after.mean, after.std)
        else {
            continue;
        };
        parts.push(format!(
            "`{}` ({}) loses {:.1} ± {:.1} points of k-NN top-1 ({} runs; negative: gains)",
            s.backbone,
            pretraining_words(backbone),
            (before - after) * 100.0,
            sd * 100.0,
            s.runs
        ));
        match backbone.paradigm() {
            Paradigm::Supervised => supervised += 1,
            Paradigm::SelfSupervised => other += 1,
            Paradigm::Neither => {}
        }
    }
    if parts.is_empty() {
        return Finding {
            verdict: Verdict::CannotSay,
            text: "Cannot say: no run finished.".into(),
        };
    }
    if supervised == 0 || other == 0 {
        let words = "Cannot say: the study needs a supervised backbone (family `vit`, or \
            pre-trained here with objective `supervised`) and a self-supervised one \
            (`dinov2`, `open-clip`, or objective `dino`) with finished runs";
        return Finding {
            verdict: Verdict::CannotSay,
            text: format!("{words}. {}.", parts.join("; ")),
        };
    }
    let Some(rows) = verdict_rows(study, 3, (col::KNN_TOP1, "cls")) else {
        return Finding {
            verdict: Verdict::CannotSay,
            text: format!("{NO_VERDICTS}. {}.", parts.join("; ")),
        };
    };
    let (verdict, words) = aggregate(&rows, "supervised/self-supervised pair");
    let pairs: Vec<String> = rows
        .iter()
        .map(|r| {
            let interval = r.estimate_ci().map_or(String::new(), |(lo, hi)| {
                format!(
                    ", 95 % CI over resampled runs [{:+.1}, {:+.1}]",
                    lo * 100.0,
                    hi * 100.0
                )
            });
            format!(
                "mean k-NN drop of `{}` minus that of `{}`: {:+.1} points{interval} ({})",
                r.versus.as_deref().unwrap_or("?"),
                r.backbone,
                r.estimate * 100.0,
                share_words(r)
            )
        })
        .collect();
    Finding {
        verdict,
        text: format!("{words}. {}. {}.", pairs.join("; "), parts.join("; ")),
    }
}
