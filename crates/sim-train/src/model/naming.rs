//! The key names each checkpoint family uses, mapped onto one canonical
//! naming (timm's): the key tree of every family can be read off its rules.
//! Loading renames (and fuses q/k/v) into canonical names; saving walks the
//! same rules backwards, so a model saves in the names it came in.

use super::ModelError;
use super::checkpoint::{Checkpoint, HostTensor};
use super::pos_embed::Resize;
use sim_study::config::Family;
use std::collections::BTreeMap;

/// A checkpoint in canonical names: the tensors, the key map back to the
/// checkpoint's names, and the checkpoint keys left out on purpose.
pub type Canonical = (BTreeMap<String, HostTensor>, KeyMap, Vec<String>);

/// The key naming of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// timm `VisionTransformer` (supervised ViT): `patch_embed.proj`, `blocks.N.attn.qkv`, …
    Timm,
    /// DINOv2 in Meta's / timm's names: as timm, plus `blocks.N.ls1.gamma`, registers.
    TimmDinov2,
    /// Hugging Face `ViTModel`: `embeddings.*`, `encoder.layer.N.attention.attention.query`, …
    HfVit,
    /// Hugging Face `Dinov2Model` / `Dinov2WithRegistersModel`.
    HfDinov2,
    /// OpenCLIP image tower: `conv1`, `class_embedding`, `transformer.resblocks.N.*`.
    OpenClip,
}

/// How one canonical tensor is stored in a family's checkpoint.
#[derive(Debug, Clone)]
enum Rule {
    /// The same tensor under another name.
    Rename { canonical: String, family: String },
    /// The family stores it without the canonical leading 1-dimensions.
    Lift { canonical: String, family: String },
    /// Separate q, k, v (each `[D, …]`) fused into `[3D, …]`.
    Fuse {
        canonical: String,
        parts: [String; 3],
    },
}

/// Which family key(s) each canonical tensor came from, to save it back.
pub type KeyMap = BTreeMap<String, Vec<String>>;

impl Naming {
    /// Recognises a naming from the keys of a checkpoint (prefix stripped).
    pub fn detect(ckpt: &Checkpoint) -> Option<Naming> {
        if ckpt.contains("conv1.weight") && ckpt.contains("class_embedding") {
            Some(Naming::OpenClip)
        } else if ckpt.contains("embeddings.patch_embeddings.projection.weight") {
            Some(if ckpt.contains("encoder.layer.0.layer_scale1.lambda1") {
                Naming::HfDinov2
            } else {
                Naming::HfVit
            })
        } else if ckpt.contains("patch_embed.proj.weight") {
            Some(if ckpt.contains("blocks.0.ls1.gamma") {
                Naming::TimmDinov2
            } else {
                Naming::Timm
            })
        } else {
            None
        }
    }

    pub fn family(self) -> Family {
        match self {
            Naming::Timm | Naming::HfVit => Family::Vit,
            Naming::TimmDinov2 | Naming::HfDinov2 => Family::Dinov2,
            Naming::OpenClip => Family::OpenClip,
        }
    }

    /// LayerNorm epsilon of the family's reference implementation.
    pub fn layer_norm_eps(self) -> f64 {
        match self {
            Naming::Timm | Naming::TimmDinov2 | Naming::HfDinov2 => 1e-6,
            Naming::HfVit => 1e-12,
            // open_clip's LayerNorm is torch's default (checked: open_clip 3.3.0).
            Naming::OpenClip => 1e-5,
        }
    }

    /// How the family's reference resizes position embeddings. transformers'
    /// `Dinov2WithRegistersModel` (5.24.0) antialiases, unlike its `Dinov2Model`.
    pub fn pos_resize(self, registers: bool) -> Resize {
        match self {
            Naming::HfDinov2 if registers => Resize::BicubicAntialias,
            Naming::HfVit | Naming::HfDinov2 => Resize::Bicubic,
            Naming::Timm | Naming::TimmDinov2 | Naming::OpenClip => Resize::BicubicAntialias,
        }
    }

    /// Tensors the image backbone does not use.
    fn ignored(self) -> &'static [&'static str] {
        match self {
            Naming::Timm | Naming::TimmDinov2 => &["mask_token"],
            Naming::HfVit => &["pooler."],
            Naming::HfDinov2 => &["embeddings.mask_token"],
            Naming::OpenClip => &[],
        }
    }

    fn block_stem(self) -> &'static str {
        match self {
            Naming::Timm | Naming::TimmDinov2 => "blocks.",
            Naming::HfVit | Naming::HfDinov2 => "encoder.layer.",
            Naming::OpenClip => "transformer.resblocks.",
        }
    }

    /// The rules for a model of `depth` blocks; the family's key tree.
    fn rules(self, depth: usize) -> Vec<Rule> {
        let rename = |c: &str, f: &str| Rule::Rename {
            canonical: c.into(),
            family: f.into(),
        };
        let mut rules = Vec::new();
        match self {
            Naming::Timm | Naming::TimmDinov2 => {
                for k in [
                    "cls_token",
                    "reg_token",
                    "register_tokens",
                    "pos_embed",
                    "patch_embed.proj.weight",
                    "patch_embed.proj.bias",
                    "norm_pre.weight",
                    "norm_pre.bias",
                    "norm.weight",
                    "norm.bias",
                    "head.weight",
                    "head.bias",
                ] {
                    // Meta's DINOv2 calls the registers `register_tokens`.
                    rules.push(rename(
                        if k == "register_tokens" {
                            "reg_token"
                        } else {
                            k
                        },
                        k,
                    ));
                }
                for i in 0..depth {
                    for k in [
                        "norm1",
                        "attn.qkv",
                        "attn.proj",
                        "norm2",
                        "mlp.fc1",
                        "mlp.fc2",
                    ] {
                        for p in ["weight", "bias"] {
                            let key = format!("blocks.{i}.{k}.{p}");
                            rules.push(rename(&key, &key));
                        }
                    }
                    for ls in ["ls1", "ls2"] {
                        let key = format!("blocks.{i}.{ls}.gamma");
                        rules.push(rename(&key, &key));
                    }
                }
            }
            Naming::HfVit | Naming::HfDinov2 => {
                rules.push(rename("cls_token", "embeddings.cls_token"));
                rules.push(rename("reg_token", "embeddings.register_tokens"));
                rules.push(rename("pos_embed", "embeddings.position_embeddings"));
                for p in ["weight", "bias"] {
                    rules.push(rename(
                        &format!("patch_embed.proj.{p}"),
                        &format!("embeddings.patch_embeddings.projection.{p}"),
                    ));
                    rules.push(rename(&format!("norm.{p}"), &format!("layernorm.{p}")));
                }
                let dino = self == Naming::HfDinov2;
                for i in 0..depth {
                    let l = format!("encoder.layer.{i}");
                    let b = format!("blocks.{i}");
                    let (n1, n2) = if dino {
                        ("norm1", "norm2")
                    } else {
                        ("layernorm_before", "layernorm_after")
                    };
                    let (fc1, fc2) = if dino {
                        ("mlp.fc1", "mlp.fc2")
                    } else {
                        ("intermediate.dense", "output.dense")
                    };
                    for p in ["weight", "bias"] {
                        rules.push(rename(&format!("{b}.norm1.{p}"), &format!("{l}.{n1}.{p}")));
                        rules.push(Rule::Fuse {
                            canonical: format!("{b}.attn.qkv.{p}"),
                            parts: ["query", "key", "value"]
                                .map(|q| format!("{l}.attention.attention.{q}.{p}")),
                        });
                        rules.push(rename(
                            &format!("{b}.attn.proj.{p}"),
                            &format!("{l}.attention.output.dense.{p}"),
                        ));
                        rules.push(rename(&format!("{b}.norm2.{p}"), &format!("{l}.{n2}.{p}")));
                        rules.push(rename(
                            &format!("{b}.mlp.fc1.{p}"),
                            &format!("{l}.{fc1}.{p}"),
                        ));
                        rules.push(rename(
                            &format!("{b}.mlp.fc2.{p}"),
                            &format!("{l}.{fc2}.{p}"),
                        ));
                    }
                    rules.push(rename(
                        &format!("{b}.ls1.gamma"),
                        &format!("{l}.layer_scale1.lambda1"),
                    ));
                    rules.push(rename(
                        &format!("{b}.ls2.gamma"),
                        &format!("{l}.layer_scale2.lambda1"),
                    ));
                }
            }
            Naming::OpenClip => {
                rules.push(Rule::Lift {
                    canonical: "cls_token".into(),
                    family: "class_embedding".into(),
                });
                rules.push(Rule::Lift {
                    canonical: "pos_embed".into(),
                    family: "positional_embedding".into(),
                });
                rules.push(rename("patch_embed.proj.weight", "conv1.weight"));
                rules.push(rename("proj", "proj"));
                for p in ["weight", "bias"] {
                    rules.push(rename(&format!("norm_pre.{p}"), &format!("ln_pre.{p}")));
                    rules.push(rename(&format!("norm.{p}"), &format!("ln_post.{p}")));
                }
                for i in 0..depth {
                    let r = format!("transformer.resblocks.{i}");
                    let b = format!("blocks.{i}");
                    rules.push(rename(
                        &format!("{b}.attn.qkv.weight"),
                        &format!("{r}.attn.in_proj_weight"),
                    ));
                    rules.push(rename(
                        &format!("{b}.attn.qkv.bias"),
                        &format!("{r}.attn.in_proj_bias"),
                    ));
                    for p in ["weight", "bias"] {
                        rules.push(rename(&format!("{b}.norm1.{p}"), &format!("{r}.ln_1.{p}")));
                        rules.push(rename(
                            &format!("{b}.attn.proj.{p}"),
                            &format!("{r}.attn.out_proj.{p}"),
                        ));
                        rules.push(rename(&format!("{b}.norm2.{p}"), &format!("{r}.ln_2.{p}")));
                        rules.push(rename(
                            &format!("{b}.mlp.fc1.{p}"),
                            &format!("{r}.mlp.c_fc.{p}"),
                        ));
                        rules.push(rename(
                            &format!("{b}.mlp.fc2.{p}"),
                            &format!("{r}.mlp.c_proj.{p}"),
                        ));
                    }
                }
            }
        }
        rules
    }

    /// Takes every tensor of the backbone out of `ckpt` into canonical names.
    /// Tensors a family may lack (registers, LayerScale, head…) are simply
    /// absent from the result; whether the model needs them is the builder's
    /// call. Anything left in the checkpoint and not ignored is an error.
    pub fn to_canonical(self, mut ckpt: Checkpoint) -> Result<Canonical, ModelError> {
        let depth = ckpt.count_blocks(self.block_stem());
        if depth == 0 {
            return Err(ModelError::file(
                &ckpt.path,
                format!("no blocks (`{}{}0.…`)", ckpt.prefix, self.block_stem()),
            ));
        }
        let mut out = BTreeMap::new();
        let mut keys = KeyMap::new();
        for rule in self.rules(depth) {
            match rule {
                Rule::Rename { canonical, family } => {
                    if let Some(t) = ckpt.take_optional(&family) {
                        keys.insert(canonical.clone(), vec![ckpt.full(&family)]);
                        out.insert(canonical, t);
                    }
                }
                Rule::Lift { canonical, family } => {
                    if let Some(t) = ckpt.take_optional(&family) {
                        let mut shape = t.shape.clone();
                        while shape.len() < 3 {
                            shape.insert(0, 1);
                        }
                        keys.insert(canonical.clone(), vec![ckpt.full(&family)]);
                        out.insert(canonical, HostTensor::new(shape, t.data));
                    }
                }
                Rule::Fuse { canonical, parts } => {
                    let present = parts.iter().filter(|p| ckpt.contains(p)).count();
                    if present == 0 {
                        continue;
                    }
                    let taken = parts
                        .iter()
                        .map(|p| ckpt.take(p))
                        .collect::<Result<Vec<_>, _>>()?;
                    let first = &taken[0].shape;
                    for (t, p) in taken.iter().zip(&parts) {
                        if first.is_empty() || t.shape != *first {
                            return Err(ModelError::Shape {
                                file: ckpt.path.clone(),
                                key: ckpt.full(p),
                                expected: taken[0].shape.clone(),
                                found: t.shape.clone(),
                            });
                        }
                    }
                    let mut shape = taken[0].shape.clone();
                    shape[0] *= 3;
                    let data = taken.iter().flat_map(|t| t.data.iter().copied()).collect();
                    keys.insert(
                        canonical.clone(),
                        parts.iter().map(|p| ckpt.full(p)).collect(),
                    );
                    out.insert(canonical, HostTensor::new(shape, data));
                }
            }
        }
        let ignored = ckpt.finish(self.ignored())?;
        Ok((out, keys, ignored))
    }
}

/// Canonical tensors back into the family keys they were loaded from.
pub fn from_canonical(
    tensors: &BTreeMap<String, HostTensor>,
    keys: &KeyMap,
) -> BTreeMap<String, HostTensor> {
    let mut out = BTreeMap::new();
    for (canonical, t) in tensors {
        let family = &keys[canonical];
        if let [single] = &family[..] {
            let rank = if single.ends_with("class_embedding") {
                1
            } else if single.ends_with("positional_embedding") {
                2
            } else {
                t.shape.len()
            };
            let shape = t.shape[t.shape.len() - rank..].to_vec();
            out.insert(single.clone(), HostTensor::new(shape, t.data.clone()));
        } else {
            let part = t.data.len() / family.len();
            let mut shape = t.shape.clone();
            shape[0] /= family.len();
            for (i, key) in family.iter().enumerate() {
                out.insert(
                    key.clone(),
                    HostTensor::new(shape.clone(), t.data[i * part..(i + 1) * part].to_vec()),
                );
            }
        }
    }
    out
}
