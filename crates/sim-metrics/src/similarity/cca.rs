//! Canonical correlation measures, both through one thin SVD of each side's
//! centred features X = U S Vᵀ (docs/SPEC.md, "Similarity measures").
//!
//! The canonical correlations of two sides are the singular values of
//! U_aᵀ U_b, the cosines of the principal angles between their column
//! spaces (Björck & Golub 1973): no covariance is inverted, so nothing is
//! squared and no ε is added. Directions whose singular value is at most
//! s₁ · max(n, d) · ε (numpy's `matrix_rank` rule) are not part of the
//! column space: a rank-deficient side (a constant or duplicated feature,
//! fewer samples than features) is compared on the directions it has.
//!
//! - SVCCA (Raghu et al. 2017): each side keeps its top directions that
//!   explain `svcca_variance` of its variance (Σ s² over the kept ≥ the share
//!   of Σ s²); the mean of the min(k_a, k_b) canonical correlations.
//! - PWCCA (Morcos et al. 2018): Σ αᵢ ρᵢ over the canonical correlations,
//!   αᵢ ∝ Σⱼ |⟨hᵢ, xⱼ⟩|, hᵢ the i-th canonical variate of the side with the
//!   fewer directions (the first on a tie, as Google's `compute_pwcca`),
//!   xⱼ its centred neurons. Google's code adds the neuron means back to
//!   the variates and weighs by uncentred neurons; this is the paper's form.

use super::{centred, rows_in_order};
use crate::MetricError;
use crate::linalg::{MatRef, Scalar};
use faer::Mat;

/// An orthonormal basis of one side's centred column space.
#[derive(Clone)]
pub struct Subspace {
    /// U: n × rank, orthonormal columns.
    basis: Mat<f64>,
    /// S: the singular values, non-increasing, all above the rank tolerance.
    singular: Vec<f64>,
    /// V: features × rank.
    directions: Mat<f64>,
}

impl Subspace {
    pub fn new<T: Scalar>(m: MatRef<'_, T>) -> Result<Subspace, MetricError> {
        let x = centred(m);
        let svd = x
            .thin_svd()
            .map_err(|e| MetricError::input(m.name, format!("SVD did not converge: {e:?}")))?;
        let s: Vec<f64> = svd.S().column_vector().iter().copied().collect();
        let tolerance =
            s.first().copied().unwrap_or(0.0) * m.rows.max(m.cols) as f64 * f64::EPSILON;
        let rank = s.iter().take_while(|&&v| v > tolerance).count();
        if rank == 0 {
            return Err(MetricError::input(
                m.name,
                "every feature is constant over the samples: no direction to correlate",
            ));
        }
        Ok(Subspace {
            basis: svd.U().subcols(0, rank).to_owned(),
            singular: s[..rank].to_vec(),
            directions: svd.V().subcols(0, rank).to_owned(),
        })
    }

    /// The directions kept: the column space's rank, or fewer after [`Self::truncated`].
    pub fn rank(&self) -> usize {
        self.singular.len()
    }

    /// The fewest top directions that explain `variance` of the variance.
    pub fn truncated(&self, variance: f64) -> Subspace {
        let total: f64 = self.singular.iter().map(|s| s * s).sum();
        let mut explained = 0.0;
        let mut keep = self.rank();
        for (i, s) in self.singular.iter().enumerate() {
            explained += s * s;
            // A relative slack of 1e-12 so that a share reached exactly in
            // real numbers is reached in floating point too.
            if explained >= variance * total * (1.0 - 1e-12) {
                keep = i + 1;
                break;
            }
        }
        Subspace {
            basis: self.basis.subcols(0, keep).to_owned(),
            singular: self.singular[..keep].to_vec(),
            directions: self.directions.subcols(0, keep).to_owned(),
        }
    }

    pub(super) fn permuted(&self, order: &[usize]) -> Subspace {
        Subspace {
            basis: rows_in_order(&self.basis, order),
            ..self.clone()
        }
    }
}

/// The canonical correlations of two subspaces, largest first, and the
/// left singular vectors of U_aᵀ U_b (the variates' coordinates in `a`).
fn canonical(a: &Subspace, b: &Subspace) -> Result<(Vec<f64>, Mat<f64>), MetricError> {
    let cross = a.basis.transpose() * &b.basis;
    let svd = cross.thin_svd().map_err(|e| {
        MetricError::input(
            "canonical correlations",
            format!("the SVD of the cosines did not converge: {e:?}"),
        )
    })?;
    let rho = svd
        .S()
        .column_vector()
        .iter()
        .map(|v| v.clamp(0.0, 1.0))
        .collect();
    Ok((rho, svd.U().to_owned()))
}

/// The canonical correlations of `a` and `b`, largest first.
pub fn canonical_correlations(a: &Subspace, b: &Subspace) -> Result<Vec<f64>, MetricError> {
    Ok(canonical(a, b)?.0)
}

/// The mean canonical correlation of two (truncated) subspaces.
pub fn svcca(a: &Subspace, b: &Subspace) -> Result<f64, MetricError> {
    let rho = canonical_correlations(a, b)?;
    Ok(rho.iter().sum::<f64>() / rho.len() as f64)
}

/// The projection-weighted mean canonical correlation.
pub fn pwcca(a: &Subspace, b: &Subspace) -> Result<f64, MetricError> {
    let (x, y) = if a.rank() <= b.rank() { (a, b) } else { (b, a) };
    let (rho, coords) = canonical(x, y)?;
    // ⟨hᵢ, xⱼ⟩ = (coordsᵀ Uᵀ X)ᵢⱼ = (coordsᵀ S Vᵀ)ᵢⱼ, as X = U S Vᵀ.
    let scaled = Mat::from_fn(x.rank(), x.directions.nrows(), |i, j| {
        x.singular[i] * x.directions[(j, i)]
    });
    let projections = coords.transpose() * &scaled;
    let weights: Vec<f64> = (0..rho.len())
        .map(|i| {
            (0..projections.ncols())
                .map(|j| projections[(i, j)].abs())
                .sum()
        })
        .collect();
    let total: f64 = weights.iter().sum();
    Ok(weights.iter().zip(&rho).map(|(w, r)| w / total * r).sum())
}
