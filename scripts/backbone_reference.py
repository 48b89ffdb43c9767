"""Tiny random-init backbones of every family and key naming sim-train loads,
with their reference outputs, written as the fixtures of the backbone tests.

    python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-backbones.txt
    .venv/bin/python scripts/backbone_reference.py crates/sim-train/tests/fixtures/backbones

For each fixture <name>/: model.safetensors (the checkpoint, as the library
saves it) and reference-<size>.safetensors per input size, holding `input`
[B, 3, S, S], `hidden.<i>` (tokens entering block i+1; i = 0 is the embedding
output: patches + class/register tokens + position embedding, and for OpenCLIP
after ln_pre; the last i is the last block's output), `final` (the final norm
over all tokens), `attention` (the last block's CLS-to-patch attention
averaged over heads, [B, patches]), and `logits` / `embedding` where the
family has a head / projection. Sizes other than the checkpoint's own make the
library resize position embeddings its way (timm and open_clip: bicubic with
antialias; transformers: bicubic, size=, no antialias; Meta's DINOv2: bicubic
with a scale factor offset by 0.1).
"""
import json
import sys
from pathlib import Path

import open_clip
import timm
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from timm.models.vision_transformer import checkpoint_filter_fn

torch.manual_seed(0)
out = Path(sys.argv[1])
BATCH = 2
manifest = {"versions": {"torch": torch.__version__, "timm": timm.__version__, "open_clip": open_clip.__version__,
                         "transformers": transformers.__version__}, "fixtures": {}}


def randomise(model):
    # Non-trivial values everywhere (random-init LayerNorms are 1/0, and
    # LayerScale 1e-5, which would hide transposed or skipped tensors).
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.5 if p.ndim > 1 else 0.3) + (1.0 if p.ndim == 1 else 0.0) * 0.1)
    return model.eval()


def attention_of(q, k, heads):
    b, t, d = q.shape
    q = q.reshape(b, t, heads, d // heads).transpose(1, 2)
    k = k.reshape(b, t, heads, d // heads).transpose(1, 2)
    a = (q @ k.transpose(-1, -2) * (d // heads) ** -0.5).softmax(-1)
    return a.mean(1)  # [B, T, T]


def save_ref(name, size, tensors):
    path = out / name / f"reference-{size}.safetensors"
    save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(path))


def image(size):
    return torch.randn(BATCH, 3, size, size)


# --- timm ViT / DINOv2 ---------------------------------------------------------
def timm_forward(model, x, prefix_tokens):
    t = model.patch_embed(x)
    t = model._pos_embed(t)
    t = model.norm_pre(t)
    hidden = [t]
    for i, blk in enumerate(model.blocks):
        if i == len(model.blocks) - 1:
            y = blk.norm1(t)
            qkv = blk.attn.qkv(y)
            q, k, _ = qkv.chunk(3, dim=-1)
            attn = attention_of(q, k, blk.attn.num_heads)[:, 0, prefix_tokens:]
        t = blk(t)
        hidden.append(t)
    final = model.norm(t)
    refs = {f"hidden.{i}": h for i, h in enumerate(hidden)}
    refs.update({"final": final, "attention": attn})
    if model.num_classes:
        refs["logits"] = model.forward_head(final)
    return refs


def timm_fixture(name, arch, native, sizes, **kw):
    (out / name).mkdir(parents=True, exist_ok=True)
    model = randomise(timm.create_model(arch, pretrained=False, img_size=native, **kw))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / name / "model.safetensors"))
    for size in sizes:
        m = model
        if size != native:
            m = timm.create_model(arch, pretrained=False, img_size=size, **kw).eval()
            m.load_state_dict(checkpoint_filter_fn(model.state_dict(), m))
        x = image(size)
        with torch.no_grad():
            refs = timm_forward(m, x, m.num_prefix_tokens)
        save_ref(name, size, {"input": x, **refs})
    manifest["fixtures"][name] = {"arch": arch, "native": native, "sizes": sizes, **{k: str(v) for k, v in kw.items()}}
    return model


tiny = dict(embed_dim=48, depth=3, num_heads=3)
timm_fixture("timm_vit", "vit_base_patch16_224", 32, [32, 48], patch_size=8, num_classes=5, **tiny)
dino = timm_fixture("timm_dinov2", "vit_small_patch14_dinov2", 28, [28, 42], num_classes=0, **tiny)
timm_fixture("timm_dinov2_reg", "vit_small_patch14_reg4_dinov2", 28, [28, 42], num_classes=0, **tiny)

# Meta's DINOv2 resizes with a scale factor offset by 0.1 (no antialias); its
# keys are timm's, so the timm model runs on a position embedding resized the
# Meta way. Same checkpoint as timm_dinov2.
(out / "meta_dinov2").mkdir(parents=True, exist_ok=True)
save_file({k: v.contiguous() for k, v in dino.state_dict().items()}, str(out / "meta_dinov2" / "model.safetensors"))
for size in [42]:
    m = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=size, num_classes=0, **tiny).eval()
    sd = dict(dino.state_dict())
    pos = sd["pos_embed"]
    M, w0 = 2, size // 14
    grid = pos[:, 1:].reshape(1, M, M, -1).permute(0, 3, 1, 2)
    s = (w0 + 0.1) / M
    grid = F.interpolate(grid, mode="bicubic", antialias=False, scale_factor=(s, s))
    sd["pos_embed"] = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, w0 * w0, -1)], 1)
    m.load_state_dict(sd)
    x = image(size)
    with torch.no_grad():
        save_ref("meta_dinov2", size, {"input": x, **timm_forward(m, x, 1)})
manifest["fixtures"]["meta_dinov2"] = {"from": "timm_dinov2", "resize": "meta scale factor +0.1", "sizes": [42]}


# --- Hugging Face ViTModel / Dinov2Model -----------------------------------------
def hf_fixture(name, model, native, sizes, registers=0):
    (out / name).mkdir(parents=True, exist_ok=True)
    model = randomise(model)
    model.save_pretrained(out / name / "hf")
    (out / name / "hf" / "model.safetensors").rename(out / name / "model.safetensors")
    for f in (out / name / "hf").iterdir():
        f.unlink()
    (out / name / "hf").rmdir()
    for size in sizes:
        x = image(size)
        with torch.no_grad():
            kw = {"interpolate_pos_encoding": True} if isinstance(model, transformers.ViTModel) else {}
            o = model(pixel_values=x, output_hidden_states=True, output_attentions=True, **kw)
        hidden = {f"hidden.{i}": h for i, h in enumerate(o.hidden_states)}
        attn = o.attentions[-1].mean(1)[:, 0, 1 + registers:]
        save_ref(name, size, {"input": x, **hidden, "final": o.last_hidden_state, "attention": attn})
    manifest["fixtures"][name] = {"class": type(model).__name__, "native": native, "sizes": sizes}


common = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=3, intermediate_size=192, attn_implementation="eager")
hf_fixture("hf_vit", transformers.ViTModel(transformers.ViTConfig(image_size=32, patch_size=8, **common)), 32, [32, 48])
hf_fixture("hf_dinov2", transformers.Dinov2Model(transformers.Dinov2Config(image_size=28, patch_size=14, **common)), 28, [28, 42])
hf_fixture("hf_dinov2_reg", transformers.Dinov2WithRegistersModel(
    transformers.Dinov2WithRegistersConfig(image_size=28, patch_size=14, num_register_tokens=4, **common)), 28, [28, 42], registers=4)


# --- OpenCLIP image tower (QuickGELU, as OpenAI-trained weights) ------------------
def clip_forward(v, x):
    t = v.conv1(x).flatten(2).transpose(1, 2)
    cls = v.class_embedding.to(t.dtype).expand(t.shape[0], 1, -1)
    t = torch.cat([cls, t], 1) + v.positional_embedding
    t = v.ln_pre(t)
    hidden = [t]
    blocks = v.transformer.resblocks
    for i, blk in enumerate(blocks):
        if i == len(blocks) - 1:
            y = blk.ln_1(t)
            _, w = blk.attn(y, y, y, need_weights=True, average_attn_weights=True)
            attn = w[:, 0, 1:]
        t = blk(t)
        hidden.append(t)
    final = v.ln_post(t)
    return {**{f"hidden.{i}": h for i, h in enumerate(hidden)}, "final": final, "attention": attn,
            "embedding": final[:, 0] @ v.proj}


def clip_model(size):
    vision = open_clip.CLIPVisionCfg(layers=3, width=48, head_width=16, patch_size=8, image_size=size)
    text = open_clip.CLIPTextCfg(context_length=8, vocab_size=64, width=32, heads=2, layers=1)
    return open_clip.CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text, quick_gelu=True)


(out / "open_clip").mkdir(parents=True, exist_ok=True)
clip = randomise(clip_model(32))
save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(out / "open_clip" / "model.safetensors"))
for size in [32, 48]:
    m = clip
    if size != 32:
        m = clip_model(size).eval()
        sd = dict(clip.state_dict())
        open_clip.model.resize_pos_embed(sd, m)
        m.load_state_dict(sd)
    x = image(size)
    with torch.no_grad():
        save_ref("open_clip", size, {"input": x, **clip_forward(m.visual, x)})
manifest["fixtures"]["open_clip"] = {"class": "CLIP", "quick_gelu": True, "native": 32, "sizes": [32, 48]}

(out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
print(json.dumps(manifest, indent=1))
