//! The GPU check (`scripts/gpu_check.sh` and `sim-train device-check`) run
//! here on the CPU backend: packed with this build's binary instead of the
//! CUDA one, at small sizes, through the same script and code paths a GPU
//! machine runs. Needs the real HAM10000 (`SIM_DATA_DIR`).

use sim_study::real_data::real_data_dir;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `configs/device-check.toml` with both backbones shrunk to CPU-test size,
/// written as `config` (read from `config` too when it exists).
fn small_config(config: &Path) {
    let source = if config.exists() {
        config.to_path_buf()
    } else {
        root().join("configs/device-check.toml")
    };
    let mut text = std::fs::read_to_string(source).unwrap();
    for (from, to) in [
        (
            "input_size = 224\nheads = 12\npretrain = { objective = \"none\", width = 768, \
                depth = 12, patch = 16 }",
            "input_size = 32\nheads = 2\npretrain = { objective = \"none\", width = 32, \
                depth = 1, patch = 8 }",
        ),
        (
            "input_size = 64\nheads = 3\npretrain = { objective = \"none\", width = 192, \
                depth = 6, patch = 8 }",
            "input_size = 32\nheads = 2\npretrain = { objective = \"none\", width = 48, \
                depth = 2, patch = 8 }",
        ),
    ] {
        assert!(
            text.contains(from),
            "configs/device-check.toml changed: no `{from}`"
        );
        text = text.replace(from, to);
    }
    std::fs::write(config, text).unwrap();
}

/// The rows of the Markdown table in `text` as (measure, value, goal).
fn rows(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| measure"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            (
                cells[0].clone(),
                cells.get(1).cloned().unwrap_or_default(),
                cells.get(2).cloned().unwrap_or_default(),
            )
        })
        .collect()
}

fn value<'a>(rows: &'a [(String, String, String)], measure: &str) -> &'a (String, String, String) {
    rows.iter()
        .find(|r| r.0 == measure)
        .unwrap_or_else(|| panic!("no row `{measure}` in {rows:?}"))
}

fn number(text: &str) -> f64 {
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number in `{text}`"))
}

#[test]
fn the_gpu_check_packs_and_runs_on_the_cpu_backend() {
    let Some(data) = real_data_dir(
        "ham10000",
        "the_gpu_check_packs_and_runs_on_the_cpu_backend",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let pack = tmp.path().join("pack");
    let packed = Command::new(root().join("scripts/gpu_check.sh"))
        .args(["pack", pack.to_str().unwrap()])
        .env("SIM_DATA_DIR", &data)
        .env("SIM_TRAIN", env!("CARGO_BIN_EXE_sim-train"))
        .output()
        .unwrap();
    assert!(
        packed.status.success(),
        "pack: {}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let images = std::fs::read_dir(pack.join("data/ham10000/images"))
        .unwrap()
        .count();
    assert_eq!(images, 10_015usize.div_ceil(8), "every 8th HAM10000 image");
    small_config(&pack.join("device-check.toml"));

    let ran = Command::new(pack.join("gpu_check.sh"))
        .arg("run")
        .env("STEPS", "2")
        .env("EPOCHS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "run: {stdout}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    for section in [
        "f32, first process (empty kernel cache)",
        "f32, second process",
        "## burn, bf16",
        "burn beside timm",
    ] {
        assert!(
            stdout.contains(section),
            "no section `{section}` in:\n{stdout}"
        );
    }
    // The comparison after each precision, so a run stopped by a time
    // limit keeps what it finished; each measurement on stderr as taken.
    assert_eq!(stdout.matches("## burn beside timm").count(), 2, "{stdout}");
    let stderr = String::from_utf8_lossy(&ran.stderr);
    for line in [
        "device-check: first training step",
        "device-check: evaluation",
        "device-check: agreement run on the device",
    ] {
        assert_eq!(
            stderr.matches(line).count(),
            if line.contains("agreement") { 2 } else { 3 },
            "`{line}` in:\n{stderr}"
        );
    }

    let results = pack.join("results");
    for table in ["f32-cold", "f32-warm", "bf16"] {
        let text = std::fs::read_to_string(results.join(format!("{table}.md"))).unwrap();
        let rows = rows(&text);
        assert_eq!(value(&rows, "device").1, "CPU (burn Flex)");
        // Timings are measured, not judged: each row holds a number.
        for measure in [
            "warm-up: first training step (s)",
            "warm-up: first evaluation batch (s)",
        ] {
            assert!(
                number(&value(&rows, measure).1) >= 0.0,
                "{table}: {measure}"
            );
        }
        for measure in [
            "training, steady state (images/s)",
            "evaluation, steady state (images/s)",
        ] {
            assert!(number(&value(&rows, measure).1) > 0.0, "{table}: {measure}");
        }
        assert_eq!(
            value(&rows, "peak GPU memory (MiB)").1,
            "n/a (no nvidia-smi)"
        );
        let compared = table != "f32-warm";
        assert_eq!(
            rows.iter()
                .any(|r| r.0.starts_with("accuracy, CPU / device")),
            compared,
            "{table}: the comparison is in the cold and bf16 runs only"
        );
        if compared {
            let logits = number(&value(&rows, "logits: max abs difference / max abs logit").1);
            let accuracy = value(&rows, "accuracy, CPU / device (%)");
            if table == "bf16" {
                // bf16 against the CPU's f32: different numbers, the same model.
                assert!(
                    logits > 1e-4 && logits < 0.2,
                    "bf16 logits differ by {logits}"
                );
            } else {
                // Here the device is the CPU: the same run twice.
                assert_eq!(logits, 0.0, "f32 on the CPU twice");
                assert_eq!(accuracy.2, "within 1 point: met");
            }
            for measure in [
                "ECE, CPU / device",
                "CKA to the pre-trained model, CPU / device",
            ] {
                assert!(
                    value(&rows, measure).2.starts_with("within 0.01"),
                    "{table}: {measure}"
                );
            }
        }
    }
    assert_eq!(
        value(
            &rows(&std::fs::read_to_string(results.join("f32-cold.md")).unwrap()),
            "precision"
        )
        .1,
        "f32"
    );
    assert_eq!(
        value(
            &rows(&std::fs::read_to_string(results.join("bf16.md")).unwrap()),
            "precision"
        )
        .1,
        "bf16"
    );
    // The summary: burn's three runs beside timm's columns (empty here, saying why).
    let summary = std::fs::read_to_string(results.join("summary.md")).unwrap();
    if !summary.contains("(no python3)") {
        assert!(
            summary.contains("burn: f32-cold")
                && summary.contains("timm bf16")
                && summary.contains("not run"),
            "{summary}"
        );
        // timm timed once, its figures (here: why it did not run) kept for the second summary.
        let kept = std::fs::read_to_string(results.join("timm.json")).unwrap();
        assert!(kept.contains("not run"), "{kept}");
    }
}

/// A loss that turns NaN while the check times its steps stops it with the
/// step, even when the timed steps are fewer than an epoch's and end before
/// a loss window would be read for time or count (the last window of a call
/// was once left unread).
#[test]
fn a_nan_loss_in_the_timed_steps_stops_the_check() {
    let Some(data) = real_data_dir("ham10000", "a_nan_loss_in_the_timed_steps_stops_the_check")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("check.toml");
    small_config(&config);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace(
            "root = \"ham10000\"",
            "root = \"ham10000\"\nmax_samples = 800",
        )
        .replace("lr_backbone = 1e-4", "lr_backbone = 1e30")
        .replace(
            "name = \"device-check\"",
            &format!(
                "name = \"device-check\"\noutput_dir = \"{}\"",
                tmp.path().join("study").display()
            ),
        );
    assert!(
        text.contains("1e30") && text.contains("max_samples"),
        "{text}"
    );
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sim-train"))
        .args([
            "device-check",
            "--config",
            config.to_str().unwrap(),
            "--backbone",
            "vit-b16",
            "--steps",
            "3",
        ])
        .env("SIM_DATA_DIR", &data)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a NaN training run was timed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("loss NaN at step") || stderr.contains("loss inf at step"),
        "{stderr}"
    );
}
