//! The similarity space of docs/SPEC.md: M_X(θ₀, θ) (a run's final similarity to its
//! pre-trained backbone), A_X(θ*, θ) = |Acc(θ*) − Acc(θ)| (test accuracy)
//! with θ* the run of the same backbone with the best selection accuracy
//! (`evaluation.select_on`: the test accuracy, the paper's, or the
//! validation accuracy; lowest seed on a tie), and membership in
//! T_X(η, ε) = { θ : M ≥ η and A ≤ ε }.

use crate::MetricError;

/// One fine-tuned model: its backbone, seed, final similarity and accuracy.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPoint {
    pub backbone: String,
    pub seed: u64,
    pub similarity: f64,
    /// Test accuracy.
    pub accuracy: f64,
    /// The accuracy θ* is picked by: `accuracy` itself, or the validation
    /// split's.
    pub selected_by: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpacePoint {
    pub backbone: String,
    pub seed: u64,
    pub similarity: f64,
    pub accuracy: f64,
    /// A_X(θ*, θ).
    pub divergence: f64,
    /// Seed of θ*, the backbone's best run.
    pub reference_seed: u64,
    pub in_space: bool,
}

pub fn similarity_space(
    runs: &[RunPoint],
    eta: f64,
    epsilon: f64,
) -> Result<Vec<SpacePoint>, MetricError> {
    if let Some(r) = runs.iter().find(|r| {
        !(r.similarity.is_finite() && r.accuracy.is_finite() && r.selected_by.is_finite())
    }) {
        return Err(MetricError::input(
            &format!("{} seed {}", r.backbone, r.seed),
            "non-finite similarity or accuracy",
        ));
    }
    Ok(runs
        .iter()
        .map(|run| {
            let best = runs
                .iter()
                .filter(|r| r.backbone == run.backbone)
                .max_by(|a, b| {
                    a.selected_by
                        .total_cmp(&b.selected_by)
                        .then(b.seed.cmp(&a.seed))
                })
                .expect("the run itself is a candidate");
            let divergence = (best.accuracy - run.accuracy).abs();
            SpacePoint {
                backbone: run.backbone.clone(),
                seed: run.seed,
                similarity: run.similarity,
                accuracy: run.accuracy,
                divergence,
                reference_seed: best.seed,
                in_space: run.similarity >= eta && divergence <= epsilon,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(backbone: &str, seed: u64, similarity: f64, accuracy: f64) -> RunPoint {
        RunPoint {
            backbone: backbone.into(),
            seed,
            similarity,
            accuracy,
            selected_by: accuracy,
        }
    }

    #[test]
    fn theta_star_is_picked_by_the_selection_accuracy_and_divergence_is_on_test() {
        let mut a = run("b", 0, 0.9, 0.80);
        let mut b = run("b", 1, 0.9, 0.70);
        // On validation, seed 1 looked better.
        (a.selected_by, b.selected_by) = (0.60, 0.65);
        let space = similarity_space(&[a, b], 0.5, 0.05).unwrap();
        assert_eq!(space[0].reference_seed, 1);
        assert!((space[0].divergence - 0.10).abs() < 1e-12);
        assert!(!space[0].in_space && space[1].in_space);
    }

    #[test]
    fn reference_is_the_best_run_per_backbone_and_membership_needs_both() {
        let runs = [
            run("vit", 0, 0.9, 0.80),
            run("vit", 1, 0.4, 0.85),
            run("vit", 2, 0.7, 0.84),
            run("clip", 0, 0.95, 0.70),
        ];
        let space = similarity_space(&runs, 0.6, 0.02).unwrap();
        assert!(
            space
                .iter()
                .filter(|p| p.backbone == "vit")
                .all(|p| p.reference_seed == 1)
        );
        assert!((space[0].divergence - 0.05).abs() < 1e-12);
        assert_eq!(
            space.iter().map(|p| p.in_space).collect::<Vec<_>>(),
            vec![false, false, true, true]
        );
    }
}
