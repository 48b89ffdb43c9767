//! The CI study end to end on the real data (`SIM_DATA_DIR`): data, two
//! fine-tuning runs, tables; skipped, with a printed line, without the data.

use super::*;
use sim_study::StudyDir;
use polars::prelude::*;
use sim_study::real_data::real_data_dir;
use sim_study::tensors::{Values, decode};
use sim_train::CpuBackend;
use sim_train::data::batch::Batcher;
use sim_train::data::prepare::PreparedDataset;
use sim_train::data::transform::Normalisation;
use sim_train::model::{LoadOptions, load};

#[test]
fn ci_study_runs_end_to_end_on_the_real_data() {
    let Some(_) = real_data_dir("ham10000", "ci_study_runs_end_to_end_on_the_real_data") else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config_path = root.join("configs/ci.toml");
    let mut config = StudyConfig::from_file(&config_path).unwrap();
    let out = tempfile::tempdir().unwrap();
    config.study.output_dir = Some(out.path().join("ci"));
    let tables = run_study(&config, &root.join("configs")).unwrap();
    let study = StudyDir::new(out.path().join("ci"));
    // A second call finds everything done and changes nothing.
    let epochs_file = study.tables_dir().join("epochs.parquet");
    let before = std::fs::read(&epochs_file).unwrap();
    run_study(&config, &root.join("configs")).unwrap();
    assert_eq!(std::fs::read(&epochs_file).unwrap(), before);
    assert_eq!(tables.len(), sim_study::tables::file::ALL.len());

    let epochs = ParquetReader::new(std::fs::File::open(out.path().join("ci/tables/epochs.parquet")).unwrap()).finish().unwrap();
    let col = |name: &str| -> Vec<f64> { epochs.column(name).unwrap().f64().unwrap().into_no_null_iter().collect() };
    let epoch: Vec<u32> = epochs.column("epoch").unwrap().u32().unwrap().into_no_null_iter().collect();
    assert_eq!(epoch, [0, 1, 2, 0, 1, 2], "two seeds, epoch 0 and two epochs each");
    let (balanced, similarity) = (col("balanced_accuracy"), col("similarity"));
    for (i, e) in epoch.iter().enumerate() {
        if *e == 0 {
            assert!((similarity[i] - 1.0).abs() < 1e-9, "epoch 0 is the backbone itself");
        } else {
            assert!(similarity[i] < 1.0);
        }
        if *e == 2 {
            // Chance is 1/7 ≈ 0.14 over the seven classes.
            assert!(balanced[i] > 0.25, "balanced accuracy {} after 2 epochs", balanced[i]);
        }
    }

    // Epoch 0's features are the pre-trained backbone's: recompute a few.
    let bytes = std::fs::read(study.pretrained_eval("vit-tiny")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (shape, Values::Float(stored)) = decode(&file.tensor("probe.medical.final.cls").unwrap()).unwrap() else { panic!() };
    let device = Default::default();
    let backbone = &config.backbones[0];
    let model = load::<CpuBackend>(&backbone.checkpoint_path(&root.join("configs")), &LoadOptions::for_backbone(backbone), &device).unwrap().model;
    let mut medical = PreparedDataset::load(&config, &study, sim_study::config::DatasetRole::Medical).unwrap();
    let cache = medical.image_cache(&study, 32).unwrap();
    let labels: Vec<usize> = medical.dataset.samples.iter().map(|s| s.label).collect();
    let (mean, std) = sim_study::config::Family::Vit.normalisation().unwrap();
    let batcher = Batcher { cache: &cache, labels: &labels, size: 32, norm: Normalisation { mean, std } };
    let first: Vec<usize> = medical.test_indices().into_iter().take(4).collect();
    let out = model.forward(batcher.eval::<CpuBackend>(&first, &device).images);
    let (cls, _) = out.cls_and_patch_mean(&out.final_tokens);
    let ours: Vec<f32> = cls.into_data().to_vec().unwrap();
    let width = shape[1];
    for (a, b) in ours.iter().zip(&stored[..4 * width]) {
        assert!((*a as f64 - b).abs() <= 2e-3 * b.abs().max(1.0), "{a} vs stored f16 {b}");
    }
}

#[test]
fn a_bad_input_size_stops_the_study_before_anything_is_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut config = StudyConfig::from_file(&root.join("configs/ci.toml")).unwrap();
    let out = tempfile::tempdir().unwrap();
    config.study.output_dir = Some(out.path().join("ci"));
    config.backbones[0].input_size = 36; // the tiny ViT's patch is 8
    let msg = format!("{:#}", run_study(&config, &root.join("configs")).unwrap_err());
    assert!(msg.contains("backbones `vit-tiny`") && msg.contains("not a multiple of the patch size 8"), "{msg}");
    assert!(!out.path().join("ci").exists(), "the study folder was written before the check");
}

/// The smoke study (a few hundred real images, two tiny backbones) from
/// nothing to its report: every figure, table and the report are written.
#[test]
fn smoke_study_runs_from_data_to_report() {
    let Some(_) = real_data_dir("ham10000", "smoke_study_runs_from_data_to_report") else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut config = StudyConfig::from_file(&root.join("configs/smoke.toml")).unwrap();
    let out = tempfile::tempdir().unwrap();
    config.study.output_dir = Some(out.path().join("smoke"));
    run_study(&config, &root.join("configs")).unwrap();
    let study = out.path().join("smoke");
    let figures = sim_plot::figures_dir(&study);
    for name in sim_plot::figures::NAMES.iter().filter(|n| **n != "fig3_attention") {
        for ext in ["png", "svg"] {
            assert!(figures.join(format!("{name}.{ext}")).exists(), "{name}.{ext}");
        }
    }
    for backbone in &config.backbones {
        assert!(figures.join(format!("fig3_attention_{}.png", backbone.name)).exists(), "fig3 of {}", backbone.name);
    }
    for table in ["table1.md", "table1.csv", "table2.md", "table2.csv"] {
        assert!(StudyDir::new(&study).tables_dir().join(table).exists(), "{table}");
    }
    let report = std::fs::read_to_string(sim_plot::report_path(&study)).unwrap();
    assert!(!report.contains("Left out"), "every figure has its data:\n{report}");
    assert!(report.contains("## The paper's three findings"));
    // A second call finds the figures newer than the tables and keeps them.
    let before = std::fs::metadata(sim_plot::report_path(&study)).unwrap().modified().unwrap();
    run_study(&config, &root.join("configs")).unwrap();
    assert_eq!(std::fs::metadata(sim_plot::report_path(&study)).unwrap().modified().unwrap(), before);
}
