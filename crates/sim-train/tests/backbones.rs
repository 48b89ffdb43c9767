//! Every backbone family and naming against its reference implementation's
//! outputs (scripts/backbone_reference.py: timm 1.0.31, transformers 5.24.0,
//! open_clip 3.3.0, torch 2.15.0), every layer, at the checkpoint's own input
//! size and at another one (position embeddings resized the family's way).

use burn::prelude::*;
use sim_study::config::Family;
use sim_study::tensors::{Values, decode};
use sim_train::CpuBackend;
use sim_train::model::naming::Naming;
use sim_train::model::pos_embed::Resize;
use sim_train::model::{Activation, Backbone, LoadOptions, ModelError, load};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A named tensor: (name, (shape, values)).
type NamedTensor = (String, (Vec<usize>, Vec<f64>));

/// Tolerance on max |ours − reference| / max |reference|, per tensor (f32).
const TOLERANCE: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backbones")
        .join(name)
}

fn reference(name: &str, size: usize) -> BTreeMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(fixture(name).join(format!("reference-{size}.safetensors"))).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(k, v)| {
            let (shape, Values::Float(data)) = decode(&v).unwrap() else {
                panic!("{k}: floats")
            };
            (k, (shape, data))
        })
        .collect()
}

fn options(name: &str, size: usize) -> LoadOptions {
    LoadOptions {
        heads: Some(3),
        activation: if name == "open_clip" {
            Activation::QuickGelu
        } else {
            Activation::Gelu
        },
        resize: (name == "meta_dinov2").then_some(Resize::MetaOffset),
        ..LoadOptions::new(size)
    }
}

fn values<const D: usize>(t: &Tensor<CpuBackend, D>) -> (Vec<usize>, Vec<f64>) {
    let data = t.to_data();
    (
        data.shape.to_vec(),
        data.to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
    )
}

fn relative_error(ours: &[f64], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    ours.iter()
        .zip(want)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

/// Runs the model on the reference input; returns the worst tensor's error.
fn compare(
    backbone: &Backbone<CpuBackend>,
    refs: &BTreeMap<String, (Vec<usize>, Vec<f64>)>,
    what: &str,
) -> f64 {
    let device = Default::default();
    let (shape, input) = &refs["input"];
    let input: Vec<f32> = input.iter().map(|&v| v as f32).collect();
    let images = Tensor::<CpuBackend, 4>::from_data(TensorData::new(input, shape.clone()), &device);
    let out = backbone.model.forward(images);
    // (name, (shape, values)) per hidden state
    let mut ours: Vec<NamedTensor> = out
        .hidden
        .iter()
        .enumerate()
        .map(|(i, h)| (format!("hidden.{i}"), values(h)))
        .collect();
    ours.push(("final".into(), values(&out.final_tokens)));
    ours.push(("attention".into(), values(&out.attention)));
    ours.extend(
        out.logits
            .as_ref()
            .map(|l| ("logits".to_string(), values(l))),
    );
    ours.extend(
        out.embedding
            .as_ref()
            .map(|e| ("embedding".to_string(), values(e))),
    );
    let expected: Vec<&String> = refs.keys().filter(|k| *k != "input").collect();
    let got: Vec<&String> = ours.iter().map(|(k, _)| k).collect();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(
        sorted, expected,
        "{what}: the model gives exactly the reference's outputs"
    );
    let mut worst: f64 = 0.0;
    for (name, (shape, data)) in &ours {
        let (want_shape, want) = &refs[name];
        assert_eq!(shape, want_shape, "{what} {name}: shape");
        let err = relative_error(data, want);
        assert!(
            err <= TOLERANCE,
            "{what} {name}: relative error {err:.2e} > {TOLERANCE:e}"
        );
        worst = worst.max(err);
    }
    worst
}

#[test]
fn every_family_matches_its_reference_at_every_layer() {
    let device = Default::default();
    let cases: [(&str, Naming, &[usize]); 8] = [
        ("timm_vit", Naming::Timm, &[32, 48]),
        ("timm_dinov2", Naming::TimmDinov2, &[28, 42]),
        ("timm_dinov2_reg", Naming::TimmDinov2, &[28, 42]),
        ("meta_dinov2", Naming::TimmDinov2, &[42]),
        ("hf_vit", Naming::HfVit, &[32, 48]),
        ("hf_dinov2", Naming::HfDinov2, &[28, 42]),
        ("hf_dinov2_reg", Naming::HfDinov2, &[28, 42]),
        ("open_clip", Naming::OpenClip, &[32, 48]),
    ];
    for (name, naming, sizes) in cases {
        for &size in sizes {
            let what = format!("{name} at {size} px");
            let backbone: Backbone<CpuBackend> = load(
                &fixture(name).join("model.safetensors"),
                &options(name, size),
                &device,
            )
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(backbone.naming, naming, "{what}: detected naming");
            let worst = compare(&backbone, &reference(name, size), &what);
            eprintln!("{what}: worst relative error {worst:.1e}");
        }
    }
}

#[test]
fn prefixes_and_ignored_tensors_are_reported() {
    let device = Default::default();
    let clip: Backbone<CpuBackend> = load(
        &fixture("open_clip").join("model.safetensors"),
        &options("open_clip", 32),
        &device,
    )
    .unwrap();
    assert_eq!(clip.prefix, "visual.");
    assert!(
        clip.outside_prefix > 0,
        "the text tower is outside the image backbone"
    );
    let hf: Backbone<CpuBackend> = load(
        &fixture("hf_dinov2").join("model.safetensors"),
        &options("hf_dinov2", 28),
        &device,
    )
    .unwrap();
    assert_eq!(hf.ignored, vec!["embeddings.mask_token".to_string()]);
    let vit: Backbone<CpuBackend> = load(
        &fixture("hf_vit").join("model.safetensors"),
        &options("hf_vit", 32),
        &device,
    )
    .unwrap();
    assert_eq!(
        vit.ignored,
        vec![
            "pooler.dense.bias".to_string(),
            "pooler.dense.weight".to_string()
        ]
    );
}

#[test]
fn a_saved_model_keeps_its_names_and_reloads_to_identical_outputs() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    for (name, size) in [("timm_vit", 48), ("hf_dinov2_reg", 42), ("open_clip", 48)] {
        let source = fixture(name).join("model.safetensors");
        let first: Backbone<CpuBackend> = load(&source, &options(name, size), &device).unwrap();
        let saved = dir.path().join(format!("{name}.safetensors"));
        first.save(&saved).unwrap();
        let names = |p: &Path| -> Vec<String> {
            let bytes = std::fs::read(p).unwrap();
            let mut n: Vec<String> = safetensors::SafeTensors::deserialize(&bytes)
                .unwrap()
                .names()
                .into_iter()
                .map(String::from)
                .collect();
            n.sort();
            n
        };
        let mut original: Vec<String> = names(&source)
            .into_iter()
            .filter(|k| k.starts_with(&first.prefix) && !first.ignored.contains(k))
            .collect();
        original.sort();
        assert_eq!(
            names(&saved),
            original,
            "{name}: saved in the names it was loaded from"
        );
        let second: Backbone<CpuBackend> = load(&saved, &options(name, size), &device).unwrap();
        let input = Tensor::<CpuBackend, 4>::random(
            [2, 3, size, size],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let (a, b) = (
            first.model.forward(input.clone()),
            second.model.forward(input),
        );
        for (x, y) in a
            .hidden
            .iter()
            .zip(&b.hidden)
            .chain([(&a.final_tokens, &b.final_tokens)])
        {
            assert_eq!(
                values(x).1,
                values(y).1,
                "{name}: reloaded outputs are identical"
            );
        }
    }
}

/// Writes `model.safetensors` of `name` with `edit` applied to its tensors.
fn edited(
    name: &str,
    dir: &Path,
    edit: impl FnOnce(&mut BTreeMap<String, (Vec<usize>, Vec<f32>)>),
) -> PathBuf {
    let bytes = std::fs::read(fixture(name).join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = file
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            let (shape, Values::Float(d)) = decode(&v).unwrap() else {
                panic!()
            };
            (k, (shape, d.into_iter().map(|x| x as f32).collect()))
        })
        .collect();
    edit(&mut tensors);
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(k, (s, d))| (k, s, d.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views = raw.iter().map(|(k, s, b)| {
        (
            k.clone(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap(),
        )
    });
    let path = dir.join(format!("{name}-edited.safetensors"));
    safetensors::serialize_to_file(views, None, &path).unwrap();
    path
}

fn load_err(path: &Path, name: &str, size: usize) -> String {
    load::<CpuBackend>(path, &options(name, size), &Default::default())
        .err()
        .map(|e: ModelError| e.to_string())
        .expect("an error")
}

#[test]
fn missing_misshaped_and_unknown_tensors_are_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited("hf_vit", dir.path(), |t| {
        t.remove("encoder.layer.1.attention.attention.key.weight");
    });
    let msg = load_err(&p, "hf_vit", 32);
    assert!(
        msg.contains("missing tensor `encoder.layer.1.attention.attention.key.weight`"),
        "{msg}"
    );

    let p = edited("timm_vit", dir.path(), |t| {
        t.get_mut("blocks.2.mlp.fc2.weight").unwrap().0 = vec![192, 48];
    });
    let msg = load_err(&p, "timm_vit", 32);
    assert!(
        msg.contains("`blocks.2.mlp.fc2.weight` has shape [192, 48], expected [48, 192]"),
        "{msg}"
    );

    let p = edited("timm_dinov2", dir.path(), |t| {
        t.insert("blocks.0.attn.extra_scale".into(), (vec![3], vec![1.0; 3]));
    });
    let msg = load_err(&p, "timm_dinov2", 28);
    assert!(
        msg.contains("tensors the model does not use: blocks.0.attn.extra_scale"),
        "{msg}"
    );

    let p = edited("hf_dinov2", dir.path(), |t| {
        *t.get_mut("encoder.layer.0.attention.attention.key.weight")
            .unwrap() = (vec![], vec![1.0]);
    });
    let msg = load_err(&p, "hf_dinov2", 28);
    assert!(
        msg.contains("encoder.layer.0.attention.attention.key.weight") && msg.contains("shape []"),
        "{msg}"
    );

    let p = edited("timm_vit", dir.path(), |t| {
        *t.get_mut("patch_embed.proj.weight").unwrap() = (vec![], vec![1.0]);
    });
    let msg = load_err(&p, "timm_vit", 32);
    assert!(
        msg.contains("`patch_embed.proj.weight` has shape []"),
        "{msg}"
    );

    let p = edited("open_clip", dir.path(), |t| {
        t.get_mut("visual.class_embedding").unwrap().1.truncate(40);
        t.get_mut("visual.class_embedding").unwrap().0 = vec![40];
    });
    let msg = load_err(&p, "open_clip", 32);
    assert!(
        msg.contains("`visual.class_embedding` has shape [1, 1, 40], expected [1, 1, 48]"),
        "{msg}"
    );
}

#[test]
fn a_silently_transposed_square_weight_is_caught_by_the_reference() {
    // attn.proj is square: transposed, it still loads; the outputs give it away.
    let dir = tempfile::tempdir().unwrap();
    let p = edited("timm_vit", dir.path(), |t| {
        let (shape, data) = t.get_mut("blocks.1.attn.proj.weight").unwrap();
        let n = shape[0];
        *data = (0..n * n).map(|i| data[(i % n) * n + i / n]).collect();
    });
    let backbone: Backbone<CpuBackend> =
        load(&p, &options("timm_vit", 32), &Default::default()).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        compare(&backbone, &reference("timm_vit", 32), "transposed")
    }));
    assert!(
        result.is_err(),
        "a transposed attn.proj must not match the reference"
    );
}

#[test]
fn truncated_or_foreign_files_and_wrong_family_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("timm_vit").join("model.safetensors")).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(load_err(&truncated, "timm_vit", 32).contains("not a safetensors file"));
    let text = dir.path().join("notes.safetensors");
    std::fs::write(&text, b"hello").unwrap();
    assert!(load_err(&text, "timm_vit", 32).contains("not a safetensors file"));
    let opts = LoadOptions {
        family: Family::OpenClip,
        ..options("timm_vit", 32)
    };
    let msg = load::<CpuBackend>(
        &fixture("timm_vit").join("model.safetensors"),
        &opts,
        &Default::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        msg.contains("Timm names") && msg.contains("OpenClip"),
        "{msg}"
    );
    let msg = load_err(
        &fixture("timm_vit").join("model.safetensors"),
        "timm_vit",
        36,
    );
    assert!(msg.contains("not a multiple of the patch size 8"), "{msg}");
}
