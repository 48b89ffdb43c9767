//! Fits between similarity and a quality metric (docs/SPEC.md, Figure 5 and Table 2).
//!
//! The discretised linear fit: K similarity levels evenly spaced from the
//! smallest to the largest similarity; each point goes to its nearest level;
//! the metric is averaged per non-empty level; ordinary least squares through
//! the (level, mean) pairs gives slope, intercept, Pearson r, R² and a 95 %
//! confidence interval of the slope (Student t with levels − 2 degrees of
//! freedom). Pearson and Spearman on the raw points are reported beside it.

use crate::MetricError;
use statrs::distribution::{ContinuousCDF, StudentsT};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LevelFit {
    pub slope: f64,
    pub intercept: f64,
    pub r: f64,
    pub r2: f64,
    pub slope_ci_low: f64,
    pub slope_ci_high: f64,
    /// The levels that received points, with their mean metric and count.
    pub levels: Vec<Level>,
    /// Points in all.
    pub n: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Level {
    pub similarity: f64,
    pub mean: f64,
    pub count: usize,
}

/// The discretised linear fit of `metric` on `similarity` with `k` levels.
pub fn level_fit(similarity: &[f64], metric: &[f64], k: usize) -> Result<LevelFit, MetricError> {
    check_pairs(similarity, metric)?;
    if k < 2 {
        return Err(MetricError::input(
            "levels",
            "a line needs at least 2 levels",
        ));
    }
    let lo = similarity.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = similarity.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi <= lo {
        return Err(MetricError::input(
            "similarity",
            "all points have the same similarity: no slope",
        ));
    }
    let step = (hi - lo) / (k - 1) as f64;
    let (mut sums, mut counts) = (vec![0.0; k], vec![0usize; k]);
    for (&s, &m) in similarity.iter().zip(metric) {
        let level = (((s - lo) / step).round() as usize).min(k - 1);
        sums[level] += m;
        counts[level] += 1;
    }
    let levels: Vec<Level> = (0..k)
        .filter(|&i| counts[i] > 0)
        .map(|i| Level {
            similarity: lo + i as f64 * step,
            mean: sums[i] / counts[i] as f64,
            count: counts[i],
        })
        .collect();
    if levels.len() < 3 {
        return Err(MetricError::input(
            "similarity",
            format!(
                "{} non-empty levels; a slope interval needs at least 3",
                levels.len()
            ),
        ));
    }
    let x: Vec<f64> = levels.iter().map(|l| l.similarity).collect();
    let y: Vec<f64> = levels.iter().map(|l| l.mean).collect();
    let m = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / m, y.iter().sum::<f64>() / m);
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    let sxy: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let r = pearson(&x, &y)?;
    let sse: f64 = x
        .iter()
        .zip(&y)
        .map(|(a, b)| (b - intercept - slope * a).powi(2))
        .sum();
    let se = (sse / (m - 2.0) / sxx).sqrt();
    let t = StudentsT::new(0.0, 1.0, m - 2.0)
        .expect("dof ≥ 1")
        .inverse_cdf(0.975);
    Ok(LevelFit {
        slope,
        intercept,
        r,
        r2: r * r,
        slope_ci_low: slope - t * se,
        slope_ci_high: slope + t * se,
        levels,
        n: similarity.len(),
    })
}

/// Pearson's correlation coefficient.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64, MetricError> {
    check_pairs(x, y)?;
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let syy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    if sxx == 0.0 || syy == 0.0 {
        return Err(MetricError::input(
            "correlation",
            "a constant variable has no correlation",
        ));
    }
    Ok(sxy / (sxx * syy).sqrt())
}

/// Spearman's rank correlation (Pearson on average ranks, ties shared).
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64, MetricError> {
    check_pairs(x, y)?;
    pearson(&ranks(x), &ranks(y))
}

/// Weighted Kendall τ (Vigna 2015) with additive hyperbolic weights, as
/// scipy's `weightedtau(x, y)` with its defaults: the elements ranked by
/// decreasing (x, y), an exchange of the elements at ranks r and s
/// weighing 1/(r + 1) + 1/(s + 1), so disagreements at the top count
/// most; τ = Σ w sgn(Δx) sgn(Δy) / √(Σ w sgn(Δx)² · Σ w sgn(Δy)²) over
/// the pairs, averaged with the same ranked by decreasing (y, x).
/// Model selection's agreement measure: what matters is the order of the
/// best candidates.
pub fn weighted_tau(x: &[f64], y: &[f64]) -> Result<f64, MetricError> {
    check_pairs(x, y)?;
    let (a, b) = (weighted_tau_ranked(x, y), weighted_tau_ranked(y, x));
    if !(a.is_finite() && b.is_finite()) {
        return Err(MetricError::input(
            "correlation",
            "a constant variable has no rank correlation",
        ));
    }
    Ok((a + b) / 2.0)
}

/// Weighted τ with the ranks of decreasing (x, y): a full tie puts the
/// later element first (numpy's `lexsort(...)[::-1]`, as scipy ranks).
fn weighted_tau_ranked(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        x[b].total_cmp(&x[a])
            .then(y[b].total_cmp(&y[a]))
            .then(b.cmp(&a))
    });
    let mut weight = vec![0.0; n];
    for (rank, &i) in order.iter().enumerate() {
        weight[i] = 1.0 / (rank + 1) as f64;
    }
    let sign = |v: f64| {
        if v > 0.0 {
            1.0
        } else if v < 0.0 {
            -1.0
        } else {
            0.0
        }
    };
    let (mut both, mut xx, mut yy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        for j in i + 1..n {
            let w = weight[i] + weight[j];
            let (sx, sy) = (sign(x[i] - x[j]), sign(y[i] - y[j]));
            both += w * sx * sy;
            xx += w * sx * sx;
            yy += w * sy * sy;
        }
    }
    both / (xx * yy).sqrt()
}

/// Average ranks (1-based), ties sharing the mean of their ranks. Sorts
/// (value, index) pairs in place, in parallel: RSA ranks the millions of
/// entries of an RDM.
pub(crate) fn ranks(v: &[f64]) -> Vec<f64> {
    use rayon::slice::ParallelSliceMut;
    let mut order: Vec<(f64, usize)> = v.iter().copied().zip(0..).collect();
    order.par_sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && order[j + 1].0 == order[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &(_, o) in &order[i..=j] {
            out[o] = rank;
        }
        i = j + 1;
    }
    out
}

fn check_pairs(x: &[f64], y: &[f64]) -> Result<(), MetricError> {
    if x.len() != y.len() || x.len() < 3 {
        return Err(MetricError::input(
            "fit",
            format!(
                "{} and {} values; need equal lengths of at least 3",
                x.len(),
                y.len()
            ),
        ));
    }
    if let Some(v) = x.iter().chain(y).find(|v| !v.is_finite()) {
        return Err(MetricError::input("fit", format!("non-finite value {v}")));
    }
    Ok(())
}
