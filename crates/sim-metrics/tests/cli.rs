//! The `sim-metrics` binary: JSON on stdout for good input, an error naming
//! the array for bad input (never a NaN printed as a result).

mod common;

use sim_metrics::cka::feature_form_agreement;
use std::process::Command;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}.npy", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sim-metrics"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        json,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn cka_prints_one_json_object() {
    let (ok, json, err) = run(&[
        "cka",
        "--a",
        &fixture("cka_low_rank_x"),
        "--b",
        &fixture("cka_low_rank_y"),
        "--estimator",
        "debiased",
    ]);
    assert!(ok, "{err}");
    assert_eq!(json["estimator"], "debiased");
    assert_eq!(json["kernel"], "linear");
    assert_eq!(json["n"], 200);
    let tol = feature_form_agreement().max(1e-9);
    assert!((json["cka"].as_f64().unwrap() - 0.9302727232927954).abs() < tol);
    let (ok, json, err) = run(&[
        "cka",
        "--a",
        &fixture("cka_low_rank_x"),
        "--b",
        &fixture("cka_low_rank_y"),
        "--estimator",
        "debiased",
        "--batch",
        "20",
    ]);
    assert!(ok, "{err}");
    assert!((json["cka"].as_f64().unwrap() - 0.9358634944252057).abs() < tol);
}

/// Two `.npy` files and the linear biased CKA: streamed in blocks of rows,
/// the same value as the in-memory measure.
#[test]
fn biased_linear_cka_of_npy_files_is_streamed_to_the_same_value() {
    let (x, y) = (fixture("cka_low_rank_x"), fixture("cka_low_rank_y"));
    let (ma, mb) = (
        sim_metrics::arrays::load_matrix(&x).unwrap(),
        sim_metrics::arrays::load_matrix(&y).unwrap(),
    );
    let opts = sim_metrics::cka::CkaOptions {
        estimator: sim_metrics::cka::Estimator::Biased,
        kernel: sim_metrics::cka::Kernel::Linear,
    };
    let in_memory = sim_metrics::cka::cka(ma.view(), mb.view(), opts).unwrap();
    for block in ["7", "4096"] {
        let (ok, json, err) = run(&["cka", "--a", &x, "--b", &y, "--block-rows", block]);
        assert!(ok, "{err}");
        assert_eq!(json["n"], 200);
        assert!(
            (json["cka"].as_f64().unwrap() - in_memory).abs() < feature_form_agreement(),
            "{json} vs {in_memory}"
        );
    }
}

#[test]
fn ece_and_knn_print_their_measures() {
    let (ok, json, err) = run(&[
        "ece",
        "--logits",
        &fixture("ece_logits"),
        "--labels",
        &fixture("ece_labels"),
    ]);
    assert!(ok, "{err}");
    assert!(
        json["ece"].as_f64().unwrap() > 0.0
            && json["mce"].as_f64().unwrap() >= json["ece"].as_f64().unwrap()
    );
    assert_eq!(json["reliability"].as_array().unwrap().len(), 15);
    let (ok, json, err) = run(&[
        "knn",
        "--bank-feats",
        &fixture("knn_bank"),
        "--bank-labels",
        &fixture("knn_bank_labels"),
        "--query-feats",
        &fixture("knn_queries"),
        "--query-labels",
        &fixture("knn_query_labels"),
        "--k",
        "5,20",
    ]);
    assert!(ok, "{err}");
    assert_eq!(json["k"], 5);
    assert_eq!(json["knn_top1"], json["top1_per_k"]["5"]);
}

#[test]
fn bad_input_is_an_error_naming_the_array() {
    // Shapes that do not match: 200 samples against 60.
    let (ok, _, err) = run(&[
        "cka",
        "--a",
        &fixture("cka_low_rank_x"),
        "--b",
        &fixture("cka_random_n_gt_d_y"),
    ]);
    assert!(!ok);
    assert!(
        err.contains("cka_random_n_gt_d_y.npy") && err.contains("60 samples"),
        "{err}"
    );
    // Integer labels given as features.
    let (ok, _, err) = run(&[
        "cka",
        "--a",
        &fixture("ece_labels"),
        "--b",
        &fixture("ece_labels"),
    ]);
    assert!(
        !ok && err.contains("ece_labels.npy") && err.contains("integers"),
        "{err}"
    );
    // Too few labels.
    let (ok, _, err) = run(&[
        "ece",
        "--logits",
        &fixture("ece_logits"),
        "--labels",
        &fixture("knn_query_labels"),
    ]);
    assert!(!ok && err.contains("100 labels for 500 rows"), "{err}");
    // A missing file and a missing safetensors tensor.
    let (ok, _, err) = run(&["cka", "--a", "/nonexistent.npy", "--b", "/nonexistent.npy"]);
    assert!(!ok && err.contains("/nonexistent.npy"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("feats.safetensors");
    let bytes: Vec<u8> = (0..24).flat_map(|v| (v as f32).to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![6, 4], &bytes).unwrap();
    safetensors::serialize_to_file([("layer_1.cls", view)], None, &st).unwrap();
    let spec = format!("{}:layer_2.cls", st.display());
    let (ok, _, err) = run(&["cka", "--a", &spec, "--b", &spec]);
    assert!(
        !ok && err.contains("no tensor `layer_2.cls`") && err.contains("layer_1.cls"),
        "{err}"
    );
    // Zero-variance features: CKA undefined, said so, no NaN printed.
    let zeros = dir.path().join("zeros.safetensors");
    let z = vec![0u8; 24 * 4];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![6, 4], &z).unwrap();
    safetensors::serialize_to_file([("x", view)], None, &zeros).unwrap();
    let (ok, out, err) = run(&[
        "cka",
        "--a",
        &format!("{}:x", zeros.display()),
        "--b",
        &format!("{}:layer_1.cls", st.display()),
    ]);
    assert!(
        !ok && out.is_null() && err.contains("zero variance"),
        "{err}"
    );
}

/// A `SIM_BLAS` naming a library that does not load is an error naming the
/// variable and the file, given before any work, not a panic.
#[test]
fn a_sim_blas_that_does_not_load_is_an_error_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_sim-metrics"))
        .args([
            "cka",
            "--a",
            &fixture("cka_low_rank_x"),
            "--b",
            &fixture("cka_low_rank_y"),
        ])
        .env("SIM_BLAS", "/nonexistent/libblas.so")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("SIM_BLAS=/nonexistent/libblas.so") && !err.contains("panicked"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no result printed");
}

/// A label far above any class count (1e12) is an error naming the labels,
/// not an abort on an 8 TB allocation for its votes.
#[test]
fn a_huge_knn_label_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.npy");
    let n = sim_metrics::arrays::load_labels(&fixture("knn_query_labels")).unwrap();
    let mut values = n.clone();
    values[3] = 1_000_000_000_000;
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    common::write_npy_bytes(&labels, "<i8", &format!("({},)", values.len()), &data);
    let (ok, out, err) = run(&[
        "knn",
        "--bank-feats",
        &fixture("knn_bank"),
        "--bank-labels",
        &fixture("knn_bank_labels"),
        "--query-feats",
        &fixture("knn_queries"),
        "--query-labels",
        labels.to_str().unwrap(),
        "--k",
        "5",
    ]);
    assert!(!ok && out.is_null(), "{err}");
    assert!(
        err.contains("query labels")
            && err.contains("label 1000000000000")
            && !err.contains("memory allocation"),
        "{err}"
    );
}

/// A `.npy` whose header claims more rows than its bytes hold, read whole
/// (ECE, debiased CKA): an error naming the file and both counts.
#[test]
fn a_npy_shorter_than_its_header_is_an_error_naming_the_file_and_both_counts() {
    let dir = tempfile::tempdir().unwrap();
    let logits = dir.path().join("short.npy");
    let data: Vec<u8> = (0..70).flat_map(|v| (v as f64).to_le_bytes()).collect();
    common::write_npy_bytes(&logits, "<f8", "(500, 7)", &data);
    let (ok, _, err) = run(&[
        "ece",
        "--logits",
        logits.to_str().unwrap(),
        "--labels",
        &fixture("ece_labels"),
    ]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("short.npy") && err.contains("3500 values") && err.contains("holds 70"),
        "{err}"
    );
    assert!(!err.contains("failed to fill whole buffer"), "{err}");
}

#[test]
fn transferability_prints_each_score_asked_streamed_or_held_whole() {
    let features = format!(
        "{}/tests/fixtures/transferability/three_classes_x.npy",
        env!("CARGO_MANIFEST_DIR")
    );
    let labels = features.replace("_x.npy", "_y.npy");
    let (ok, json, err) = run(&[
        "transferability",
        "--features",
        &features,
        "--labels",
        &labels,
        "--score",
        "logme,transrate",
        "--block-rows",
        "64",
    ]);
    assert!(ok, "{err}");
    assert_eq!(json["n"], 300);
    assert_eq!(json["features"], 12);
    assert_eq!(json["classes"], 3);
    let scores = json["scores"].as_object().unwrap();
    assert_eq!(scores.keys().collect::<Vec<_>>(), ["logme", "transrate"]);
    // scripts/transferability_reference.py's values.
    assert!((scores["logme"].as_f64().unwrap() - -0.3078909900890711).abs() < 1e-9);
    assert!((scores["transrate"].as_f64().unwrap() - 1.1323126307820814).abs() < 1e-9);
    let (ok, json, err) = run(&[
        "transferability",
        "--features",
        &features,
        "--labels",
        &labels,
    ]);
    assert!(ok, "{err}");
    assert_eq!(json["scores"].as_object().unwrap().len(), 6);
    let (ok, _, err) = run(&[
        "transferability",
        "--features",
        &features,
        "--labels",
        &fixture("cka_low_rank_x"),
    ]);
    assert!(!ok);
    assert!(err.contains("cka_low_rank_x.npy"), "{err}");
}
