//! Backbones from the checkpoints researchers download.
//!
//! A checkpoint goes through three steps, one module each:
//! 1. [`checkpoint`]: the safetensors file as named f32 tensors under a key
//!    prefix (`visual.`, `backbone.`, `vit.` … detected or given);
//! 2. [`naming`]: the family's key names (timm, Meta DINOv2, Hugging Face ViT
//!    and DINOv2, OpenCLIP) renamed into one canonical naming, strictly —
//!    every tensor is used or on the family's ignore list;
//! 3. [`vit`]: the one ViT, built with every shape checked, position
//!    embeddings resized ([`pos_embed`]) the way the family's reference does.
//!
//! [`Backbone::save`] walks the same way back, in the names the model was
//! loaded from; [`init`] makes a new one (timm's initialisation and names).

pub mod checkpoint;
pub mod init;
pub mod naming;
pub mod pos_embed;
pub mod vit;

pub use vit::{Activation, Vit, VitOutput};

use burn::prelude::*;
use checkpoint::{Checkpoint, KNOWN_PREFIXES};
use naming::{KeyMap, Naming};
use pos_embed::Resize;
use sim_study::config::{BackboneConfig, Family};
use sim_study::tensors::{RawTensor, write_safetensors};
use std::path::{Path, PathBuf};

/// A checkpoint that cannot become a model; names the file and key.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{file}: {message}")]
    File { file: PathBuf, message: String },
    #[error("{file}: missing tensor `{key}`")]
    Missing { file: PathBuf, key: String },
    #[error("{file}: tensor `{key}` has shape {found:?}, expected {expected:?}")]
    Shape {
        file: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{file}: tensors the model does not use: {}", keys.join(", "))]
    Unused { file: PathBuf, keys: Vec<String> },
}

impl ModelError {
    pub fn file(file: &Path, message: impl Into<String>) -> ModelError {
        ModelError::File {
            file: file.to_owned(),
            message: message.into(),
        }
    }
}

/// How to read a checkpoint; `Default` detects everything it can.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Expected family; `Auto` takes the one the keys show.
    pub family: Family,
    /// Key prefix of the image backbone; detected when `None`.
    pub prefix: Option<String>,
    /// Input side in pixels.
    pub input_size: usize,
    /// Attention heads; default width / 64.
    pub heads: Option<usize>,
    /// GELU unless set (OpenAI-trained CLIP weights need QuickGELU).
    pub activation: Activation,
    /// Position-embedding resizing; default: the naming's reference rule.
    /// Meta's own DINOv2 checkpoints (timm's key names) need `MetaOffset`.
    pub resize: Option<Resize>,
}

impl LoadOptions {
    pub fn new(input_size: usize) -> LoadOptions {
        LoadOptions {
            family: Family::Auto,
            prefix: None,
            input_size,
            heads: None,
            activation: Activation::Gelu,
            resize: None,
        }
    }

    /// What a study's backbone entry asks for.
    pub fn for_backbone(b: &BackboneConfig) -> LoadOptions {
        LoadOptions {
            family: b.family,
            prefix: b.prefix.clone(),
            input_size: b.input_size as usize,
            heads: b.heads,
            activation: if b.quick_gelu {
                Activation::QuickGelu
            } else {
                Activation::Gelu
            },
            resize: b.pos_resize,
        }
    }
}

/// A loaded model and what saving it back needs.
pub struct Backbone<B: Backend> {
    pub model: Vit<B>,
    pub naming: Naming,
    /// The prefix stripped from the checkpoint's keys.
    pub prefix: String,
    /// Checkpoint tensors on the family's ignore list (e.g. `mask_token`).
    pub ignored: Vec<String>,
    /// Checkpoint tensors outside the prefix (e.g. a CLIP text tower).
    pub outside_prefix: usize,
    keys: KeyMap,
}

/// Loads a backbone from a safetensors checkpoint.
pub fn load<B: Backend>(
    path: &Path,
    opts: &LoadOptions,
    device: &B::Device,
) -> Result<Backbone<B>, ModelError> {
    let all = Checkpoint::read_all(path)?;
    let candidates: Vec<&str> = match &opts.prefix {
        Some(p) => vec![p.as_str()],
        None => std::iter::once("").chain(KNOWN_PREFIXES).collect(),
    };
    let (ckpt, naming) = candidates
        .iter()
        .map(|p| Checkpoint::with_prefix(path, &all, p))
        .find_map(|c| Naming::detect(&c).map(|n| (c, n)))
        .ok_or_else(|| {
            let tried = candidates
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ");
            ModelError::file(
                path,
                format!("no ViT, DINOv2 or OpenCLIP image backbone under the key prefixes {tried}"),
            )
        })?;
    if opts.family != Family::Auto && opts.family != naming.family() {
        return Err(ModelError::file(
            path,
            format!(
                "keys are {naming:?} names (family {:?}), but family {:?} was asked for",
                naming.family(),
                opts.family
            ),
        ));
    }
    let prefix = ckpt.prefix.clone();
    let outside_prefix = ckpt.outside_prefix;
    let (tensors, keys, ignored) = naming.to_canonical(ckpt)?;
    let spec = vit::BuildSpec {
        file: path.to_owned(),
        heads: heads(path, opts.heads)?,
        activation: opts.activation,
        layer_norm_eps: naming.layer_norm_eps(),
        input_size: opts.input_size,
        resize: opts
            .resize
            .unwrap_or(naming.pos_resize(tensors.contains_key("reg_token"))),
    };
    let model = Vit::from_canonical(tensors, &keys, &spec, device)?;
    Ok(Backbone {
        model,
        naming,
        prefix,
        ignored,
        outside_prefix,
        keys,
    })
}

/// The attention heads to build with: the ones asked for, else the ones
/// the file records (files this tool wrote); a disagreement is an error.
fn heads(path: &Path, asked: Option<usize>) -> Result<Option<usize>, ModelError> {
    match (asked, checkpoint::stored_heads(path)?) {
        (Some(a), Some(s)) if a != s => Err(ModelError::file(
            path,
            format!(
                "{s} attention heads recorded in the file (metadata `{}`), {a} asked for",
                checkpoint::HEADS_METADATA
            ),
        )),
        (asked, stored) => Ok(asked.or(stored)),
    }
}

impl<B: Backend> Backbone<B> {
    /// Writes the model as safetensors in the names it was loaded from, its
    /// attention heads in the metadata (written to a temporary file, then
    /// renamed).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        self.save_model(&self.model, path)
    }

    /// Writes `model` (of this one's structure, e.g. after training) in the
    /// names this one was loaded from, as [`Backbone::save`].
    pub fn save_model<I: Backend>(&self, model: &Vit<I>, path: &Path) -> Result<(), ModelError> {
        let tensors = naming::from_canonical(&model.to_canonical(), &self.keys);
        let raw = tensors
            .into_iter()
            .map(|(k, t)| RawTensor::f32(k, t.shape, &t.data))
            .collect();
        let heads = model.blocks.first().map(|b| b.heads).unwrap_or_default();
        let metadata = std::collections::HashMap::from([(
            checkpoint::HEADS_METADATA.to_string(),
            heads.to_string(),
        )]);
        write_safetensors(path, raw, Some(metadata))
            .map_err(|e| ModelError::file(path, e.to_string()))
    }
}
