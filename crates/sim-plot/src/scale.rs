//! How the figures show a similarity measure (`sim-plot --measure`): its
//! name, its axis text, the values it can take and its value against
//! itself. Linear CKA unless the study was drawn for another measure.

use sim_study::config::Measure;
use std::ops::Range;

/// A measure as the figures show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    pub measure: Measure,
    /// Short, for captions and colour bars: `CKA`, `SVCCA`, `Procrustes distance`.
    pub short: &'static str,
    /// What an axis measures: `similarity`, or `distance` (0 = the same).
    pub quantity: &'static str,
    /// Which, in an axis's parentheses: `linear CKA to pre-trained`.
    pub axis: &'static str,
    /// The values the measure can take: axes never reach past them.
    pub range: Range<f64>,
    /// The value of a representation against itself (1, or 0 for a
    /// distance): the pre-trained model's at epoch 0.
    pub identical: f64,
}

impl Scale {
    pub fn of(measure: Measure) -> Scale {
        let (short, axis, range) = match measure {
            Measure::Cka => ("CKA", "linear CKA to pre-trained", 0.0..1.0),
            Measure::CkaDebiased => ("debiased CKA", "debiased CKA to pre-trained", -1.0..1.0),
            Measure::Svcca => ("SVCCA", "SVCCA to pre-trained", 0.0..1.0),
            Measure::Pwcca => ("PWCCA", "PWCCA to pre-trained", 0.0..1.0),
            Measure::Procrustes => (
                "Procrustes distance",
                "Procrustes to pre-trained",
                0.0..std::f64::consts::FRAC_PI_2,
            ),
            Measure::Rsa => ("RSA", "RSA to pre-trained", -1.0..1.0),
            Measure::MutualKnn => ("mutual k-NN", "mutual k-NN to pre-trained", 0.0..1.0),
            Measure::Cknna => ("CKNNA", "CKNNA to pre-trained", -1.0..1.0),
        };
        let quantity = if measure.higher_is_similar() {
            "similarity"
        } else {
            "distance"
        };
        Scale {
            measure,
            short,
            quantity,
            axis,
            range,
            identical: if measure.higher_is_similar() {
                1.0
            } else {
                0.0
            },
        }
    }

    /// An axis's text: `similarity (linear CKA to pre-trained)`, with
    /// `prefix` before it (`final `).
    pub fn label(&self, prefix: &str) -> String {
        format!("{prefix}{} ({})", self.quantity, self.axis)
    }

    /// Whether larger values are more similar (all but a distance).
    pub fn higher_is_similar(&self) -> bool {
        self.measure.higher_is_similar()
    }

    /// The least similar of two values.
    pub fn least_similar(&self, a: f64, b: f64) -> f64 {
        if self.higher_is_similar() {
            a.min(b)
        } else {
            a.max(b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_measure_holds_its_value_against_itself_in_its_range() {
        for m in Measure::ALL {
            let s = Scale::of(m);
            assert!(
                s.range.start <= s.identical && s.identical <= s.range.end,
                "{m}"
            );
            assert!(s.axis.contains("to pre-trained"), "{m}");
        }
        assert_eq!(Scale::of(Measure::Procrustes).identical, 0.0);
        assert_eq!(Scale::of(Measure::Procrustes).least_similar(0.2, 0.5), 0.5);
        assert_eq!(Scale::of(Measure::Svcca).least_similar(0.2, 0.5), 0.2);
    }
}
