//! Centred Kernel Alignment (docs/SPEC.md, "Similarity measures").
//!
//! - Linear CKA, feature form ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on column-centred
//!   features, or Gram form ⟨HKH, HLH⟩ / (‖HKH‖ ‖HLH‖) with K = XXᵀ; [`cka`]
//!   picks whichever costs fewer multiply-adds (they agree to 1e-6).
//! - Debiased: the unbiased HSIC estimator (Song et al. 2012) in place of the
//!   biased one — in feature form as in Kornblith et al.'s reference code, in
//!   Gram form by U-centring (zero diagonal, means over n − 2).
//! - RBF: Gaussian kernel with σ² = frac² × median squared distance
//!   (Kornblith et al.'s `gram_rbf`, where `threshold` is `frac`).
//! - [`CkaReference`]: many comparisons against one fixed side (the
//!   pre-trained model's layer) compute that side once.
//! - [`MinibatchCka`]: Nguyen et al. (2021), streaming over batches.
//!
//! Everything runs in f64 whatever the input type.

use crate::MetricError;
use crate::linalg::{
    Feature, MatRef, Scalar, a_bt, centred_scaled, cross_norm2, feature_products_in_f32, self_norm2,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Estimator {
    /// HSIC's plug-in estimator (Kornblith et al. 2019's CKA).
    #[default]
    Biased,
    /// The unbiased HSIC estimator: near 0 for independent data at small n.
    Debiased,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Kernel {
    #[default]
    Linear,
    /// Gaussian kernel, σ = `sigma_frac` × the median pairwise distance.
    Rbf { sigma_frac: f64 },
}

impl Kernel {
    pub fn name(&self) -> &'static str {
        match self {
            Kernel::Linear => "linear",
            Kernel::Rbf { .. } => "rbf",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CkaOptions {
    pub estimator: Estimator,
    pub kernel: Kernel,
}

/// Which side of the computation CKA runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// d × d products of the features (cheap when n ≥ d).
    Feature,
    /// n × n Gram matrices (cheap when n < d; the only form for RBF).
    Gram,
}

/// How closely a linear CKA in the feature form (single pairs with n ≥ d,
/// the streamed one) follows the same CKA computed in f64 throughout:
/// within 1e-6 where OpenBLAS multiplies in f32 blocks (about 1e-8 is
/// typical; [`crate::blas`]), within 1e-10 on the pure-Rust f64 path.
/// Tests that compare such a value hold it to this.
pub fn feature_form_agreement() -> f64 {
    if crate::blas::blas().is_some() {
        1e-6
    } else {
        1e-10
    }
}

/// CKA between two representations of the same n samples.
pub fn cka<T: Scalar>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    opts: CkaOptions,
) -> Result<f64, MetricError> {
    CkaReference::new(a, opts)?.compare(b)
}

/// CKA in a chosen form (tests and benchmarks; [`cka`] chooses by cost).
pub fn cka_in_form<T: Scalar>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    opts: CkaOptions,
    form: Form,
) -> Result<f64, MetricError> {
    CkaReference::with_form(a, opts, form)?.compare(b)
}

/// One side of CKA, prepared once and compared with many others: the
/// centred features (or centred Gram matrix) and their self-similarity.
pub struct CkaReference {
    opts: CkaOptions,
    form: Form,
    n: usize,
    d: usize,
    side: Side,
}

/// What CKA keeps of one representation.
struct Side {
    /// Centred, scaled features (feature form), in the type of the products.
    features: Features,
    /// The centred Gram matrix (Gram form).
    gram: Vec<f64>,
    /// Squared row norms of the centred features (debiased feature form).
    row_norms2: Vec<f64>,
    /// The self term: HSIC(X, X) in the chosen estimator (unnormalised).
    self_hsic: f64,
}

impl CkaReference {
    /// Prepares `a`, choosing the form for comparisons with data of `a`'s width.
    pub fn new<T: Scalar>(a: MatRef<'_, T>, opts: CkaOptions) -> Result<CkaReference, MetricError> {
        let form = match opts.kernel {
            Kernel::Rbf { .. } => Form::Gram,
            // Feature form: ~n·d² per product; Gram form: ~n²·d.
            Kernel::Linear if a.rows >= a.cols => Form::Feature,
            Kernel::Linear => Form::Gram,
        };
        Self::with_form(a, opts, form)
    }

    pub fn with_form<T: Scalar>(
        a: MatRef<'_, T>,
        opts: CkaOptions,
        form: Form,
    ) -> Result<CkaReference, MetricError> {
        if let (Kernel::Rbf { .. }, Form::Feature) = (opts.kernel, form) {
            return Err(MetricError::input(
                a.name,
                "the RBF kernel has no feature form",
            ));
        }
        let side = prepare(a, opts, form)?;
        Ok(CkaReference {
            opts,
            form,
            n: a.rows,
            d: a.cols,
            side,
        })
    }

    /// CKA between the reference and `b` (same samples, in the same order).
    pub fn compare<T: Scalar>(&self, b: MatRef<'_, T>) -> Result<f64, MetricError> {
        if b.rows != self.n {
            return Err(MetricError::input(
                b.name,
                format!("{} samples, the other side has {}", b.rows, self.n),
            ));
        }
        let other = CkaReference {
            opts: self.opts,
            form: self.form,
            n: b.rows,
            d: b.cols,
            side: prepare(b, self.opts, self.form)?,
        };
        self.compare_prepared(&other, b.name)
    }

    /// CKA between two prepared sides (same samples, options and form): what
    /// a layer-by-layer matrix needs, each side prepared once.
    pub fn compare_prepared(&self, other: &CkaReference, name: &str) -> Result<f64, MetricError> {
        if other.n != self.n || other.opts != self.opts || other.form != self.form {
            return Err(MetricError::input(
                name,
                "prepared with other samples, options or form",
            ));
        }
        let cross = match self.form {
            // X against X: the cross term is the self term. Computed, it
            // would come from OpenBLAS's general product where the self
            // term came from its symmetric one, in f32 blocks, and on some
            // CPUs the two round apart (1 − 3e-8 on an AMD EPYC with AVX2):
            // the spec asks self-similarity to be exactly 1, and an epoch
            // whose features did not move (epoch 0, LP-FT's probe epoch)
            // to say so. Comparing costs n·d against the product's n·d².
            Form::Feature if self.d == other.d && self.side.features == other.side.features => {
                self.side.self_hsic
            }
            Form::Feature => {
                let xty =
                    self.side
                        .features
                        .cross_norm2(&other.side.features, self.n, self.d, other.d);
                match self.opts.estimator {
                    Estimator::Biased => xty,
                    Estimator::Debiased => {
                        debiased_feature_term(xty, &self.side, &other.side, self.n)
                    }
                }
            }
            Form::Gram => dot(&self.side.gram, &other.side.gram),
        };
        let value = cross / (self.side.self_hsic * other.side.self_hsic).sqrt();
        if !value.is_finite() {
            return Err(MetricError::input(
                name,
                "CKA is undefined for these features",
            ));
        }
        Ok(value)
    }
}

/// CKA of every layer of one model against every layer of another (rows: `a`,
/// columns: `b`), each layer prepared once. The form is chosen for the whole
/// matrix: Gram matrices cost n²·d once per layer, then n² per pair, which
/// wins over d₁·d₂·n per pair as soon as layers are compared many times.
pub fn cka_matrix<T: Scalar>(
    a: &[MatRef<'_, T>],
    b: &[MatRef<'_, T>],
    opts: CkaOptions,
) -> Result<Vec<Vec<f64>>, MetricError> {
    let Some(first) = a.first().or(b.first()) else {
        return Ok(Vec::new());
    };
    let n = first.rows as f64;
    let form = match opts.kernel {
        Kernel::Rbf { .. } => Form::Gram,
        Kernel::Linear => {
            let width = |m: &[MatRef<'_, T>]| m.iter().map(|x| x.cols as f64).sum::<f64>();
            let (wa, wb) = (width(a), width(b));
            let self_terms: f64 = a.iter().chain(b).map(|x| (x.cols as f64).powi(2)).sum();
            let feature = n * (wa * wb + self_terms / 2.0);
            let gram = n * n * (wa + wb) / 2.0 + n * n * (a.len() * b.len()) as f64;
            if feature <= gram {
                Form::Feature
            } else {
                Form::Gram
            }
        }
    };
    let prepare_all = |ms: &[MatRef<'_, T>]| {
        ms.iter()
            .map(|m| CkaReference::with_form(*m, opts, form))
            .collect::<Result<Vec<_>, _>>()
    };
    let (ra, rb) = (prepare_all(a)?, prepare_all(b)?);
    ra.iter()
        .map(|x| {
            b.iter()
                .zip(&rb)
                .map(|(m, y)| x.compare_prepared(y, m.name))
                .collect()
        })
        .collect()
}

fn prepare<T: Scalar>(m: MatRef<'_, T>, opts: CkaOptions, form: Form) -> Result<Side, MetricError> {
    m.check_finite()?;
    let n = m.rows;
    let needed = match opts.estimator {
        Estimator::Biased => 2,
        Estimator::Debiased => 4,
    };
    if n < needed {
        return Err(MetricError::input(
            m.name,
            format!(
                "{n} samples; the {:?} estimator needs at least {needed}",
                opts.estimator
            ),
        ));
    }
    if m.cols == 0 {
        return Err(MetricError::input(m.name, format!("{n} × 0: no features")));
    }
    let side = match form {
        Form::Feature if feature_products_in_f32() => {
            feature_side(centred_scaled::<T, f32>(m), Features::F32, n, m.cols, opts)
        }
        Form::Feature => feature_side(centred_scaled::<T, f64>(m), Features::F64, n, m.cols, opts),
        Form::Gram => {
            let x: Vec<f64> = centred_scaled(m);
            let mut gram = a_bt(&x, &x, n, n, m.cols);
            if let Kernel::Rbf { sigma_frac } = opts.kernel {
                rbf_in_place(&mut gram, n, sigma_frac, m.name)?;
            }
            match opts.estimator {
                Estimator::Biased => centre_gram(&mut gram, n),
                Estimator::Debiased => u_centre_gram(&mut gram, n),
            }
            let self_hsic = dot(&gram, &gram);
            Side {
                features: Features::None,
                gram,
                row_norms2: Vec::new(),
                self_hsic,
            }
        }
    };
    if side.self_hsic.is_nan() || side.self_hsic <= 0.0 {
        return Err(MetricError::input(
            m.name,
            "features have zero variance (or no positive self-similarity): CKA is undefined",
        ));
    }
    Ok(side)
}

/// A side's centred, scaled features (`x`, n × d) and their self term.
fn feature_side<F: Feature>(
    x: Vec<F>,
    wrap: fn(Vec<F>) -> Features,
    n: usize,
    d: usize,
    opts: CkaOptions,
) -> Side {
    let row_norms2: Vec<f64> = x
        .chunks_exact(d)
        .map(|r| r.iter().map(|v| v.to_f64() * v.to_f64()).sum())
        .collect();
    let xtx = self_norm2(&x, n, d);
    let self_hsic = match opts.estimator {
        Estimator::Biased => xtx,
        Estimator::Debiased => {
            let s = Side {
                features: Features::None,
                gram: Vec::new(),
                row_norms2: row_norms2.clone(),
                self_hsic: 0.0,
            };
            debiased_feature_term(xtx, &s, &s, n)
        }
    };
    Side {
        features: wrap(x),
        gram: Vec::new(),
        row_norms2,
        self_hsic,
    }
}

/// Feature-form values in the type the products take (`linalg::Feature`).
#[derive(PartialEq)]
enum Features {
    /// A Gram-form side.
    None,
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Features {
    /// ‖AᵀB‖²_F of the two sides' features (n × d1 and n × d2).
    fn cross_norm2(&self, other: &Features, n: usize, d1: usize, d2: usize) -> f64 {
        match (self, other) {
            (Features::F32(a), Features::F32(b)) => cross_norm2(a, b, n, d1, d2),
            (Features::F64(a), Features::F64(b)) => cross_norm2(a, b, n, d1, d2),
            _ => unreachable!("both sides are prepared in the feature form with the same products"),
        }
    }
}

/// Kornblith et al.'s `_debiased_dot_product_similarity_helper`: the unbiased
/// HSIC (times n(n − 3)) from ‖YᵀX‖²_F and the centred rows' squared norms.
fn debiased_feature_term(xty: f64, x: &Side, y: &Side, n: usize) -> f64 {
    let n = n as f64;
    let sx: f64 = x.row_norms2.iter().sum();
    let sy: f64 = y.row_norms2.iter().sum();
    let rows: f64 = x
        .row_norms2
        .iter()
        .zip(&y.row_norms2)
        .map(|(a, b)| a * b)
        .sum();
    xty - n / (n - 2.0) * rows + sx * sy / ((n - 1.0) * (n - 2.0))
}

/// Squared distances from a linear Gram matrix, then exp(−d² / (2 frac² median d²)).
fn rbf_in_place(
    gram: &mut [f64],
    n: usize,
    sigma_frac: f64,
    name: &str,
) -> Result<(), MetricError> {
    let diag: Vec<f64> = (0..n).map(|i| gram[i * n + i]).collect();
    for i in 0..n {
        for j in 0..n {
            gram[i * n + j] = (diag[i] + diag[j] - 2.0 * gram[i * n + j]).max(0.0);
        }
    }
    let mut sorted = gram.to_vec();
    let mid = sorted.len() / 2;
    // np.median over all n² entries (diagonal zeros included), as the reference.
    let median = if sorted.len() % 2 == 1 {
        *sorted.select_nth_unstable_by(mid, f64::total_cmp).1
    } else {
        let hi = *sorted.select_nth_unstable_by(mid, f64::total_cmp).1;
        let lo = sorted[..mid]
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (lo + hi) / 2.0
    };
    if median.is_nan() || median <= 0.0 || sigma_frac.is_nan() || sigma_frac <= 0.0 {
        return Err(MetricError::input(
            name,
            "median pairwise distance is 0 (or sigma fraction ≤ 0): RBF bandwidth undefined",
        ));
    }
    let scale = 1.0 / (2.0 * sigma_frac * sigma_frac * median);
    gram.iter_mut().for_each(|v| *v = (-*v * scale).exp());
    Ok(())
}

/// H K H with H = I − 11ᵀ/n.
fn centre_gram(gram: &mut [f64], n: usize) {
    let means: Vec<f64> = gram
        .chunks_exact(n)
        .map(|r| r.iter().sum::<f64>() / n as f64)
        .collect();
    let total = means.iter().sum::<f64>() / n as f64;
    for i in 0..n {
        for j in 0..n {
            gram[i * n + j] += total - means[i] - means[j];
        }
    }
}

/// U-centring (Kornblith et al.'s `center_gram(unbiased=True)`): ⟨K̃, L̃⟩ is
/// n(n − 3) times the unbiased HSIC of Song et al. (2012).
fn u_centre_gram(gram: &mut [f64], n: usize) {
    for i in 0..n {
        gram[i * n + i] = 0.0;
    }
    let mut means: Vec<f64> = gram
        .chunks_exact(n)
        .map(|r| r.iter().sum::<f64>() / (n as f64 - 2.0))
        .collect();
    let shift = means.iter().sum::<f64>() / (2.0 * (n as f64 - 1.0));
    means.iter_mut().for_each(|m| *m -= shift);
    for i in 0..n {
        for j in 0..n {
            gram[i * n + j] -= means[i] + means[j];
        }
        gram[i * n + i] = 0.0;
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minibatch CKA (Nguyen et al. 2021): the mean over batches of the unbiased
/// HSIC of the two sides, over the square root of the product of the batch
/// means of the self-HSICs. Linear kernel; batches arrive one at a time.
#[derive(Debug, Clone, Default)]
pub struct MinibatchCka {
    sum_xy: f64,
    sum_xx: f64,
    sum_yy: f64,
    batches: usize,
}

impl MinibatchCka {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one batch: the same samples seen by both sides (at least 4).
    pub fn update<T: Scalar>(
        &mut self,
        x: MatRef<'_, T>,
        y: MatRef<'_, T>,
    ) -> Result<(), MetricError> {
        if x.rows != y.rows {
            return Err(MetricError::input(
                y.name,
                format!("batch of {} samples, the other side has {}", y.rows, x.rows),
            ));
        }
        let n = x.rows;
        if n < 4 {
            return Err(MetricError::input(
                x.name,
                format!("batch of {n} samples; the unbiased HSIC needs at least 4"),
            ));
        }
        let gram = |m: MatRef<'_, T>| -> Result<Vec<f64>, MetricError> {
            m.check_finite()?;
            let v: Vec<f64> = m.data.iter().map(|v| v.to_f64()).collect();
            let mut k = a_bt(&v, &v, n, n, m.cols);
            u_centre_gram(&mut k, n);
            Ok(k)
        };
        let (k, l) = (gram(x)?, gram(y)?);
        let scale = 1.0 / (n as f64 * (n as f64 - 3.0));
        self.sum_xy += dot(&k, &l) * scale;
        self.sum_xx += dot(&k, &k) * scale;
        self.sum_yy += dot(&l, &l) * scale;
        self.batches += 1;
        Ok(())
    }

    /// The CKA so far; an error naming `layer` when it is undefined (no batch,
    /// or a non-positive self-HSIC mean) — never NaN.
    pub fn value(&self, layer: &str) -> Result<f64, MetricError> {
        if self.batches == 0 {
            return Err(MetricError::input(layer, "minibatch CKA over no batches"));
        }
        let denominator = self.sum_xx * self.sum_yy;
        if !(self.sum_xx > 0.0 && self.sum_yy > 0.0 && denominator.is_finite()) {
            return Err(MetricError::input(
                layer,
                format!(
                    "minibatch CKA undefined: mean self-HSIC {:.3e} and {:.3e} must be positive",
                    self.sum_xx, self.sum_yy
                ),
            ));
        }
        Ok(self.sum_xy / denominator.sqrt())
    }
}
