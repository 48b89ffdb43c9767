//! TransRate (Huang et al. 2022, "Frustratingly Easy Transferability
//! Estimation"): how much of the features' coding rate the labels explain,
//! R(Z) − R(Z | Y), Z the centred features, R(Z) = ½ logdet(I + ZᵀZ/(nε))
//! and R(Z | Y) the mean over classes of R(Z_c), Z_c the class's rows of Z
//! (not re-centred), as the authors' code computes it (ε = 1e-4). The
//! log-determinants through Cholesky factors.

use super::ClassMoments;
use super::symmetric::log_det_spd;
use crate::MetricError;

/// ε of the coding rate.
pub const EPSILON: f64 = 1e-4;

/// TransRate of the features summarised by `moments`.
pub fn transrate(moments: &ClassMoments, name: &str) -> Result<f64, MetricError> {
    let mean = moments.mean();
    let rate = |scatter: faer::Mat<f64>, rows: usize| -> Result<f64, MetricError> {
        let d = scatter.nrows();
        let scale = 1.0 / (rows as f64 * EPSILON);
        let m = faer::Mat::from_fn(d, d, |i, j| {
            scale * scatter[(i, j)] + if i == j { 1.0 } else { 0.0 }
        });
        log_det_spd(&m).map(|l| l / 2.0).ok_or_else(|| {
            MetricError::input(name, "a coding rate's matrix is not positive definite")
        })
    };
    let whole = rate(moments.total_scatter_about(&mean), moments.n())?;
    let mut given = 0.0;
    for k in 0..moments.classes() {
        given += rate(moments.scatter_about(k, &mean), moments.count(k))?;
    }
    Ok(whole - given / moments.classes() as f64)
}
