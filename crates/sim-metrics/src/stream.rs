//! Measures over `.npy` feature files read in blocks of rows, so files larger
//! than memory work: linear CKA (biased estimator) from feature products
//! summed over the blocks, and k-NN with the bank streamed past the queries.
//! Peak memory is a block of rows plus the d × d products (CKA), or the
//! queries, a bank block and the neighbour lists (k-NN); never the files.
//! Both agree with the in-memory measures ([`crate::cka`], [`crate::knn`]):
//! `tests/stream.rs`.

use crate::MetricError;
use crate::knn::{KnnInputs, KnnResult, merge_top_k, normalised_rows, top_k, vote};
use crate::linalg::{
    Feature, MatRef, a_bt_into, add_at_b, add_ata_upper, engine, feature_products_in_f32,
    upper_weight,
};
use rayon::prelude::*;
use std::fs::File;
use std::io::BufReader;

/// Rows of a 2-D (or 1-D: one feature per row) `.npy` float array, read
/// front to back as f64: each block's bytes read at once and converted in
/// one loop (element by element through npyz's reader took longer than the
/// products).
pub struct NpyRows {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    reader: BufReader<File>,
    element: Element,
    bytes: Vec<u8>,
    read: usize,
}

/// A float element of a `.npy` file: its width and byte order.
#[derive(Clone, Copy)]
struct Element {
    size: usize,
    little_endian: bool,
}

impl Element {
    /// From a numpy type string (`<f4`, `>f8`, `|f2`, …); `None` for anything but floats.
    fn of(descr: &str) -> Option<Element> {
        let (order, kind) = descr.split_at_checked(1)?;
        let size = match kind {
            "f2" => 2,
            "f4" => 4,
            "f8" => 8,
            _ => return None,
        };
        let little_endian = match order {
            "<" | "|" => true,
            ">" => false,
            "=" => cfg!(target_endian = "little"),
            _ => return None,
        };
        Some(Element {
            size,
            little_endian,
        })
    }

    /// The values of `bytes` (whole elements), as f64.
    fn decode(self, bytes: &[u8]) -> Vec<f64> {
        // One loop per type and byte order, so each is a plain conversion.
        fn each<const N: usize>(bytes: &[u8], value: impl Fn([u8; N]) -> f64) -> Vec<f64> {
            bytes
                .chunks_exact(N)
                .map(|b| value(b.try_into().expect("N bytes")))
                .collect()
        }
        let f16 = |bits: u16| f64::from(half::f16::from_bits(bits));
        match (self.size, self.little_endian) {
            (2, true) => each(bytes, |b| f16(u16::from_le_bytes(b))),
            (2, false) => each(bytes, |b| f16(u16::from_be_bytes(b))),
            (4, true) => each(bytes, |b| f64::from(f32::from_le_bytes(b))),
            (4, false) => each(bytes, |b| f64::from(f32::from_be_bytes(b))),
            (_, true) => each(bytes, f64::from_le_bytes),
            (_, false) => each(bytes, f64::from_be_bytes),
        }
    }
}

impl NpyRows {
    pub fn open(path: &str) -> Result<NpyRows, MetricError> {
        let bad = |m: String| MetricError::input(path, m);
        let file = File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        // Leaves the reader at the first byte of the data.
        let header = npyz::NpyHeader::from_reader(&mut reader)
            .map_err(|e| bad(format!("not a .npy file: {e}")))?;
        if header.order() == npyz::Order::Fortran {
            return Err(bad(
                "Fortran-ordered array; save it C-contiguous (np.ascontiguousarray)".into(),
            ));
        }
        let shape: Vec<usize> = header.shape().iter().map(|&d| d as usize).collect();
        let (rows, cols) = crate::arrays::matrix_shape(path, &shape)?;
        let descr = header.dtype().descr();
        // A Python literal: '<f4'.
        let element = Element::of(descr.trim_matches('\'')).ok_or_else(|| bad(format!("dtype {descr}: features must be floating point (f16, f32, f64); integers are labels")))?;
        Ok(NpyRows {
            name: path.to_owned(),
            rows,
            cols,
            reader,
            element,
            bytes: Vec::new(),
            read: 0,
        })
    }

    /// The next (up to) `max_rows` rows, row-major; `None` after the last.
    pub fn next_block(&mut self, max_rows: usize) -> Result<Option<Vec<f64>>, MetricError> {
        let rows = max_rows.min(self.rows - self.read);
        if rows == 0 {
            return Ok(None);
        }
        let size = self.element.size;
        self.bytes.resize(rows * self.cols * size, 0);
        if let Err(e) = std::io::Read::read_exact(&mut self.reader, &mut self.bytes) {
            let message = match e.kind() {
                std::io::ErrorKind::UnexpectedEof => format!(
                    "truncated: fewer than {} rows (after row {})",
                    self.rows, self.read
                ),
                _ => format!("after row {}: {e}", self.read),
            };
            return Err(MetricError::input(&self.name, message));
        }
        let block = self.element.decode(&self.bytes);
        let at = MatRef {
            data: &block,
            rows,
            cols: self.cols,
            name: &self.name,
        };
        at.check_finite().map_err(|e| {
            MetricError::input(
                &self.name,
                format!("rows {}..{}: {e}", self.read, self.read + rows),
            )
        })?;
        self.read += rows;
        Ok(Some(block))
    }
}

/// Linear CKA (biased HSIC) from blocks of rows: Σ xᵢxᵢᵀ, Σ yᵢyᵢᵀ (upper
/// half only: symmetric), Σ xᵢyᵢᵀ and the column sums, centred at the end. The rows are shifted by the
/// first block's column means and scaled by its largest shifted magnitude
/// before they are summed, so features far from 0 do not cancel
/// catastrophically and large ones do not overflow (the in-memory measure
/// centres and scales exactly; the difference is far below 1e-9 on
/// ordinary features).
pub struct LinearCkaStream {
    d: [usize; 2],
    n: usize,
    /// Per side: the shift and the scale, from the first block.
    frame: Option<[(Vec<f64>, f64); 2]>,
    sums: [Vec<f64>; 2],
    /// XᵀX, YᵀY (on and above the diagonal: they are symmetric;
    /// `upper_weight`), XᵀY of the shifted, scaled rows.
    xx: Vec<f64>,
    yy: Vec<f64>,
    xy: Vec<f64>,
    /// Every block the same on both sides (a file against itself): the
    /// cross term is then the self term, not the general product's XᵀY,
    /// which in OpenBLAS's f32 blocks rounds apart from the symmetric XᵀX
    /// on some CPUs (1 − 8e-9 on AVX2): self-similarity is exactly 1.
    same_sides: bool,
}

impl LinearCkaStream {
    pub fn new(d1: usize, d2: usize) -> LinearCkaStream {
        LinearCkaStream {
            d: [d1, d2],
            n: 0,
            frame: None,
            sums: [vec![0.0; d1], vec![0.0; d2]],
            xx: vec![0.0; d1 * d1],
            yy: vec![0.0; d2 * d2],
            xy: vec![0.0; d1 * d2],
            same_sides: d1 == d2,
        }
    }

    /// Adds `rows` rows of each side (row-major, the same samples in the same order).
    pub fn update(&mut self, x: &[f64], y: &[f64], rows: usize) {
        if feature_products_in_f32() {
            self.add::<f32>(x, y, rows)
        } else {
            self.add::<f64>(x, y, rows)
        }
    }

    /// [`Self::update`] with the shifted, scaled rows in `F`, the type of the
    /// products (the column sums are of the same rounded values).
    fn add<F: Feature>(&mut self, x: &[f64], y: &[f64], rows: usize) {
        let [d1, d2] = self.d;
        let frame = self
            .frame
            .get_or_insert_with(|| [shift_and_scale(x, rows, d1), shift_and_scale(y, rows, d2)]);
        let moved = |m: &[f64], (shift, scale): &(Vec<f64>, f64), d: usize| -> Vec<F> {
            // Row by row into a vector of the right size (a flat_map over the
            // block collected several times slower).
            let mut out = Vec::with_capacity(m.len());
            for row in m.chunks_exact(d) {
                out.extend(
                    row.iter()
                        .zip(shift)
                        .map(|(v, s)| F::from_f64((v - s) / scale)),
                );
            }
            out
        };
        let (x, y) = (moved(x, &frame[0], d1), moved(y, &frame[1], d2));
        for (sums, (m, d)) in self.sums.iter_mut().zip([(&x, d1), (&y, d2)]) {
            for row in m.chunks_exact(d) {
                sums.iter_mut().zip(row).for_each(|(s, v)| *s += v.to_f64());
            }
        }
        self.same_sides &= x == y;
        add_ata_upper(&mut self.xx, &x, rows, d1);
        add_ata_upper(&mut self.yy, &y, rows, d2);
        add_at_b(&mut self.xy, &x, &y, rows, d1, d2);
        self.n += rows;
    }

    /// ‖X̄ᵀȲ‖²_F / (‖X̄ᵀX̄‖_F ‖ȲᵀȲ‖_F), X̄ = X − mean: the biased linear CKA.
    pub fn value(&self, name: &str) -> Result<f64, MetricError> {
        if self.n < 2 {
            return Err(MetricError::input(
                name,
                format!("{} samples; the biased estimator needs at least 2", self.n),
            ));
        }
        let n = self.n as f64;
        let [d1, d2] = self.d;
        let means: Vec<Vec<f64>> = self
            .sums
            .iter()
            .map(|s| s.iter().map(|v| v / n).collect())
            .collect();
        // Σ (a − ā)(b − b̄)ᵀ = Σ abᵀ − n ā b̄ᵀ, squared and summed, each
        // entry `weight(i, j)` times.
        let centred_norm2 = |p: &[f64],
                             a: &[f64],
                             b: &[f64],
                             cols: usize,
                             weight: fn(usize, usize) -> f64|
         -> f64 {
            let entries = p
                .chunks_exact(cols)
                .zip(a)
                .enumerate()
                .flat_map(|(i, (row, ai))| {
                    row.iter()
                        .zip(b)
                        .enumerate()
                        .map(move |(j, (v, bj))| (i, j, v - n * ai * bj))
                });
            entries.map(|(i, j, c)| weight(i, j) * c * c).sum()
        };
        let xx = centred_norm2(&self.xx, &means[0], &means[0], d1, upper_weight());
        let yy = centred_norm2(&self.yy, &means[1], &means[1], d2, upper_weight());
        let xy = if self.same_sides {
            xx
        } else {
            centred_norm2(&self.xy, &means[0], &means[1], d2, |_, _| 1.0)
        };
        if !(xx > 0.0 && yy > 0.0) {
            return Err(MetricError::input(
                name,
                "features have zero variance (or no positive self-similarity): CKA is undefined",
            ));
        }
        Ok(xy / (xx.sqrt() * yy.sqrt()))
    }
}

/// A side's column means and largest |value − mean| over a block (1 if 0).
fn shift_and_scale(m: &[f64], rows: usize, d: usize) -> (Vec<f64>, f64) {
    let mut means = vec![0.0; d];
    for row in m.chunks_exact(d) {
        means.iter_mut().zip(row).for_each(|(s, v)| *s += v);
    }
    means.iter_mut().for_each(|v| *v /= rows as f64);
    let largest = m
        .chunks_exact(d)
        .flat_map(|row| row.iter().zip(&means).map(|(v, s)| (v - s).abs()))
        .fold(0.0, f64::max);
    (means, if largest > 0.0 { largest } else { 1.0 })
}

/// Linear CKA (biased) between two `.npy` files, `block_rows` rows at a time.
pub fn linear_cka_files(a: &str, b: &str, block_rows: usize) -> Result<f64, MetricError> {
    let (mut x, mut y) = (NpyRows::open(a)?, NpyRows::open(b)?);
    if x.rows != y.rows {
        return Err(MetricError::input(
            b,
            format!("{} samples, {a} has {}", y.rows, x.rows),
        ));
    }
    if x.cols == 0 || y.cols == 0 {
        return Err(MetricError::input(
            if x.cols == 0 { a } else { b },
            "no features",
        ));
    }
    let mut acc = LinearCkaStream::new(x.cols, y.cols);
    while let (Some(xb), Some(yb)) = (x.next_block(block_rows)?, y.next_block(block_rows)?) {
        acc.update(&xb, &yb, xb.len() / x.cols);
    }
    acc.value(a)
}

/// k-NN accuracy with the bank read from a `.npy` file `block_rows` rows at
/// a time: each bank block's similarities to every query, merged into each
/// query's running top-k. The same neighbours, votes and accuracy as
/// [`crate::knn::knn_accuracy`] with the whole bank in memory.
pub fn knn_accuracy_file(
    bank: &str,
    bank_labels: &[i64],
    queries: MatRef<'_, f64>,
    query_labels: &[i64],
    ks: &[usize],
    temperature: f64,
    block_rows: usize,
) -> Result<Vec<KnnResult>, MetricError> {
    let mut rows = NpyRows::open(bank)?;
    let inputs = KnnInputs::check(
        rows.rows,
        rows.cols,
        &rows.name.clone(),
        bank_labels,
        queries,
        query_labels,
        ks,
        temperature,
    )?;
    let query_n = normalised_rows(queries)?;
    let d = queries.cols;
    let mut best: Vec<Vec<(usize, f32)>> = vec![Vec::new(); queries.rows];
    // One similarity buffer for every block (a fresh one per block cost its
    // page faults and zeroing each time).
    let mut sims = vec![0f32; queries.rows * block_rows.min(rows.rows)];
    let mut start = 0;
    while let Some(block) = rows.next_block(block_rows)? {
        let n = block.len() / d;
        let block_n = normalised_rows(MatRef {
            data: &block,
            rows: n,
            cols: d,
            name: &rows.name,
        })
        .map_err(|e| MetricError::input(&rows.name, format!("rows from {start}: {e}")))?;
        a_bt_into(&mut sims, &query_n, &block_n, queries.rows, n, d, engine());
        best.par_iter_mut()
            .zip(sims[..queries.rows * n].par_chunks_exact(n))
            .for_each(|(best, row)| {
                let found: Vec<(usize, f32)> = top_k(row, inputs.k_max.min(n))
                    .into_iter()
                    .map(|(i, s)| (start + i, s))
                    .collect();
                *best = merge_top_k(best, &found, inputs.k_max);
            });
        start += n;
    }
    let mut correct = vec![0usize; ks.len()];
    for (q, neighbours) in best.iter().enumerate() {
        for (total, &k) in correct.iter_mut().zip(ks) {
            *total += usize::from(
                vote(&neighbours[..k], bank_labels, inputs.classes, temperature)
                    == query_labels[q] as usize,
            );
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
