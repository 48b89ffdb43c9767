"""Builds a Rust bench or command-line binary of this workspace as users run
it (release) and says where it is; times a whole process. (The dev profile, even at opt-level 3,
keeps debug assertions, incremental compilation and many codegen units: the
measures ran up to 1.7 times slower there.)"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench_executable(package: str, bench: str) -> str:
    build = subprocess.run(["cargo", "build", "--release", "-p", package, "--bench", bench, "--message-format=json"],
                           cwd=ROOT, check=True, capture_output=True, text=True)
    artifacts = [json.loads(line) for line in build.stdout.splitlines()]
    return [a["executable"] for a in artifacts if a.get("target", {}).get("name") == bench and a.get("executable")][-1]


def binary_executable(package: str, binary: str) -> str:
    """A command-line binary of the workspace, built as users run it (release)."""
    build = subprocess.run(["cargo", "build", "--release", "-p", package, "--bin", binary, "--message-format=json"],
                           cwd=ROOT, check=True, capture_output=True, text=True)
    artifacts = [json.loads(line) for line in build.stdout.splitlines()]
    return [a["executable"] for a in artifacts if a.get("target", {}).get("name") == binary and a.get("executable")][-1]


def timed(command, env):
    """Wall seconds, peak resident memory (MiB) and stdout of one process, from GNU time."""
    result = subprocess.run(["/usr/bin/time", "-f", "%e %M", *command], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"{command} failed: {result.stderr}")
    seconds, kib = result.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(kib) / 1024, result.stdout


def threads_env(threads: str) -> dict:
    """The environment with every thread pool (OpenMP, OpenBLAS, MKL, rayon) at `threads`."""
    return dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
                RAYON_NUM_THREADS=threads)
