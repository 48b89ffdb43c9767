//! Generated data for the property tests: Gaussian matrices and random
//! orthogonal transforms, from a seeded stream.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use sim_metrics::MatRef;

pub fn normal(rng: &mut ChaCha8Rng, len: usize) -> Vec<f64> {
    // Box–Muller: enough for test data.
    (0..len)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        })
        .collect()
}

pub fn m<'a>(data: &'a [f64], cols: usize, name: &'a str) -> MatRef<'a, f64> {
    MatRef::new(data, data.len() / cols, cols, name).unwrap()
}

/// A random orthogonal d × d matrix (Gram–Schmidt on Gaussian columns).
pub fn orthogonal(rng: &mut ChaCha8Rng, d: usize) -> Vec<f64> {
    let mut q: Vec<Vec<f64>> = Vec::new();
    while q.len() < d {
        let mut v = normal(rng, d);
        for u in &q {
            let p: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= p * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        q.push(v.into_iter().map(|a| a / norm).collect());
    }
    q.concat()
}

pub fn times(x: &[f64], n: usize, d: usize, q: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; n * d];
    for i in 0..n {
        for k in 0..d {
            let a = x[i * d + k];
            for j in 0..d {
                out[i * d + j] += a * q[k * d + j];
            }
        }
    }
    out
}
