//! Per-class sums and products of the features, accumulated over blocks of
//! rows: what LogME, the H-score, GBC and TransRate need, and the class
//! statistics of N-LEEP and SFDA.
//!
//! Rows are shifted by the first row seen before they are summed, so a
//! feature constant within a class sums to exact zeros (its variance is 0,
//! not a rounding residue), and large feature means do not cancel away the
//! variance; every statistic is read back unshifted.

use super::Classes;
use crate::linalg::MatRef;
use faer::{Accum, Mat};

/// Σ (x − s) and Σ (x − s)(x − s)ᵀ of each class, s the shift.
#[derive(Debug, Clone)]
pub struct ClassMoments {
    dim: usize,
    /// The first row added (all zeros before).
    shift: Option<Vec<f64>>,
    counts: Vec<usize>,
    sums: Vec<Vec<f64>>,
    products: Vec<Mat<f64>>,
}

impl ClassMoments {
    /// Nothing added yet, for `classes` classes of `dim` features.
    pub fn new(classes: usize, dim: usize) -> ClassMoments {
        ClassMoments {
            dim,
            shift: None,
            counts: vec![0; classes],
            sums: vec![vec![0.0; dim]; classes],
            products: vec![Mat::zeros(dim, dim); classes],
        }
    }

    /// The moments of every row of `x`, of class `classes.of_sample[i]`.
    pub fn of(x: MatRef<'_, f64>, classes: &Classes) -> ClassMoments {
        let mut moments = ClassMoments::new(classes.len(), x.cols);
        moments.add(x.data, &classes.of_sample);
        moments
    }

    /// Adds the rows of `block` (row-major, `dim` features), of classes `of_row`.
    pub fn add(&mut self, block: &[f64], of_row: &[usize]) {
        let d = self.dim;
        let shift = self
            .shift
            .get_or_insert_with(|| block[..d].to_vec())
            .clone();
        for class in 0..self.counts.len() {
            let rows: Vec<f64> = block
                .chunks_exact(d)
                .zip(of_row)
                .filter(|(_, c)| **c == class)
                .flat_map(|(row, _)| row.iter().zip(&shift).map(|(v, s)| v - s))
                .collect();
            let n = rows.len() / d.max(1);
            if n == 0 {
                continue;
            }
            self.counts[class] += n;
            for row in rows.chunks_exact(d) {
                self.sums[class]
                    .iter_mut()
                    .zip(row)
                    .for_each(|(t, v)| *t += v);
            }
            let x = faer::MatRef::from_row_major_slice(&rows, n, d);
            faer::linalg::matmul::matmul(
                self.products[class].as_mut(),
                Accum::Add,
                x.transpose(),
                x,
                1.0,
                faer::get_global_parallelism(),
            );
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn classes(&self) -> usize {
        self.counts.len()
    }

    /// Samples of class `k`.
    pub fn count(&self, k: usize) -> usize {
        self.counts[k]
    }

    /// Samples in all.
    pub fn n(&self) -> usize {
        self.counts.iter().sum()
    }

    fn unshifted(&self, shifted_sum: &[f64], n: usize) -> Vec<f64> {
        let zero = vec![0.0; self.dim];
        let shift = self.shift.as_deref().unwrap_or(&zero);
        shifted_sum
            .iter()
            .zip(shift)
            .map(|(s, o)| o + s / n as f64)
            .collect()
    }

    /// The mean of every sample.
    pub fn mean(&self) -> Vec<f64> {
        let mut total = vec![0.0; self.dim];
        for s in &self.sums {
            total.iter_mut().zip(s).for_each(|(t, v)| *t += v);
        }
        self.unshifted(&total, self.n())
    }

    /// The mean of class `k`.
    pub fn class_mean(&self, k: usize) -> Vec<f64> {
        self.unshifted(&self.sums[k], self.counts[k])
    }

    /// Σ over class `k` of (x − μ_k)(x − μ_k)ᵀ.
    pub fn class_scatter(&self, k: usize) -> Mat<f64> {
        let (s, n) = (&self.sums[k], self.counts[k] as f64);
        Mat::from_fn(self.dim, self.dim, |i, j| {
            self.products[k][(i, j)] - s[i] * s[j] / n
        })
    }

    /// The diagonal of [`Self::class_scatter`] over the class's count: the
    /// variance (1/n) of each feature within class `k`.
    pub fn class_variances(&self, k: usize) -> Vec<f64> {
        let (s, n) = (&self.sums[k], self.counts[k] as f64);
        (0..self.dim)
            .map(|j| ((self.products[k][(j, j)] - s[j] * s[j] / n) / n).max(0.0))
            .collect()
    }

    /// Σ over class `k` of (x − c)(x − c)ᵀ for a centre `c`.
    pub fn scatter_about(&self, k: usize, centre: &[f64]) -> Mat<f64> {
        let zero = vec![0.0; self.dim];
        let shift = self.shift.as_deref().unwrap_or(&zero);
        // x − c = (x − s) − δ, δ = c − s.
        let delta: Vec<f64> = centre.iter().zip(shift).map(|(c, s)| c - s).collect();
        let (s, n) = (&self.sums[k], self.counts[k] as f64);
        Mat::from_fn(self.dim, self.dim, |i, j| {
            self.products[k][(i, j)] - s[i] * delta[j] - delta[i] * s[j] + n * delta[i] * delta[j]
        })
    }

    /// Σ over every sample of (x − c)(x − c)ᵀ.
    pub fn total_scatter_about(&self, centre: &[f64]) -> Mat<f64> {
        let mut total = Mat::zeros(self.dim, self.dim);
        for k in 0..self.classes() {
            total += self.scatter_about(k, centre);
        }
        total
    }
}
