"""Whole processes, the way a user meets them: `sim-metrics cka` and
`sim-metrics knn` on `.npy` feature files (streamed in blocks of rows) against
a Python process that loads the same files with numpy and computes the same
measure, in one run on one machine. Prints wall time and peak resident memory
of each process, the table that goes into BENCHMARKS.md.

    .venv/bin/pip install -r scripts/requirements-metrics.txt
    .venv/bin/python scripts/bench_stream.py                      # 100,000 × 1,024
    .venv/bin/python scripts/bench_stream.py --rows 100000 --cols 4096

The inputs (seeded, low rank + noise, f32) are written to a temporary folder
(2 × rows × cols × 4 bytes, plus the k-NN queries). numpy computes linear CKA
in f64 from the centred feature products, as sim-metrics does, and k-NN as
DINO's eval_knn (f32 cosine similarities, top-k, exp(s / 0.07) votes) in
chunks of 512 queries. Threads: 2 everywhere.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from rust_bench import binary_executable

THREADS = "2"

NUMPY_CKA = """
import sys, numpy as np
x = np.load(sys.argv[1]).astype(np.float64); x -= x.mean(0)
y = np.load(sys.argv[2]).astype(np.float64); y -= y.mean(0)
xy = np.linalg.norm(x.T @ y) ** 2
print(xy / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))
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


def measure(command, env):
    """Wall seconds, peak resident memory (MiB) and stdout of one process, from GNU time."""
    result = subprocess.run(["/usr/bin/time", "-f", "%e %M", *command], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"{command} failed: {result.stderr}")
    seconds, kib = result.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(kib) / 1024, result.stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=4000)
    args = parser.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=THREADS, OPENBLAS_NUM_THREADS=THREADS, MKL_NUM_THREADS=THREADS, RAYON_NUM_THREADS=THREADS)
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
        runs = {
            "cka": (
                [exe, "cka", "--a", x, "--b", y],
                [sys.executable, "-c", NUMPY_CKA, x, y],
            ),
            "knn": (
                [exe, "knn", "--bank-feats", x, "--bank-labels", str(tmp / "bank_labels.npy"), "--query-feats", str(tmp / "queries.npy"),
                 "--query-labels", str(tmp / "query_labels.npy"), "--k", "20"],
                [sys.executable, "-c", NUMPY_KNN, x, str(tmp / "bank_labels.npy"), str(tmp / "queries.npy"), str(tmp / "query_labels.npy")],
            ),
        }
        gib = args.rows * args.cols * 4 / 2**30
        print(f"inputs: {args.rows:,} × {args.cols:,} f32 ({gib:.2f} GiB per file); k-NN: that bank, {args.queries:,} queries, k = 20")
        print("| measure | sim-metrics (s) | numpy (s) | speed vs numpy | sim-metrics peak (MiB) | numpy peak (MiB) | sim-metrics vs numpy value |")
        print("|---|---|---|---|---|---|---|")
        for name, (ours, theirs) in runs.items():
            ours_s, ours_mib, ours_out = measure(ours, env)
            theirs_s, theirs_mib, theirs_out = measure(theirs, env)
            value = json.loads(ours_out)["cka" if name == "cka" else "knn_top1"]
            print(f"| {name} | {ours_s:.2f} | {theirs_s:.2f} | {theirs_s / ours_s:.2f}x | {ours_mib:.0f} | {theirs_mib:.0f} | {value:.6f} vs {float(theirs_out):.6f} |")

if __name__ == "__main__":
    main()
