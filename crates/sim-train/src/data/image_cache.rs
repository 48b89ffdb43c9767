//! Decoded images, kept in one file per (data set, shorter side), so that
//! every epoch of every run reads pixels instead of decoding 10k JPEGs.
//!
//! Each image is decoded once (in parallel), converted to RGB, and resized so
//! that its shorter side is `side` pixels (bicubic, aspect kept; an image whose
//! shorter side already is `side` is stored untouched). The file starts with a
//! fingerprint of the sources (ids, file sizes and modification times, or the
//! pixels of in-memory images) and the side: when any source changes, the
//! cache no longer matches and is rebuilt. It is written atomically.
//! Each image's SHA-256 of what was read (the file's bytes, or the in-memory
//! pixels: [`source_sha256`]) is kept with it, so the study can check every
//! image against the one its split recorded (`data::prepare`).
//!
//! Layout (little endian): `SIMIMG02`, fingerprint (32 bytes), side (u32),
//! count (u32), RGB pixels of every image back to back, then per image
//! (width u32, height u32, offset u64, source SHA-256 32 bytes), then the
//! offset of that table (u64).

use super::{DataError, ImageSource, Sample};
use image::RgbImage;
use image::imageops::FilterType;
use memmap2::Mmap;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8; 8] = b"SIMIMG02";
/// Changes whenever the decoding or resizing changes, so old caches rebuild.
const PIPELINE_VERSION: &str = "rgb8 catmull-rom shorter-side floor v1";
const HEADER_LEN: usize = 8 + 32 + 4 + 4;
/// Bytes per image in the table: width, height, offset, source SHA-256.
const ENTRY_LEN: usize = 4 + 4 + 8 + 32;
/// Images decoded in parallel before they are written out (bounds memory).
const CHUNK: usize = 512;

/// A borrowed RGB image from the cache: `pixels` is `height × width × 3`.
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    pub width: u32,
    pub height: u32,
    pub pixels: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    width: u32,
    height: u32,
    offset: u64,
    source_sha256: [u8; 32],
}

pub struct ImageCache {
    map: Mmap,
    entries: Vec<Entry>,
    side: u32,
}

/// Whether [`ImageCache::load_or_build`] found a matching cache or built one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheState {
    Reused,
    Built,
}

impl ImageCache {
    /// Opens the cache at `path` if it matches `samples` and `side`, else
    /// decodes every sample and writes a new one there.
    pub fn load_or_build(
        path: &Path,
        samples: &[Sample],
        side: u32,
    ) -> Result<(ImageCache, CacheState), DataError> {
        let fingerprint = fingerprint(samples, side)?;
        if let Some(cache) = Self::open(path, &fingerprint, samples.len())? {
            return Ok((cache, CacheState::Reused));
        }
        build(path, samples, side, &fingerprint)?;
        let cache = Self::open(path, &fingerprint, samples.len())?
            .ok_or_else(|| DataError::file(path, "cache just written does not read back"))?;
        Ok((cache, CacheState::Built))
    }

    /// `Ok(None)` when there is no file, or it was made from other sources.
    fn open(
        path: &Path,
        fingerprint: &[u8; 32],
        count: usize,
    ) -> Result<Option<ImageCache>, DataError> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DataError::io(path, e)),
        };
        // Safety: cache files are only ever replaced by rename, never written in
        // place, so the mapped bytes do not change under us.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
        if map.len() < HEADER_LEN + 8 || &map[..8] != MAGIC || map[8..40] != fingerprint[..] {
            return Ok(None);
        }
        let side = u32_at(&map, 40);
        if u32_at(&map, 44) as usize != count {
            return Ok(None);
        }
        let table = u64_at(&map, map.len() - 8) as usize;
        if table.checked_add(count * ENTRY_LEN + 8) != Some(map.len()) {
            return Ok(None); // truncated or foreign: rebuild
        }
        let entries: Vec<Entry> = (0..count)
            .map(|i| {
                let at = table + i * ENTRY_LEN;
                Entry {
                    width: u32_at(&map, at),
                    height: u32_at(&map, at + 4),
                    offset: u64_at(&map, at + 8),
                    source_sha256: map[at + 16..at + 48].try_into().expect("32 bytes"),
                }
            })
            .collect();
        let in_bounds = entries.iter().all(|e| {
            (e.offset as usize).saturating_add(e.width as usize * e.height as usize * 3) <= table
        });
        Ok(in_bounds.then_some(ImageCache { map, entries, side }))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The shorter side every cached image has.
    pub fn side(&self) -> u32 {
        self.side
    }

    /// The SHA-256 of what image `i` was decoded from ([`source_sha256`]).
    pub fn source_sha256(&self, i: usize) -> [u8; 32] {
        self.entries[i].source_sha256
    }

    /// Image `i`, in the order of the samples the cache was built from.
    pub fn get(&self, i: usize) -> ImageView<'_> {
        let e = self.entries[i];
        let len = e.width as usize * e.height as usize * 3;
        let start = e.offset as usize;
        ImageView {
            width: e.width,
            height: e.height,
            pixels: &self.map[start..start + len],
        }
    }
}

fn build(
    path: &Path,
    samples: &[Sample],
    side: u32,
    fingerprint: &[u8; 32],
) -> Result<(), DataError> {
    let mut failure = None;
    let bar = sim_study::progress::bar(
        samples.len() as u64,
        "image cache {bar:30} {pos}/{len} images, {per_sec}, {eta} left",
    );
    let written = sim_study::write_atomic_with(path, |w| {
        w.write_all(MAGIC)?;
        w.write_all(fingerprint)?;
        w.write_all(&side.to_le_bytes())?;
        w.write_all(&(samples.len() as u32).to_le_bytes())?;
        let mut entries = Vec::with_capacity(samples.len());
        let mut offset = HEADER_LEN as u64;
        for chunk in samples.chunks(CHUNK) {
            let decoded: Result<Vec<(RgbImage, [u8; 32])>, DataError> = chunk
                .par_iter()
                .map(|s| {
                    read(&s.source).map(|(img, sha256)| (resize_shorter_side(img, side), sha256))
                })
                .collect();
            let decoded = match decoded {
                Ok(d) => d,
                Err(e) => {
                    failure = Some(e);
                    return Err(std::io::Error::other("image decoding failed"));
                }
            };
            for (img, source_sha256) in decoded {
                w.write_all(img.as_raw())?;
                entries.push(Entry {
                    width: img.width(),
                    height: img.height(),
                    offset,
                    source_sha256,
                });
                offset += img.as_raw().len() as u64;
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        for e in &entries {
            w.write_all(&e.width.to_le_bytes())?;
            w.write_all(&e.height.to_le_bytes())?;
            w.write_all(&e.offset.to_le_bytes())?;
            w.write_all(&e.source_sha256)?;
        }
        w.write_all(&offset.to_le_bytes())
    });
    match (failure, written) {
        (Some(decode_error), _) => Err(decode_error),
        (None, Err(e)) => Err(DataError::io(path, e)),
        (None, Ok(())) => Ok(()),
    }
}

/// The SHA-256 of what an image is read from: the file's bytes, or the
/// width, height and RGB pixels of an in-memory image. Split files record it
/// per image, and the image cache keeps it beside each image.
pub fn source_sha256(source: &ImageSource) -> Result<[u8; 32], DataError> {
    match source {
        ImageSource::File(path) => {
            Ok(Sha256::digest(std::fs::read(path).map_err(|e| DataError::io(path, e))?).into())
        }
        ImageSource::Memory(img) => Ok(memory_sha256(img)),
    }
}

fn memory_sha256(img: &RgbImage) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(img.width().to_le_bytes());
    h.update(img.height().to_le_bytes());
    h.update(img.as_raw());
    h.finalize().into()
}

/// An image as RGB and its [`source_sha256`], from one read of the file.
fn read(source: &ImageSource) -> Result<(RgbImage, [u8; 32]), DataError> {
    match source {
        ImageSource::Memory(img) => Ok(((**img).clone(), memory_sha256(img))),
        ImageSource::File(path) => {
            let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
            let sha256 = Sha256::digest(&bytes).into();
            Ok((decode_file(path, bytes)?, sha256))
        }
    }
}

/// Decodes an image file (format from its content) or copies in-memory pixels,
/// as RGB. A file that decodes only in part (truncated, damaged) is an error
/// naming it, never an image with the missing part filled in.
pub fn decode(source: &ImageSource) -> Result<RgbImage, DataError> {
    match source {
        ImageSource::Memory(img) => Ok((**img).clone()),
        ImageSource::File(path) => decode_file(
            path,
            std::fs::read(path).map_err(|e| DataError::io(path, e))?,
        ),
    }
}

/// The bytes of the image file `path`, decoded as RGB.
fn decode_file(path: &Path, bytes: Vec<u8>) -> Result<RgbImage, DataError> {
    let bad = |e: &dyn std::fmt::Display| DataError::Decode {
        path: path.to_owned(),
        message: e.to_string(),
    };
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return decode_jpeg_strictly(&bytes).map_err(|e| bad(&e));
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes));
    let img = reader
        .with_guessed_format()
        .map_err(|e| bad(&e))?
        .decode()
        .map_err(|e| bad(&e))?;
    Ok(img.to_rgb8())
}

/// JPEG through zune-jpeg (the image crate's decoder) in strict mode, which
/// reports a premature end of data where the image crate's lenient call
/// paints the missing rows grey. Same decoder, same pixels otherwise.
fn decode_jpeg_strictly(bytes: &[u8]) -> Result<RgbImage, String> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let pixels = decoder
        .decode()
        .map_err(|e| format!("{e:?} (truncated or damaged JPEG)"))?;
    let (w, h) = decoder.dimensions().ok_or("no JPEG header")?;
    RgbImage::from_raw(w as u32, h as u32, pixels)
        .ok_or_else(|| format!("decoded pixels do not fill {w} × {h} RGB"))
}

/// Resizes so the shorter side is `side` (the longer one scaled and floored,
/// as torchvision's `Resize(int)` does); unchanged if it already is.
pub fn resize_shorter_side(img: RgbImage, side: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let short = w.min(h);
    if short == side {
        return img;
    }
    let scale = |long: u32| ((long as u64 * side as u64) / short as u64).max(1) as u32;
    let (nw, nh) = if w <= h {
        (side, scale(h))
    } else {
        (scale(w), side)
    };
    image::imageops::resize(&img, nw, nh, FilterType::CatmullRom)
}

fn fingerprint(samples: &[Sample], side: u32) -> Result<[u8; 32], DataError> {
    let mut h = Sha256::new();
    h.update(PIPELINE_VERSION.as_bytes());
    h.update(side.to_le_bytes());
    for s in samples {
        h.update(s.id.as_bytes());
        h.update([0]);
        match &s.source {
            ImageSource::File(path) => {
                let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .unwrap_or_default();
                h.update(meta.len().to_le_bytes());
                h.update(mtime.as_nanos().to_le_bytes());
            }
            ImageSource::Memory(img) => {
                h.update(img.width().to_le_bytes());
                h.update(img.as_raw());
            }
        }
    }
    Ok(h.finalize().into())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn write_png(path: &Path, w: u32, h: u32, seed: u8) {
        let img = RgbImage::from_fn(w, h, |x, y| Rgb([x as u8 ^ seed, y as u8, seed]));
        img.save(path).unwrap();
    }

    fn sample(path: &Path) -> Sample {
        Sample {
            id: path.file_name().unwrap().to_string_lossy().into(),
            source: ImageSource::File(path.to_owned()),
            label: 0,
            group: "g".into(),
            given_split: None,
        }
    }

    #[test]
    fn builds_then_reuses_then_rebuilds_when_a_source_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.png"), dir.path().join("b.png"));
        write_png(&a, 40, 30, 1);
        write_png(&b, 16, 16, 2);
        let samples = vec![sample(&a), sample(&b)];
        let cache_path = dir.path().join("cache/x-16px.u8img");
        let (cache, state) = ImageCache::load_or_build(&cache_path, &samples, 16).unwrap();
        assert_eq!(state, CacheState::Built);
        let v = cache.get(0);
        assert_eq!((v.width, v.height), (21, 16)); // 40 * 16 / 30 = 21.33 → 21
        // Already at the side: stored byte for byte.
        let b_img = image::open(&b).unwrap().to_rgb8();
        assert_eq!(cache.get(1).pixels, b_img.as_raw().as_slice());
        drop(cache);
        let (_, state) = ImageCache::load_or_build(&cache_path, &samples, 16).unwrap();
        assert_eq!(state, CacheState::Reused);
        // Another side is another cache; a changed source rebuilds.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_png(&b, 20, 16, 3);
        let (cache, state) = ImageCache::load_or_build(&cache_path, &samples, 16).unwrap();
        assert_eq!(state, CacheState::Built);
        assert_eq!((cache.get(1).width, cache.get(1).height), (20, 16));
        // Each image keeps the SHA-256 of the file it was read from.
        for (i, path) in [&a, &b].into_iter().enumerate() {
            assert_eq!(
                hex::encode(cache.source_sha256(i)),
                sim_study::fingerprint::sha256_file(path).unwrap()
            );
        }
    }

    #[test]
    fn truncated_cache_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.png");
        write_png(&a, 24, 24, 1);
        let samples = vec![sample(&a)];
        let cache_path = dir.path().join("c.u8img");
        ImageCache::load_or_build(&cache_path, &samples, 24).unwrap();
        let bytes = std::fs::read(&cache_path).unwrap();
        std::fs::write(&cache_path, &bytes[..bytes.len() - 5]).unwrap();
        let (cache, state) = ImageCache::load_or_build(&cache_path, &samples, 24).unwrap();
        assert_eq!(state, CacheState::Built);
        assert_eq!(cache.get(0).pixels.len(), 24 * 24 * 3);
    }

    #[test]
    fn corrupt_image_names_the_file_and_leaves_no_cache() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.png");
        write_png(&good, 8, 8, 1);
        let bad = dir.path().join("bad.jpg");
        let mut jpeg = Vec::new();
        RgbImage::new(32, 32)
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        std::fs::write(&bad, &jpeg[..jpeg.len() / 3]).unwrap(); // truncated
        let cache_path = dir.path().join("c.u8img");
        let err = ImageCache::load_or_build(&cache_path, &[sample(&good), sample(&bad)], 8)
            .err()
            .unwrap();
        assert!(err.to_string().contains("bad.jpg"), "{err}");
        assert!(!cache_path.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary file left"
        );
    }

    /// A photo-like JPEG: smooth shading plus noise, so every part of the
    /// file carries image data.
    fn photo_jpeg(w: u32, h: u32) -> Vec<u8> {
        let mut state = 12345u32;
        let img = RgbImage::from_fn(w, h, |x, y| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let noise = (state >> 24) as u8 / 4;
            Rgb([
                (x as u8).wrapping_add(noise),
                (y as u8).wrapping_add(noise),
                ((x + y) as u8) / 2,
            ])
        });
        let mut jpeg = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        jpeg
    }

    #[test]
    fn a_jpeg_truncated_anywhere_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let jpeg = photo_jpeg(256, 192);
        // Whole, it decodes to the image crate's pixels exactly.
        let whole = dir.path().join("whole.jpg");
        std::fs::write(&whole, &jpeg).unwrap();
        assert_eq!(
            decode(&ImageSource::File(whole.clone())).unwrap(),
            image::open(&whole).unwrap().to_rgb8()
        );
        for percent in [30, 50, 70, 90, 99] {
            let path = dir.path().join(format!("cut-{percent}.jpg"));
            std::fs::write(&path, &jpeg[..jpeg.len() * percent / 100]).unwrap();
            let err = decode(&ImageSource::File(path.clone()))
                .err()
                .unwrap_or_else(|| panic!("{percent} % of the file decoded"));
            assert!(
                err.to_string().contains(&format!("cut-{percent}.jpg")),
                "{err}"
            );
            let cache = dir.path().join(format!("c{percent}.u8img"));
            let err = ImageCache::load_or_build(&cache, &[sample(&whole), sample(&path)], 64)
                .err()
                .unwrap();
            assert!(
                err.to_string().contains(&format!("cut-{percent}.jpg")),
                "{err}"
            );
            assert!(!cache.exists());
        }
    }

    #[test]
    fn a_truncated_png_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.png");
        write_png(&path, 64, 64, 5);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = decode(&ImageSource::File(path)).unwrap_err();
        assert!(err.to_string().contains("cut.png"), "{err}");
    }

    #[test]
    fn greyscale_becomes_rgb() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grey.png");
        image::GrayImage::from_fn(8, 8, |x, _| image::Luma([x as u8 * 10]))
            .save(&path)
            .unwrap();
        let img = decode(&ImageSource::File(path)).unwrap();
        assert_eq!(img.get_pixel(3, 0), &Rgb([30, 30, 30]));
        // A greyscale JPEG (strict decoder) gives the image crate's pixels.
        let path = dir.path().join("grey.jpg");
        image::GrayImage::from_fn(64, 48, |x, y| image::Luma([(x * 3 + y) as u8]))
            .save(&path)
            .unwrap();
        assert_eq!(
            decode(&ImageSource::File(path.clone())).unwrap(),
            image::open(&path).unwrap().to_rgb8()
        );
    }
}
