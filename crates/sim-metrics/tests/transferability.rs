//! The transferability scores against the independent numpy/scipy/
//! scikit-learn implementations of scripts/transferability_reference.py
//! (fixtures committed in tests/fixtures/transferability), the inputs each
//! must refuse by name, and the streamed scores against the in-memory ones.

use sim_metrics::arrays::{load_labels, load_matrix};
use sim_metrics::fit::weighted_tau;
use sim_metrics::transferability::{Score, transferability, transferability_file};

/// Each score against the reference: |got − want| ≤ TOL · max(1, |want|).
const TOL: f64 = 1e-6;
/// A `.npy` file read in blocks against the same features held whole.
const STREAM_TOL: f64 = 1e-9;

const CASES: [&str; 6] = [
    "three_classes",
    "seven_imbalanced",
    "wide",
    "constant_feature",
    "singleton_class",
    "labels_3_and_9",
];

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/transferability/{name}.npy",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn expected() -> serde_json::Value {
    let path = format!(
        "{}/tests/fixtures/transferability/expected.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn score(case: &str, score: Score) -> Result<f64, String> {
    let x = load_matrix(&fixture(&format!("{case}_x"))).unwrap();
    let y = load_labels(&fixture(&format!("{case}_y"))).unwrap();
    transferability(x.view(), &y, "labels", &[score])
        .map(|v| v[0])
        .map_err(|e| e.to_string())
}

#[test]
fn every_score_matches_the_reference_on_every_case() {
    let exp = expected();
    for case in CASES {
        for s in Score::ALL {
            let want = &exp[case][s.name()];
            match want.as_f64() {
                Some(want) => {
                    let got = score(case, s).unwrap_or_else(|e| panic!("{case} {s}: {e}"));
                    eprintln!(
                        "DBG {case} {s} {got} {want} {:.2e}",
                        (got - want).abs() / want.abs().max(1.0)
                    );
                    assert!(
                        (got - want).abs() <= TOL * want.abs().max(1.0),
                        "{case} {s}: {got} vs the reference's {want}"
                    );
                }
                None => assert!(
                    score(case, s).is_err(),
                    "{case} {s}: the reference has no value, ours must be an error"
                ),
            }
        }
    }
}

#[test]
fn gbc_names_the_constant_feature_and_the_class_of_one_sample() {
    let constant = score("constant_feature", Score::Gbc).unwrap_err();
    assert!(
        constant.contains("feature 5 has no variance within class 0"),
        "{constant}"
    );
    let singleton = score("singleton_class", Score::Gbc).unwrap_err();
    assert!(
        singleton.contains("within class 2 (1 sample(s))"),
        "{singleton}"
    );
}

#[test]
fn sfda_refuses_more_features_than_samples_saying_why() {
    let e = score("wide", Score::Sfda).unwrap_err();
    assert!(e.contains("within-class scatter is singular"), "{e}");
    assert!(e.contains("fewer samples than features"), "{e}");
}

#[test]
fn labels_are_checked_before_anything_is_computed() {
    let x = load_matrix(&fixture("three_classes_x")).unwrap();
    let one_class = vec![4i64; x.rows];
    let e = transferability(x.view(), &one_class, "y.npy", &[Score::Logme]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "y.npy: 1 distinct label(s): a transferability score compares at least two classes"
    );
    let short = vec![0i64; x.rows - 1];
    let e = transferability(x.view(), &short, "y.npy", &[Score::Logme]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("y.npy: 299 labels for the 300 samples"),
        "{e}"
    );
    let mut nan = x.clone();
    nan.data[7] = f64::NAN;
    let y = load_labels(&fixture("three_classes_y")).unwrap();
    assert!(transferability(nan.view(), &y, "y", &[Score::Logme]).is_err());
}

#[test]
fn n_leep_needs_a_sample_per_mixture_component() {
    let x = load_matrix(&fixture("three_classes_x")).unwrap();
    let y = load_labels(&fixture("three_classes_y")).unwrap();
    let few = x.view().rows_range(0, 12);
    let e = transferability(few, &y[..12], "y", &[Score::Nleep]).unwrap_err();
    assert!(
        e.to_string().contains("needs at least as many samples"),
        "{e}"
    );
}

#[test]
fn a_file_read_in_blocks_gives_the_scores_of_the_features_held_whole() {
    let scores = [Score::Logme, Score::Hscore, Score::Gbc, Score::Transrate];
    for case in ["seven_imbalanced", "wide"] {
        let path = fixture(&format!("{case}_x"));
        let x = load_matrix(&path).unwrap();
        let y = load_labels(&fixture(&format!("{case}_y"))).unwrap();
        let whole = transferability(x.view(), &y, "y", &scores).unwrap();
        for block_rows in [1, 7, 4096] {
            let streamed = transferability_file(&path, &y, "y", &scores, block_rows).unwrap();
            for ((s, a), b) in scores.iter().zip(&whole).zip(&streamed) {
                assert!(
                    (a - b).abs() <= STREAM_TOL * a.abs().max(1.0),
                    "{case} {s}, blocks of {block_rows}: {b} streamed vs {a}"
                );
            }
        }
    }
}

#[test]
fn n_leep_does_not_depend_on_the_number_of_threads() {
    let x = load_matrix(&fixture("seven_imbalanced_x")).unwrap();
    let y = load_labels(&fixture("seven_imbalanced_y")).unwrap();
    let with = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| transferability(x.view(), &y, "y", &[Score::Nleep]).unwrap()[0])
    };
    assert_eq!(with(1).to_bits(), with(3).to_bits());
}

#[test]
fn weighted_tau_matches_scipy_with_and_without_ties() {
    let exp = expected();
    let cases = exp["weighted_tau"].as_object().unwrap();
    assert_eq!(cases.len(), 4);
    let values = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    for (name, case) in cases {
        let got = weighted_tau(&values(&case["x"]), &values(&case["y"])).unwrap();
        let want = case["tau"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-12,
            "{name}: {got} vs scipy's {want}"
        );
    }
    assert!(weighted_tau(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_err());
}
