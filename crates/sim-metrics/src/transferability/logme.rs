//! LogME (You et al. 2021, "LogME: Practical Assessment of Pre-trained
//! Models for Transfer Learning"): for each class, the log evidence of a
//! Bayesian linear regression of its indicator t on the (uncentred)
//! features F, with prior precision α and noise precision β at MacKay's
//! fixed point; the mean over classes of the evidence per sample.
//!
//! In the eigenbasis of FᵀF (eigenvalues σᵢ, zᵢ = vᵢᵀFᵀt) every quantity
//! is a sum over i: mᵢ = βzᵢ/(α+βσᵢ), γ = Σ βσᵢ/(α+βσᵢ), ‖t − Fm‖² =
//! tᵀt − 2Σmᵢzᵢ + Σσᵢmᵢ², and α ← γ/‖m‖², β ← (n − γ)/‖t − Fm‖² until
//! α/β moves by at most [`TOLERANCE`] (relative). The authors' code stops
//! after at most 11 updates with 1 % tolerance; run to convergence, the
//! value no longer depends on where it stopped.

use super::ClassMoments;
use super::symmetric::Eigen;
use crate::MetricError;

/// Relative change of α/β at which the fixed point counts as reached.
pub const TOLERANCE: f64 = 1e-10;
/// Updates before giving up.
pub const MAX_ITERATIONS: usize = 1000;

/// LogME of the features summarised by `moments` (`name`: the features).
pub fn logme(moments: &ClassMoments, name: &str) -> Result<f64, MetricError> {
    let origin = vec![0.0; moments.dim()];
    let ftf = moments.total_scatter_about(&origin);
    let eigen = Eigen::of(&ftf, name)?;
    let sigma: Vec<f64> = eigen.values.iter().map(|v| v.max(0.0)).collect();
    let n = moments.n() as f64;
    let mut total = 0.0;
    for k in 0..moments.classes() {
        let count = moments.count(k) as f64;
        // Fᵀt: the class's sum of features.
        let fty: Vec<f64> = moments.class_mean(k).iter().map(|m| m * count).collect();
        let z = eigen.project(&fty);
        let class = Regression {
            sigma: &sigma,
            z: &z,
            tt: count,
            n,
        };
        total += class
            .evidence()
            .map_err(|m| MetricError::input(name, format!("LogME of class {k} (0-based): {m}")))?
            / n;
    }
    Ok(total / moments.classes() as f64)
}

/// One class's regression in the eigenbasis.
struct Regression<'a> {
    sigma: &'a [f64],
    z: &'a [f64],
    /// tᵀt: the class's count.
    tt: f64,
    n: f64,
}

impl Regression<'_> {
    /// ‖m‖², ‖t − Fm‖² and γ at (α, β).
    fn posterior(&self, alpha: f64, beta: f64) -> (f64, f64, f64) {
        let (mut m2, mut mz, mut sm2, mut gamma) = (0.0, 0.0, 0.0, 0.0);
        for (&s, &z) in self.sigma.iter().zip(self.z) {
            let m = beta * z / (alpha + beta * s);
            m2 += m * m;
            mz += m * z;
            sm2 += s * m * m;
            gamma += beta * s / (alpha + beta * s);
        }
        (m2, self.tt - 2.0 * mz + sm2, gamma)
    }

    /// The log evidence at the fixed point of (α, β).
    fn evidence(&self) -> Result<f64, String> {
        let (mut alpha, mut beta) = (1.0f64, 1.0f64);
        let mut converged = false;
        for _ in 0..MAX_ITERATIONS {
            let (m2, residual, gamma) = self.posterior(alpha, beta);
            let (a, b) = (gamma / m2, (self.n - gamma) / residual);
            if !(a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0) {
                return Err(format!(
                    "the evidence has no maximum (α = {a}, β = {b}): the features fit the \
                     labels exactly or not at all"
                ));
            }
            let done = (a / b - alpha / beta).abs() <= TOLERANCE * (alpha / beta);
            (alpha, beta) = (a, b);
            if done {
                converged = true;
                break;
            }
        }
        if !converged {
            return Err(format!("α/β did not settle in {MAX_ITERATIONS} updates"));
        }
        let (m2, residual, _) = self.posterior(alpha, beta);
        let d = self.sigma.len() as f64;
        let log_det: f64 = self.sigma.iter().map(|s| (alpha + beta * s).ln()).sum();
        Ok(d / 2.0 * alpha.ln() + self.n / 2.0 * beta.ln()
            - log_det / 2.0
            - beta / 2.0 * residual
            - alpha / 2.0 * m2
            - self.n / 2.0 * (2.0 * std::f64::consts::PI).ln())
    }
}
