"""Times `sim-metrics transferability` against the numpy/scipy/scikit-learn
implementation of each score (scripts/transferability_reference.py), whole
processes on the same files, in one run on one machine, and prints the table
that goes into BENCHMARKS.md ("Transferability scores").

    .venv/bin/pip install -r scripts/requirements-metrics.txt
    .venv/bin/python scripts/bench_transferability.py                 # 10,000 × 768, 7 classes
    .venv/bin/python scripts/bench_transferability.py --rows 2000     # a smaller test set

The input is one seeded f32 file of features (7 imbalanced classes, their
centres in a 32-dimensional subspace with a low-rank shared part, plus
noise) and its labels. Each score runs as a user meets it: the release
`sim-metrics transferability --score <name>` binary (a `.npy` file: LogME,
H-score, GBC and TransRate streamed in blocks of 4,096 rows), and a Python
process that loads the same files and calls the reference function. Wall
time and peak resident memory from GNU `time`; 2 threads everywhere.
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
SCORES = ["logme", "hscore", "nleep", "gbc", "transrate", "sfda"]

PYTHON = """
import sys, warnings
sys.path.insert(0, sys.argv[1])
import numpy as np
import transferability_reference as r
warnings.simplefilter("ignore")
x = np.load(sys.argv[3]).astype(np.float64)
y = np.load(sys.argv[4])
print(getattr(r, sys.argv[2])(x, y))
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--cols", type=int, default=768)
    args = parser.parse_args()
    env = threads_env(THREADS)
    exe = binary_executable("sim-metrics", "sim-metrics")
    rng = np.random.default_rng(12)
    weights = np.array([0.45, 0.2, 0.12, 0.1, 0.06, 0.04, 0.03])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        y = rng.choice(7, size=args.rows, p=weights)
        basis = rng.normal(size=(32, args.cols))
        centres = rng.normal(size=(7, 32)) * 0.6
        latent = rng.normal(size=(args.rows, 32)) + centres[y]
        x = latent @ basis + 2.0 * rng.normal(size=(args.rows, args.cols))
        np.save(tmp / "x.npy", x.astype(np.float32))
        np.save(tmp / "y.npy", y.astype(np.int64))
        xs, ys = str(tmp / "x.npy"), str(tmp / "y.npy")
        print(f"inputs: {args.rows:,} × {args.cols:,} f32 features, 7 classes ({', '.join(f'{w:.0%}' for w in weights)})")
        print("| score | process | seconds | sim-metrics is … faster | peak (MiB) | value |")
        print("|---|---|---|---|---|---|")
        for name in SCORES:
            ours_s, ours_mib, ours_out = measure(
                [exe, "transferability", "--score", name, "--features", xs, "--labels", ys], env)
            ours = json.loads(ours_out)["scores"][name]
            theirs_s, theirs_mib, theirs_out = measure([sys.executable, "-c", PYTHON, str(SCRIPTS), name, xs, ys], env)
            print(f"| {name} | sim-metrics | {ours_s:.2f} | — | {ours_mib:.0f} | {ours:.9g} |")
            print(f"| {name} | Python reference | {theirs_s:.2f} | {theirs_s / ours_s:.2f}x | {theirs_mib:.0f} | {float(theirs_out):.9g} |")
        all_s, all_mib, _ = measure([exe, "transferability", "--features", xs, "--labels", ys], env)
        print(f"| all six, one process | sim-metrics | {all_s:.2f} | — | {all_mib:.0f} | |")


if __name__ == "__main__":
    main()
