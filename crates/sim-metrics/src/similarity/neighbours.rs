//! Nearest-neighbour alignment (Huh et al. 2024, "The Platonic
//! Representation Hypothesis"; the definitions of their `platonic-rep`
//! code, `metrics.py`).
//!
//! Rows are scaled to unit L2 norm (not centred), K = the cosine
//! similarities, and N(i) the k samples most similar to i, itself left out
//! (larger similarity first, the lower index on a tie).
//!
//! - Mutual k-NN: the mean over samples of |N_a(i) ∩ N_b(i)| / k.
//! - CKNNA: CKA with unbiased HSIC (Song et al. 2012) between the kernels
//!   kept only on mutual neighbour pairs,
//!   HSIC(M ∘ K_a, M ∘ K_b) / √(HSIC(M_a ∘ K_a, M_a ∘ K_a) · HSIC(M_b ∘ K_b, M_b ∘ K_b)),
//!   M_x(i, j) = [j ∈ N_x(i)], M = M_a ∘ M_b; platonic-rep's `cknna` with
//!   `unbiased=True`, without the 1e-6 it adds to the denominator. The
//!   masked kernels are sparse (k per row), so every term costs n · k.

use crate::MetricError;
use crate::knn::top_k;
use crate::linalg::{MatRef, Scalar};
use faer::Mat;
use rayon::prelude::*;

/// Rows whose similarities to all others are computed at once.
const BLOCK_ROWS: usize = 256;

/// Each sample's k nearest neighbours, as (index, cosine similarity)
/// sorted by index.
pub struct Neighbours {
    lists: Vec<Vec<(usize, f64)>>,
    k: usize,
    /// HSIC of the masked kernel with itself (CKNNA's normaliser): computed
    /// once, as permuting the samples leaves it unchanged.
    self_hsic: f64,
    name: String,
}

impl Neighbours {
    pub fn new<T: Scalar>(m: MatRef<'_, T>, k: usize) -> Result<Neighbours, MetricError> {
        let (n, d) = (m.rows, m.cols);
        if k == 0 || k >= n {
            return Err(MetricError::input(
                m.name,
                format!("k = {k} neighbours of {n} samples: k must be in 1..{n}"),
            ));
        }
        let mut unit = Mat::<f64>::zeros(n, d);
        for i in 0..n {
            let row = &m.data[i * d..(i + 1) * d];
            let norm = row.iter().map(|v| v.to_f64().powi(2)).sum::<f64>().sqrt();
            if norm == 0.0 {
                return Err(MetricError::input(
                    m.name,
                    format!("row {i} is all zeros: no direction for cosine similarity"),
                ));
            }
            for (j, v) in row.iter().enumerate() {
                unit[(i, j)] = v.to_f64() / norm;
            }
        }
        let mut lists = Vec::with_capacity(n);
        for start in (0..n).step_by(BLOCK_ROWS) {
            let rows = BLOCK_ROWS.min(n - start);
            let sims = unit.subrows(start, rows) * unit.transpose();
            lists.par_extend((0..rows).into_par_iter().map(|r| {
                let mut row: Vec<f64> = (0..n).map(|j| sims[(r, j)]).collect();
                row[start + r] = f64::NEG_INFINITY;
                let mut best = top_k(&row, k);
                best.sort_by_key(|&(j, _)| j);
                best
            }));
        }
        Ok(Neighbours {
            self_hsic: hsic_unbiased(&lists, &lists),
            lists,
            k,
            name: m.name.to_owned(),
        })
    }

    pub(super) fn permuted(&self, order: &[usize]) -> Neighbours {
        let mut position = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            position[old] = new;
        }
        let lists = order
            .iter()
            .map(|&old| {
                let mut list: Vec<(usize, f64)> = self.lists[old]
                    .iter()
                    .map(|&(j, s)| (position[j], s))
                    .collect();
                list.sort_by_key(|&(j, _)| j);
                list
            })
            .collect();
        Neighbours {
            lists,
            k: self.k,
            self_hsic: self.self_hsic,
            name: self.name.clone(),
        }
    }
}

/// (index, a's similarity, b's similarity) of the neighbours sample i has in both.
fn mutual(a: &[(usize, f64)], b: &[(usize, f64)]) -> Vec<(usize, f64, f64)> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push((a[i].0, a[i].1, b[j].1));
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// The mean share of neighbours two sides agree on.
pub fn mutual_knn(a: &Neighbours, b: &Neighbours) -> f64 {
    let shared: usize = a
        .lists
        .iter()
        .zip(&b.lists)
        .map(|(x, y)| mutual(x, y).len())
        .sum();
    shared as f64 / (a.lists.len() * a.k) as f64
}

/// A sparse n × n matrix with a zero diagonal, rows sorted by column.
type Sparse = Vec<Vec<(usize, f64)>>;

/// Unbiased HSIC (Song et al. 2012) of two sparse kernels with zero diagonals:
/// [tr(AB) + 1ᵀA1 · 1ᵀB1 / ((n−1)(n−2)) − 2/(n−2) · 1ᵀAB1] / (n(n−3)).
fn hsic_unbiased(a: &Sparse, b: &Sparse) -> f64 {
    let n = a.len() as f64;
    let lookup = |row: &[(usize, f64)], col: usize| {
        row.binary_search_by_key(&col, |&(j, _)| j)
            .map_or(0.0, |at| row[at].1)
    };
    let trace: f64 = a
        .iter()
        .enumerate()
        .flat_map(|(i, row)| row.iter().map(move |&(j, v)| (i, j, v)))
        .map(|(i, j, v)| v * lookup(&b[j], i))
        .sum();
    let total = |m: &Sparse| m.iter().flatten().map(|&(_, v)| v).sum::<f64>();
    let mut column_sums_a = vec![0.0; a.len()];
    for &(j, v) in a.iter().flatten() {
        column_sums_a[j] += v;
    }
    let through: f64 = b
        .iter()
        .zip(&column_sums_a)
        .map(|(row, c)| c * row.iter().map(|&(_, v)| v).sum::<f64>())
        .sum();
    (trace + total(a) * total(b) / ((n - 1.0) * (n - 2.0)) - 2.0 / (n - 2.0) * through)
        / (n * (n - 3.0))
}

/// CKNNA in [−1, 1] (1: the same neighbourhoods with the same similarities).
pub fn cknna(a: &Neighbours, b: &Neighbours) -> Result<f64, MetricError> {
    if a.lists.len() < 4 {
        return Err(MetricError::input(
            &b.name,
            format!("{} samples: unbiased HSIC needs at least 4", a.lists.len()),
        ));
    }
    let both: Vec<Vec<(usize, f64, f64)>> = a
        .lists
        .iter()
        .zip(&b.lists)
        .map(|(x, y)| mutual(x, y))
        .collect();
    let on_a: Sparse = both
        .iter()
        .map(|r| r.iter().map(|&(j, x, _)| (j, x)).collect())
        .collect();
    let on_b: Sparse = both
        .iter()
        .map(|r| r.iter().map(|&(j, _, y)| (j, y)).collect())
        .collect();
    let cross = hsic_unbiased(&on_a, &on_b);
    let (self_a, self_b) = (a.self_hsic, b.self_hsic);
    if !(self_a > 0.0 && self_b > 0.0) {
        let which = if self_a > 0.0 { &b.name } else { &a.name };
        return Err(MetricError::input(
            which,
            "the HSIC of its neighbour kernel with itself is not positive: CKNNA undefined",
        ));
    }
    Ok(cross / (self_a * self_b).sqrt())
}
