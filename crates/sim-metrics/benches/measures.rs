//! Timings of sim-metrics on the inputs scripts/bench_metrics.py writes, so
//! Rust, numpy and PyTorch run on the same arrays in one run. Prints one JSON
//! object: measure → best-of-N seconds. Run through the script (BENCHMARKS.md):
//!
//!     cargo bench -p sim-metrics --bench measures -- INPUT_DIR [MEASURE ...]
//!
//! Measures named after the folder: only those (their inputs alone need be there).

use sim_metrics::arrays::{FloatArray, load_labels, load_matrix};
use sim_metrics::blas::BlasFloat;
use sim_metrics::calibration::{Binning, calibration};
use sim_metrics::cka::{CkaOptions, cka, cka_matrix};
use sim_metrics::knn::knn_accuracy;
use sim_metrics::stats::{CkaBootstrap, LEVEL, draw_resamples};
use std::time::Instant;

fn best_of<R>(repeats: usize, mut f: impl FnMut() -> R) -> f64 {
    (0..repeats)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// This machine's f64 GEMM rate through the kernels the measures use
/// (OpenBLAS where it is loaded, else the `gemm` crate).
fn dgemm_seconds(n: usize) -> f64 {
    let a: Vec<f64> = (0..n * n).map(|i| (i % 7) as f64).collect();
    let mut c = vec![0.0; n * n];
    if let Some(blas) = sim_metrics::blas::blas() {
        return best_of(3, || {
            f64::gemm(blas, false, false, n, n, n, &a, &a, 0.0, &mut c)
        });
    }
    best_of(3, || unsafe {
        gemm::gemm(
            n,
            n,
            n,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            n as isize,
            a.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        );
    })
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (dir, only) = args
        .split_first()
        .expect("usage: measures INPUT_DIR [MEASURE ...]");
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let load = |name: &str| load_matrix(&format!("{dir}/{name}.npy")).unwrap();
    let labels = |name: &str| load_labels(&format!("{dir}/{name}.npy")).unwrap();
    let opts = CkaOptions::default();
    let mut out = serde_json::Map::new();
    eprintln!(
        "products: {}",
        sim_metrics::blas::blas().map_or("the gemm crate".to_string(), |b| format!(
            "OpenBLAS ({})",
            b.name
        ))
    );
    let mut record = |name: &str, secs: f64| {
        eprintln!("{name}: {secs:.4} s");
        out.insert(name.into(), secs.into());
    };

    if wanted("gemm_f64_2000") {
        record("gemm_f64_2000", dgemm_seconds(2000));
    }
    if wanted("cka_linear_10000x768") {
        let (x, y) = (load("cka_x_10000"), load("cka_y_10000"));
        record(
            "cka_linear_10000x768",
            best_of(3, || cka(x.view(), y.view(), opts).unwrap()),
        );
    }
    if wanted("cka_linear_2000x384") {
        let (x, y) = (load("cka_x_2000"), load("cka_y_2000"));
        record(
            "cka_linear_2000x384",
            best_of(5, || cka(x.view(), y.view(), opts).unwrap()),
        );
    }
    if wanted("cka_matrix_13x13") {
        let a: Vec<FloatArray> = (0..13).map(|i| load(&format!("layer_a_{i}"))).collect();
        let b: Vec<FloatArray> = (0..13).map(|i| load(&format!("layer_b_{i}"))).collect();
        let (va, vb): (Vec<_>, Vec<_>) = (
            a.iter().map(|m| m.view()).collect(),
            b.iter().map(|m| m.view()).collect(),
        );
        record(
            "cka_matrix_13x13",
            best_of(2, || cka_matrix(&va, &vb, opts).unwrap()),
        );
    }
    if wanted("ece_1e6") {
        let (logits, y) = (load("ece_logits"), labels("ece_labels"));
        record(
            "ece_1e6",
            best_of(3, || {
                calibration(logits.view(), &y, 15, Binning::Uniform).unwrap()
            }),
        );
    }
    if wanted("knn_10000x768_4000") {
        let (bank, queries) = (load("knn_bank"), load("knn_queries"));
        let (by, qy) = (labels("knn_bank_labels"), labels("knn_query_labels"));
        record(
            "knn_10000x768_4000",
            best_of(2, || {
                knn_accuracy(bank.view(), &by, queries.view(), &qy, &[20], 0.07).unwrap()
            }),
        );
    }
    if wanted("cka_bootstrap_2004x96_1000") {
        // A run's similarity interval in the tables stage: HAM10000's 2,004
        // test images, width-96 features, 1,000 resamples.
        let (x, y) = (load("boot_x"), load("boot_y"));
        let resamples = draw_resamples(x.rows, 1000, 0);
        record(
            "cka_bootstrap_2004x96_1000",
            best_of(2, || {
                CkaBootstrap::new(x.view(), y.view())
                    .unwrap()
                    .interval(&resamples, LEVEL)
            }),
        );
    }
    println!("{}", serde_json::Value::Object(out));
}
