//! `[[methods]]`: how each backbone is fine-tuned (a study axis), with the
//! parameters each kind needs and nothing it does not.

use serde::{Deserialize, Serialize};

/// A fine-tuning method: its kind, the kind's parameters, and layer-wise
/// learning-rate decay (combinable with any kind). README, "Choosing a
/// fine-tuning method".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodConfig {
    /// The runs' folder `runs/<dataset>/<backbone>/<name>/`, the tables'
    /// `method` column, the figures' facets.
    pub name: String,
    pub kind: MethodKind,
    /// lp-ft: epochs of the linear-probe phase (backbone frozen) before
    /// full fine-tuning from the probed head; at least 1, fewer than
    /// `training.epochs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_epochs: Option<u32>,
    /// l2-sp: α of α/2‖w − w₀‖² on the backbone (w₀ the pre-trained weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// l2-sp: β of β/2‖w_head‖² on the head's weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// rep-sim: the weight λ of λ·(1 − linear CKA) between each batch's
    /// final-norm CLS features and the pre-trained backbone's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Layer-wise learning-rate decay (timm's `layer_decay`): block i of L
    /// (1-based) at decay^(L + 1 − i) times the backbone rate, the
    /// embedding at decay^(L + 1), the final norm at 1; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_decay: Option<f64>,
    /// WiSE-FT (Wortsman et al. 2022), with any kind: after the last epoch,
    /// the backbones (1 − α)θ₀ + αθ_ft for these α (increasing, in [0, 1);
    /// α = 1 is the last epoch itself), each with the fine-tuned head and
    /// evaluated like an epoch; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wise_ft: Option<Vec<f64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MethodKind {
    /// Every weight trained from the start (the spec's protocol).
    Full,
    /// Kumar et al. (2022): a linear probe, then full fine-tuning.
    LpFt,
    /// Li et al. (2018): full fine-tuning pulled towards the pre-trained weights.
    L2Sp,
    /// After Zu et al. (2025, RepSim): full fine-tuning pulled towards the
    /// pre-trained features, up to an orthogonal transform (linear CKA).
    RepSim,
}

impl MethodConfig {
    /// Plain full fine-tuning under `name`.
    pub fn full(name: &str) -> MethodConfig {
        MethodConfig {
            name: name.into(),
            kind: MethodKind::Full,
            probe_epochs: None,
            alpha: None,
            beta: None,
            weight: None,
            layer_decay: None,
            wise_ft: None,
        }
    }

    pub(super) fn validate(&self, at: &str, epochs: u32) -> Result<(), (String, String)> {
        let field = |f: &str| format!("{at}.{f}");
        super::check_name(&field("name"), &self.name)?;
        let kind = self.kind;
        let only =
            |name: &str, present: bool, wanted: MethodKind| -> Result<(), (String, String)> {
                match (present, kind == wanted) {
                    (true, false) => {
                        Err((field(name), format!("not used by kind {kind:?}; remove it")))
                    }
                    (false, true) => Err((field(name), format!("kind {kind:?} needs it"))),
                    _ => Ok(()),
                }
            };
        only(
            "probe_epochs",
            self.probe_epochs.is_some(),
            MethodKind::LpFt,
        )?;
        only("alpha", self.alpha.is_some(), MethodKind::L2Sp)?;
        only("beta", self.beta.is_some(), MethodKind::L2Sp)?;
        only("weight", self.weight.is_some(), MethodKind::RepSim)?;
        if let Some(p) = self.probe_epochs
            && !(1..epochs).contains(&p)
        {
            return Err((
                field("probe_epochs"),
                format!("{p} is not in 1..{epochs} (training.epochs): both phases need an epoch"),
            ));
        }
        for (name, v) in [
            ("alpha", self.alpha),
            ("beta", self.beta),
            ("weight", self.weight),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                return Err((field(name), format!("{v} is not a non-negative number")));
            }
        }
        if let Some(d) = self.layer_decay
            && !(d > 0.0 && d <= 1.0)
        {
            return Err((field("layer_decay"), format!("{d} is not in (0, 1]")));
        }
        if let Some(alphas) = &self.wise_ft
            && (alphas.is_empty()
                || alphas.iter().any(|a| !(0.0..1.0).contains(a))
                || alphas.windows(2).any(|w| w[0] >= w[1]))
        {
            return Err((
                field("wise_ft"),
                format!(
                    "{alphas:?} is not an increasing list of α in [0, 1) (α = 1 is the \
                        fine-tuned model itself)"
                ),
            ));
        }
        Ok(())
    }
}

pub(super) fn default_methods() -> Vec<MethodConfig> {
    vec![MethodConfig::full("full")]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{MINIMAL, parse};

    #[test]
    fn methods_default_to_full_and_their_fields_are_checked() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.methods, [MethodConfig::full("full")]);
        assert_eq!(parse(&c.to_resolved_toml()).unwrap(), c);
        let with = |m: &str| {
            parse(&format!(
                "{MINIMAL}\n[training]\nepochs = 3\n[[methods]]\nname = \"m\"\n{m}"
            ))
        };
        let ok = with("kind = \"l2-sp\"\nalpha = 0.01\nbeta = 0.01\nlayer_decay = 0.75\n").unwrap();
        assert_eq!(ok.methods[0].kind, MethodKind::L2Sp);
        let ok = with("kind = \"rep-sim\"\nweight = 2.0\nwise_ft = [0.0, 0.5]\n").unwrap();
        assert_eq!(
            (
                ok.methods[0].kind,
                ok.methods[0].weight,
                ok.methods[0].wise_ft.as_deref()
            ),
            (MethodKind::RepSim, Some(2.0), Some(&[0.0, 0.5][..]))
        );
        for (body, field, says) in [
            ("kind = \"lp-ft\"\n", "methods[0].probe_epochs", "needs it"),
            (
                "kind = \"lp-ft\"\nprobe_epochs = 3\n",
                "methods[0].probe_epochs",
                "not in 1..3",
            ),
            (
                "kind = \"full\"\nalpha = 0.1\n",
                "methods[0].alpha",
                "not used",
            ),
            (
                "kind = \"l2-sp\"\nalpha = -1.0\nbeta = 0.0\n",
                "methods[0].alpha",
                "non-negative",
            ),
            (
                "kind = \"full\"\nlayer_decay = 1.5\n",
                "methods[0].layer_decay",
                "(0, 1]",
            ),
            ("kind = \"rep-sim\"\n", "methods[0].weight", "needs it"),
            (
                "kind = \"rep-sim\"\nweight = -0.5\n",
                "methods[0].weight",
                "non-negative",
            ),
            (
                "kind = \"l2-sp\"\nalpha = 0.1\nbeta = 0.1\nweight = 1.0\n",
                "methods[0].weight",
                "not used",
            ),
            ("kind = \"full-ft\"\n", "methods[0].kind", "full-ft"),
            (
                "kind = \"full\"\nwise_ft = [0.5, 0.25]\n",
                "methods[0].wise_ft",
                "increasing",
            ),
            (
                "kind = \"full\"\nwise_ft = [0.5, 1.0]\n",
                "methods[0].wise_ft",
                "[0, 1)",
            ),
            (
                "kind = \"full\"\nwise_ft = []\n",
                "methods[0].wise_ft",
                "increasing",
            ),
        ] {
            let msg = with(body).unwrap_err().to_string();
            assert!(msg.contains(field) && msg.contains(says), "{body}: {msg}");
        }
        let twice = parse(&format!(
            "{MINIMAL}[[methods]]\nname = \"m\"\nkind = \"full\"\n[[methods]]\nname \
                = \"m\"\nkind = \"full\"\n"
        ));
        assert!(twice.unwrap_err().to_string().contains("methods[1].name"));
    }
}
