//! `cargo xtask reproduce` as users run it, on the real data (`SIM_DATA_DIR`;
//! each test prints a SKIPPED line without it): the CI study with 1 and 2
//! jobs, the smoke study from data to report, a sweep killed at any moment, a
//! run killed alone, and a failing run among good ones; and on a fresh
//! machine, with the data fetched from stand-ins for its hosts.

use polars::prelude::*;
use sim_study::config::{DatasetId, RunId};
use sim_study::real_data::real_data_dir;
use sim_study::run_state::RunState;
use sim_study::tensors::{Values, decode};
use sim_study::{StudyConfig, StudyDir};
use sim_train::CpuBackend;
use sim_train::data::batch::Batcher;
use sim_train::data::prepare::PreparedDataset;
use sim_train::data::transform::Normalisation;
use sim_train::model::{LoadOptions, load};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config_path(name: &str) -> PathBuf {
    root().join("configs").join(name)
}

fn reproduce(config: &Path, output: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(["reproduce", "--config"])
        .arg(config)
        .arg("--output")
        .arg(output)
        .args(extra);
    command
}

fn run(mut command: Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "reproduce failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn epochs(study: &Path) -> DataFrame {
    read_table(study, sim_study::tables::file::EPOCHS)
}

fn read_table(study: &Path, name: &str) -> DataFrame {
    let path = StudyDir::new(study).tables_dir().join(name);
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

fn f64s(frame: &DataFrame, name: &str) -> Vec<f64> {
    frame
        .column(name)
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect()
}

/// Same runs, same numbers: the per-epoch tables of two studies agree to
/// 1e-5 (burn's CPU reductions can split differently under load).
fn assert_same_tables(a: &Path, b: &Path) {
    let (ta, tb) = (epochs(a), epochs(b));
    assert_eq!(ta.height(), tb.height());
    assert_eq!(ta.column("seed").unwrap(), tb.column("seed").unwrap());
    assert_eq!(ta.column("epoch").unwrap(), tb.column("epoch").unwrap());
    for name in [
        "accuracy",
        "balanced_accuracy",
        "ece",
        "similarity",
        "knn_top1",
    ] {
        for (x, y) in f64s(&ta, name).iter().zip(f64s(&tb, name)) {
            assert!((x - y).abs() <= 1e-5, "{name}: {x} vs {y}");
        }
    }
}

/// The CI study with one job (a run on both cores: its batches cut in two
/// parts) and with two (a core each: batches whole, by default): with
/// `training.batch_parts` fixed, the same numbers either way.
#[test]
fn ci_study_gives_the_same_tables_with_one_and_two_jobs() {
    let Some(_) = real_data_dir(
        "ham10000",
        "ci_study_gives_the_same_tables_with_one_and_two_jobs",
    ) else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let (one, two) = (out.path().join("one"), out.path().join("two"));
    let ci = out.path().join("ci.toml");
    let text = std::fs::read_to_string(config_path("ci.toml"))
        .unwrap()
        .replace(
            "checkpoint = \"../",
            &format!("checkpoint = \"{}/", root().display()),
        )
        .replace("[training]\n", "[training]\nbatch_parts = 2\n");
    assert!(text.contains("batch_parts = 2"));
    std::fs::write(&ci, text).unwrap();
    run(reproduce(&ci, &one, &["--jobs", "1"]));
    run(reproduce(&ci, &two, &["--jobs", "2"]));
    assert_same_tables(&one, &two);
    // Bit for bit, not only to the tolerance: the parts do not depend on the threads.
    for name in ["similarity", "ece"] {
        assert_eq!(
            f64s(&epochs(&one), name),
            f64s(&epochs(&two), name),
            "{name}"
        );
    }

    let table = epochs(&one);
    let epoch: Vec<u32> = table
        .column("epoch")
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(
        epoch,
        [0, 1, 2, 0, 1, 2],
        "two seeds, epoch 0 and two epochs each"
    );
    let (balanced, similarity) = (
        f64s(&table, "balanced_accuracy"),
        f64s(&table, "similarity"),
    );
    for (i, e) in epoch.iter().enumerate() {
        if *e == 0 {
            assert!(
                (similarity[i] - 1.0).abs() < 1e-9,
                "epoch 0 is the backbone itself"
            );
        } else {
            assert!(similarity[i] < 1.0);
        }
        if *e == 2 {
            // Chance is 1/7 ≈ 0.14 over the seven classes.
            assert!(
                balanced[i] > 0.25,
                "balanced accuracy {} after 2 epochs",
                balanced[i]
            );
        }
    }

    // A second call finds everything done and changes nothing.
    let epochs_file = StudyDir::new(&one)
        .tables_dir()
        .join(sim_study::tables::file::EPOCHS);
    let before = std::fs::read(&epochs_file).unwrap();
    let again = run(reproduce(&ci, &one, &[]));
    assert!(
        String::from_utf8_lossy(&again.stdout)
            .contains("runs: 2 finished before, 0 finished now, 0 failed")
    );
    assert_eq!(std::fs::read(&epochs_file).unwrap(), before);

    // Epoch 0's features are the pre-trained backbone's: recompute a few.
    let mut config = StudyConfig::from_file(&ci).unwrap();
    config.study.output_dir = Some(one.clone());
    let study = StudyDir::new(&one);
    let bytes = std::fs::read(study.pretrained_eval("ham10000", "vit-tiny")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (shape, Values::Float(stored)) =
        decode(&file.tensor("probe.medical.final.cls").unwrap()).unwrap()
    else {
        panic!()
    };
    let device = Default::default();
    let backbone = &config.backbones[0];
    let model = load::<CpuBackend>(
        &config.backbone_file(backbone),
        &LoadOptions::for_backbone(backbone),
        &device,
    )
    .unwrap()
    .model;
    let mut medical =
        PreparedDataset::load(&config, &study, &DatasetId::Medical("ham10000".into())).unwrap();
    let cache = medical.image_cache(&study, 32).unwrap();
    let labels: Vec<usize> = medical.dataset.samples.iter().map(|s| s.label).collect();
    let (mean, std) = sim_study::config::Family::Vit.normalisation().unwrap();
    let batcher = Batcher {
        cache: &cache,
        labels: &labels,
        size: 32,
        norm: Normalisation { mean, std },
    };
    let first: Vec<usize> = medical.test_indices().into_iter().take(4).collect();
    let out = model.forward(
        batcher
            .eval_host(&first, first.len())
            .to_device::<CpuBackend>(&device)
            .images,
    );
    let (cls, _) = out.cls_and_patch_mean(&out.final_tokens);
    let ours: Vec<f32> = cls.into_data().to_vec().unwrap();
    let width = shape[1];
    for (a, b) in ours.iter().zip(&stored[..4 * width]) {
        assert!(
            (*a as f64 - b).abs() <= 2e-3 * b.abs().max(1.0),
            "{a} vs stored f16 {b}"
        );
    }
}

/// `configs/quick.toml`, the first look, is the default study with fewer
/// seeds: the same data, backbones (so the same pre-trained files, made
/// once for both), training and evaluation.
#[test]
fn the_quick_study_is_the_default_one_with_fewer_seeds() {
    let read = |name: &str| sim_study::StudyConfig::from_file(&config_path(name)).unwrap();
    let (cpu, mut quick) = (read("cpu.toml"), read("quick.toml"));
    assert!(
        quick.study.seeds.len() < cpu.study.seeds.len()
            && quick
                .study
                .seeds
                .iter()
                .all(|s| cpu.study.seeds.contains(s))
    );
    assert_ne!(
        quick.output_dir(),
        cpu.output_dir(),
        "a study folder of its own"
    );
    quick.study = cpu.study.clone();
    assert_eq!(
        quick, cpu,
        "quick.toml differs from cpu.toml beyond [study]"
    );
}

#[test]
fn plan_says_what_the_study_will_take_and_runs_nothing() {
    let Some(_) = real_data_dir(
        "ham10000",
        "plan_says_what_the_study_will_take_and_runs_nothing",
    ) else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let study = out.path().join("ci");
    let output = run(reproduce(&config_path("ci.toml"), &study, &["--plan"]));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("vit-tiny") && text.contains("total: 2 runs, 5 evaluations"),
        "{text}"
    );
    assert!(
        !study.join("runs").exists() && !study.join("cache").exists(),
        "a plan trains nothing and builds no cache"
    );
}

#[test]
fn a_bad_input_size_stops_the_study_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["ham", "nette"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let text = std::fs::read_to_string(config_path("ci.toml"))
        .unwrap()
        .replace("input_size = 32", "input_size = 36") // the tiny ViT's patch is 8
        .replace(
            "root = \"ham10000\"",
            &format!("root = \"{}\"", dir.path().join("ham").display()),
        )
        .replace(
            "root = \"imagenette\"",
            &format!("root = \"{}\"", dir.path().join("nette").display()),
        )
        .replace(
            "checkpoint = \"../",
            &format!("checkpoint = \"{}/", root().display()),
        );
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, text).unwrap();
    let output = reproduce(&config, &dir.path().join("study"), &[])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("backbones `vit-tiny`")
            && stderr.contains("not a multiple of the patch size 8"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("study").exists(),
        "the study folder was written before the check"
    );
}

/// A `SIM_BLAS` naming a library that does not load stops `reproduce` at
/// once with an error naming it (the tables stage would have panicked on it
/// after every run).
#[test]
fn a_sim_blas_that_does_not_load_stops_the_study_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("study");
    let output = reproduce(&config_path("smoke.toml"), &study, &[])
        .env("SIM_BLAS", "/nonexistent/libblas.so")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("SIM_BLAS=/nonexistent/libblas.so") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(
        !study.exists(),
        "the study folder was written before the check"
    );
}

/// The smoke study from nothing to its report: every figure (but WiSE-FT's:
/// no method asks for it; nor the learning curves: its backbones are
/// files), table and the report are written; a second call
/// keeps them.
#[test]
fn smoke_study_runs_from_data_to_report() {
    let Some(_) = real_data_dir("ham10000", "smoke_study_runs_from_data_to_report") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let study = out.path().join("smoke");
    let output = run(reproduce(
        &config_path("smoke.toml"),
        &study,
        &["--jobs", "2"],
    ));
    // Not a terminal: plain lines, no bars, a line per run start and end.
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !printed.contains(['\r', '\x1b']),
        "control characters:\n{printed}"
    );
    let lines = |what: &str| printed.lines().filter(|l| l.contains(what)).count();
    assert_eq!(lines(": started"), 4, "{printed}");
    assert_eq!(lines(": finished in "), 4, "{printed}");
    assert!(printed.contains("runs: 4 done, 0 running, 0 failed, 0 left"));
    let figures = sim_plot::figures_dir(&study);
    // Two backbones: too few candidates for model selection's figures.
    for name in sim_plot::figures::NAMES.iter().filter(|n| {
        !["fig3_attention", "wise_ft_path", "pretrain_knn"].contains(*n)
            && !n.starts_with("selection_")
    }) {
        for ext in ["png", "svg"] {
            assert!(
                figures.join(format!("{name}.{ext}")).exists(),
                "{name}.{ext}"
            );
        }
    }
    assert!(
        !figures.join("wise_ft_path.png").exists(),
        "no method asks for WiSE-FT"
    );
    assert!(!figures.join("selection_tau.png").exists());
    let report = std::fs::read_to_string(study.join("report.md")).unwrap();
    assert!(
        report.contains("No (data set, method) of this study has 3 backbones with a finished run"),
        "model selection says why it has nothing"
    );
    assert!(
        !figures.join("pretrain_knn.png").exists(),
        "no backbone pre-trained here: no learning curves"
    );
    for backbone in ["vit-tiny", "dinov2-tiny"] {
        assert!(
            figures
                .join(format!("fig3_attention_{backbone}.png"))
                .exists(),
            "fig3 of {backbone}"
        );
    }
    for table in ["table1.md", "table1.csv", "table2.md", "table2.csv"] {
        assert!(
            StudyDir::new(&study).tables_dir().join(table).exists(),
            "{table}"
        );
    }
    let report = std::fs::read_to_string(sim_plot::report_path(&study)).unwrap();
    assert!(
        !report.contains("Left out"),
        "every figure has its data:\n{report}"
    );
    assert!(report.contains("## The paper's three findings"));
    // Its validation split: a temperature fitted for every run.
    assert!(
        report.contains("- `vit-tiny` (2 runs): ECE ")
            && report.contains("- `dinov2-tiny` (2 runs): ECE "),
        "{report}"
    );
    assert!(report.contains("| `mel` ("), "{report}");
    assert!(
        report.contains("one-sided permutation test p = ")
            && report.contains("over its test images"),
        "{report}"
    );
    let before = std::fs::metadata(sim_plot::report_path(&study))
        .unwrap()
        .modified()
        .unwrap();
    run(reproduce(&config_path("smoke.toml"), &study, &[]));
    assert_eq!(
        std::fs::metadata(sim_plot::report_path(&study))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
}

/// On a terminal (a pseudo-terminal made by `script`), the sweep draws its
/// bars, and its last screen says every run finished.
#[test]
fn on_a_terminal_the_sweep_draws_bars_and_ends_saying_every_run_finished() {
    let Some(_) = real_data_dir(
        "ham10000",
        "on_a_terminal_the_sweep_draws_bars_and_ends_saying_every_run_finished",
    ) else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let study = out.path().join("smoke");
    let command = format!(
        "{} reproduce --config {} --output {} --jobs 2",
        env!("CARGO_BIN_EXE_xtask"),
        config_path("smoke.toml").display(),
        study.display()
    );
    let Ok(output) = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("COLUMNS", "120")
        .env("LINES", "40")
        .output()
    else {
        println!(
            "SKIPPED on_a_terminal_the_sweep_draws_bars_and_ends_saying_every_run_finished: \
             no `script` (util-linux) to make a pseudo-terminal"
        );
        return;
    };
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(screen.contains('\x1b'), "no bars drawn:\n{screen}");
    assert!(screen.contains("runs "), "{screen}");
    assert!(
        screen.contains("4/4 (4 done, 0 running, 0 failed, 0 left"),
        "{screen}"
    );
    assert!(sim_plot::report_path(&study).exists());
}

/// The pid that holds a run folder's lock, from its lock file.
fn holder(run_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(run_dir.join(".lock")).ok()?;
    text.strip_prefix("process ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for this purpose: its `stat` state is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{what} never happened"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A rebuild while a study runs (cargo writes the binary anew under the same
/// name) must not stop the sweep: its runs are started from the program
/// that runs it.
#[test]
fn a_rebuild_during_the_sweep_does_not_stop_it() {
    let Some(_) = real_data_dir("ham10000", "a_rebuild_during_the_sweep_does_not_stop_it") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let program = out.path().join("bin/xtask");
    std::fs::create_dir_all(program.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_xtask"), &program).unwrap();
    let pause = out.path().join("paused");
    let mut command = Command::new(&program);
    command.args(reproduce(&config_path("smoke.toml"), &out.path().join("smoke"), &[]).get_args());
    command.env(
        sim_study::crash::PAUSE_VAR,
        format!("sweep-starting:{}", pause.display()),
    );
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the sweep's pause", || pause.exists());
    // What cargo does: a new file under the old name.
    std::fs::remove_file(&program).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_xtask"), &program).unwrap();
    std::fs::remove_file(&pause).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `kill -9` of the sweep in the middle of its runs, then of one run alone:
/// each time the same command resumes, and the study ends with the tables
/// of an uninterrupted sweep.
#[test]
fn a_killed_sweep_or_run_resumes_to_the_tables_of_an_uninterrupted_one() {
    let Some(_) = real_data_dir(
        "ham10000",
        "a_killed_sweep_or_run_resumes_to_the_tables_of_an_uninterrupted_one",
    ) else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let (whole, killed) = (out.path().join("whole"), out.path().join("killed"));
    run(reproduce(&config_path("smoke.toml"), &whole, &[]));

    let run_dir = |backbone: &str, seed| {
        StudyDir::new(&killed).run_dir(&RunId {
            dataset: "ham10000".into(),
            backbone: backbone.into(),
            method: "full".into(),
            seed,
        })
    };
    let runs = |seed: u64| run_dir("vit-tiny", seed);
    let mut sweep = reproduce(&config_path("smoke.toml"), &killed, &["--jobs", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("an epoch of seed 0", || {
        RunState::read(&runs(0))
            .ok()
            .flatten()
            .is_some_and(|s| s.last_finished_epoch >= 1)
    });
    let workers: Vec<i32> = [0, 1].iter().filter_map(|&s| holder(&runs(s))).collect();
    sweep.kill().unwrap(); // SIGKILL
    sweep.wait().unwrap();
    wait_for("the runs dying with their sweep", || {
        workers.iter().all(|&p| !alive(p))
    });

    // Now one run alone: its sweep reports it failed and the others finish.
    let sweep = reproduce(&config_path("smoke.toml"), &killed, &["--jobs", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let dino = run_dir("dinov2-tiny", 0);
    wait_for("a dinov2-tiny run process", || {
        holder(&dino).is_some_and(|p| p != sweep.id() as i32 && alive(p))
    });
    let pid = holder(&dino).unwrap();
    // Safety: kill(2) of a process this test's sweep started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let output = sweep.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        assert!(
            stderr.contains("ham10000/dinov2-tiny/full seed 0") && stderr.contains("sweep.log"),
            "{stderr}"
        );
    } // (the run may have finished before the kill reached it)

    run(reproduce(&config_path("smoke.toml"), &killed, &[]));
    assert_same_tables(&whole, &killed);
}

/// The smoke config, written into `dir` with absolute backbone paths, a
/// backbone entry and sections added.
fn smoke_elsewhere(dir: &Path, backbone: &str, sections: &str) -> PathBuf {
    let text = std::fs::read_to_string(config_path("smoke.toml"))
        .unwrap()
        .replace(
            "checkpoint = \"../",
            &format!("checkpoint = \"{}/", root().display()),
        );
    // A [[backbones]] entry goes before [training]: a TOML table ends at the next header.
    let (head, tail) = text.split_once("[training]").unwrap();
    let path = dir.join("smoke.toml");
    std::fs::write(
        &path,
        format!("{head}{backbone}\n[training]{tail}\n{sections}"),
    )
    .unwrap();
    path
}

/// The smoke study with a second medical data set, PneumoniaMNIST (400 of
/// its chest X-rays, 28 px greyscale): every run of each data set reads only
/// its own split and cache, epoch 0 on the natural images is made once per
/// backbone, and tables and report carry both data sets.
#[test]
fn two_medical_data_sets_run_in_one_study_and_keep_apart() {
    let test = "two_medical_data_sets_run_in_one_study_and_keep_apart";
    let Some(_) = real_data_dir("ham10000", test) else {
        return;
    };
    let Some(_) = real_data_dir("medmnist/pneumoniamnist.npz", test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let second = "[[datasets.medical]]\nkind = \"medmnist\"\nroot \
        = \"medmnist/pneumoniamnist.npz\"\nmax_samples = 400\n\n[datasets.natural]";
    let text = std::fs::read_to_string(config_path("smoke.toml"))
        .unwrap()
        .replace(
            "checkpoint = \"../",
            &format!("checkpoint = \"{}/", root().display()),
        )
        .replace("[datasets.medical]", "[[datasets.medical]]")
        .replace("[datasets.natural]", second);
    let config_file = dir.path().join("two.toml");
    std::fs::write(&config_file, text).unwrap();
    let study_dir = dir.path().join("study");
    run(reproduce(&config_file, &study_dir, &["--jobs", "2"]));
    let study = StudyDir::new(&study_dir);
    let mut config = StudyConfig::from_file(&config_file).unwrap();
    config.study.output_dir = Some(study_dir.clone());
    assert_eq!(config.medical_names(), ["ham10000", "pneumoniamnist"]);

    // Each data set's split holds its own images only, and its runs used them.
    let ham =
        PreparedDataset::load(&config, &study, &DatasetId::Medical("ham10000".into())).unwrap();
    let xray = PreparedDataset::load(
        &config,
        &study,
        &DatasetId::Medical("pneumoniamnist".into()),
    )
    .unwrap();
    assert!(ham.split_reused && xray.split_reused && ham.split_file != xray.split_file);
    assert!(
        ham.dataset
            .samples
            .iter()
            .all(|s| s.id.starts_with("ISIC_"))
    );
    assert!(
        xray.dataset
            .samples
            .iter()
            .all(|s| s.id.starts_with("train/")
                || s.id.starts_with("val/")
                || s.id.starts_with("test/"))
    );
    for (dataset, prepared, classes) in [("ham10000", &ham, 7), ("pneumoniamnist", &xray, 2)] {
        for backbone in ["vit-tiny", "dinov2-tiny"] {
            let file =
                sim_study::eval_file::EvalFile::open(&study.pretrained_eval(dataset, backbone))
                    .unwrap();
            let (shape, _) = file.decoded(sim_study::eval_file::TEST_LOGITS).unwrap();
            assert_eq!(
                shape,
                [prepared.test_indices().len(), classes],
                "{dataset}/{backbone}"
            );
            assert_eq!(file.metadata().unwrap().dataset.as_deref(), Some(dataset));
            let state = RunState::read(&study.run_dir(&RunId {
                dataset: dataset.into(),
                backbone: backbone.into(),
                method: "full".into(),
                seed: 1,
            }))
            .unwrap()
            .unwrap();
            assert_eq!(state.dataset, dataset);
        }
    }
    let caches: Vec<String> = std::fs::read_dir(study_dir.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for stem in ["medical-ham10000-", "medical-pneumoniamnist-", "natural-"] {
        assert_eq!(
            caches.iter().filter(|c| c.starts_with(stem)).count(),
            2,
            "{stem}: one cache per input size: {caches:?}"
        );
    }
    // The natural images' epoch 0: made once per backbone, the same in both data sets' files.
    for backbone in ["vit-tiny", "dinov2-tiny"] {
        assert!(study.natural_eval(backbone).exists());
        let bank = |dataset| {
            let file =
                sim_study::eval_file::EvalFile::open(&study.pretrained_eval(dataset, backbone))
                    .unwrap();
            file.raw_tensors()
                .into_iter()
                .find(|t| t.name == sim_study::eval_file::KNN_BANK)
                .unwrap()
                .bytes
        };
        assert_eq!(bank("ham10000"), bank("pneumoniamnist"), "{backbone}");
    }

    let table = epochs(&study_dir);
    let datasets = table.column("dataset").unwrap().str().unwrap().clone();
    for name in ["ham10000", "pneumoniamnist"] {
        let rows = (0..datasets.len())
            .filter(|&i| datasets.get(i) == Some(name))
            .count();
        assert_eq!(
            rows,
            2 * 2 * 3,
            "{name}: 2 backbones × 2 seeds × epochs 0–2"
        );
    }
    let report = std::fs::read_to_string(sim_plot::report_path(&study_dir)).unwrap();
    let findings = report
        .split("## The paper's three findings")
        .nth(1)
        .unwrap();
    for per_dataset in [
        "   - `ham10000`: ",
        "   - `pneumoniamnist`: ",
        "The data sets ",
    ] {
        assert_eq!(
            findings.matches(per_dataset).count(),
            3,
            "{per_dataset}: {findings}"
        );
    }
    assert!(
        sim_plot::figures_dir(&study_dir)
            .join("fig3_attention_pneumoniamnist_vit-tiny.png")
            .exists()
    );
}

/// The smoke study with three fine-tuning methods, full, LP-FT (one epoch
/// of linear probing of two) with WiSE-FT at α = 0 and 0.5, and rep-sim:
/// each method's runs in their own folders, a `method` column, an LP-FT
/// backbone that does not move in its probe epoch (similarity 1 after
/// epoch 1) and does after it, WiSE-FT's α = 0 backbone exactly θ₀'s
/// (similarity 1), and the report's method and WiSE-FT sections.
#[test]
fn methods_are_an_axis_and_lp_ft_keeps_the_backbone_during_its_probe() {
    let Some(_) = real_data_dir(
        "ham10000",
        "methods_are_an_axis_and_lp_ft_keeps_the_backbone_during_its_probe",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let methods = "[[methods]]\nname = \"full\"\nkind = \"full\"\n[[methods]]\nname \
        = \"lp-ft\"\nkind = \"lp-ft\"\nprobe_epochs = 1\nwise_ft = [0.0, 0.5]\n\
                   [[methods]]\nname = \"rep-sim\"\nkind = \"rep-sim\"\nweight = 1.0\n";
    let config = smoke_elsewhere(dir.path(), "", methods);
    let study_dir = dir.path().join("study");
    run(reproduce(&config, &study_dir, &["--jobs", "2"]));
    let study = StudyDir::new(&study_dir);
    let lp = RunId {
        dataset: "ham10000".into(),
        backbone: "vit-tiny".into(),
        method: "lp-ft".into(),
        seed: 0,
    };
    let state = RunState::read(&study.run_dir(&lp)).unwrap().unwrap();
    assert_eq!(
        (state.method.as_str(), state.last_finished_epoch),
        ("lp-ft", 2)
    );

    let table = epochs(&study_dir);
    let (method, epoch) = (
        table.column("method").unwrap().str().unwrap().clone(),
        table.column("epoch").unwrap().u32().unwrap().clone(),
    );
    let similarity = f64s(&table, "similarity");
    let rows = |m: &str, e: u32| {
        (0..table.height())
            .filter(|&i| method.get(i) == Some(m) && epoch.get(i) == Some(e))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rows("full", 0).len() + rows("lp-ft", 0).len() + rows("rep-sim", 0).len(),
        3 * 2 * 2,
        "2 backbones × 2 seeds per method"
    );
    for i in rows("lp-ft", 1) {
        assert!(
            (similarity[i] - 1.0).abs() < 1e-6,
            "the probe epoch moved the backbone: similarity {}",
            similarity[i]
        );
    }
    for i in rows("lp-ft", 2).into_iter().chain(rows("full", 1)) {
        assert!(
            similarity[i] < 0.999,
            "a training epoch left the backbone: similarity {}",
            similarity[i]
        );
    }
    let report = std::fs::read_to_string(sim_plot::report_path(&study_dir)).unwrap();
    assert!(
        report.contains("## Which method keeps similarity?") && report.contains("- `vit-tiny`: `"),
        "{report}"
    );
    let tested = report
        .split("## Which method keeps similarity?")
        .nth(1)
        .unwrap();
    assert!(
        tested.contains("similarity than `") && tested.contains("one-sided permutation test p = "),
        "the methods' test per backbone: {tested}"
    );
    assert!(
        sim_plot::figures_dir(&study_dir)
            .join("fig3_attention_lp-ft_vit-tiny.png")
            .exists()
    );

    let metadata = sim_study::eval_file::EvalFile::open(&study.wise_ft_eval(&lp, 0.5))
        .unwrap()
        .metadata()
        .unwrap();
    assert_eq!((metadata.alpha, metadata.epoch), (Some(0.5), 2));
    let path = read_table(&study_dir, "wise_ft.parquet");
    assert_eq!(path.height(), 2 * 2 * 3, "lp-ft's runs only, α = 0, 0.5, 1");
    let (alpha, similarity) = (f64s(&path, "alpha"), f64s(&path, "similarity"));
    for (a, s) in alpha.iter().zip(&similarity) {
        if *a == 0.0 {
            assert!(
                (s - 1.0).abs() < 1e-6,
                "α = 0 is θ₀'s backbone: similarity {s}"
            );
        }
    }
    assert!(
        report.contains("## WiSE-FT: the path from θ₀ to θ_ft")
            && report.contains("- `lp-ft` / `vit-tiny` (2 runs): most accurate at α = "),
        "{report}"
    );
    assert!(
        sim_plot::figures_dir(&study_dir)
            .join("wise_ft_path.png")
            .exists()
    );
}

/// A run that fails (its loss turns NaN) does not stop the others; the sweep
/// ends with an error naming it, its log and its error, and the tables and
/// report are made from the runs that finished.
#[test]
fn a_failing_run_leaves_the_others_to_finish_and_is_named() {
    let Some(_) = real_data_dir(
        "ham10000",
        "a_failing_run_leaves_the_others_to_finish_and_is_named",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A third backbone whose inputs overflow f32: a mean of 1e38 makes every
    // pixel about −4e38, −∞ in f32, and the loss NaN at the first step.
    let overflow = format!(
        "[[backbones]]\nname = \"overflow\"\ncheckpoint = \"{}\"\nfamily = \"vit\"\nheads = \
            3\ninput_size = 32\nmean = [1e38, 1e38, 1e38]\n",
        root()
            .join("crates/sim-train/tests/fixtures/backbones/timm_vit/model.safetensors")
            .display()
    );
    let config = smoke_elsewhere(dir.path(), &overflow, "");
    let study = dir.path().join("study");
    let output = reproduce(&config, &study, &["--jobs", "2"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("2 run(s) failed"), "{stderr}");
    assert!(
        stderr.contains(
            "ham10000/overflow/full seed 0: Error: ham10000/overflow/full seed 0: loss is NaN"
        ),
        "{stderr}"
    );
    let failed = RunId {
        dataset: "ham10000".into(),
        backbone: "overflow".into(),
        method: "full".into(),
        seed: 0,
    };
    assert!(
        stderr.contains(
            &StudyDir::new(&study)
                .run_dir(&failed)
                .join("sweep.log")
                .display()
                .to_string()
        ),
        "{stderr}"
    );
    let report = std::fs::read_to_string(sim_plot::report_path(&study)).unwrap();
    assert!(
        report.contains("`vit-tiny`: 2 finished run(s)")
            && report.contains("`dinov2-tiny`: 2 finished run(s)"),
        "{report}"
    );
    assert!(
        report.contains(
            "`overflow`: 0 finished run(s) in the summaries; 2 left out \
        (seed 0: failed after epoch 0: loss NaN"
        ),
        "{report}"
    );
    assert!(
        report.contains("epoch 0 unusable") && report.contains("non-finite"),
        "{report}"
    );
    let pretrain = read_table(&study, sim_study::tables::file::PRETRAIN);
    assert_eq!(
        pretrain.height(),
        2,
        "the unusable epoch 0 is left out of pretrain.parquet, not the study"
    );
}

/// A single-node Slurm cluster in a folder of its own (the recipe of
/// `../shared/notes/slurm-single-node.md`): munged, slurmctld and slurmd,
/// stopped when dropped.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl Cluster {
    /// Starts the daemons, or says why they could not be started.
    fn start(dir: &Path) -> Result<Cluster, String> {
        use std::os::unix::fs::PermissionsExt;
        for tool in ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                return Err(format!(
                    "`{tool}` is not installed (Debian: apt-get install slurm-wlm munge; \
                        .ci/run does)"
                ));
            }
        }
        if unsafe { libc::geteuid() } != 0 {
            return Err("the daemons are started as root, and this is not root".into());
        }
        let t = dir.join("slurm");
        for sub in ["state", "spool"] {
            std::fs::create_dir_all(t.join(sub)).map_err(|e| e.to_string())?;
        }
        // munged refuses a socket folder others cannot enter, and a key others can read.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| e.to_string())?;
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| e.to_string())?;
        std::fs::copy("/etc/munge/munge.key", t.join("munge.key"))
            .map_err(|e| format!("/etc/munge/munge.key: {e}"))?;
        let sh = |script: &str| -> Result<(), String> {
            let out = Command::new("sh")
                .args(["-c", script])
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "`{script}`: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        let t_s = t.display();
        sh(&format!(
            "chown munge:munge {t_s}/munge.key && chmod 0400 {t_s}/munge.key && touch \
                {t_s}/munged.log && chown munge {t_s} {t_s}/munged.log"
        ))?;
        sh(&format!(
            "runuser -u munge -- munged -S {t_s}/munge.socket.2 --key-file={t_s}/munge.key \
                --pid-file={t_s}/munged.pid --log-file={t_s}/munged.log \
                --seed-file={t_s}/munged.seed"
        ))?;
        let conf = t.join("slurm.conf");
        let text = format!(
            "ClusterName=simlab\nSlurmctldHost=localhost\nSlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\nCredType=cred/munge\n\
             AuthInfo=socket={t_s}/munge.socket.2\nStateSaveLocation={t_s}/state\nSlurmdSpoolDir={t_s}/spool\n\
             SlurmctldPidFile={t_s}/slurmctld.pid\nSlurmdPidFile={t_s}/slurmd.pid\nSlurmctldLogFile={t_s}/slurmctld.log\nSlurmdLogFile={t_s}/slurmd.log\n\
             SlurmctldPort=16817\nSlurmdPort=16818\nProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nReturnToService=2\nMailProg=/bin/true\n\
             NodeName=localhost CPUs=2 RealMemory=16000 State=UNKNOWN\nPartitionName=main \
             Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n"
        );
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let cluster = Cluster {
            dir: t.clone(),
            conf: conf.clone(),
        };
        sh(&format!(
            "SLURM_CONF={} slurmctld -f {}",
            conf.display(),
            conf.display()
        ))?;
        sh(&format!(
            "SLURM_CONF={} slurmd -f {} -N localhost",
            conf.display(),
            conf.display()
        ))?;
        let start = Instant::now();
        loop {
            let state = cluster
                .command("sinfo")
                .args(["-h", "-o", "%T"])
                .output()
                .map_err(|e| e.to_string())?;
            if String::from_utf8_lossy(&state.stdout).trim() == "idle" {
                return Ok(cluster);
            }
            if start.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(t.join("slurmctld.log")).unwrap_or_default();
                return Err(format!(
                    "the node never became idle; slurmctld.log ends: {}",
                    log.lines().last().unwrap_or("")
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A Slurm client command talking to this cluster.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for daemon in ["slurmd", "slurmctld", "munged"] {
            if let Ok(pid) = std::fs::read_to_string(self.dir.join(format!("{daemon}.pid"))) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The smoke study through a real Slurm: one job array of its four runs and
/// the job after it, from submission to report.
#[test]
fn slurm_runs_a_job_array_and_the_job_after_it_to_the_report() {
    let test = "slurm_runs_a_job_array_and_the_job_after_it_to_the_report";
    let Some(_) = real_data_dir("ham10000", test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = match Cluster::start(dir.path()) {
        Ok(c) => c,
        Err(why) => {
            use std::io::Write;
            let _ = std::io::stderr()
                .write_all(format!("SKIPPED {test}: no Slurm cluster here: {why}\n").as_bytes());
            return;
        }
    };
    let config = smoke_elsewhere(
        dir.path(),
        "",
        "[slurm]\ntime = \"00:15:00\"\ncpus_per_task = 1\nmem = \"2G\"\ngpus = 0\n",
    );
    let study = dir.path().join("study");
    let mut submit = reproduce(&config, &study, &["--executor", "slurm", "--dry-run"]);
    submit.env("SLURM_CONF", &cluster.conf);
    run(submit);
    let array = std::fs::read_to_string(study.join("slurm/array.sbatch")).unwrap();
    assert!(
        array.contains("#SBATCH --array=0-3")
            && array.contains("--cpus-per-task=1")
            && !array.contains("--gres"),
        "{array}"
    );
    assert!(
        !study.join("slurm/jobs.toml").exists(),
        "--dry-run submits nothing"
    );

    let mut submit = reproduce(&config, &study, &["--executor", "slurm"]);
    submit.env("SLURM_CONF", &cluster.conf);
    let out = run(submit);
    assert!(String::from_utf8_lossy(&out.stdout).contains("submitted: job array"));
    wait_for("the Slurm jobs to end", || {
        let q = cluster.command("squeue").args(["-h"]).output().unwrap();
        q.status.success() && String::from_utf8_lossy(&q.stdout).trim().is_empty()
    });
    let report = sim_plot::report_path(&study);
    assert!(
        report.exists(),
        "no report; finish.out:\n{}",
        std::fs::read_to_string(study.join("slurm/finish.out")).unwrap_or_default()
    );
    let status = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["reproduce", "--status", "--config"])
        .arg(&config)
        .arg("--output")
        .arg(&study)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("4 finished") && status.contains("Slurm jobs"),
        "{status}"
    );
}

/// The smoke study with backbones the tool pre-trains (supervised, DINO,
/// and the random initialisation), tiny and for one epoch: reproduce
/// pre-trains them before the runs, fine-tunes from them, writes
/// `pretrain.parquet` (k-NN, linear probe, how each was pre-trained) and
/// the report's section and findings about them; a second call pre-trains
/// nothing and says so.
#[test]
fn pretrained_backbones_are_made_once_fine_tuned_and_reported() {
    let Some(_) = real_data_dir(
        "ham10000",
        "pretrained_backbones_are_made_once_fine_tuned_and_reported",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let smoke = std::fs::read_to_string(config_path("smoke.toml")).unwrap();
    let (head, rest) = smoke.split_once("[[backbones]]").unwrap();
    let (_, tail) = rest.split_once("[training]").unwrap();
    let shape = "width = 24, depth = 1, patch = 8";
    let backbones: String = [
        (
            "sup",
            format!("objective = \"supervised\", epochs = 1, {shape}"),
        ),
        (
            "dino",
            format!(
                "objective = \"dino\", epochs = 1, {shape}, dino = {{ local_crops \
            = 2, local_size = 16, out_dim = 64, hidden_dim = 32, bottleneck_dim = 16 }}"
            ),
        ),
        ("random", format!("objective = \"none\", {shape}")),
    ]
    .iter()
    .map(|(name, p)| {
        format!(
            "[[backbones]]\nname = \"{name}\"\ninput_size = 32\nheads = \
        2\npretrain = {{ {p} }}\n\n"
        )
    })
    .collect();
    let config = dir.path().join("pretrained.toml");
    std::fs::write(
        &config,
        format!(
            "{}{backbones}[training]{tail}",
            head.replace("seeds = [0, 1]", "seeds = [0]")
        ),
    )
    .unwrap();
    let study_dir = dir.path().join("study");
    // Before any pre-training, the plan times fine-tuning from the initialisations.
    let plan = run(reproduce(&config, &study_dir, &["--plan"]));
    let plan = String::from_utf8_lossy(&plan.stdout);
    for name in ["sup", "dino", "random"] {
        assert!(
            plan.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name) && l.contains(" 2 ")),
            "{name}: {plan}"
        );
    }
    // And the pre-training itself, of the two that train, in the total.
    for (name, objective) in [("sup", "supervised"), ("dino", "dino")] {
        assert!(
            plan.contains(&format!("pre-training {name} ({objective}): 1 epochs of")),
            "{name}: {plan}"
        );
    }
    assert!(
        !plan.contains("pre-training random") && plan.contains("of it, first)"),
        "{plan}"
    );
    assert!(
        !dir.path().join("pretrained").exists(),
        "the plan pre-trains nothing"
    );
    let first = run(reproduce(&config, &study_dir, &["--jobs", "2"]));
    let stdout = String::from_utf8_lossy(&first.stdout);
    for name in ["sup", "dino", "random"] {
        assert!(
            stdout.contains(&format!("backbone {name}: pre-trained in")),
            "{stdout}"
        );
    }
    assert!(
        dir.path().join("pretrained").read_dir().unwrap().count() == 3,
        "beside the study folder"
    );

    let table = read_table(&study_dir, sim_study::tables::file::PRETRAIN);
    assert_eq!(table.height(), 3);
    let objectives = table.column("objective").unwrap().str().unwrap().clone();
    let objective: Vec<&str> = (0..objectives.len())
        .filter_map(|i| objectives.get(i))
        .collect();
    assert_eq!(objective, ["supervised", "dino", "none"]);
    let minutes = table
        .column("pretrain_minutes")
        .unwrap()
        .f64()
        .unwrap()
        .clone();
    assert!(
        minutes.get(0).is_some() && minutes.get(1).is_some() && minutes.get(2).is_none(),
        "{minutes:?}"
    );
    for column in ["knn_top1", "probe_balanced_accuracy"] {
        assert!(
            f64s(&table, column).iter().all(|v| (0.0..=1.0).contains(v)),
            "{column}"
        );
    }
    // The learning curves: one epoch each, its k-NN measured at the last;
    // the same protocol as epoch 0's evaluation, whose features are kept in
    // f16 (a few of the 3,925 queries may change neighbours: 1 point).
    let curves = read_table(&study_dir, sim_study::tables::file::PRETRAIN_EPOCHS);
    assert_eq!(curves.height(), 2, "sup and dino, one epoch each");
    let curve_knn = f64s(&curves, "knn_top1");
    for (i, backbone) in [(0, "sup"), (1, "dino")] {
        let epoch0 = f64s(&table, "knn_top1")[i];
        assert!(
            (curve_knn[i] - epoch0).abs() < 0.01,
            "{backbone}: curve {} vs epoch 0 {epoch0}",
            curve_knn[i]
        );
    }
    let prototypes = curves
        .column("effective_prototypes")
        .unwrap()
        .f64()
        .unwrap()
        .clone();
    assert!(
        prototypes.get(0).is_none() && prototypes.get(1).is_some_and(|k| (1.0..=64.0).contains(&k)),
        "{prototypes:?}"
    );
    let report = std::fs::read_to_string(sim_plot::report_path(&study_dir)).unwrap();
    assert!(
        report.contains("## Pre-trained backbones")
            && report.contains("- `sup` (supervised, 1 epoch in "),
        "{report}"
    );
    let section = report
        .split("## Pre-trained backbones")
        .nth(1)
        .unwrap()
        .split("## Figures")
        .next()
        .unwrap();
    assert!(
        section.contains("![pretrain_knn.png](figures/pretrain_knn.png)")
            && section.contains("`random`")
            && section.contains("(not pre-trained)"),
        "{section}"
    );
    assert!(
        report.contains("Self-supervised pre-training ") && report.contains("over `random`"),
        "{report}"
    );
    assert!(
        report.contains("`sup` (pre-trained here: supervised) loses"),
        "finding 3 knows the objectives: {report}"
    );

    let before = std::fs::metadata(sim_plot::report_path(&study_dir))
        .unwrap()
        .modified()
        .unwrap();
    let second = run(reproduce(&config, &study_dir, &[]));
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("backbone dino: pre-trained before, kept")
            && stdout.contains("0 finished now"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::metadata(sim_plot::report_path(&study_dir))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
}

/// The smoke config written into `dir` with absolute backbone paths and
/// each `(from, to)` replaced in its text.
fn smoke_changed(dir: &Path, changes: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(config_path("smoke.toml"))
        .unwrap()
        .replace(
            "checkpoint = \"../",
            &format!("checkpoint = \"{}/", root().display()),
        );
    for (from, to) in changes {
        assert!(text.contains(from), "the smoke config has no `{from}`");
        text = text.replace(from, to);
    }
    let path = dir.join("smoke.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn failing(command: Command) -> String {
    let mut command = command;
    let output = command.output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "accepted:\n{text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

/// HAM10000 copied where a test may change it (the real data stays read-only).
fn writable_ham10000(dir: &Path, data: &Path) -> PathBuf {
    let copy = dir.join("ham10000"); // the folder's name is the data set's
    let status = Command::new("cp")
        .arg("-r")
        .arg(data.join("ham10000"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::symlink(data.join("imagenette"), dir.join("imagenette")).unwrap();
    copy
}

/// Data changed under a study with finished runs: an image replaced (the
/// cache was rebuilt without a word and new runs read other pixels than the
/// finished ones), the split file removed (the error's advice re-split the
/// study under its runs). Each is refused, naming what changed and saying
/// to restore it or use a new study folder; restored, the study is whole again.
#[test]
fn data_changed_under_finished_runs_is_refused() {
    let test = "data_changed_under_finished_runs_is_refused";
    let Some(data) = real_data_dir("ham10000", test) else {
        return;
    };
    let Some(_) = real_data_dir("imagenette", test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ham = writable_ham10000(dir.path(), &data);
    let config = smoke_changed(
        dir.path(),
        &[
            (
                "root = \"ham10000\"",
                &format!("root = \"{}\"", ham.display()),
            ),
            (
                "root = \"imagenette\"",
                &format!("root = \"{}\"", dir.path().join("imagenette").display()),
            ),
        ],
    );
    let study = dir.path().join("study");
    run(reproduce(&config, &study, &["--jobs", "2"]));

    // A test-split image replaced by another image.
    let split_file = StudyDir::new(&study).split_csv(&DatasetId::Medical("ham10000".into()));
    let split = std::fs::read_to_string(&split_file).unwrap();
    let ids: Vec<(&str, &str)> = split
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0], f[4])
        })
        .collect();
    let (test_id, _) = ids.iter().find(|(_, side)| *side == "test").unwrap();
    let (other_id, _) = ids.iter().find(|(id, _)| id != test_id).unwrap();
    let image = |id: &str| {
        walk(&ham)
            .into_iter()
            .find(|p| p.file_stem().is_some_and(|s| s == id))
            .unwrap_or_else(|| panic!("no file for {id}"))
    };
    let (target, backup) = (image(test_id), dir.path().join("backup.jpg"));
    std::fs::copy(&target, &backup).unwrap();
    std::fs::copy(image(other_id), &target).unwrap();
    let text = failing(reproduce(&config, &study, &[]));
    assert!(
        text.contains(&format!("image `{test_id}` (test split)"))
            && text.contains("medical-ham10000"),
        "{text}"
    );
    assert!(
        text.contains("restore it, or run the study into a new study.output_dir"),
        "{text}"
    );
    std::fs::copy(&backup, &target).unwrap();
    run(reproduce(&config, &study, &[]));

    // The split file removed: never split again under the runs.
    let kept = dir.path().join("split.csv");
    std::fs::rename(&split_file, &kept).unwrap();
    let text = failing(reproduce(&config, &study, &[]));
    assert!(
        text.contains("medical-ham10000.csv: missing") && text.contains("new study.output_dir"),
        "{text}"
    );
    assert!(
        !split_file.exists(),
        "a new split was made under the study's runs"
    );
    std::fs::rename(&kept, &split_file).unwrap();
    let out = run(reproduce(&config, &study, &[]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("4 finished before"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .flat_map(|e| {
            if e.path().is_dir() {
                walk(&e.path())
            } else {
                vec![e.path()]
            }
        })
        .collect()
}

/// Settings the data cannot meet, and folders the study cannot use, stop
/// `reproduce` before any run with an error naming the setting or the
/// folder: a batch larger than the training split (it grew memory until
/// it aborted), a k-NN k larger than the bank (every run trained, then
/// nothing could be tabulated), a missing checkpoint under `--plan` (it
/// exited 0), an unrelated non-empty `--output`, a path Slurm cannot carry.
#[test]
fn settings_and_folders_the_study_cannot_use_stop_it_before_any_run() {
    let test = "settings_and_folders_the_study_cannot_use_stop_it_before_any_run";
    let Some(_) = real_data_dir("ham10000", test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let no_run = |study: &Path| !study.join("runs").exists();

    let (config, study) = (
        smoke_changed(
            dir.path(),
            &[("batch_size = 32", "batch_size = 1000000000")],
        ),
        dir.path().join("batch"),
    );
    let text = failing(reproduce(&config, &study, &[]));
    assert!(
        text.contains(
            "training.batch_size = 1000000000 is larger than the training split of `ham10000`"
        ),
        "{text}"
    );
    assert!(no_run(&study));

    let (config, study) = (
        smoke_changed(
            dir.path(),
            &[("knn_k = [10, 20]", "knn_k = [10, 20, 100000]")],
        ),
        dir.path().join("knn"),
    );
    let text = failing(reproduce(&config, &study, &[]));
    assert!(
        text.contains("evaluation.knn_k = [10, 20, 100000]") && text.contains("k-NN bank"),
        "{text}"
    );
    assert!(no_run(&study));

    let config = smoke_changed(
        dir.path(),
        &[("timm_vit/model.safetensors", "timm_vit/missing.safetensors")],
    );
    let text = failing(reproduce(&config, &dir.path().join("plan"), &["--plan"]));
    assert!(
        text.contains("checkpoints not found") && text.contains("missing.safetensors"),
        "{text}"
    );

    let unrelated = dir.path().join("photos");
    std::fs::create_dir(&unrelated).unwrap();
    std::fs::write(unrelated.join("holiday.jpg"), "").unwrap();
    let text = failing(reproduce(&config_path("smoke.toml"), &unrelated, &[]));
    assert!(
        text.contains("is not empty (holiday.jpg)") && text.contains("not a study folder"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(&unrelated).unwrap().count(),
        1,
        "nothing written into it"
    );

    let spaced = dir.path().join("my studies").join("smoke");
    let text = failing(reproduce(
        &config_path("smoke.toml"),
        &spaced,
        &["--executor", "slurm", "--dry-run"],
    ));
    assert!(
        text.contains("the study folder") && text.contains("my studies") && text.contains("' '"),
        "{text}"
    );
    assert!(!spaced.exists(), "nothing written before the check");
}

/// Every run fails (NaN loss at the first step): the sweep lists them and
/// the report says what became of each (there are no tables to draw from),
/// rather than ending on "no finished epoch in any run yet".
#[test]
fn when_every_run_fails_they_are_listed_and_the_report_says_so() {
    let test = "when_every_run_fails_they_are_listed_and_the_report_says_so";
    let Some(_) = real_data_dir("ham10000", test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(config_path("smoke.toml")).unwrap();
    let (head, tail) = text.split_once("[[backbones]]").unwrap();
    let tail = &tail[tail.find("[training]").unwrap()..];
    let overflow = format!(
        "[[backbones]]\nname = \"overflow\"\ncheckpoint = \"{}\"\nfamily = \"vit\"\nheads = \
            3\ninput_size = 32\nmean = [1e38, 1e38, 1e38]\n\n",
        root()
            .join("crates/sim-train/tests/fixtures/backbones/timm_vit/model.safetensors")
            .display()
    );
    let config = dir.path().join("overflow.toml");
    std::fs::write(&config, format!("{head}{overflow}{tail}")).unwrap();
    let study = dir.path().join("study");
    let text = failing(reproduce(&config, &study, &["--jobs", "2"]));
    assert!(
        text.contains("2 run(s) failed; no run finished an epoch"),
        "{text}"
    );
    assert!(
        text.contains("ham10000/overflow/full seed 0: Error")
            && text.contains("ham10000/overflow/full seed 1: Error"),
        "{text}"
    );
    assert!(!text.contains("no finished epoch in any run yet"), "{text}");
    let report = std::fs::read_to_string(sim_plot::report_path(&study)).unwrap();
    assert!(report.contains("No run has finished an epoch"), "{report}");
    assert!(
        report.contains(
            "- ham10000/overflow/full seed 0: failed after epoch 0: loss NaN at epoch 1, step 1"
        ),
        "{report}"
    );
}

/// A second `reproduce` of a study while another process runs one of its
/// runs (here this test holds the run's lock, as that process would): the
/// run is left to its holder, said so, not listed as failed; the others run
/// and the study's tables are made; `--status` tells the live run from a
/// killed one.
#[test]
fn a_run_another_process_holds_is_left_to_it_and_shown_as_running() {
    let test = "a_run_another_process_holds_is_left_to_it_and_shown_as_running";
    let Some(_) = real_data_dir("ham10000", test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("study");
    let held = RunId {
        dataset: "ham10000".into(),
        backbone: "dinov2-tiny".into(),
        method: "full".into(),
        seed: 1,
    };
    // The study as the other process left it: its config recorded, the run's folder locked.
    let mut config = StudyConfig::from_file(&config_path("smoke.toml")).unwrap();
    config.study.output_dir = Some(study.clone());
    StudyDir::new(&study)
        .write_resolved_config(&config)
        .unwrap();
    let lock =
        sim_study::lock::DirLock::try_acquire(&StudyDir::new(&study).run_dir(&held)).unwrap();
    let output = run(reproduce(
        &config_path("smoke.toml"),
        &study,
        &["--jobs", "2"],
    ));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let holder = format!("process {} on host", std::process::id());
    assert!(
        text.contains(&format!("run {held}: being run by {holder}")) && text.contains("left to it"),
        "{text}"
    );
    assert!(
        text.contains("0 failed") && !text.contains("run(s) failed"),
        "{text}"
    );
    assert!(
        sim_plot::report_path(&study).exists(),
        "the others' tables, figures and report"
    );
    let status = |study: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["reproduce", "--status", "--config"])
            .arg(config_path("smoke.toml"))
            .arg("--output")
            .arg(study)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let now = status(&study);
    assert!(
        now.contains(&format!("{held}: running now ({holder}"))
            && now.contains("3 finished, 1 running"),
        "{now}"
    );
    drop(lock); // as if its process were killed
    let now = status(&study);
    assert!(
        now.contains(&format!("{held}: started, no epoch finished; interrupted"))
            && now.contains("1 interrupted"),
        "{now}"
    );
}

/// A MedMNIST file the config names but the data folder lacks, offline:
/// the study stops before anything is made and gives the command that
/// fetches it.
#[test]
fn a_missing_medmnist_file_is_named_with_the_command_that_fetches_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("study.toml");
    let checkpoint =
        root().join("crates/sim-train/tests/fixtures/backbones/timm_vit/model.safetensors");
    std::fs::write(
        &config,
        format!(
            "[study]\nname = \"m\"\nseeds = [0]\n\
             [datasets.medical]\nkind = \"medmnist\"\nroot = \"medmnist/pneumoniamnist_64.npz\"\n\
             [datasets.natural]\nkind = \"image-folder\"\nroot = \"imagenette\"\n\
             [[backbones]]\nname = \"vit\"\ncheckpoint = \"{}\"\nfamily = \"vit\"\n\
             heads = 3\ninput_size = 32\n",
            checkpoint.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let study = dir.path().join("study");
    let output = reproduce(&config, &study, &["--offline"])
        .env("SIM_DATA_DIR", &data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("fetch-data --dest")
            && stderr.contains("--medmnist pneumoniamnist --medmnist-size 64"),
        "{stderr}"
    );
    assert!(!study.exists(), "nothing is made before the data is there");
}

#[path = "common/archives.rs"]
mod archives;

/// The README's first command on a fresh machine: no `data/`, SIM_DATA_DIR
/// unset, the data sets' hosts stood in for by a loopback server (through
/// the tests' `SIM_TEST_DATA_SOURCES`). With `--offline` it stops before
/// writing anything, naming each missing data set and the command that
/// fetches it; without, it says what it downloads and how much, fetches,
/// checks and runs the smoke-sized study to its report.
#[test]
fn a_fresh_machine_fetches_the_data_and_runs_the_study_to_its_report() {
    use md5::{Digest, Md5};
    let files = archives::archives(&archives::Sizes {
        isic_images: 10_015,
        nette_classes: 10,
        nette_train: 9_469,
        nette_val: 3_925,
    });
    let nette_md5 = hex::encode(Md5::digest(&files["imagenette2-320.tgz"]));
    let base = archives::serve(files, 100);
    let machine = tempfile::tempdir().unwrap();
    let isic = [
        "ISIC2018_Task3_Training_Input.zip",
        "ISIC2018_Task3_Training_GroundTruth.zip",
        "ISIC2018_Task3_Training_LesionGroupings.csv",
    ];
    let sources = serde_json::json!([
        {
            "name": "ham10000",
            "downloads": isic.map(|f| serde_json::json!({
                "url": format!("{base}/{f}"), "checksum": "Unpublished"
            })),
            "layout": "Ham10000FromIsic",
            "expected_images": 10_015,
            "fetch_args": "--only ham10000",
        },
        {
            "name": "imagenette",
            "downloads": [{
                "url": format!("{base}/imagenette2-320.tgz"),
                "checksum": { "Md5": nette_md5 },
            }],
            "layout": "ImagenetteFolder",
            "expected_images": 9_469 + 3_925,
            "fetch_args": "--only imagenette",
        },
    ]);
    let sources_file = machine.path().join("sources.json");
    std::fs::write(&sources_file, sources.to_string()).unwrap();
    let study = machine.path().join("study");
    let fresh = |extra: &[&str]| {
        let mut command = reproduce(&config_path("smoke.toml"), &study, extra);
        command
            .current_dir(machine.path())
            .env_remove("SIM_DATA_DIR")
            .env_remove("HF_HUB_OFFLINE")
            .env("SIM_TEST_DATA_SOURCES", &sources_file);
        command
    };

    let out = fresh(&["--offline"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("downloads are off")
            && stderr.contains("cargo xtask fetch-data --dest data --only ham10000")
            && stderr.contains("cargo xtask fetch-data --dest data --only imagenette"),
        "{stderr}"
    );
    assert!(!study.exists() && !machine.path().join("data").exists());

    let out = run(fresh(&[]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("downloading into data: ham10000 (10015 images, ")
            && stdout.contains("imagenette (13394 images, "),
        "{stdout}"
    );
    let data = machine.path().join("data");
    assert!(data.join("ham10000/HAM10000_metadata.csv").exists());
    assert!(data.join("imagenette/val").is_dir());
    let report = std::fs::read_to_string(sim_plot::report_path(&study)).unwrap();
    assert!(report.contains("## The paper's three findings"), "{report}");
    // Everything there now: offline is enough.
    run(fresh(&["--offline"]));
}
