"""Times sim-metrics against numpy and PyTorch (CPU) on the same inputs, in one
run on one machine, and prints the table that goes into BENCHMARKS.md.

    .venv/bin/pip install -r scripts/requirements-bench.txt
    .venv/bin/python scripts/bench_metrics.py

It writes the inputs (seeded) to a temporary folder, times the numpy and
PyTorch implementations of the same formulas (f64 for CKA, as sim-metrics;
f32 for the k-NN similarities, as DINO), then builds and runs the Rust bench
binary (crates/sim-metrics/benches/measures.rs) on the same files. Threads: 2
everywhere (this machine's cores).
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rust_bench import bench_executable

THREADS = 2
torch.set_num_threads(THREADS)
rng = np.random.default_rng(7)


def best_of(repeats, f):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def low_rank(n, d, rank=32):
    return (rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) + rng.normal(size=(n, d))).astype(np.float32)


# --- the formulas, numpy ---------------------------------------------------
def np_cka(x, y):
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def np_ece(logits, labels, bins=15):
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    conf, pred = p.max(1), p.argmax(1)
    b = np.clip(np.ceil(conf * bins).astype(int), 1, bins) - 1
    count = np.bincount(b, minlength=bins)
    acc = np.bincount(b, weights=(pred == labels), minlength=bins)
    cs = np.bincount(b, weights=conf, minlength=bins)
    return np.abs(acc - cs).sum() / len(labels)


def np_knn(bank, bank_y, q, q_y, k=20, t=0.07, chunk=512):
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    classes = int(bank_y.max()) + 1
    hits = 0
    for s in range(0, len(q), chunk):
        sims = q[s : s + chunk] @ bank.T
        idx = np.argpartition(-sims, k, axis=1)[:, :k]
        w = np.exp(np.take_along_axis(sims, idx, 1) / t)
        votes = np.zeros((len(idx), classes))
        np.add.at(votes, (np.arange(len(idx))[:, None], bank_y[idx]), w)
        hits += int((votes.argmax(1) == q_y[s : s + chunk]).sum())
    return hits / len(q)


# --- the same, PyTorch -------------------------------------------------------
def torch_cka(x, y):
    x = torch.from_numpy(x).double()
    y = torch.from_numpy(y).double()
    x = x - x.mean(0)
    y = y - y.mean(0)
    return (torch.linalg.norm(y.T @ x) ** 2 / (torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y))).item()


def torch_ece(logits, labels, bins=15):
    p = torch.softmax(torch.from_numpy(logits).double(), 1)
    conf, pred = p.max(1)
    y = torch.from_numpy(labels)
    b = torch.clamp(torch.ceil(conf * bins).long(), 1, bins) - 1
    acc = torch.zeros(bins, dtype=torch.float64).index_add_(0, b, (pred == y).double())
    cs = torch.zeros(bins, dtype=torch.float64).index_add_(0, b, conf)
    return ((acc - cs).abs().sum() / len(y)).item()


def torch_knn(bank, bank_y, q, q_y, k=20, t=0.07, chunk=512):
    # DINO's eval_knn, chunked the same way.
    bank = torch.nn.functional.normalize(torch.from_numpy(bank), dim=1)
    q = torch.nn.functional.normalize(torch.from_numpy(q), dim=1)
    by, qy = torch.from_numpy(bank_y), torch.from_numpy(q_y)
    classes = int(by.max()) + 1
    hits = 0
    for s in range(0, len(q), chunk):
        sims = q[s : s + chunk] @ bank.T
        d, idx = sims.topk(k, dim=1)
        one_hot = torch.zeros(len(idx) * k, classes).scatter_(1, by[idx].view(-1, 1), 1)
        votes = (one_hot.view(len(idx), k, classes) * (d / t).exp().view(len(idx), k, 1)).sum(1)
        hits += int((votes.argmax(1) == qy[s : s + chunk]).sum())
    return hits / len(q)


def main():
    inputs = Path(tempfile.mkdtemp(prefix="simlab-bench-"))
    arrays = {
        "cka_x_10000": low_rank(10000, 768),
        "cka_y_10000": low_rank(10000, 768),
        "cka_x_2000": low_rank(2000, 384),
        "cka_y_2000": low_rank(2000, 384),
        "ece_logits": (rng.normal(size=(1_000_000, 10)) * 3).astype(np.float32),
        "ece_labels": rng.integers(0, 10, 1_000_000).astype(np.int64),
        "knn_bank": low_rank(10000, 768),
        "knn_bank_labels": rng.integers(0, 10, 10000).astype(np.int64),
        "knn_queries": low_rank(4000, 768),
        "knn_query_labels": rng.integers(0, 10, 4000).astype(np.int64),
        # A run's similarity interval in the tables stage: HAM10000's 2,004
        # test images, width-96 features.
        "boot_x": low_rank(2004, 96),
        "boot_y": low_rank(2004, 96),
    }
    for i in range(13):
        arrays[f"layer_a_{i}"] = low_rank(2000, 768)
        arrays[f"layer_b_{i}"] = low_rank(2000, 768)
    for name, a in arrays.items():
        np.save(inputs / f"{name}.npy", a)
    A = arrays
    layers_a = [A[f"layer_a_{i}"] for i in range(13)]
    layers_b = [A[f"layer_b_{i}"] for i in range(13)]

    boot_x, boot_y = A["boot_x"].astype(np.float64), A["boot_y"].astype(np.float64)
    resamples = rng.integers(0, len(boot_x), (1000, len(boot_x)))

    py = {"numpy": {}, "torch": {}}
    m = np.ones((2000, 2000))
    py["numpy"]["gemm_f64_2000"] = best_of(3, lambda: m @ m)
    tm = torch.ones(2000, 2000, dtype=torch.float64)
    py["torch"]["gemm_f64_2000"] = best_of(3, lambda: tm @ tm)
    for lib, cka, ece, knn in [("numpy", np_cka, np_ece, np_knn), ("torch", torch_cka, torch_ece, torch_knn)]:
        t = py[lib]
        t["cka_linear_10000x768"] = best_of(3, lambda: cka(A["cka_x_10000"], A["cka_y_10000"]))
        t["cka_linear_2000x384"] = best_of(5, lambda: cka(A["cka_x_2000"], A["cka_y_2000"]))
        # What a user's script does: the pairwise function over every pair.
        t["cka_matrix_13x13"] = best_of(1, lambda: [[cka(x, y) for y in layers_b] for x in layers_a])
        t["ece_1e6"] = best_of(3, lambda: ece(A["ece_logits"], A["ece_labels"]))
        t["knn_10000x768_4000"] = best_of(2, lambda: knn(A["knn_bank"], A["knn_bank_labels"], A["knn_queries"], A["knn_query_labels"]))
        # What a user's script does: the pairwise CKA on each resample's rows
        # (then the 2.5th and 97.5th percentiles, which cost nothing here).
        t["cka_bootstrap_2004x96_1000"] = best_of(2, lambda: [cka(boot_x[r], boot_y[r]) for r in resamples])
        print(lib, json.dumps(t), file=sys.stderr)

    exe = bench_executable("sim-metrics", "measures")
    # The same binary twice: its pure-Rust products (the `gemm` crate, what
    # runs without OpenBLAS) and OpenBLAS (f32 blocks for CKA's feature products).
    def rust_run(blas):
        env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS), SIM_BLAS=blas)
        return json.loads(subprocess.run([exe, str(inputs)], check=True, capture_output=True, text=True, env=env).stdout)

    plain, rust = rust_run("off"), rust_run("libopenblas.so.0")

    # Multiply-adds ×2 of each measure's standard formulation.
    flops = {
        "gemm_f64_2000": 2 * 2000**3,
        "cka_linear_10000x768": 2 * 10000 * 768 * 768 * 3,
        "cka_linear_2000x384": 2 * 2000 * 384 * 384 * 3,
        "cka_matrix_13x13": 169 * 2 * 2000 * 768 * 768 * 3,
        "knn_10000x768_4000": 2 * 4000 * 10000 * 768,
    }
    peak = flops["gemm_f64_2000"] / min(py["numpy"]["gemm_f64_2000"], rust["gemm_f64_2000"], plain["gemm_f64_2000"])
    print("| measure | sim-metrics, gemm crate (s) | sim-metrics, OpenBLAS (s) | numpy (s) | PyTorch (s) | OpenBLAS vs numpy | OpenBLAS vs PyTorch | GFLOP/s (OpenBLAS) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in rust:
        p, r, n, t = plain[name], rust[name], py["numpy"][name], py["torch"][name]
        gf = f"{flops[name] / r / 1e9:.1f}" if name in flops else "—"
        print(f"| {name} | {p:.4f} | {r:.4f} | {n:.4f} | {t:.4f} | {n / r:.2f}x | {t / r:.2f}x | {gf} |")
    print(f"\nmeasured f64 GEMM peak (best of numpy, OpenBLAS and the gemm crate, 2000³): {peak / 1e9:.1f} GFLOP/s")
    print(f"numpy {np.__version__}, torch {torch.__version__}, threads {THREADS}")


if __name__ == "__main__":
    main()
