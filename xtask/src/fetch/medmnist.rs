//! The MedMNIST v2 2D data sets (Yang et al., Scientific Data 2023) as
//! `fetch-data --medmnist` downloads them: one `.npz` per data set and
//! image size (28 px, and MedMNIST+'s 64, 128 and 224 px), from the
//! release's Zenodo record, checked against the MD5 the release lists
//! (`medmnist/info.py` of MedMNIST 3.0.2) and by loading it with the
//! project's reader. Each brings its own train/val/test split. ChestMNIST
//! is left out: it is multi-label, and the study classifies one label.

use super::{Checksum, Download, Layout, Source};
use anyhow::bail;

/// The image sizes the release publishes.
pub const SIZES: [u32; 4] = [28, 64, 128, 224];

/// The Zenodo record of the release.
const RECORD: &str = "https://zenodo.org/records/10519652/files";

/// One data set: its flag, its images (train + val + test) and the MD5 of
/// its file at each of [`SIZES`].
struct Subset {
    flag: &'static str,
    images: usize,
    md5: [&'static str; 4],
}

const SUBSETS: [Subset; 11] = [
    Subset {
        flag: "pathmnist",
        images: 89_996 + 10_004 + 7_180,
        md5: [
            "a8b06965200029087d5bd730944a56c1",
            "55aa9c1e0525abe5a6b9d8343a507616",
            "ac42d08fb904d92c244187169d1fd1d9",
            "2c51a510bcdc9cf8ddb2af93af1eadec",
        ],
    },
    Subset {
        flag: "dermamnist",
        images: 7_007 + 1_003 + 2_005,
        md5: [
            "0744692d530f8e62ec473284d019b0c7",
            "b70a2f5635c6199aeaa28c31d7202e1f",
            "2defd784463fa5243564e855ed717de1",
            "8974907d8e169bef5f5b96bc506ae45d",
        ],
    },
    Subset {
        flag: "octmnist",
        images: 97_477 + 10_832 + 1_000,
        md5: [
            "c68d92d5b585d8d81f7112f81e2d0842",
            "e229e9440236b774d9f0dfef9d07bdaf",
            "0a97e76651ace45c5d943ee3f65b63ae",
            "abc493b6d529d5de7569faaef2773ba3",
        ],
    },
    Subset {
        flag: "pneumoniamnist",
        images: 4_708 + 524 + 624,
        md5: [
            "28209eda62fecd6e6a2d98b1501bb15f",
            "8f4eceb4ccffa70c672198ea285246c6",
            "05b46931834c231683c68f40c47b2971",
            "d6a3c71de1b945ea11211b03746c1fe1",
        ],
    },
    Subset {
        flag: "retinamnist",
        images: 1_080 + 120 + 400,
        md5: [
            "bd4c0672f1bba3e3a89f0e4e876791e4",
            "afda852cc34dcda56f86ad2b2457dbcc",
            "e48e916a24454daf90583d4e6efb1a18",
            "eae7e3b6f3fcbda4ae613ebdcbe35348",
        ],
    },
    Subset {
        flag: "breastmnist",
        images: 546 + 78 + 156,
        md5: [
            "750601b1f35ba3300ea97c75c52ff8f6",
            "742edef2a1fd1524b2efff4bd7ba9364",
            "363e4b3f8d712e9b5de15470a2aaadf1",
            "b56378a6eefa9fed602bb16d192d4c8b",
        ],
    },
    Subset {
        flag: "bloodmnist",
        images: 11_959 + 1_712 + 3_421,
        md5: [
            "7053d0359d879ad8a5505303e11de1dc",
            "2b94928a2ae4916078ca51e05b6b800b",
            "adace1e0ed228fccda1f39692059dd4c",
            "b718ff6835fcbdb22ba9eacccd7b2601",
        ],
    },
    Subset {
        flag: "tissuemnist",
        images: 165_466 + 23_640 + 47_280,
        md5: [
            "ebe78ee8b05294063de985d821c1c34b",
            "123ece2eba09d0aa5d698fda57103344",
            "61b955355d7425a89687b06cca3ce0c2",
            "b077128c4a949f0a4eb01517f9037b9c",
        ],
    },
    Subset {
        flag: "organamnist",
        images: 34_561 + 6_491 + 17_778,
        md5: [
            "68e3f8846a6bd62f0c9bf841c0d9eacc",
            "2dcccc29b88e6da5a01161ef20cda288",
            "eeae80d0a227a8d099027e1b3cfd3b60",
            "50747347e05c87dd3aaf92c49f9f3170",
        ],
    },
    Subset {
        flag: "organcmnist",
        images: 12_975 + 2_392 + 8_216,
        md5: [
            "b9ceb9546e10131b32923c5bbeaea2b1",
            "3ce34a8724ea6f548e6db4744d03b6a9",
            "773c1f009daa3fe5d9a2a201b2a7ed94",
            "050f5e875dc056f6768abf94ec9995d1",
        ],
    },
    Subset {
        flag: "organsmnist",
        images: 13_932 + 2_452 + 8_827,
        md5: [
            "9ab87b696fb54e2a387ebe992d6ed5f1",
            "53a6d115339d874c25e309a994ff46d3",
            "ded0c5fa01a95dc4978b956f613e9b8e",
            "b354719e553fbbb2513d5533f52a4cb1",
        ],
    },
];

/// The file of `flag` at `size`: `<flag>.npz` at 28 px, else `<flag>_<size>.npz`.
fn file_name(flag: &str, size: u32) -> String {
    if size == 28 {
        format!("{flag}.npz")
    } else {
        format!("{flag}_{size}.npz")
    }
}

/// The source of one data set at one size; it lands in
/// `medmnist/<file>` under the data folder (a config's `root`).
pub fn source(flag: &str, size: u32) -> anyhow::Result<Source> {
    if flag == "chestmnist" {
        bail!("chestmnist is multi-label; the study classifies one label per image");
    }
    let Some(subset) = SUBSETS.iter().find(|s| s.flag == flag) else {
        let known: Vec<&str> = SUBSETS.iter().map(|s| s.flag).collect();
        bail!(
            "--medmnist {flag}: known data sets are {}",
            known.join(", ")
        );
    };
    let Some(i) = SIZES.iter().position(|&s| s == size) else {
        bail!("--medmnist-size {size}: the release has sizes {SIZES:?}");
    };
    let file = file_name(flag, size);
    Ok(Source {
        name: format!("medmnist/{file}"),
        downloads: vec![Download {
            url: format!("{RECORD}/{file}?download=1"),
            checksum: Checksum::Md5(subset.md5[i].into()),
        }],
        layout: Layout::MedmnistNpz,
        expected_images: subset.images,
        fetch_args: format!("--medmnist {flag} --medmnist-size {size}"),
    })
}

/// Every data set at every size.
pub fn all_sources() -> Vec<Source> {
    SUBSETS
        .iter()
        .flat_map(|s| SIZES.map(|size| source(s.flag, size).expect("listed above")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_its_own_md5_of_32_hex_digits() {
        let sources = all_sources();
        assert_eq!(sources.len(), 11 * 4);
        let mut seen = std::collections::BTreeSet::new();
        for s in &sources {
            let Checksum::Md5(md5) = &s.downloads[0].checksum else {
                panic!("{}: no MD5", s.name)
            };
            assert!(
                md5.len() == 32 && md5.chars().all(|c| c.is_ascii_hexdigit()),
                "{}: {md5}",
                s.name
            );
            assert!(seen.insert(md5.clone()), "{}: MD5 listed twice", s.name);
        }
        let p = source("pneumoniamnist", 64).unwrap();
        assert_eq!(p.name, "medmnist/pneumoniamnist_64.npz");
        assert_eq!(p.downloads[0].file_name(), "pneumoniamnist_64.npz");
        assert_eq!(
            source("pneumoniamnist", 28).unwrap().name,
            "medmnist/pneumoniamnist.npz"
        );
    }

    #[test]
    fn an_unknown_set_a_size_not_published_or_chestmnist_is_an_error_saying_why() {
        let e = source("xraymnist", 28).unwrap_err().to_string();
        assert!(e.contains("pneumoniamnist"), "{e}");
        let e = source("pneumoniamnist", 32).unwrap_err().to_string();
        assert!(e.contains("[28, 64, 128, 224]"), "{e}");
        let e = source("chestmnist", 28).unwrap_err().to_string();
        assert!(e.contains("multi-label"), "{e}");
    }
}
