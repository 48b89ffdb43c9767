//! Pre-training our own backbones (`sim-train pretrain`), at tiny sizes on a
//! 2-class natural folder the test writes: the checkpoint loads back through
//! the ordinary loader with every key used; the learning curve's epochs keep
//! snapshots a zoo's backbones name; a kill at each step between two writes
//! resumes to the weights (and snapshots) of an uninterrupted run; a collapsing
//! self-distillation and a diverging loss stop with an error naming the
//! epoch, the state marked failed.

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use sim_study::StudyConfig;
use sim_study::layout::{pretrain_dir, pretrained_model as model_file, pretrained_snapshot};
use sim_study::pretrain_state::PretrainState;
use sim_study::run_state::Status;
use sim_train::backend::TrainBackend;
use sim_train::model::naming::Naming;
use sim_train::model::{LoadOptions, load};
use sim_train::pretrain::{Outcome, run};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const SUPERVISED: &str =
    r#"objective = "supervised", epochs = 3, width = 16, depth = 2, patch = 8, batch_size = 8"#;
const DINO: &str = r#"objective = "dino", epochs = 3, width = 16, depth = 2, patch = 8, batch_size = 8, dino = { local_crops = 2, local_size = 8, out_dim = 32, hidden_dim = 16, bottleneck_dim = 8 }"#;

/// Writes the natural images once per folder and a config pre-training one
/// backbone `net` with `pretrain`; returns the config's path.
fn study(dir: &Path, pretrain: &str) -> PathBuf {
    let nette = dir.join("nette");
    if !nette.exists() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (split, n) in [("train", 12), ("val", 4)] {
            for (k, class) in ["n01", "n02"].iter().enumerate() {
                let folder = nette.join(format!("{split}/{class}"));
                std::fs::create_dir_all(&folder).unwrap();
                for j in 0..n {
                    let base = [40 + k as u8 * 150, 90, 200 - k as u8 * 150];
                    let img = RgbImage::from_fn(24, 20, |x, _| {
                        Rgb(base.map(|v| {
                            v.saturating_add(rng.random_range(0..50))
                                .saturating_add(x as u8)
                        }))
                    });
                    img.save(folder.join(format!("{j}.png"))).unwrap();
                }
            }
        }
    }
    let text = format!(
        r#"
[study]
name = "tiny"
output_dir = "{out}"
seeds = [0]
[datasets.medical]
kind = "ham10000"
root = "{dir}/no-medical-data-needed"
[datasets.natural]
kind = "image-folder"
root = "{nette}"
[[backbones]]
name = "net"
input_size = 16
heads = 2
pretrain = {{ {pretrain} }}
"#,
        out = dir.join("studies/tiny").display(),
        dir = dir.display(),
        nette = nette.display()
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn config(path: &Path) -> StudyConfig {
    StudyConfig::from_file(path).unwrap()
}

fn folder(config: &StudyConfig) -> PathBuf {
    let b = &config.backbones[0];
    pretrain_dir(config, b, b.pretrain().unwrap())
}

fn pretrain_command(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sim-train"));
    command
        .args(["pretrain", "--backbone", "net", "--config"])
        .arg(config);
    command
}

/// Every tensor of a safetensors file as f64, by name.
fn weights(path: &Path) -> Vec<(String, Vec<f64>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f64>)> = file
        .tensors()
        .into_iter()
        .map(
            |(name, view)| match sim_study::tensors::decode(&view).unwrap().1 {
                sim_study::tensors::Values::Float(v) => (name, v),
                _ => panic!("{name}: not a float tensor"),
            },
        )
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Same seed, same weights, to the bit: a resumed pre-training does the
/// same float operations in the same order as an unbroken one (a batch's
/// parts added in a fixed order). A gradient term lost to a race between
/// the parts' threads (`train::batch_parts`) moved weights by 1e-5 to 7e-4.
fn assert_same_weights(a: &Path, b: &Path) {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(
        a.iter().map(|t| &t.0).collect::<Vec<_>>(),
        b.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let differing = x.iter().zip(y).filter(|(p, q)| p != q).count();
        assert!(differing == 0, "{name}: {differing} values differ");
    }
}

#[test]
fn both_objectives_write_a_timm_checkpoint_the_ordinary_loader_reads_whole() {
    for (objective, pretrain) in [("supervised", SUPERVISED), ("dino", DINO)] {
        let dir = tempfile::tempdir().unwrap();
        let path = study(dir.path(), pretrain);
        let config = config(&path);
        let device = Default::default();
        let Outcome::Finished {
            model,
            resumed_at: 0,
        } = run::<TrainBackend>(&config, "net", &device).unwrap()
        else {
            panic!("{objective}: not a fresh run")
        };
        assert_eq!(model, model_file(&folder(&config)));
        assert!(
            folder(&config)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{objective}-"))
        );
        // Strict loading: a tensor the model does not use is an error.
        let b = &config.backbones[0];
        let loaded = load::<TrainBackend>(&model, &LoadOptions::for_backbone(b), &device).unwrap();
        assert_eq!(loaded.naming, Naming::Timm, "{objective}");
        assert!(
            loaded.ignored.is_empty() && loaded.model.head.is_none(),
            "{objective}: the backbone alone"
        );
        assert_eq!(
            (loaded.model.width(), loaded.model.depth()),
            (16, 2),
            "{objective}"
        );
        // The heads are in the file: `sim-train extract` needs no --heads (width / 64 would be 0).
        let plain = load::<TrainBackend>(&model, &LoadOptions::new(16), &device).unwrap();
        assert_eq!(plain.model.blocks[0].heads, 2, "{objective}");
        let msg = load::<TrainBackend>(
            &model,
            &LoadOptions {
                heads: Some(4),
                ..LoadOptions::new(16)
            },
            &device,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            msg.contains("2 attention heads recorded in the file") && msg.contains("4 asked for"),
            "{msg}"
        );
        assert_eq!(config.backbone_file(b), model, "fine-tuning finds it");
        let state = PretrainState::read(&folder(&config)).unwrap().unwrap();
        assert_eq!(
            (state.status, state.last_finished_epoch, state.history.len()),
            (Status::Finished, 3, 3),
            "{objective}"
        );
        assert!(
            state
                .history
                .iter()
                .all(|h| h.loss.is_finite() && h.images_per_s > 0.0)
        );
        assert_eq!(
            state.history[0].teacher_entropy.is_some(),
            objective == "dino"
        );
        // Trained: not the initialisation any more (a file of objective `none`).
        let init_dir = tempfile::tempdir().unwrap();
        let none = config_of_none(init_dir.path());
        run::<TrainBackend>(&none, "net", &device).unwrap();
        let (trained, init) = (weights(&model), weights(&model_file(&folder(&none))));
        assert_eq!(trained.len(), init.len());
        assert!(
            trained.iter().zip(&init).any(|(a, b)| a.1 != b.1),
            "{objective}: the weights moved"
        );
        // Done once: the second call does nothing.
        assert!(matches!(
            run::<TrainBackend>(&config, "net", &device).unwrap(),
            Outcome::AlreadyFinished { .. }
        ));
    }
}

#[test]
fn the_learning_curve_keeps_snapshots_that_a_zoo_backbone_names() {
    let dir = tempfile::tempdir().unwrap();
    let pretrain = format!("{SUPERVISED}, knn_every = 1");
    let path = study(dir.path(), &pretrain);
    let device = Default::default();
    let single = config(&path);
    run::<TrainBackend>(&single, "net", &device).unwrap();
    let f = folder(&single);
    let (first, second) = (pretrained_snapshot(&f, 1), pretrained_snapshot(&f, 2));
    assert!(first.exists() && second.exists());
    assert!(
        !pretrained_snapshot(&f, 3).exists(),
        "the last epoch is model.safetensors"
    );
    let b = &single.backbones[0];
    let loaded = load::<TrainBackend>(&second, &LoadOptions::for_backbone(b), &device).unwrap();
    assert!(loaded.ignored.is_empty() && loaded.model.head.is_none());
    let (snapshot, last) = (weights(&second), weights(&model_file(&f)));
    assert!(
        snapshot.iter().zip(&last).any(|(a, b)| a.1 != b.1),
        "epoch 3 moved the weights"
    );
    // A zoo: the same pre-training's model after epoch 1 as a second backbone.
    let text = std::fs::read_to_string(&path).unwrap()
        + &format!(
            "[[backbones]]\nname = \"net-e1\"\ninput_size = 16\nheads = 2\npretrain_epoch = 1\n\
             pretrain = {{ {pretrain} }}\n"
        );
    std::fs::write(&path, text).unwrap();
    let zoo = config(&path);
    assert_eq!(zoo.backbone_file(&zoo.backbones[1]), first);
    assert!(matches!(
        run::<TrainBackend>(&zoo, "net-e1", &device).unwrap(),
        Outcome::AlreadyFinished { .. }
    ));
    // A folder that finished without the snapshot (made before they were
    // kept) is refused, naming the file and the backbone.
    std::fs::remove_file(&first).unwrap();
    let e = run::<TrainBackend>(&zoo, "net", &device)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("finished without keeping") && e.contains("(backbone `net-e1`)"),
        "{e}"
    );
    assert!(e.contains("model-epoch-001.safetensors"), "{e}");
}

/// The random initialisation of the same shape and seed.
fn config_of_none(dir: &Path) -> StudyConfig {
    config(&study(
        dir,
        r#"objective = "none", width = 16, depth = 2, patch = 8"#,
    ))
}

#[test]
fn a_kill_between_any_two_writes_resumes_to_the_uninterrupted_weights() {
    for pretrain in [DINO, SUPERVISED] {
        // Every epoch on the learning curve: snapshots after epochs 1 and 2.
        let pretrain = &format!("{pretrain}, knn_every = 1");
        let whole = tempfile::tempdir().unwrap();
        let path = study(whole.path(), pretrain);
        assert!(pretrain_command(&path).status().unwrap().success());
        let reference = model_file(&folder(&config(&path)));
        for point in [
            "checkpoint-written@2",
            "pretrain-state-written@1",
            "pretrain-state-written@3",
            "pretrain-model-written",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = study(dir.path(), pretrain);
            let status = pretrain_command(&path)
                .env(sim_study::crash::CRASH_VAR, point)
                .status()
                .unwrap();
            assert_eq!(status.signal(), Some(9), "{point}: killed");
            let out = pretrain_command(&path).output().unwrap();
            assert!(
                out.status.success(),
                "{point}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let f = folder(&config(&path));
            assert_same_weights(&model_file(&f), &reference);
            for epoch in [1, 2] {
                let reference = pretrained_snapshot(reference.parent().unwrap(), epoch);
                assert_same_weights(&pretrained_snapshot(&f, epoch), &reference);
            }
            let left: Vec<String> = std::fs::read_dir(folder(&config(&path)))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".partial") || n.contains(".tmp"))
                .collect();
            assert!(left.is_empty(), "{point}: {left:?} left behind");
        }
    }
}

#[test]
fn a_collapsing_self_distillation_stops_naming_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    // A teacher this hot outputs the uniform distribution: collapse.
    let path = study(
        dir.path(),
        &DINO.replace("out_dim = 32", "out_dim = 32, teacher_temp = 1000.0"),
    );
    let config = config(&path);
    let msg = run::<TrainBackend>(&config, "net", &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("collapsed in epoch 1") && msg.contains("uniform"),
        "{msg}"
    );
    let state = PretrainState::read(&folder(&config)).unwrap().unwrap();
    assert_eq!(state.status, Status::Failed);
    assert!(state.message.unwrap().contains("epoch 1"));
    assert!(!model_file(&folder(&config)).exists());
}

#[test]
fn a_diverging_loss_marks_the_pretraining_failed() {
    let dir = tempfile::tempdir().unwrap();
    let path = study(
        dir.path(),
        &SUPERVISED.replace("batch_size = 8", "batch_size = 8, lr = 1e30"),
    );
    let config = config(&path);
    let msg = run::<TrainBackend>(&config, "net", &Default::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("loss") && msg.contains("at epoch"), "{msg}");
    let state = PretrainState::read(&folder(&config)).unwrap().unwrap();
    assert_eq!(state.status, Status::Failed);
}
