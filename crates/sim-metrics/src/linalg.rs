//! Row-major matrices and the few products the measures need, on the `gemm`
//! crate's kernels (the ones burn's Flex backend uses), parallel with rayon.

use crate::MetricError;
use num_traits::{One, Zero};

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
    pub fn new(data: &'a [T], rows: usize, cols: usize, name: &'a str) -> Result<Self, MetricError> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(MetricError::input(name, format!("{} values do not fill {rows} × {cols}", data.len())));
        }
        Ok(MatRef { data, rows, cols, name })
    }

    /// Rows `start..end` as a matrix of their own (a minibatch).
    pub fn rows_range(&self, start: usize, end: usize) -> MatRef<'a, T> {
        MatRef { data: &self.data[start * self.cols..end * self.cols], rows: end - start, cols: self.cols, name: self.name }
    }

    /// Fails on NaN or infinite values, naming the matrix and the first position.
    pub fn check_finite(&self) -> Result<(), MetricError> {
        match self.data.iter().position(|v| !v.to_f64().is_finite()) {
            None => Ok(()),
            Some(i) => Err(MetricError::input(
                self.name,
                format!("non-finite value {} at row {}, column {}", self.data[i].to_f64(), i / self.cols, i % self.cols),
            )),
        }
    }
}

/// Column-centred f64 copy of a matrix.
pub(crate) fn centred<T: Scalar>(m: MatRef<'_, T>) -> Vec<f64> {
    let (n, d) = (m.rows, m.cols);
    let mut out: Vec<f64> = m.data.iter().map(|v| v.to_f64()).collect();
    let mut means = vec![0.0; d];
    for row in out.chunks_exact(d) {
        for (mean, v) in means.iter_mut().zip(row) {
            *mean += v;
        }
    }
    means.iter_mut().for_each(|v| *v /= n as f64);
    for row in out.chunks_exact_mut(d) {
        for (v, mean) in row.iter_mut().zip(&means) {
            *v -= mean;
        }
    }
    out
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
pub(crate) fn at_b(a: &[f64], b: &[f64], n: usize, d1: usize, d2: usize) -> Vec<f64> {
    let mut out = vec![0.0; d1 * d2];
    gemm_with(&mut out, false, d1, d2, n, a, (1, d1), b, (d2, 1));
    out
}

/// `dst += Aᵀ B` (d1 × d2) for row-major A (n × d1) and B (n × d2): a sum
/// over blocks of rows.
pub(crate) fn add_at_b(dst: &mut [f64], a: &[f64], b: &[f64], n: usize, d1: usize, d2: usize) {
    gemm_with(dst, true, d1, d2, n, a, (1, d1), b, (d2, 1));
}

/// `A Bᵀ` (n1 × n2) for row-major A (n1 × d) and B (n2 × d).
pub(crate) fn a_bt<T: 'static + Copy + Zero + One>(a: &[T], b: &[T], n1: usize, n2: usize, d: usize) -> Vec<T> {
    let mut out = vec![T::zero(); n1 * n2];
    gemm_with(&mut out, false, n1, n2, d, a, (d, 1), b, (1, d));
    out
}

/// ‖Aᵀ B‖²_F without keeping the product.
pub(crate) fn cross_norm2(a: &[f64], b: &[f64], n: usize, d1: usize, d2: usize) -> f64 {
    at_b(a, b, n, d1, d2).iter().map(|v| v * v).sum()
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
            gemm_with(&mut block, false, wi, wj, n, &a[i0..], (1, d), &a[j0..], (d, 1));
            each(i0, j0, &block);
        }
    }
}

/// How often entry (i, j) of a symmetric d × d matrix kept as its upper
/// blocks ([`add_ata_upper`]) counts in a sum over the whole matrix: 1 in a
/// diagonal block, 2 above it (for its mirror image), 0 below (not kept).
pub(crate) fn upper_block_weight(i: usize, j: usize) -> f64 {
    match (i / SYM_BLOCK).cmp(&(j / SYM_BLOCK)) {
        std::cmp::Ordering::Equal => 1.0,
        std::cmp::Ordering::Less => 2.0,
        std::cmp::Ordering::Greater => 0.0,
    }
}

/// ‖Aᵀ A‖²_F from the upper blocks alone.
pub(crate) fn self_norm2(a: &[f64], n: usize, d: usize) -> f64 {
    let mut total = 0.0;
    upper_blocks_of_ata(a, n, d, |i0, j0, block| {
        let s: f64 = block.iter().map(|v| v * v).sum();
        total += if i0 == j0 { s } else { 2.0 * s };
    });
    total
}

/// `dst += AᵀA` (d × d row-major) in the blocks on and above the diagonal
/// only; entries below them are left as they are (read them through
/// [`upper_block_weight`]).
pub(crate) fn add_ata_upper(dst: &mut [f64], a: &[f64], n: usize, d: usize) {
    upper_blocks_of_ata(a, n, d, |i0, j0, block| {
        let wj = SYM_BLOCK.min(d - j0);
        for (r, row) in block.chunks_exact(wj).enumerate() {
            let at = (i0 + r) * d + j0;
            dst[at..at + wj].iter_mut().zip(row).for_each(|(t, v)| *t += v);
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
        (0..len).map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f64) / 500.0 - 1.0).collect()
    }

    #[test]
    fn products_match_naive_loops() {
        let (n, d1, d2) = (37, 5, 400);
        let (a, b) = (values(n * d1, 1), values(n * d2, 2));
        let want = naive_at_b(&a, &b, n, d1, d2);
        for (x, y) in at_b(&a, &b, n, d1, d2).iter().zip(&want) {
            assert!((x - y).abs() < 1e-9);
        }
        let c = values(n * d2, 3);
        let full = naive_at_b(&c, &c, n, d2, d2);
        let self_want: f64 = full.iter().map(|v| v * v).sum();
        assert!((self_norm2(&c, n, d2) / self_want - 1.0).abs() < 1e-12);
        // Upper blocks, added twice: 2AᵀA there, and the weights give the whole.
        let mut upper = vec![0.0; d2 * d2];
        add_ata_upper(&mut upper, &c, n, d2);
        add_ata_upper(&mut upper, &c, n, d2);
        let mut weighted = 0.0;
        for i in 0..d2 {
            for j in 0..d2 {
                let (w, got) = (upper_block_weight(i, j), upper[i * d2 + j]);
                if w > 0.0 {
                    assert!((got - 2.0 * full[i * d2 + j]).abs() < 1e-9, "({i}, {j})");
                } else {
                    assert_eq!(got, 0.0, "({i}, {j}) is below the blocks");
                }
                weighted += w * (got / 2.0).powi(2);
            }
        }
        assert!((weighted / self_want - 1.0).abs() < 1e-12);
        // A Bᵀ: (n1 × d)(d × n2)
        let (n1, n2, d) = (4, 3, 6);
        let (p, q) = (values(n1 * d, 4), values(n2 * d, 5));
        let abt = a_bt(&p, &q, n1, n2, d);
        for i in 0..n1 {
            for j in 0..n2 {
                let dot: f64 = (0..d).map(|k| p[i * d + k] * q[j * d + k]).sum();
                assert!((abt[i * n2 + j] - dot).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn shape_mismatch_and_non_finite_values_name_the_matrix() {
        let msg = MatRef::new(&[1.0f32; 5], 2, 3, "A").unwrap_err().to_string();
        assert!(msg.starts_with("A:") && msg.contains("2 × 3"), "{msg}");
        let data = [1.0f32, 2.0, f32::NAN, 4.0];
        let msg = MatRef::new(&data, 2, 2, "B").unwrap().check_finite().unwrap_err().to_string();
        assert!(msg.contains("B: non-finite value NaN at row 1, column 0"), "{msg}");
    }
}
