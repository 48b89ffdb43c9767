//! Transferability scores: how well a backbone's frozen features of a
//! target task's training samples predict what fine-tuning it will give,
//! computed before fine-tuning (docs/SPEC.md, "Transferability scores").
//!
//! - [`logme`]: LogME, the evidence of a Bayesian linear model (You et al. 2021);
//! - [`hscore`]: the H-score with Ledoit-Wolf shrinkage (Bao et al. 2019,
//!   Ibrahim et al. 2022);
//! - [`nleep`]: N-LEEP, LEEP on a Gaussian mixture of the principal
//!   components (Li et al. 2021);
//! - [`gbc`]: the Gaussian Bhattacharyya coefficient between classes
//!   (Pándy et al. 2022);
//! - [`transrate`]: TransRate, the coding rate the labels explain (Huang et
//!   al. 2022);
//! - [`sfda`]: SFDA, a self-challenging Fisher discriminant (Shao et al. 2022).
//!
//! Higher is better for every one. LogME, H-score, GBC and TransRate need
//! only per-class sums and products of the features ([`ClassMoments`]), so
//! [`transferability_file`] reads a `.npy` file in blocks of rows for them;
//! N-LEEP and SFDA hold the features. Each is checked against an independent
//! implementation (`scripts/transferability_reference.py`).

pub mod gbc;
pub mod hscore;
pub mod logme;
mod moments;
pub mod nleep;
pub mod sfda;
mod symmetric;
pub mod transrate;

pub use moments::ClassMoments;

use crate::MetricError;
use crate::linalg::{MatRef, Scalar};
use crate::stream::NpyRows;

pub use sim_study::tables::selection::Score;

/// Whether a score needs the samples themselves, not only [`ClassMoments`].
fn needs_samples(score: Score) -> bool {
    matches!(score, Score::Nleep | Score::Sfda)
}

/// Each sample's class among the distinct labels (sorted: 0..c), as
/// numpy's `unique(return_inverse=True)`.
#[derive(Debug, Clone)]
pub struct Classes {
    /// Class of each sample, 0..c.
    pub of_sample: Vec<usize>,
    /// The label of each class.
    pub labels: Vec<i64>,
}

impl Classes {
    /// `name`: the labels' array, for errors. Every score compares classes:
    /// at least two.
    pub fn new(labels: &[i64], name: &str) -> Result<Classes, MetricError> {
        let mut distinct = labels.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 2 {
            return Err(MetricError::input(
                name,
                format!(
                    "{} distinct label(s): a transferability score compares at least two classes",
                    distinct.len()
                ),
            ));
        }
        let of_sample: Vec<usize> = labels
            .iter()
            .map(|l| distinct.binary_search(l).expect("a label of the list"))
            .collect();
        Ok(Classes {
            of_sample,
            labels: distinct,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// `scores` of features `x` (samples × features) with class `labels`
/// (any integers, one per sample), in the order asked.
pub fn transferability<T: Scalar>(
    x: MatRef<'_, T>,
    labels: &[i64],
    labels_name: &str,
    scores: &[Score],
) -> Result<Vec<f64>, MetricError> {
    each_score(x, labels, labels_name, scores)?
        .into_iter()
        .collect()
}

/// [`transferability`] with each score's own outcome: bad input (labels,
/// non-finite features) is the outer error; a score the features do not
/// allow (GBC on a constant feature) fails alone. The features' moments
/// are computed once for all.
pub fn each_score<T: Scalar>(
    x: MatRef<'_, T>,
    labels: &[i64],
    labels_name: &str,
    scores: &[Score],
) -> Result<Vec<Result<f64, MetricError>>, MetricError> {
    check_rows(x.name, x.rows, labels.len(), labels_name)?;
    x.check_finite()?;
    let classes = Classes::new(labels, labels_name)?;
    let data: Vec<f64> = x.data.iter().map(|v| v.to_f64()).collect();
    let features = MatRef::new(&data, x.rows, x.cols, x.name)?;
    let moments = ClassMoments::of(features, &classes);
    let norm4 = || Ok(hscore::centred_norm4_sum(features, &moments.mean()));
    Ok(scores
        .iter()
        .map(|&score| {
            let value =
                from_moments(score, &moments, &classes, &norm4, x.name).unwrap_or_else(|| {
                    match score {
                        Score::Nleep => nleep::nleep(features, &classes, &moments),
                        _ => sfda::sfda(features, &classes, &moments),
                    }
                });
            finite(score, value?, x.name)
        })
        .collect())
}

/// A score that needs only the moments; `None` for one that needs the
/// samples. `norm4`: the H-score's Σᵢ ‖xᵢ − mean‖⁴, computed when asked.
fn from_moments(
    score: Score,
    moments: &ClassMoments,
    classes: &Classes,
    norm4: &dyn Fn() -> Result<f64, MetricError>,
    name: &str,
) -> Option<Result<f64, MetricError>> {
    Some(match score {
        Score::Logme => logme::logme(moments, name),
        Score::Hscore => norm4().and_then(|n4| hscore::hscore(moments, n4, name)),
        Score::Gbc => gbc::gbc(moments, classes, name),
        Score::Transrate => transrate::transrate(moments, name),
        Score::Nleep | Score::Sfda => return None,
    })
}

/// [`transferability`] of the features in a `.npy` file: read in blocks of
/// `block_rows` rows when every score asked needs only [`ClassMoments`]
/// (the H-score reads the file twice), else held whole.
pub fn transferability_file(
    path: &str,
    labels: &[i64],
    labels_name: &str,
    scores: &[Score],
    block_rows: usize,
) -> Result<Vec<f64>, MetricError> {
    if scores.iter().any(|&s| needs_samples(s)) {
        let x = crate::arrays::load_matrix(path)?;
        return transferability(x.view(), labels, labels_name, scores);
    }
    let mut rows = NpyRows::open(path)?;
    check_rows(path, rows.rows, labels.len(), labels_name)?;
    let classes = Classes::new(labels, labels_name)?;
    let mut moments = ClassMoments::new(classes.len(), rows.cols);
    let mut read = 0;
    while let Some(block) = rows.next_block(block_rows)? {
        let n = block.len() / rows.cols;
        moments.add(&block, &classes.of_sample[read..read + n]);
        read += n;
    }
    let norm4 = || -> Result<f64, MetricError> {
        let mean = moments.mean();
        let mut again = NpyRows::open(path)?;
        let mut sum = 0.0;
        while let Some(block) = again.next_block(block_rows)? {
            let rows = block.len() / again.cols;
            sum += hscore::centred_norm4_sum(MatRef::new(&block, rows, again.cols, path)?, &mean);
        }
        Ok(sum)
    };
    scores
        .iter()
        .map(|&score| {
            let value = from_moments(score, &moments, &classes, &norm4, path)
                .expect("scores that need the samples are held whole above");
            finite(score, value?, path)
        })
        .collect()
}

/// A score's value, or the error that says it is not a number: never a
/// NaN or an infinity as a result.
fn finite(score: Score, value: f64, name: &str) -> Result<f64, MetricError> {
    if value.is_finite() {
        return Ok(value);
    }
    Err(MetricError::input(
        name,
        format!("{score} came out {value}: the features are too degenerate for it"),
    ))
}

fn check_rows(
    name: &str,
    rows: usize,
    labels: usize,
    labels_name: &str,
) -> Result<(), MetricError> {
    if rows != labels {
        return Err(MetricError::input(
            labels_name,
            format!("{labels} labels for the {rows} samples of {name}"),
        ));
    }
    Ok(())
}
