//! Weighted k-NN classification as DINO's `eval_knn` (docs/SPEC.md): L2-normalised
//! features, cosine similarity to a memory bank, the top-k neighbours each
//! vote exp(sim / T) for their label, the class with the largest vote wins
//! (the lowest class index on an exact tie).
//!
//! Queries are processed in chunks: memory is chunk × bank, never queries × bank.

use crate::MetricError;
use crate::linalg::{MatRef, Scalar, a_bt_into};
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
    let KnnInputs { k_max, classes } = KnnInputs::check(
        bank.rows,
        bank.cols,
        bank.name,
        bank_labels,
        queries,
        query_labels,
        ks,
        temperature,
    )?;
    let bank_n = normalised_rows(bank)?;
    let query_n = normalised_rows(queries)?;
    let d = bank.cols;
    let mut correct = vec![0usize; ks.len()];
    let mut sims = vec![0f32; CHUNK.min(queries.rows) * bank.rows];
    for (c, chunk) in query_n.chunks(CHUNK * d).enumerate() {
        let rows = chunk.len() / d;
        // The `gemm` crate even where OpenBLAS is loaded: measured faster
        // here (k-NN 1.24x PyTorch on it, 1.04x on OpenBLAS, whose threads
        // were seen yielding in a spin while the neighbour scan ran after
        // each product; BENCHMARKS.md).
        a_bt_into(&mut sims, chunk, &bank_n, rows, bank.rows, d, None);
        let hits: Vec<Vec<bool>> = sims[..rows * bank.rows]
            .par_chunks_exact(bank.rows)
            .enumerate()
            .map(|(r, row)| {
                let neighbours = top_k(row, k_max);
                let truth = query_labels[c * CHUNK + r] as usize;
                ks.iter()
                    .map(|&k| vote(&neighbours[..k], bank_labels, classes, temperature) == truth)
                    .collect()
            })
            .collect();
        for h in hits {
            for (total, hit) in correct.iter_mut().zip(h) {
                *total += usize::from(hit);
            }
        }
    }
    Ok(ks
        .iter()
        .zip(correct)
        .map(|(&k, c)| KnnResult {
            k,
            top1: c as f64 / queries.rows as f64,
        })
        .collect())
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
            return Err(MetricError::input(
                queries.name,
                format!("{} features, the bank has {bank_cols}", queries.cols),
            ));
        }
        for (rows, name, labels, what) in [
            (bank_rows, bank_name, bank_labels, "bank labels"),
            (queries.rows, queries.name, query_labels, "query labels"),
        ] {
            if labels.len() != rows {
                return Err(MetricError::input(
                    what,
                    format!("{} labels for {rows} rows of {name}", labels.len()),
                ));
            }
            if let Some(l) = labels.iter().find(|&&l| l < 0) {
                return Err(MetricError::input(what, format!("negative label {l}")));
            }
            // Votes are counted in a vector as long as the largest label:
            // a stray id (1e12) would ask for terabytes.
            if let Some(l) = labels.iter().find(|&&l| l >= MAX_CLASSES) {
                return Err(MetricError::input(
                    what,
                    format!("label {l} is not below {MAX_CLASSES}: number the classes 0, 1, 2, …"),
                ));
            }
        }
        let k_max = *ks
            .iter()
            .max()
            .ok_or_else(|| MetricError::input("k", "no k given"))?;
        if ks.contains(&0) || k_max > bank_rows {
            return Err(MetricError::input(
                "k",
                format!("k must be in 1..={bank_rows} (the bank's size), got {ks:?}"),
            ));
        }
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(MetricError::input(
                "temperature",
                format!("{temperature} is not positive"),
            ));
        }
        if queries.rows == 0 {
            return Err(MetricError::input(queries.name, "no queries"));
        }
        let classes = 1 + *bank_labels
            .iter()
            .chain(query_labels)
            .max()
            .expect("non-empty") as usize;
        Ok(KnnInputs { k_max, classes })
    }
}

/// Labels are class numbers below this.
pub const MAX_CLASSES: i64 = 1 << 20;

/// Rows scaled to unit L2 norm, in f32 (the precision DINO's eval uses);
/// rows in parallel.
pub(crate) fn normalised_rows<T: Scalar>(m: MatRef<'_, T>) -> Result<Vec<f32>, MetricError> {
    m.check_finite()?;
    let norms: Vec<f64> = m
        .data
        .par_chunks_exact(m.cols)
        .map(|row| row.iter().map(|v| v.to_f64().powi(2)).sum::<f64>().sqrt())
        .collect();
    if let Some(i) = norms.iter().position(|&n| n == 0.0) {
        return Err(MetricError::input(
            m.name,
            format!("row {i} is all zeros: no direction for cosine similarity"),
        ));
    }
    let mut out = vec![0f32; m.data.len()];
    out.par_chunks_exact_mut(m.cols)
        .zip(m.data.par_chunks_exact(m.cols))
        .zip(&norms)
        .for_each(|((dst, row), norm)| {
            dst.iter_mut()
                .zip(row)
                .for_each(|(d, v)| *d = (v.to_f64() / norm) as f32);
        });
    Ok(out)
}

/// The neighbour order: larger similarity first, then lower index.
fn better<S: PartialOrd>(a: (usize, S), b: (usize, S)) -> bool {
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

/// Similarities a [`top_k`] scan tests at once against its k-th best.
const SCAN_BLOCK: usize = 16;

/// Indices of the k largest similarities, largest first (lower index on
/// ties): one pass that keeps a sorted buffer of the best k seen so far.
///
/// Once the buffer is full, a later similarity enters only if it is larger
/// than the k-th best (on a tie the earlier index wins, and the buffer's
/// indices are all earlier), so a block of [`SCAN_BLOCK`] values none of
/// which is larger is skipped whole, on one branch after comparisons the
/// compiler can run in SIMD lanes (a branch per value made this scan about
/// an eighth of the time of the similarity product before it).
pub(crate) fn top_k<S: Copy + PartialOrd>(row: &[S], k: usize) -> Vec<(usize, S)> {
    let mut best: Vec<(usize, S)> = Vec::with_capacity(k + 1);
    let offer = |i: usize, s: S, best: &mut Vec<(usize, S)>| {
        if best.len() == k && !better((i, s), best[k - 1]) {
            return;
        }
        let at = best.partition_point(|&b| better(b, (i, s)));
        best.insert(at, (i, s));
        best.truncate(k);
    };
    let blocks = row.chunks_exact(SCAN_BLOCK);
    let rest = blocks.remainder();
    for (b, block) in blocks.enumerate() {
        let block: &[S; SCAN_BLOCK] = block.try_into().expect("an exact chunk");
        if best.len() == k {
            let worst = best[k - 1].1;
            if !block.iter().fold(false, |any, &s| any | (s > worst)) {
                continue;
            }
        }
        for (j, &s) in block.iter().enumerate() {
            offer(b * SCAN_BLOCK + j, s, &mut best);
        }
    }
    for (j, &s) in rest.iter().enumerate() {
        offer(row.len() - rest.len() + j, s, &mut best);
    }
    best
}

pub(crate) fn vote(
    neighbours: &[(usize, f32)],
    labels: &[i64],
    classes: usize,
    temperature: f64,
) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan against a full sort in neighbour order, on rows with ties
    /// (values on a coarse grid) and rows that rise or fall throughout (every
    /// value, or none, better than the k-th best so far), with k below, at
    /// and above the block size and row lengths that end in a partial block.
    #[test]
    fn top_k_is_the_first_k_of_a_full_sort() {
        let rows: [fn(usize) -> f32; 3] = [
            |i| ((i * 7919 + 13) % 31) as f32 / 8.0 - 2.0,
            |i| i as f32,
            |i| -(i as f32),
        ];
        for (len, value) in [1, 15, 16, 17, 100, 1000, 5000]
            .into_iter()
            .flat_map(|len| rows.iter().map(move |value| (len, value)))
        {
            let row: Vec<f32> = (0..len).map(value).collect();
            let mut sorted: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
            sorted.sort_by(|&a, &b| {
                if better(a, b) {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            });
            for k in [1, 5, 16, 20, 40, 200] {
                let k = k.min(len);
                assert_eq!(top_k(&row, k), sorted[..k], "length {len}, k {k}");
            }
        }
    }
}
