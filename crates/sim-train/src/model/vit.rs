//! One Vision Transformer for every family: patch embedding, class (and
//! register) tokens, position embedding, optional pre-norm (OpenCLIP's
//! `ln_pre`), pre-norm blocks with optional LayerScale (DINOv2), a final norm,
//! and an optional classifier head (timm) or projection (OpenCLIP).
//!
//! Built from canonical (timm-named, PyTorch-layout) tensors; every shape is
//! read from the checkpoint and checked before anything is made.

use super::ModelError;
use super::checkpoint::HostTensor;
use super::naming::KeyMap;
use super::pos_embed::{Resize, resize_grid};
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::activation::{gelu, sigmoid, softmax};
use sim_study::config::Precision;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// Exact (erf) GELU: timm, DINOv2, Hugging Face, LAION OpenCLIP.
    #[default]
    Gelu,
    /// x·σ(1.702x): OpenAI-trained CLIP weights.
    QuickGelu,
}

/// What the tensors alone do not say.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The checkpoint, for error messages.
    pub file: PathBuf,
    /// Attention heads (default: width / 64, as every ViT-S/B/L).
    pub heads: Option<usize>,
    pub activation: Activation,
    pub layer_norm_eps: f64,
    /// Input side in pixels; position embeddings are resized to its grid.
    pub input_size: usize,
    pub resize: Resize,
}

/// A transformer block: x + ls1·attn(norm1 x), then x + ls2·mlp(norm2 x).
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub norm1: LayerNorm<B>,
    pub qkv: Linear<B>,
    pub proj: Linear<B>,
    pub ls1: Option<Param<Tensor<B, 1>>>,
    pub norm2: LayerNorm<B>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    pub ls2: Option<Param<Tensor<B, 1>>>,
    pub heads: usize,
    #[module(skip)]
    pub activation: Activation,
    /// The arithmetic of the block's matrix products ([`Vit::set_precision`]).
    #[module(skip)]
    pub precision: Precision,
}

#[derive(Module, Debug)]
pub struct Vit<B: Backend> {
    pub patch_embed: Conv2d<B>,
    /// `[1, 1, D]`
    pub cls_token: Param<Tensor<B, 3>>,
    /// `[1, R, D]`, DINOv2 with registers.
    pub reg_token: Option<Param<Tensor<B, 3>>>,
    /// `[1, (1) + grid², D]` at the input grid (resized when loaded).
    pub pos_embed: Param<Tensor<B, 3>>,
    pub norm_pre: Option<LayerNorm<B>>,
    pub blocks: Vec<Block<B>>,
    pub norm: LayerNorm<B>,
    /// Classifier on the final CLS token (`[D, classes]`).
    pub head: Option<Linear<B>>,
    /// OpenCLIP's projection `[D, E]` of the final CLS token.
    pub proj: Option<Param<Tensor<B, 2>>>,
    /// Whether the position embedding covers the class token (not in timm's register models).
    pub class_pos: bool,
}

/// Everything one forward pass gives the study.
#[derive(Debug, Clone)]
pub struct VitOutput<B: Backend> {
    /// Tokens entering each block, then the last block's output: `L + 1`
    /// tensors `[B, T, D]` (index 0 = embedding output).
    pub hidden: Vec<Tensor<B, 3>>,
    /// The final norm over all tokens, `[B, T, D]`.
    pub final_tokens: Tensor<B, 3>,
    /// `[B, classes]` when the model has a head.
    pub logits: Option<Tensor<B, 2>>,
    /// `[B, E]`, OpenCLIP's projected image embedding.
    pub embedding: Option<Tensor<B, 2>>,
    /// The last block's CLS-to-patch attention averaged over heads, `[B, patches]`.
    pub attention: Tensor<B, 2>,
    /// Tokens before the patches (class + registers).
    pub prefix: usize,
}

impl<B: Backend> VitOutput<B> {
    /// CLS token and the mean of the patch tokens (registers excluded) of
    /// `[B, T, D]` tokens: two `[B, D]` tensors.
    pub fn cls_and_patch_mean(&self, tokens: &Tensor<B, 3>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let [b, t, d] = tokens.dims();
        let cls = tokens.clone().narrow(1, 0, 1).reshape([b, d]);
        let patches = tokens
            .clone()
            .narrow(1, self.prefix, t - self.prefix)
            .mean_dim(1)
            .reshape([b, d]);
        (cls, patches)
    }

    /// The L2 norm of every patch token after the final norm, `[B, patches]`
    /// (registers excluded), in the patch grid's row-major order.
    pub fn patch_norms(&self) -> Tensor<B, 2> {
        let [b, t, _] = self.final_tokens.dims();
        let patches = self
            .final_tokens
            .clone()
            .narrow(1, self.prefix, t - self.prefix);
        patches
            .powi_scalar(2)
            .sum_dim(2)
            .sqrt()
            .reshape([b, t - self.prefix])
    }
}

impl<B: Backend> Block<B> {
    /// `[B, T, D]` → `[B, T, D]`, and the head-averaged attention `[B, T, T]` when asked.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        with_attention: bool,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 3>>) {
        let [b, t, d] = x.dims();
        let (h, dh) = (self.heads, d / self.heads);
        let dtype = compute_dtype(self.precision);
        let qkv =
            linear_in(&self.qkv, self.norm1.forward(x.clone()), dtype).reshape([b, t, 3, h, dh]);
        let part = |i: usize| {
            qkv.clone()
                .narrow(2, i, 1)
                .reshape([b, t, h, dh])
                .swap_dims(1, 2)
        }; // [B, H, T, dh]
        let (q, k, v) = (part(0), part(1), part(2));
        let scores = matmul(q, k.swap_dims(2, 3), dtype).mul_scalar((dh as f64).powf(-0.5));
        let attn = softmax(scores, 3);
        let mixed = matmul(attn.clone(), v, dtype)
            .swap_dims(1, 2)
            .reshape([b, t, d]);
        let x = x + scale(linear_in(&self.proj, mixed, dtype), &self.ls1);
        let hidden = linear_in(&self.fc1, self.norm2.forward(x.clone()), dtype);
        let hidden = match self.activation {
            Activation::Gelu => gelu(hidden),
            Activation::QuickGelu => hidden.clone() * sigmoid(hidden.mul_scalar(1.702)),
        };
        let x = x + scale(linear_in(&self.fc2, hidden, dtype), &self.ls2);
        let mean_attn = with_attention.then(|| attn.mean_dim(1).reshape([b, t, t]));
        (x, mean_attn)
    }
}

/// The dtype a product runs in under `precision` (`None`: f32, no cast).
fn compute_dtype(precision: Precision) -> Option<FloatDType> {
    match precision {
        Precision::F32 => None,
        Precision::Bf16 => Some(FloatDType::BF16),
        Precision::F16 => Some(FloatDType::F16),
    }
}

/// `a · b` with both sides cast to `dtype` and the product cast back to
/// f32; under autodiff the gradients come back through the casts in f32.
fn matmul<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>, dtype: Option<FloatDType>) -> Tensor<B, 4> {
    match dtype {
        None => a.matmul(b),
        Some(dt) => a.cast(dt).matmul(b.cast(dt)).cast(FloatDType::F32),
    }
}

/// `layer.forward(x)` with its product in `dtype` (as [`matmul`]): the
/// weights themselves stay f32 (master weights), cast for each use.
///
/// The tokens of all images go through as one `[B·T, C]` matrix: burn's
/// linear on `[B, T, C]` multiplies B matrices by the broadcast weight, and
/// its weight gradient then builds B partial products `[B, C, D]` before
/// summing them; one product is a single large GEMM each way.
fn linear_in<B: Backend>(
    layer: &Linear<B>,
    x: Tensor<B, 3>,
    dtype: Option<FloatDType>,
) -> Tensor<B, 3> {
    let [b, t, c] = x.dims();
    let x = x.reshape([b * t, c]);
    let y = match dtype {
        None => layer.forward(x),
        Some(dt) => {
            let y = x.cast(dt).matmul(layer.weight.val().cast(dt));
            let y = match &layer.bias {
                Some(bias) => y + bias.val().cast(dt).unsqueeze::<2>(),
                None => y,
            };
            y.cast(FloatDType::F32)
        }
    };
    let d = y.dims()[1];
    y.reshape([b, t, d])
}

fn scale<B: Backend>(x: Tensor<B, 3>, gamma: &Option<Param<Tensor<B, 1>>>) -> Tensor<B, 3> {
    match gamma {
        Some(g) => {
            let d = g.dims()[0];
            x * g.val().reshape([1, 1, d])
        }
        None => x,
    }
}

impl<B: Backend> Vit<B> {
    pub fn width(&self) -> usize {
        self.cls_token.dims()[2]
    }

    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// Runs the blocks' matrix products in `precision` from now on (the
    /// patch embedding, norms, softmax and heads stay f32).
    pub fn set_precision(&mut self, precision: Precision) {
        for block in &mut self.blocks {
            block.precision = precision;
        }
    }

    pub fn registers(&self) -> usize {
        self.reg_token.as_ref().map_or(0, |r| r.dims()[1])
    }

    /// Images `[B, 3, S, S]` (normalised) → every layer's tokens and the heads' outputs.
    pub fn forward(&self, images: Tensor<B, 4>) -> VitOutput<B> {
        let x = self.patch_embed.forward(images); // [B, D, g, g]
        let [b, d, gh, gw] = x.dims();
        let patches = x.reshape([b, d, gh * gw]).swap_dims(1, 2); // [B, N, D]
        let cls = self.cls_token.val().expand([b, 1, d]);
        let pos = self.pos_embed_at(gh, gw);
        let regs = self
            .reg_token
            .as_ref()
            .map(|r| r.val().expand([b, self.registers(), d]));
        let mut x = if self.class_pos {
            let x = Tensor::cat(vec![cls, patches], 1) + pos;
            match regs {
                // Registers go after the class token, without position (DINOv2).
                Some(r) => {
                    let t = x.dims()[1];
                    Tensor::cat(vec![x.clone().narrow(1, 0, 1), r, x.narrow(1, 1, t - 1)], 1)
                }
                None => x,
            }
        } else {
            let mut parts = vec![cls];
            parts.extend(regs);
            parts.push(patches + pos);
            Tensor::cat(parts, 1)
        };
        if let Some(norm) = &self.norm_pre {
            x = norm.forward(x);
        }
        let prefix = 1 + self.registers();
        let mut hidden = vec![x.clone()];
        let mut attention = None;
        for (i, block) in self.blocks.iter().enumerate() {
            let last = i + 1 == self.blocks.len();
            let (next, attn) = block.forward(x, last);
            x = next;
            hidden.push(x.clone());
            if last {
                let attn = attn.expect("asked for");
                let t = attn.dims()[1];
                attention = Some(
                    attn.narrow(1, 0, 1)
                        .narrow(2, prefix, t - prefix)
                        .reshape([b, t - prefix]),
                );
            }
        }
        let final_tokens = self.norm.forward(x);
        let cls_final = final_tokens.clone().narrow(1, 0, 1).reshape([b, d]);
        let logits = self.head.as_ref().map(|h| h.forward(cls_final.clone()));
        let embedding = self.proj.as_ref().map(|p| cls_final.matmul(p.val()));
        VitOutput {
            hidden,
            final_tokens,
            logits,
            embedding,
            attention: attention.expect("at least one block"),
            prefix,
        }
    }

    /// The position embedding for a `gh × gw` patch grid: as stored when the
    /// images have the input size, else its patch part resampled (bicubic
    /// with antialias, timm's rule) by a fixed linear map, so gradients reach
    /// the stored embedding (DINO's local crops are smaller).
    fn pos_embed_at(&self, gh: usize, gw: usize) -> Tensor<B, 3> {
        let pos = self.pos_embed.val();
        let [_, t, d] = pos.dims();
        let skip = usize::from(self.class_pos);
        let n = t - skip;
        if n == gh * gw {
            return pos;
        }
        let old = (n as f64).sqrt().round() as usize;
        let identity: Vec<f64> = (0..n * n)
            .map(|i| f64::from(u8::from(i / n == i % n)))
            .collect();
        let map: Vec<f32> =
            resize_grid(&identity, (old, old), (gh, gw), n, Resize::BicubicAntialias)
                .into_iter()
                .map(|v| v as f32)
                .collect();
        let map = Tensor::<B, 2>::from_data(TensorData::new(map, [gh * gw, n]), &pos.device());
        let resized = map
            .matmul(pos.clone().narrow(1, skip, n).reshape([n, d]))
            .reshape([1, gh * gw, d]);
        if self.class_pos {
            Tensor::cat(vec![pos.narrow(1, 0, 1), resized], 1)
        } else {
            resized
        }
    }

    /// Builds the model from canonical tensors, checking every shape.
    pub fn from_canonical(
        tensors: BTreeMap<String, HostTensor>,
        keys: &KeyMap,
        spec: &BuildSpec,
        device: &B::Device,
    ) -> Result<Vit<B>, ModelError> {
        let mut t = Taker {
            tensors,
            keys,
            spec,
        };
        // The width comes from the patch embedding; everything else is checked against it.
        let patch_w = t.required("patch_embed.proj.weight")?;
        let (d, p) = (
            patch_w.shape.first().copied().unwrap_or(0),
            patch_w.shape.get(2).copied().unwrap_or(0),
        );
        if patch_w.shape != [d, 3, p, p] {
            return Err(t.shape_error("patch_embed.proj.weight", vec![d, 3, p, p], patch_w.shape));
        }
        let cls = t.required("cls_token")?;
        if cls.shape != [1, 1, d] {
            return Err(t.shape_error("cls_token", vec![1, 1, d], cls.shape));
        }
        let heads = spec.heads.unwrap_or(d / 64);
        if heads == 0 || d % heads != 0 {
            return Err(ModelError::file(
                &spec.file,
                format!(
                    "width {d} does not split into {heads} heads; set the number of heads \
                        (`heads` of the backbone in a study config, `--heads` for \
                        `sim-train extract`)"
                ),
            ));
        }
        if !spec.input_size.is_multiple_of(p) {
            return Err(ModelError::file(
                &spec.file,
                format!(
                    "input size {} is not a multiple of the patch size {p}",
                    spec.input_size
                ),
            ));
        }
        let patch_b = t.optional("patch_embed.proj.bias", &[d])?;
        let reg = match t.tensors.remove("reg_token") {
            Some(r) if r.shape.len() == 3 && r.shape[0] == 1 && r.shape[2] == d => Some(r),
            Some(r) => {
                return Err(t.shape_error(
                    "reg_token",
                    vec![1, r.shape.get(1).copied().unwrap_or(0), d],
                    r.shape,
                ));
            }
            None => None,
        };
        let pos = t.required("pos_embed")?;
        let (class_pos, pos) =
            resize_pos_embed(pos, d, spec.input_size / p, spec, &t.key("pos_embed"))?;
        let norm_pre = t.layer_norm("norm_pre", d, device)?;
        let depth = (0..)
            .take_while(|i| t.tensors.contains_key(&format!("blocks.{i}.norm1.weight")))
            .count();
        let mut blocks = Vec::new();
        for i in 0..depth {
            let b = format!("blocks.{i}");
            let norm1 = t.required_layer_norm(&format!("{b}.norm1"), d, device)?;
            let qkv = t.linear(&format!("{b}.attn.qkv"), Some(3 * d), d, device)?;
            let proj = t.linear(&format!("{b}.attn.proj"), Some(d), d, device)?;
            let ls1 = t
                .optional(&format!("{b}.ls1.gamma"), &[d])?
                .map(|g| param(g, device));
            let norm2 = t.required_layer_norm(&format!("{b}.norm2"), d, device)?;
            let fc1 = t.linear(&format!("{b}.mlp.fc1"), None, d, device)?;
            let fc2 = t.linear(
                &format!("{b}.mlp.fc2"),
                Some(d),
                fc1.weight.dims()[1],
                device,
            )?;
            let ls2 = t
                .optional(&format!("{b}.ls2.gamma"), &[d])?
                .map(|g| param(g, device));
            blocks.push(Block {
                norm1,
                qkv,
                proj,
                ls1,
                norm2,
                fc1,
                fc2,
                ls2,
                heads,
                activation: spec.activation,
                precision: Precision::F32,
            });
        }
        if blocks.is_empty() {
            return Err(ModelError::file(&spec.file, "no transformer blocks"));
        }
        let norm = t.required_layer_norm("norm", d, device)?;
        let head = if t.tensors.contains_key("head.weight") {
            Some(t.linear("head", None, d, device)?)
        } else {
            None
        };
        let proj = match t.tensors.remove("proj") {
            Some(p) if p.shape.len() == 2 && p.shape[0] == d => Some(param(p, device)),
            Some(p) => {
                return Err(t.shape_error(
                    "proj",
                    vec![d, p.shape.get(1).copied().unwrap_or(0)],
                    p.shape,
                ));
            }
            None => None,
        };
        if let Some(name) = t.tensors.keys().next() {
            return Err(ModelError::Unused {
                file: spec.file.clone(),
                keys: vec![t.key(name)],
            });
        }
        let mut patch_embed = Conv2dConfig::new([3, d], [p, p])
            .with_stride([p, p])
            .with_bias(patch_b.is_some())
            .init(device);
        patch_embed.weight = param(patch_w, device);
        patch_embed.bias = patch_b.map(|b| param(b, device));
        Ok(Vit {
            patch_embed,
            cls_token: param(cls, device),
            reg_token: reg.map(|r| param(r, device)),
            pos_embed: param(pos, device),
            norm_pre,
            blocks,
            norm,
            head,
            proj,
            class_pos,
        })
    }

    /// The model's tensors in canonical names and PyTorch layout.
    pub fn to_canonical(&self) -> BTreeMap<String, HostTensor> {
        let mut out = BTreeMap::new();
        let o = &mut out;
        o.insert("cls_token".into(), host(&self.cls_token.val()));
        if let Some(r) = &self.reg_token {
            o.insert("reg_token".into(), host(&r.val()));
        }
        o.insert("pos_embed".into(), host(&self.pos_embed.val()));
        o.insert(
            "patch_embed.proj.weight".into(),
            host(&self.patch_embed.weight.val()),
        );
        if let Some(b) = &self.patch_embed.bias {
            o.insert("patch_embed.proj.bias".into(), host(&b.val()));
        }
        if let Some(n) = &self.norm_pre {
            export_layer_norm(o, "norm_pre", n);
        }
        for (i, blk) in self.blocks.iter().enumerate() {
            let b = format!("blocks.{i}");
            export_layer_norm(o, &format!("{b}.norm1"), &blk.norm1);
            export_layer_norm(o, &format!("{b}.norm2"), &blk.norm2);
            export_linear(o, &format!("{b}.attn.qkv"), &blk.qkv);
            export_linear(o, &format!("{b}.attn.proj"), &blk.proj);
            export_linear(o, &format!("{b}.mlp.fc1"), &blk.fc1);
            export_linear(o, &format!("{b}.mlp.fc2"), &blk.fc2);
            for (name, g) in [("ls1", &blk.ls1), ("ls2", &blk.ls2)] {
                if let Some(g) = g {
                    o.insert(format!("{b}.{name}.gamma"), host(&g.val()));
                }
            }
        }
        export_layer_norm(o, "norm", &self.norm);
        if let Some(h) = &self.head {
            export_linear(o, "head", h);
        }
        if let Some(p) = &self.proj {
            o.insert("proj".into(), host(&p.val()));
        }
        out
    }
}

fn export_layer_norm<B: Backend>(
    out: &mut BTreeMap<String, HostTensor>,
    name: &str,
    ln: &LayerNorm<B>,
) {
    out.insert(format!("{name}.weight"), host(&ln.gamma.val()));
    if let Some(b) = &ln.beta {
        out.insert(format!("{name}.bias"), host(&b.val()));
    }
}

/// burn's `[in, out]` weight back to PyTorch's `[out, in]`.
fn export_linear<B: Backend>(out: &mut BTreeMap<String, HostTensor>, name: &str, l: &Linear<B>) {
    out.insert(format!("{name}.weight"), host(&l.weight.val().transpose()));
    if let Some(b) = &l.bias {
        out.insert(format!("{name}.bias"), host(&b.val()));
    }
}

/// Hands out canonical tensors by name, checking shapes; errors name the
/// key as it stands in the checkpoint.
struct Taker<'a> {
    tensors: BTreeMap<String, HostTensor>,
    keys: &'a KeyMap,
    spec: &'a BuildSpec,
}

impl Taker<'_> {
    fn key(&self, name: &str) -> String {
        self.keys
            .get(name)
            .map(|k| k.join(" + "))
            .unwrap_or_else(|| name.to_owned())
    }

    fn shape_error(&self, name: &str, expected: Vec<usize>, found: Vec<usize>) -> ModelError {
        ModelError::Shape {
            file: self.spec.file.clone(),
            key: self.key(name),
            expected,
            found,
        }
    }

    fn required(&mut self, name: &str) -> Result<HostTensor, ModelError> {
        self.tensors
            .remove(name)
            .ok_or_else(|| ModelError::Missing {
                file: self.spec.file.clone(),
                key: self.key(name),
            })
    }

    fn optional(
        &mut self,
        name: &str,
        expected: &[usize],
    ) -> Result<Option<HostTensor>, ModelError> {
        match self.tensors.remove(name) {
            Some(t) if t.shape != expected => {
                Err(self.shape_error(name, expected.to_vec(), t.shape))
            }
            other => Ok(other),
        }
    }

    fn layer_norm<B: Backend>(
        &mut self,
        prefix: &str,
        d: usize,
        device: &B::Device,
    ) -> Result<Option<LayerNorm<B>>, ModelError> {
        let Some(w) = self.optional(&format!("{prefix}.weight"), &[d])? else {
            return Ok(None);
        };
        let b = self.optional(&format!("{prefix}.bias"), &[d])?;
        Ok(Some(layer_norm(w, b, self.spec.layer_norm_eps, device)))
    }

    fn required_layer_norm<B: Backend>(
        &mut self,
        prefix: &str,
        d: usize,
        device: &B::Device,
    ) -> Result<LayerNorm<B>, ModelError> {
        match self.layer_norm(prefix, d, device)? {
            Some(ln) => Ok(ln),
            None => Err(ModelError::Missing {
                file: self.spec.file.clone(),
                key: self.key(&format!("{prefix}.weight")),
            }),
        }
    }

    /// A PyTorch-layout `[out, in]` weight (and bias `[out]`, if any).
    fn linear<B: Backend>(
        &mut self,
        prefix: &str,
        out: Option<usize>,
        input: usize,
        device: &B::Device,
    ) -> Result<Linear<B>, ModelError> {
        let name = format!("{prefix}.weight");
        let w = self.required(&name)?;
        let out = out.unwrap_or(w.shape.first().copied().unwrap_or(0));
        if w.shape != [out, input] {
            return Err(self.shape_error(&name, vec![out, input], w.shape));
        }
        let b = self.optional(&format!("{prefix}.bias"), &[out])?;
        Ok(linear(w, b, device))
    }
}

/// The position embedding at the input grid: the patch part resized with
/// the family's rule, the class position (if any) kept apart.
fn resize_pos_embed(
    pos: HostTensor,
    d: usize,
    grid: usize,
    spec: &BuildSpec,
    key: &str,
) -> Result<(bool, HostTensor), ModelError> {
    let shape_error = |found: Vec<usize>| ModelError::Shape {
        file: spec.file.clone(),
        key: key.to_owned(),
        expected: vec![1, 1 + grid * grid, d],
        found,
    };
    let &[1, tokens, dd] = &pos.shape[..] else {
        return Err(shape_error(pos.shape));
    };
    if dd != d {
        return Err(shape_error(pos.shape));
    }
    let square = |n: usize| (1..=n).find(|k| k * k >= n).filter(|k| k * k == n);
    let (class_pos, old) = match (tokens.checked_sub(1).and_then(square), square(tokens)) {
        (Some(g), _) if g > 0 => (true, g),
        (_, Some(g)) => (false, g),
        _ => return Err(shape_error(pos.shape)),
    };
    let skip = usize::from(class_pos);
    let values: Vec<f64> = pos.data.iter().map(|&v| v as f64).collect();
    let resized = resize_grid(
        &values[skip * d..],
        (old, old),
        (grid, grid),
        d,
        spec.resize,
    );
    let mut data: Vec<f32> = pos.data[..skip * d].to_vec();
    data.extend(resized.into_iter().map(|v| v as f32));
    Ok((
        class_pos,
        HostTensor::new(vec![1, skip + grid * grid, d], data),
    ))
}

fn tensor<B: Backend, const D: usize>(t: HostTensor, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(t.data, t.shape), device)
}

fn param<B: Backend, const D: usize>(t: HostTensor, device: &B::Device) -> Param<Tensor<B, D>> {
    Param::from_tensor(tensor(t, device))
}

/// A PyTorch `[out, in]` linear weight as burn's `[in, out]`.
fn linear<B: Backend>(w: HostTensor, b: Option<HostTensor>, device: &B::Device) -> Linear<B> {
    let weight: Tensor<B, 2> = tensor(w, device);
    Linear {
        weight: Param::from_tensor(weight.transpose()),
        bias: b.map(|b| param(b, device)),
    }
}

fn layer_norm<B: Backend>(
    w: HostTensor,
    b: Option<HostTensor>,
    eps: f64,
    device: &B::Device,
) -> LayerNorm<B> {
    let mut ln = LayerNormConfig::new(w.shape[0])
        .with_epsilon(eps)
        .with_bias(b.is_some())
        .init(device);
    ln.gamma = param(w, device);
    ln.beta = b.map(|b| param(b, device));
    ln
}

fn host<B: Backend, const D: usize>(t: &Tensor<B, D>) -> HostTensor {
    let data = t.to_data().convert::<f32>();
    HostTensor::new(
        data.shape.to_vec(),
        data.to_vec::<f32>().expect("f32 after convert"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend;
    use crate::model::init::{VitShape, random_vit};

    /// Smaller images (DINO's local crops) see the stored position embedding
    /// resampled to their grid, as `resize_grid` resamples it; the class
    /// token's position is kept.
    #[test]
    fn another_grid_gets_the_position_embedding_resampled() {
        let shape = VitShape {
            width: 8,
            depth: 1,
            heads: 2,
            patch: 4,
            mlp_ratio: 2,
            input_size: 16,
        };
        let vit = random_vit::<CpuBackend>(shape, 3, &Default::default())
            .unwrap()
            .model;
        let stored = host(&vit.pos_embed.val()).data;
        let at = host(&vit.pos_embed_at(2, 2)).data;
        assert_eq!(at.len(), (1 + 4) * 8);
        assert_eq!(at[..8], stored[..8], "the class token's position");
        let patches: Vec<f64> = stored[8..].iter().map(|&v| v as f64).collect();
        let want = resize_grid(&patches, (4, 4), (2, 2), 8, Resize::BicubicAntialias);
        for (got, want) in at[8..].iter().zip(&want) {
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert_eq!(
            host(&vit.pos_embed_at(4, 4)).data,
            stored,
            "the input grid: as stored"
        );
        let out = vit.forward(Tensor::zeros([2, 3, 8, 8], &Default::default()));
        assert_eq!(out.final_tokens.dims(), [2, 5, 8]);
    }
}
