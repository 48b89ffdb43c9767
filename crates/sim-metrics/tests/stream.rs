//! The streamed measures (`sim_metrics::stream`) against the in-memory ones
//! on the same `.npy` files: linear CKA to `feature_form_agreement()` (1e-10
//! in f64, 1e-6 with OpenBLAS's f32 blocks) whatever the block size,
//! dtype or offset of the features; k-NN with the same accuracy for every k;
//! and a truncated file or mismatched files named in the error.

mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim_metrics::arrays::load_matrix;
use sim_metrics::cka::{CkaOptions, Estimator, Kernel, cka, feature_form_agreement};
use sim_metrics::knn::knn_accuracy;
use sim_metrics::stream::{knn_accuracy_file, linear_cka_files};
use std::path::Path;

#[derive(Clone, Copy)]
enum Dtype {
    F16,
    F32,
    F64,
}

/// Writes a C-ordered `.npy` of `values` (rows × cols) by hand.
fn write_npy(path: &Path, values: &[f64], rows: usize, cols: usize, dtype: Dtype) {
    let (descr, data): (&str, Vec<u8>) = match dtype {
        Dtype::F16 => (
            "<f2",
            values
                .iter()
                .flat_map(|&v| half::f16::from_f64(v).to_le_bytes())
                .collect(),
        ),
        Dtype::F32 => (
            "<f4",
            values
                .iter()
                .flat_map(|&v| (v as f32).to_le_bytes())
                .collect(),
        ),
        Dtype::F64 => (
            "<f8",
            values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
        ),
    };
    common::write_npy_bytes(path, descr, &format!("({rows}, {cols})"), &data);
}

/// Low-rank signal plus noise, shifted by `offset`: rows × cols.
fn features(
    rng: &mut ChaCha8Rng,
    basis: &[f64],
    rows: usize,
    rank: usize,
    cols: usize,
    noise: f64,
    offset: f64,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows * cols);
    for _ in 0..rows {
        let z: Vec<f64> = (0..rank).map(|_| rng.random::<f64>() - 0.5).collect();
        for j in 0..cols {
            let signal: f64 = (0..rank).map(|r| z[r] * basis[r * cols + j]).sum();
            out.push(offset + signal + noise * (rng.random::<f64>() - 0.5));
        }
    }
    out
}

#[test]
fn streamed_linear_cka_is_the_in_memory_one_whatever_the_blocks_dtype_or_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (rows, rank) = (1000, 5);
    // 400 columns: more than one of the symmetric products' column blocks.
    let basis_x: Vec<f64> = (0..rank * 400).map(|_| rng.random::<f64>()).collect();
    let x = features(&mut rng, &basis_x, rows, rank, 400, 0.3, 0.0);
    // y: the same samples through another map, far from the origin.
    let y: Vec<f64> = x
        .chunks(400)
        .flat_map(|r| (0..24).map(|j| 1e3 + r[j] * 2.0 - r[j + 16] + 0.1 * ((j * 7) as f64).sin()))
        .collect();
    for dtype in [Dtype::F64, Dtype::F32, Dtype::F16] {
        let (a, b) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
        write_npy(&a, &x, rows, 400, dtype);
        write_npy(&b, &y, rows, 24, dtype);
        let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
        let (ma, mb) = (load_matrix(a).unwrap(), load_matrix(b).unwrap());
        let whole = cka(
            ma.view(),
            mb.view(),
            CkaOptions {
                estimator: Estimator::Biased,
                kernel: Kernel::Linear,
            },
        )
        .unwrap();
        assert!(whole > 0.2 && whole < 0.95, "a case that tells: {whole}");
        for block in [1, 7, 333, 1000, 5000] {
            let streamed = linear_cka_files(a, b, block).unwrap();
            assert!(
                (streamed - whole).abs() < feature_form_agreement(),
                "block {block}: {streamed} vs {whole} in memory"
            );
        }
    }
}

/// A file against itself (or a copy of itself) is 1 to f64 rounding, as in
/// memory: with OpenBLAS too, whose symmetric and general f32 products
/// round apart on some CPUs (1 − 8e-9 here on an AMD EPYC with AVX2).
#[test]
fn a_streamed_file_against_itself_is_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let basis: Vec<f64> = (0..5 * 64).map(|_| rng.random::<f64>()).collect();
    let x = features(&mut rng, &basis, 900, 5, 64, 0.3, 2.0);
    let (a, copy) = (dir.path().join("x.npy"), dir.path().join("copy.npy"));
    write_npy(&a, &x, 900, 64, Dtype::F32);
    std::fs::copy(&a, &copy).unwrap();
    let (a, copy) = (a.to_str().unwrap(), copy.to_str().unwrap());
    for block in [7, 900] {
        for b in [a, copy] {
            let v = linear_cka_files(a, b, block).unwrap();
            assert!((v - 1.0).abs() < 1e-12, "block {block}, {b}: {v}");
        }
    }
}

#[test]
fn streamed_knn_finds_the_same_neighbours_as_the_in_memory_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let d = 16;
    let centres: Vec<f64> = (0..4 * d).map(|_| rng.random::<f64>() - 0.5).collect();
    let draw = |rng: &mut ChaCha8Rng, n: usize| -> (Vec<f64>, Vec<i64>) {
        let labels: Vec<i64> = (0..n).map(|_| rng.random_range(0..4)).collect();
        let values = labels
            .iter()
            .flat_map(|&c| {
                (0..d)
                    .map(|j| centres[c as usize * d + j] + 2.5 * (rng.random::<f64>() - 0.5))
                    .collect::<Vec<_>>()
            })
            .collect();
        (values, labels)
    };
    let (bank, bank_y) = draw(&mut rng, 700);
    let (queries, query_y) = draw(&mut rng, 150);
    let path = dir.path().join("bank.npy");
    write_npy(&path, &bank, 700, d, Dtype::F32);
    let file = path.to_str().unwrap();
    let bank_m = load_matrix(file).unwrap();
    let query_m = sim_metrics::arrays::FloatArray {
        name: "queries".into(),
        data: queries.iter().map(|v| *v as f32 as f64).collect(),
        rows: 150,
        cols: d,
    };
    let ks = [1, 5, 20];
    let whole = knn_accuracy(bank_m.view(), &bank_y, query_m.view(), &query_y, &ks, 0.07).unwrap();
    assert!(
        whole[1].top1 > 0.5 && whole[1].top1 < 1.0,
        "a case that tells: {whole:?}"
    );
    for block in [3, 64, 700, 10_000] {
        let streamed =
            knn_accuracy_file(file, &bank_y, query_m.view(), &query_y, &ks, 0.07, block).unwrap();
        assert_eq!(streamed, whole, "block {block}");
    }
}

#[test]
fn a_truncated_or_mismatched_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<f64> = (0..200).map(|i| (i as f64).sin()).collect();
    let (a, b, short) = (
        dir.path().join("a.npy"),
        dir.path().join("b.npy"),
        dir.path().join("short.npy"),
    );
    write_npy(&a, &values, 20, 10, Dtype::F32);
    write_npy(&b, &values[..150], 15, 10, Dtype::F32);
    write_npy(&short, &values, 20, 10, Dtype::F32);
    let bytes = std::fs::read(&short).unwrap();
    std::fs::write(&short, &bytes[..bytes.len() - 100]).unwrap();
    let (a, b, short) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        short.to_str().unwrap(),
    );
    let msg = linear_cka_files(a, b, 8).unwrap_err().to_string();
    assert!(msg.contains(b) && msg.contains("15 samples"), "{msg}");
    let msg = linear_cka_files(a, short, 8).unwrap_err().to_string();
    assert!(msg.contains(short), "{msg}");
}
