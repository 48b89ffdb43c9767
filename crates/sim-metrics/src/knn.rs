//! Weighted k-NN classification as DINO's `eval_knn` (SPEC): L2-normalised
//! features, cosine similarity to a memory bank, the top-k neighbours each
//! vote exp(sim / T) for their label, the class with the largest vote wins
//! (the lowest class index on an exact tie).
//!
//! Queries are processed in chunks: memory is chunk × bank, never queries × bank.

use crate::MetricError;
use crate::linalg::{MatRef, Scalar, a_bt};
use rayon::prelude::*;

/// Queries per similarity block.
const CHUNK: usize = 512;

/// Top-1 accuracy for each k asked for.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KnnResult {
    pub k: usize,
    pub top1: f64,
}

/// Top-1 accuracy of the weighted k-NN vote for every k in `ks`, computed
/// from one pass that keeps the max(ks) nearest neighbours.
pub fn knn_accuracy<T: Scalar>(
    bank: MatRef<'_, T>,
    bank_labels: &[i64],
    queries: MatRef<'_, T>,
    query_labels: &[i64],
    ks: &[usize],
    temperature: f64,
) -> Result<Vec<KnnResult>, MetricError> {
    let KnnInputs { k_max, classes } = KnnInputs::check(bank.rows, bank.cols, bank.name, bank_labels, queries, query_labels, ks, temperature)?;
    let bank_n = normalised_rows(bank)?;
    let query_n = normalised_rows(queries)?;
    let d = bank.cols;
    let mut correct = vec![0usize; ks.len()];
    for (c, chunk) in query_n.chunks(CHUNK * d).enumerate() {
        let rows = chunk.len() / d;
        let sims = a_bt(chunk, &bank_n, rows, bank.rows, d);
        let hits: Vec<Vec<bool>> = sims
            .par_chunks_exact(bank.rows)
            .enumerate()
            .map(|(r, row)| {
                let neighbours = top_k(row, k_max);
                let truth = query_labels[c * CHUNK + r] as usize;
                ks.iter().map(|&k| vote(&neighbours[..k], bank_labels, classes, temperature) == truth).collect()
            })
            .collect();
        for h in hits {
            for (total, hit) in correct.iter_mut().zip(h) {
                *total += usize::from(hit);
            }
        }
    }
    Ok(ks.iter().zip(correct).map(|(&k, c)| KnnResult { k, top1: c as f64 / queries.rows as f64 }).collect())
}

/// What a k-NN evaluation needs to know about its inputs, once they are checked.
pub(crate) struct KnnInputs {
    pub k_max: usize,
    /// One more than the largest label.
    pub classes: usize,
}

impl KnnInputs {
    /// Checks a bank of `bank_rows` × `bank_cols` features (named `bank_name`)
    /// and its labels against the queries, the k and the temperature.
    #[allow(clippy::too_many_arguments)]
    pub fn check<T: Scalar>(
        bank_rows: usize,
        bank_cols: usize,
        bank_name: &str,
        bank_labels: &[i64],
        queries: MatRef<'_, T>,
        query_labels: &[i64],
        ks: &[usize],
        temperature: f64,
    ) -> Result<KnnInputs, MetricError> {
        if bank_cols != queries.cols {
            return Err(MetricError::input(queries.name, format!("{} features, the bank has {bank_cols}", queries.cols)));
        }
        for (rows, name, labels, what) in [(bank_rows, bank_name, bank_labels, "bank labels"), (queries.rows, queries.name, query_labels, "query labels")] {
            if labels.len() != rows {
                return Err(MetricError::input(what, format!("{} labels for {rows} rows of {name}", labels.len())));
            }
            if let Some(l) = labels.iter().find(|&&l| l < 0) {
                return Err(MetricError::input(what, format!("negative label {l}")));
            }
        }
        let k_max = *ks.iter().max().ok_or_else(|| MetricError::input("k", "no k given"))?;
        if ks.contains(&0) || k_max > bank_rows {
            return Err(MetricError::input("k", format!("k must be in 1..={bank_rows} (the bank's size), got {ks:?}")));
        }
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(MetricError::input("temperature", format!("{temperature} is not positive")));
        }
        if queries.rows == 0 {
            return Err(MetricError::input(queries.name, "no queries"));
        }
        let classes = 1 + *bank_labels.iter().chain(query_labels).max().expect("non-empty") as usize;
        Ok(KnnInputs { k_max, classes })
    }
}

/// Rows scaled to unit L2 norm, in f32 (the precision DINO's eval uses).
pub(crate) fn normalised_rows<T: Scalar>(m: MatRef<'_, T>) -> Result<Vec<f32>, MetricError> {
    m.check_finite()?;
    let mut out = Vec::with_capacity(m.data.len());
    for (i, row) in m.data.chunks_exact(m.cols).enumerate() {
        let norm = row.iter().map(|v| v.to_f64().powi(2)).sum::<f64>().sqrt();
        if norm == 0.0 {
            return Err(MetricError::input(m.name, format!("row {i} is all zeros: no direction for cosine similarity")));
        }
        out.extend(row.iter().map(|v| (v.to_f64() / norm) as f32));
    }
    Ok(out)
}

/// The neighbour order: larger similarity first, then lower index.
fn better(a: (usize, f32), b: (usize, f32)) -> bool {
    a.1 > b.1 || (a.1 == b.1 && a.0 < b.0)
}

/// The best `k` of two lists each in neighbour order, in that order.
pub(crate) fn merge_top_k(a: &[(usize, f32)], b: &[(usize, f32)], k: usize) -> Vec<(usize, f32)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(k);
    while out.len() < k && (i < a.len() || j < b.len()) {
        if j == b.len() || (i < a.len() && better(a[i], b[j])) {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out
}

/// Indices of the k largest similarities, largest first (lower index on
/// ties): one pass that keeps a sorted buffer of the best k seen so far.
pub(crate) fn top_k(row: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
    for (i, &s) in row.iter().enumerate() {
        if best.len() == k && !better((i, s), best[k - 1]) {
            continue;
        }
        let at = best.partition_point(|&b| better(b, (i, s)));
        best.insert(at, (i, s));
        best.truncate(k);
    }
    best
}

pub(crate) fn vote(neighbours: &[(usize, f32)], labels: &[i64], classes: usize, temperature: f64) -> usize {
    let mut votes = vec![0f64; classes];
    for &(i, sim) in neighbours {
        votes[labels[i] as usize] += (sim as f64 / temperature).exp();
    }
    let mut best = 0;
    for (c, &v) in votes.iter().enumerate() {
        if v > votes[best] {
            best = c;
        }
    }
    best
}
