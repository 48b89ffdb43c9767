//! The H-score (Bao et al. 2019) in the shrinkage form of Ibrahim et al.
//! (2022, "Newer is not always better"): tr(Σ_α⁻¹ (1 − α) Σ_z), Σ_f the
//! covariance (1/n) of the centred features, Σ_α = (1 − α) Σ_f + α μ I with
//! μ = tr(Σ_f)/p and α Ledoit and Wolf's (2004) shrinkage as scikit-learn
//! computes it, Σ_z the covariance of each sample's class mean. The plain
//! H-score's Σ_f⁻¹ is unstable where features outnumber samples or are
//! collinear; the shrunk one is not.
//!
//! With Σ_z = Σ_c (n_c/n) m_c m_cᵀ (m_c the centred class means), the trace
//! is (1 − α) Σ_c (n_c/n) m_cᵀ Σ_α⁺ m_c, Σ_α⁺ through its eigenvalues,
//! those at most 1e-15 of the largest left out (numpy's `pinv` rule).

use super::ClassMoments;
use super::symmetric::Eigen;
use crate::MetricError;
use crate::linalg::MatRef;

/// Eigenvalues of Σ_α at most this share of the largest are left out of its
/// pseudo-inverse (numpy's `pinv(rcond=1e-15)`).
pub const PINV_RCOND: f64 = 1e-15;

/// Σᵢ ‖xᵢ − mean‖⁴ over the rows of `x`: the Ledoit-Wolf shrinkage's
/// fourth moment, summed over blocks of rows.
pub fn centred_norm4_sum(x: MatRef<'_, f64>, mean: &[f64]) -> f64 {
    x.data
        .chunks_exact(x.cols)
        .map(|row| {
            let s: f64 = row.iter().zip(mean).map(|(v, m)| (v - m) * (v - m)).sum();
            s * s
        })
        .sum()
}

/// The shrunk H-score of the features summarised by `moments`; `norm4`:
/// [`centred_norm4_sum`] of every row.
pub fn hscore(moments: &ClassMoments, norm4: f64, name: &str) -> Result<f64, MetricError> {
    let (n, p) = (moments.n() as f64, moments.dim());
    let mean = moments.mean();
    let cov = moments.total_scatter_about(&mean) / n;
    let trace: f64 = (0..p).map(|i| cov[(i, i)]).sum();
    let mu = trace / p as f64;
    let alpha = ledoit_wolf_shrinkage(&cov, mu, norm4, n);
    let shrunk = faer::Mat::from_fn(p, p, |i, j| {
        (1.0 - alpha) * cov[(i, j)] + if i == j { alpha * mu } else { 0.0 }
    });
    let eigen = Eigen::of(&shrunk, name)?;
    let cutoff = eigen.values[0] * PINV_RCOND;
    if eigen.values[0] <= 0.0 {
        return Err(MetricError::input(
            name,
            "every feature is constant: the H-score has no covariance to invert",
        ));
    }
    let inverse = |l: f64| if l > cutoff { 1.0 / l } else { 0.0 };
    let between: f64 = (0..moments.classes())
        .map(|k| {
            let m: Vec<f64> = moments
                .class_mean(k)
                .iter()
                .zip(&mean)
                .map(|(c, g)| c - g)
                .collect();
            moments.count(k) as f64 / n * eigen.quadratic(&m, inverse)
        })
        .sum();
    Ok((1.0 - alpha) * between)
}

/// Ledoit-Wolf's shrinkage intensity (scikit-learn's
/// `ledoit_wolf_shrinkage`), from the covariance (1/n), μ = tr/p and
/// Σᵢ ‖xᵢ − mean‖⁴.
fn ledoit_wolf_shrinkage(cov: &faer::Mat<f64>, mu: f64, norm4: f64, n: f64) -> f64 {
    let p = cov.nrows();
    if p == 1 {
        return 0.0;
    }
    let pf = p as f64;
    let delta_: f64 = (0..p)
        .flat_map(|i| (0..p).map(move |j| (i, j)))
        .map(|(i, j)| cov[(i, j)] * cov[(i, j)])
        .sum();
    let beta = (norm4 / n - delta_) / (pf * n);
    let trace = mu * pf;
    let delta = (delta_ - 2.0 * mu * trace + pf * mu * mu) / pf;
    let beta = beta.min(delta);
    if beta == 0.0 { 0.0 } else { beta / delta }
}
