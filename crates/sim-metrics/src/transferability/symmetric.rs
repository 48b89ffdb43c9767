//! The few things the scores ask of a symmetric matrix: its eigenvalues and
//! vectors, its log-determinant, and solves with it.

use crate::MetricError;
use faer::{Mat, Side};

/// A symmetric matrix's eigenvalues, non-increasing, and its eigenvectors
/// (columns, in that order).
pub(crate) struct Eigen {
    pub values: Vec<f64>,
    pub vectors: Mat<f64>,
}

impl Eigen {
    /// `name`: what the matrix is, for the error.
    pub fn of(m: &Mat<f64>, name: &str) -> Result<Eigen, MetricError> {
        let evd = m.self_adjoint_eigen(Side::Lower).map_err(|e| {
            MetricError::input(name, format!("eigendecomposition did not converge: {e:?}"))
        })?;
        let d = m.nrows();
        let ascending: Vec<f64> = evd.S().column_vector().iter().copied().collect();
        let values = ascending.iter().rev().copied().collect();
        let vectors = Mat::from_fn(d, d, |i, j| evd.U()[(i, d - 1 - j)]);
        Ok(Eigen { values, vectors })
    }

    /// `Σ_i f(λ_i) (vᵢ · x)²` summed over the eigenpairs: `xᵀ f(M) x`.
    pub fn quadratic(&self, x: &[f64], f: impl Fn(f64) -> f64) -> f64 {
        self.project(x)
            .iter()
            .zip(&self.values)
            .map(|(p, &l)| f(l) * p * p)
            .sum()
    }

    /// The coordinates of `x` in the eigenbasis, `Vᵀ x`.
    pub fn project(&self, x: &[f64]) -> Vec<f64> {
        let d = self.values.len();
        (0..d)
            .map(|j| (0..d).map(|i| self.vectors[(i, j)] * x[i]).sum())
            .collect()
    }
}

/// log det of a symmetric positive definite matrix, through its Cholesky
/// factor; `None` where it is not positive definite.
pub(crate) fn log_det_spd(m: &Mat<f64>) -> Option<f64> {
    let llt = m.llt(Side::Lower).ok()?;
    let l = llt.L();
    Some((0..m.nrows()).map(|i| 2.0 * l[(i, i)].ln()).sum())
}
