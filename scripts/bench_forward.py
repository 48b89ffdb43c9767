"""Forward throughput (images/s) of sim-train's ViT on burn's CPU backend
against timm on PyTorch (CPU), same weights, batch and threads, one run.

    .venv/bin/pip install -r scripts/requirements-backbones.txt
    .venv/bin/python scripts/bench_forward.py

Configs: ViT-S/16 at 224 px (timm vit_small_patch16_224, random init), a
small ViT (width 192, 6 blocks, 3 heads, patch 8) at 64 px, both at batch
32, and the CPU study's backbone (configs/cpu.toml) at its evaluation batch,
64. Inference only (no autograd), best of 3 after a warm-up, 2 threads;
burn with the batch cut into a part per thread as evaluation does it, and
whole (`SIM_BENCH_PARTS=1`, how it ran before).
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

THREADS, REPEATS = 2, 3
torch.set_num_threads(THREADS)
configs = [
    ("ViT-S/16, 224 px", dict(model_name="vit_small_patch16_224"), 224, 6, 32),
    ("ViT width 192, 6 blocks, patch 8, 64 px", dict(model_name="vit_small_patch16_224", img_size=64, patch_size=8, embed_dim=192, depth=6, num_heads=3), 64, 3, 32),
    ("cpu.toml: width 96, 4 blocks, patch 8, 32 px", dict(model_name="vit_small_patch16_224", img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=3), 32, 3, 64),
]
exe = bench_executable("sim-train", "forward")
tmp = Path(tempfile.mkdtemp())
print("| model (batch) | burn Flex, a part per thread (images/s) | PyTorch (images/s) | burn / PyTorch | burn, batch whole (images/s; / PyTorch) |")
print("|---|---|---|---|---|")
for label, kw, size, heads, batch in configs:
    model = timm.create_model(pretrained=False, num_classes=0, **kw).eval()
    path = tmp / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        model(x)
        best = min((lambda s: (model(x), time.perf_counter() - s)[1])(time.perf_counter()) for _ in range(REPEATS))
    torch_ips = batch / best

    def burn_rate(**env):
        env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS), **env)
        out = subprocess.run([exe, str(path), str(size), str(heads), str(batch), str(REPEATS)], check=True, capture_output=True, text=True, env=env)
        return json.loads(out.stdout)["images_per_s"]

    burn_ips, whole_ips = burn_rate(), burn_rate(SIM_BENCH_PARTS="1")
    print(f"| {label} ({batch}) | {burn_ips:.1f} | {torch_ips:.1f} | **{burn_ips / torch_ips:.2f}x** | {whole_ips:.1f} ({whole_ips / torch_ips:.2f}x) |")
print(f"\ntorch {torch.__version__}, timm {timm.__version__}, threads {THREADS}")
