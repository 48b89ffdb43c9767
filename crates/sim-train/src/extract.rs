//! `sim-train extract`: every layer's features of a folder of images, so a
//! user can check a real checkpoint against their own PyTorch code.
//!
//! Images are read in file-name order and go through the evaluation
//! transform with crop ratio 1 (resize the shorter side to the input size,
//! centre-crop; an image already at the input size passes untouched), then
//! the family's normalisation. The output holds, in f32, `layer_<i>.cls` and
//! `layer_<i>.patch_mean` for i = 0 (embedding) … L (last block), `final.cls`
//! and `final.patch_mean` (after the final norm), `logits` / `embedding`
//! where the model has them, and the image names in the file's metadata
//! (`images`, a JSON list).

use crate::data::image_cache::{ImageView, decode, resize_shorter_side};
use crate::data::transform::{Normalisation, centre_crop, render};
use crate::data::{ImageSource, list_images};
use crate::model::{LoadOptions, load};
use burn::prelude::*;
use sim_study::tensors::{RawTensor, write_safetensors};
use std::collections::HashMap;
use std::path::Path;

/// Images per forward pass.
const BATCH: usize = 16;

/// Features of every image in `images`, written to `out`; returns how many images.
pub fn extract<B: Backend>(
    checkpoint: &Path,
    opts: &LoadOptions,
    images: &Path,
    out: &Path,
    device: &B::Device,
) -> anyhow::Result<usize> {
    anyhow::ensure!(
        opts.input_size > 0,
        "--size 0: the input side must be a positive multiple of the patch size"
    );
    let backbone = load::<B>(checkpoint, opts, device)?;
    let (mean, std) = backbone
        .naming
        .family()
        .normalisation()
        .expect("a detected naming has a family");
    let norm = Normalisation { mean, std };
    let files = list_images(images)?;
    anyhow::ensure!(
        !files.is_empty(),
        "{}: no images (.jpg, .jpeg, .png, .bmp)",
        images.display()
    );
    let size = opts.input_size as u32;
    let mut columns: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let bar = sim_study::progress::bar(
        files.len() as u64,
        "features {bar:30} {pos}/{len} images, {per_sec}, {eta} left",
    );
    for chunk in files.chunks(BATCH) {
        bar.inc(chunk.len() as u64);
        let mut pixels = vec![0f32; chunk.len() * 3 * (size * size) as usize];
        for (file, out) in chunk
            .iter()
            .zip(pixels.chunks_mut(3 * (size * size) as usize))
        {
            let img = resize_shorter_side(decode(&ImageSource::File(file.clone()))?, size);
            let view = ImageView {
                width: img.width(),
                height: img.height(),
                pixels: img.as_raw(),
            };
            render(
                view,
                &centre_crop(img.width(), img.height(), size),
                size,
                &norm,
                out,
            );
        }
        let s = size as usize;
        let batch =
            Tensor::<B, 4>::from_data(TensorData::new(pixels, [chunk.len(), 3, s, s]), device);
        let output = backbone.model.forward(batch);
        let mut named: Vec<(String, Tensor<B, 2>)> = Vec::new();
        for (i, tokens) in output.hidden.iter().enumerate() {
            let (cls, patch) = output.cls_and_patch_mean(tokens);
            named.push((format!("layer_{i}.cls"), cls));
            named.push((format!("layer_{i}.patch_mean"), patch));
        }
        let (cls, patch) = output.cls_and_patch_mean(&output.final_tokens);
        named.push(("final.cls".into(), cls));
        named.push(("final.patch_mean".into(), patch));
        named.extend(output.logits.clone().map(|l| ("logits".to_string(), l)));
        named.extend(
            output
                .embedding
                .clone()
                .map(|e| ("embedding".to_string(), e)),
        );
        for (name, t) in named {
            let [rows, cols] = t.dims();
            let values = t.into_data().convert::<f32>().to_vec::<f32>().expect("f32");
            match columns.iter_mut().find(|c| c.0 == name) {
                Some(c) => {
                    c.1[0] += rows;
                    c.2.extend(values);
                }
                None => columns.push((name, vec![rows, cols], values)),
            }
        }
    }
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let metadata = HashMap::from([("images".to_string(), serde_json::to_string(&names)?)]);
    let tensors = columns
        .into_iter()
        .map(|(n, s, v)| RawTensor::f32(n, s, &v))
        .collect();
    write_safetensors(out, tensors, Some(metadata))?;
    Ok(names.len())
}
