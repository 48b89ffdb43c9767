//! SFDA (Shao et al. 2022, "Not All Models Are Equal: Predicting Model
//! Transferability in a Self-challenging Fisher Space"), as the authors'
//! code computes it:
//!
//! 1. a Fisher discriminant with a regularised within-class scatter,
//!    S_λ = (1 − λ) S_w + λ tr(S_w)/d I, S_w = Σ_c π_c Cov_c (1/n_c) and
//!    λ = exp(−5 λ_max(S_w)); logits x ᵀS_λ⁻¹μ_c − ½ μ_cᵀS_λ⁻¹μ_c + ln π_c
//!    (the authors project on every generalised eigenvector of (S_b, S_λ),
//!    which gives these same logits);
//! 2. ConfMix: the softmax of its softmax probabilities q, each sample
//!    moved towards the mean of the other classes' means, x' = q_y x + (1 −
//!    q_y) μ̄_{−y};
//! 3. a second discriminant on x' with the same λ; the score is the mean
//!    probability of the true class (no log, as the authors).
//!
//! The authors estimate λ_max with three steps of power iteration from a
//! random start; here it is exact, so the score is reproducible. A
//! regularised scatter whose smallest eigenvalue is below 1e-12 of its
//! largest (collinear features, fewer samples than features, λ ≈ 0) is an
//! error naming the features.

use super::symmetric::Eigen;
use super::{ClassMoments, Classes};
use crate::MetricError;
use crate::linalg::MatRef;

/// Smallest eigenvalue of S_λ, as a share of its largest, that can be inverted.
pub const MIN_CONDITION: f64 = 1e-12;

/// SFDA of features `x`, whose moments are `moments`.
pub fn sfda(
    x: MatRef<'_, f64>,
    classes: &Classes,
    moments: &ClassMoments,
) -> Result<f64, MetricError> {
    let first = Discriminant::fit(moments, None, x.name)?;
    let c = classes.len();
    let means: Vec<Vec<f64>> = (0..c).map(|k| moments.class_mean(k)).collect();
    let total: Vec<f64> = (0..x.cols)
        .map(|j| means.iter().map(|m| m[j]).sum())
        .collect();
    let others: Vec<Vec<f64>> = means
        .iter()
        .map(|m| {
            m.iter()
                .zip(&total)
                .map(|(v, t)| (t - v) / (c - 1) as f64)
                .collect()
        })
        .collect();
    let logits = first.logits(x);
    let mut mixed = Vec::with_capacity(x.data.len());
    for ((row, l), &y) in x
        .data
        .chunks_exact(x.cols)
        .zip(logits.chunks_exact(c))
        .zip(&classes.of_sample)
    {
        let q = softmax(&softmax(l));
        let conf = q[y];
        mixed.extend(
            row.iter()
                .zip(&others[y])
                .map(|(v, o)| conf * v + (1.0 - conf) * o),
        );
    }
    let mixed = MatRef::new(&mixed, x.rows, x.cols, x.name)?;
    let second = Discriminant::fit(
        &ClassMoments::of(mixed, classes),
        Some(first.shrinkage),
        x.name,
    )?;
    let logits = second.logits(mixed);
    let sum: f64 = logits
        .chunks_exact(c)
        .zip(&classes.of_sample)
        .map(|(l, &y)| softmax(l)[y])
        .sum();
    Ok(sum / x.rows as f64)
}

/// A regularised Fisher discriminant's linear logits.
struct Discriminant {
    /// S_λ⁻¹ μ_c of each class.
    weights: Vec<Vec<f64>>,
    /// −½ μ_cᵀ S_λ⁻¹ μ_c + ln π_c.
    intercepts: Vec<f64>,
    shrinkage: f64,
}

impl Discriminant {
    fn fit(
        moments: &ClassMoments,
        shrinkage: Option<f64>,
        name: &str,
    ) -> Result<Discriminant, MetricError> {
        let (n, d) = (moments.n() as f64, moments.dim());
        let mut within = faer::Mat::zeros(d, d);
        for k in 0..moments.classes() {
            within += moments.class_scatter(k) / n;
        }
        let eigen = Eigen::of(&within, name)?;
        let shrinkage = shrinkage.unwrap_or_else(|| (-5.0 * eigen.values[0]).exp());
        let mu = (0..d).map(|i| within[(i, i)]).sum::<f64>() / d as f64;
        // S_λ has S_w's eigenvectors, each eigenvalue (1 − λ)σ + λμ.
        let values: Vec<f64> = eigen
            .values
            .iter()
            .map(|s| (1.0 - shrinkage) * s + shrinkage * mu)
            .collect();
        let (largest, smallest) = (values[0], values[d - 1]);
        if smallest.is_nan() || smallest <= MIN_CONDITION * largest {
            return Err(MetricError::input(
                name,
                format!(
                    "SFDA's regularised within-class scatter is singular (eigenvalues {smallest:.3e} \
                     to {largest:.3e}, shrinkage {shrinkage:.3e}): collinear or constant features, \
                     or fewer samples than features"
                ),
            ));
        }
        let mut weights = Vec::new();
        let mut intercepts = Vec::new();
        for k in 0..moments.classes() {
            let mean = moments.class_mean(k);
            let p = eigen.project(&mean);
            let w: Vec<f64> = (0..d)
                .map(|i| {
                    (0..d)
                        .map(|j| eigen.vectors[(i, j)] * p[j] / values[j])
                        .sum()
                })
                .collect();
            let quadratic: f64 = mean.iter().zip(&w).map(|(m, w)| m * w).sum();
            intercepts.push(-0.5 * quadratic + (moments.count(k) as f64 / n).ln());
            weights.push(w);
        }
        Ok(Discriminant {
            weights,
            intercepts,
            shrinkage,
        })
    }

    /// Row-major samples × classes.
    fn logits(&self, x: MatRef<'_, f64>) -> Vec<f64> {
        let c = self.weights.len();
        let w = faer::Mat::from_fn(x.cols, c, |j, k| self.weights[k][j]);
        let xs = faer::MatRef::from_row_major_slice(x.data, x.rows, x.cols);
        let product = xs * &w;
        let mut out = Vec::with_capacity(x.rows * c);
        for i in 0..x.rows {
            out.extend((0..c).map(|k| product[(i, k)] + self.intercepts[k]));
        }
        out
    }
}

fn softmax(z: &[f64]) -> Vec<f64> {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}
