"""Training throughput (images/s) of sim-train's fine-tuning step on burn's CPU
backend against timm + PyTorch (CPU): same ViT, batch, threads, one run.

    .venv/bin/pip install -r scripts/requirements-backbones.txt
    .venv/bin/python scripts/bench_train.py

A step is forward, cross-entropy, backward and AdamW updates (backbone and a
new 7-class head), on random images; best throughput over the timed steps after
one warm-up step. The Rust side also times the training data pipeline alone
(RandomResizedCrop, flips, normalisation, batch tensor) to show whether data
loading could be the bottleneck. Configs are the spike's (shared notes).
"""
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import timm
import torch
from rust_bench import bench_executable
from safetensors.torch import save_file

THREADS, STEPS = 2, 5
torch.set_num_threads(THREADS)
configs = [
    ("width 192, 12 blocks, 64 tokens", dict(img_size=64, patch_size=8, embed_dim=192, depth=12, num_heads=3), 64, 3, 32),
    ("width 64, 4 blocks, 49 tokens", dict(img_size=56, patch_size=8, embed_dim=64, depth=4, num_heads=2), 56, 2, 64),
]
exe = bench_executable("sim-train", "train_step")
tmp = Path(tempfile.mkdtemp())
print("| ViT (batch) | burn Flex train (images/s) | PyTorch train (images/s) | burn / PyTorch | burn data pipeline (images/s) |")
print("|---|---|---|---|---|")
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

    step()
    start = time.perf_counter()
    for _ in range(STEPS):
        step()
    torch_ips = batch * STEPS / (time.perf_counter() - start)
    env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS))
    out = json.loads(subprocess.run([exe, str(path), str(size), str(heads), str(batch), str(STEPS)], check=True,
                                    capture_output=True, text=True, env=env).stdout)
    burn_ips = out["train_images_per_s"]
    print(f"| {label} ({batch}) | {burn_ips:.1f} | {torch_ips:.1f} | {burn_ips / torch_ips:.2f}x | {out['data_images_per_s']:.0f} |")
print(f"\ntorch {torch.__version__}, timm {timm.__version__}, threads {THREADS}, {STEPS} timed steps")
