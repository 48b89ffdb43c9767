#!/usr/bin/env bash
# The GPU check: how burn's CUDA backend runs the fine-tuning loop, beside
# timm on the same GPU, in one call on a GPU machine (README, "Running on a
# GPU box"; the latest table is in BENCHMARKS.md). Two steps:
#
#   scripts/gpu_check.sh pack [DIR]
#       on a CPU machine with this repository: builds the CUDA binary
#       (release), and copies it, stripped, with a data subset (every 8th
#       HAM10000 image), configs/device-check.toml and the scripts into DIR
#       (default: gpu-check/, ignored by git), and says its size (about
#       25 MB with the CUDA binary gzipped; it warns above 64 MiB).
#   DIR/gpu_check.sh run
#       on the GPU machine: `sim-train device-check` three times (f32 with an
#       empty kernel cache, f32 again with the cache the first run filled,
#       bf16), each with the GPU's peak memory sampled by nvidia-smi, and
#       after each precision the table beside timm's figures
#       (scripts/bench_timm_gpu.py, timm timed once). Prints everything,
#       each measurement also on stderr as it is taken, and keeps the
#       tables in DIR/results/ (emptied at the start).
#
# Variables. pack: SIM_DATA_DIR (the real data, default ../shared/data),
# SIM_TRAIN (a sim-train binary to copy instead of building one: a CPU build
# runs the same check on the CPU backend), CUDARC_CUDA_VERSION (default
# 13000). run: STEPS (timed training steps, default 30), EPOCHS (of the
# compared run, default 2), BACKBONE / AGREEMENT (default vit-b16 /
# vit-check), PRECISIONS (default "f32 bf16").
set -euo pipefail

pack() {
  local dir=${1:-gpu-check}
  local root data
  root=$(cd "$(dirname "$0")/.." && pwd)
  data=${SIM_DATA_DIR:-$root/../shared/data}
  [ -f "$data/ham10000/HAM10000_metadata.csv" ] || { echo "no HAM10000 in $data (set SIM_DATA_DIR)" >&2; exit 1; }
  rm -rf "$dir"
  mkdir -p "$dir/data/ham10000/images"
  if [ -n "${SIM_TRAIN:-}" ]; then
    cp "$SIM_TRAIN" "$dir/sim-train"
  else
    (cd "$root" && CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000} cargo build --release -p sim-train --features cuda)
    cp "${CARGO_TARGET_DIR:-$root/target}/release/sim-train" "$dir/sim-train"
  fi
  strip "$dir/sim-train" 2>/dev/null || true
  # Compressed: the stripped CUDA binary is about 74 MB, 18 MB gzipped.
  gzip -9 "$dir/sim-train"
  # Every 8th row: the metadata is sorted by diagnosis, so this keeps every class.
  awk 'NR == 1 || (NR - 2) % 8 == 0' "$data/ham10000/HAM10000_metadata.csv" >"$dir/data/ham10000/HAM10000_metadata.csv"
  tail -n +2 "$dir/data/ham10000/HAM10000_metadata.csv" | cut -d, -f2 \
    | while read -r id; do cp "$data/ham10000/images/$id.jpg" "$dir/data/ham10000/images/"; done
  cp "$root/configs/device-check.toml" "$dir/"
  cp "$root/scripts/gpu_check.sh" "$root/scripts/bench_timm_gpu.py" "$dir/"
  echo "packed into $dir: $(du -sh "$dir" | cut -f1) ($(ls "$dir/data/ham10000/images" | wc -l) images)"
  if [ "$(du -sm "$dir" | cut -f1)" -gt 64 ]; then
    echo "warning: $dir is over 64 MiB, more than some GPU machines take along" >&2
  fi
}

# Runs a command, then adds the GPU's peak memory while it ran as a row of
# the table it printed (nvidia-smi sampled every 100 ms; the GPU's whole
# memory in use, so run nothing else on it).
with_peak_memory() {
  local samples
  samples=$(mktemp)
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$samples" &
    local sampler=$!
    "$@"
    kill "$sampler" && wait "$sampler" 2>/dev/null || true
    echo "| peak GPU memory (MiB) | $(sort -n "$samples" | tail -n 1) | |"
  else
    "$@"
    echo "| peak GPU memory (MiB) | n/a (no nvidia-smi) | |"
  fi
  rm -f "$samples"
}

run() {
  local dir
  dir=$(cd "$(dirname "$0")" && pwd)
  cd "$dir"
  export SIM_DATA_DIR="$dir/data"
  [ -x sim-train ] || { gzip -dc sim-train.gz >sim-train && chmod +x sim-train; }
  local steps=${STEPS:-30} epochs=${EPOCHS:-2} backbone=${BACKBONE:-vit-b16} agreement=${AGREEMENT:-vit-check}
  local check=(./sim-train device-check --config device-check.toml --backbone "$backbone" --steps "$steps")
  rm -rf results studies/device-check/kernel-cache
  mkdir -p results
  echo "# GPU check, $(date -u +%F): $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'no NVIDIA GPU')"
  local tables=()
  for precision in ${PRECISIONS:-f32 bf16}; do
    if [ "$precision" = f32 ]; then
      echo; echo "## burn, f32, first process (empty kernel cache)"
      with_peak_memory "${check[@]}" --precision f32 --agreement-backbone "$agreement" --epochs "$epochs" | tee results/f32-cold.md
      echo; echo "## burn, f32, second process (kernel cache from the first)"
      with_peak_memory "${check[@]}" --precision f32 | tee results/f32-warm.md
      tables+=(results/f32-cold.md results/f32-warm.md)
    else
      echo; echo "## burn, $precision"
      with_peak_memory "${check[@]}" --precision "$precision" --agreement-backbone "$agreement" --epochs "$epochs" | tee "results/$precision.md"
      tables+=("results/$precision.md")
    fi
    # After each precision, so that a run stopped by a time limit keeps
    # the comparison of the stages it finished (timm is timed once).
    echo; echo "## burn beside timm (PyTorch), same GPU, same model size and batch"
    if command -v python3 >/dev/null 2>&1; then
      python3 bench_timm_gpu.py --steps "$steps" --timm-json results/timm.json --burn "${tables[@]}" | tee results/summary.md
    else
      echo "timm: not run (no python3)" | tee results/summary.md
    fi
  done
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  run) run ;;
  *) sed -n '2,24p' "$0" >&2; exit 2 ;;
esac
