//! Representational similarity analysis (Kriegeskorte et al. 2008;
//! rsatoolbox's `correlation` RDM compared by its `spearman`):
//!
//!   RDMᵢⱼ = 1 − corr(xᵢ, xⱼ)  (Pearson over the features of samples i, j),
//!   RSA = Spearman(upper triangle of RDM_a, upper triangle of RDM_b),
//!
//! ranks averaged over ties. An RDM has n² entries, so at most
//! `max_samples` samples are compared: indices ⌊i · n / m⌋, i < m, evenly
//! spaced in the samples' order (the same ones on both sides).

use crate::MetricError;
use crate::fit::{pearson, ranks};
use crate::linalg::{MatRef, Scalar};
use faer::Mat;

/// The RDM of one side's compared samples, kept as the ranks of its upper
/// triangle: a comparison is then Pearson's correlation of two rank
/// vectors, and a permuted side reorders ranks without sorting again.
pub struct Rdm {
    /// Samples compared (m).
    samples: usize,
    /// Average ranks of RDMᵢⱼ, i < j, row by row.
    ranks: Vec<f64>,
    name: String,
}

/// The samples an RDM of at most `max_samples` compares.
pub fn compared_samples(n: usize, max_samples: usize) -> Vec<usize> {
    let m = n.min(max_samples);
    (0..m).map(|i| i * n / m).collect()
}

/// Where (i, j), i < j, of an m × m upper triangle sits, row by row.
fn upper_index(m: usize, i: usize, j: usize) -> usize {
    i * m - i * (i + 1) / 2 + (j - i - 1)
}

impl Rdm {
    pub fn new<T: Scalar>(m: MatRef<'_, T>, max_samples: usize) -> Result<Rdm, MetricError> {
        let samples = compared_samples(m.rows, max_samples);
        if samples.len() < 4 {
            return Err(MetricError::input(
                m.name,
                format!(
                    "{} samples: an RDM correlation needs at least 4",
                    samples.len()
                ),
            ));
        }
        let d = m.cols;
        let mut rows = Mat::<f64>::zeros(samples.len(), d);
        for (r, &i) in samples.iter().enumerate() {
            let row = &m.data[i * d..(i + 1) * d];
            let mean = row.iter().map(|v| v.to_f64()).sum::<f64>() / d as f64;
            let norm = row
                .iter()
                .map(|v| (v.to_f64() - mean).powi(2))
                .sum::<f64>()
                .sqrt();
            if norm == 0.0 {
                return Err(MetricError::input(
                    m.name,
                    format!(
                        "sample {i} has the same value in every feature: no correlation distance"
                    ),
                ));
            }
            for (j, v) in row.iter().enumerate() {
                rows[(r, j)] = (v.to_f64() - mean) / norm;
            }
        }
        let correlation = &rows * rows.transpose();
        let k = samples.len();
        let upper: Vec<f64> = (0..k)
            .flat_map(|i| (i + 1..k).map(move |j| (i, j)))
            .map(|(i, j)| 1.0 - correlation[(i, j)])
            .collect();
        Ok(Rdm {
            samples: k,
            ranks: ranks(&upper),
            name: m.name.to_owned(),
        })
    }

    /// Reorders the compared samples (`order` is a permutation of all the
    /// samples; the m compared ones are permuted among themselves, in the
    /// relative order `order` gives those below m).
    pub(super) fn permuted(&self, order: &[usize]) -> Rdm {
        let m = self.samples;
        let within: Vec<usize> = order.iter().copied().filter(|&i| i < m).collect();
        let ranks = (0..m)
            .flat_map(|i| (i + 1..m).map(move |j| (i, j)))
            .map(|(i, j)| {
                let (a, b) = (within[i].min(within[j]), within[i].max(within[j]));
                self.ranks[upper_index(m, a, b)]
            })
            .collect();
        Rdm {
            samples: m,
            ranks,
            name: self.name.clone(),
        }
    }
}

/// Spearman's correlation of two RDMs' upper triangles.
pub fn rdm_correlation(a: &Rdm, b: &Rdm) -> Result<f64, MetricError> {
    pearson(&a.ranks, &b.ranks).map_err(|_| {
        MetricError::input(
            &b.name,
            format!(
                "an RDM of {} or {} is constant: no rank correlation",
                a.name, b.name
            ),
        )
    })
}
