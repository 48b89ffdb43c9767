//! Properties the spec asks of the measures, on generated data.

mod generated;

use generated::{m, normal, orthogonal, times};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim_metrics::MatRef;
use sim_metrics::calibration::{Binning, calibration};
use sim_metrics::cka::{
    CkaOptions, Estimator, Form, Kernel, MinibatchCka, cka, cka_in_form, cka_matrix,
    feature_form_agreement,
};

const ALL: [CkaOptions; 4] = [
    CkaOptions {
        estimator: Estimator::Biased,
        kernel: Kernel::Linear,
    },
    CkaOptions {
        estimator: Estimator::Debiased,
        kernel: Kernel::Linear,
    },
    CkaOptions {
        estimator: Estimator::Biased,
        kernel: Kernel::Rbf { sigma_frac: 1.0 },
    },
    CkaOptions {
        estimator: Estimator::Debiased,
        kernel: Kernel::Rbf { sigma_frac: 0.8 },
    },
];

/// In both forms, wide and tall, to f64 rounding: in the feature form under
/// OpenBLAS too, where the self terms (a symmetric product) and a cross
/// term (a general one) in f32 blocks round apart on some CPUs (1 − 3e-8
/// on an AMD EPYC with AVX2 before identical sides were recognised).
#[test]
fn self_similarity_is_one() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (n, d) in [(50, 8), (12, 40)] {
        let x = normal(&mut rng, n * d);
        for opts in ALL {
            let forms: &[Form] = match opts.kernel {
                Kernel::Linear => &[Form::Feature, Form::Gram],
                Kernel::Rbf { .. } => &[Form::Gram],
            };
            for &form in forms {
                let v = cka_in_form(m(&x, d, "X"), m(&x, d, "X"), opts, form).unwrap();
                assert!(
                    (v - 1.0).abs() < 1e-12,
                    "{opts:?} {form:?} n={n} d={d}: {v}"
                );
            }
        }
    }
}

#[test]
fn invariant_to_orthogonal_transforms_and_isotropic_scaling() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (n, d) = (60, 12);
    let x = normal(&mut rng, n * d);
    let y: Vec<f64> = x
        .iter()
        .zip(normal(&mut rng, n * d))
        .map(|(a, b)| a + 0.8 * b)
        .collect();
    let q = orthogonal(&mut rng, d);
    let rotated_scaled: Vec<f64> = times(&y, n, d, &q).into_iter().map(|v| v * 7.5).collect();
    for opts in ALL {
        let plain = cka(m(&x, d, "X"), m(&y, d, "Y"), opts).unwrap();
        let moved = cka(m(&x, d, "X"), m(&rotated_scaled, d, "QY"), opts).unwrap();
        assert!(
            (plain - moved).abs() < feature_form_agreement(),
            "{opts:?}: {plain} vs {moved}"
        );
    }
}

/// Scaling is done before squaring: features far outside 1 (activations of
/// 1e75, or 1e-100) give the CKA of the same features at unit scale.
#[test]
fn extreme_feature_scales_give_the_unit_scale_value() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let (n, d) = (40, 6);
    let x = normal(&mut rng, n * d);
    let y: Vec<f64> = x
        .iter()
        .zip(normal(&mut rng, n * d))
        .map(|(a, b)| a + b)
        .collect();
    for opts in ALL {
        let unit = cka(m(&x, d, "X"), m(&y, d, "Y"), opts).unwrap();
        assert!(unit > 0.2, "{opts:?}: {unit}");
        for scale in [1e75, 1e-100, 1e150] {
            let (xs, ys): (Vec<f64>, Vec<f64>) = (
                x.iter().map(|v| v * scale).collect(),
                y.iter().map(|v| v * scale).collect(),
            );
            let scaled = cka(m(&xs, d, "X"), m(&ys, d, "Y"), opts).unwrap();
            assert!(
                (scaled - unit).abs() < feature_form_agreement().max(1e-9),
                "{opts:?} at {scale:e}: {scaled} vs {unit}"
            );
            let mixed = cka(m(&xs, d, "X"), m(&y, d, "Y"), opts).unwrap();
            assert!(
                (mixed - unit).abs() < feature_form_agreement().max(1e-9),
                "{opts:?}, one side at {scale:e}: {mixed} vs {unit}"
            );
        }
    }
}

#[test]
fn features_of_width_zero_are_an_error_not_a_panic() {
    let empty: Vec<f64> = Vec::new();
    let x: Vec<f64> = (0..40).map(|v| v as f64).collect();
    let a = MatRef::new(&empty, 10, 0, "A").unwrap();
    for opts in ALL {
        let err = cka(a, m(&x, 4, "B"), opts).unwrap_err().to_string();
        assert!(err.contains("A: 10 × 0"), "{opts:?}: {err}");
        let err = cka(m(&x, 4, "B"), a, opts).unwrap_err().to_string();
        assert!(err.contains("A: 10 × 0"), "{opts:?}: {err}");
    }
}

#[test]
fn debiased_is_near_zero_for_independent_data_where_biased_is_not() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (n, d) = (30, 100);
    let (mut biased, mut debiased) = (0.0, 0.0);
    for _ in 0..10 {
        let (x, y) = (normal(&mut rng, n * d), normal(&mut rng, n * d));
        biased += cka(m(&x, d, "X"), m(&y, d, "Y"), ALL[0]).unwrap() / 10.0;
        debiased += cka(m(&x, d, "X"), m(&y, d, "Y"), ALL[1]).unwrap() / 10.0;
    }
    assert!(
        biased > 0.5,
        "biased CKA of independent data at n=30, d=100: {biased}"
    );
    assert!(debiased.abs() < 0.05, "debiased: {debiased}");
}

#[test]
fn feature_and_gram_forms_agree_on_wide_and_tall_data() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for (n, d1, d2) in [(300, 20, 35), (25, 300, 200)] {
        let (x, y) = (normal(&mut rng, n * d1), normal(&mut rng, n * d2));
        for opts in &ALL[..2] {
            let f = cka_in_form(m(&x, d1, "X"), m(&y, d2, "Y"), *opts, Form::Feature).unwrap();
            let g = cka_in_form(m(&x, d1, "X"), m(&y, d2, "Y"), *opts, Form::Gram).unwrap();
            assert!((f - g).abs() < 1e-6, "{opts:?} n={n}: {f} vs {g}");
        }
    }
}

#[test]
fn undefined_cka_is_an_error_not_nan() {
    let constant = vec![3.0; 40];
    let x: Vec<f64> = (0..40).map(|v| v as f64).collect();
    let err = cka(m(&constant, 4, "layer 7"), m(&x, 4, "other"), ALL[0])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer 7") && err.contains("zero variance"),
        "{err}"
    );
    let err = cka(m(&x[..12], 4, "X"), m(&x[..12], 4, "Y"), ALL[1])
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 samples"), "{err}");
    let err = cka(m(&x, 4, "X"), m(&x[..20], 4, "Y"), ALL[0])
        .unwrap_err()
        .to_string();
    assert!(err.contains("Y: 5 samples, the other side has 10"), "{err}");
    let mut nan = x.clone();
    nan[5] = f64::NAN;
    let err = cka(m(&x, 4, "X"), m(&nan, 4, "Y"), ALL[0])
        .unwrap_err()
        .to_string();
    assert!(err.contains("Y: non-finite"), "{err}");
    let mut mb = MinibatchCka::new();
    mb.update(m(&constant, 4, "a"), m(&x, 4, "b")).unwrap();
    let err = mb.value("block 3").unwrap_err().to_string();
    assert!(err.starts_with("block 3:"), "{err}");
}

#[test]
fn ece_of_a_calibrated_predictor_is_near_zero() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let n = 200_000;
    let mut logits = Vec::with_capacity(n * 2);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        // Class 0 with probability p; the logits say exactly p.
        let p: f64 = rng.random_range(0.5..0.999);
        logits.extend([(p / (1.0 - p)).ln(), 0.0]);
        labels.push(if rng.random_bool(p) { 0 } else { 1 });
    }
    let view = MatRef::new(&logits, n, 2, "logits").unwrap();
    let c = calibration(view, &labels, 15, Binning::Uniform).unwrap();
    assert!(c.ece < 0.005, "ECE {}", c.ece);
    let over: Vec<f64> = logits.iter().map(|v| v * 3.0).collect();
    let c = calibration(
        MatRef::new(&over, n, 2, "logits").unwrap(),
        &labels,
        15,
        Binning::Uniform,
    )
    .unwrap();
    assert!(c.ece > 0.05, "over-confident ECE {}", c.ece);
}

#[test]
fn layer_matrix_equals_pairwise_cka_whichever_form_it_picks() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    // Few layers of tall data (feature form) and many of wide data (Gram form).
    for (n, d, layers) in [(200, 8, 2), (40, 60, 5)] {
        let a: Vec<Vec<f64>> = (0..layers).map(|_| normal(&mut rng, n * d)).collect();
        let b: Vec<Vec<f64>> = (0..layers).map(|_| normal(&mut rng, n * d)).collect();
        let va: Vec<_> = a.iter().map(|x| m(x, d, "a")).collect();
        let vb: Vec<_> = b.iter().map(|x| m(x, d, "b")).collect();
        for opts in &ALL[..2] {
            let matrix = cka_matrix(&va, &vb, *opts).unwrap();
            for i in 0..layers {
                for j in 0..layers {
                    let pair = cka(va[i], vb[j], *opts).unwrap();
                    assert!(
                        (matrix[i][j] - pair).abs() < feature_form_agreement().max(1e-9),
                        "{opts:?} ({i}, {j}): {} vs {pair}",
                        matrix[i][j]
                    );
                }
            }
        }
    }
}
