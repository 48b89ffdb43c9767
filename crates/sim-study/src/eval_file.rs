//! Names of the tensors in an evaluation file (`pretrained.safetensors`,
//! `epoch-<EEE>.safetensors`), shared by the writer (`sim-train finetune`) and
//! the reader (`sim-metrics study`):
//!
//! | tensor | dtype, shape | what |
//! |---|---|---|
//! | `test.logits` | f32 [n_test, classes] | medical test-set logits |
//! | `test.labels` | i64 [n_test] | their labels |
//! | `probe.<probe>.layer_<i>.<token>` | f16 [n_probe, d] | layer i (0 = embedding, 1..=L blocks) |
//! | `probe.<probe>.final.<token>` | f16 [n_probe, d] | after the final norm |
//! | `knn.bank`, `knn.query` | f16 [n, d] | final-norm CLS of the natural train / val split |
//! | `knn.bank_labels`, `knn.query_labels` | i64 [n] | their labels |
//! | `attention` | f32 [n_images, patches] | last block's CLS→patch attention, mean over heads |
//! | `attention.patch_norm` | f32 [n_images, patches] | L2 norm of each patch token after the final norm |
//! | `attention.images` | u8 [n_images, size, size, 3] | those images as the model saw them (epoch 0 only) |
//! | `train.features` | f16 [n_train, d] | final-norm CLS of the medical train split (epoch 0 only: the linear probe) |
//! | `train.labels` | i64 [n_train] | their labels |
//! | `val.logits` | f32 [n_val, classes] | medical validation-split logits (data sets with a validation split) |
//! | `val.labels` | i64 [n_val] | their labels |
//! | `val.features` | f16 [n_val, d] | final-norm CLS of the validation split (epoch 0 only: the linear probe's validation logits) |
//!
//! `<probe>` is `medical` (the medical test set) or `natural` (the fixed
//! natural-image subset); `<token>` is `cls` or `patch_mean` (registers
//! excluded); patches are in row-major order of the patch grid. The file's
//! metadata has one entry, [`METADATA_KEY`]: the JSON object of
//! [`EvalMetadata`]. [`EvalFile`] reads a file back.

pub const METADATA_KEY: &str = "run";
pub const TEST_LOGITS: &str = "test.logits";
pub const TEST_LABELS: &str = "test.labels";
pub const KNN_BANK: &str = "knn.bank";
pub const KNN_BANK_LABELS: &str = "knn.bank_labels";
pub const KNN_QUERY: &str = "knn.query";
pub const KNN_QUERY_LABELS: &str = "knn.query_labels";
pub const ATTENTION: &str = "attention";
pub const ATTENTION_PATCH_NORM: &str = "attention.patch_norm";
pub const ATTENTION_IMAGES: &str = "attention.images";
pub const TRAIN_FEATURES: &str = "train.features";
pub const TRAIN_LABELS: &str = "train.labels";
pub const VAL_LOGITS: &str = "val.logits";
pub const VAL_LABELS: &str = "val.labels";
pub const VAL_FEATURES: &str = "val.features";

/// What an evaluation file says about itself (its one metadata entry).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalMetadata {
    /// The medical data set; none in a backbone's natural-image epoch 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    pub backbone: String,
    /// SHA-256 of the backbone file the model came from.
    pub backbone_sha256: String,
    /// SHA-256 of each split file the evaluation read (`splits/<data set>.csv`,
    /// by data set); empty in files made before it was recorded.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub data_sha256: std::collections::BTreeMap<String, String>,
    pub epoch: u32,
    /// The run's seed; none for the shared epoch 0.
    pub seed: Option<u64>,
    /// WiSE-FT's α: the backbone (1 − α)θ₀ + αθ_ft after the last epoch
    /// (`epoch`); none for an epoch's own model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Ids (in the natural data set) of the images whose attention is kept.
    pub attention_ids: Vec<String>,
}

impl EvalMetadata {
    /// The file's metadata map: one entry, so the same run gives the same
    /// bytes (several entries would be written in HashMap order).
    pub fn to_map(&self) -> std::collections::HashMap<String, String> {
        let json = serde_json::to_string(self).expect("metadata serialises");
        std::collections::HashMap::from([(METADATA_KEY.to_string(), json)])
    }
}

/// An evaluation file, read once; errors name the file.
pub struct EvalFile {
    pub path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl EvalFile {
    pub fn open(path: &std::path::Path) -> Result<EvalFile, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| format!("{}: not a safetensors file: {e}", path.display()))?;
        Ok(EvalFile {
            path: path.to_owned(),
            bytes,
        })
    }

    fn tensors(&self) -> safetensors::SafeTensors<'_> {
        safetensors::SafeTensors::deserialize(&self.bytes).expect("checked when opened")
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors().tensor(name).is_ok()
    }

    /// A tensor's shape and values.
    pub fn decoded(&self, name: &str) -> Result<(Vec<usize>, crate::tensors::Values), String> {
        let view = self
            .tensors()
            .tensor(name)
            .map_err(|_| format!("{}: no tensor `{name}`", self.path.display()))?;
        crate::tensors::decode(&view).map_err(|m| format!("{}: {name}: {m}", self.path.display()))
    }

    /// Every tensor as stored (dtype, shape, bytes), to be written again.
    pub fn raw_tensors(&self) -> Vec<crate::tensors::RawTensor> {
        let mut tensors: Vec<_> = self
            .tensors()
            .tensors()
            .into_iter()
            .map(|(name, view)| crate::tensors::RawTensor {
                name,
                dtype: view.dtype(),
                shape: view.shape().to_vec(),
                bytes: view.data().to_vec(),
            })
            .collect();
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        tensors
    }

    /// The probe tensors the file holds, in (probe, layer, token) order.
    pub fn probes(&self) -> Vec<(Probe, Layer, Token)> {
        let mut found: Vec<_> = self
            .tensors()
            .names()
            .into_iter()
            .filter_map(parse_probe_tensor)
            .collect();
        found.sort();
        found
    }

    pub fn metadata(&self) -> Result<EvalMetadata, String> {
        let bad = |m: String| format!("{}: metadata `{METADATA_KEY}`: {m}", self.path.display());
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&self.bytes).map_err(|e| bad(e.to_string()))?;
        let json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or_else(|| bad("missing".into()))?;
        serde_json::from_str(json).map_err(|e| bad(e.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    Medical,
    Natural,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Token {
    Cls,
    PatchMean,
}

/// A layer of the backbone: 0 = embedding output, 1..=L the blocks, or the final norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    Index(usize),
    Final,
}

impl Probe {
    pub const ALL: [Probe; 2] = [Probe::Medical, Probe::Natural];
    pub fn name(self) -> &'static str {
        match self {
            Probe::Medical => "medical",
            Probe::Natural => "natural",
        }
    }
}

impl Token {
    pub const ALL: [Token; 2] = [Token::Cls, Token::PatchMean];
    pub fn name(self) -> &'static str {
        match self {
            Token::Cls => "cls",
            Token::PatchMean => "patch_mean",
        }
    }
}

impl Layer {
    pub fn name(self) -> String {
        match self {
            Layer::Index(i) => format!("layer_{i}"),
            Layer::Final => "final".into(),
        }
    }

    /// Parses the `<layer>` part of a probe tensor name.
    pub fn parse(text: &str) -> Option<Layer> {
        match text {
            "final" => Some(Layer::Final),
            _ => text.strip_prefix("layer_")?.parse().ok().map(Layer::Index),
        }
    }
}

/// `probe.<probe>.<layer>.<token>`.
pub fn probe_tensor(probe: Probe, layer: Layer, token: Token) -> String {
    format!("probe.{}.{}.{}", probe.name(), layer.name(), token.name())
}

/// The (probe, layer, token) a tensor name stands for, if it is a probe tensor.
pub fn parse_probe_tensor(name: &str) -> Option<(Probe, Layer, Token)> {
    let parts: Vec<&str> = name.split('.').collect();
    let ["probe", probe, layer, token] = parts[..] else {
        return None;
    };
    let probe = Probe::ALL.into_iter().find(|p| p.name() == probe)?;
    let token = Token::ALL.into_iter().find(|t| t.name() == token)?;
    Some((probe, Layer::parse(layer)?, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_names_round_trip() {
        for layer in [Layer::Index(0), Layer::Index(12), Layer::Final] {
            for probe in Probe::ALL {
                for token in Token::ALL {
                    let name = probe_tensor(probe, layer, token);
                    assert_eq!(
                        parse_probe_tensor(&name),
                        Some((probe, layer, token)),
                        "{name}"
                    );
                }
            }
        }
        assert_eq!(
            probe_tensor(Probe::Medical, Layer::Index(3), Token::PatchMean),
            "probe.medical.layer_3.patch_mean"
        );
        assert_eq!(parse_probe_tensor("probe.medical.layer_x.cls"), None);
        assert_eq!(parse_probe_tensor("test.logits"), None);
    }
}
