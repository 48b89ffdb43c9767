//! fetch-data against archives served from a loopback HTTP server made here.

use super::*;
use sim_train::data::Dataset;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::time::Duration;

/// Serves `files` by path on 127.0.0.1 for at most `max_requests` requests.
fn serve(files: HashMap<String, Vec<u8>>, max_requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max_requests) {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).ok();
            let mut from = None; // `Range: bytes=N-`
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).map_or(true, |n| n == 0) || header == "\r\n" {
                    break;
                }
                if let Some(range) = header.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    from = range.trim().trim_end_matches('-').parse::<usize>().ok();
                }
            }
            let path = request
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_owned();
            let reply = match files.get(&path) {
                Some(body) if from.is_some_and(|f| f < body.len()) => {
                    let rest = &body[from.unwrap_or(0)..];
                    let mut r = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: \
                        {}\r\nConnection: close\r\n\r\n",
                        rest.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(rest);
                    r
                }
                Some(body) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            stream.write_all(&reply).ok();
        }
    });
    base
}

fn jpeg(shade: u8) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(8, 6, image::Rgb([shade, 100, 50]));
    let mut out = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut out),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    out
}

fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn tgz_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// 14 ISIC images (two per class, lesions shared in pairs) and a 2-class
/// Imagenette with 4 train and 2 val images.
fn archives() -> HashMap<String, Vec<u8>> {
    let columns = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"];
    let mut inputs = vec![(
        "ISIC2018_Task3_Training_Input/LICENSE.txt".to_string(),
        b"CC-BY-NC".to_vec(),
    )];
    let mut truth = format!("image,{}\n", columns.join(","));
    let mut groups = String::from("image,lesion_id,diagnosis_confirm_type\n");
    for i in 0..14 {
        let id = format!("ISIC_{:07}", 24306 + i);
        inputs.push((
            format!("ISIC2018_Task3_Training_Input/{id}.jpg"),
            jpeg(i as u8 * 10),
        ));
        let hot: Vec<&str> = (0..7)
            .map(|c| if c == i % 7 { "1.0" } else { "0.0" })
            .collect();
        truth.push_str(&format!("{id},{}\n", hot.join(",")));
        groups.push_str(&format!("{id},HAM_{:07},histopathology\n", i % 7));
    }
    let truth_zip = zip_of(&[(
        "ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv".into(),
        truth.into_bytes(),
    )]);
    let mut nette = Vec::new();
    for (split, n) in [("train", 2), ("val", 1)] {
        for class in ["n01440764", "n02102040"] {
            for k in 0..n {
                nette.push((
                    format!("imagenette2-320/{split}/{class}/{k}.JPEG"),
                    jpeg(k as u8),
                ));
            }
        }
    }
    nette.push((
        "imagenette2-320/noisy_imagenette.csv".into(),
        b"path\n".to_vec(),
    ));
    HashMap::from([
        ("ISIC2018_Task3_Training_Input.zip".into(), zip_of(&inputs)),
        ("ISIC2018_Task3_Training_GroundTruth.zip".into(), truth_zip),
        (
            "ISIC2018_Task3_Training_LesionGroupings.csv".into(),
            groups.into_bytes(),
        ),
        ("imagenette2-320.tgz".into(), tgz_of(&nette)),
    ])
}

/// The official sources, served from `base`, with digests of the test archives.
fn sources(base: &str, files: &HashMap<String, Vec<u8>>) -> Vec<Source> {
    let mut sources = with_mirror(official_sources(), base);
    for s in &mut sources {
        s.expected_images = if s.name == "ham10000" { 14 } else { 6 };
        for d in &mut s.downloads {
            let bytes = &files[d.file_name()];
            if matches!(d.checksum, Checksum::Md5(_)) {
                d.checksum = Checksum::Md5(hex::encode(Md5::digest(bytes)));
            }
        }
    }
    sources
}

#[test]
fn fetches_verifies_and_lays_out_both_data_sets() {
    let files = archives();
    let base = serve(files.clone(), 16);
    let dest = tempfile::tempdir().unwrap();
    let sources = sources(&base, &files);
    let fetched = fetch_missing(&sources, dest.path()).unwrap();
    assert_eq!(
        fetched,
        vec!["ham10000".to_string(), "imagenette".to_string()]
    );

    let ham = Dataset::load(&DatasetConfig::new(
        DatasetKind::Ham10000,
        dest.path().join("ham10000"),
    ))
    .unwrap();
    assert_eq!(ham.samples.len(), 14);
    // ISIC column order MEL, NV, BCC, … maps onto HAM10000's dx names.
    assert_eq!(ham.classes[ham.samples[0].label], "mel");
    assert_eq!(ham.classes[ham.samples[1].label], "nv");
    assert_eq!(ham.samples[0].group, ham.samples[7].group);
    assert_ne!(ham.samples[0].group, ham.samples[1].group);
    let nette = Dataset::load(&DatasetConfig::new(
        DatasetKind::ImageFolder,
        dest.path().join("imagenette"),
    ))
    .unwrap();
    assert_eq!(nette.samples.len(), 6);
    assert_eq!(nette.classes, vec!["n01440764", "n02102040"]);
    assert!(!dest.path().join(".ham10000.partial").exists());

    // Present folders are left alone: nothing is downloaded again.
    assert!(fetch_missing(&sources, dest.path()).unwrap().is_empty());
}

#[test]
fn checksum_mismatch_stops_and_leaves_no_data_set_or_partial_file() {
    let files = archives();
    let base = serve(files.clone(), 8);
    let dest = tempfile::tempdir().unwrap();
    let mut sources = sources(&base, &files);
    sources.retain(|s| s.name == "imagenette");
    sources[0].downloads[0].checksum = Checksum::Md5("00000000000000000000000000000000".into());
    let msg = format!("{:#}", fetch_missing(&sources, dest.path()).unwrap_err());
    assert!(msg.contains("MD5"), "{msg}");
    assert!(msg.contains("imagenette2-320.tgz"), "{msg}");
    assert!(!dest.path().join("imagenette").exists());
    let left: Vec<_> = fs::read_dir(dest.path().join(".downloads"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "nothing half-downloaded is kept: {left:?}");
}

#[test]
fn incomplete_contents_stop_before_the_folder_appears() {
    let files = archives();
    let base = serve(files.clone(), 8);
    let dest = tempfile::tempdir().unwrap();
    let mut sources = sources(&base, &files);
    sources.retain(|s| s.name == "imagenette");
    sources[0].expected_images = 7;
    let msg = format!("{:#}", fetch_missing(&sources, dest.path()).unwrap_err());
    assert!(msg.contains("holds 6 labelled images, expected 7"), "{msg}");
    assert!(!dest.path().join("imagenette").exists());
}

#[test]
fn missing_file_on_the_server_is_an_error_naming_the_url() {
    let base = serve(HashMap::new(), 4);
    let dest = tempfile::tempdir().unwrap();
    let mut sources = with_mirror(official_sources(), &base);
    sources.retain(|s| s.name == "imagenette");
    let msg = format!("{:#}", fetch_missing(&sources, dest.path()).unwrap_err());
    assert!(msg.contains("imagenette2-320.tgz"), "{msg}");
    assert!(msg.contains("404"), "{msg}");
}

/// A `.npy` file of `values` in `shape`, written by npyz.
fn npy<T: npyz::AutoSerialize + Copy>(shape: &[u64], values: &[T]) -> Vec<u8> {
    use npyz::WriterBuilder;
    let mut out = Vec::new();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut out)
        .begin_nd()
        .unwrap();
    writer.extend(values.iter().copied()).unwrap();
    writer.finish().unwrap();
    out
}

/// A MedMNIST-shaped `.npz`: 28×28 grey images, labels N×1, `counts`
/// images in train, val and test.
fn medmnist_npz(counts: [usize; 3]) -> Vec<u8> {
    let mut entries = Vec::new();
    for (split, n) in ["train", "val", "test"].into_iter().zip(counts) {
        let pixels: Vec<u8> = (0..n * 28 * 28).map(|i| (i % 251) as u8).collect();
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 2).collect();
        let n = n as u64;
        entries.push((format!("{split}_images.npy"), npy(&[n, 28, 28], &pixels)));
        entries.push((format!("{split}_labels.npy"), npy(&[n, 1], &labels)));
    }
    zip_of(&entries)
}

#[test]
fn a_medmnist_file_is_fetched_checked_and_placed_where_a_config_finds_it() {
    let npz = medmnist_npz([4, 2, 2]);
    let files = HashMap::from([("pneumoniamnist_64.npz".to_string(), npz.clone())]);
    let base = serve(files, 8);
    let dest = tempfile::tempdir().unwrap();
    let mut source = medmnist::source("pneumoniamnist", 64).unwrap();
    source.expected_images = 8;
    let mut wrong = with_mirror(vec![source.clone()], &base);
    // The release's MD5 is not this test file's: refused, nothing placed.
    let msg = format!("{:#}", fetch_missing(&wrong, dest.path()).unwrap_err());
    assert!(
        msg.contains("MD5") && msg.contains("pneumoniamnist_64.npz"),
        "{msg}"
    );
    assert!(!dest.path().join("medmnist/pneumoniamnist_64.npz").exists());

    wrong[0].downloads[0].checksum = Checksum::Md5(hex::encode(Md5::digest(&npz)));
    let fetched = fetch_missing(&wrong, dest.path()).unwrap();
    assert_eq!(fetched, ["medmnist/pneumoniamnist_64.npz"]);
    let placed = dest.path().join("medmnist/pneumoniamnist_64.npz");
    let ds = Dataset::load(&DatasetConfig::new(DatasetKind::Medmnist, &placed)).unwrap();
    assert_eq!(ds.samples.len(), 8);
    let val = ds
        .samples
        .iter()
        .filter(|s| s.given_split.as_deref() == Some("val"))
        .count();
    assert_eq!(val, 2, "its own validation split comes with it");
    assert!(fetch_missing(&wrong, dest.path()).unwrap().is_empty());
}

/// A config with two backbone files on a Hub served here: one fetched whole,
/// one continued from a broken-off `.part`, both checked against the SHA-256
/// the Hub lists; a wrong one is refused.
#[test]
fn fetch_checkpoints_downloads_resumes_and_verifies() {
    let model: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let other: Vec<u8> = (0..30_000u32).map(|i| (i * 13 % 241) as u8).collect();
    let listing = |file: &str, bytes: &[u8]| {
        format!(
            "[{{\"type\":\"file\",\"path\":\"{file}\",\"lfs\":{{\"oid\":\"{}\",\"size\":{}}}}}]",
            hex::encode(Sha256::digest(bytes)),
            bytes.len()
        )
        .into_bytes()
    };
    // The server's copy of the second file differs in its first third, which
    // the broken-off `.part` holds right: only a continued download is whole.
    let mut served = other.clone();
    served[..10_000].fill(0);
    let files = HashMap::from([
        (
            "api/models/acme/vit/tree/main?recursive=true".to_string(),
            listing("model.safetensors", &model),
        ),
        (
            "acme/vit/resolve/main/model.safetensors".to_string(),
            model.clone(),
        ),
        (
            "api/models/acme/dino/tree/main?recursive=true".to_string(),
            listing("weights/m.safetensors", &other),
        ),
        (
            "acme/dino/resolve/main/weights/m.safetensors".to_string(),
            served,
        ),
    ]);
    let hub = serve(files, 20);
    let dir = tempfile::tempdir().unwrap();
    let text = "[study]\nname = \"t\"\n[datasets.medical]\nkind = \"ham10000\"\nroot \
        = \"h\"\n[datasets.natural]\nkind = \"image-folder\"\nroot = \"n\"\n\
         [[backbones]]\nname = \"vit\"\ncheckpoint \
         = \"./ckpt/vit/model.safetensors\"\nsource = \"hf:acme/vit/model.safetensors\"\n\
         [[backbones]]\nname = \"dino\"\ncheckpoint = \"./ckpt/dino.safetensors\"\nsource \
         = \"hf:acme/dino/weights/m.safetensors\"\n";
    let config = sim_study::StudyConfig::from_toml_str(text, &dir.path().join("t.toml")).unwrap();
    // A broken-off download of the second file: its first third.
    std::fs::create_dir_all(dir.path().join("ckpt")).unwrap();
    std::fs::write(
        dir.path().join("ckpt/dino.safetensors.part"),
        &other[..10_000],
    )
    .unwrap();
    let fetched = fetch_checkpoints(&config, &hub).unwrap();
    assert_eq!(fetched.len(), 2);
    assert_eq!(
        std::fs::read(dir.path().join("ckpt/vit/model.safetensors")).unwrap(),
        model
    );
    assert_eq!(
        std::fs::read(dir.path().join("ckpt/dino.safetensors")).unwrap(),
        other
    );
    assert!(!dir.path().join("ckpt/dino.safetensors.part").exists());
    // Present files are left alone: nothing is asked of the Hub.
    assert!(
        fetch_checkpoints(&config, "http://127.0.0.1:9")
            .unwrap()
            .is_empty()
    );

    // A file whose bytes are not the ones the Hub lists is refused and not kept.
    let files = HashMap::from([
        (
            "api/models/acme/vit/tree/main?recursive=true".to_string(),
            listing("model.safetensors", &other),
        ),
        (
            "acme/vit/resolve/main/model.safetensors".to_string(),
            model.clone(),
        ),
    ]);
    let hub = serve(files, 5);
    let bad = tempfile::tempdir().unwrap();
    let mut elsewhere = config.clone();
    elsewhere.folder = sim_study::config::ConfigFolder(bad.path().to_owned());
    let msg = format!("{:#}", fetch_checkpoints(&elsewhere, &hub).unwrap_err());
    assert!(
        msg.contains("backbones `vit`")
            && msg.contains("SHA-256 is")
            && msg.contains(&hex::encode(Sha256::digest(&other))),
        "{msg}"
    );
    assert!(
        !bad.path().join("ckpt/vit/model.safetensors").exists()
            && !bad.path().join("ckpt/vit/model.safetensors.part").exists()
    );
}
