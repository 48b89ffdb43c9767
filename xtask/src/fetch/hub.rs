//! Backbone files from the Hugging Face Hub, as `huggingface_hub` fetches
//! them: the address from `HF_ENDPOINT` (a mirror), the token from
//! `HF_TOKEN` or the token file `hf auth login` writes, `HF_HUB_OFFLINE`
//! obeyed; a `source` alone lands in the Hugging Face cache in its own
//! layout ([`sim_study::hub`]), a `source` with a `checkpoint` at that path.
//! Every file is checked against the SHA-256 the Hub publishes for it (an
//! LFS file's etag), and a broken-off download continues where it stopped.

use super::{Checksum, Download, download_verified};
use anyhow::{Context, bail};
use sim_study::StudyConfig;
use sim_study::config::Weights;
use sim_study::hub::{HubFile, is_commit_hash};
use std::path::{Path, PathBuf};

/// The Hugging Face Hub.
pub const HUB: &str = "https://huggingface.co";

/// How to reach the Hub, from the environment as `huggingface_hub` reads it.
#[derive(Debug, Clone)]
pub struct Hub {
    /// `HF_ENDPOINT`, else [`HUB`].
    pub endpoint: String,
    /// `HF_TOKEN`, else the file `HF_TOKEN_PATH`, else `$HF_HOME/token`.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE`: nothing is downloaded.
    pub offline: bool,
    /// The cache folder (`HF_HUB_CACHE`, …: [`sim_study::hub::cache_dir`]).
    pub cache: PathBuf,
}

impl Hub {
    pub fn from_env() -> Hub {
        Hub::from_vars(&sim_study::hub::env_var)
    }

    /// [`Hub::from_env`] with the environment given as `var`.
    pub fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Hub {
        let token_file = var("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| sim_study::hub::hf_home_from(var).join("token"));
        let token = var("HF_TOKEN").or_else(|| std::fs::read_to_string(token_file).ok());
        Hub {
            endpoint: var("HF_ENDPOINT").unwrap_or_else(|| HUB.to_string()),
            token: token
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| sim_study::hub::is_true(&v)),
            cache: sim_study::hub::cache_dir_from(var),
        }
    }

    fn resolve_url(&self, f: &HubFile) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint.trim_end_matches('/'),
            f.repo,
            f.revision,
            f.file
        )
    }

    /// What the Hub says of the file without sending it (a `HEAD` of its
    /// resolve address, redirects not followed): the commit the revision
    /// names and the file's SHA-256.
    fn describe(&self, f: &HubFile) -> anyhow::Result<Remote> {
        let url = self.resolve_url(f);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .build()
            .into();
        let mut request = agent.head(&url).header("Accept-Encoding", "identity");
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let response = request.call().with_context(|| format!("HEAD {url}"))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let code = header("x-error-code").map_or(String::new(), |c| format!(" ({c})"));
        match status {
            200..=399 => {}
            401 | 403 if self.token.is_none() => bail!(
                "{url}: {status}{code}: the repository is gated or private and no token was \
                 sent; set HF_TOKEN (or log in with `hf auth login`) after accepting its terms \
                 on the Hub"
            ),
            401 | 403 => bail!(
                "{url}: {status}{code}: the token sent has no access; for a gated repository, \
                 accept its terms on the Hub with the token's account"
            ),
            404 => bail!(
                "{url}: 404{code}: no file `{}` in `{}` at revision `{}`",
                f.file,
                f.repo,
                f.revision
            ),
            _ => bail!("{url}: HTTP {status}{code}"),
        }
        let commit = header("x-repo-commit")
            .filter(|c| is_commit_hash(c))
            .with_context(|| format!("{url}: no commit (X-Repo-Commit) in the Hub's answer"))?;
        let etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .map(|e| {
                e.trim_start_matches("W/")
                    .trim_matches('"')
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if !(etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit())) {
            bail!(
                "{url}: the Hub publishes no SHA-256 for it (etag `{etag}`: not an LFS file), \
                 so it cannot be checked"
            );
        }
        Ok(Remote {
            url,
            commit,
            sha256: etag,
        })
    }

    /// The file in the cache, downloaded into it unless there: its blob
    /// (`blobs/<sha256>`, from `blobs/<sha256>.incomplete`), the snapshot's
    /// link to it and the revision's ref, as `huggingface_hub` writes them.
    pub fn fetch_into_cache(&self, f: &HubFile) -> anyhow::Result<PathBuf> {
        let remote = self.describe(f)?;
        let repo = f.repo_folder(&self.cache);
        let blob = repo.join("blobs").join(&remote.sha256);
        let incomplete = repo
            .join("blobs")
            .join(format!("{}.incomplete", remote.sha256));
        download_verified(
            &remote.download(),
            &blob,
            &incomplete,
            self.token.as_deref(),
        )?;
        let snapshot = f.snapshot_path(&self.cache, &remote.commit);
        link_snapshot(&snapshot, &blob, f)?;
        if f.revision != remote.commit {
            sim_study::write_atomic(&f.ref_file(&self.cache), remote.commit.as_bytes())?;
        }
        Ok(snapshot)
    }

    /// The file downloaded to `path` (a config's `checkpoint`).
    pub fn fetch_to(&self, f: &HubFile, path: &Path) -> anyhow::Result<PathBuf> {
        let remote = self.describe(f)?;
        download_verified(
            &remote.download(),
            path,
            &super::part_beside(path),
            self.token.as_deref(),
        )
    }
}

/// What the Hub says of a file.
struct Remote {
    url: String,
    commit: String,
    sha256: String,
}

impl Remote {
    fn download(&self) -> Download {
        Download {
            url: self.url.clone(),
            checksum: Checksum::Sha256(self.sha256.clone()),
        }
    }
}

/// `snapshots/<commit>/<file>` → `../../blobs/<sha256>` (one `..` more per
/// folder in the file's path), made beside and renamed into place; where
/// links cannot be made, a copy, as `huggingface_hub` does on Windows.
fn link_snapshot(snapshot: &Path, blob: &Path, f: &HubFile) -> anyhow::Result<()> {
    let parent = snapshot.parent().context("a snapshot path has a folder")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let up = "../".repeat(1 + f.file.split('/').count());
    let target = PathBuf::from(format!("{up}blobs")).join(blob.file_name().unwrap_or_default());
    let partial = super::part_beside(snapshot);
    std::fs::remove_file(&partial).ok();
    #[cfg(unix)]
    let made = std::os::unix::fs::symlink(&target, &partial);
    #[cfg(not(unix))]
    let made = std::fs::copy(blob, &partial).map(|_| ());
    made.with_context(|| format!("linking {} to {}", partial.display(), target.display()))?;
    std::fs::rename(&partial, snapshot)
        .with_context(|| format!("moving into {}", snapshot.display()))
}

/// Where each backbone file of `config` that is downloaded comes from, and
/// whether it is there.
pub struct HubBackbone {
    pub name: String,
    pub path: PathBuf,
    pub source: Option<HubFile>,
    /// Downloaded into the Hugging Face cache (a `source` alone).
    pub cached: bool,
}

/// The config's backbones with a file to find (not pre-trained here), a
/// `source` alone looked for in `cache`.
pub fn backbones(config: &StudyConfig, cache: &Path) -> Vec<HubBackbone> {
    config
        .backbones
        .iter()
        .filter_map(|b| {
            let (path, source, cached) = match &b.weights {
                Weights::Pretrain { .. } => return None,
                Weights::Checkpoint { download, .. } => {
                    (config.backbone_file(b), download.clone(), false)
                }
                Weights::Hub(file) => (file.cache_path(cache), Some(file.clone()), true),
            };
            Some(HubBackbone {
                name: b.name.clone(),
                path,
                source,
                cached,
            })
        })
        .collect()
}

/// Downloads every backbone file of `config` that has a `source` and is
/// not there yet; returns the files fetched. Offline, a missing file is an
/// error naming it.
pub fn fetch_checkpoints(config: &StudyConfig, hub: &Hub) -> anyhow::Result<Vec<PathBuf>> {
    let mut fetched = Vec::new();
    for b in backbones(config, &hub.cache) {
        if b.path.exists() {
            println!("backbones `{}`: present at {}", b.name, b.path.display());
            continue;
        }
        let Some(source) = &b.source else {
            println!(
                "backbones `{}`: {} is missing and has no `source` to fetch it from",
                b.name,
                b.path.display()
            );
            continue;
        };
        if hub.offline {
            bail!(
                "backbones `{}`: {source} is not in {} and HF_HUB_OFFLINE forbids downloads",
                b.name,
                if b.cached {
                    hub.cache.display().to_string()
                } else {
                    b.path.display().to_string()
                }
            );
        }
        let path = if b.cached {
            hub.fetch_into_cache(source)
        } else {
            hub.fetch_to(source, &b.path)
        };
        fetched.push(path.with_context(|| format!("backbones `{}`", b.name))?);
    }
    Ok(fetched)
}

#[cfg(test)]
mod tests;
