//! Accuracy, balanced accuracy and macro F1 (docs/SPEC.md: HAM10000 is 67 % one
//! class, so plain accuracy alone misleads). Conventions follow scikit-learn:
//! balanced accuracy averages recall over the classes present in the truth;
//! macro F1 averages over the classes present in truth or prediction, a class
//! with no true positive scoring 0.

use crate::MetricError;

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
