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
//!
//! `<probe>` is `medical` (the medical test set) or `natural` (the fixed
//! natural-image subset); `<token>` is `cls` or `patch_mean` (registers
//! excluded). The file's metadata has one entry, [`METADATA_KEY`]: a JSON
//! object `{"backbone", "backbone_sha256", "epoch", "seed"}` (seed null for
//! the shared epoch 0; the hash of the backbone file the model came from).

pub const METADATA_KEY: &str = "run";
pub const TEST_LOGITS: &str = "test.logits";
pub const TEST_LABELS: &str = "test.labels";
pub const KNN_BANK: &str = "knn.bank";
pub const KNN_BANK_LABELS: &str = "knn.bank_labels";
pub const KNN_QUERY: &str = "knn.query";
pub const KNN_QUERY_LABELS: &str = "knn.query_labels";
pub const ATTENTION: &str = "attention";

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
    let ["probe", probe, layer, token] = parts[..] else { return None };
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
                    assert_eq!(parse_probe_tensor(&name), Some((probe, layer, token)), "{name}");
                }
            }
        }
        assert_eq!(probe_tensor(Probe::Medical, Layer::Index(3), Token::PatchMean), "probe.medical.layer_3.patch_mean");
        assert_eq!(parse_probe_tensor("probe.medical.layer_x.cls"), None);
        assert_eq!(parse_probe_tensor("test.logits"), None);
    }
}
