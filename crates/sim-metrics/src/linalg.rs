//! Row-major matrices and the few products the measures need: on OpenBLAS
//! where the machine has it ([`crate::blas`]; CKA's feature products then
//! in f32 blocks summed in f64, [`in_f32_blocks`]), else on the `gemm`
//! crate's kernels (the ones burn's Flex backend uses), parallel with rayon.

use crate::MetricError;
use num_traits::{One, Zero};
use std::borrow::Cow;

/// A number type features can come in; every measure works in f64.
pub trait Scalar: Copy + Send + Sync + 'static {
    fn to_f64(self) -> f64;
}

impl Scalar for f64 {
    fn to_f64(self) -> f64 {
        self
    }
}
impl Scalar for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
}
impl Scalar for half::f16 {
    fn to_f64(self) -> f64 {
        half::f16::to_f64(self)
    }
}

/// A borrowed row-major `rows × cols` matrix (samples × features), with the
/// name errors about it use ("A", a file name, a layer).
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub name: &'a str,
}

impl<'a, T: Scalar> MatRef<'a, T> {
    pub fn new(
        data: &'a [T],
        rows: usize,
        cols: usize,
        name: &'a str,
    ) -> Result<Self, MetricError> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(MetricError::input(
                name,
                format!("{} values do not fill {rows} × {cols}", data.len()),
            ));
        }
        Ok(MatRef {
            data,
            rows,
            cols,
            name,
        })
    }

    /// Rows `start..end` as a matrix of their own (a minibatch).
    pub fn rows_range(&self, start: usize, end: usize) -> MatRef<'a, T> {
        MatRef {
            data: &self.data[start * self.cols..end * self.cols],
            rows: end - start,
            cols: self.cols,
            name: self.name,
        }
    }

    /// As logits: fails unless `labels` holds one class index in
    /// 0..cols per row, and there is at least one row (errors name `labels`).
    pub fn check_labels(&self, labels: &[usize]) -> Result<(), MetricError> {
        if labels.len() != self.rows || labels.is_empty() {
            return Err(MetricError::input(
                "labels",
                format!(
                    "{} labels for {} rows of logits (need the same, at least one)",
                    labels.len(),
                    self.rows
                ),
            ));
        }
        match labels.iter().find(|&&l| l >= self.cols) {
            Some(bad) => Err(MetricError::input(
                "labels",
                format!("label {bad} is outside 0..{}", self.cols),
            )),
            None => Ok(()),
        }
    }

    /// Fails on NaN or infinite values, naming the matrix and the first position.
    pub fn check_finite(&self) -> Result<(), MetricError> {
        match self.data.iter().position(|v| !v.to_f64().is_finite()) {
            None => Ok(()),
            Some(i) => Err(MetricError::input(
                self.name,
                format!(
                    "non-finite value {} at row {}, column {}",
                    self.data[i].to_f64(),
                    i / self.cols,
                    i % self.cols
                ),
            )),
        }
    }
}

/// The element type of CKA's feature products: f32 where OpenBLAS
/// multiplies them ([`in_f32_blocks`]), f64 on the pure-Rust path
/// ([`feature_products_in_f32`] says which).
pub(crate) trait Feature: Copy + PartialEq + Send + Sync + 'static {
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    /// The values as f32 (borrowed when they are).
    fn as_f32(s: &[Self]) -> Cow<'_, [f32]>;
    /// The values as f64 (borrowed when they are).
    fn as_f64(s: &[Self]) -> Cow<'_, [f64]>;
}

impl Feature for f32 {
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn as_f32(s: &[f32]) -> Cow<'_, [f32]> {
        Cow::Borrowed(s)
    }
    fn as_f64(s: &[f32]) -> Cow<'_, [f64]> {
        Cow::Owned(s.iter().map(|&v| f64::from(v)).collect())
    }
}

impl Feature for f64 {
    fn from_f64(v: f64) -> f64 {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn as_f32(s: &[f64]) -> Cow<'_, [f32]> {
        Cow::Owned(s.iter().map(|&v| v as f32).collect())
    }
    fn as_f64(s: &[f64]) -> Cow<'_, [f64]> {
        Cow::Borrowed(s)
    }
}

/// Whether CKA's feature products run in f32 blocks (OpenBLAS is loaded).
pub(crate) fn feature_products_in_f32() -> bool {
    engine().is_some()
}

/// The mean of each column of `m`, summed in f64.
pub(crate) fn column_means<T: Scalar>(m: MatRef<'_, T>) -> Vec<f64> {
    let mut means = vec![0.0; m.cols];
    for row in m.data.chunks_exact(m.cols) {
        means
            .iter_mut()
            .zip(row)
            .for_each(|(s, v)| *s += v.to_f64());
    }
    means.iter_mut().for_each(|v| *v /= m.rows as f64);
    means
}

/// The column-centred matrix scaled to a largest magnitude of 1 (left
/// unscaled when every value equals its column's mean), in `F`: three
/// passes over `m`, means in f64. CKA is invariant to the scale, and the
/// scale keeps the fourth powers of its self terms inside f64's range for
/// any finite input (features of 1e75 or 1e-100 alike).
pub(crate) fn centred_scaled<T: Scalar, F: Feature>(m: MatRef<'_, T>) -> Vec<F> {
    let (n, d) = (m.rows, m.cols);
    let means = column_means(m);
    // Plain loops over rows: iterator chains over the whole matrix ran
    // several times slower here.
    let mut largest = 0.0f64;
    for row in m.data.chunks_exact(d) {
        for (v, mean) in row.iter().zip(&means) {
            largest = largest.max((v.to_f64() - mean).abs());
        }
    }
    let scale = if largest > 0.0 { 1.0 / largest } else { 1.0 };
    let mut out = Vec::with_capacity(n * d);
    for row in m.data.chunks_exact(d) {
        out.extend(
            row.iter()
                .zip(&means)
                .map(|(v, mean)| F::from_f64((v.to_f64() - mean) * scale)),
        );
    }
    out
}

use crate::blas::{Blas, BlasFloat, blas};

#[cfg(test)]
thread_local! {
    /// Unit tests run the pure-Rust path too, where OpenBLAS is installed.
    static RUST_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// OpenBLAS where it is loaded (and not turned off), else the `gemm` crate.
pub(crate) fn engine() -> Option<&'static Blas> {
    #[cfg(test)]
    if RUST_ONLY.with(std::cell::Cell::get) {
        return None;
    }
    blas()
}

fn parallelism() -> gemm::Parallelism {
    gemm::Parallelism::Rayon(rayon::current_num_threads())
}

/// `dst (m × n, row-major) = lhs · rhs`, or `dst += lhs · rhs` when
/// `accumulate`, for strided operands. Strides are (row stride, column
/// stride) in elements.
#[allow(clippy::too_many_arguments)]
fn gemm_with<T: 'static + Copy + Zero + One>(
    dst: &mut [T],
    accumulate: bool,
    m: usize,
    n: usize,
    k: usize,
    lhs: &[T],
    lhs_strides: (usize, usize),
    rhs: &[T],
    rhs_strides: (usize, usize),
) {
    assert!(dst.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    // Safety: the strides and extents address only elements inside `lhs`,
    // `rhs` and `dst` (checked by the callers' shapes and the asserts below).
    assert!(k == 0 || (m - 1) * lhs_strides.0 + (k - 1) * lhs_strides.1 < lhs.len());
    assert!(k == 0 || (k - 1) * rhs_strides.0 + (n - 1) * rhs_strides.1 < rhs.len());
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides.1 as isize,
            lhs_strides.0 as isize,
            rhs.as_ptr(),
            rhs_strides.1 as isize,
            rhs_strides.0 as isize,
            if accumulate { T::one() } else { T::zero() },
            T::one(),
            false,
            false,
            false,
            parallelism(),
        );
    }
}

/// `Aᵀ B` (d1 × d2) for row-major A (n × d1) and B (n × d2).
pub(crate) fn at_b<F: Feature>(a: &[F], b: &[F], n: usize, d1: usize, d2: usize) -> Vec<f64> {
    let mut out = vec![0.0; d1 * d2];
    add_at_b(&mut out, a, b, n, d1, d2);
    out
}

/// `dst += Aᵀ B` (d1 × d2) for row-major A (n × d1) and B (n × d2): a sum
/// over blocks of rows. With OpenBLAS: in f32 blocks ([`F32_BLOCK_ROWS`]).
pub(crate) fn add_at_b<F: Feature>(
    dst: &mut [f64],
    a: &[F],
    b: &[F],
    n: usize,
    d1: usize,
    d2: usize,
) {
    match engine() {
        Some(blas) => {
            let mut product = vec![0f32; d1 * d2];
            in_f32_blocks(n, |r0, rows| {
                let (a, b) = (
                    F::as_f32(&a[r0 * d1..(r0 + rows) * d1]),
                    F::as_f32(&b[r0 * d2..(r0 + rows) * d2]),
                );
                f32::gemm(blas, true, false, d1, d2, rows, &a, &b, 0.0, &mut product);
                dst.iter_mut()
                    .zip(&product)
                    .for_each(|(t, v)| *t += f64::from(*v));
            });
        }
        None => gemm_with(
            dst,
            true,
            d1,
            d2,
            n,
            &F::as_f64(a),
            (1, d1),
            &F::as_f64(b),
            (d2, 1),
        ),
    }
}

/// `A Bᵀ` (n1 × n2) for row-major A (n1 × d) and B (n2 × d), in `T`.
pub(crate) fn a_bt<T: BlasFloat + 'static + Zero + One>(
    a: &[T],
    b: &[T],
    n1: usize,
    n2: usize,
    d: usize,
) -> Vec<T> {
    let mut out = vec![T::zero(); n1 * n2];
    a_bt_into(&mut out, a, b, n1, n2, d, engine());
    out
}

/// [`a_bt`] written over the first n1 × n2 values of `out` (whatever they
/// held), so that a loop of products reuses one buffer: a fresh large
/// buffer per product costs its page faults and zeroing each time. `blas`:
/// OpenBLAS, or `None` for the `gemm` crate.
pub(crate) fn a_bt_into<T: BlasFloat + 'static + Zero + One>(
    out: &mut [T],
    a: &[T],
    b: &[T],
    n1: usize,
    n2: usize,
    d: usize,
    blas: Option<&Blas>,
) {
    let out = &mut out[..n1 * n2];
    match blas {
        Some(blas) => T::gemm(blas, false, true, n1, n2, d, a, b, T::zero(), out),
        None => gemm_with(out, false, n1, n2, d, a, (d, 1), b, (1, d)),
    }
}

/// ‖Aᵀ B‖²_F without keeping the product.
pub(crate) fn cross_norm2<F: Feature>(a: &[F], b: &[F], n: usize, d1: usize, d2: usize) -> f64 {
    at_b(a, b, n, d1, d2).iter().map(|v| v * v).sum()
}

/// Rows per block when OpenBLAS multiplies in f32 ([`in_f32_blocks`]):
/// OpenBLAS's sgemm reaches its full rate here from about 1,000 rows (half
/// of it at 256).
const F32_BLOCK_ROWS: usize = 2048;

/// Calls `each(first_row, rows)` over blocks of [`F32_BLOCK_ROWS`] rows.
///
/// Why f32 blocks are exact enough: the products are of centred features
/// scaled to a largest magnitude of 1 (`cka`, `stream`), rounded to f32
/// (relative error 2⁻²⁴ each); a block's f32 sum of 2,048 products has a
/// rounding error of about √2048 · 2⁻²⁴ ≈ 3e-6 of the sum of their
/// magnitudes, and the blocks are summed in f64, so the error does not grow
/// with n. CKA's terms are sums of d² squared entries over which these
/// errors average out: the values agree with the f64 products to about 1e-8
/// (`tests`: 1e-7 asserted), inside the reference tests' 1e-6.
fn in_f32_blocks(n: usize, mut each: impl FnMut(usize, usize)) {
    let mut r0 = 0;
    while r0 < n {
        let rows = F32_BLOCK_ROWS.min(n - r0);
        each(r0, rows);
        r0 += rows;
    }
}

/// The upper triangle (i ≤ j) of AᵀA (A row-major n × d) added to `dst`,
/// by OpenBLAS's symmetric product in f32 blocks summed in f64.
fn add_ata_upper_triangle<F: Feature>(blas: &Blas, dst: &mut [f64], a: &[F], n: usize, d: usize) {
    let mut product = vec![0f32; d * d];
    in_f32_blocks(n, |r0, rows| {
        f32::syrk_t(
            blas,
            d,
            rows,
            &F::as_f32(&a[r0 * d..(r0 + rows) * d]),
            0.0,
            &mut product,
        );
        for i in 0..d {
            let at = i * d;
            dst[at + i..at + d]
                .iter_mut()
                .zip(&product[at + i..at + d])
                .for_each(|(t, v)| *t += f64::from(*v));
        }
    });
}

/// Column-block width of the symmetric product below.
const SYM_BLOCK: usize = 192;

/// Each block of AᵀA (A row-major n × d) on and above the diagonal, in
/// column blocks of [`SYM_BLOCK`]: `each(i0, j0, block)` with the block's
/// rows i0.., columns j0.. (row-major). The product is symmetric, so these
/// are all of it: a little over half the work of a full product.
fn upper_blocks_of_ata(a: &[f64], n: usize, d: usize, mut each: impl FnMut(usize, usize, &[f64])) {
    let starts: Vec<usize> = (0..d).step_by(SYM_BLOCK).collect();
    let mut block = Vec::new();
    for (bi, &i0) in starts.iter().enumerate() {
        let wi = SYM_BLOCK.min(d - i0);
        for &j0 in &starts[bi..] {
            let wj = SYM_BLOCK.min(d - j0);
            block.clear();
            block.resize(wi * wj, 0.0);
            gemm_with(
                &mut block,
                false,
                wi,
                wj,
                n,
                &a[i0..],
                (1, d),
                &a[j0..],
                (d, 1),
            );
            each(i0, j0, &block);
        }
    }
}

/// How often entry (i, j) of a symmetric d × d matrix summed by
/// [`add_ata_upper`] counts in a sum over the whole matrix (its mirror
/// image included). The pure-Rust path keeps the column blocks on and above
/// the diagonal: 1 in a diagonal block, 2 above it, 0 below (not kept);
/// OpenBLAS keeps the upper triangle: 1 on the diagonal, 2 above, 0 below.
pub(crate) fn upper_weight() -> fn(usize, usize) -> f64 {
    fn blocks(i: usize, j: usize) -> f64 {
        match (i / SYM_BLOCK).cmp(&(j / SYM_BLOCK)) {
            std::cmp::Ordering::Equal => 1.0,
            std::cmp::Ordering::Less => 2.0,
            std::cmp::Ordering::Greater => 0.0,
        }
    }
    fn triangle(i: usize, j: usize) -> f64 {
        match i.cmp(&j) {
            std::cmp::Ordering::Equal => 1.0,
            std::cmp::Ordering::Less => 2.0,
            std::cmp::Ordering::Greater => 0.0,
        }
    }
    if engine().is_some() { triangle } else { blocks }
}

/// ‖Aᵀ A‖²_F from the product's upper half alone.
pub(crate) fn self_norm2<F: Feature>(a: &[F], n: usize, d: usize) -> f64 {
    if let Some(blas) = engine() {
        let mut upper = vec![0.0; d * d];
        add_ata_upper_triangle(blas, &mut upper, a, n, d);
        let weighted = upper.chunks_exact(d).enumerate().flat_map(|(i, row)| {
            row[i..]
                .iter()
                .enumerate()
                .map(move |(k, v)| if k == 0 { v * v } else { 2.0 * v * v })
        });
        return weighted.sum();
    }
    let mut total = 0.0;
    upper_blocks_of_ata(&F::as_f64(a), n, d, |i0, j0, block| {
        let s: f64 = block.iter().map(|v| v * v).sum();
        total += if i0 == j0 { s } else { 2.0 * s };
    });
    total
}

/// `dst += AᵀA` (d × d row-major) on and above the diagonal; what is below
/// may be left as it is (read the sum through [`upper_weight`]).
pub(crate) fn add_ata_upper<F: Feature>(dst: &mut [f64], a: &[F], n: usize, d: usize) {
    if let Some(blas) = engine() {
        return add_ata_upper_triangle(blas, dst, a, n, d);
    }
    upper_blocks_of_ata(&F::as_f64(a), n, d, |i0, j0, block| {
        let wj = SYM_BLOCK.min(d - j0);
        for (r, row) in block.chunks_exact(wj).enumerate() {
            let at = (i0 + r) * d + j0;
            dst[at..at + wj]
                .iter_mut()
                .zip(row)
                .for_each(|(t, v)| *t += v);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_at_b(a: &[f64], b: &[f64], n: usize, d1: usize, d2: usize) -> Vec<f64> {
        let mut out = vec![0.0; d1 * d2];
        for i in 0..n {
            for p in 0..d1 {
                for q in 0..d2 {
                    out[p * d2 + q] += a[i * d1 + p] * b[i * d2 + q];
                }
            }
        }
        out
    }

    fn values(len: usize, seed: u64) -> Vec<f64> {
        (0..len)
            .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f64) / 500.0 - 1.0)
            .collect()
    }

    /// Runs `check(with_blas)` with the pure-Rust products, then with
    /// OpenBLAS where this machine has it.
    fn both_engines(check: impl Fn(bool)) {
        RUST_ONLY.with(|f| f.set(true));
        check(false);
        RUST_ONLY.with(|f| f.set(false));
        if blas().is_some() {
            check(true);
        } else {
            eprintln!("OpenBLAS not installed: only the pure-Rust products were checked");
        }
    }

    #[test]
    fn products_match_naive_loops() {
        both_engines(|with_blas| {
            // f32 blocks with OpenBLAS: relative 1e-6 of the entries' magnitude (values in [−1, 1]).
            let tol = if with_blas { 1e-5 } else { 1e-9 };
            let (n, d1, d2) = (600, 5, 400);
            let (a, b) = (values(n * d1, 1), values(n * d2, 2));
            let want = naive_at_b(&a, &b, n, d1, d2);
            for (x, y) in at_b(&a, &b, n, d1, d2).iter().zip(&want) {
                assert!(
                    (x - y).abs() < tol * n as f64,
                    "{x} vs {y} (OpenBLAS: {with_blas})"
                );
            }
            let c = values(n * d2, 3);
            let full = naive_at_b(&c, &c, n, d2, d2);
            let self_want: f64 = full.iter().map(|v| v * v).sum();
            assert!(
                (self_norm2(&c, n, d2) / self_want - 1.0).abs() < tol,
                "OpenBLAS: {with_blas}"
            );
            // Added twice: 2AᵀA in (at least) the upper blocks, and the weights give the whole.
            let mut upper = vec![0.0; d2 * d2];
            add_ata_upper(&mut upper, &c, n, d2);
            add_ata_upper(&mut upper, &c, n, d2);
            let (mut weighted, weight) = (0.0, upper_weight());
            for i in 0..d2 {
                for j in 0..d2 {
                    let (w, got) = (weight(i, j), upper[i * d2 + j]);
                    if w > 0.0 {
                        assert!(
                            (got - 2.0 * full[i * d2 + j]).abs() < tol * n as f64,
                            "({i}, {j}), OpenBLAS: {with_blas}"
                        );
                    }
                    weighted += w * (got / 2.0).powi(2);
                }
            }
            assert!(
                (weighted / self_want - 1.0).abs() < tol,
                "OpenBLAS: {with_blas}"
            );
            // A Bᵀ: (n1 × d)(d × n2), in f64 and in f32 (k-NN's similarities).
            let (n1, n2, d) = (4, 3, 6);
            let (p, q) = (values(n1 * d, 4), values(n2 * d, 5));
            let abt = a_bt(&p, &q, n1, n2, d);
            let (p32, q32): (Vec<f32>, Vec<f32>) = (
                p.iter().map(|&v| v as f32).collect(),
                q.iter().map(|&v| v as f32).collect(),
            );
            let abt32 = a_bt(&p32, &q32, n1, n2, d);
            for i in 0..n1 {
                for j in 0..n2 {
                    let dot: f64 = (0..d).map(|k| p[i * d + k] * q[j * d + k]).sum();
                    assert!((abt[i * n2 + j] - dot).abs() < 1e-12);
                    assert!((f64::from(abt32[i * n2 + j]) - dot).abs() < 1e-6);
                }
            }
        });
    }

    #[test]
    fn f32_blocks_give_the_f64_cka_to_1e_7() {
        // Correlated, centred, scaled features (what `cka` multiplies): a
        // low-rank signal plus noise, as real layers are.
        let (n, d1, d2) = (3000, 96, 64);
        let signal = values(n * 8, 7);
        let side = |d: usize, seed: u64| -> Vec<f64> {
            let noise = values(n * d, seed);
            let mut x: Vec<f64> = (0..n * d)
                .map(|i| {
                    signal[(i / d) * 8 + (i % d) % 8] * (1.0 + (i % d) as f64 / 10.0)
                        + 1.5 * noise[i]
                        + 5.0
                })
                .collect();
            let m = MatRef {
                data: &x,
                rows: n,
                cols: d,
                name: "x",
            };
            x = centred_scaled(m);
            x
        };
        let (x, y) = (side(d1, 11), side(d2, 12));
        let (x32, y32): (Vec<f32>, Vec<f32>) = (
            x.iter().map(|&v| v as f32).collect(),
            y.iter().map(|&v| v as f32).collect(),
        );
        let cka = || {
            cross_norm2(&x, &y, n, d1, d2)
                / (self_norm2(&x, n, d1).sqrt() * self_norm2(&y, n, d2).sqrt())
        };
        let cka32 = || {
            cross_norm2(&x32, &y32, n, d1, d2)
                / (self_norm2(&x32, n, d1).sqrt() * self_norm2(&y32, n, d2).sqrt())
        };
        RUST_ONLY.with(|f| f.set(true));
        let f64_value = cka();
        RUST_ONLY.with(|f| f.set(false));
        let Some(_) = blas() else {
            eprintln!("OpenBLAS not installed: the f32 blocks were not checked");
            return;
        };
        let f32_value = cka();
        // f32 inputs (what `cka` hands OpenBLAS) give the same blocks.
        assert_eq!(cka32(), f32_value);
        assert!(
            f64_value > 0.3 && f64_value < 0.99,
            "a CKA that says something: {f64_value}"
        );
        assert!(
            (f32_value - f64_value).abs() < 1e-7,
            "f32 blocks {f32_value} vs f64 {f64_value}"
        );
    }

    #[test]
    fn shape_mismatch_and_non_finite_values_name_the_matrix() {
        let msg = MatRef::new(&[1.0f32; 5], 2, 3, "A")
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("A:") && msg.contains("2 × 3"), "{msg}");
        let data = [1.0f32, 2.0, f32::NAN, 4.0];
        let msg = MatRef::new(&data, 2, 2, "B")
            .unwrap()
            .check_finite()
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("B: non-finite value NaN at row 1, column 0"),
            "{msg}"
        );
    }
}
