//! A linear probe: multinomial logistic regression on frozen features, the
//! usual measure of how linearly separable a representation makes a task.
//!
//! Features are standardised with the training set's mean and standard
//! deviation (a constant feature is only centred), then W (d × K) and b (K)
//! minimise
//!
//!   Σᵢ wᵢ CE(softmax(zᵢW + b), yᵢ) / Σᵢ wᵢ + λ/2 ‖W‖²,   wᵢ = 1 / n_{yᵢ},
//!
//! every class weighing the same (the probe is scored by balanced accuracy;
//! scikit-learn's `class_weight="balanced"` up to a constant). The objective
//! is strictly convex in W and convex in b, so the minimiser L-BFGS finds is
//! the one any solver finds; `scripts/metrics_reference.py` checks it
//! against scipy's L-BFGS-B.

use crate::MetricError;
use crate::classification::{ClassificationScores, classification_scores};

/// The probe's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeOptions {
    /// λ of the L2 penalty on W.
    pub l2: f64,
    /// L-BFGS stops when every gradient entry is below this …
    pub tolerance: f64,
    /// … or after this many iterations.
    pub max_iterations: usize,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            l2: 1e-3,
            tolerance: 1e-8,
            max_iterations: 2000,
        }
    }
}

/// A fitted probe.
#[derive(Debug, Clone)]
pub struct LinearProbe {
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// `[d, K]` row-major, then the K biases.
    pub params: Vec<f64>,
    pub classes: usize,
    /// The objective at the solution.
    pub objective: f64,
    pub iterations: usize,
}

/// The training problem: standardised features and the class weights.
struct Problem<'a> {
    z: Vec<f64>,
    labels: &'a [usize],
    weights: Vec<f64>,
    d: usize,
    k: usize,
    l2: f64,
}

impl Problem<'_> {
    /// The objective and its gradient at `params`.
    fn evaluate(&self, params: &[f64]) -> (f64, Vec<f64>) {
        let (d, k) = (self.d, self.k);
        let (w, b) = params.split_at(d * k);
        let mut grad = vec![0.0; params.len()];
        let total: f64 = self.weights.iter().sum();
        let mut loss = 0.0;
        let mut logits = vec![0.0; k];
        for (i, &y) in self.labels.iter().enumerate() {
            let z = &self.z[i * d..(i + 1) * d];
            logits.copy_from_slice(b);
            for (j, &zj) in z.iter().enumerate() {
                let row = &w[j * k..(j + 1) * k];
                logits.iter_mut().zip(row).for_each(|(l, wv)| *l += zj * wv);
            }
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = logits.iter().map(|l| (l - max).exp()).sum();
            let log_sum = max + sum.ln();
            let wi = self.weights[i] / total;
            loss += wi * (log_sum - logits[y]);
            // dCE/dlogits = softmax − onehot, times the sample's weight.
            for (c, l) in logits.iter_mut().enumerate() {
                *l = wi * ((*l - log_sum).exp() - f64::from(u8::from(c == y)));
            }
            for (j, &zj) in z.iter().enumerate() {
                let row = &mut grad[j * k..(j + 1) * k];
                row.iter_mut()
                    .zip(&logits)
                    .for_each(|(g, dl)| *g += zj * dl);
            }
            grad[d * k..]
                .iter_mut()
                .zip(&logits)
                .for_each(|(g, dl)| *g += dl);
        }
        loss += 0.5 * self.l2 * w.iter().map(|v| v * v).sum::<f64>();
        grad[..d * k]
            .iter_mut()
            .zip(w)
            .for_each(|(g, wv)| *g += self.l2 * wv);
        (loss, grad)
    }
}

/// Fits a probe on `features` (`n × d`, row-major) and their labels.
pub fn fit(
    features: &[f64],
    d: usize,
    labels: &[usize],
    options: ProbeOptions,
) -> Result<LinearProbe, MetricError> {
    let n = labels.len();
    if n == 0 || d == 0 || features.len() != n * d {
        return Err(MetricError::input(
            "features",
            format!("{} values for {n} labels × {d} features", features.len()),
        ));
    }
    let k = 1 + labels.iter().copied().max().expect("non-empty");
    let mut mean = vec![0.0; d];
    for row in features.chunks_exact(d) {
        mean.iter_mut()
            .zip(row)
            .for_each(|(m, v)| *m += v / n as f64);
    }
    let mut scale = vec![0.0; d];
    for row in features.chunks_exact(d) {
        scale
            .iter_mut()
            .zip(row.iter().zip(&mean))
            .for_each(|(s, (v, m))| *s += (v - m) * (v - m) / n as f64);
    }
    let scale: Vec<f64> = scale
        .into_iter()
        .map(|v| if v > 0.0 { v.sqrt() } else { 1.0 })
        .collect();
    let mut counts = vec![0usize; k];
    labels.iter().for_each(|&y| counts[y] += 1);
    let problem = Problem {
        z: standardise(features, &mean, &scale),
        labels,
        weights: labels.iter().map(|&y| 1.0 / counts[y] as f64).collect(),
        d,
        k,
        l2: options.l2,
    };
    let (params, objective, iterations) = lbfgs(&problem, vec![0.0; (d + 1) * k], options);
    Ok(LinearProbe {
        mean,
        scale,
        params,
        classes: k,
        objective,
        iterations,
    })
}

fn standardise(features: &[f64], mean: &[f64], scale: &[f64]) -> Vec<f64> {
    let d = mean.len();
    features
        .iter()
        .enumerate()
        .map(|(i, v)| (v - mean[i % d]) / scale[i % d])
        .collect()
}

impl LinearProbe {
    /// The probe's logits (`n × K`, row-major) of each row of `features` (`n × d`).
    pub fn logits(&self, features: &[f64]) -> Vec<f64> {
        let (d, k) = (self.mean.len(), self.classes);
        let z = standardise(features, &self.mean, &self.scale);
        let (w, b) = self.params.split_at(d * k);
        let mut logits = Vec::with_capacity(z.len() / d * k);
        for row in z.chunks_exact(d) {
            let mut l = b.to_vec();
            for (j, &zj) in row.iter().enumerate() {
                l.iter_mut()
                    .zip(&w[j * k..(j + 1) * k])
                    .for_each(|(l, wv)| *l += zj * wv);
            }
            logits.extend(l);
        }
        logits
    }

    /// The most likely class of each row of `features` (`n × d`).
    pub fn predict(&self, features: &[f64]) -> Vec<usize> {
        let k = self.classes;
        self.logits(features)
            .chunks_exact(k)
            .map(|l| {
                (0..k)
                    .max_by(|&a, &c| l[a].total_cmp(&l[c]).then(c.cmp(&a)))
                    .expect("k ≥ 1")
            })
            .collect()
    }
}

/// Fits on the training features and scores the test features.
pub fn probe_scores(
    train: (&[f64], &[usize]),
    test: (&[f64], &[usize]),
    d: usize,
) -> Result<ClassificationScores, MetricError> {
    let probe = fit(train.0, d, train.1, ProbeOptions::default())?;
    if test.0.len() != test.1.len() * d {
        return Err(MetricError::input(
            "features",
            format!(
                "{} test values for {} labels × {d} features",
                test.0.len(),
                test.1.len()
            ),
        ));
    }
    classification_scores(&probe.predict(test.0), test.1)
}

/// L-BFGS (10 pairs) with a backtracking Armijo line search; returns the
/// parameters, the objective and the iterations taken.
fn lbfgs(problem: &Problem<'_>, mut x: Vec<f64>, options: ProbeOptions) -> (Vec<f64>, f64, usize) {
    const MEMORY: usize = 10;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
    let (mut f, mut g) = problem.evaluate(&x);
    let mut pairs: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> =
        std::collections::VecDeque::new();
    for iteration in 0..options.max_iterations {
        if g.iter().all(|v| v.abs() <= options.tolerance) {
            return (x, f, iteration);
        }
        // Two-loop recursion: direction = −H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(pairs.len());
        for (s, y, rho) in pairs.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        if let Some((s, y, _)) = pairs.back() {
            let gamma = dot(s, y) / dot(y, y);
            q.iter_mut().for_each(|v| *v *= gamma);
        }
        for ((s, y, rho), a) in pairs.iter().zip(alphas.into_iter().rev()) {
            let beta = rho * dot(y, &q);
            q.iter_mut()
                .zip(s)
                .for_each(|(qi, si)| *qi += (a - beta) * si);
        }
        let mut direction: Vec<f64> = q.into_iter().map(|v| -v).collect();
        let mut slope = dot(&g, &direction);
        if slope >= 0.0 {
            // Not a descent direction: start the memory over from −g.
            pairs.clear();
            direction = g.iter().map(|v| -v).collect();
            slope = dot(&g, &direction);
        }
        let mut step = if pairs.is_empty() {
            1.0 / g.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1.0)
        } else {
            1.0
        };
        let (next, f_next, g_next) = loop {
            let candidate: Vec<f64> = x
                .iter()
                .zip(&direction)
                .map(|(xi, di)| xi + step * di)
                .collect();
            let (fc, gc) = problem.evaluate(&candidate);
            if fc <= f + 1e-4 * step * slope || step < 1e-20 {
                break (candidate, fc, gc);
            }
            step *= 0.5;
        };
        let s: Vec<f64> = next.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_next.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            if pairs.len() == MEMORY {
                pairs.pop_front();
            }
            pairs.push_back((s, y, 1.0 / sy));
        }
        let stalled = (f - f_next).abs() <= 1e-16 * f.abs().max(1.0);
        (x, f, g) = (next, f_next, g_next);
        if stalled {
            return (x, f, iteration + 1);
        }
    }
    (x, f, options.max_iterations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_classes_are_probed_perfectly_and_the_gradient_vanishes() {
        // Three clusters in 2-d, plus a constant feature.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..90 {
            let c = i % 3;
            let jitter = (i as f64 * 0.37).sin() * 0.3;
            x.extend([
                c as f64 * 3.0 + jitter,
                (c as f64 - 1.0).powi(2) * 2.0 - jitter,
                5.0,
            ]);
            y.push(c);
        }
        let probe = fit(&x, 3, &y, ProbeOptions::default()).unwrap();
        assert_eq!(probe.predict(&x), y);
        let problem = Problem {
            z: standardise(&x, &probe.mean, &probe.scale),
            labels: &y,
            weights: vec![1.0; 90],
            d: 3,
            k: 3,
            l2: 1e-3,
        };
        let (_, g) = problem.evaluate(&probe.params);
        assert!(g.iter().all(|v| v.abs() < 1e-6), "{g:?}");
    }

    #[test]
    fn the_gradient_is_the_objective_s_derivative() {
        let x: Vec<f64> = (0..40).map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.0).collect();
        let y: Vec<usize> = (0..20).map(|i| i % 3).collect();
        let problem = Problem {
            z: x.clone(),
            labels: &y,
            weights: (0..20).map(|i| 1.0 + (i % 4) as f64).collect(),
            d: 2,
            k: 3,
            l2: 0.1,
        };
        let p: Vec<f64> = (0..9).map(|i| (i as f64 * 0.3).cos()).collect();
        let (_, g) = problem.evaluate(&p);
        for i in 0..p.len() {
            let h = 1e-6;
            let (mut up, mut down) = (p.clone(), p.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (problem.evaluate(&up).0 - problem.evaluate(&down).0) / (2.0 * h);
            assert!(
                (numeric - g[i]).abs() < 1e-7,
                "parameter {i}: {numeric} vs {}",
                g[i]
            );
        }
    }
}
