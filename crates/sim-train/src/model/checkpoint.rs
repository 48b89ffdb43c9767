//! A safetensors checkpoint as named f32 tensors in PyTorch layout, with the
//! bookkeeping that makes loading strict: every tensor taken is checked off,
//! and whatever is left at the end must be on the family's ignore list.

use super::ModelError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A tensor in PyTorch layout (row-major, `[out, in]` for linear weights).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> HostTensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        HostTensor { shape, data }
    }
}

/// The tensors of one checkpoint under a key prefix.
pub struct Checkpoint {
    pub path: PathBuf,
    /// The prefix stripped from every key (`visual.`, `backbone.`, …), if any.
    pub prefix: String,
    tensors: BTreeMap<String, HostTensor>,
    /// Tensors outside the prefix (a CLIP text tower, a classifier wrapper).
    pub outside_prefix: usize,
}

/// Prefixes tried, in order, when none is given and the keys at the top level
/// are not a backbone.
pub const KNOWN_PREFIXES: [&str; 6] = [
    "visual.",
    "backbone.",
    "vit.",
    "dinov2.",
    "model.",
    "module.",
];

/// The metadata key under which the files this tool writes record their
/// attention heads, which no tensor shape says.
pub const HEADS_METADATA: &str = "heads";

/// The attention heads a checkpoint's metadata records (files this tool
/// wrote), read from the header alone.
pub fn stored_heads(path: &Path) -> Result<Option<usize>, ModelError> {
    use std::io::Read;
    let bad = |m: String| ModelError::file(path, m);
    let mut file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| bad(format!("not a safetensors file (or truncated): {e}")))?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return Err(bad(format!(
            "not a safetensors file: a header of {len} bytes"
        )));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("not a safetensors file (or truncated): {e}")))?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("not a safetensors header: {e}")))?;
    match header
        .get("__metadata__")
        .and_then(|m| m.get(HEADS_METADATA))
    {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(|s| s.parse().ok())
            .filter(|&h: &usize| h > 0)
            .map(Some)
            .ok_or_else(|| {
                bad(format!(
                    "metadata `{HEADS_METADATA}` is {v}, not a positive number of heads"
                ))
            }),
    }
}

impl Checkpoint {
    /// Reads every tensor of a safetensors file (f32, f16 or bf16) as f32.
    pub fn read_all(path: &Path) -> Result<BTreeMap<String, HostTensor>, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::file(path, e.to_string()))?;
        let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
            ModelError::file(path, format!("not a safetensors file (or truncated): {e}"))
        })?;
        let mut tensors = BTreeMap::new();
        for (name, view) in file.tensors() {
            let (shape, values) = sim_study::tensors::decode(&view)
                .map_err(|m| ModelError::file(path, format!("{name}: {m}")))?;
            let sim_study::tensors::Values::Float(v) = values else {
                return Err(ModelError::file(
                    path,
                    format!("{name}: integer tensor in a checkpoint"),
                ));
            };
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                let count = v.iter().filter(|x| !x.is_finite()).count();
                return Err(ModelError::file(
                    path,
                    format!(
                        "tensor `{name}` has {count} non-finite values (the first, {}, at \
                            flat index {i})",
                        v[i]
                    ),
                ));
            }
            tensors.insert(
                name,
                HostTensor::new(shape, v.into_iter().map(|x| x as f32).collect()),
            );
        }
        Ok(tensors)
    }

    /// The tensors whose keys start with `prefix`, with the prefix stripped.
    pub fn with_prefix(
        path: &Path,
        all: &BTreeMap<String, HostTensor>,
        prefix: &str,
    ) -> Checkpoint {
        let mut tensors = BTreeMap::new();
        let mut outside = 0;
        for (k, v) in all {
            match k.strip_prefix(prefix) {
                Some(rest) => {
                    tensors.insert(rest.to_owned(), v.clone());
                }
                None => outside += 1,
            }
        }
        Checkpoint {
            path: path.to_owned(),
            prefix: prefix.to_owned(),
            tensors,
            outside_prefix: outside,
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// Number of blocks: one more than the largest `N` in keys `<stem>N.…`.
    pub fn count_blocks(&self, stem: &str) -> usize {
        self.tensors
            .keys()
            .filter_map(|k| {
                k.strip_prefix(stem)?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |m| m + 1)
    }

    /// Takes a required tensor.
    pub fn take(&mut self, key: &str) -> Result<HostTensor, ModelError> {
        self.tensors.remove(key).ok_or_else(|| ModelError::Missing {
            file: self.path.clone(),
            key: self.full(key),
        })
    }

    /// Takes a tensor the family may or may not have.
    pub fn take_optional(&mut self, key: &str) -> Option<HostTensor> {
        self.tensors.remove(key)
    }

    /// The key as it stands in the file.
    pub fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Ends loading: tensors not taken must match an ignore pattern
    /// (`pooler.` matches every key starting so); returns those ignored.
    pub fn finish(self, ignore: &[&str]) -> Result<Vec<String>, ModelError> {
        let (ignored, unused): (Vec<String>, Vec<String>) = self
            .tensors
            .keys()
            .map(|k| format!("{}{k}", self.prefix))
            .partition(|k| {
                let k = &k[self.prefix.len()..];
                ignore
                    .iter()
                    .any(|p| k == *p || (p.ends_with('.') && k.starts_with(p)))
            });
        if !unused.is_empty() {
            return Err(ModelError::Unused {
                file: self.path,
                keys: unused,
            });
        }
        Ok(ignored)
    }
}
