"""Times `sim-metrics similarity` against the numpy/scipy implementation of
each measure (scripts/similarity_reference.py), whole processes on the same
files, in one run on one machine, and prints the table that goes into
BENCHMARKS.md ("Similarity measures besides CKA").

    .venv/bin/pip install -r scripts/requirements-metrics.txt
    .venv/bin/python scripts/bench_similarity.py                 # 10,000 × 768
    .venv/bin/python scripts/bench_similarity.py --rows 2000     # a smaller test set

The inputs are two seeded f32 files (a shared low-rank part plus noise).
Each measure runs as a user meets it: the release `sim-metrics similarity`
binary, and a Python process that loads the same files and calls the
reference function. Then the cost of each measure's chance level
(`--null 20`: 20 permutations of the samples) in sim-metrics. Wall time and
peak resident memory from GNU `time`; 2 threads everywhere.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from rust_bench import binary_executable, threads_env, timed as measure

THREADS = "2"
SCRIPTS = Path(__file__).resolve().parent
MEASURES = ["svcca", "pwcca", "procrustes", "rsa", "mutual_knn", "cknna"]

PYTHON = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import similarity_reference as r
x, y = (np.load(p).astype(np.float64) for p in sys.argv[3:5])
print(getattr(r, sys.argv[2])(x, y))
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--cols", type=int, default=768)
    args = parser.parse_args()
    env = threads_env(THREADS)
    exe = binary_executable("sim-metrics", "sim-metrics")
    rng = np.random.default_rng(11)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shared = rng.normal(size=(args.rows, 32)) @ rng.normal(size=(32, args.cols))
        for name, mix in [("x", 1.0), ("y", 0.5)]:
            np.save(tmp / f"{name}.npy", (mix * shared + rng.normal(size=(args.rows, args.cols))).astype(np.float32))
        x, y = str(tmp / "x.npy"), str(tmp / "y.npy")
        print(f"inputs: {args.rows:,} × {args.cols:,} f32; defaults: SVCCA 99 % variance, RSA ≤ 2,000 samples, k = 10")
        print("| measure | process | seconds | sim-metrics is … faster | peak (MiB) | value |")
        print("|---|---|---|---|---|---|")
        for name in MEASURES:
            ours_s, ours_mib, ours_out = measure([exe, "similarity", "--measure", name, "--a", x, "--b", y], env)
            ours = json.loads(ours_out)["measures"][name]["value"]
            theirs_s, theirs_mib, theirs_out = measure([sys.executable, "-c", PYTHON, str(SCRIPTS), name, x, y], env)
            print(f"| {name} | sim-metrics | {ours_s:.2f} | — | {ours_mib:.0f} | {ours:.6f} |")
            print(f"| {name} | numpy/scipy | {theirs_s:.2f} | {theirs_s / ours_s:.2f}x | {theirs_mib:.0f} | {float(theirs_out):.6f} |")
        print()
        print("| measure | sim-metrics seconds, value only | with --null 20 | chance mean | chance bound |")
        print("|---|---|---|---|---|")
        for name in ["cka", *MEASURES]:
            plain_s, _, _ = measure([exe, "similarity", "--measure", name, "--a", x, "--b", y], env)
            null_s, _, out = measure([exe, "similarity", "--measure", name, "--a", x, "--b", y, "--null", "20"], env)
            m = json.loads(out)["measures"][name]
            print(f"| {name} | {plain_s:.2f} | {null_s:.2f} | {m['null_mean']:.4f} | {m['null_q95']:.4f} |")


if __name__ == "__main__":
    main()
