//! `sim-train extract` on a folder of images written here: layout of the
//! output, and the same numbers as the library on hand-normalised pixels.

use burn::prelude::*;
use image::{Rgb, RgbImage};
use sim_study::config::{IMAGENET_MEAN, IMAGENET_STD};
use sim_study::tensors::{Values, decode};
use sim_train::CpuBackend;
use sim_train::model::{LoadOptions, load};
use std::path::Path;
use std::process::Command;

fn checkpoint() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backbones/timm_vit/model.safetensors")
}

/// `sim-train extract` of the tiny ViT at 32 px, as a user runs it.
fn extract(images: &Path, out: &Path) -> std::process::Output {
    extract_with(&["--heads", "3", "--size", "32"], images, out)
}

/// `sim-train extract` of the tiny ViT with these options.
fn extract_with(options: &[&str], images: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sim-train"))
        .args(["extract", "--checkpoint"])
        .arg(checkpoint())
        .args(options)
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn image(seed: u32, w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 7 + y * 13 + seed * 31) % 256;
        Rgb([v as u8, (255 - v) as u8, ((v * 3) % 256) as u8])
    })
}

#[test]
fn extract_writes_every_layer_in_file_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    image(2, 32, 32).save(images.join("b.png")).unwrap();
    image(1, 32, 32).save(images.join("a.png")).unwrap();
    image(3, 48, 40).save(images.join("c.png")).unwrap(); // resized, then centre-cropped
    let out = dir.path().join("feats.safetensors");
    let status = extract(&images, &out);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    let bytes = std::fs::read(&out).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let names: Vec<String> =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["images"]).unwrap();
    assert_eq!(names, ["a.png", "b.png", "c.png"]);
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensor_names: Vec<&str> = file.names();
    tensor_names.sort();
    let mut want = vec!["final.cls", "final.patch_mean", "logits"];
    let layers: Vec<String> = (0..=3)
        .flat_map(|i| [format!("layer_{i}.cls"), format!("layer_{i}.patch_mean")])
        .collect();
    want.extend(layers.iter().map(|s| s.as_str()));
    want.sort();
    assert_eq!(tensor_names, want);
    let get = |name: &str| {
        let (shape, Values::Float(v)) = decode(&file.tensor(name).unwrap()).unwrap() else {
            panic!()
        };
        (shape, v)
    };
    assert_eq!(get("layer_2.cls").0, vec![3, 48]);
    assert_eq!(get("logits").0, vec![3, 5]);

    // a.png by hand: pixels / 255, ImageNet mean/std, no resizing at 32 px.
    let img = image(1, 32, 32);
    let mut pixels = vec![0f32; 3 * 32 * 32];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            pixels[c * 1024 + (y * 32 + x) as usize] =
                (p[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    let device = Default::default();
    let opts = LoadOptions {
        heads: Some(3),
        ..LoadOptions::new(32)
    };
    let model = load::<CpuBackend>(&checkpoint(), &opts, &device)
        .unwrap()
        .model;
    let out = model.forward(Tensor::from_data(
        TensorData::new(pixels, [1, 3, 32, 32]),
        &device,
    ));
    let want: Vec<f32> = out
        .final_tokens
        .narrow(1, 0, 1)
        .into_data()
        .to_vec()
        .unwrap();
    let got = get("final.cls").1;
    for (a, b) in got[..48].iter().zip(&want) {
        assert!((a - *b as f64).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn a_truncated_image_stops_extract_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    image(1, 32, 32).save(images.join("a.png")).unwrap();
    let mut jpeg = Vec::new();
    image(2, 200, 160)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    std::fs::write(images.join("b.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    let out = dir.path().join("feats.safetensors");
    let output = extract(&images, &out);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&images.join("b.jpg").display().to_string()),
        "{stderr}"
    );
    assert!(!out.exists());
}

/// `extract` with options a user mistypes: each an error naming the option
/// (`--size 0` panicked; a head count the width does not split into named
/// the study config's key, not `--heads`).
#[test]
fn bad_extract_options_are_errors_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    image(1, 32, 32).save(images.join("a.png")).unwrap();
    let out = dir.path().join("feats.safetensors");
    let run = |args: &[&str]| {
        let output = extract_with(args, &images, &out);
        assert!(!output.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let stderr = run(&["--heads", "3", "--size", "0"]);
    assert!(
        stderr.contains("--size 0") && !stderr.contains("panicked"),
        "{stderr}"
    );
    // The tiny ViT is 48 wide: 5 heads do not split it, and neither does the default (48 / 64 = 0).
    for heads in [&["--heads", "5"][..], &[]] {
        let stderr = run(&[heads, &["--size", "32"][..]].concat());
        assert!(
            stderr.contains("heads") && stderr.contains("`--heads`"),
            "{stderr}"
        );
    }
    assert!(!out.exists());
}
