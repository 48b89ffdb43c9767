"""Whole processes, the way a user meets them: `sim-metrics cka` and
`sim-metrics knn` on `.npy` feature files (streamed in blocks of rows) against
a Python process that loads the same files with numpy and computes the same
measure, in one run on one machine. Prints wall time and peak resident memory
of each process, the table that goes into BENCHMARKS.md.

    .venv/bin/pip install -r scripts/requirements-metrics.txt
    .venv/bin/python scripts/bench_stream.py                      # 100,000 × 1,024
    .venv/bin/python scripts/bench_stream.py --rows 100000 --cols 4096

The inputs (seeded, low rank + noise, f32) are written to a temporary folder
(2 × rows × cols × 4 bytes, plus the k-NN queries). numpy (and PyTorch, where
installed) compute linear CKA from the centred feature products (in f64, as
sim-metrics sums; numpy in f32 too), and k-NN as DINO's eval_knn (f32 cosine
similarities, top-k, exp(s / 0.07) votes) in chunks of 512 queries. The
sim-metrics binary runs twice: on its pure-Rust products (`SIM_BLAS=off`)
and on OpenBLAS (`libopenblas0-pthread`). Threads: 2 everywhere.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from rust_bench import binary_executable, threads_env, timed as measure

THREADS = "2"

NUMPY_CKA = """
import sys, numpy as np
x = np.load(sys.argv[1]).astype(np.float64); x -= x.mean(0)
y = np.load(sys.argv[2]).astype(np.float64); y -= y.mean(0)
xy = np.linalg.norm(x.T @ y) ** 2
print(xy / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))
"""

NUMPY_CKA_F32 = NUMPY_CKA.replace("np.float64", "np.float32")

TORCH_CKA = """
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
x = torch.from_numpy(np.load(sys.argv[1])).double(); x -= x.mean(0)
y = torch.from_numpy(np.load(sys.argv[2])).double(); y -= y.mean(0)
print((torch.linalg.norm(x.T @ y) ** 2 / (torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y))).item())
"""

TORCH_KNN = """
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[5]))
bank = torch.nn.functional.normalize(torch.from_numpy(np.load(sys.argv[1])), dim=1)
by = torch.from_numpy(np.load(sys.argv[2]))
q = torch.nn.functional.normalize(torch.from_numpy(np.load(sys.argv[3])), dim=1)
qy = torch.from_numpy(np.load(sys.argv[4])); k = 20; classes = int(max(by.max(), qy.max())) + 1
correct = 0
for s in range(0, len(q), 512):
    sims = q[s:s + 512] @ bank.T
    d, idx = sims.topk(k, dim=1)
    one_hot = torch.zeros(len(idx) * k, classes).scatter_(1, by[idx].view(-1, 1), 1)
    votes = (one_hot.view(len(idx), k, classes) * (d / 0.07).exp().view(len(idx), k, 1)).sum(1)
    correct += int((votes.argmax(1) == qy[s:s + 512]).sum())
print(correct / len(q))
"""

NUMPY_KNN = """
import sys, numpy as np
bank = np.load(sys.argv[1]); bank /= np.linalg.norm(bank, axis=1, keepdims=True)
by = np.load(sys.argv[2])
q = np.load(sys.argv[3]); q /= np.linalg.norm(q, axis=1, keepdims=True)
qy = np.load(sys.argv[4]); k = 20; classes = int(max(by.max(), qy.max())) + 1
correct = 0
for s in range(0, len(q), 512):
    sims = q[s:s + 512] @ bank.T
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    votes = np.zeros((len(top), classes))
    np.add.at(votes, (np.arange(len(top))[:, None], by[top]), np.exp(np.take_along_axis(sims, top, 1) / 0.07))
    correct += int((votes.argmax(1) == qy[s:s + 512]).sum())
print(correct / len(q))
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=4000)
    args = parser.parse_args()
    env = threads_env(THREADS)
    exe = binary_executable("sim-metrics", "sim-metrics")
    rng = np.random.default_rng(11)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        basis = rng.normal(size=(32, args.cols)).astype(np.float32)
        for name, mix in [("x", 1.0), ("y", 0.5)]:
            # Written in chunks: the inputs need not fit in memory either.
            out = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=np.float32, shape=(args.rows, args.cols))
            gen = np.random.default_rng(3)
            for s in range(0, args.rows, 10_000):
                n = min(10_000, args.rows - s)
                z = gen.normal(size=(n, 32)).astype(np.float32)
                out[s:s + n] = mix * (z @ basis) + rng.normal(size=(n, args.cols)).astype(np.float32)
            out.flush()
            del out
        labels = rng.integers(0, 10, size=args.rows)
        np.save(tmp / "bank_labels.npy", labels)
        queries = np.load(tmp / "y.npy", mmap_mode="r")[: args.queries] + 3 * rng.normal(size=(args.queries, args.cols)).astype(np.float32)
        np.save(tmp / "queries.npy", queries.astype(np.float32))
        np.save(tmp / "query_labels.npy", labels[: args.queries])
        x, y = str(tmp / "x.npy"), str(tmp / "y.npy")
        knn_files = [x, str(tmp / "bank_labels.npy"), str(tmp / "queries.npy"), str(tmp / "query_labels.npy")]
        py = sys.executable
        # Per measure: our CLI (run with its pure-Rust products and with
        # OpenBLAS), then the Python processes.
        runs = {
            "cka": ([exe, "cka", "--a", x, "--b", y],
                    [("numpy f64", [py, "-c", NUMPY_CKA, x, y]), ("numpy f32", [py, "-c", NUMPY_CKA_F32, x, y]),
                     ("PyTorch f64", [py, "-c", TORCH_CKA, x, y, THREADS])]),
            "knn": ([exe, "knn", "--bank-feats", x, "--bank-labels", knn_files[1], "--query-feats", knn_files[2], "--query-labels", knn_files[3], "--k", "20"],
                    [("numpy", [py, "-c", NUMPY_KNN, *knn_files]), ("PyTorch", [py, "-c", TORCH_KNN, *knn_files, THREADS])]),
        }
        try:
            import torch  # noqa: F401
        except ImportError:
            runs = {name: (ours, [t for t in theirs if not t[0].startswith("PyTorch")]) for name, (ours, theirs) in runs.items()}
        gib = args.rows * args.cols * 4 / 2**30
        print(f"inputs: {args.rows:,} × {args.cols:,} f32 ({gib:.2f} GiB per file); k-NN: that bank, {args.queries:,} queries, k = 20")
        print("| measure | process | seconds | OpenBLAS run is … faster | peak (MiB) | value |")
        print("|---|---|---|---|---|---|")
        for name, (ours, theirs) in runs.items():
            plain_s, plain_mib, plain_out = measure(ours, dict(env, SIM_BLAS="off"))
            blas_s, blas_mib, blas_out = measure(ours, dict(env, SIM_BLAS="libopenblas.so.0"))
            key = "cka" if name == "cka" else "knn_top1"
            print(f"| {name} | sim-metrics, OpenBLAS | {blas_s:.2f} | — | {blas_mib:.0f} | {json.loads(blas_out)[key]:.6f} |")
            print(f"| {name} | sim-metrics, gemm crate | {plain_s:.2f} | {plain_s / blas_s:.2f}x | {plain_mib:.0f} | {json.loads(plain_out)[key]:.6f} |")
            for label, command in theirs:
                t_s, t_mib, t_out = measure(command, env)
                print(f"| {name} | {label} | {t_s:.2f} | {t_s / blas_s:.2f}x | {t_mib:.0f} | {float(t_out):.6f} |")

if __name__ == "__main__":
    main()
