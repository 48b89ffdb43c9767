//! Similarity measures besides CKA, and the chance level of every measure
//! (docs/SPEC.md, "Similarity measures").
//!
//! Each measure prepares one side once ([`Prepared`]: a subspace, an RDM,
//! neighbour lists), so a study compares the pre-trained model's side with
//! many fine-tuned ones, and the chance level permutes a prepared side's
//! samples instead of recomputing it:
//!
//! - [`cca`]: SVCCA and PWCCA through one SVD of each side;
//! - [`procrustes`]: the angular orthogonal-Procrustes distance;
//! - [`rsa`]: Spearman correlation of correlation-distance RDMs;
//! - [`neighbours`]: mutual k-NN alignment and CKNNA.
//!
//! Linear CKA (biased and debiased) comes from [`crate::cka`]. Everything
//! runs in f64 (faer's decompositions and products) whatever the input type.

pub mod cca;
pub mod neighbours;
pub mod procrustes;
pub mod rsa;

use crate::MetricError;
use crate::cka::{CkaOptions, CkaReference, Estimator, Kernel};
use crate::linalg::{MatRef, Scalar};
use crate::stats::percentile;
pub use sim_study::config::{Measure, SimilarityConfig};

/// The parameters of the measures that have any.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeasureOptions {
    /// SVCCA: the share of each side's variance its kept directions explain.
    pub svcca_variance: f64,
    /// RSA: at most this many samples, evenly spaced in their order.
    pub rsa_max_samples: usize,
    /// Mutual k-NN and CKNNA: neighbours per sample.
    pub alignment_k: usize,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        MeasureOptions::from(&SimilarityConfig::default())
    }
}

impl From<&SimilarityConfig> for MeasureOptions {
    fn from(c: &SimilarityConfig) -> Self {
        MeasureOptions {
            svcca_variance: c.svcca_variance,
            rsa_max_samples: c.rsa_max_samples,
            alignment_k: c.alignment_k,
        }
    }
}

/// One side of a measure, prepared once for many comparisons.
pub struct Prepared {
    measure: Measure,
    options: MeasureOptions,
    rows: usize,
    name: String,
    side: Side,
}

enum Side {
    /// The features themselves (to permute) and CKA's prepared reference.
    Cka {
        features: Vec<f64>,
        cols: usize,
        reference: CkaReference,
    },
    /// SVCCA keeps its truncated subspace, PWCCA the whole one.
    Subspace(cca::Subspace),
    Procrustes(procrustes::Shape),
    Rsa(rsa::Rdm),
    Neighbours(neighbours::Neighbours),
}

impl Prepared {
    /// Prepares `m` (samples × features) for `measure`.
    pub fn new<T: Scalar>(
        measure: Measure,
        m: MatRef<'_, T>,
        opts: MeasureOptions,
    ) -> Result<Prepared, MetricError> {
        m.check_finite()?;
        if m.rows < 2 || m.cols == 0 {
            return Err(MetricError::input(
                m.name,
                format!(
                    "{} × {}: needs at least 2 samples and 1 feature",
                    m.rows, m.cols
                ),
            ));
        }
        let side = match measure {
            Measure::Cka | Measure::CkaDebiased => {
                let features: Vec<f64> = m.data.iter().map(|v| v.to_f64()).collect();
                let view = MatRef::new(&features, m.rows, m.cols, m.name)?;
                let reference = CkaReference::new(view, cka_options(measure))?;
                Side::Cka {
                    features,
                    cols: m.cols,
                    reference,
                }
            }
            Measure::Svcca => Side::Subspace(cca::Subspace::new(m)?.truncated(opts.svcca_variance)),
            Measure::Pwcca => Side::Subspace(cca::Subspace::new(m)?),
            Measure::Procrustes => Side::Procrustes(procrustes::Shape::new(m)?),
            Measure::Rsa => Side::Rsa(rsa::Rdm::new(m, opts.rsa_max_samples)?),
            Measure::MutualKnn | Measure::Cknna => {
                Side::Neighbours(neighbours::Neighbours::new(m, opts.alignment_k)?)
            }
        };
        Ok(Prepared {
            measure,
            options: opts,
            rows: m.rows,
            name: m.name.to_owned(),
            side,
        })
    }

    pub fn measure(&self) -> Measure {
        self.measure
    }

    /// The parameters it was prepared with (the other side's must be the same).
    pub fn options(&self) -> MeasureOptions {
        self.options
    }

    /// The measure between this side and `other` (prepared for the same
    /// measure, on the same samples in the same order).
    pub fn compare(&self, other: &Prepared) -> Result<f64, MetricError> {
        if other.measure != self.measure || other.rows != self.rows || other.options != self.options
        {
            return Err(MetricError::input(
                &other.name,
                format!(
                    "{} on {} samples ({:?}) cannot be compared with {} {} on {} samples ({:?})",
                    other.measure,
                    other.rows,
                    other.options,
                    self.name,
                    self.measure,
                    self.rows,
                    self.options
                ),
            ));
        }
        match (&self.side, &other.side) {
            (Side::Cka { reference: a, .. }, Side::Cka { reference: b, .. }) => {
                a.compare_prepared(b, &other.name)
            }
            (Side::Subspace(a), Side::Subspace(b)) => match self.measure {
                Measure::Svcca => cca::svcca(a, b),
                _ => cca::pwcca(a, b),
            },
            (Side::Procrustes(a), Side::Procrustes(b)) => procrustes::angular_distance(a, b),
            (Side::Rsa(a), Side::Rsa(b)) => rsa::rdm_correlation(a, b),
            (Side::Neighbours(a), Side::Neighbours(b)) => match self.measure {
                Measure::MutualKnn => Ok(neighbours::mutual_knn(a, b)),
                _ => neighbours::cknna(a, b),
            },
            _ => unreachable!("the same measure prepares the same kind of side"),
        }
    }

    /// This side with its samples reordered: sample `i` of the result is
    /// sample `order[i]` of this one.
    pub fn permuted(&self, order: &[usize]) -> Result<Prepared, MetricError> {
        let mut seen = vec![false; self.rows];
        if order.len() != self.rows
            || !order
                .iter()
                .all(|&i| i < self.rows && !std::mem::replace(&mut seen[i], true))
        {
            return Err(MetricError::input(
                &self.name,
                format!(
                    "an order of {} indices is not a permutation of its {} samples",
                    order.len(),
                    self.rows
                ),
            ));
        }
        let side = match &self.side {
            Side::Cka { features, cols, .. } => {
                let features: Vec<f64> = order
                    .iter()
                    .flat_map(|&i| &features[i * cols..(i + 1) * cols])
                    .copied()
                    .collect();
                let view = MatRef::new(&features, self.rows, *cols, &self.name)?;
                let reference = CkaReference::new(view, cka_options(self.measure))?;
                Side::Cka {
                    features,
                    cols: *cols,
                    reference,
                }
            }
            Side::Subspace(s) => Side::Subspace(s.permuted(order)),
            Side::Procrustes(s) => Side::Procrustes(s.permuted(order)),
            Side::Rsa(s) => Side::Rsa(s.permuted(order)),
            Side::Neighbours(s) => Side::Neighbours(s.permuted(order)),
        };
        Ok(Prepared {
            measure: self.measure,
            options: self.options,
            rows: self.rows,
            name: format!("{} (samples permuted)", self.name),
            side,
        })
    }
}

fn cka_options(measure: Measure) -> CkaOptions {
    CkaOptions {
        estimator: match measure {
            Measure::CkaDebiased => Estimator::Debiased,
            _ => Estimator::Biased,
        },
        kernel: Kernel::Linear,
    }
}

/// `measure` between two representations of the same samples.
pub fn similarity<T: Scalar>(
    measure: Measure,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    opts: MeasureOptions,
) -> Result<f64, MetricError> {
    if a.rows != b.rows {
        return Err(MetricError::input(
            b.name,
            format!("{} samples, {} has {}", b.rows, a.name, a.rows),
        ));
    }
    Prepared::new(measure, a, opts)?.compare(&Prepared::new(measure, b, opts)?)
}

/// A measure's value by chance: between a side and the same side with its
/// samples permuted, over several permutations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChanceLevel {
    pub mean: f64,
    /// The 95th percentile (numpy's linear interpolation): a similarity
    /// above it (a distance below the 5th) is above chance.
    pub q95: f64,
    pub resamples: usize,
}

impl ChanceLevel {
    /// Whether `value` is more similar than 95 % of the permutations.
    pub fn exceeded_by(&self, measure: Measure, value: f64) -> bool {
        measure.oriented(value) > measure.oriented(self.q95)
    }
}

/// The chance level of `side`'s measure over the given permutations of its
/// samples (for a distance, `q95` is the 5th percentile: the bound on the
/// similar side).
pub fn chance_level(side: &Prepared, orders: &[Vec<usize>]) -> Result<ChanceLevel, MetricError> {
    if orders.is_empty() {
        return Err(MetricError::input(
            &side.name,
            "a chance level needs at least 1 permutation",
        ));
    }
    let mut values = orders
        .iter()
        .map(|order| side.compare(&side.permuted(order)?))
        .collect::<Result<Vec<f64>, _>>()?;
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values.sort_by(f64::total_cmp);
    let q = if side.measure.higher_is_similar() {
        95.0
    } else {
        5.0
    };
    Ok(ChanceLevel {
        mean,
        q95: percentile(&values, q),
        resamples: values.len(),
    })
}

/// Column-centred f64 copy of `m` as a faer matrix (n × d).
fn centred<T: Scalar>(m: MatRef<'_, T>) -> faer::Mat<f64> {
    let (n, d) = (m.rows, m.cols);
    let means = crate::linalg::column_means(m);
    faer::Mat::from_fn(n, d, |i, j| m.data[i * d + j].to_f64() - means[j])
}

/// `m`'s rows in `order` (row `i` of the result is row `order[i]`).
fn rows_in_order(m: &faer::Mat<f64>, order: &[usize]) -> faer::Mat<f64> {
    faer::Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(order[i], j)])
}
