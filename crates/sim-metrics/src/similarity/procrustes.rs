//! The angular orthogonal-Procrustes distance (Williams et al. 2021,
//! netrep's `LinearMetric(alpha=1)` without whitening): each side centred
//! and scaled to unit Frobenius norm, then
//!
//!   d(X, Y) = arccos(max over orthogonal Q of ⟨X, Y Q⟩) = arccos(‖XᵀY‖_*),
//!
//! the nuclear norm being the sum of the singular values of XᵀY (a side
//! with fewer features is padded with zeros, which leaves them unchanged).
//! 0: the same shape up to rotation, reflection, translation and scale;
//! π/2: orthogonal.

use super::{centred, rows_in_order};
use crate::MetricError;
use crate::linalg::{MatRef, Scalar};
use faer::Mat;

/// A side's centred features at unit Frobenius norm.
pub struct Shape(Mat<f64>);

impl Shape {
    pub fn new<T: Scalar>(m: MatRef<'_, T>) -> Result<Shape, MetricError> {
        let x = centred(m);
        let norm = x.norm_l2();
        if norm == 0.0 {
            return Err(MetricError::input(
                m.name,
                "every feature is constant over the samples: no shape to align",
            ));
        }
        Ok(Shape(x * faer::Scale(1.0 / norm)))
    }

    pub(super) fn permuted(&self, order: &[usize]) -> Shape {
        Shape(rows_in_order(&self.0, order))
    }
}

/// The angular distance in [0, π/2].
pub fn angular_distance(a: &Shape, b: &Shape) -> Result<f64, MetricError> {
    let cross = a.0.transpose() * &b.0;
    let singular = cross.singular_values().map_err(|e| {
        MetricError::input(
            "Procrustes",
            format!("the SVD of the features' cross product did not converge: {e:?}"),
        )
    })?;
    let nuclear: f64 = singular.iter().sum();
    Ok(nuclear.clamp(0.0, 1.0).acos())
}
