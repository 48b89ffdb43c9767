//! Backbone files on the Hugging Face Hub, and where the Hugging Face cache
//! keeps them: the layout `huggingface_hub` (and so timm, open_clip and
//! transformers) writes, so a file one of them downloaded is used in place
//! and a file this tool downloads is theirs too.
//!
//! ```text
//! $HF_HUB_CACHE/models--<owner>--<repo>/
//!     refs/<revision>                   the commit a branch or tag named when fetched
//!     blobs/<etag>                      the file's bytes (an LFS file's etag is its SHA-256)
//!     snapshots/<commit>/<file>         a relative symlink to ../../blobs/<etag>
//! ```
//!
//! The cache folder is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`, as
//! `huggingface_hub` decides it.

use std::fmt;
use std::path::{Path, PathBuf};

/// The revision a source without `@<revision>` names.
pub const DEFAULT_REVISION: &str = "main";

/// A file in a model repository of the Hub, as a config's `source` names
/// it: `hf:<owner>/<repo>/<file>`, or `hf:<owner>/<repo>@<revision>/<file>`
/// to pin a branch, tag or commit (the `hf://` paths of `huggingface_hub`'s
/// file system are written the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    /// `<owner>/<repo>`.
    pub repo: String,
    /// A branch, tag or commit hash; `main` when the source names none.
    pub revision: String,
    /// The path inside the repository (`model.safetensors`, `weights/m.safetensors`).
    pub file: String,
}

impl HubFile {
    /// Reads a `source` value; the error says what the form is.
    pub fn parse(source: &str) -> Result<HubFile, String> {
        let form = "expected `hf:<owner>/<repo>/<file>` or `hf:<owner>/<repo>@<revision>/<file>`";
        let rest = source
            .strip_prefix("hf:")
            .ok_or_else(|| format!("`{source}`: only the Hugging Face Hub is known: {form}"))?;
        let mut parts = rest.splitn(3, '/');
        let (Some(owner), Some(repo_rev), Some(file)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("`{source}`: {form}"));
        };
        let (repo, revision) = match repo_rev.split_once('@') {
            Some((repo, rev)) => (repo, rev),
            None => (repo_rev, DEFAULT_REVISION),
        };
        let bad_part = |s: &str| s.is_empty() || s == "." || s == "..";
        if bad_part(owner)
            || bad_part(repo)
            || bad_part(revision)
            || file.split('/').any(bad_part)
            || file.contains('\\')
        {
            return Err(format!("`{source}`: {form}"));
        }
        Ok(HubFile {
            repo: format!("{owner}/{repo}"),
            revision: revision.to_string(),
            file: file.to_string(),
        })
    }

    /// The repository's folder in the cache: `models--<owner>--<repo>`.
    pub fn repo_folder(&self, cache: &Path) -> PathBuf {
        cache.join(format!("models--{}", self.repo.replace('/', "--")))
    }

    /// The file `refs/<revision>` that records the commit a branch or tag named.
    pub fn ref_file(&self, cache: &Path) -> PathBuf {
        self.repo_folder(cache).join("refs").join(&self.revision)
    }

    /// The commit the cache holds for the revision: the revision itself
    /// when it is a commit hash, else what `refs/<revision>` records.
    pub fn cached_commit(&self, cache: &Path) -> Option<String> {
        if is_commit_hash(&self.revision) {
            return Some(self.revision.clone());
        }
        let text = std::fs::read_to_string(self.ref_file(cache)).ok()?;
        let commit = text.trim();
        is_commit_hash(commit).then(|| commit.to_string())
    }

    /// The file's place in a snapshot: `snapshots/<commit>/<file>`.
    pub fn snapshot_path(&self, cache: &Path, commit: &str) -> PathBuf {
        self.repo_folder(cache)
            .join("snapshots")
            .join(commit)
            .join(&self.file)
    }

    /// Where the file is in the cache: its snapshot path when the cache
    /// knows the revision's commit (the file may still be absent), else
    /// the path it would have under the revision's name, which does not
    /// exist, so the file reads as missing.
    pub fn cache_path(&self, cache: &Path) -> PathBuf {
        let commit = self
            .cached_commit(cache)
            .unwrap_or_else(|| self.revision.clone());
        self.snapshot_path(cache, &commit)
    }
}

impl fmt::Display for HubFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (owner, repo) = self.repo.split_once('/').unwrap_or((&self.repo, ""));
        if self.revision == DEFAULT_REVISION {
            write!(f, "hf:{owner}/{repo}/{}", self.file)
        } else {
            write!(f, "hf:{owner}/{repo}@{}/{}", self.revision, self.file)
        }
    }
}

/// 40 lower-case hex digits: a git commit.
pub fn is_commit_hash(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The Hugging Face cache's model folder, from the environment as
/// `huggingface_hub` reads it.
pub fn cache_dir() -> PathBuf {
    cache_dir_from(&env_var)
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`:
/// where the cache and the token file live.
pub fn hf_home() -> PathBuf {
    hf_home_from(&env_var)
}

/// Whether `HF_HUB_OFFLINE` forbids downloads (`1`, `ON`, `YES`, `TRUE`,
/// any case, as `huggingface_hub` reads it).
pub fn offline_by_env() -> bool {
    env_var("HF_HUB_OFFLINE").is_some_and(|v| is_true(&v))
}

/// A yes in an environment variable, as `huggingface_hub` reads one.
pub fn is_true(value: &str) -> bool {
    ["1", "on", "yes", "true"].contains(&value.trim().to_ascii_lowercase().as_str())
}

/// An environment variable; unset and empty are the same.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// [`cache_dir`] with the environment given as `var`.
pub fn cache_dir_from(var: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    var("HF_HUB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| hf_home_from(var).join("hub"))
}

/// [`hf_home`] with the environment given as `var`.
pub fn hf_home_from(var: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
        var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("huggingface")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn a_source_names_repository_revision_and_file() {
        let f = HubFile::parse("hf:timm/vit_base/model.safetensors").unwrap();
        assert_eq!(
            f,
            HubFile {
                repo: "timm/vit_base".into(),
                revision: "main".into(),
                file: "model.safetensors".into()
            }
        );
        let f = HubFile::parse("hf:acme/dino@v1.0/weights/m.safetensors").unwrap();
        assert_eq!(
            (f.repo.as_str(), f.revision.as_str(), f.file.as_str()),
            ("acme/dino", "v1.0", "weights/m.safetensors")
        );
        // Written back, the same text.
        for s in [
            "hf:timm/vit_base/model.safetensors",
            "hf:acme/dino@v1.0/weights/m.safetensors",
        ] {
            assert_eq!(HubFile::parse(s).unwrap().to_string(), s);
        }
        for bad in [
            "timm/vit/model.safetensors",
            "hf:timm/model.safetensors",
            "hf:timm//model.safetensors",
            "hf:timm/vit@/model.safetensors",
            "hf:timm/vit/../model.safetensors",
            "hf:timm/vit/",
        ] {
            let msg = HubFile::parse(bad).unwrap_err();
            assert!(
                msg.contains(bad) && msg.contains("hf:<owner>/<repo>"),
                "{msg}"
            );
        }
    }

    #[test]
    fn the_cache_path_follows_huggingface_hubs_layout() {
        let cache = tempfile::tempdir().unwrap();
        let f = HubFile::parse("hf:acme/vit/sub/model.safetensors").unwrap();
        let repo = cache.path().join("models--acme--vit");
        assert_eq!(f.repo_folder(cache.path()), repo);
        // No ref yet: a path under the revision's name, which is not there.
        assert_eq!(f.cached_commit(cache.path()), None);
        assert_eq!(
            f.cache_path(cache.path()),
            repo.join("snapshots/main/sub/model.safetensors")
        );
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
        assert_eq!(
            f.cache_path(cache.path()),
            repo.join(format!("snapshots/{COMMIT}/sub/model.safetensors"))
        );
        // A commit as the revision needs no ref.
        let pinned = HubFile::parse(&format!("hf:acme/other@{COMMIT}/m.safetensors")).unwrap();
        assert_eq!(pinned.cached_commit(cache.path()).as_deref(), Some(COMMIT));
        // A ref file that holds no commit is no commit.
        std::fs::write(repo.join("refs/main"), "garbage").unwrap();
        assert_eq!(f.cached_commit(cache.path()), None);
    }

    #[test]
    fn the_cache_folder_is_found_as_huggingface_hub_finds_it() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let all = env(&[
            ("HF_HUB_CACHE", "/c"),
            ("HF_HOME", "/h"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(cache_dir_from(&all), Path::new("/c"));
        let home = env(&[
            ("HF_HOME", "/h"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(cache_dir_from(&home), Path::new("/h/hub"));
        let xdg = env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/home/u")]);
        assert_eq!(cache_dir_from(&xdg), Path::new("/x/huggingface/hub"));
        assert_eq!(hf_home_from(&xdg), Path::new("/x/huggingface"));
        let plain = env(&[("HOME", "/home/u")]);
        assert_eq!(
            cache_dir_from(&plain),
            Path::new("/home/u/.cache/huggingface/hub")
        );
    }
}
