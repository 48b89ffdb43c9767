//! Uncertainty on a study's numbers: percentile bootstrap intervals (of a
//! mean over runs, and of a run's similarity over its test images) and a
//! permutation test of a difference in means.
//!
//! Resamples are drawn from a seeded ChaCha8 stream ([`draw_resamples`]), so
//! a study's intervals are the same every time its tables are made. The
//! statistics take their resamples explicitly, so they can be checked against
//! numpy on the very same draws (scripts/metrics_reference.py).

use crate::linalg::{a_bt, centred_scaled};
use crate::{MatRef, MetricError, Scalar};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// The coverage of every interval the tables report.
pub const LEVEL: f64 = 0.95;

/// The `q`-th percentile (0–100) of sorted values, interpolating linearly
/// between order statistics (numpy's default).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q / 100.0;
    let below = h.floor() as usize;
    match sorted.get(below + 1) {
        Some(next) => sorted[below] + (h - below as f64) * (next - sorted[below]),
        None => sorted[below],
    }
}

/// The central `level` interval of a statistic's values over resamples.
pub fn percentile_interval(mut values: Vec<f64>, level: f64) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0 * 100.0;
    (percentile(&values, tail), percentile(&values, 100.0 - tail))
}

/// `resamples` draws of `n` indices in 0..n with replacement.
pub fn draw_resamples(n: usize, resamples: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..resamples)
        .map(|_| (0..n).map(|_| rng.random_range(0..n)).collect())
        .collect()
}

/// `resamples` random orders of 0..n (permutations, for a chance level).
pub fn draw_permutations(n: usize, resamples: usize, seed: u64) -> Vec<Vec<usize>> {
    use rand::seq::SliceRandom;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..resamples)
        .map(|_| {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng);
            order
        })
        .collect()
}

/// The bootstrap interval of the mean of `values` (one per run) over the
/// given resamples of their indices.
pub fn mean_interval(values: &[f64], resamples: &[Vec<usize>], level: f64) -> (f64, f64) {
    let means = resamples
        .iter()
        .map(|r| r.iter().map(|&i| values[i]).sum::<f64>() / r.len() as f64)
        .collect();
    percentile_interval(means, level)
}

/// Biased linear CKA between two representations of the same images,
/// recomputed on resamples of the images. Kept as the two Gram matrices: a
/// resample is a count per image, and centring with counts costs n² per
/// resample, without copying a matrix.
pub struct CkaBootstrap {
    n: usize,
    /// K = X Xᵀ and L = Y Yᵀ of the column-centred features (centring first
    /// changes no CKA and keeps the sums small), in panels of [`LANES`] rows
    /// (the last padded with zeros): Kᵢⱼ is at [`CkaBootstrap::at`], so a
    /// panel is one stretch of memory, its columns one after the other, each
    /// column's LANES values together.
    k_panels: Vec<f64>,
    l_panels: Vec<f64>,
}

/// Rows whose sums one pass keeps in SIMD lanes: each lane is its row's
/// own sum, added in the same order as a loop over the row alone, so the
/// lanes change no bit of the result.
const LANES: usize = 8;

/// Resamples that take their turn on a panel of LANES rows while it is in
/// cache (2 × 8 × 8 bytes per image): the Gram matrices are read from
/// memory once per this many resamples, not once each. (Stored by column
/// instead of in panels, a column's LANES values a page apart from the
/// next's, the default study's tables stage took half as long again as
/// with the plain loop.)
const RESAMPLES_PER_PASS: usize = 16;

/// The per-row sums over a resample's images j of one row i:
/// Σⱼ wⱼKᵢⱼ, Σⱼ wⱼLᵢⱼ, Σⱼ wⱼKᵢⱼLᵢⱼ, Σⱼ wⱼKᵢⱼ², Σⱼ wⱼLᵢⱼ².
type RowSums = [[f64; LANES]; 5];

impl CkaBootstrap {
    pub fn new<T: Scalar>(x: MatRef<'_, T>, y: MatRef<'_, T>) -> Result<CkaBootstrap, MetricError> {
        if x.rows != y.rows {
            return Err(MetricError::input(
                y.name,
                format!("{} images, {} has {}", y.rows, x.name, x.rows),
            ));
        }
        x.check_finite()?;
        y.check_finite()?;
        let n = x.rows;
        let panels = |m: MatRef<'_, T>| {
            let centred: Vec<f64> = centred_scaled(m);
            let gram = a_bt(&centred, &centred, n, n, m.cols);
            let mut out = vec![0.0; n.div_ceil(LANES) * LANES * n];
            for (i, row) in gram.chunks_exact(n).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    out[Self::at(n, i, j)] = v;
                }
            }
            out
        };
        Ok(CkaBootstrap {
            n,
            k_panels: panels(x),
            l_panels: panels(y),
        })
    }

    /// Where the value of row i, column j of an n × n Gram matrix sits in
    /// its panels.
    fn at(n: usize, i: usize, j: usize) -> usize {
        (i / LANES * n + j) * LANES + i % LANES
    }

    /// CKA with image i counted `counts[i]` times (all ones: the plain CKA).
    pub fn cka(&self, counts: &[f64]) -> f64 {
        self.ckas(&[counts.to_vec()])[0]
    }

    /// The bootstrap interval of the CKA over the given resamples of the images.
    pub fn interval(&self, resamples: &[Vec<usize>], level: f64) -> (f64, f64) {
        let values = resamples
            .par_chunks(RESAMPLES_PER_PASS)
            .flat_map_iter(|chunk| {
                let counts: Vec<Vec<f64>> = chunk
                    .iter()
                    .map(|r| {
                        let mut counts = vec![0.0; self.n];
                        for &i in r {
                            counts[i] += 1.0;
                        }
                        counts
                    })
                    .collect();
                self.ckas(&counts)
            })
            .collect();
        percentile_interval(values, level)
    }

    /// The CKA of each resample (a count per image). HSIC of the replicated
    /// sample, tr(K H L H), is
    /// Σᵢⱼ wᵢwⱼKᵢⱼLᵢⱼ − (2/m) Σᵢ wᵢaᵢbᵢ + (1/m²)(Σᵢ wᵢaᵢ)(Σᵢ wᵢbᵢ)
    /// with a = K w, b = L w and m = Σ w; the sums run over the images a
    /// resample uses, in image order.
    fn ckas(&self, counts: &[Vec<f64>]) -> Vec<f64> {
        let used: Vec<Vec<usize>> = counts
            .iter()
            .map(|w| (0..self.n).filter(|&i| w[i] > 0.0).collect())
            .collect();
        let (mut a, mut b) = (
            vec![vec![0.0; self.n]; counts.len()],
            vec![vec![0.0; self.n]; counts.len()],
        );
        // Per resample: Σᵢ wᵢ(row sums 2, 3, 4), i.e. wᵀ(K∘L)w, wᵀ(K∘K)w, wᵀ(L∘L)w.
        let mut quadratic = vec![[0.0f64; 3]; counts.len()];
        for i0 in (0..self.n).step_by(LANES) {
            let rows = i0..(i0 + LANES).min(self.n);
            for (r, w) in counts.iter().enumerate() {
                if rows.clone().all(|i| w[i] == 0.0) {
                    continue;
                }
                let s = self.row_sums(i0, &used[r], w);
                for (lane, i) in rows.clone().enumerate().filter(|&(_, i)| w[i] > 0.0) {
                    (a[r][i], b[r][i]) = (s[0][lane], s[1][lane]);
                    for (q, sum) in quadratic[r].iter_mut().zip(&s[2..]) {
                        *q += w[i] * sum[lane];
                    }
                }
            }
        }
        counts
            .iter()
            .enumerate()
            .map(|(r, w)| {
                let used = &used[r];
                let m: f64 = used.iter().map(|&i| w[i]).sum();
                let centre = |s: f64, p: &[f64], q: &[f64]| {
                    let (mut cross, mut sp, mut sq) = (0.0, 0.0, 0.0);
                    for &i in used {
                        cross += w[i] * p[i] * q[i];
                        sp += w[i] * p[i];
                        sq += w[i] * q[i];
                    }
                    s - 2.0 / m * cross + sp * sq / (m * m)
                };
                let [kl, kk, ll] = quadratic[r];
                let (a, b) = (&a[r], &b[r]);
                let (hkl, hkk, hll) = (centre(kl, a, b), centre(kk, a, a), centre(ll, b, b));
                hkl / (hkk * hll).sqrt()
            })
            .collect()
    }

    /// [`RowSums`] of rows i0..i0 + LANES over the images `used` (ascending)
    /// with weights `w`, on AVX2 where the CPU has it (no FMA: Rust never
    /// fuses a product and a sum, so the bits are the baseline build's).
    fn row_sums(&self, i0: usize, used: &[usize], w: &[f64]) -> RowSums {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.row_sums_avx2(i0, used, w) };
        }
        self.row_sums_any(i0, used, w)
    }

    /// [`CkaBootstrap::row_sums_any`] in AVX2 registers, two of 4 lanes
    /// per sum, the same products and sums lane by lane. (Left to the
    /// compiler, the loop kept most sums on the stack, in scalar
    /// operations, and gained nothing on the plain loop.)
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn row_sums_avx2(&self, i0: usize, used: &[usize], w: &[f64]) -> RowSums {
        use std::arch::x86_64::{
            __m256d, _mm256_add_pd, _mm256_loadu_pd, _mm256_mul_pd, _mm256_set1_pd,
            _mm256_setzero_pd, _mm256_storeu_pd,
        };
        const HALF: usize = LANES / 2;
        let mut s: [[__m256d; 2]; 5] = [[_mm256_setzero_pd(); 2]; 5];
        for &j in used {
            let at = Self::at(self.n, i0, j);
            let (k, l) = (
                &self.k_panels[at..at + LANES],
                &self.l_panels[at..at + LANES],
            );
            let wj = _mm256_set1_pd(w[j]);
            for h in 0..2 {
                // SAFETY: k and l hold LANES = 2 × HALF values.
                let (k, l) = unsafe {
                    (
                        _mm256_loadu_pd(k[h * HALF..].as_ptr()),
                        _mm256_loadu_pd(l[h * HALF..].as_ptr()),
                    )
                };
                let (wk, wl) = (_mm256_mul_pd(wj, k), _mm256_mul_pd(wj, l));
                s[0][h] = _mm256_add_pd(s[0][h], wk);
                s[1][h] = _mm256_add_pd(s[1][h], wl);
                s[2][h] = _mm256_add_pd(s[2][h], _mm256_mul_pd(wk, l));
                s[3][h] = _mm256_add_pd(s[3][h], _mm256_mul_pd(wk, k));
                s[4][h] = _mm256_add_pd(s[4][h], _mm256_mul_pd(wl, l));
            }
        }
        let mut out = [[0.0; LANES]; 5];
        for (sums, registers) in out.iter_mut().zip(&s) {
            for (h, &r) in registers.iter().enumerate() {
                // SAFETY: each half of `sums` holds HALF values.
                unsafe { _mm256_storeu_pd(sums[h * HALF..].as_mut_ptr(), r) };
            }
        }
        out
    }

    fn row_sums_any(&self, i0: usize, used: &[usize], w: &[f64]) -> RowSums {
        let mut s = [[0.0; LANES]; 5];
        let column = |m: &[f64], j: usize| -> [f64; LANES] {
            m[Self::at(self.n, i0, j)..][..LANES]
                .try_into()
                .expect("LANES values")
        };
        for &j in used {
            let (wj, k, l) = (w[j], column(&self.k_panels, j), column(&self.l_panels, j));
            for lane in 0..LANES {
                let (wk, wl) = (wj * k[lane], wj * l[lane]);
                s[0][lane] += wk;
                s[1][lane] += wl;
                s[2][lane] += wk * l[lane];
                s[3][lane] += wk * k[lane];
                s[4][lane] += wl * l[lane];
            }
        }
        s
    }
}

/// A one-sided permutation test of "group a's mean is greater than group b's".
#[derive(Debug, Clone, PartialEq)]
pub struct PermutationTest {
    /// mean(a) − mean(b).
    pub difference: f64,
    pub p_value: f64,
    /// Every split of the pooled values into groups of a's and b's sizes was
    /// counted (otherwise `permutations` random ones).
    pub exact: bool,
    pub permutations: usize,
}

/// Splits of n values into groups of k and n − k: C(n, k), saturating.
fn splits(n: usize, k: usize) -> usize {
    (0..k.min(n - k)).fold(1usize, |c, i| c.saturating_mul(n - i) / (i + 1))
}

/// The test of mean(a) − mean(b): exact (every split counted, p = share of
/// splits at least as large) when there are at most `resamples` splits,
/// otherwise on `resamples` random permutations drawn from `seed`, with
/// p = (1 + count) / (1 + resamples). A split "at least as large" allows for
/// rounding: it counts when within 100 ε of the observed difference (as
/// scipy.stats.permutation_test does).
pub fn permutation_test(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    seed: u64,
) -> Result<PermutationTest, MetricError> {
    if a.is_empty() || b.is_empty() {
        return Err(MetricError::input(
            if a.is_empty() { "a" } else { "b" },
            "a permutation test needs a value in each group",
        ));
    }
    if let Some(v) = a.iter().chain(b).find(|v| !v.is_finite()) {
        return Err(MetricError::input("values", format!("{v} is not finite")));
    }
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let (n, k) = (pooled.len(), a.len());
    let total: f64 = pooled.iter().sum();
    // mean(group) − mean(rest) from the group's sum.
    let difference_of = |sum_a: f64| sum_a / k as f64 - (total - sum_a) / (n - k) as f64;
    let observed = difference_of(a.iter().sum());
    let tolerance = 100.0 * f64::EPSILON * observed.abs();
    let at_least = |d: f64| d >= observed - tolerance;
    let count = splits(n, k);
    if count <= resamples {
        let mut hits = 0usize;
        let mut chosen: Vec<usize> = (0..k).collect();
        loop {
            hits += usize::from(at_least(difference_of(
                chosen.iter().map(|&i| pooled[i]).sum(),
            )));
            // The next k-combination in lexicographic order.
            let Some(i) = (0..k).rev().find(|&i| chosen[i] < n - k + i) else {
                break;
            };
            chosen[i] += 1;
            for j in i + 1..k {
                chosen[j] = chosen[j - 1] + 1;
            }
        }
        return Ok(PermutationTest {
            difference: observed,
            p_value: hits as f64 / count as f64,
            exact: true,
            permutations: count,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut hits = 0usize;
    for _ in 0..resamples {
        order.shuffle(&mut rng);
        hits += usize::from(at_least(difference_of(
            order[..k].iter().map(|&i| pooled[i]).sum(),
        )));
    }
    let p_value = (1 + hits) as f64 / (1 + resamples) as f64;
    Ok(PermutationTest {
        difference: observed,
        p_value,
        exact: false,
        permutations: resamples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 8.0);
        assert!((percentile(&v, 50.0) - 3.0).abs() < 1e-12);
        assert!((percentile(&v, 2.5) - 1.075).abs() < 1e-12);
        assert_eq!(percentile(&[5.0], 97.5), 5.0);
    }

    /// The bootstrap's CKA as a plain loop over the images a resample uses
    /// (the form before [`LANES`]): the lanes must give its bits.
    fn plain_loop_cka(k: &[f64], l: &[f64], n: usize, counts: &[f64]) -> f64 {
        let used: Vec<usize> = (0..n).filter(|&i| counts[i] > 0.0).collect();
        let m: f64 = used.iter().map(|&i| counts[i]).sum();
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        let (mut kl, mut kk, mut ll) = (0.0, 0.0, 0.0);
        for &i in &used {
            let mut s = [0.0f64; 5];
            for &j in &used {
                let (w, kv, lv) = (counts[j], k[i * n + j], l[i * n + j]);
                s[0] += w * kv;
                s[1] += w * lv;
                s[2] += w * kv * lv;
                s[3] += w * kv * kv;
                s[4] += w * lv * lv;
            }
            (a[i], b[i]) = (s[0], s[1]);
            kl += counts[i] * s[2];
            kk += counts[i] * s[3];
            ll += counts[i] * s[4];
        }
        let centre = |s: f64, p: &[f64], q: &[f64]| {
            let (mut cross, mut sp, mut sq) = (0.0, 0.0, 0.0);
            for &i in &used {
                cross += counts[i] * p[i] * q[i];
                sp += counts[i] * p[i];
                sq += counts[i] * q[i];
            }
            s - 2.0 / m * cross + sp * sq / (m * m)
        };
        let (hkl, hkk, hll) = (centre(kl, &a, &b), centre(kk, &a, &a), centre(ll, &b, &b));
        hkl / (hkk * hll).sqrt()
    }

    /// On a size that ends in a partial block of rows, on counts with zeros
    /// (a whole block unused too) and repeats (not only powers of two, whose
    /// products are exact in any order), and through `interval`'s
    /// chunks of resamples: the plain loop's bits.
    #[test]
    fn bootstrap_lanes_give_the_plain_loops_bits() {
        let (n, d) = (37, 5);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let x: Vec<f64> = (0..n * d).map(|_| rng.random::<f64>()).collect();
        let y: Vec<f64> = x.iter().map(|v| v.sin() + rng.random::<f64>()).collect();
        let boot = CkaBootstrap::new(
            MatRef::new(&x, n, d, "x").unwrap(),
            MatRef::new(&y, n, d, "y").unwrap(),
        )
        .unwrap();
        // Kᵢⱼ at i * n + j, from the panels.
        let gram = |panels: &[f64]| -> Vec<f64> {
            (0..n * n)
                .map(|ij| panels[CkaBootstrap::at(n, ij / n, ij % n)])
                .collect()
        };
        let (k, l) = (gram(&boot.k_panels), gram(&boot.l_panels));
        let mut counts: Vec<Vec<f64>> = (0..20)
            .map(|_| (0..n).map(|_| rng.random_range(0..6) as f64).collect())
            .collect();
        counts[0][8..16].fill(0.0);
        counts.push(vec![1.0; n]);
        for (w, lanes) in counts.iter().zip(boot.ckas(&counts)) {
            assert_eq!(lanes.to_bits(), plain_loop_cka(&k, &l, n, w).to_bits());
            // The portable form too, where `ckas` took the AVX2 one.
            let used: Vec<usize> = (0..n).filter(|&i| w[i] > 0.0).collect();
            for i0 in (0..n).step_by(LANES) {
                let bits = |s: RowSums| s.map(|sum| sum.map(f64::to_bits));
                assert_eq!(
                    bits(boot.row_sums_any(i0, &used, w)),
                    bits(boot.row_sums(i0, &used, w))
                );
            }
        }
        let resamples = draw_resamples(n, 3 * RESAMPLES_PER_PASS + 5, 3);
        let plain = resamples
            .iter()
            .map(|r| {
                let mut w = vec![0.0; n];
                r.iter().for_each(|&i| w[i] += 1.0);
                plain_loop_cka(&k, &l, n, &w)
            })
            .collect();
        let (low, high) = boot.interval(&resamples, LEVEL);
        let (plain_low, plain_high) = percentile_interval(plain, LEVEL);
        assert_eq!(
            (low.to_bits(), high.to_bits()),
            (plain_low.to_bits(), plain_high.to_bits())
        );
    }

    #[test]
    fn cka_with_all_counts_one_is_the_plain_cka() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x: Vec<f64> = (0..40 * 6).map(|_| rng.random::<f64>()).collect();
        let y: Vec<f64> = x.iter().map(|v| v * 2.0 + rng.random::<f64>()).collect();
        let (xm, ym) = (
            MatRef::new(&x, 40, 6, "x").unwrap(),
            MatRef::new(&y, 40, 6, "y").unwrap(),
        );
        let boot = CkaBootstrap::new(xm, ym).unwrap();
        let plain = crate::cka::cka(xm, ym, crate::cka::CkaOptions::default()).unwrap();
        // The bootstrap's Gram matrices are f64; the plain CKA's products are
        // f32 blocks where OpenBLAS is loaded, f64 (to 1e-12 here) where not.
        let tol = if crate::blas::blas().is_some() {
            crate::cka::feature_form_agreement()
        } else {
            1e-12
        };
        assert!((boot.cka(&[1.0; 40]) - plain).abs() < tol);
        // Counting an image twice is the same as having it twice.
        let mut counts = vec![1.0; 40];
        counts[3] = 2.0;
        counts[7] = 0.0;
        let rows: Vec<usize> = (0..40).filter(|&i| i != 7).chain([3]).collect();
        let pick = |m: &[f64]| {
            rows.iter()
                .flat_map(|&i| m[i * 6..(i + 1) * 6].to_vec())
                .collect::<Vec<f64>>()
        };
        let (xr, yr) = (pick(&x), pick(&y));
        let replicated = crate::cka::cka(
            MatRef::new(&xr, 40, 6, "x").unwrap(),
            MatRef::new(&yr, 40, 6, "y").unwrap(),
            Default::default(),
        )
        .unwrap();
        assert!((boot.cka(&counts) - replicated).abs() < tol);
    }

    #[test]
    fn an_exact_test_counts_every_split() {
        // a = {3, 4} against b = {1, 2}: of the 6 splits only a itself reaches 2.
        let t = permutation_test(&[3.0, 4.0], &[1.0, 2.0], 100, 0).unwrap();
        assert!(t.exact && t.permutations == 6);
        assert!((t.p_value - 1.0 / 6.0).abs() < 1e-12 && (t.difference - 2.0).abs() < 1e-12);
        // Equal values: every split ties, p = 1.
        assert_eq!(
            permutation_test(&[0.5, 0.5], &[0.5], 100, 0)
                .unwrap()
                .p_value,
            1.0
        );
        let random = permutation_test(&[3.0, 4.0, 5.0, 6.0], &[1.0, 2.0, 0.0, 1.5], 10, 7).unwrap();
        assert!(!random.exact && random.permutations == 10 && random.p_value >= 1.0 / 11.0);
        assert!(permutation_test(&[], &[1.0], 10, 0).is_err());
    }

    #[test]
    fn a_mean_interval_holds_the_mean_and_narrows_with_more_runs() {
        let few = [0.5, 0.6, 0.55];
        let many: Vec<f64> = (0..30).map(|i| [0.5, 0.6, 0.55][i % 3]).collect();
        let (lo, hi) = mean_interval(&few, &draw_resamples(3, 2000, 0), LEVEL);
        let (lo2, hi2) = mean_interval(&many, &draw_resamples(30, 2000, 0), LEVEL);
        assert!(
            lo < 0.55 && 0.55 < hi && hi2 - lo2 < hi - lo,
            "[{lo}, {hi}] vs [{lo2}, {hi2}]"
        );
        assert_eq!(draw_resamples(5, 3, 9), draw_resamples(5, 3, 9), "seeded");
    }
}
