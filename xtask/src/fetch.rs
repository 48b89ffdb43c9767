//! `cargo xtask fetch-data`: download the study's data sets from their official
//! sources, verify them, unpack, and lay them out as the readers expect:
//!
//! - `ham10000/`: `images/ISIC_*.jpg` + `HAM10000_metadata.csv`, built from the
//!   ISIC 2018 Task 3 training files (the HAM10000 images, one-hot ground
//!   truth, lesion groupings) on the ISIC challenge bucket;
//! - `imagenette/`: `train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG`, from fast.ai's
//!   `imagenette2-320.tgz`;
//! - with `--medmnist`, `medmnist/<flag>[_<size>].npz`: a MedMNIST v2 2D data
//!   set as its release publishes it ([`medmnist`]).
//!
//! Archives go to `<dest>/.downloads/` (a finished, verified download is not
//! fetched again); a data set folder appears only once complete (assembled in
//! a temporary folder, then renamed), and is then loaded by the project's own
//! reader to check its contents.
//!
//! `cargo xtask fetch-checkpoints`: the backbone files a config names with a
//! `source`, from the Hugging Face Hub ([`hub`]).

use anyhow::{Context, bail, ensure};
use md5::Md5;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sim_study::config::{DatasetConfig, DatasetKind};
use sim_train::data::{Dataset, HAM10000_CLASSES};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// How a download is checked.
#[derive(Debug, Clone, Deserialize)]
pub enum Checksum {
    /// The digest the publisher (or torchvision, for Imagenette) lists.
    Md5(String),
    /// The SHA-256 the publisher lists (the Hugging Face Hub, for LFS files).
    Sha256(String),
    /// No published digest (the ISIC bucket lists none): the SHA-256 is printed
    /// for the record, and the unpacked contents are checked instead.
    Unpublished,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Download {
    pub url: String,
    pub checksum: Checksum,
}

impl Download {
    /// The URL's last path segment, without a query (`?download=1`).
    fn file_name(&self) -> &str {
        let path = self.url.split('?').next().unwrap_or(&self.url);
        path.rsplit('/').next().unwrap_or(path)
    }
}

/// How the unpacked downloads become the data set folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Layout {
    /// ISIC 2018 Task 3 input zip, ground-truth zip, lesion-groupings CSV → HAM10000 layout.
    Ham10000FromIsic,
    /// An ImageFolder archive with `train/` and `val/` one folder down.
    ImagenetteFolder,
    /// A MedMNIST `.npz`, used as it is (`name` is the file's path).
    MedmnistNpz,
}

/// One data set to fetch.
#[derive(Debug, Clone, Deserialize)]
pub struct Source {
    /// Folder (or, for a MedMNIST file, file) under the data directory
    /// (`ham10000`, `imagenette`, `medmnist/pneumoniamnist_64.npz`).
    pub name: String,
    pub downloads: Vec<Download>,
    pub layout: Layout,
    /// Images the finished folder must hold (checked by loading it).
    pub expected_images: usize,
    /// What `fetch-data` is given to fetch this alone (`--only ham10000`).
    pub fetch_args: String,
}

impl Source {
    /// `ham10000 (10015 images, 2.6 GB)`: the download's size as the
    /// server gives it (a `HEAD` per file; "size unknown" when one says none).
    pub fn describe(&self) -> String {
        let sizes: Option<Vec<u64>> = self.downloads.iter().map(|d| remote_size(&d.url)).collect();
        let size = sizes.map_or("size unknown".to_string(), |s| {
            let bytes = s.iter().sum::<u64>() as f64;
            if bytes >= 1e9 {
                format!("{:.1} GB", bytes / 1e9)
            } else {
                format!("{:.1} MB", bytes / 1e6)
            }
        });
        format!("{} ({} images, {size})", self.name, self.expected_images)
    }
}

/// The `Content-Length` a server gives for `url` (redirects followed).
fn remote_size(url: &str) -> Option<u64> {
    let response = ureq::head(url).call().ok()?;
    response
        .headers()
        .get("content-length")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Names a JSON file of sources (a list of [`Source`]) that replaces the
/// ones `reproduce` fetches from: how the fresh-machine test stands
/// loopback servers in for the data sets' hosts. Not for users (a mirror
/// is `fetch-data --mirror`).
pub const TEST_SOURCES_VAR: &str = "SIM_TEST_DATA_SOURCES";

/// What `reproduce` may fetch a missing data set from: the official
/// sources and every MedMNIST file (or those of [`TEST_SOURCES_VAR`]).
pub fn known_sources() -> anyhow::Result<Vec<Source>> {
    let Some(file) = std::env::var_os(TEST_SOURCES_VAR) else {
        return Ok(official_sources()
            .into_iter()
            .chain(medmnist::all_sources())
            .collect());
    };
    let text = fs::read_to_string(&file)
        .with_context(|| format!("{TEST_SOURCES_VAR}: reading {}", file.to_string_lossy()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{TEST_SOURCES_VAR}: {} is not a list of sources",
            file.to_string_lossy()
        )
    })
}

/// The official sources.
pub fn official_sources() -> Vec<Source> {
    let isic = "https://isic-challenge-data.s3.amazonaws.com/2018";
    vec![
        Source {
            name: "ham10000".into(),
            downloads: [
                "ISIC2018_Task3_Training_Input.zip",
                "ISIC2018_Task3_Training_GroundTruth.zip",
                "ISIC2018_Task3_Training_LesionGroupings.csv",
            ]
            .iter()
            .map(|f| Download {
                url: format!("{isic}/{f}"),
                checksum: Checksum::Unpublished,
            })
            .collect(),
            layout: Layout::Ham10000FromIsic,
            expected_images: 10_015,
            fetch_args: "--only ham10000".into(),
        },
        Source {
            name: "imagenette".into(),
            downloads: vec![Download {
                url: "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz".into(),
                checksum: Checksum::Md5("3df6f0d01a2c9592104656642f5e78a3".into()),
            }],
            layout: Layout::ImagenetteFolder,
            expected_images: 9_469 + 3_925,
            fetch_args: "--only imagenette".into(),
        },
    ]
}

/// Replaces every download's host and folder by `mirror` (same file names).
pub fn with_mirror(sources: Vec<Source>, mirror: &str) -> Vec<Source> {
    sources
        .into_iter()
        .map(|mut s| {
            for d in &mut s.downloads {
                d.url = format!("{}/{}", mirror.trim_end_matches('/'), d.file_name());
            }
            s
        })
        .collect()
}

/// Fetches every source whose folder under `dest` is missing; returns the
/// names fetched. A present folder is left alone.
pub fn fetch_missing(sources: &[Source], dest: &Path) -> anyhow::Result<Vec<String>> {
    let mut fetched = Vec::new();
    for source in sources {
        let target = dest.join(&source.name);
        if target.exists() {
            println!("{}: present at {}, skipped", source.name, target.display());
            continue;
        }
        fetch_one(source, dest).with_context(|| format!("fetching {}", source.name))?;
        fetched.push(source.name.clone());
    }
    Ok(fetched)
}

fn fetch_one(source: &Source, dest: &Path) -> anyhow::Result<()> {
    let downloads = dest.join(".downloads");
    fs::create_dir_all(&downloads).with_context(|| format!("creating {}", downloads.display()))?;
    let mut files = Vec::new();
    for d in &source.downloads {
        let path = downloads.join(d.file_name());
        files.push(download_verified(d, &path, &part_beside(&path), None)?);
    }
    let assemble: fn(&Path, &Path) -> anyhow::Result<()> = match source.layout {
        Layout::Ham10000FromIsic => assemble_ham10000,
        Layout::ImagenetteFolder => assemble_image_folder,
        Layout::MedmnistNpz => return place_file(source, &files[0], dest),
    };
    let work = dest.join(format!(".{}.partial", source.name));
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    let unpacked = work.join("unpacked");
    let assembled = work.join(&source.name);
    for file in &files {
        unpack(file, &unpacked)?;
    }
    assemble(&unpacked, &assembled)?;
    let found = count_images(source, &assembled)?;
    let target = dest.join(&source.name);
    fs::rename(&assembled, &target).with_context(|| format!("moving into {}", target.display()))?;
    fs::remove_dir_all(&work).ok();
    println!("{}: {found} images in {}", source.name, target.display());
    Ok(())
}

/// A verified single-file data set: loaded with the project's reader (its
/// images counted), then copied into place (temporary file, then rename).
fn place_file(source: &Source, file: &Path, dest: &Path) -> anyhow::Result<()> {
    let found = count_images(source, file)?;
    let target = dest.join(&source.name);
    let partial = target.with_file_name(format!(
        ".{}.partial",
        target.file_name().unwrap_or_default().to_string_lossy()
    ));
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::copy(file, &partial).with_context(|| format!("copying to {}", partial.display()))?;
    fs::rename(&partial, &target).with_context(|| format!("moving into {}", target.display()))?;
    println!("{}: {found} images in {}", source.name, target.display());
    Ok(())
}

/// `<path>.part`: where a download to `path` is written until it is whole.
fn part_beside(path: &Path) -> PathBuf {
    path.with_file_name(format!(
        "{}.part",
        path.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// Downloads to `part`, checks the digest, renames to `path`. A file
/// already there that passes the check is used as it is; a `part` left by a
/// broken-off download is continued (an HTTP range request), and removed
/// when the whole fails its check. `token` goes to the first host only (a
/// redirect to another drops it).
fn download_verified(
    d: &Download,
    path: &Path,
    part: &Path,
    token: Option<&str>,
) -> anyhow::Result<PathBuf> {
    if path.exists() {
        let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        if verify(d, path, &mut f).is_ok() {
            println!("{}: already downloaded", path.display());
            return Ok(path.to_owned());
        }
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let have = fs::metadata(part).map_or(0, |m| m.len());
    let mut request = ureq::get(&d.url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    if have > 0 {
        println!("downloading {} (continuing after {have} bytes)", d.url);
        request = request.header("Range", &format!("bytes={have}-"));
    } else {
        println!("downloading {}", d.url);
    }
    let response = request.call().with_context(|| format!("GET {}", d.url))?;
    // 206: the rest of the file; 200: the whole file (the server ignored the range).
    let resumed = response.status().as_u16() == 206;
    let length: Option<u64> = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let bar = download_bar(d.file_name(), length, if resumed { have } else { 0 });
    let mut body = bar.wrap_read(response.into_body().into_reader());
    let mut out = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(part)
        .with_context(|| format!("creating {}", part.display()))?;
    std::io::copy(&mut body, &mut out).with_context(|| {
        format!(
            "downloading {} (the part so far stays in {}; run again to continue)",
            d.url,
            part.display()
        )
    })?;
    bar.finish_and_clear();
    out.sync_all()?;
    drop(out);
    if let Err(e) = verify(d, part, &mut fs::File::open(part)?) {
        fs::remove_file(part).ok();
        return Err(e);
    }
    fs::rename(part, path)?;
    Ok(path.to_owned())
}

/// Bytes, rate and time left on a terminal's stderr (drawn nowhere else):
/// `already` bytes were there before.
fn download_bar(name: &str, length: Option<u64>, already: u64) -> indicatif::ProgressBar {
    let bar = sim_study::progress::bar(
        length.map_or(0, |l| l + already),
        "{msg} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} {eta} left",
    );
    bar.set_message(name.to_string());
    bar.set_position(already);
    bar
}

fn verify(d: &Download, path: &Path, file: &mut fs::File) -> anyhow::Result<()> {
    let (mut md5, mut sha) = (Md5::new(), Sha256::new());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        sha.update(&buf[..n]);
    }
    let (md5, sha) = (hex::encode(md5.finalize()), hex::encode(sha.finalize()));
    match &d.checksum {
        Checksum::Md5(want) if !want.eq_ignore_ascii_case(&md5) => {
            bail!(
                "{}: MD5 is {md5}, expected {want} (from {})",
                path.display(),
                d.url
            )
        }
        Checksum::Md5(_) => {}
        Checksum::Sha256(want) if !want.eq_ignore_ascii_case(&sha) => {
            bail!(
                "{}: SHA-256 is {sha}, expected {want} (published for {})",
                path.display(),
                d.url
            )
        }
        Checksum::Sha256(_) => {}
        Checksum::Unpublished => {
            println!(
                "{}: SHA-256 {sha} (no published checksum; contents are checked after unpacking)",
                d.file_name()
            )
        }
    }
    Ok(())
}

fn unpack(file: &Path, into: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(into)?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let open = || fs::File::open(file).with_context(|| format!("opening {}", file.display()));
    if name.ends_with(".zip") {
        let mut zip = zip::ZipArchive::new(open()?)
            .with_context(|| format!("{} is not a zip archive", file.display()))?;
        zip.extract(into)
            .with_context(|| format!("unpacking {}", file.display()))?;
    } else if name.ends_with(".tgz") || name.ends_with(".tar.gz") {
        tar::Archive::new(flate2::read::GzDecoder::new(open()?))
            .unpack(into)
            .with_context(|| format!("unpacking {}", file.display()))?;
    } else {
        fs::copy(file, into.join(&name)).with_context(|| format!("copying {}", file.display()))?;
    }
    Ok(())
}

/// ISIC 2018 Task 3 → `images/` + `HAM10000_metadata.csv`. ISIC's files carry
/// lesion, image and diagnosis; the metadata columns they lack (dx_type, age,
/// sex, localization) are left empty.
fn assemble_ham10000(unpacked: &Path, out: &Path) -> anyhow::Result<()> {
    let input = unpacked.join("ISIC2018_Task3_Training_Input");
    let ground_truth = unpacked
        .join("ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv");
    let groups = unpacked.join("ISIC2018_Task3_Training_LesionGroupings.csv");
    let isic = sim_train::data::isic2018::read(&ground_truth, &input, Some(&groups))?;
    let images = out.join("images");
    fs::create_dir_all(&images)?;
    let mut csv = String::from("lesion_id,image_id,dx,dx_type,age,sex,localization\n");
    for s in &isic.samples {
        let sim_train::data::ImageSource::File(src) = &s.source else {
            unreachable!("the ISIC reader lists files")
        };
        let file_name = src.file_name().context("image without a file name")?;
        fs::rename(src, images.join(file_name))
            .with_context(|| format!("moving {}", src.display()))?;
        csv.push_str(&format!(
            "{},{},{},,,,\n",
            s.group, s.id, HAM10000_CLASSES[s.label]
        ));
    }
    fs::File::create(out.join("HAM10000_metadata.csv"))?.write_all(csv.as_bytes())?;
    Ok(())
}

/// An archive holding one folder with `train/` and `val/` → those two folders.
fn assemble_image_folder(unpacked: &Path, out: &Path) -> anyhow::Result<()> {
    let top = fs::read_dir(unpacked)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join("train").is_dir())
        .with_context(|| format!("no folder with train/ in {}", unpacked.display()))?;
    fs::create_dir_all(out)?;
    for split in ["train", "val"] {
        fs::rename(top.join(split), out.join(split))
            .with_context(|| format!("no {split}/ in {}", top.display()))?;
    }
    Ok(())
}

/// Loads the assembled folder (or file) with the project's own reader; its
/// labelled images must be the source's count.
fn count_images(source: &Source, folder: &Path) -> anyhow::Result<usize> {
    let kind = match source.layout {
        Layout::Ham10000FromIsic => DatasetKind::Ham10000,
        Layout::ImagenetteFolder => DatasetKind::ImageFolder,
        Layout::MedmnistNpz => DatasetKind::Medmnist,
    };
    // Absolute: a config's relative `root` is read against SIM_DATA_DIR,
    // and `folder` is already under it.
    let folder =
        std::path::absolute(folder).with_context(|| format!("resolving {}", folder.display()))?;
    let found = Dataset::load(&DatasetConfig::new(kind, folder))?
        .samples
        .len();
    ensure!(
        found == source.expected_images,
        "{} holds {found} labelled images, expected {}; the download is incomplete or changed",
        source.name,
        source.expected_images
    );
    Ok(found)
}

pub mod hub;
pub mod medmnist;
#[cfg(test)]
mod tests;
