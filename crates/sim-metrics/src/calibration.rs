//! Calibration of top-label confidences (docs/SPEC.md, "Representation quality").
//!
//! Confidence = max softmax, prediction = argmax (first on ties). Equal-width
//! bins split (0, 1] into B intervals ((b/B, (b+1)/B]); equal-mass bins split
//! the samples sorted by confidence into B parts whose sizes differ by at most
//! one (numpy's `array_split`). ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|;
//! MCE = the largest |acc − conf| over non-empty bins.

use crate::MetricError;
use crate::linalg::{MatRef, Scalar};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Binning {
    /// Equal-width bins on (0, 1].
    #[default]
    Uniform,
    /// Equal-mass bins (adaptive ECE).
    Quantile,
}

/// One bin of the reliability diagram.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Bin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    /// Mean confidence in the bin (0 when empty).
    pub confidence: f64,
    /// Accuracy in the bin (0 when empty).
    pub accuracy: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Calibration {
    pub ece: f64,
    pub mce: f64,
    pub bins: Vec<Bin>,
}

/// Top-label confidence and prediction per row of logits (softmax in f64).
pub fn confidences<T: Scalar>(
    logits: MatRef<'_, T>,
) -> Result<(Vec<f64>, Vec<usize>), MetricError> {
    logits.check_finite()?;
    if logits.cols < 2 {
        return Err(MetricError::input(
            logits.name,
            format!("{} classes; calibration needs at least 2", logits.cols),
        ));
    }
    let mut conf = Vec::with_capacity(logits.rows);
    let mut pred = Vec::with_capacity(logits.rows);
    for row in logits.data.chunks_exact(logits.cols) {
        let top = Softmax::of(row);
        conf.push(1.0 / top.sum);
        pred.push(top.argmax);
    }
    Ok((conf, pred))
}

/// Softmax probabilities of every row of logits (rows × classes, in f64),
/// and each row's prediction (argmax, first on ties).
pub fn probabilities<T: Scalar>(
    logits: MatRef<'_, T>,
) -> Result<(Vec<f64>, Vec<usize>), MetricError> {
    logits.check_finite()?;
    let mut probs = Vec::with_capacity(logits.data.len());
    let mut pred = Vec::with_capacity(logits.rows);
    for row in logits.data.chunks_exact(logits.cols) {
        let top = Softmax::of(row);
        probs.extend(row.iter().map(|v| (v.to_f64() - top.max).exp() / top.sum));
        pred.push(top.argmax);
    }
    Ok((probs, pred))
}

/// One row's softmax, shifted by its largest logit for stability:
/// p_k = exp(l_k − max) / sum.
struct Softmax {
    argmax: usize,
    max: f64,
    sum: f64,
}

impl Softmax {
    fn of<T: Scalar>(row: &[T]) -> Softmax {
        let (mut argmax, mut max) = (0, f64::NEG_INFINITY);
        for (k, v) in row.iter().enumerate() {
            if v.to_f64() > max {
                (argmax, max) = (k, v.to_f64());
            }
        }
        let sum = row.iter().map(|v| (v.to_f64() - max).exp()).sum();
        Softmax { argmax, max, sum }
    }
}

/// ECE, MCE and the reliability diagram from logits and integer labels.
pub fn calibration<T: Scalar>(
    logits: MatRef<'_, T>,
    labels: &[i64],
    bins: usize,
    binning: Binning,
) -> Result<Calibration, MetricError> {
    if labels.len() != logits.rows {
        return Err(MetricError::input(
            "labels",
            format!("{} labels for {} rows of logits", labels.len(), logits.rows),
        ));
    }
    if let Some(bad) = labels.iter().find(|&&l| l < 0 || l as usize >= logits.cols) {
        return Err(MetricError::input(
            "labels",
            format!("label {bad} is outside 0..{}", logits.cols),
        ));
    }
    if bins == 0 || logits.rows == 0 {
        return Err(MetricError::input(
            logits.name,
            "needs at least one sample and one bin",
        ));
    }
    let (conf, pred) = confidences(logits)?;
    let correct: Vec<bool> = pred
        .iter()
        .zip(labels)
        .map(|(&p, &l)| p as i64 == l)
        .collect();
    Ok(match binning {
        Binning::Uniform => uniform(&conf, &correct, bins),
        Binning::Quantile => quantile(&conf, &correct, bins),
    })
}

fn uniform(conf: &[f64], correct: &[bool], bins: usize) -> Calibration {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); bins];
    for (i, &c) in conf.iter().enumerate() {
        // (b/B, (b+1)/B] → b; confidences are > 0 after a softmax.
        let b = ((c * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        members[b].push(i);
    }
    let bounds = (0..bins).map(|b| (b as f64 / bins as f64, (b + 1) as f64 / bins as f64));
    summarise(conf, correct, members.into_iter().zip(bounds))
}

fn quantile(conf: &[f64], correct: &[bool], bins: usize) -> Calibration {
    let mut order: Vec<usize> = (0..conf.len()).collect();
    order.sort_by(|&a, &b| conf[a].total_cmp(&conf[b]));
    let (n, bins) = (order.len(), bins.min(order.len()));
    let (base, extra) = (n / bins, n % bins);
    let mut start = 0;
    let mut parts = Vec::with_capacity(bins);
    for b in 0..bins {
        let len = base + usize::from(b < extra);
        let chunk = order[start..start + len].to_vec();
        let bounds = (conf[chunk[0]], conf[chunk[len - 1]]);
        parts.push((chunk, bounds));
        start += len;
    }
    summarise(conf, correct, parts.into_iter())
}

fn summarise(
    conf: &[f64],
    correct: &[bool],
    bins: impl Iterator<Item = (Vec<usize>, (f64, f64))>,
) -> Calibration {
    let n = conf.len() as f64;
    let (mut ece, mut mce) = (0.0, 0.0f64);
    let mut out = Vec::new();
    for (members, (lower, upper)) in bins {
        let count = members.len();
        let (mut confidence, mut accuracy) = (0.0, 0.0);
        if count > 0 {
            confidence = members.iter().map(|&i| conf[i]).sum::<f64>() / count as f64;
            accuracy = members.iter().filter(|&&i| correct[i]).count() as f64 / count as f64;
            let gap = (accuracy - confidence).abs();
            ece += count as f64 / n * gap;
            mce = mce.max(gap);
        }
        out.push(Bin {
            lower,
            upper,
            count,
            confidence,
            accuracy,
        });
    }
    Calibration {
        ece,
        mce,
        bins: out,
    }
}
