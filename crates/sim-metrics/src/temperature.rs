//! Temperature scaling (Guo et al. 2017), the standard post-hoc fix of a
//! classifier's calibration, and the proper scores it is judged by
//! (docs/SPEC.md, "Representation quality").
//!
//! The temperature T divides every logit; it is fitted on held-out data
//! (the validation split, never the test split) by minimising the negative
//! log-likelihood. In β = 1/T the NLL, mean_i [logsumexp(β l_i) − β l_{i,y_i}],
//! is convex (a log-sum-exp of functions linear in β), with derivative
//! mean_i [E_{p_β}(l_i) − l_{i,y_i}] and second derivative mean_i Var_{p_β}(l_i):
//! Newton's method inside a bisection bracket finds its minimum to
//! machine precision. T is kept in [[`T_MIN`], [`T_MAX`]]: where the logits
//! separate the validation set perfectly the NLL falls towards T → 0 and the
//! bound is the answer.

use crate::MetricError;
use crate::linalg::{MatRef, Scalar};

/// The smallest temperature fitted.
pub const T_MIN: f64 = 0.01;
/// The largest temperature fitted.
pub const T_MAX: f64 = 100.0;

/// Negative log-likelihood (nats) and multi-class Brier score
/// (mean_i Σ_k (p_ik − 1[k = y_i])², in [0, 2]) of softmax(logits / T).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ProperScores {
    pub nll: f64,
    pub brier: f64,
}

/// One row's softmax statistics at inverse temperature β.
struct Scaled {
    /// log Σ_k exp(β l_k).
    log_sum: f64,
    /// E_p(l) and E_p(l²) under p = softmax(β l).
    mean: f64,
    second: f64,
}

impl Scaled {
    fn of(row: &[f64], beta: f64) -> Scaled {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(beta * v));
        let (mut sum, mut first, mut second) = (0.0, 0.0, 0.0);
        for &v in row {
            let w = (beta * v - max).exp();
            sum += w;
            first += w * v;
            second += w * v * v;
        }
        Scaled {
            log_sum: max + sum.ln(),
            mean: first / sum,
            second: second / sum,
        }
    }
}

/// The logits as f64 rows, checked against the labels.
fn rows<T: Scalar>(logits: MatRef<'_, T>, labels: &[usize]) -> Result<Vec<Vec<f64>>, MetricError> {
    logits.check_finite()?;
    logits.check_labels(labels)?;
    Ok(logits
        .data
        .chunks_exact(logits.cols)
        .map(|r| r.iter().map(|v| v.to_f64()).collect())
        .collect())
}

/// The NLL at β and its first two derivatives in β.
fn nll_and_derivatives(rows: &[Vec<f64>], labels: &[usize], beta: f64) -> (f64, f64, f64) {
    let n = rows.len() as f64;
    let (mut f, mut d1, mut d2) = (0.0, 0.0, 0.0);
    for (row, &y) in rows.iter().zip(labels) {
        let s = Scaled::of(row, beta);
        f += s.log_sum - beta * row[y];
        d1 += s.mean - row[y];
        d2 += (s.second - s.mean * s.mean).max(0.0);
    }
    (f / n, d1 / n, d2 / n)
}

/// The temperature in [[`T_MIN`], [`T_MAX`]] that minimises the NLL of
/// `labels` under softmax(logits / T).
pub fn fit_temperature<T: Scalar>(
    logits: MatRef<'_, T>,
    labels: &[usize],
) -> Result<f64, MetricError> {
    let rows = rows(logits, labels)?;
    let slope = |beta: f64| nll_and_derivatives(&rows, labels, beta).1;
    // β = 1/T: the bracket ends are T_MAX and T_MIN.
    let (mut lo, mut hi) = (1.0 / T_MAX, 1.0 / T_MIN);
    if slope(lo) >= 0.0 {
        return Ok(T_MAX);
    }
    if slope(hi) <= 0.0 {
        return Ok(T_MIN);
    }
    let mut beta = 1.0f64.clamp(lo, hi);
    for _ in 0..200 {
        let (_, d1, d2) = nll_and_derivatives(&rows, labels, beta);
        if d1 == 0.0 {
            break;
        }
        if d1 < 0.0 {
            lo = beta;
        } else {
            hi = beta;
        }
        let newton = beta - d1 / d2;
        // Newton where it stays inside the bracket, else bisection.
        let next = if d2 > 0.0 && newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if (next - beta).abs() <= 1e-15 * beta || hi - lo <= 1e-15 * hi {
            beta = next;
            break;
        }
        beta = next;
    }
    Ok(1.0 / beta)
}

/// NLL and Brier score of softmax(logits / temperature) for `labels`.
pub fn proper_scores<T: Scalar>(
    logits: MatRef<'_, T>,
    labels: &[usize],
    temperature: f64,
) -> Result<ProperScores, MetricError> {
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(MetricError::input(
            "temperature",
            format!("{temperature} is not a positive number"),
        ));
    }
    let rows = rows(logits, labels)?;
    let beta = 1.0 / temperature;
    let (mut nll, mut brier) = (0.0, 0.0);
    for (row, &y) in rows.iter().zip(labels) {
        let s = Scaled::of(row, beta);
        nll += s.log_sum - beta * row[y];
        for (k, &v) in row.iter().enumerate() {
            let p = (beta * v - s.log_sum).exp();
            let target = if k == y { 1.0 } else { 0.0 };
            brier += (p - target).powi(2);
        }
    }
    let n = rows.len() as f64;
    Ok(ProperScores {
        nll: nll / n,
        brier: brier / n,
    })
}

/// The logits divided by `temperature`, as f64 (what calibration and
/// accuracy read after scaling; the argmax is unchanged).
pub fn scaled<T: Scalar>(logits: MatRef<'_, T>, temperature: f64) -> Vec<f64> {
    logits
        .data
        .iter()
        .map(|v| v.to_f64() / temperature)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_that_separate_the_labels_fit_the_smallest_temperature() {
        let logits = [2.0f32, 0.0, 0.0, 2.0];
        let m = MatRef::new(&logits, 2, 2, "logits").unwrap();
        assert_eq!(fit_temperature(m, &[0, 1]).unwrap(), T_MIN);
        // Always wrong: the flattest softmax is best.
        assert_eq!(fit_temperature(m, &[1, 0]).unwrap(), T_MAX);
    }

    #[test]
    fn the_fitted_temperature_is_where_the_nll_is_least() {
        let logits = [
            3.0f32, 0.0, 1.0, 0.0, 2.5, 0.5, 1.0, 1.5, 0.0, 2.0, 0.0, 0.5,
        ];
        let labels = [0, 1, 0, 1];
        let m = MatRef::new(&logits, 4, 3, "logits").unwrap();
        let t = fit_temperature(m, &labels).unwrap();
        let nll = |t: f64| proper_scores(m, &labels, t).unwrap().nll;
        assert!(nll(t) <= nll(t * 1.001) && nll(t) <= nll(t / 1.001), "{t}");
    }

    #[test]
    fn a_bad_temperature_or_label_is_an_error_naming_it() {
        let logits = [1.0f32, 0.0];
        let m = MatRef::new(&logits, 1, 2, "logits").unwrap();
        assert_eq!(proper_scores(m, &[0], 0.0).unwrap_err().name, "temperature");
        assert_eq!(fit_temperature(m, &[2]).unwrap_err().name, "labels");
    }
}
