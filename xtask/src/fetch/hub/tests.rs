//! Backbone files against a loopback server that answers as the Hub does
//! (`HEAD`/`GET` of `<repo>/resolve/<revision>/<file>`: a redirect carrying
//! `X-Repo-Commit` and `X-Linked-Etag`, the bytes behind it with `Range`,
//! 401 for a gated repository without its token, 404 with `X-Error-Code`),
//! and a cache laid out as `huggingface_hub` lays it out.

use super::*;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const COMMIT: &str = "4a1b2c3d4e5f60718293a4b5c6d7e8f901234567";
const TOKEN: &str = "hf_test_token";

/// A model repository on the test Hub.
struct Repo {
    /// The bytes served for each file.
    files: HashMap<String, Vec<u8>>,
    /// The SHA-256 the Hub lists for each file (of the bytes it should serve).
    listed: HashMap<String, String>,
    gated: bool,
}

impl Repo {
    fn new(files: &[(&str, &[u8])]) -> Repo {
        Repo {
            files: files
                .iter()
                .map(|(f, b)| (f.to_string(), b.to_vec()))
                .collect(),
            listed: files
                .iter()
                .map(|(f, b)| (f.to_string(), sha256(b)))
                .collect(),
            gated: false,
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The test Hub: its address and how many requests it has answered.
struct TestHub {
    base: String,
    requests: Arc<AtomicUsize>,
}

impl TestHub {
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// A client of this Hub with its cache in `cache`.
    fn client(&self, cache: &Path, token: Option<&str>) -> Hub {
        Hub {
            endpoint: self.base.clone(),
            token: token.map(str::to_owned),
            offline: false,
            cache: cache.to_owned(),
        }
    }
}

fn serve_hub(repos: HashMap<String, Repo>) -> TestHub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let (counter, served_base) = (requests.clone(), base.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).ok();
            let mut words = line.split_whitespace();
            let method = words.next().unwrap_or("").to_string();
            let path = words
                .next()
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            let (mut from, mut auth) = (None, None);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).map_or(true, |n| n == 0) || header == "\r\n" {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap_or(("", ""));
                match name.to_ascii_lowercase().as_str() {
                    "range" => {
                        from = value
                            .trim()
                            .trim_start_matches("bytes=")
                            .trim_end_matches('-')
                            .parse::<usize>()
                            .ok()
                    }
                    "authorization" => auth = Some(value.trim().to_string()),
                    _ => {}
                }
            }
            let reply = answer(&repos, &served_base, &path, from, auth.as_deref());
            let mut head = format!("HTTP/1.1 {}\r\nConnection: close\r\n", reply.status);
            for (k, v) in &reply.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
            let mut out = head.into_bytes();
            if method != "HEAD" {
                out.extend_from_slice(&reply.body);
            }
            stream.write_all(&out).ok();
        }
    });
    TestHub { base, requests }
}

struct Reply {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn answer(
    repos: &HashMap<String, Repo>,
    base: &str,
    path: &str,
    from: Option<usize>,
    auth: Option<&str>,
) -> Reply {
    let error = |status, code: &str| Reply {
        status,
        headers: vec![("X-Error-Code".into(), code.into())],
        body: Vec::new(),
    };
    let parts: Vec<&str> = path.splitn(5, '/').collect();
    // The bytes, as the Hub's CDN serves them: cdn/<owner>/<repo>/<file>.
    if let ["cdn", owner, name, file @ ..] = parts.as_slice() {
        let repo = &repos[&format!("{owner}/{name}")];
        let body = &repo.files[&file.join("/")];
        return match from {
            Some(f) if f < body.len() => Reply {
                status: "206 Partial Content",
                headers: Vec::new(),
                body: body[f..].to_vec(),
            },
            _ => Reply {
                status: "200 OK",
                headers: Vec::new(),
                body: body.clone(),
            },
        };
    }
    let [owner, name, "resolve", revision, file] = parts.as_slice() else {
        return error("404 Not Found", "RepoNotFound");
    };
    let Some(repo) = repos.get(&format!("{owner}/{name}")) else {
        return error("404 Not Found", "RepoNotFound");
    };
    if repo.gated && auth != Some(&format!("Bearer {TOKEN}")) {
        return error("401 Unauthorized", "GatedRepo");
    }
    if *revision != "main" && *revision != COMMIT {
        return error("404 Not Found", "RevisionNotFound");
    }
    let (Some(bytes), Some(sha)) = (repo.files.get(*file), repo.listed.get(*file)) else {
        return error("404 Not Found", "EntryNotFound");
    };
    Reply {
        status: "302 Found",
        headers: vec![
            (
                "Location".into(),
                format!("{base}/cdn/{owner}/{name}/{file}"),
            ),
            ("X-Repo-Commit".into(), COMMIT.into()),
            ("X-Linked-Etag".into(), format!("\"{sha}\"")),
            ("X-Linked-Size".into(), bytes.len().to_string()),
            ("ETag".into(), "\"a-git-object-id\"".into()),
        ],
        body: Vec::new(),
    }
}

fn model_bytes(seed: u32, len: u32) -> Vec<u8> {
    (0..len).map(|i| ((i * seed) % 251) as u8).collect()
}

/// A study config whose backbones are `entries` (TOML lines per backbone).
fn config_with(dir: &Path, entries: &[&str]) -> StudyConfig {
    let mut text = "[study]\nname = \"t\"\n[datasets.medical]\nkind = \"ham10000\"\nroot \
        = \"h\"\n[datasets.natural]\nkind = \"image-folder\"\nroot = \"n\"\n"
        .to_string();
    for (i, e) in entries.iter().enumerate() {
        text.push_str(&format!("[[backbones]]\nname = \"b{i}\"\n{e}\n"));
    }
    StudyConfig::from_toml_str(&text, &dir.join("t.toml")).unwrap()
}

/// A cache holding `bytes` as `huggingface_hub` leaves a downloaded file.
fn prefill_cache(cache: &Path, repo: &str, file: &str, bytes: &[u8]) -> PathBuf {
    let folder = cache.join(format!("models--{}", repo.replace('/', "--")));
    let sha = sha256(bytes);
    std::fs::create_dir_all(folder.join("blobs")).unwrap();
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::write(folder.join("blobs").join(&sha), bytes).unwrap();
    std::fs::write(folder.join("refs/main"), COMMIT).unwrap();
    let snapshot = folder.join("snapshots").join(COMMIT).join(file);
    std::fs::create_dir_all(snapshot.parent().unwrap()).unwrap();
    let up = "../".repeat(1 + file.split('/').count());
    std::os::unix::fs::symlink(format!("{up}blobs/{sha}"), &snapshot).unwrap();
    snapshot
}

#[test]
fn a_file_in_the_cache_is_used_in_place_with_no_request() {
    let model = model_bytes(7, 20_000);
    let hub = serve_hub(HashMap::new());
    let cache = tempfile::tempdir().unwrap();
    let snapshot = prefill_cache(
        cache.path(),
        "acme/vit",
        "weights/model.safetensors",
        &model,
    );
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &["source = \"hf:acme/vit/weights/model.safetensors\""],
    );
    let found = backbones(&config, cache.path());
    assert_eq!(found[0].path, snapshot);
    assert_eq!(std::fs::read(&found[0].path).unwrap(), model);
    let client = hub.client(cache.path(), None);
    assert!(fetch_checkpoints(&config, &client).unwrap().is_empty());
    assert_eq!(hub.requests(), 0, "a cached file needs no request");
    // Offline, the same.
    let offline = Hub {
        offline: true,
        ..client
    };
    assert!(fetch_checkpoints(&config, &offline).unwrap().is_empty());
}

#[test]
fn a_missing_file_lands_in_the_cache_in_huggingface_hubs_layout() {
    let model = model_bytes(7, 50_000);
    let hub = serve_hub(HashMap::from([(
        "acme/vit".to_string(),
        Repo::new(&[("sub/model.safetensors", &model)]),
    )]));
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &["source = \"hf:acme/vit/sub/model.safetensors\""],
    );
    let client = hub.client(cache.path(), None);
    let fetched = fetch_checkpoints(&config, &client).unwrap();
    let repo = cache.path().join("models--acme--vit");
    let sha = sha256(&model);
    let snapshot = repo.join(format!("snapshots/{COMMIT}/sub/model.safetensors"));
    assert_eq!(fetched, vec![snapshot.clone()]);
    assert_eq!(std::fs::read(repo.join("blobs").join(&sha)).unwrap(), model);
    assert_eq!(
        std::fs::read_link(&snapshot).unwrap(),
        Path::new(&format!("../../../blobs/{sha}"))
    );
    assert_eq!(std::fs::read(&snapshot).unwrap(), model);
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );
    assert!(
        !repo
            .join("blobs")
            .join(format!("{sha}.incomplete"))
            .exists()
    );
    // The config now finds it there, with nothing asked of the Hub.
    assert_eq!(backbones(&config, cache.path())[0].path, snapshot);
    let asked = hub.requests();
    assert!(fetch_checkpoints(&config, &client).unwrap().is_empty());
    assert_eq!(hub.requests(), asked);

    // A pinned commit: its snapshot, and no ref to write.
    let pinned_cache = tempfile::tempdir().unwrap();
    let pinned = config_with(
        dir.path(),
        &[&format!(
            "source = \"hf:acme/vit@{COMMIT}/sub/model.safetensors\""
        )],
    );
    let fetched = fetch_checkpoints(&pinned, &hub.client(pinned_cache.path(), None)).unwrap();
    assert_eq!(
        fetched,
        vec![pinned_cache.path().join(format!(
            "models--acme--vit/snapshots/{COMMIT}/sub/model.safetensors"
        ))]
    );
    assert!(!pinned_cache.path().join("models--acme--vit/refs").exists());
}

#[test]
fn a_gated_repository_needs_the_token_and_says_so_without_it() {
    let model = model_bytes(11, 10_000);
    let mut repo = Repo::new(&[("model.safetensors", &model)]);
    repo.gated = true;
    let hub = serve_hub(HashMap::from([("meta/gated".to_string(), repo)]));
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &["source = \"hf:meta/gated/model.safetensors\""],
    );
    let cache = tempfile::tempdir().unwrap();
    let msg = format!(
        "{:#}",
        fetch_checkpoints(&config, &hub.client(cache.path(), None)).unwrap_err()
    );
    assert!(
        msg.contains("backbones `b0`")
            && msg.contains("401")
            && msg.contains("GatedRepo")
            && msg.contains("HF_TOKEN"),
        "{msg}"
    );
    let msg = format!(
        "{:#}",
        fetch_checkpoints(&config, &hub.client(cache.path(), Some("hf_wrong"))).unwrap_err()
    );
    assert!(msg.contains("no access"), "{msg}");
    let fetched = fetch_checkpoints(&config, &hub.client(cache.path(), Some(TOKEN))).unwrap();
    assert_eq!(std::fs::read(&fetched[0]).unwrap(), model);
}

#[test]
fn offline_a_missing_file_is_an_error_naming_it_and_nothing_is_asked() {
    let hub = serve_hub(HashMap::new());
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), &["source = \"hf:acme/vit/model.safetensors\""]);
    let cache = tempfile::tempdir().unwrap();
    let offline = Hub {
        offline: true,
        ..hub.client(cache.path(), None)
    };
    let msg = format!("{:#}", fetch_checkpoints(&config, &offline).unwrap_err());
    assert!(
        msg.contains("backbones `b0`")
            && msg.contains("hf:acme/vit/model.safetensors")
            && msg.contains("HF_HUB_OFFLINE"),
        "{msg}"
    );
    assert_eq!(hub.requests(), 0);
}

#[test]
fn a_file_or_revision_the_hub_lacks_is_an_error_naming_it() {
    let model = model_bytes(3, 1_000);
    let hub = serve_hub(HashMap::from([(
        "acme/vit".to_string(),
        Repo::new(&[("model.safetensors", &model)]),
    )]));
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    for (source, code) in [
        ("hf:acme/vit/other.safetensors", "EntryNotFound"),
        ("hf:acme/vit@v9/model.safetensors", "RevisionNotFound"),
        ("hf:acme/none/model.safetensors", "RepoNotFound"),
    ] {
        let config = config_with(dir.path(), &[&format!("source = \"{source}\"")]);
        let msg = format!(
            "{:#}",
            fetch_checkpoints(&config, &hub.client(cache.path(), None)).unwrap_err()
        );
        assert!(msg.contains("404") && msg.contains(code), "{source}: {msg}");
    }
}

/// A download broken off leaves `blobs/<sha>.incomplete`; the next one
/// continues it (the served copy differs in its first third, which the
/// broken-off part holds right: only a continued download is whole), and
/// a file whose bytes are not the ones the Hub lists is refused and not kept.
#[test]
fn a_broken_off_download_continues_and_wrong_bytes_are_refused() {
    let model = model_bytes(13, 30_000);
    let mut served = model.clone();
    served[..10_000].fill(0);
    let mut repo = Repo::new(&[("model.safetensors", &model)]);
    repo.files.insert("model.safetensors".into(), served);
    let hub = serve_hub(HashMap::from([("acme/dino".to_string(), repo)]));
    let cache = tempfile::tempdir().unwrap();
    let blobs = cache.path().join("models--acme--dino/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let sha = sha256(&model);
    std::fs::write(blobs.join(format!("{sha}.incomplete")), &model[..10_000]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), &["source = \"hf:acme/dino/model.safetensors\""]);
    let fetched = fetch_checkpoints(&config, &hub.client(cache.path(), None)).unwrap();
    assert_eq!(std::fs::read(&fetched[0]).unwrap(), model);

    // From the start, the served bytes are wrong: refused, nothing kept.
    let fresh = tempfile::tempdir().unwrap();
    let msg = format!(
        "{:#}",
        fetch_checkpoints(&config, &hub.client(fresh.path(), None)).unwrap_err()
    );
    assert!(msg.contains("SHA-256 is") && msg.contains(&sha), "{msg}");
    let blobs = fresh.path().join("models--acme--dino/blobs");
    assert!(!blobs.join(&sha).exists() && !blobs.join(format!("{sha}.incomplete")).exists());
    assert!(!fresh.path().join("models--acme--dino/snapshots").exists());
}

/// With a `checkpoint`, the file goes to that path (the cache is not used).
#[test]
fn a_source_with_a_checkpoint_downloads_to_the_checkpoint_path() {
    let model = model_bytes(5, 20_000);
    let hub = serve_hub(HashMap::from([(
        "acme/vit".to_string(),
        Repo::new(&[("model.safetensors", &model)]),
    )]));
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &["checkpoint = \"./ckpt/vit.safetensors\"\nsource = \"hf:acme/vit/model.safetensors\""],
    );
    let cache = tempfile::tempdir().unwrap();
    let fetched = fetch_checkpoints(&config, &hub.client(cache.path(), None)).unwrap();
    assert_eq!(fetched, vec![dir.path().join("./ckpt/vit.safetensors")]);
    assert_eq!(std::fs::read(&fetched[0]).unwrap(), model);
    assert!(std::fs::read_dir(cache.path()).unwrap().next().is_none());
}

#[test]
fn the_environment_names_the_mirror_the_token_and_offline_mode() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("token"), "hf_from_file\n").unwrap();
    let home_path = home.path().to_string_lossy().into_owned();
    let vars = |pairs: Vec<(&'static str, String)>| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        }
    };
    let plain = Hub::from_vars(&vars(vec![("HF_HOME", home_path.clone())]));
    assert_eq!(plain.endpoint, HUB);
    assert_eq!(plain.token.as_deref(), Some("hf_from_file"));
    assert!(!plain.offline);
    assert_eq!(plain.cache, home.path().join("hub"));
    let set = Hub::from_vars(&vars(vec![
        ("HF_HOME", home_path),
        ("HF_ENDPOINT", "https://hf-mirror.example".into()),
        ("HF_TOKEN", "hf_from_env".into()),
        ("HF_HUB_OFFLINE", "1".into()),
        ("HF_HUB_CACHE", "/elsewhere".into()),
    ]));
    assert_eq!(set.endpoint, "https://hf-mirror.example");
    assert_eq!(set.token.as_deref(), Some("hf_from_env"));
    assert!(set.offline);
    assert_eq!(set.cache, Path::new("/elsewhere"));
}

/// Every entry under `root`: its path, and what it is (a folder, a link and
/// its target, a file and its bytes' SHA-256).
fn tree(root: &Path) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        for e in std::fs::read_dir(&folder).unwrap() {
            let path = e.unwrap().path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.is_symlink() {
                format!("link to {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                folders.push(path);
                "folder".to_string()
            } else {
                format!("file {}", sha256(&std::fs::read(&path).unwrap()))
            };
            entries.push((name, what));
        }
    }
    entries.sort();
    entries
}

/// A cache written by `huggingface_hub` itself (`scripts/hf_cache_fixture.py`,
/// pinned in `scripts/requirements-hub.txt`, against a stand-in Hub serving
/// the same repository, commit and bytes as here): its file is found and
/// used in place with no request, and what this tool writes for the same
/// file is the same tree, link for link.
#[test]
fn a_cache_huggingface_hub_wrote_is_read_in_place_and_written_alike() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf-cache");
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &["source = \"hf:acme/vit/sub/model.safetensors\""],
    );
    let found = &backbones(&config, &fixture)[0].path;
    let model = std::fs::read(found).unwrap();
    assert_eq!(model, model_bytes(7, 4096), "the script's bytes");
    let hub = serve_hub(HashMap::from([(
        "acme/vit".to_string(),
        Repo::new(&[("sub/model.safetensors", &model)]),
    )]));
    assert!(
        fetch_checkpoints(&config, &hub.client(&fixture, None))
            .unwrap()
            .is_empty()
    );
    assert_eq!(hub.requests(), 0);
    let ours = tempfile::tempdir().unwrap();
    fetch_checkpoints(&config, &hub.client(ours.path(), None)).unwrap();
    assert_eq!(tree(ours.path()), tree(&fixture));
}
