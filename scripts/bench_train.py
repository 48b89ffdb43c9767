"""Training throughput (images/s) of sim-train's fine-tuning step on burn's CPU
backend against timm + PyTorch (CPU): same ViT, batch, threads, one run.

    .venv/bin/pip install -r scripts/requirements-backbones.txt
    .venv/bin/python scripts/bench_train.py

A step is forward, cross-entropy, backward and AdamW updates (backbone and a
new 7-class head), on random images, the batch cut into a part per thread
as training does it (and, for comparison, whole: `SIM_BENCH_PARTS=1`, how
burn ran every step before); images/s over 5 timed steps after one
warm-up step, the median of 5 rounds that alternate burn and PyTorch (this
machine's speed drifts by 20 % between runs). The Rust side also times the
training data pipeline alone
(RandomResizedCrop, flips, normalisation, batch tensor) to show whether data
loading could be the bottleneck. Configs: the spike's two (shared notes) and
the CPU study's backbone (configs/cpu.toml).
"""
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import timm
import torch
from rust_bench import bench_executable
from safetensors.torch import save_file

THREADS, STEPS, ROUNDS = 2, 5, 5
torch.set_num_threads(THREADS)
configs = [
    ("width 192, 12 blocks, 64 tokens", dict(img_size=64, patch_size=8, embed_dim=192, depth=12, num_heads=3), 64, 3, 32),
    ("width 64, 4 blocks, 49 tokens", dict(img_size=56, patch_size=8, embed_dim=64, depth=4, num_heads=2), 56, 2, 64),
    # The backbones configs/cpu.toml fine-tunes.
    ("cpu.toml: width 96, 4 blocks, 16 tokens", dict(img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=3), 32, 3, 64),
]
exe = bench_executable("sim-train", "train_step")
tmp = Path(tempfile.mkdtemp())
print("| ViT (batch) | burn Flex train, a part per thread (images/s) | PyTorch train (images/s) | burn / PyTorch "
      "| burn, batch whole (images/s; / PyTorch) | burn, two 1-thread processes (images/s, summed; / PyTorch) "
      "| burn data pipeline (images/s) |")
print("|---|---|---|---|---|---|---|")
for label, kw, size, heads, batch in configs:
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, **kw)
    path = tmp / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    head = torch.nn.Linear(kw["embed_dim"], 7)
    opt = torch.optim.AdamW([{"params": model.parameters(), "lr": 1e-5}, {"params": head.parameters(), "lr": 1e-3}])
    x, y = torch.randn(batch, 3, size, size), torch.arange(batch) % 7

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(model(x)), y).backward()
        opt.step()

    def torch_rate():
        step()  # warm-up
        start = time.perf_counter()
        for _ in range(STEPS):
            step()
        return batch * STEPS / (time.perf_counter() - start)

    def burn_processes(count, threads, parts=None):
        """burn's images/s summed over `count` processes run at once, `threads` each
        (`parts`: the parts a step cuts its batch into; default a part per thread)."""
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        if parts is not None:
            env["SIM_BENCH_PARTS"] = str(parts)
        procs = [subprocess.Popen([exe, str(path), str(size), str(heads), str(batch), str(STEPS)], stdout=subprocess.PIPE,
                                  text=True, env=env) for _ in range(count)]
        outs = [json.loads(p.communicate()[0]) for p in procs]
        assert all(p.returncode == 0 for p in procs), "train_step failed"
        return {k: sum(o[k] for o in outs) for k in outs[0]}

    # Rounds alternate the two, so that a slow spell of a shared machine
    # falls on both; the medians are compared. The two-process column is
    # what `xtask reproduce --jobs 2` runs: two runs at once, a thread each.
    torch_runs, burn_runs, burn_whole, burn_pairs = [], [], [], []
    for _ in range(ROUNDS):
        torch_runs.append(torch_rate())
        burn_runs.append(burn_processes(1, THREADS))
        burn_whole.append(burn_processes(1, THREADS, parts=1)["train_images_per_s"])
        burn_pairs.append(burn_processes(2, 1)["train_images_per_s"])
    torch_ips = statistics.median(torch_runs)
    burn_ips = statistics.median(r["train_images_per_s"] for r in burn_runs)
    data_ips = statistics.median(r["data_images_per_s"] for r in burn_runs)
    whole_ips, pair_ips = statistics.median(burn_whole), statistics.median(burn_pairs)
    print(f"| {label} ({batch}) | {burn_ips:.1f} | {torch_ips:.1f} | **{burn_ips / torch_ips:.2f}x** "
          f"| {whole_ips:.1f} ({whole_ips / torch_ips:.2f}x) | {pair_ips:.1f} ({pair_ips / torch_ips:.2f}x) | {data_ips:.0f} |")
print(f"\ntorch {torch.__version__}, timm {timm.__version__}, threads {THREADS}, medians of {ROUNDS} rounds of {STEPS} timed steps")
