//! GBC (Pándy et al. 2022, "Transferability Estimation using Bhattacharyya
//! Class Separability"): each class a Gaussian with diagonal covariance
//! (its mean and per-feature variance, 1/n); GBC = −Σ over ordered pairs of
//! classes i ≠ j of the Bhattacharyya coefficient exp(−D_B), D_B =
//! ⅛ Σ_k (μ_ik − μ_jk)²/s_k + ½ Σ_k ln(s_k / √(σ²_ik σ²_jk)), s = (σ²_i + σ²_j)/2.
//! Closer to 0 is better (classes overlap less).
//!
//! A feature with no variance within a class (a constant feature, a class
//! of one sample) has no Gaussian: an error naming both.

use super::{ClassMoments, Classes};
use crate::MetricError;

/// GBC of the features summarised by `moments`.
pub fn gbc(moments: &ClassMoments, classes: &Classes, name: &str) -> Result<f64, MetricError> {
    let c = moments.classes();
    let means: Vec<Vec<f64>> = (0..c).map(|k| moments.class_mean(k)).collect();
    let variances: Vec<Vec<f64>> = (0..c).map(|k| moments.class_variances(k)).collect();
    for (k, v) in variances.iter().enumerate() {
        if let Some(j) = v.iter().position(|&s| s <= 0.0) {
            return Err(MetricError::input(
                name,
                format!(
                    "feature {j} has no variance within class {} ({} sample(s)): GBC's \
                     Bhattacharyya distance needs a Gaussian per class",
                    classes.labels[k],
                    moments.count(k)
                ),
            ));
        }
    }
    let mut total = 0.0;
    for i in 0..c {
        for j in (0..c).filter(|&j| j != i) {
            let distance: f64 = (0..moments.dim())
                .map(|k| {
                    let (vi, vj) = (variances[i][k], variances[j][k]);
                    let s = (vi + vj) / 2.0;
                    let d = means[i][k] - means[j][k];
                    d * d / s / 8.0 + 0.5 * (s / (vi * vj).sqrt()).ln()
                })
                .sum();
            total += (-distance).exp();
        }
    }
    Ok(-total)
}
