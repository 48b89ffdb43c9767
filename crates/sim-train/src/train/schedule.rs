//! Learning rate per optimiser step: linear warm-up over the first
//! `warmup_epochs`, then a cosine decay to zero at the last step (docs/SPEC.md).

/// The factor (0..=1) applied to the base learning rates at `step` (0-based).
pub fn lr_factor(step: usize, steps_per_epoch: usize, warmup_epochs: u32, epochs: u32) -> f64 {
    let total = steps_per_epoch * epochs as usize;
    let warmup = steps_per_epoch * warmup_epochs as usize;
    if step < warmup {
        (step + 1) as f64 / warmup as f64
    } else {
        let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
        0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_decays_to_zero() {
        let f = |s| lr_factor(s, 10, 1, 5);
        assert!((f(0) - 0.1).abs() < 1e-12 && (f(9) - 1.0).abs() < 1e-12);
        assert!((f(10) - 1.0).abs() < 1e-12);
        assert!((f(30) - 0.5).abs() < 1e-12, "half way through the cosine");
        assert!(f(49) < 0.01 && f(49) > 0.0);
        assert!(
            (1..50).all(|s| s <= 9 || f(s) <= f(s - 1)),
            "non-increasing after warm-up"
        );
        assert!((lr_factor(0, 10, 0, 2) - 1.0).abs() < 1e-12, "no warm-up");
    }
}
