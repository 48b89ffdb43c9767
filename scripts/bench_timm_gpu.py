"""timm's side of the GPU check (scripts/gpu_check.sh), and the table that
puts it beside burn's.

Times the same ViT as `sim-train device-check --backbone` (its shape and
batch sizes read from the first --burn table, else the options; random
init, a new 7-class head) the way a researcher would run it in PyTorch: AdamW,
cross-entropy, the loss read every step, random images; the forward pass
alone under `torch.no_grad()` at the evaluation batch. Each precision: the
first step (warm-up), then steady-state images/s with
`torch.cuda.synchronize()` before every clock read, and peak memory.
Precisions: fp32 strict (TF32 off), TF32 (matmuls and convolutions), bf16
(`torch.autocast`, TF32 on).

With --burn FILE..., the `device-check` tables those files hold are read
back and one summary table compares both (burn / timm at matching
precision: burn f32 against timm fp32 and TF32, burn bf16 against timm
bf16). Without PyTorch or a GPU the timm columns say why they are empty.
With --timm-json FILE, timm's figures are kept in FILE and read back from
it on the next call (the GPU check prints the summary after each stage, so
a stage stopped by a time limit leaves the table of the earlier ones).
"""

import argparse
import json
import os
import re
import sys
import time


def timm_rows(args):
    """{(precision, measure): value} for timm, or a reason it did not run."""
    try:
        import timm  # noqa: F401
        import torch
    except ImportError as e:
        return f"not run: {e}"
    cuda = torch.cuda.is_available()
    if not cuda and not args.cpu:
        return "not run: no CUDA device for PyTorch"
    from timm.models.vision_transformer import VisionTransformer

    dev = torch.device("cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    out = {}
    for precision in ["fp32", "tf32", "bf16"]:
        tf32 = precision != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.manual_seed(0)
        model = VisionTransformer(img_size=args.size, patch_size=args.patch, embed_dim=args.width, depth=args.depth,
                                  num_heads=args.heads, mlp_ratio=args.mlp / args.width, num_classes=7).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.05)
        x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
        y = torch.randint(0, 7, (args.batch,), device=dev)
        autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        if cuda:
            torch.cuda.reset_peak_memory_stats()

        def step():
            with autocast:
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.item()

        sync()
        t = time.perf_counter()
        step()
        sync()
        out[(precision, "first training step (s)")] = time.perf_counter() - t
        for _ in range(3):
            step()
        sync()
        t = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        out[(precision, "training (images/s)")] = args.steps * args.batch / (time.perf_counter() - t)

        model.eval()
        xe = torch.randn(args.eval_batch, 3, args.size, args.size, device=dev)
        with torch.no_grad(), autocast:
            for _ in range(3):
                model(xe)
            sync()
            t = time.perf_counter()
            for _ in range(args.steps):
                model(xe)
            sync()
        out[(precision, "evaluation (images/s)")] = args.steps * args.eval_batch / (time.perf_counter() - t)
        out[(precision, "peak GPU memory (MiB)")] = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
        del model, opt
        if cuda:
            torch.cuda.empty_cache()
    return out


def timm_figures(args):
    """timm_rows, kept in and read back from --timm-json if given."""
    if args.timm_json and os.path.exists(args.timm_json):
        saved = json.load(open(args.timm_json))
        return saved if isinstance(saved, str) else {tuple(k.split("|")): v for k, v in saved.items()}
    timm = timm_rows(args)
    if args.timm_json:
        with open(args.timm_json, "w") as f:
            json.dump(timm if isinstance(timm, str) else {"|".join(k): v for k, v in timm.items()}, f, indent=1)
    return timm


def burn_rows(path):
    """(precision, {measure: value}) from one `device-check` table."""
    rows = {}
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2:
            rows[cells[0]] = cells[1]
    return rows.get("precision", "?"), rows


MEASURES = [
    ("first training step (s)", "warm-up: first training step (s)"),
    ("training (images/s)", "training, steady state (images/s)"),
    ("evaluation (images/s)", "evaluation, steady state (images/s)"),
    ("peak GPU memory (MiB)", "peak GPU memory (MiB)"),
]


def number(text):
    m = re.match(r"[-+0-9.eE]+", text or "")
    return float(m.group(0)) if m else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--mlp", type=int, default=3072, help="MLP hidden width")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--cpu", action="store_true", help="without a GPU, time timm on the CPU (to check this script)")
    p.add_argument("--burn", nargs="*", default=[], help="device-check tables (Markdown) to compare, in order")
    p.add_argument("--timm-json", help="keep timm's figures in this file, and read them from it if it exists")
    args = p.parse_args()
    burns = [(path,) + burn_rows(path) for path in args.burn]
    if burns:
        timed = next((v for k, v in burns[0][2].items() if k.startswith("backbone timed")), "")
        for name, attr in [("width", "width"), ("depth", "depth"), ("heads", "heads"), ("patch", "patch"), ("mlp", "mlp"),
                           ("px", "size"), ("evaluation batch", "eval_batch")]:
            m = re.search(rf"(\d+) px" if name == "px" else rf"{name} (\d+)", timed)
            if m:
                setattr(args, attr, int(m.group(1)))
        m = re.search(r"(?<!evaluation )batch (\d+)", timed)
        if m:
            args.batch = int(m.group(1))
    print(f"timm model: width {args.width}, depth {args.depth}, heads {args.heads}, patch {args.patch}, mlp {args.mlp}, "
          f"{args.size} px, batch {args.batch}, evaluation batch {args.eval_batch}\n")
    timm = timm_figures(args)
    header = [f"burn: {path.split('/')[-1].removesuffix('.md')}" for path, _, _ in burns]
    timm_cols = ["fp32", "tf32", "bf16"]
    print("| measure | " + " | ".join(header + [f"timm {c}" for c in timm_cols]) + " | burn / timm |")
    print("|---" * (2 + len(header) + len(timm_cols)) + "|")
    for timm_name, burn_name in MEASURES:
        cells = [r.get(burn_name, "") for _, _, r in burns]
        if isinstance(timm, dict):
            cells += [f"{timm[(c, timm_name)]:.2f}" if "(s)" in timm_name else f"{timm[(c, timm_name)]:.1f}" for c in timm_cols]
        else:
            cells += [timm] + [""] * (len(timm_cols) - 1)
        ratios = []
        if isinstance(timm, dict) and "images/s" in timm_name:
            for path, prec, r in burns:
                value = number(r.get(burn_name))
                against = ["fp32", "tf32"] if prec == "f32" else ["bf16"] if prec == "bf16" else []
                name = path.split("/")[-1].removesuffix(".md")
                ratios += [f"{name} / timm {c}: {value / timm[(c, timm_name)]:.2f}x" for c in against if value]
        print(f"| {timm_name} | " + " | ".join(cells) + " | " + "; ".join(ratios) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
