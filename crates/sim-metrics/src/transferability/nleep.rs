//! N-LEEP (Li et al. 2021, "Ranking Neural Checkpoints"): LEEP (Nguyen et
//! al. 2020) with the source classifier replaced by a Gaussian mixture on
//! the features, so no source head is needed.
//!
//! 1. The centred features projected on the principal components that
//!    explain [`VARIANCE`] of the variance (the fewest whose cumulative
//!    share exceeds it, scikit-learn's `PCA(n_components=0.8)`), each
//!    direction's sign fixed so its largest entry is positive.
//! 2. A Gaussian mixture of [`COMPONENTS_PER_CLASS`] × classes components
//!    with diagonal covariances (scikit-learn's EM: `reg_covar` [`REG`],
//!    component weights (nₖ + 10ε)/Σ), started from the samples cut into
//!    equal groups by their rank on the first component, then exactly
//!    [`ITERATIONS`] E and M steps (no tolerance: the value does not depend
//!    on where a stopping rule fell).
//! 3. LEEP on the posterior p(z | x): p(y | z) from the joint p(y, z) =
//!    (1/n) Σ_{i: yᵢ = y} p(z | xᵢ); the score is the mean over samples of
//!    ln Σ_z p(yᵢ | z) p(z | xᵢ) (≤ 0; higher is better).
//!
//! The E step runs per sample in parallel, the M step's products (in
//! scikit-learn's expanded form) on one thread: the value does not depend
//! on the number of threads.

use super::symmetric::Eigen;
use super::{ClassMoments, Classes};
use crate::MetricError;
use crate::linalg::MatRef;
use faer::{Accum, Mat, Par};
use rayon::prelude::*;

/// Share of the variance the principal components keep.
pub const VARIANCE: f64 = 0.8;
/// Mixture components per class.
pub const COMPONENTS_PER_CLASS: usize = 5;
/// EM iterations.
pub const ITERATIONS: usize = 100;
/// Added to every variance (scikit-learn's `reg_covar`).
pub const REG: f64 = 1e-6;

/// N-LEEP of features `x`, whose moments are `moments`.
pub fn nleep(
    x: MatRef<'_, f64>,
    classes: &Classes,
    moments: &ClassMoments,
) -> Result<f64, MetricError> {
    let components = COMPONENTS_PER_CLASS * classes.len();
    if x.rows < components {
        return Err(MetricError::input(
            x.name,
            format!(
                "{} samples: N-LEEP fits {components} mixture components ({COMPONENTS_PER_CLASS} \
                 per class) and needs at least as many samples",
                x.rows
            ),
        ));
    }
    let z = principal_components(x, moments)?;
    let mut mixture = Mixture::from_groups(&z, components);
    for _ in 0..ITERATIONS {
        mixture = Mixture::fit(&z, &mixture.posterior(&z), components);
    }
    Ok(leep(&mixture.posterior(&z), components, classes))
}

/// The centred features on the leading principal components (samples ×
/// components), also row-major, and their squares.
struct Projected {
    z: Mat<f64>,
    rows: Vec<f64>,
    squared: Mat<f64>,
}

fn principal_components(
    x: MatRef<'_, f64>,
    moments: &ClassMoments,
) -> Result<Projected, MetricError> {
    let mean = moments.mean();
    let cov = moments.total_scatter_about(&mean) / x.rows as f64;
    let eigen = Eigen::of(&cov, x.name)?;
    let total: f64 = eigen.values.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return Err(MetricError::input(
            x.name,
            "every feature is constant: N-LEEP has no principal component",
        ));
    }
    let mut cumulative = 0.0;
    let at_most = eigen
        .values
        .iter()
        .take_while(|&&v| {
            cumulative += v;
            cumulative / total <= VARIANCE
        })
        .count();
    let kept = (at_most + 1).min(x.cols);
    let d = x.cols;
    let mut basis = Mat::from_fn(d, kept, |i, j| eigen.vectors[(i, j)]);
    for j in 0..kept {
        let largest = (0..d)
            .max_by(|&a, &b| {
                basis[(a, j)]
                    .abs()
                    .total_cmp(&basis[(b, j)].abs())
                    .then(b.cmp(&a)) // the first on a tie, as numpy's argmax
            })
            .expect("a feature");
        if basis[(largest, j)] < 0.0 {
            (0..d).for_each(|i| basis[(i, j)] = -basis[(i, j)]);
        }
    }
    let centred: Vec<f64> = x
        .data
        .chunks_exact(d)
        .flat_map(|row| row.iter().zip(&mean).map(|(v, m)| v - m))
        .collect();
    let z = faer::MatRef::from_row_major_slice(&centred, x.rows, d) * &basis;
    let squared = Mat::from_fn(z.nrows(), z.ncols(), |i, j| z[(i, j)] * z[(i, j)]);
    let rows = (0..z.nrows())
        .flat_map(|i| (0..kept).map(move |j| (i, j)))
        .map(|(i, j)| z[(i, j)])
        .collect();
    Ok(Projected { z, rows, squared })
}

/// `lhs × rhs`, on one thread: the same sums in the same order whatever
/// the thread count.
fn product(lhs: faer::MatRef<'_, f64>, rhs: faer::MatRef<'_, f64>) -> Mat<f64> {
    let mut out = Mat::zeros(lhs.nrows(), rhs.ncols());
    faer::linalg::matmul::matmul(out.as_mut(), Accum::Replace, lhs, rhs, 1.0, Par::Seq);
    out
}

/// e^x for x ≤ 0, or 0 below f64's normal range (x < −708, under 1e-307:
/// too small to move any sum of probabilities). Range reduction
/// x = k ln 2 + r, |r| ≤ ½ ln 2, and Taylor's polynomial of degree 13 for
/// e^r (within 1e-15 of libm's `exp`, `tests::exp_agrees_with_libm`): the
/// E step takes two per sample and component, and libm's took 80 % of
/// N-LEEP's time here (57 ns a call against 4 in a loop of its own).
fn exp_or_zero(x: f64) -> f64 {
    // ln 2 split in two (fdlibm's): k · LN2_HI is exact for |k| < 2¹¹.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    if x < -708.0 {
        return 0.0;
    }
    let k = (x * std::f64::consts::LOG2_E).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0;
    for n in (1..=13).rev() {
        p = 1.0 + p * r / n as f64;
    }
    p * f64::from_bits(((k as i64 + 1023) as u64) << 52)
}

/// A Gaussian mixture with diagonal covariances (components × dims).
struct Mixture {
    weights: Vec<f64>,
    means: Mat<f64>,
    variances: Mat<f64>,
}

impl Mixture {
    /// Each component from one group of samples, the samples cut into
    /// `components` equal groups by their rank on the first component
    /// (a stable sort).
    fn from_groups(p: &Projected, components: usize) -> Mixture {
        let (n, d) = (p.z.nrows(), p.z.ncols());
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| p.z[(a, 0)].total_cmp(&p.z[(b, 0)]));
        let mut group = vec![0; n];
        for (rank, &i) in order.iter().enumerate() {
            group[i] = rank * components / n;
        }
        let mut counts = vec![0usize; components];
        let mut means = Mat::zeros(components, d);
        for (i, &g) in group.iter().enumerate() {
            counts[g] += 1;
            (0..d).for_each(|j| means[(g, j)] += p.z[(i, j)]);
        }
        for g in 0..components {
            (0..d).for_each(|j| means[(g, j)] /= counts[g] as f64);
        }
        let mut variances = Mat::zeros(components, d);
        for (i, &g) in group.iter().enumerate() {
            for j in 0..d {
                let e = p.z[(i, j)] - means[(g, j)];
                variances[(g, j)] += e * e;
            }
        }
        for g in 0..components {
            (0..d).for_each(|j| variances[(g, j)] = variances[(g, j)] / counts[g] as f64 + REG);
        }
        Mixture {
            weights: counts.iter().map(|&c| c as f64 / n as f64).collect(),
            means,
            variances,
        }
    }

    /// p(z | x) of every sample (the E step), row-major samples ×
    /// components: ln wₖ − ½ (d ln 2π + Σ ln σ² + Σ (x − μ)²/σ²),
    /// normalised. Each sample on its own: in parallel, the same sums
    /// whatever the thread count.
    fn posterior(&self, p: &Projected) -> Vec<f64> {
        let (k, d) = (self.weights.len(), p.z.ncols());
        let precision: Vec<f64> = (0..k * d)
            .map(|i| 1.0 / self.variances[(i / d, i % d)])
            .collect();
        let means: Vec<f64> = (0..k * d).map(|i| self.means[(i / d, i % d)]).collect();
        let constants: Vec<f64> = (0..k)
            .map(|c| {
                let log_det: f64 = (0..d).map(|j| self.variances[(c, j)].ln()).sum();
                self.weights[c].ln()
                    - 0.5 * (d as f64 * (2.0 * std::f64::consts::PI).ln() + log_det)
            })
            .collect();
        let mut out = vec![0.0; p.z.nrows() * k];
        out.par_chunks_mut(k).enumerate().for_each(|(i, row)| {
            let x = &p.rows[i * d..(i + 1) * d];
            for (c, l) in row.iter_mut().enumerate() {
                let (m, s) = (&means[c * d..(c + 1) * d], &precision[c * d..(c + 1) * d]);
                let mahalanobis: f64 = (0..d).map(|j| (x[j] - m[j]) * (x[j] - m[j]) * s[j]).sum();
                *l = constants[c] - 0.5 * mahalanobis;
            }
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = row.iter().map(|l| exp_or_zero(l - max)).sum();
            let norm = max + sum.ln();
            row.iter_mut().for_each(|l| *l = exp_or_zero(*l - norm));
        });
        out
    }

    /// The M step from `posterior` (row-major samples × components;
    /// scikit-learn's diagonal form).
    fn fit(p: &Projected, posterior: &[f64], components: usize) -> Mixture {
        let (n, k, d) = (p.z.nrows(), components, p.z.ncols());
        let r = faer::MatRef::from_row_major_slice(posterior, n, k);
        let mut nk = vec![10.0 * f64::EPSILON; k];
        for row in posterior.chunks_exact(k) {
            nk.iter_mut().zip(row).for_each(|(t, v)| *t += v);
        }
        let sums = product(r.transpose(), p.z.as_ref());
        let sums2 = product(r.transpose(), p.squared.as_ref());
        let means = Mat::from_fn(k, d, |c, j| sums[(c, j)] / nk[c]);
        let variances = Mat::from_fn(k, d, |c, j| {
            let m = means[(c, j)];
            sums2[(c, j)] / nk[c] - 2.0 * m * (sums[(c, j)] / nk[c]) + m * m + REG
        });
        let total: f64 = nk.iter().sum();
        Mixture {
            weights: nk.iter().map(|v| v / total).collect(),
            means,
            variances,
        }
    }
}

/// LEEP of the posterior p(z | x) (row-major samples × components) for
/// the labels.
fn leep(posterior: &[f64], components: usize, classes: &Classes) -> f64 {
    let (k, c) = (components, classes.len());
    let n = classes.of_sample.len() as f64;
    let mut joint = vec![0.0; c * k];
    for (p, &y) in posterior.chunks_exact(k).zip(&classes.of_sample) {
        joint[y * k..(y + 1) * k]
            .iter_mut()
            .zip(p)
            .for_each(|(t, v)| *t += v / n);
    }
    let marginal: Vec<f64> = (0..k)
        .map(|z| (0..c).map(|y| joint[y * k + z]).sum())
        .collect();
    let log_eep: f64 = posterior
        .chunks_exact(k)
        .zip(&classes.of_sample)
        .map(|(p, &y)| {
            // A component no sample reaches (p(z) = 0) predicts nothing.
            let eep: f64 = (0..k)
                .filter(|&z| marginal[z] > 0.0)
                .map(|z| joint[y * k + z] / marginal[z] * p[z])
                .sum();
            eep.ln()
        })
        .sum();
    log_eep / n
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_agrees_with_libm() {
        let mut worst = 0.0f64;
        for i in 0..=1_000_000 {
            let x = -708.0 * i as f64 / 1e6;
            let (ours, libm) = (super::exp_or_zero(x), x.exp());
            worst = worst.max((ours - libm).abs() / libm);
        }
        assert!(worst < 1e-15, "{worst:e}");
        assert_eq!(super::exp_or_zero(-709.0), 0.0);
        assert_eq!(super::exp_or_zero(0.0), 1.0);
    }
}
