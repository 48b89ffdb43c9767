//! Fine-tuning runs on a small study the test writes (7-class "lesions" in
//! the HAM10000 layout, a 2-class natural folder, the tiny timm ViT fixture):
//! determinism, resume after `kill -9` (at a random moment, and at each step
//! between two writes), a finished run as a no-op, a diverging loss marking
//! the run failed without touching earlier files, the run folder's lock, and
//! the backbone file's identity.

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use sim_study::StudyConfig;
use sim_study::config::RunId;
use sim_study::run_state::{RunState, Status};
use sim_study::tensors::{Values, decode};
use sim_train::backend::TrainBackend;
use sim_train::finetune::{Outcome, run};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EPOCHS: u32 = 4;

/// Same seed, same numbers: bit-identical where a process trains one run
/// at a time (README, "Reproducibility"); these tests train several at once
/// in one process, where burn 0.21's autodiff can race between them
/// (`train::batch_parts`'s doc), so they allow float rounding.
const REPEAT_TOLERANCE: f64 = 1e-5;

fn assert_close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale;
    assert!(
        diff <= REPEAT_TOLERANCE,
        "{what}: relative difference {diff:.2e} > {REPEAT_TOLERANCE:e}"
    );
}

/// Writes the data sets once per test and returns the config text.
fn study(dir: &Path, extra: &str) -> (StudyConfig, PathBuf) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let ham = dir.join("ham10000");
    std::fs::create_dir_all(ham.join("images")).unwrap();
    let mut csv = String::from("lesion_id,image_id,dx,dx_type,age,sex,localization\n");
    let classes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"];
    let mut draw = |shade: [u8; 3]| {
        RgbImage::from_fn(40, 32, |_, _| {
            Rgb(shade.map(|v| v.saturating_add(rng.random_range(0..40))))
        })
    };
    for i in 0..84 {
        let c = i % 7;
        let id = format!("ISIC_{i:07}");
        draw([c as u8 * 30, 200 - c as u8 * 25, 90])
            .save(ham.join(format!("images/{id}.jpg")))
            .unwrap();
        csv.push_str(&format!("HAM_{:04},{id},{},histo,,,\n", i / 2, classes[c]));
    }
    std::fs::write(ham.join("HAM10000_metadata.csv"), csv).unwrap();
    for (split, n) in [("train", 10), ("val", 6)] {
        for (k, class) in ["n01", "n02"].iter().enumerate() {
            let folder = dir.join(format!("nette/{split}/{class}"));
            std::fs::create_dir_all(&folder).unwrap();
            for j in 0..n {
                draw([120, k as u8 * 100, 30])
                    .save(folder.join(format!("{j}.png")))
                    .unwrap();
            }
        }
    }
    // A copy, so a test can replace it.
    let checkpoint = dir.join("backbone.safetensors");
    if !checkpoint.exists() {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/backbones/timm_vit/model.safetensors"),
            &checkpoint,
        )
        .unwrap();
    }
    let text = format!(
        r#"
[study]
name = "tiny"
output_dir = "{out}"
seeds = [0, 1]
[datasets.medical]
kind = "ham10000"
root = "{ham}"
[datasets.natural]
kind = "image-folder"
root = "{nette}"
[[backbones]]
name = "tiny-vit"
checkpoint = "{checkpoint}"
heads = 3
input_size = 32
[training]
epochs = {EPOCHS}
batch_size = 16
lr_backbone = 1e-3
lr_head = 1e-2
{extra}
[evaluation]
batch_size = 32
natural_probe_size = 8
attention_images = 2
knn_k = [1, 3]
knn_report_k = 3
"#,
        out = dir.join("study").display(),
        ham = ham.display(),
        nette = dir.join("nette").display(),
        checkpoint = checkpoint.display(),
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, &text).unwrap();
    (StudyConfig::from_file(&path).unwrap(), path)
}

fn tensor(path: &Path, name: &str) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, Values::Float(v)) = decode(&file.tensor(name).unwrap()).unwrap() else {
        panic!("{name}")
    };
    v
}

/// The run of the tiny study with `seed`.
fn tiny(seed: u64) -> RunId {
    RunId {
        dataset: "ham10000".into(),
        backbone: "tiny-vit".into(),
        method: "full".into(),
        seed,
    }
}

fn epoch_file(dir: &Path, seed: u64, epoch: u32) -> PathBuf {
    dir.join(format!(
        "study/runs/ham10000/tiny-vit/full/seed-{seed:02}/epoch-{epoch:03}.safetensors"
    ))
}

#[test]
fn same_seed_same_numbers_and_a_finished_run_is_a_no_op() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let device = Default::default();
    for dir in [a.path(), b.path()] {
        let (config, _) = study(dir, "");
        assert_eq!(
            run::<TrainBackend>(&config, &tiny(0), &device).unwrap(),
            Outcome::Finished { resumed_at: 0 }
        );
    }
    let (fa, fb) = (
        epoch_file(a.path(), 0, EPOCHS),
        epoch_file(b.path(), 0, EPOCHS),
    );
    let (la, lb) = (tensor(&fa, "test.logits"), tensor(&fb, "test.logits"));
    assert_close(&la, &lb, "same seed, two studies");
    // Seen so far: bit-identical files, with 1 or 2 threads alike.
    if std::fs::read(&fa).unwrap() != std::fs::read(&fb).unwrap() {
        eprintln!(
            "note: same-seed runs agree to {REPEAT_TOLERANCE:e} but are not bit-identical this time"
        );
    }
    let state = RunState::read(&a.path().join("study/runs/ham10000/tiny-vit/full/seed-00"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (state.status, state.last_finished_epoch),
        (Status::Finished, EPOCHS)
    );

    // Another seed: another head and order, the same shared epoch 0.
    let (config, _) = study(a.path(), "");
    let pretrained = a
        .path()
        .join("study/runs/ham10000/tiny-vit/pretrained.safetensors");
    let before = std::fs::read(&pretrained).unwrap();
    run::<TrainBackend>(&config, &tiny(1), &device).unwrap();
    assert_eq!(
        std::fs::read(&pretrained).unwrap(),
        before,
        "epoch 0 is computed once per backbone"
    );
    assert_ne!(tensor(&epoch_file(a.path(), 1, EPOCHS), "test.logits"), la);
    assert_eq!(
        run::<TrainBackend>(&config, &tiny(0), &device).unwrap(),
        Outcome::AlreadyFinished
    );
}

#[test]
fn killed_run_resumes_to_the_same_numbers() {
    let (whole, killed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (config, _) = study(whole.path(), "");
    run::<TrainBackend>(&config, &tiny(0), &Default::default()).unwrap();

    let (_, path) = study(killed.path(), "");
    let finetune = || {
        finetune_command(&path, 0)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let run_dir = killed
        .path()
        .join("study/runs/ham10000/tiny-vit/full/seed-00");
    let mut child = finetune();
    let start = Instant::now();
    loop {
        let state = RunState::read(&run_dir).ok().flatten();
        if state.is_some_and(|s| s.last_finished_epoch >= 1) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "epoch 1 never finished"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let state = RunState::read(&run_dir).unwrap().unwrap();
    assert!(
        state.last_finished_epoch < EPOCHS,
        "killed before the end (at epoch {})",
        state.last_finished_epoch
    );
    assert!(finetune().wait().unwrap().success());
    let state = RunState::read(&run_dir).unwrap().unwrap();
    assert_eq!(
        (state.status, state.last_finished_epoch),
        (Status::Finished, EPOCHS)
    );
    for epoch in 1..=EPOCHS {
        assert_close(
            &tensor(&epoch_file(killed.path(), 0, epoch), "test.logits"),
            &tensor(&epoch_file(whole.path(), 0, epoch), "test.logits"),
            &format!("epoch {epoch} after the kill against the uninterrupted run"),
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        leftovers
            .iter()
            .all(|n| !n.to_string_lossy().ends_with(".partial")),
        "{leftovers:?}"
    );
}

#[test]
fn a_diverging_loss_marks_the_run_failed_and_keeps_earlier_files() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _) = study(dir.path(), "");
    config.training.lr_head = 1e30;
    config.training.warmup_epochs = 0;
    let err = run::<TrainBackend>(&config, &tiny(0), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("at epoch 1, step"), "{err}");
    let state = RunState::read(&dir.path().join("study/runs/ham10000/tiny-vit/full/seed-00"))
        .unwrap()
        .unwrap();
    assert_eq!(state.status, Status::Failed);
    assert!(state.message.unwrap().contains("epoch 1"));
    let pretrained = dir
        .path()
        .join("study/runs/ham10000/tiny-vit/pretrained.safetensors");
    assert!(
        tensor(&pretrained, "test.logits")
            .iter()
            .all(|v| v.is_finite()),
        "epoch 0 intact"
    );
}

/// The binary, as a user (or a Slurm task) runs it.
fn finetune_command(config: &Path, seed: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sim-train"));
    command
        .args([
            "finetune",
            "--backbone",
            "tiny-vit",
            "--seed",
            &seed.to_string(),
            "--config",
        ])
        .arg(config);
    command
}

/// Files under `dir` whose names say a writer was interrupted.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains(".tmp-") || name.ends_with(".partial") {
            found.push(path.clone());
        }
        if path.is_dir() {
            found.extend(leftovers(&path));
        }
    }
    found
}

/// `kill -9` at each step between two writes (the test hook `SIM_CRASH_AT`
/// sends the process SIGKILL there), then a rerun: the run ends with the
/// numbers of an uninterrupted one, with one checkpoint folder and nothing
/// half-written left anywhere in the study.
#[test]
fn a_kill_between_any_two_writes_resumes_to_the_same_numbers() {
    let whole = tempfile::tempdir().unwrap();
    let (config, _) = study(whole.path(), "");
    run::<TrainBackend>(&config, &tiny(0), &Default::default()).unwrap();
    let points = [
        // Inside an atomic write, before the rename: in the data stage, then in epoch 1.
        "temp-written@2",
        "temp-written@10",
        "evaluation-written@2",
        "checkpoint-written",
        // The case that used to leave a run that never resumed.
        "checkpoint-renamed",
        "run-state-written@3",
    ];
    for point in points {
        let dir = tempfile::tempdir().unwrap();
        let (_, path) = study(dir.path(), "");
        let status = finetune_command(&path, 0)
            .env(sim_study::crash::CRASH_VAR, point)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "{point}: not killed there ({status})"
        );
        let rerun = finetune_command(&path, 0).output().unwrap();
        assert!(
            rerun.status.success(),
            "{point}: the rerun failed:\n{}",
            String::from_utf8_lossy(&rerun.stderr)
        );
        let run_dir = dir.path().join("study/runs/ham10000/tiny-vit/full/seed-00");
        let state = RunState::read(&run_dir).unwrap().unwrap();
        assert_eq!(
            (state.status, state.last_finished_epoch),
            (Status::Finished, EPOCHS),
            "{point}"
        );
        for epoch in 1..=EPOCHS {
            assert_close(
                &tensor(&epoch_file(dir.path(), 0, epoch), "test.logits"),
                &tensor(&epoch_file(whole.path(), 0, epoch), "test.logits"),
                &format!("{point}: epoch {epoch} against the uninterrupted run"),
            );
        }
        assert_eq!(
            leftovers(&dir.path().join("study")),
            Vec::<PathBuf>::new(),
            "{point}"
        );
        let checkpoints: Vec<_> = std::fs::read_dir(&run_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("checkpoint-"))
            .collect();
        assert_eq!(checkpoints, [format!("checkpoint-{EPOCHS:03}")], "{point}");
    }
}

/// WiSE-FT after the last epoch: α = 0 is θ₀'s backbone (its features are
/// epoch 0's, bit for bit), α = 0.5 lies elsewhere; a kill after the last
/// epoch or between two WiSE-FT files leaves a run that is not finished, and
/// the rerun ends with the files of an uninterrupted run.
#[test]
fn wise_ft_follows_the_last_epoch_and_survives_a_kill() {
    let wise_ft = "[[methods]]\nname = \"full\"\nkind = \"full\"\nwise_ft = [0.0, 0.5]\n";
    let whole = tempfile::tempdir().unwrap();
    let (config, _) = study(whole.path(), wise_ft);
    run::<TrainBackend>(&config, &tiny(0), &Default::default()).unwrap();
    let study_dir = sim_study::StudyDir::new(whole.path().join("study"));
    let final_cls = "probe.medical.final.cls";
    let pretrained = tensor(
        &study_dir.pretrained_eval("ham10000", "tiny-vit"),
        final_cls,
    );
    assert_eq!(
        tensor(&study_dir.wise_ft_eval(&tiny(0), 0.0), final_cls),
        pretrained,
        "α = 0 is the pre-trained backbone"
    );
    let halfway = tensor(&study_dir.wise_ft_eval(&tiny(0), 0.5), final_cls);
    let last = tensor(&epoch_file(whole.path(), 0, EPOCHS), final_cls);
    assert!(
        halfway != pretrained && halfway != last,
        "α = 0.5 is neither end"
    );

    for point in [
        &format!("run-state-written@{EPOCHS}") as &str,
        "wise-ft-written@1",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (_, path) = study(dir.path(), wise_ft);
        let status = finetune_command(&path, 0)
            .env(sim_study::crash::CRASH_VAR, point)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "{point}: not killed there ({status})"
        );
        let run_dir = dir.path().join("study/runs/ham10000/tiny-vit/full/seed-00");
        assert_eq!(
            RunState::read(&run_dir).unwrap().unwrap().status,
            Status::Running,
            "{point}: not finished before WiSE-FT is"
        );
        let rerun = finetune_command(&path, 0).output().unwrap();
        assert!(
            rerun.status.success(),
            "{point}: the rerun failed:\n{}",
            String::from_utf8_lossy(&rerun.stderr)
        );
        assert_eq!(
            RunState::read(&run_dir).unwrap().unwrap().status,
            Status::Finished,
            "{point}"
        );
        let again = sim_study::StudyDir::new(dir.path().join("study"));
        for alpha in [0.0, 0.5] {
            assert_close(
                &tensor(&again.wise_ft_eval(&tiny(0), alpha), "test.logits"),
                &tensor(&study_dir.wise_ft_eval(&tiny(0), alpha), "test.logits"),
                &format!("{point}: α = {alpha} against the uninterrupted run"),
            );
        }
    }
}

#[test]
fn a_second_process_on_the_same_run_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = study(dir.path(), "");
    let mut first = finetune_command(&path, 0)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = dir
        .path()
        .join("study/runs/ham10000/tiny-vit/full/seed-00/.lock");
    let holder = format!("process {} on host", first.id());
    let start = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.contains(&holder)) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the first run never took its lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = finetune_command(&path, 0).output().unwrap();
    let first_still_running = first.try_wait().unwrap().is_none();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!(
            "{} is in use by {holder}",
            dir.path()
                .join("study/runs/ham10000/tiny-vit/full/seed-00")
                .display()
        )),
        "{stderr}"
    );
    assert!(
        first_still_running,
        "the first run ended before the second was refused: the lock was not tested"
    );
    assert!(
        first.wait().unwrap().success(),
        "the first run was disturbed"
    );
    let log = std::fs::read_to_string(
        dir.path()
            .join("study/runs/ham10000/tiny-vit/full/seed-00/train.log"),
    )
    .unwrap();
    assert_eq!(
        log.matches("epoch 0 evaluation written").count(),
        1,
        "one process wrote the log:\n{log}"
    );
}

/// The study's identity: a moved study folder is the same study; a replaced
/// backbone file is refused, naming the file and both hashes; a backbone
/// file with a NaN is refused at load, naming the tensor.
#[test]
fn a_study_knows_its_backbone_file_and_not_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _) = study(dir.path(), "");
    let device = Default::default();
    run::<TrainBackend>(&config, &tiny(0), &device).unwrap();
    std::fs::rename(dir.path().join("study"), dir.path().join("moved")).unwrap();
    config.study.output_dir = Some(dir.path().join("moved"));
    assert_eq!(
        run::<TrainBackend>(&config, &tiny(0), &device).unwrap(),
        Outcome::AlreadyFinished
    );

    let file = dir.path().join("backbone.safetensors");
    let sha = |p: &Path| sim_study::fingerprint::sha256_file(p).unwrap();
    let before = sha(&file);
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&0.25f32.to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    let msg = run::<TrainBackend>(&config, &tiny(1), &device)
        .unwrap_err()
        .to_string();
    for part in [file.display().to_string(), before, sha(&file)] {
        assert!(msg.contains(&part), "{part} not in: {msg}");
    }
    assert!(
        !dir.path()
            .join("moved/runs/ham10000/tiny-vit/full/seed-01/run.toml")
            .exists()
    );

    bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    let msg = run::<TrainBackend>(&config, &tiny(1), &device)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&file.display().to_string()) && msg.contains("non-finite"),
        "{msg}"
    );
}

#[test]
fn an_input_size_the_patch_does_not_divide_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _) = study(dir.path(), "");
    config.backbones[0].input_size = 36;
    let msg = run::<TrainBackend>(&config, &tiny(0), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("input size 36 is not a multiple of the patch size 8"),
        "{msg}"
    );
    assert!(
        !dir.path().join("study").exists(),
        "written before the check"
    );
}

#[test]
fn a_finished_study_on_a_read_only_mount_can_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _) = study(dir.path(), "");
    config.training.epochs = 1;
    run::<TrainBackend>(&config, &tiny(0), &Default::default()).unwrap();
    let ro = dir.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    let test = "a_finished_study_on_a_read_only_mount_can_be_read";
    let Some(_mount) =
        sim_study::test_mount::Mount::read_only(&dir.path().join("study"), &ro, test)
    else {
        return;
    };
    config.study.output_dir = Some(ro.clone());
    let summary: String = sim_train::data::prepare::data_stage(&config)
        .unwrap()
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert!(
        summary.contains("split reused") && !summary.contains("built"),
        "{summary}"
    );
    assert_eq!(
        run::<TrainBackend>(&config, &tiny(0), &Default::default()).unwrap(),
        Outcome::AlreadyFinished
    );
}
