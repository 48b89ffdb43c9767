//! Accuracy, balanced accuracy and macro F1 (docs/SPEC.md: HAM10000 is 67 % one
//! class, so plain accuracy alone misleads), and each class's sensitivity,
//! specificity and one-vs-rest AUROC, the numbers a medical reviewer reads
//! (the rare classes, melanoma among them, are the ones that count).
//! Conventions follow scikit-learn: balanced accuracy averages recall over
//! the classes present in the truth; macro F1 averages over the classes
//! present in truth or prediction, a class with no true positive scoring 0;
//! AUROC is `roc_auc_score` of a class's softmax probability against the
//! rest (ties count a half), macro AUROC its mean over the classes it is
//! defined for (docs/SPEC.md, "Representation quality").

use crate::MetricError;
use crate::calibration::probabilities;
use crate::linalg::{MatRef, Scalar};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClassificationScores {
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub macro_f1: f64,
}

pub fn classification_scores(
    predicted: &[usize],
    truth: &[usize],
) -> Result<ClassificationScores, MetricError> {
    if predicted.len() != truth.len() || truth.is_empty() {
        return Err(MetricError::input(
            "labels",
            format!(
                "{} predictions for {} labels (need the same, at least one)",
                predicted.len(),
                truth.len()
            ),
        ));
    }
    let classes = 1 + *predicted.iter().chain(truth).max().expect("non-empty");
    let (mut tp, mut fp, mut fn_) = (
        vec![0usize; classes],
        vec![0usize; classes],
        vec![0usize; classes],
    );
    for (&p, &t) in predicted.iter().zip(truth) {
        if p == t {
            tp[t] += 1;
        } else {
            fp[p] += 1;
            fn_[t] += 1;
        }
    }
    let accuracy = tp.iter().sum::<usize>() as f64 / truth.len() as f64;
    let present: Vec<usize> = (0..classes).filter(|&c| tp[c] + fn_[c] > 0).collect();
    let balanced_accuracy = present
        .iter()
        .map(|&c| tp[c] as f64 / (tp[c] + fn_[c]) as f64)
        .sum::<f64>()
        / present.len() as f64;
    let seen: Vec<usize> = (0..classes)
        .filter(|&c| tp[c] + fn_[c] + fp[c] > 0)
        .collect();
    let macro_f1 = seen
        .iter()
        .map(|&c| 2.0 * tp[c] as f64 / (2 * tp[c] + fp[c] + fn_[c]) as f64)
        .sum::<f64>()
        / seen.len() as f64;
    Ok(ClassificationScores {
        accuracy,
        balanced_accuracy,
        macro_f1,
    })
}

/// One class's scores, one-vs-rest, on a test set.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClassScores {
    /// Test samples of the class.
    pub support: usize,
    /// Sensitivity (recall), TP / (TP + FN); none for a class absent from
    /// the truth.
    pub sensitivity: Option<f64>,
    /// Specificity, TN / (TN + FP); none when every sample is of the class.
    pub specificity: Option<f64>,
    /// AUROC of the class's softmax probability against the rest; none
    /// where the truth has no sample of the class or no other sample.
    pub auroc: Option<f64>,
}

/// Each class's scores (one per column of `logits`, in order) from logits
/// and labels; the prediction is the argmax (first on ties), as for
/// [`classification_scores`].
pub fn class_scores<T: Scalar>(
    logits: MatRef<'_, T>,
    truth: &[usize],
) -> Result<Vec<ClassScores>, MetricError> {
    logits.check_labels(truth)?;
    let (probs, predicted) = probabilities(logits)?;
    let n = truth.len();
    let scores = (0..logits.cols)
        .map(|c| {
            let positive: Vec<bool> = truth.iter().map(|&t| t == c).collect();
            let support = positive.iter().filter(|&&p| p).count();
            let hits = |of_class: bool| {
                let (mut right, mut total) = (0usize, 0usize);
                for (&p, &pos) in predicted.iter().zip(&positive) {
                    if pos == of_class {
                        total += 1;
                        right += usize::from((p == c) == of_class);
                    }
                }
                (total > 0).then(|| right as f64 / total as f64)
            };
            let column: Vec<f64> = (0..n).map(|i| probs[i * logits.cols + c]).collect();
            ClassScores {
                support,
                sensitivity: hits(true),
                specificity: hits(false),
                auroc: auroc(&column, &positive),
            }
        })
        .collect();
    Ok(scores)
}

/// The mean AUROC over the classes it is defined for (macro one-vs-rest);
/// none if it is defined for none.
pub fn macro_auroc(classes: &[ClassScores]) -> Option<f64> {
    let defined: Vec<f64> = classes.iter().filter_map(|c| c.auroc).collect();
    (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64)
}

/// The area under the ROC curve of `scores` for the `positive` samples:
/// the Mann–Whitney statistic, (R₊ − n₊(n₊ + 1)/2) / (n₊ n₋) with R₊ the
/// positives' rank sum, tied scores sharing their mean rank (a tie counts
/// a half). None without a positive or a negative.
pub fn auroc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        // Ranks start + 1 ..= end share their mean.
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        let tied_positives = order[start..end].iter().filter(|&&i| positive[i]).count();
        rank_sum += mean_rank * tied_positives as f64;
        start = end;
    }
    let (p, q) = (n_pos as f64, n_neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_counts_pairs_and_half_ties() {
        // Pairs (positive, negative): (0.9, 0.1) win, (0.9, 0.5) win,
        // (0.5, 0.1) win, (0.5, 0.5) tie: (3 + 0.5) / 4.
        let got = auroc(&[0.9, 0.5, 0.5, 0.1], &[true, true, false, false]);
        assert_eq!(got, Some(0.875));
        assert_eq!(auroc(&[0.3, 0.2], &[true, true]), None);
        assert_eq!(auroc(&[0.3, 0.2], &[false, false]), None);
    }

    #[test]
    fn a_class_absent_from_the_truth_has_no_sensitivity_and_no_auroc() {
        let logits = [2.0f32, 0.0, 0.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0];
        let m = MatRef::new(&logits, 3, 3, "logits").unwrap();
        let scores = class_scores(m, &[0, 1, 1]).unwrap();
        assert_eq!(scores[2].support, 0);
        assert_eq!(scores[2].sensitivity, None);
        assert_eq!(scores[2].auroc, None);
        // Nothing is predicted class 2: every negative is right.
        assert_eq!(scores[2].specificity, Some(1.0));
        assert_eq!(scores[1].sensitivity, Some(0.5));
        assert_eq!(macro_auroc(&scores), Some(1.0));
    }

    #[test]
    fn a_label_outside_the_classes_is_an_error_naming_the_labels() {
        let logits = [1.0f32, 0.0];
        let m = MatRef::new(&logits, 1, 2, "logits").unwrap();
        let e = class_scores(m, &[2]).unwrap_err();
        assert_eq!(e.name, "labels");
    }
}
