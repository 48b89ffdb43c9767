//! Stand-ins for the data sets' hosts, shared by `fetch-data`'s unit tests
//! and the fresh-machine test of `reproduce`: a loopback HTTP server, and
//! the ISIC 2018 and Imagenette archives laid out as their hosts publish
//! them, made of tiny synthetic JPEGs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

/// Serves `files` by path on 127.0.0.1 for at most `max_requests` requests
/// (`Range: bytes=N-` answered with the rest); returns its address.
pub fn serve(files: HashMap<String, Vec<u8>>, max_requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max_requests) {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).ok();
            let mut from = None;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).map_or(true, |n| n == 0) || header == "\r\n" {
                    break;
                }
                if let Some(range) = header.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    from = range.trim().trim_end_matches('-').parse::<usize>().ok();
                }
            }
            let mut words = request.split_whitespace();
            let head_only = words.next() == Some("HEAD");
            let path = words
                .next()
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_owned();
            let (status, body): (&str, &[u8]) = match files.get(&path) {
                Some(body) if from.is_some_and(|f| f < body.len()) => {
                    ("206 Partial Content", &body[from.unwrap_or(0)..])
                }
                Some(body) => ("200 OK", body),
                None => ("404 Not Found", &[]),
            };
            let mut reply = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            if !head_only {
                reply.extend_from_slice(body);
            }
            stream.write_all(&reply).ok();
        }
    });
    base
}

/// An 8 × 6 JPEG of one colour.
pub fn jpeg(shade: u8) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(8, 6, image::Rgb([shade, 100, 50]));
    let mut out = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut out),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    out
}

pub fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

pub fn tgz_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
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

/// How big the stand-in archives are.
pub struct Sizes {
    /// ISIC images: lesions of two images each, each lesion one class,
    /// classes in the ISIC column order (MEL, NV, BCC, …) lesion by lesion.
    pub isic_images: usize,
    /// Imagenette classes, and its train and val images spread over them.
    pub nette_classes: usize,
    pub nette_train: usize,
    pub nette_val: usize,
}

/// The files the hosts publish, by file name: the three ISIC 2018 Task 3
/// files and `imagenette2-320.tgz`.
pub fn archives(sizes: &Sizes) -> HashMap<String, Vec<u8>> {
    let shades: Vec<Vec<u8>> = (0..25u8).map(|s| jpeg(s * 10)).collect();
    let columns = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"];
    let mut inputs = vec![(
        "ISIC2018_Task3_Training_Input/LICENSE.txt".to_string(),
        b"CC-BY-NC".to_vec(),
    )];
    let mut truth = format!("image,{}\n", columns.join(","));
    let mut groups = String::from("image,lesion_id,diagnosis_confirm_type\n");
    for i in 0..sizes.isic_images {
        let id = format!("ISIC_{:07}", 24306 + i);
        inputs.push((
            format!("ISIC2018_Task3_Training_Input/{id}.jpg"),
            shades[i % shades.len()].clone(),
        ));
        let lesion = i / 2;
        let hot: Vec<&str> = (0..7)
            .map(|c| if c == lesion % 7 { "1.0" } else { "0.0" })
            .collect();
        truth.push_str(&format!("{id},{}\n", hot.join(",")));
        groups.push_str(&format!("{id},HAM_{lesion:07},histopathology\n"));
    }
    let truth_zip = zip_of(&[(
        "ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv".into(),
        truth.into_bytes(),
    )]);
    let mut nette = Vec::new();
    for (split, total) in [("train", sizes.nette_train), ("val", sizes.nette_val)] {
        for k in 0..total {
            let class = 1440764 + k % sizes.nette_classes;
            nette.push((
                format!("imagenette2-320/{split}/n0{class}/{k}.JPEG"),
                shades[k % shades.len()].clone(),
            ));
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
