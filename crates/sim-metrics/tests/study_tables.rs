//! `sim-metrics study` on a study whose evaluation files the test writes (the
//! layout of sim_study::eval_file), read back with polars: every table's
//! schema, row count, and values that can be checked by hand.

use polars::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use sim_metrics::MatRef;
use sim_metrics::calibration::{Binning, calibration};
use sim_metrics::classification::{class_scores, classification_scores, macro_auroc};
use sim_metrics::tables::write_study_tables;
use sim_metrics::temperature::{fit_temperature, proper_scores};
use sim_study::config::{DatasetId, RunId, SelectOn};
use sim_study::eval_file::{self, Layer, Probe, Token};
use sim_study::run_state::{RunState, Status};
use sim_study::split_file::{self, SplitRow};
use sim_study::tensors::Values;
use sim_study::{StudyConfig, StudyDir};
use std::collections::HashMap;
use std::path::Path;

const CONFIG: &str = r#"
[study]
name = "synthetic"
seeds = [0, 1, 2, 3]
[datasets.medical]
kind = "ham10000"
root = "ham10000"
[datasets.natural]
kind = "image-folder"
root = "imagenette"
[[backbones]]
name = "tiny"
checkpoint = "tiny.safetensors"
family = "vit"
input_size = 32
[evaluation]
knn_k = [1, 3]
knn_report_k = 3
fit_levels = 4
ece_bins = 5
"#;

struct Tensors(Vec<(String, Dtype, Vec<usize>, Vec<u8>)>);

impl Tensors {
    fn f16(&mut self, name: &str, rows: usize, cols: usize, v: &[f64]) {
        let bytes = v
            .iter()
            .flat_map(|x| half::f16::from_f64(*x).to_le_bytes())
            .collect();
        self.0
            .push((name.into(), Dtype::F16, vec![rows, cols], bytes));
    }
    fn f32(&mut self, name: &str, rows: usize, cols: usize, v: &[f64]) {
        let bytes = v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
        self.0
            .push((name.into(), Dtype::F32, vec![rows, cols], bytes));
    }
    fn i64(&mut self, name: &str, v: &[i64]) {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.0.push((name.into(), Dtype::I64, vec![v.len()], bytes));
    }
    fn write(&self, path: &Path) {
        let views: Vec<(String, TensorView<'_>)> = self
            .0
            .iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        safetensors::serialize_to_file(views, None, path).unwrap();
    }
}

/// The pre-trained features, and an epoch's as those plus `drift` noise.
fn eval_file(
    path: &Path,
    base: &HashMap<String, Vec<f64>>,
    drift: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<i64> {
    written_eval(path, base, drift, rng, true)
}

/// [`eval_file`], with the natural images (their probe, the k-NN bank and
/// queries) only where `natural`: an epoch of `evaluation.natural_every_epoch = false`.
fn written_eval(
    path: &Path,
    base: &HashMap<String, Vec<f64>>,
    drift: f64,
    rng: &mut ChaCha8Rng,
    natural: bool,
) -> Vec<i64> {
    let mut t = Tensors(Vec::new());
    let mut noisy = |v: &Vec<f64>| {
        v.iter()
            .map(|x| x + drift * (rng.random::<f64>() - 0.5))
            .collect::<Vec<f64>>()
    };
    for probe in Probe::ALL
        .into_iter()
        .filter(|p| natural || *p == Probe::Medical)
    {
        let n = if probe == Probe::Medical { 40 } else { 30 };
        for layer in [
            Layer::Index(0),
            Layer::Index(1),
            Layer::Index(2),
            Layer::Final,
        ] {
            for token in Token::ALL {
                let name = eval_file::probe_tensor(probe, layer, token);
                t.f16(&name, n, 6, &noisy(&base[&name]));
            }
        }
    }
    let logits = noisy(&base["logits"]);
    t.f32(eval_file::TEST_LOGITS, 40, 3, &logits);
    let labels: Vec<i64> = (0..40).map(|i| (i % 3) as i64).collect();
    t.i64(eval_file::TEST_LABELS, &labels);
    // A validation split of 20: the first test rows' logits, other labels.
    t.f32(eval_file::VAL_LOGITS, 20, 3, &logits[..60]);
    t.i64(
        eval_file::VAL_LABELS,
        &(0..20)
            .map(|i| ((i + i / 3) % 3) as i64)
            .collect::<Vec<_>>(),
    );
    if natural {
        t.f16(eval_file::KNN_BANK, 50, 6, &noisy(&base["bank"]));
        t.i64(
            eval_file::KNN_BANK_LABELS,
            &(0..50).map(|i| (i % 2) as i64).collect::<Vec<_>>(),
        );
        t.f16(eval_file::KNN_QUERY, 20, 6, &noisy(&base["query"]));
        t.i64(
            eval_file::KNN_QUERY_LABELS,
            &(0..20).map(|i| (i % 2) as i64).collect::<Vec<_>>(),
        );
    }
    t.write(path);
    // The predictions, for checking accuracy by hand.
    let stored: Vec<f64> = logits.iter().map(|x| *x as f32 as f64).collect();
    stored
        .chunks(3)
        .map(|r| (0..3).fold(0, |b, k| if r[k] > r[b] { k } else { b }) as i64)
        .collect()
}

/// Random pre-trained features, logits and k-NN arrays.
fn base_features(rng: &mut ChaCha8Rng) -> HashMap<String, Vec<f64>> {
    let mut base = HashMap::new();
    for probe in Probe::ALL {
        let n = if probe == Probe::Medical { 40 } else { 30 };
        for layer in [
            Layer::Index(0),
            Layer::Index(1),
            Layer::Index(2),
            Layer::Final,
        ] {
            for token in Token::ALL {
                base.insert(
                    eval_file::probe_tensor(probe, layer, token),
                    (0..n * 6).map(|_| rng.random::<f64>() * 4.0).collect(),
                );
            }
        }
    }
    base.insert(
        "logits".into(),
        (0..120)
            .map(|i| if i % 4 == 0 { 3.0 } else { rng.random::<f64>() })
            .collect(),
    );
    base.insert(
        "bank".into(),
        (0..300).map(|_| rng.random::<f64>() - 0.5).collect(),
    );
    base.insert(
        "query".into(),
        (0..120).map(|_| rng.random::<f64>() - 0.5).collect(),
    );
    base
}

/// A study folder in a new temporary directory, its config read from
/// `text` and written resolved, as `sim-train` leaves it before any run.
fn new_study(text: &str) -> (tempfile::TempDir, StudyConfig, StudyDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StudyConfig::from_toml_str(text, Path::new("study.toml")).unwrap();
    config.study.output_dir = Some(dir.path().to_owned());
    let study = StudyDir::new(dir.path());
    study.write_resolved_config(&config).unwrap();
    for dataset in config.medical_names() {
        write_split(&study, dataset);
    }
    (dir, config, study)
}

/// The split file of `dataset`: the 40 test images of [`written_eval`],
/// labels 0, 1, 2 named `a`, `b`, `c`.
fn write_split(study: &StudyDir, dataset: &str) {
    let ids: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let rows = ids.iter().enumerate().map(|(i, id)| SplitRow {
        id,
        label: i % 3,
        class: ["a", "b", "c"][i % 3],
        group: id,
        split: "test",
        sha256: "",
    });
    let path = study.split_csv(&DatasetId::Medical(dataset.into()));
    split_file::write(&path, rows).unwrap();
}

fn read(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

fn schema_of(df: &DataFrame) -> Vec<(String, DataType)> {
    df.schema()
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect()
}

fn f64_col(df: &DataFrame, name: &str) -> Vec<f64> {
    df.column(name)
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect()
}

fn str_col(df: &DataFrame, name: &str) -> Vec<String> {
    let c = df.column(name).unwrap().str().unwrap();
    (0..c.len())
        .map(|i| c.get(i).unwrap().to_string())
        .collect()
}

#[test]
fn study_tables_have_their_schema_and_hand_checkable_values() {
    let (dir, config, study) = new_study(CONFIG);

    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let base = base_features(&mut rng);
    let run = |seed| RunId {
        dataset: "ham10000".into(),
        backbone: "tiny".into(),
        method: "full".into(),
        seed,
    };
    eval_file(
        &study.pretrained_eval("ham10000", "tiny"),
        &base,
        0.0,
        &mut rng,
    );
    let seed0_epoch2 = {
        eval_file(&study.epoch_eval(&run(0), 1), &base, 1.0, &mut rng);
        eval_file(&study.epoch_eval(&run(0), 2), &base, 3.0, &mut rng)
    };
    eval_file(&study.epoch_eval(&run(1), 1), &base, 2.0, &mut rng);
    // Epochs without a file (not dumped) are simply absent.
    eval_file(&study.epoch_eval(&run(1), 3), &base, 2.5, &mut rng);
    // A file of an epoch run.toml does not commit (a killed attempt's) is not read.
    eval_file(&study.epoch_eval(&run(0), 3), &base, 9.0, &mut rng);
    // Seed 2 failed in epoch 2; seed 3 never started.
    eval_file(&study.epoch_eval(&run(2), 1), &base, 0.5, &mut rng);
    let state = |seed, status, last, message: Option<&str>| RunState {
        dataset: "ham10000".into(),
        backbone: "tiny".into(),
        method: "full".into(),
        seed,
        config_hash: config.hash(),
        backbone_sha256: "0".repeat(64),
        data_sha256: Default::default(),
        status,
        epochs: 3,
        last_finished_epoch: last,
        message: message.map(String::from),
    };
    state(0, Status::Finished, 2, None)
        .write(&study.run_dir(&run(0)))
        .unwrap();
    state(1, Status::Finished, 3, None)
        .write(&study.run_dir(&run(1)))
        .unwrap();
    state(2, Status::Failed, 1, Some("loss NaN at epoch 2, step 3"))
        .write(&study.run_dir(&run(2)))
        .unwrap();

    let written = write_study_tables(dir.path()).unwrap();
    assert_eq!(written.len(), sim_study::tables::file::ALL.len());

    let epochs = read(&study.tables_dir().join("epochs.parquet"));
    let names: Vec<String> = schema_of(&epochs).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "dataset",
            "method",
            "backbone",
            "seed",
            "epoch",
            "status",
            "head",
            "accuracy",
            "balanced_accuracy",
            "macro_f1",
            "auroc",
            "ece",
            "mce",
            "adaptive_ece",
            "nll",
            "brier",
            "temperature",
            "ece_scaled",
            "mce_scaled",
            "nll_scaled",
            "brier_scaled",
            "similarity",
            "knn_top1",
            "knn_top1_k1",
            "knn_top1_k3"
        ]
    );
    assert_eq!(
        epochs.column("backbone").unwrap().dtype(),
        &DataType::String
    );
    assert_eq!(epochs.column("seed").unwrap().dtype(), &DataType::UInt64);
    assert_eq!(epochs.column("epoch").unwrap().dtype(), &DataType::UInt32);
    assert_eq!(
        epochs.height(),
        8,
        "seed 0: epochs 0–2; seed 1: epochs 0, 1 and 3; seed 2: epochs 0 and 1"
    );
    let epoch: Vec<u32> = epochs
        .column("epoch")
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(epoch, [0, 1, 2, 0, 1, 3, 0, 1]);
    let status = epochs.column("status").unwrap().str().unwrap();
    let status: Vec<&str> = (0..status.len()).map(|i| status.get(i).unwrap()).collect();
    assert_eq!(
        status,
        [
            "finished", "finished", "finished", "finished", "finished", "finished", "failed",
            "failed"
        ]
    );
    let similarity = f64_col(&epochs, "similarity");
    assert!(
        (similarity[0] - 1.0).abs() < 1e-12 && (similarity[3] - 1.0).abs() < 1e-12,
        "epoch 0 is θ₀ itself"
    );
    assert!(
        similarity[2] < similarity[1] && similarity[1] < 1.0,
        "more drift, less similarity: {similarity:?}"
    );
    let truth: Vec<usize> = (0..40).map(|i| i % 3).collect();
    let predicted: Vec<usize> = seed0_epoch2.iter().map(|&p| p as usize).collect();
    let want = classification_scores(&predicted, &truth).unwrap();
    assert!((f64_col(&epochs, "accuracy")[2] - want.accuracy).abs() < 1e-12);
    assert!((f64_col(&epochs, "balanced_accuracy")[2] - want.balanced_accuracy).abs() < 1e-12);
    assert_eq!(
        f64_col(&epochs, "knn_top1"),
        f64_col(&epochs, "knn_top1_k3")
    );
    // Per class, from the logits as stored (f32), and the macro AUROC beside accuracy.
    let file = eval_file::EvalFile::open(&study.epoch_eval(&run(0), 2)).unwrap();
    let Ok((_, Values::Float(logits))) = file.decoded(eval_file::TEST_LOGITS) else {
        panic!("f32 logits");
    };
    let logits = MatRef::new(&logits, 40, 3, "logits").unwrap();
    let want = class_scores(logits, &truth).unwrap();
    let got = f64_col(&epochs, "auroc")[2];
    assert!((got - macro_auroc(&want).unwrap()).abs() < 1e-12);
    // Temperature scaling: fitted on the file's validation logits.
    let val_logits = file.decoded(eval_file::VAL_LOGITS).unwrap();
    let Values::Float(val_logits) = val_logits.1 else {
        panic!("f32 logits")
    };
    let Ok((_, Values::Int(val_labels))) = file.decoded(eval_file::VAL_LABELS) else {
        panic!("i64 labels")
    };
    let val_labels: Vec<usize> = val_labels.iter().map(|&l| l as usize).collect();
    let val = MatRef::new(&val_logits, 20, 3, "val").unwrap();
    let t = fit_temperature(val, &val_labels).unwrap();
    assert!((f64_col(&epochs, "temperature")[2] - t).abs() < 1e-12);
    let scaled: Vec<f64> = logits.data.iter().map(|v| v / t).collect();
    let scaled = MatRef::new(&scaled, 40, 3, "scaled").unwrap();
    let truth_i64: Vec<i64> = truth.iter().map(|&l| l as i64).collect();
    let after = calibration(scaled, &truth_i64, 5, Binning::Uniform).unwrap();
    assert!((f64_col(&epochs, "ece_scaled")[2] - after.ece).abs() < 1e-12);
    let nll = proper_scores(logits, &truth, t).unwrap().nll;
    assert!((f64_col(&epochs, "nll_scaled")[2] - nll).abs() < 1e-12);
    let classes = read(&study.tables_dir().join("classes.parquet"));
    let names: Vec<String> = schema_of(&classes).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "dataset",
            "method",
            "backbone",
            "seed",
            "epoch",
            "head",
            "class",
            "class_name",
            "support",
            "sensitivity",
            "specificity",
            "auroc"
        ]
    );
    assert_eq!(
        classes.height(),
        3 * epochs.height(),
        "three classes per epoch row"
    );
    // Seed 0's epoch 2 is the third epoch row: rows 6, 7, 8.
    assert_eq!(str_col(&classes, "class_name")[6..9], ["a", "b", "c"]);
    for (i, w) in want.iter().enumerate() {
        let row = 6 + i;
        assert!((f64_col(&classes, "sensitivity")[row] - w.sensitivity.unwrap()).abs() < 1e-12);
        assert!((f64_col(&classes, "specificity")[row] - w.specificity.unwrap()).abs() < 1e-12);
        assert!((f64_col(&classes, "auroc")[row] - w.auroc.unwrap()).abs() < 1e-12);
    }

    let layers = read(&study.tables_dir().join("layers.parquet"));
    assert_eq!(
        schema_of(&layers),
        [
            ("dataset".to_string(), DataType::String),
            ("method".into(), DataType::String),
            ("backbone".into(), DataType::String),
            ("seed".into(), DataType::UInt64),
            ("epoch".into(), DataType::UInt32),
            ("layer".into(), DataType::UInt32),
            ("is_final".into(), DataType::Boolean),
            ("token".into(), DataType::String),
            ("probe".into(), DataType::String),
            ("cka".into(), DataType::Float64),
            ("cka_debiased".into(), DataType::Float64),
        ]
    );
    assert_eq!(layers.height(), 8 * 2 * 4 * 2);
    let final_layers: Vec<u32> = layers
        .column("layer")
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .zip({
            let flags = layers.column("is_final").unwrap().bool().unwrap().clone();
            (0..flags.len()).map(move |i| flags.get(i).unwrap())
        })
        .filter_map(|(l, f)| f.then_some(l))
        .collect();
    assert!(
        final_layers.iter().all(|&l| l == 3),
        "final norm numbered after block 2"
    );

    let backbones = read(&study.tables_dir().join("backbones.parquet"));
    assert_eq!(backbones.height(), 1);
    assert_eq!(
        backbones.column("runs").unwrap().u32().unwrap().get(0),
        Some(2),
        "finished runs only"
    );
    assert_eq!(
        backbones
            .column("runs_left_out")
            .unwrap()
            .u32()
            .unwrap()
            .get(0),
        Some(2)
    );
    assert_eq!(
        backbones.column("left_out").unwrap().str().unwrap().get(0),
        Some("seed 2: failed after epoch 1: loss NaN at epoch 2, step 3; seed 3: not started")
    );
    let mean = f64_col(&backbones, "similarity_mean")[0];
    assert!(
        (mean - (similarity[2] + similarity[5]) / 2.0).abs() < 1e-12,
        "mean over the runs' last epochs"
    );
    for name in [
        "accuracy_std",
        "knn_before_mean",
        "knn_after_mean",
        "ece_mean",
    ] {
        assert!(f64_col(&backbones, name)[0].is_finite(), "{name}");
    }

    // An epoch 0 without the probe's train features is scored by its own (random) head, said so.
    let heads: Vec<(u32, String)> = epochs
        .column("epoch")
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .zip(str_col(&epochs, "head"))
        .collect();
    assert!(
        heads
            .iter()
            .all(|(e, h)| h == if *e == 0 { "random" } else { "fine-tuned" }),
        "{heads:?}"
    );

    // Each fit over the fine-tuned epochs, then with epoch 0 added; the
    // temperature-scaled ECE's too (a validation split), which epoch 0's
    // random head has no temperature for.
    let fits = read(&study.tables_dir().join("fits.parquet"));
    assert_eq!(fits.height(), 8);
    assert_eq!(
        str_col(&fits, "metric"),
        [
            "ece",
            "ece",
            "mce",
            "mce",
            "adaptive_ece",
            "adaptive_ece",
            "ece_scaled",
            "ece_scaled"
        ]
    );
    assert_eq!(
        str_col(&fits, "points")[..2],
        ["fine-tuned epochs", "with epoch 0"]
    );
    let points: Vec<u32> = fits
        .column("n_points")
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(
        points,
        [16, 24, 16, 24, 16, 24, 16, 16],
        "4 fine-tuned epochs of finished runs (and their 2 epoch 0s) × 4 layers, medical CLS"
    );

    let space = read(&study.tables_dir().join("space.parquet"));
    assert_eq!(space.height(), 2);
    assert_eq!(
        space.column("in_space").unwrap().dtype(),
        &DataType::Boolean
    );

    // Intervals: the mean's over the two finished runs lies between them;
    // each run's over its test images brackets its similarity.
    let finals = [similarity[2], similarity[5]];
    let (low, high) = (
        f64_col(&backbones, "similarity_ci_low")[0],
        f64_col(&backbones, "similarity_ci_high")[0],
    );
    assert!(
        finals.iter().cloned().fold(f64::INFINITY, f64::min) <= low + 1e-12
            && high <= finals.iter().cloned().fold(0.0, f64::max) + 1e-12
    );
    assert!(low <= mean && mean <= high, "[{low}, {high}] around {mean}");
    let (run_low, run_high, run_sim) = (
        f64_col(&space, "similarity_ci_low"),
        f64_col(&space, "similarity_ci_high"),
        f64_col(&space, "similarity"),
    );
    for i in 0..2 {
        assert!(
            run_low[i] < run_sim[i] && run_sim[i] < run_high[i],
            "run {i}: [{}, {}] around {}",
            run_low[i],
            run_high[i],
            run_sim[i]
        );
    }
    let comparisons = read(&study.tables_dir().join("comparisons.parquet"));
    assert_eq!(comparisons.height(), 0, "one backbone: nothing to compare");
    assert_eq!(
        comparisons.get_column_names()[..4]
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>(),
        ["dataset", "method", "backbone_a", "backbone_b"]
    );
}

/// Marks `run` finished after its one epoch.
fn finish_after_one_epoch(study: &StudyDir, config: &StudyConfig, run: &RunId) {
    let state = RunState {
        dataset: run.dataset.clone(),
        backbone: run.backbone.clone(),
        method: run.method.clone(),
        seed: run.seed,
        config_hash: config.hash(),
        backbone_sha256: "0".repeat(64),
        data_sha256: Default::default(),
        status: Status::Finished,
        epochs: 1,
        last_finished_epoch: 1,
        message: None,
    };
    state.write(&study.run_dir(run)).unwrap();
}

#[test]
fn a_directory_without_a_study_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let msg = write_study_tables(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("not a study directory"), "{msg}");
}

#[test]
fn each_medical_data_set_is_summarised_alone_and_stacked_with_its_name() {
    let text = CONFIG.replace(
        "[datasets.medical]\nkind = \"ham10000\"\nroot = \"ham10000\"",
        "[[datasets.medical]]\nkind = \"ham10000\"\nroot \
            = \"ham10000\"\n[[datasets.medical]]\nname = \"xray\"\nkind \
            = \"medmnist\"\nroot = \"x.npz\"",
    );
    let (dir, config, study) = new_study(&text);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    // xray drifts further from θ₀ than ham10000; seeds 0 and 1 of each finish, 2 and 3 never start.
    for (dataset, drift) in [("ham10000", 1.0), ("xray", 3.0)] {
        let base = base_features(&mut rng);
        eval_file(
            &study.pretrained_eval(dataset, "tiny"),
            &base,
            0.0,
            &mut rng,
        );
        for seed in [0, 1] {
            let run = RunId {
                dataset: dataset.into(),
                backbone: "tiny".into(),
                method: "full".into(),
                seed,
            };
            eval_file(&study.epoch_eval(&run, 1), &base, drift, &mut rng);
            finish_after_one_epoch(&study, &config, &run);
        }
    }
    write_study_tables(dir.path()).unwrap();
    for name in sim_study::tables::file::ALL {
        let table = read(&study.tables_dir().join(name));
        use sim_study::tables::file::{METHOD_COMPARISONS, PRETRAIN, PRETRAIN_EPOCHS};
        let first = match name {
            METHOD_COMPARISONS | PRETRAIN => ["dataset", "backbone"],
            PRETRAIN_EPOCHS => ["backbone", "objective"],
            _ => ["dataset", "method"],
        };
        assert_eq!(
            table.get_column_names()[..2]
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>(),
            first,
            "{name}"
        );
    }
    let epochs = read(&study.tables_dir().join("epochs.parquet"));
    assert_eq!(
        str_col(&epochs, "dataset"),
        [
            "ham10000", "ham10000", "ham10000", "ham10000", "xray", "xray", "xray", "xray"
        ]
    );
    // What each backbone knew before fine-tuning: its epoch 0's k-NN, per data set.
    let pretrain = read(&study.tables_dir().join("pretrain.parquet"));
    assert_eq!(str_col(&pretrain, "dataset"), ["ham10000", "xray"]);
    assert_eq!(str_col(&pretrain, "objective"), ["checkpoint"; 2]);
    let epoch0_knn: Vec<f64> = (0..epochs.height())
        .filter(|&i| epochs.column("epoch").unwrap().u32().unwrap().get(i) == Some(0))
        .map(|i| f64_col(&epochs, "knn_top1")[i])
        .collect();
    assert_eq!(
        f64_col(&pretrain, "knn_top1"),
        [epoch0_knn[0], epoch0_knn[2]]
    );
    assert_eq!(
        pretrain
            .column("probe_balanced_accuracy")
            .unwrap()
            .null_count(),
        2,
        "no train features in these epoch-0 files"
    );
    let backbones = read(&study.tables_dir().join("backbones.parquet"));
    assert_eq!(str_col(&backbones, "dataset"), ["ham10000", "xray"]);
    assert_eq!(
        str_col(&backbones, "left_out"),
        ["seed 2: not started; seed 3: not started"; 2]
    );
    let similarity = f64_col(&backbones, "similarity_mean");
    assert!(
        similarity[1] < similarity[0],
        "each data set's own runs: {similarity:?}"
    );
    let epoch_similarity = f64_col(&epochs, "similarity");
    assert!((similarity[1] - (epoch_similarity[5] + epoch_similarity[7]) / 2.0).abs() < 1e-12);
    // θ* is the best run of the same backbone on the same data set.
    let space = read(&study.tables_dir().join("space.parquet"));
    assert_eq!(
        str_col(&space, "dataset"),
        ["ham10000", "ham10000", "xray", "xray"]
    );
    let accuracy = f64_col(&space, "accuracy");
    let reference: Vec<u64> = space
        .column("reference_seed")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    for pair in [0, 2] {
        let best = if accuracy[pair + 1] > accuracy[pair] {
            1
        } else {
            0
        };
        assert_eq!(reference[pair..pair + 2], [best, best], "{accuracy:?}");
    }
    // ECE, MCE, adaptive ECE and (a validation split: temperature-scaled)
    // ECE, each over the fine-tuned epochs and with epoch 0.
    let fits = read(&study.tables_dir().join("fits.parquet"));
    assert_eq!(
        str_col(&fits, "dataset"),
        [vec!["ham10000"; 8], vec!["xray"; 8]].concat()
    );
}

/// `verdicts.parquet`: each finding per backbone (finding 3 per pair of a
/// supervised and a self-supervised backbone) under each measure, whose
/// estimates are the numbers the other tables hold: finding 1's the runs
/// besides θ* inside T_X of `space.parquet`, finding 2's the slope of
/// `fits.parquet`, finding 3's the difference of `backbones.parquet`'s mean
/// k-NN drops.
#[test]
fn verdicts_state_each_finding_under_each_measure_with_its_share_of_resamples() {
    let text = format!(
        "{CONFIG}[[backbones]]\nname = \"dino\"\ncheckpoint = \"dino.safetensors\"\nfamily \
            = \"dinov2\"\ninput_size = 32\n"
    );
    let (dir, config, study) = new_study(&text);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (backbone, drift) in [("tiny", 1.0), ("dino", 2.0)] {
        let base = base_features(&mut rng);
        eval_file(
            &study.pretrained_eval("ham10000", backbone),
            &base,
            0.0,
            &mut rng,
        );
        for seed in 0..4 {
            let run = RunId {
                dataset: "ham10000".into(),
                backbone: backbone.into(),
                method: "full".into(),
                seed,
            };
            eval_file(
                &study.epoch_eval(&run, 1),
                &base,
                drift * (1.0 + 0.3 * seed as f64),
                &mut rng,
            );
            finish_after_one_epoch(&study, &config, &run);
        }
    }
    write_study_tables(dir.path()).unwrap();
    let verdicts = read(&study.tables_dir().join("verdicts.parquet"));
    let names: Vec<String> = schema_of(&verdicts).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "dataset",
            "method",
            "finding",
            "measure",
            "token",
            "backbone",
            "versus",
            "estimate",
            "estimate_ci_low",
            "estimate_ci_high",
            "share",
            "resamples"
        ]
    );
    let finding: Vec<u32> = verdicts
        .column("finding")
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let (measure, token, backbone, versus) = (
        str_col(&verdicts, "measure"),
        str_col(&verdicts, "token"),
        str_col(&verdicts, "backbone"),
        {
            let v = verdicts.column("versus").unwrap().str().unwrap().clone();
            (0..v.len())
                .map(|i| v.get(i).unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        },
    );
    let (estimate, share) = (f64_col(&verdicts, "estimate"), f64_col(&verdicts, "share"));
    let row = |f: u32, m: &str, t: &str, b: &str| {
        (0..finding.len())
            .find(|&i| finding[i] == f && measure[i] == m && token[i] == t && backbone[i] == b)
    };
    for b in ["tiny", "dino"] {
        for (m, t) in [
            ("cka", "cls"),
            ("cka_debiased", "cls"),
            ("cka", "patch_mean"),
        ] {
            for f in [1, 2] {
                assert!(
                    row(f, m, t, b).is_some(),
                    "finding {f} of {b} under {m}/{t}"
                );
            }
        }
    }
    assert!(share.iter().all(|s| (0.0..=1.0).contains(s)), "{share:?}");
    assert!(
        verdicts
            .column("resamples")
            .unwrap()
            .u32()
            .unwrap()
            .into_no_null_iter()
            .all(|r| r == 1000)
    );

    let space = read(&study.tables_dir().join("space.parquet"));
    let (space_backbone, inside) = (
        str_col(&space, "backbone"),
        space.column("in_space").unwrap().bool().unwrap().clone(),
    );
    let (seed, reference) = (
        space.column("seed").unwrap().u64().unwrap().clone(),
        space
            .column("reference_seed")
            .unwrap()
            .u64()
            .unwrap()
            .clone(),
    );
    let fits = read(&study.tables_dir().join("fits.parquet"));
    let (fit_backbone, metric, points, slope) = (
        str_col(&fits, "backbone"),
        str_col(&fits, "metric"),
        str_col(&fits, "points"),
        f64_col(&fits, "slope"),
    );
    for b in ["tiny", "dino"] {
        let beside_best = (0..space.height())
            .filter(|&i| {
                space_backbone[i] == b
                    && inside.get(i) == Some(true)
                    && seed.get(i) != reference.get(i)
            })
            .count();
        assert_eq!(
            estimate[row(1, "cka", "cls", b).unwrap()],
            beside_best as f64,
            "{b}"
        );
        let fit = (0..fits.height())
            .find(|&i| {
                fit_backbone[i] == b && metric[i] == "ece" && points[i] == "fine-tuned epochs"
            })
            .unwrap();
        assert!(
            (estimate[row(2, "cka", "cls", b).unwrap()] - slope[fit]).abs() < 1e-12,
            "{b}: the verdict's slope is the fit's"
        );
    }
    assert_ne!(
        estimate[row(2, "cka", "cls", "tiny").unwrap()],
        estimate[row(2, "cka_debiased", "cls", "tiny").unwrap()],
        "each measure its own points"
    );

    // Finding 3: `tiny` (family vit) against `dino` (dinov2), k-NN top-1.
    let third: Vec<usize> = (0..finding.len()).filter(|&i| finding[i] == 3).collect();
    assert_eq!(third.len(), 1);
    let i = third[0];
    assert_eq!(
        (
            measure[i].as_str(),
            backbone[i].as_str(),
            versus[i].as_str()
        ),
        ("knn_top1", "tiny", "dino")
    );
    let backbones = read(&study.tables_dir().join("backbones.parquet"));
    let drop = |j: usize| {
        f64_col(&backbones, "knn_before_mean")[j] - f64_col(&backbones, "knn_after_mean")[j]
    };
    assert_eq!(str_col(&backbones, "backbone"), ["tiny", "dino"]);
    assert!(
        (estimate[i] - (drop(1) - drop(0))).abs() < 1e-12,
        "{} vs {}",
        estimate[i],
        drop(1) - drop(0)
    );
    let (low, high) = (
        f64_col(&verdicts, "estimate_ci_low")[i],
        f64_col(&verdicts, "estimate_ci_high")[i],
    );
    assert!(
        low <= estimate[i] && estimate[i] <= high,
        "[{low}, {high}] around {}",
        estimate[i]
    );
    assert!(
        versus
            .iter()
            .enumerate()
            .all(|(j, v)| (finding[j] == 3) != v.is_empty()),
        "versus only in finding 3: {versus:?}"
    );
}

/// A study with `evaluation.natural_every_epoch = false`: epoch 1 of a
/// two-epoch run has no natural images; its k-NN columns are null and its
/// natural probe has no rows, while epoch 0 and the last epoch give every
/// summary as before.
#[test]
fn an_epoch_without_natural_images_has_null_knn_and_the_summaries_stand() {
    let (dir, config, study) = new_study(&CONFIG.replace(
        "fit_levels = 4",
        "fit_levels = 4\nnatural_every_epoch = false",
    ));
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let base = base_features(&mut rng);
    eval_file(
        &study.pretrained_eval("ham10000", "tiny"),
        &base,
        0.0,
        &mut rng,
    );
    let run = RunId {
        dataset: "ham10000".into(),
        backbone: "tiny".into(),
        method: "full".into(),
        seed: 0,
    };
    written_eval(&study.epoch_eval(&run, 1), &base, 1.0, &mut rng, false);
    eval_file(&study.epoch_eval(&run, 2), &base, 2.0, &mut rng);
    finish_after_one_epoch(&study, &config, &run);
    let mut state = RunState::read(&study.run_dir(&run)).unwrap().unwrap();
    (state.epochs, state.last_finished_epoch) = (2, 2); // finished after two
    state.write(&study.run_dir(&run)).unwrap();
    write_study_tables(dir.path()).unwrap();
    let epochs = read(&study.tables_dir().join("epochs.parquet"));
    let knn = epochs.column("knn_top1").unwrap().f64().unwrap().clone();
    assert_eq!(
        (
            knn.get(0).is_some(),
            knn.get(1).is_some(),
            knn.get(2).is_some()
        ),
        (true, false, true),
        "{knn:?}"
    );
    let layers = read(&study.tables_dir().join("layers.parquet"));
    let (epoch, probe) = (
        layers.column("epoch").unwrap().u32().unwrap().clone(),
        str_col(&layers, "probe"),
    );
    assert!(
        !(0..layers.height()).any(|i| epoch.get(i) == Some(1) && probe[i] == "natural"),
        "no natural probe at epoch 1"
    );
    assert!((0..layers.height()).any(|i| epoch.get(i) == Some(2) && probe[i] == "natural"));
    let backbones = read(&study.tables_dir().join("backbones.parquet"));
    assert!(
        f64_col(&backbones, "knn_after_mean")[0].is_finite()
            && f64_col(&backbones, "knn_before_mean")[0].is_finite()
    );
}

/// Two methods, the gentle one with WiSE-FT at α = 0 and 0.5.
#[test]
fn methods_are_compared_by_a_permutation_test_per_backbone_and_wise_ft_gives_a_path() {
    let text = format!(
        "{CONFIG}[[methods]]\nname = \"heavy\"\nkind = \"full\"\n[[methods]]\nname \
            = \"gentle\"\nkind = \"full\"\nlayer_decay = 0.5\nwise_ft = [0.0, 0.5]\n"
    );
    let (dir, config, study) = new_study(&text);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let base = base_features(&mut rng);
    eval_file(
        &study.pretrained_eval("ham10000", "tiny"),
        &base,
        0.0,
        &mut rng,
    );
    for (method, drift) in [("heavy", 3.0), ("gentle", 0.5)] {
        for seed in [0, 1, 2, 3] {
            let run = RunId {
                dataset: "ham10000".into(),
                backbone: "tiny".into(),
                method: method.into(),
                seed,
            };
            eval_file(&study.epoch_eval(&run, 1), &base, drift, &mut rng);
            if method == "gentle" {
                eval_file(&study.wise_ft_eval(&run, 0.0), &base, 0.0, &mut rng);
                eval_file(&study.wise_ft_eval(&run, 0.5), &base, drift / 2.0, &mut rng);
            }
            finish_after_one_epoch(&study, &config, &run);
        }
    }
    write_study_tables(dir.path()).unwrap();
    let tests = read(&study.tables_dir().join("method_comparisons.parquet"));
    assert_eq!(
        tests.get_column_names()[..4]
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>(),
        ["dataset", "backbone", "method_a", "method_b"]
    );
    assert_eq!(tests.height(), 1, "one pair of methods");
    assert_eq!(
        str_col(&tests, "method_a"),
        ["gentle"],
        "the method with the higher mean comes first"
    );
    // The same test, recomputed from the space table's final similarities.
    let space = read(&study.tables_dir().join("space.parquet"));
    let finals = |m: &str| -> Vec<f64> {
        let (methods, similarity) = (str_col(&space, "method"), f64_col(&space, "similarity"));
        methods
            .iter()
            .zip(similarity)
            .filter(|(n, _)| *n == m)
            .map(|(_, s)| s)
            .collect()
    };
    let (a, b) = (finals("gentle"), finals("heavy"));
    assert_eq!((a.len(), b.len()), (4, 4));
    let e = &config.evaluation;
    let expected =
        sim_metrics::stats::permutation_test(&a, &b, e.permutation_resamples, e.bootstrap_seed)
            .unwrap();
    assert_eq!(f64_col(&tests, "p_value"), [expected.p_value]);
    assert!(
        expected.exact && (expected.p_value - 1.0 / 70.0).abs() < 1e-12,
        "4 + 4 runs, fully separated: the smallest p, 1/C(8,4)"
    );
    assert!(
        (f64_col(&tests, "difference")[0] - (a.iter().sum::<f64>() - b.iter().sum::<f64>()) / 4.0)
            .abs()
            < 1e-12
    );

    // The WiSE-FT path: per gentle run α = 0 (θ₀'s backbone: similarity 1),
    // 0.5, and 1, the last epoch (the space table's similarity).
    let path = read(&study.tables_dir().join("wise_ft.parquet"));
    assert_eq!(str_col(&path, "method"), ["gentle"; 12]);
    assert_eq!(f64_col(&path, "alpha"), [0.0, 0.5, 1.0].repeat(4));
    let similarity = f64_col(&path, "similarity");
    for (run, end) in a.iter().enumerate() {
        assert!(
            (similarity[3 * run] - 1.0).abs()
                < sim_metrics::cka::feature_form_agreement().max(1e-9),
            "α = 0: {}",
            similarity[3 * run]
        );
        assert!(
            similarity[3 * run + 1] < 1.0 && similarity[3 * run + 1] > *end,
            "α = 0.5 between: {similarity:?}"
        );
        assert_eq!(similarity[3 * run + 2], *end);
    }
}

/// Seed `seed`'s run of the backbone `tiny`.
fn tiny_run(seed: u64) -> RunId {
    RunId {
        dataset: "ham10000".into(),
        backbone: "tiny".into(),
        method: "full".into(),
        seed,
    }
}

/// A study of seeds 0 and 1, each finished after one epoch.
fn two_finished_seeds(dir: &Path) -> StudyDir {
    let mut config = StudyConfig::from_toml_str(
        &CONFIG.replace("seeds = [0, 1, 2, 3]", "seeds = [0, 1]"),
        Path::new("two.toml"),
    )
    .unwrap();
    config.study.output_dir = Some(dir.to_owned());
    let study = StudyDir::new(dir);
    study.write_resolved_config(&config).unwrap();
    write_split(&study, "ham10000");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let base = base_features(&mut rng);
    eval_file(
        &study.pretrained_eval("ham10000", "tiny"),
        &base,
        0.0,
        &mut rng,
    );
    for seed in [0, 1] {
        eval_file(
            &study.epoch_eval(&tiny_run(seed), 1),
            &base,
            1.0 + seed as f64,
            &mut rng,
        );
        finish_after_one_epoch(&study, &config, &tiny_run(seed));
    }
    study
}

fn seeds_in_epochs_table(study: &StudyDir) -> Vec<u64> {
    let epochs = read(&study.tables_dir().join("epochs.parquet"));
    let mut seeds: Vec<u64> = epochs
        .column("seed")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    seeds.dedup();
    seeds
}

/// A run committed while the tables are being computed (a sweep or a
/// Slurm array still running while `xtask finish` makes them), here a
/// finished run folder put back with its old modification times (as `cp -a`
/// or `tar x` would): the tables written from the study as it was read are
/// stale, and the next freshness check says so (it compared clocks, and
/// kept them for good).
#[test]
fn a_run_committed_while_the_tables_are_computed_makes_them_stale() {
    let dir = tempfile::tempdir().unwrap();
    let study = two_finished_seeds(&dir.path().join("study"));
    let (seed1, aside) = (study.run_dir(&tiny_run(1)), dir.path().join("seed-01"));
    std::fs::rename(&seed1, &aside).unwrap();
    let pause = dir.path().join("paused");
    let mut tables = std::process::Command::new(env!("CARGO_BIN_EXE_sim-metrics"))
        .arg("study")
        .arg("--study")
        .arg(study.root())
        .env(
            sim_study::crash::PAUSE_VAR,
            format!("tables-computed:{}", pause.display()),
        )
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !pause.exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the table stage never reached its pause point"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::fs::rename(&aside, &seed1).unwrap();
    std::fs::remove_file(&pause).unwrap();
    assert!(tables.wait().unwrap().success());
    assert_eq!(
        seeds_in_epochs_table(&study),
        [0],
        "the tables hold the study as it was read"
    );
    assert!(
        !sim_metrics::tables::up_to_date(study.root()),
        "a run came in after the read: the tables are stale"
    );
    write_study_tables(study.root()).unwrap();
    assert_eq!(seeds_in_epochs_table(&study), [0, 1]);
    assert!(sim_metrics::tables::up_to_date(study.root()));
}

/// Freshness is decided by content: touching an input keeps the tables,
/// changing one does not, and a moved study stays up to date. A
/// hand-edited `study.toml` is refused, naming the hash it contradicts.
#[test]
fn tables_are_fresh_by_content_and_a_hand_edited_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let study = two_finished_seeds(&dir.path().join("study"));
    assert!(!sim_metrics::tables::up_to_date(study.root()));
    write_study_tables(study.root()).unwrap();
    assert!(sim_metrics::tables::up_to_date(study.root()));
    let state = RunState::path(&study.run_dir(&tiny_run(0)));
    let text = std::fs::read_to_string(&state).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&state, &text).unwrap();
    assert!(
        sim_metrics::tables::up_to_date(study.root()),
        "the same run.toml, rewritten: still up to date"
    );
    let moved = dir.path().join("moved");
    std::fs::rename(study.root(), &moved).unwrap();
    assert!(
        sim_metrics::tables::up_to_date(&moved),
        "a moved study is the same study"
    );
    let study = StudyDir::new(&moved);
    std::fs::write(
        RunState::path(&study.run_dir(&tiny_run(0))),
        text.replace("status = \"finished\"", "status = \"failed\""),
    )
    .unwrap();
    assert!(
        !sim_metrics::tables::up_to_date(&moved),
        "a changed run.toml: stale"
    );

    let edited = std::fs::read_to_string(study.resolved_config())
        .unwrap()
        .replace("similarity_threshold = 0.5", "similarity_threshold = 0.9");
    std::fs::write(study.resolved_config(), edited).unwrap();
    assert!(!sim_metrics::tables::up_to_date(&moved));
    let msg = write_study_tables(&moved).unwrap_err().to_string();
    assert!(
        msg.contains("study.toml does not match") && msg.contains("study.sha256"),
        "{msg}"
    );
}

#[test]
fn every_measure_of_the_study_has_rows_with_its_chance_level_and_a_finding_2_verdict() {
    use sim_study::config::Measure;
    use sim_study::tables::rows::{LayerRow, SimilarityRow, VerdictRow};
    use sim_study::tables::schema;
    let all: Vec<String> = Measure::ALL.iter().map(|m| format!("\"{m}\"")).collect();
    let text = format!(
        "{CONFIG}[evaluation.similarity]\nmeasures = [{}]\nnull_resamples = 5\nalignment_k = 5\n",
        all.join(", ")
    );
    let (dir, config, study) = new_study(&text);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let base = base_features(&mut rng);
    eval_file(
        &study.pretrained_eval("ham10000", "tiny"),
        &base,
        0.0,
        &mut rng,
    );
    for seed in 0..4 {
        let drift = 1.0 + 0.5 * seed as f64;
        eval_file(
            &study.epoch_eval(&tiny_run(seed), 1),
            &base,
            drift,
            &mut rng,
        );
        finish_after_one_epoch(&study, &config, &tiny_run(seed));
    }
    write_study_tables(dir.path()).unwrap();
    let rows: Vec<SimilarityRow> = schema::read(&study.table("similarity.parquet")).unwrap();
    // 4 runs × epochs 0 and 1 × 4 layers × 8 measures.
    assert_eq!(rows.len(), 4 * 2 * 4 * 8);
    let layers: Vec<LayerRow> = schema::read(&study.table("layers.parquet")).unwrap();
    for r in &rows {
        let measure = Measure::ALL.iter().find(|m| m.name() == r.measure).unwrap();
        let (mean, bound) = (r.null_mean.unwrap(), r.null_q95.unwrap());
        assert!(mean.is_finite() && bound.is_finite(), "{r:?}");
        if r.epoch == 0 {
            // The pre-trained model against itself: the identity value, above chance.
            let identity = if measure.higher_is_similar() {
                1.0
            } else {
                0.0
            };
            assert!((r.value - identity).abs() < 1e-6, "{r:?}");
            assert_eq!(r.above_chance, Some(true), "{r:?}");
        }
        assert_eq!(
            r.above_chance,
            Some(measure.oriented(r.value) > measure.oriented(bound))
        );
        // CKA's rows are layers.parquet's medical CLS values.
        if matches!(measure, Measure::Cka | Measure::CkaDebiased) {
            let l = layers
                .iter()
                .find(|l| {
                    (l.seed, l.epoch, l.layer) == (r.seed, r.epoch, r.layer)
                        && l.probe == "medical"
                        && l.token == "cls"
                })
                .unwrap();
            let want = if *measure == Measure::Cka {
                l.cka
            } else {
                l.cka_debiased
            };
            assert_eq!(r.value, want);
        }
    }
    // Finding 2 under each measure besides CKA: a row each, where its fit
    // can be made (4 layers × 4 runs of points here).
    let verdicts: Vec<VerdictRow> = schema::read(&study.table("verdicts.parquet")).unwrap();
    for m in &Measure::ALL[2..] {
        let found: Vec<_> = verdicts.iter().filter(|v| v.measure == m.name()).collect();
        assert_eq!(found.len(), 1, "{m}: {found:?}");
        assert_eq!((found[0].finding, found[0].token.as_str()), (2, "cls"));
    }
}

/// Validation accuracy of an evaluation file's `val.logits` (argmax, first on ties).
fn validation_accuracy(path: &Path) -> f64 {
    let file = eval_file::EvalFile::open(path).unwrap();
    let Ok((shape, Values::Float(logits))) = file.decoded(eval_file::VAL_LOGITS) else {
        panic!("f32 validation logits")
    };
    let Ok((_, Values::Int(labels))) = file.decoded(eval_file::VAL_LABELS) else {
        panic!("i64 labels")
    };
    let right = logits
        .chunks(shape[1])
        .zip(&labels)
        .filter(|(row, y)| {
            let best = (0..row.len()).fold(0, |b, k| if row[k] > row[b] { k } else { b });
            best as i64 == **y
        })
        .count();
    right as f64 / labels.len() as f64
}

#[test]
fn theta_star_is_picked_on_the_validation_split_when_asked_and_refused_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let study = two_finished_seeds(dir.path());
    let mut config = study.read_config().unwrap();
    config.evaluation.select_on = SelectOn::Validation;
    study.write_resolved_config(&config).unwrap();
    write_study_tables(dir.path()).unwrap();
    let accuracy: Vec<f64> = [0, 1]
        .map(|s| validation_accuracy(&study.epoch_eval(&tiny_run(s), 1)))
        .to_vec();
    // The better validation accuracy; the lower seed on a tie.
    let best = if accuracy[1] > accuracy[0] { 1 } else { 0 };
    let space = read(&study.tables_dir().join("space.parquet"));
    let reference: Vec<u64> = space
        .column("reference_seed")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(reference, [best, best], "validation accuracy {accuracy:?}");
    let written = std::fs::read_to_string(study.resolved_config()).unwrap();
    assert!(written.contains("select_on = \"validation\""), "{written}");

    // An evaluation without the validation split's logits: an error naming the field.
    let path = study.epoch_eval(&tiny_run(1), 1);
    let file = eval_file::EvalFile::open(&path).unwrap();
    let metadata = file.metadata().ok().map(|m| m.to_map());
    let kept: Vec<_> = file
        .raw_tensors()
        .into_iter()
        .filter(|t| !t.name.starts_with("val."))
        .collect();
    sim_study::tensors::write_safetensors(&path, kept, metadata).unwrap();
    let e = write_study_tables(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("evaluation.select_on") && e.contains("no validation split"),
        "{e}"
    );
}
