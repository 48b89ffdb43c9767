//! Every figure, table and the report from small tables the test writes (in
//! the schema `sim-metrics study` writes), on a full study and on edge cases:
//! one run of one epoch, a failed run, a constant metric, no finished run.
//! Checked: the files, the PNG sizes, and in the SVG the axis labels and one
//! series per backbone.

use sim_plot::figures::NAMES;
use sim_study::tables::rows::{
    BackboneRow, BinRow, ClassRow, ComparisonRow, EpochRow, FitRow, ImageRow, Kept, KnnByK,
    LayerRow, MethodComparisonRow, PatchRow, SimilarityRow, SpaceRow, Summary, Table1Metric,
    Table1Stats, TestScores, VerdictRow, WiseFtRow,
};
use sim_study::tables::schema::{self, Shape, Table};

/// The learning curves of pre-training: a study whose backbones are all
/// checkpoint files (these) has none.
const PRETRAIN_CURVES: &str = "pretrain_knn";
use sim_plot::study::Study;
use sim_plot::style::{FULL_WIDTH, SINGLE_COLUMN, inches};
use sim_plot::{Options, render_study};
use sim_study::config::Measure;
use sim_study::tables::{col, file};
use sim_study::{StudyConfig, StudyDir};
use std::path::Path;

fn config(backbones: &[(&str, &str)], seeds: &[u64]) -> StudyConfig {
    let mut text = format!(
        "[study]\nname = \"synthetic\"\nseeds = {seeds:?}\n[datasets.medical]\nkind \
            = \"ham10000\"\nroot = \"h\"\n\
         [datasets.natural]\nkind = \"image-folder\"\nroot \
         = \"n\"\n[evaluation]\nfit_levels = 4\nknn_k = [20]\n\
         [[methods]]\nname = \"full\"\nkind = \"full\"\nwise_ft = [0.0, 0.5]\n"
    );
    for (name, family) in backbones {
        text.push_str(&format!(
            "[[backbones]]\nname = \"{name}\"\ncheckpoint \
            = \"x.safetensors\"\nfamily = \"{family}\"\ninput_size = 32\n"
        ));
    }
    StudyConfig::from_toml_str(&text, Path::new("synthetic.toml")).unwrap()
}

/// Writes a table's rows, through the schema `sim-metrics study` writes with.
fn write<T: Table>(dir: &Path, rows: &[T]) {
    let path = StudyDir::new(dir).table(T::FILE);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let shape = Shape { knn_k: vec![20] };
    schema::write(&path, rows, &shape).unwrap();
}

/// A table's rows, as the figures read them.
fn read<T: Table>(dir: &Path) -> Vec<T> {
    schema::read(&StudyDir::new(dir).table(T::FILE)).unwrap()
}

/// The one medical data set, `h`, and the one method, `full`, of the
/// synthetic study's rows.
const DATASET: &str = "h";
const METHOD: &str = "full";

/// A run: backbone, seed, status, last epoch, and how it learns.
struct Run {
    backbone: &'static str,
    seed: u64,
    status: &'static str,
    epochs: u32,
    /// Accuracy gained per epoch (0: a constant metric).
    gain: f64,
}

/// The per-epoch noise of a run's metrics.
fn noise(r: &Run, epoch: usize) -> f64 {
    (r.seed as f64 * 0.37 + epoch as f64 * 0.11).sin() * 0.01
}

/// A run's CKA to epoch 0 at an epoch and layer.
fn lc_of(r: &Run, epoch: usize, layer: usize) -> f64 {
    1.0 - 0.04 * epoch as f64 * (layer as f64 + 1.0) - noise(r, epoch).abs()
}

/// A run's metrics at an epoch: (accuracy, ECE, similarity, k-NN top-1).
fn metrics(r: &Run, epoch: u32) -> (f64, f64, f64, f64) {
    let (t, noise) = (epoch as f64, noise(r, epoch as usize));
    (
        0.5 + r.gain * t + if r.gain == 0.0 { 0.0 } else { noise },
        0.05 + 0.04 * t + noise.abs(),
        1.0 - 0.15 * t - noise.abs(),
        0.8 - 0.05 * t + noise,
    )
}

/// `verdicts.parquet`: the finished runs through sim-metrics' findings, as
/// `sim-metrics study` computes them (every measure reads the same numbers
/// here). Finding 2 only for the `fitted` backbones, as the fits table has it.
/// What a model kept: its similarity, and its k-NN top-1 at the one k.
fn kept(similarity: f64, knn: f64) -> Kept {
    Kept {
        similarity,
        knn_top1: Some(knn),
        knn_top1_k: KnnByK(vec![(20, Some(knn))]),
    }
}

fn verdicts(config: &StudyConfig, finished: &[&Run], fitted: &[&str]) -> Vec<VerdictRow> {
    use sim_metrics::findings::{
        Certainty, calibration_follows_similarity, forgets_less, runs_beside_best,
    };
    use sim_metrics::space::RunPoint;
    use sim_metrics::stats::draw_resamples;
    use sim_study::config::Paradigm;
    let e = &config.evaluation;
    let of = |b: &str| {
        finished
            .iter()
            .copied()
            .filter(|r| r.backbone == b)
            .collect::<Vec<_>>()
    };
    let row = |finding,
               (measure, token): (&str, &str),
               backbone: &str,
               versus: Option<&str>,
               c: Certainty| {
        VerdictRow {
            dataset: DATASET.into(),
            method: METHOD.into(),
            finding,
            measure: measure.into(),
            token: token.into(),
            backbone: backbone.into(),
            versus: versus.map(String::from),
            estimate: c.estimate,
            estimate_ci_low: c.interval.map(|i| i.0),
            estimate_ci_high: c.interval.map(|i| i.1),
            share: c.share,
            resamples: c.resamples as u32,
        }
    };
    let mut rows = Vec::new();
    for b in config
        .backbones
        .iter()
        .map(|b| b.name.as_str())
        .filter(|b| !of(b).is_empty())
    {
        let runs = of(b);
        let resamples = draw_resamples(runs.len(), e.bootstrap_resamples, e.bootstrap_seed);
        let space: Vec<RunPoint> = runs
            .iter()
            .map(|r| {
                let (accuracy, _, similarity, _) = metrics(r, r.epochs);
                RunPoint {
                    backbone: b.into(),
                    seed: r.seed,
                    similarity,
                    accuracy,
                    selected_by: accuracy,
                }
            })
            .collect();
        let one = runs_beside_best(
            &space,
            e.similarity_threshold,
            e.accuracy_tolerance,
            &resamples,
        )
        .unwrap();
        // Each run's fine-tuned epochs' CLS points (layers 1 to 3), with the epoch's ECE.
        let points = |r: &Run| -> Vec<(f64, f64)> {
            (1..=r.epochs)
                .flat_map(|e| (1..=3).map(move |layer| (e, layer)))
                .map(|(e, layer)| (lc_of(r, e as usize, layer), metrics(r, e).1))
                .collect()
        };
        let two = fitted.contains(&b).then(|| {
            calibration_follows_similarity(
                &runs.iter().map(|r| points(r)).collect::<Vec<_>>(),
                e.fit_levels,
                &resamples,
            )
            .unwrap()
        });
        for measure in [
            (col::CKA, "cls"),
            (col::CKA_DEBIASED, "cls"),
            (col::CKA, "patch_mean"),
        ] {
            rows.push(row(1, measure, b, None, one));
            rows.extend(two.map(|two| row(2, measure, b, None, two)));
        }
    }
    let side = |p: Paradigm| {
        config
            .backbones
            .iter()
            .filter(move |b| b.paradigm() == p && !of(&b.name).is_empty())
            .map(|b| b.name.as_str())
    };
    for s in side(Paradigm::Supervised) {
        for o in side(Paradigm::SelfSupervised) {
            let drops = |b: &str| {
                of(b)
                    .iter()
                    .map(|r| 0.8 - metrics(r, r.epochs).3)
                    .collect::<Vec<_>>()
            };
            let (ds, dso) = (drops(s), drops(o));
            let resamples = [
                draw_resamples(ds.len(), e.bootstrap_resamples, e.bootstrap_seed),
                draw_resamples(dso.len(), e.bootstrap_resamples, e.bootstrap_seed + 1),
            ];
            let c = forgets_less(&ds, &dso, [&resamples[0], &resamples[1]]).unwrap();
            rows.push(row(3, (col::KNN_TOP1, "cls"), s, Some(o), c));
        }
    }
    rows
}

/// `classes.parquet`: three classes per run and epoch; `malignant`'s
/// sensitivity is 0.2 per epoch plus 0.1 per seed, `rare` has no test image.
fn class_rows(runs: &[Run]) -> Vec<ClassRow> {
    let mut rows = Vec::new();
    for r in runs {
        for epoch in 0..=r.epochs {
            let classes = [
                ("benign", 30, Some(0.9), Some(0.6), Some(0.8)),
                (
                    "malignant",
                    10,
                    Some(0.2 * epoch as f64 + 0.1 * r.seed as f64),
                    Some(0.9),
                    Some(0.8),
                ),
                ("rare", 0, None, Some(1.0), None),
            ];
            for (class, (name, support, sensitivity, specificity, auroc)) in
                classes.into_iter().enumerate()
            {
                rows.push(ClassRow {
                    dataset: DATASET.into(),
                    method: METHOD.into(),
                    backbone: r.backbone.into(),
                    seed: r.seed,
                    epoch,
                    head: col::HEAD_FINE_TUNED.into(),
                    class: class as u32,
                    class_name: name.into(),
                    support,
                    sensitivity,
                    specificity,
                    auroc,
                });
            }
        }
    }
    rows
}

/// Writes every table of a study with `runs` (each backbone's epoch 0 first).
fn study(dir: &Path, backbones: &[(&str, &str)], runs: &[Run]) {
    let seeds: Vec<u64> = runs
        .iter()
        .map(|r| r.seed)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let config = config(backbones, if seeds.is_empty() { &[0] } else { &seeds });
    StudyDir::new(dir).write_resolved_config(&config).unwrap();
    let (dataset, method) = (|| DATASET.to_string(), || METHOD.to_string());

    let mut epochs = Vec::new();
    let mut layers = Vec::new();
    for r in runs {
        for epoch in 0..=r.epochs {
            let (accuracy, ece, similarity, knn) = metrics(r, epoch);
            epochs.push(EpochRow {
                dataset: dataset(),
                method: method(),
                backbone: r.backbone.into(),
                seed: r.seed,
                epoch,
                status: r.status.into(),
                head: if epoch == 0 {
                    col::HEAD_PROBE
                } else {
                    col::HEAD_FINE_TUNED
                }
                .into(),
                scores: TestScores {
                    accuracy,
                    balanced_accuracy: accuracy,
                    macro_f1: accuracy,
                    auroc: Some(0.5 + accuracy / 2.0),
                    ece,
                    mce: ece,
                    adaptive_ece: ece,
                },
                nll: 1.0 - accuracy,
                brier: 0.8 - accuracy,
                // Fine-tuned epochs: scaled at T = 1.5, half the ECE left
                // (`dino`'s a quarter higher: the temperature minimises the
                // validation NLL, not the test ECE).
                temperature: (epoch > 0).then_some(1.5),
                ece_scaled: (epoch > 0).then_some(if r.backbone == "dino" {
                    ece * 1.25
                } else {
                    ece / 2.0
                }),
                mce_scaled: (epoch > 0).then_some(ece / 2.0),
                nll_scaled: (epoch > 0).then_some(0.9 - accuracy),
                brier_scaled: (epoch > 0).then_some(0.7 - accuracy),
                kept: kept(similarity, knn),
            });
            for layer in 0..=3u32 {
                for cls in [true, false] {
                    if layer == 0 && cls {
                        continue; // the embedding's CLS token: constant, no CKA
                    }
                    let cka = lc_of(r, epoch as usize, layer as usize);
                    layers.push(LayerRow {
                        dataset: dataset(),
                        method: method(),
                        backbone: r.backbone.into(),
                        seed: r.seed,
                        epoch,
                        layer,
                        is_final: layer == 3,
                        token: if cls { "cls" } else { "patch_mean" }.into(),
                        probe: "medical".into(),
                        cka,
                        cka_debiased: cka,
                    });
                }
            }
        }
    }
    write(dir, &epochs);
    write(dir, &layers);
    write(dir, &class_rows(runs));

    // Summaries: finished runs only, as sim-metrics writes them.
    let finished: Vec<&Run> = runs
        .iter()
        .filter(|r| r.status == col::STATUS_FINISHED)
        .collect();
    let last = |r: &Run| metrics(r, r.epochs);
    let names: Vec<&str> = backbones.iter().map(|b| b.0).collect();
    let summaries: Vec<BackboneRow> = names
        .iter()
        .map(|n| {
            let own: Vec<&&Run> = finished.iter().filter(|r| r.backbone == *n).collect();
            let stats = Table1Metric::ALL
                .iter()
                .map(|metric| {
                    let v: Vec<f64> = own
                        .iter()
                        .map(|r| match metric {
                            Table1Metric::KnnBefore => 0.8,
                            Table1Metric::KnnAfter => last(r).3,
                            Table1Metric::Ece => last(r).1,
                            Table1Metric::Similarity => last(r).2,
                            _ => last(r).0,
                        })
                        .collect();
                    if v.is_empty() {
                        return Summary::default();
                    }
                    let m = v.iter().sum::<f64>() / v.len() as f64;
                    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>()
                        / (v.len().max(2) - 1) as f64;
                    Summary {
                        mean: Some(m),
                        std: Some(var.sqrt()),
                        ci_low: Some(m - 0.01),
                        ci_high: Some(m + 0.01),
                    }
                })
                .collect();
            let failed = runs
                .iter()
                .any(|r| r.backbone == *n && r.status == col::STATUS_FAILED);
            BackboneRow {
                dataset: dataset(),
                method: method(),
                backbone: n.to_string(),
                runs: own.len() as u32,
                runs_left_out: runs
                    .iter()
                    .filter(|r| r.backbone == *n && r.status != col::STATUS_FINISHED)
                    .count() as u32,
                left_out: if failed {
                    "seed 9: failed after epoch 1: loss NaN"
                } else {
                    ""
                }
                .into(),
                stats: Table1Stats(stats),
            }
        })
        .collect();
    write(dir, &summaries);

    let fitted: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| {
            finished
                .iter()
                .filter(|r| r.backbone == *n)
                .map(|r| r.epochs)
                .sum::<u32>()
                >= 2
        })
        .collect();
    let fits: Vec<FitRow> = names
        .iter()
        .filter(|n| finished.iter().any(|r| r.backbone == **n))
        .map(|n| {
            let ok = fitted.contains(n);
            let v = |x: f64| ok.then_some(x);
            FitRow {
                dataset: dataset(),
                method: method(),
                backbone: n.to_string(),
                metric: col::ECE.into(),
                points: col::POINTS_FINE_TUNED.into(),
                slope: v(-0.3),
                intercept: v(0.35),
                r: v(-0.9),
                r2: v(0.81),
                slope_ci_low: v(-0.4),
                slope_ci_high: v(-0.2),
                pearson_raw: v(-0.8),
                spearman_raw: v(-0.8),
                n_points: 14,
                n_levels: if ok { 4 } else { 0 },
                status: if ok {
                    "ok"
                } else {
                    "similarity: 2 non-empty levels; a slope interval needs at least 3"
                }
                .into(),
            }
        })
        .collect();
    write(dir, &fits);
    let best = |n: &str| {
        finished
            .iter()
            .filter(|r| r.backbone == n)
            .max_by(|a, b| last(a).0.total_cmp(&last(b).0))
            .map(|r| r.seed)
    };
    let space: Vec<SpaceRow> = finished
        .iter()
        .map(|r| SpaceRow {
            dataset: dataset(),
            method: method(),
            backbone: r.backbone.into(),
            seed: r.seed,
            similarity: last(r).2,
            similarity_ci_low: Some(last(r).2 - 0.02),
            similarity_ci_high: Some(last(r).2 + 0.03),
            accuracy: last(r).0,
            divergence: 0.0,
            reference_seed: best(r.backbone).unwrap(),
            in_space: last(r).2 > 0.6,
        })
        .collect();
    write(dir, &space);

    // The first two backbones with finished runs, compared.
    let compared: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| finished.iter().any(|r| r.backbone == *n))
        .take(2)
        .collect();
    let comparisons: Vec<ComparisonRow> = match compared[..] {
        [a, b] => vec![ComparisonRow {
            dataset: dataset(),
            method: method(),
            backbone_a: a.into(),
            backbone_b: b.into(),
            runs_a: 3,
            runs_b: 2,
            similarity_a: 0.7,
            similarity_b: 0.6,
            difference: 0.1,
            p_value: 0.1,
            exact: true,
            permutations: 10,
        }],
        _ => vec![],
    };
    write(dir, &comparisons);

    // The pre-trained model (seed null) and each finished run's final one.
    let models: Vec<(&str, Option<u64>)> = names
        .iter()
        .filter(|n| finished.iter().any(|r| r.backbone == **n))
        .flat_map(|n| {
            std::iter::once((*n, None)).chain(
                finished
                    .iter()
                    .filter(|r| r.backbone == *n)
                    .map(|r| (r.backbone, Some(r.seed))),
            )
        })
        .collect();
    let epoch_of = |seed: Option<u64>| if seed.is_some() { 2 } else { 0 };
    let bins = 5u32;
    // A fine-tuned model's bins also after temperature scaling.
    let reliability: Vec<BinRow> = models
        .iter()
        .flat_map(|&(backbone, seed)| {
            let sides = if seed.is_some() {
                vec![false, true]
            } else {
                vec![false]
            };
            sides.into_iter().flat_map(move |temperature_scaled| {
                (0..bins).map(move |bin| (backbone, seed, temperature_scaled, bin))
            })
        })
        .map(|(backbone, seed, temperature_scaled, bin)| {
            let filled = bin != 0;
            BinRow {
                dataset: DATASET.into(),
                method: METHOD.into(),
                backbone: backbone.into(),
                seed,
                epoch: epoch_of(seed),
                temperature_scaled,
                bin,
                low: bin as f64 / bins as f64,
                high: (bin + 1) as f64 / bins as f64,
                count: if filled { 10 + bin } else { 0 },
                accuracy: filled.then_some(0.1 + 0.2 * bin as f64),
                confidence: filled.then_some(
                    0.1 + 0.2 * bin as f64 + if temperature_scaled { 0.02 } else { 0.08 },
                ),
            }
        })
        .collect();
    write(dir, &reliability);
    let (grid, images, size) = (4u32, 2u32, 16u32);
    let attention: Vec<PatchRow> = models
        .iter()
        .flat_map(|&(backbone, seed)| {
            (0..grid * grid * images).map(move |i| PatchRow {
                dataset: DATASET.into(),
                method: METHOD.into(),
                backbone: backbone.into(),
                seed,
                epoch: epoch_of(seed),
                image: i / (grid * grid),
                image_id: "train/n01/img.JPEG".into(),
                row: (i % (grid * grid)) / grid,
                column: i % grid,
                attention: ((i % 16) as f64 + seed.map_or(0.0, |s| s as f64)) / 20.0,
                patch_norm: 1.0 + (i % 5) as f64,
            })
        })
        .collect();
    write(dir, &attention);
    let pictures: Vec<ImageRow> = names
        .iter()
        .filter(|n| finished.iter().any(|r| r.backbone == **n))
        .flat_map(|n| {
            (0..images).map(move |i| ImageRow {
                dataset: DATASET.into(),
                method: METHOD.into(),
                backbone: n.to_string(),
                image: i,
                image_id: "train/n01/img.JPEG".into(),
                size,
                pixels: (0..size * size * 3)
                    .map(|p| (p * 7 + i * 50) as u8)
                    .collect(),
            })
        })
        .collect();
    write(dir, &pictures);
    // WiSE-FT at α = 0, 0.5 and the last epoch (α = 1) of each finished run.
    let wise_ft: Vec<WiseFtRow> = finished
        .iter()
        .flat_map(|r| [0.0, 0.5, 1.0].map(|a| (*r, a)))
        .map(|(r, alpha)| {
            let accuracy = 0.4 + alpha * r.gain * r.epochs as f64;
            let knn = 0.8 - 0.1 * alpha;
            WiseFtRow {
                dataset: dataset(),
                method: method(),
                backbone: r.backbone.into(),
                seed: r.seed,
                alpha,
                scores: TestScores {
                    accuracy,
                    balanced_accuracy: accuracy,
                    macro_f1: 0.3,
                    auroc: Some(0.5 + accuracy / 2.0),
                    ece: 0.05 + 0.1 * alpha,
                    mce: 0.05 + 0.1 * alpha,
                    adaptive_ece: 0.05 + 0.1 * alpha,
                },
                kept: kept(1.0 - alpha * 0.15 * r.epochs as f64, knn),
            }
        })
        .collect();
    write(dir, &wise_ft);
    write(dir, &verdicts(&config, &finished, &fitted));
    // One method: no pair of methods to compare.
    write::<MethodComparisonRow>(dir, &[]);
}

fn png_size(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap()
}

fn svg(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("figures/{name}.svg"))).unwrap()
}

/// The stroke colour of series drawn in a backbone's colour (Okabe–Ito order).
const FIRST: &str = "#0072B2";
const SECOND: &str = "#E69F00";

#[test]
fn a_full_study_gives_every_figure_table_and_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let runs = [
        Run {
            backbone: "vit",
            seed: 0,
            status: "finished",
            epochs: 2,
            gain: 0.05,
        },
        Run {
            backbone: "vit",
            seed: 1,
            status: "finished",
            epochs: 2,
            gain: 0.04,
        },
        Run {
            backbone: "vit",
            seed: 2,
            status: "finished",
            epochs: 2,
            gain: 0.06,
        },
        Run {
            backbone: "dino",
            seed: 0,
            status: "finished",
            epochs: 2,
            gain: 0.03,
        },
        Run {
            backbone: "dino",
            seed: 1,
            status: "finished",
            epochs: 2,
            gain: 0.02,
        },
        Run {
            backbone: "dino",
            seed: 9,
            status: "failed",
            epochs: 1,
            gain: 0.02,
        },
    ];
    study(d, &[("vit", "vit"), ("dino", "dinov2")], &runs);
    let rendered = render_study(d, &Options::default()).unwrap();
    assert!(rendered.left_out.is_empty(), "{:?}", rendered.left_out);
    for name in NAMES.iter().filter(|n| {
        !["fig3_attention", PRETRAIN_CURVES].contains(*n) && !n.starts_with("selection_")
    }) {
        for ext in ["png", "svg"] {
            assert!(
                d.join(format!("figures/{name}.{ext}")).exists(),
                "{name}.{ext}"
            );
        }
    }
    for b in ["vit", "dino"] {
        assert_eq!(
            png_size(&d.join(format!("figures/fig3_attention_{b}.png"))),
            inches(FULL_WIDTH, 0.35 + 1.3 * 2.0)
        );
        assert!(
            !d.join(format!("figures/fig3_attention_{b}.svg")).exists(),
            "a raster figure has no SVG"
        );
    }
    assert_eq!(
        png_size(&d.join("figures/fig2_similarity_space.png")),
        inches(SINGLE_COLUMN, 2.9)
    );
    assert_eq!(
        png_size(&d.join("figures/fig4a_trajectory.png")),
        inches(FULL_WIDTH, 2.5)
    );
    let report = std::fs::read_to_string(d.join("report.md")).unwrap();
    let wise_ft = report
        .split("## WiSE-FT: the path from θ₀ to θ_ft")
        .nth(1)
        .expect("a WiSE-FT section");
    assert!(
        wise_ft.contains(
            "- `full` / `dino` (2 runs): most accurate at α = 1. α = 0: \
        similarity 1.000, accuracy 0.400"
        ),
        "{wise_ft}"
    );
    for name in ["table1.md", "table1.csv", "table2.md", "table2.csv"] {
        assert!(StudyDir::new(d).tables_dir().join(name).exists(), "{name}");
    }

    // Axis labels, and each backbone's series in its colour.
    let traj = svg(d, "fig4a_trajectory");
    for label in [
        "epoch (0 = pre-trained, linear probe",
        "epoch (0 = pre-trained)",
        "balanced accuracy, medical test set (%)",
        "similarity (linear CKA to pre-trained)",
    ] {
        assert!(traj.contains(label), "{label}");
    }
    // Two panels, one line per backbone each (the legend's marks are lines too).
    for color in [FIRST, SECOND] {
        let lines = traj
            .split("<polyline")
            .skip(1)
            .filter(|p| {
                p.split("/>")
                    .next()
                    .unwrap()
                    .contains(&format!("stroke=\"{color}\""))
            })
            .count();
        assert_eq!(lines, 2 + 1, "{color}: two panels and the legend");
    }
    let space = svg(d, "fig2_similarity_space");
    assert!(
        space.contains("final similarity (linear CKA to pre-trained)")
            && space.contains("accuracy, medical test set (%)")
    );
    assert!(
        space.contains("vit: 3 of 3 runs in T_X") && space.contains("dino: 2 of 2 runs in T_X"),
        "the failed run is not a point"
    );
    let layers = svg(d, "layers_cka");
    assert!(layers.contains("vit, CLS (3 runs)") && layers.contains("dino, patch mean"));

    let report = std::fs::read_to_string(d.join("report.md")).unwrap();
    for name in NAMES.iter().filter(|n| {
        !["fig3_attention", PRETRAIN_CURVES].contains(*n) && !n.starts_with("selection_")
    }) {
        assert!(
            report.contains(&format!("![{name}.png](figures/{name}.png)")),
            "{name}"
        );
    }
    assert!(
        report.contains("1 left out (seed 9: failed after epoch 1: loss NaN)"),
        "{report}"
    );
    let scaling = report
        .split("## Calibration after temperature scaling")
        .nth(1)
        .expect("a temperature-scaling section");
    assert!(
        scaling.contains("- `vit` (3 runs): ECE ")
            && scaling.contains("at T = 1.50 on average (50 % of it removed)")
            && scaling.contains("at T = 1.50 on average (25 % higher after)"),
        "{scaling}"
    );
    // Per class: the finished runs' last epoch (not the failed seed 9's).
    let per_class = report
        .split("## Per class: sensitivity, specificity, AUROC")
        .nth(1)
        .expect("a per-class section");
    for row in [
        "| class (test images) | `vit` | `dino` |",
        "| `malignant` (10) | 0.50 ± 0.10 / 0.90 / 0.80 | 0.45 ± 0.07 / 0.90 / 0.80 |",
        "| `rare` (0) | – / 1.00 / – | – / 1.00 / – |",
    ] {
        assert!(per_class.contains(row), "{row}\n{per_class}");
    }
    // Three and two runs: too few for 95 % of resamples to keep a run besides θ*.
    assert!(
        report.contains("1. **Runs that keep both accuracy and similarity exist.** Undecided here"),
        "{report}"
    );
    assert!(
        report.contains("`dino` 2 of 2 runs inside, 1 besides θ* (undecided: holds in "),
        "{report}"
    );
    assert!(
        report.contains("slope 95 % CI over resampled runs ["),
        "{report}"
    );
    assert!(
        report.contains("mean k-NN drop of `dino` minus that of `vit`: "),
        "{report}"
    );
    assert!(
        report.contains("| 2. ECE linear in similarity |"),
        "the verdict-by-measure table: {report}"
    );
    assert!(
        report.contains("`vit` (family `vit`: supervised) loses")
            && report.contains("`dino` (family `dinov2`: self-supervised) loses"),
        "{report}"
    );
    let table1 = std::fs::read_to_string(StudyDir::new(d).tables_dir().join("table1.md")).unwrap();
    assert!(
        table1.contains("| vit | 3 |") && table1.contains("| dino | 2 |"),
        "{table1}"
    );
    assert!(
        table1.contains(" ± ") && table1.contains("bootstrap interval"),
        "{table1}"
    );
    assert!(
        report.contains(
            "- `vit` is not shown to keep more similarity than `dino`: mean \
        final similarity 0.700 (3 runs) vs 0.600 (2 runs); one-sided permutation test p = \
        0.100 (exact, all 10 splits of the runs; the smallest p they allow is 0.100)."
        ),
        "{report}"
    );
    assert!(
        report.contains("known to ± 0.025 over its test images"),
        "{report}"
    );
}

#[test]
fn one_run_of_one_epoch_with_a_constant_metric_still_gives_every_figure_or_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    study(
        d,
        &[("vit", "vit")],
        &[Run {
            backbone: "vit",
            seed: 0,
            status: "finished",
            epochs: 1,
            gain: 0.0,
        }],
    );
    let rendered = render_study(d, &Options::default()).unwrap();
    assert!(rendered.left_out.is_empty(), "{:?}", rendered.left_out);
    for name in [
        "fig1a_knn",
        "fig1b_similarity_density",
        "fig4a_trajectory",
        "fig5_cka_ece",
        "reliability",
    ] {
        assert!(d.join(format!("figures/{name}.png")).exists(), "{name}");
    }
    let report = std::fs::read_to_string(d.join("report.md")).unwrap();
    assert!(
        report.contains("no spread, no curve"),
        "one run: no density curve, said so"
    );
    assert!(
        report.contains("no fit: similarity: 2 non-empty levels"),
        "{report}"
    );
    assert!(
        report.contains(
            "3. **Supervised pre-training forgets less than self-supervised \
        pre-training.** Cannot say"
        ),
        "{report}"
    );
}

#[test]
fn a_study_without_a_finished_run_leaves_every_figure_out_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    study(
        d,
        &[("vit", "vit")],
        &[Run {
            backbone: "vit",
            seed: 9,
            status: "failed",
            epochs: 1,
            gain: 0.01,
        }],
    );
    let rendered = render_study(d, &Options::default()).unwrap();
    assert_eq!(
        rendered.left_out.len(),
        NAMES.len() - 3,
        "every figure but the learning curves (nothing pre-trained here) and model \
            selection's (no selection tables): {:?}",
        rendered.left_out
    );
    let report = std::fs::read_to_string(d.join("report.md")).unwrap();
    assert!(
        report.contains("Left out: no finished run in the tables."),
        "{report}"
    );
    assert!(report.contains("Cannot say: no run finished."), "{report}");
}

#[test]
fn only_and_format_choose_what_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    study(
        d,
        &[("vit", "vit")],
        &[Run {
            backbone: "vit",
            seed: 0,
            status: "finished",
            epochs: 2,
            gain: 0.02,
        }],
    );
    let options = Options {
        only: Some(vec!["fig2".into(), "layers_cka".into()]),
        formats: vec![sim_plot::style::Format::Svg],
        measure: None,
    };
    render_study(d, &options).unwrap();
    let mut figures: Vec<String> = std::fs::read_dir(d.join("figures"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    figures.sort();
    assert_eq!(figures, ["fig2_similarity_space.svg", "layers_cka.svg"]);
    assert!(
        !d.join("report.md").exists(),
        "a partial rendering writes no report"
    );
    // Tables from before data sets were an axis: said so, not a missing column.
    let old = dir.path().join("old");
    std::fs::create_dir_all(StudyDir::new(&old).tables_dir()).unwrap();
    std::fs::copy(d.join("study.toml"), old.join("study.toml")).unwrap();
    std::fs::copy(d.join("study.sha256"), old.join("study.sha256")).unwrap();
    let shape = Shape { knn_k: vec![20] };
    let mut epochs = EpochRow::frame(&read::<EpochRow>(d), &shape).unwrap();
    let _ = epochs.drop_in_place(col::DATASET).unwrap();
    schema::write_frame(&StudyDir::new(&old).table(file::EPOCHS), &mut epochs).unwrap();
    let msg = render_study(&old, &Options::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("earlier version") && msg.contains("sim-metrics study"),
        "{msg}"
    );
    let bad = Options {
        only: Some(vec!["fig9".into()]),
        ..Options::default()
    };
    let msg = render_study(d, &bad).err().unwrap().to_string();
    assert!(
        msg.contains("--only fig9") && msg.contains("fig1a_knn"),
        "{msg}"
    );
}

/// A verdict is stated only where the share of resamples of the runs in
/// which the finding holds reaches 95 % (or, "does not hold", falls to 5 %):
/// a share just inside either threshold is undecided, in the findings and
/// in the verdict-by-measure table.
#[test]
fn a_verdict_just_inside_its_threshold_is_undecided() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let runs: Vec<Run> = (0..4)
        .flat_map(|seed| {
            [("vit", 0.05), ("dino", 0.03)].map(|(backbone, gain)| Run {
                backbone,
                seed,
                status: "finished",
                epochs: 2,
                gain,
            })
        })
        .collect();
    study(d, &[("vit", "vit"), ("dino", "dinov2")], &runs);
    let report_at = |share: f64| {
        let mut verdicts: Vec<VerdictRow> = read(d);
        verdicts.iter_mut().for_each(|v| v.share = share);
        write(d, &verdicts);
        render_study(d, &Options::default()).unwrap();
        std::fs::read_to_string(d.join("report.md")).unwrap()
    };
    let report = report_at(0.95);
    assert!(
        report.contains("exist.** Holds here for every backbone: runs besides θ*"),
        "{report}"
    );
    assert!(
        report.contains("(holds in 95.0 % of 1000 resamples of the runs)"),
        "{report}"
    );
    assert!(
        report.contains("pre-training.** Holds here for every supervised/self-supervised pair."),
        "{report}"
    );
    assert!(
        report.contains(
            "| 1. runs besides θ* inside T_X | holds (2 of 2) | holds (2 of 2) | holds (2 of 2) |"
        ),
        "{report}"
    );
    let report = report_at(0.949);
    assert!(
        report.contains(
            "exist.** Undecided here: it holds for no backbone in enough \
        resamples to say; undecided for 2"
        ),
        "{report}"
    );
    assert!(
        report.contains("(undecided: holds in 94.9 % of 1000 resamples of the runs)"),
        "{report}"
    );
    assert!(
        report.contains("pre-training.** Undecided here"),
        "{report}"
    );
    assert!(
        report.contains(
            "| 3. supervised forgets less (k-NN top-1) | undecided (0 of 1) \
        | undecided (0 of 1) | undecided (0 of 1) |"
        ),
        "{report}"
    );
    let report = report_at(0.051);
    assert!(report.contains("exist.** Undecided here"), "{report}");
    let report = report_at(0.05);
    assert!(
        report.contains("exist.** Does not hold here for any backbone"),
        "{report}"
    );
    assert!(
        report.contains("(does not hold: holds in 5.0 % of 1000 resamples of the runs)"),
        "{report}"
    );
}

/// Two medical data sets: each figure has a facet per data set, Figure 3 a
/// file per data set and backbone, the tables a data set column, and the
/// report states each finding per data set and whether they agree.
#[test]
fn two_medical_data_sets_are_shown_side_by_side_and_compared() {
    let dir = tempfile::tempdir().unwrap();
    let (skin, xray, d) = (
        dir.path().join("skin"),
        dir.path().join("xray"),
        dir.path().join("both"),
    );
    let backbones = [("vit", "vit"), ("dino", "dinov2")];
    let run = |backbone, seed, gain| Run {
        backbone,
        seed,
        status: "finished",
        epochs: 2,
        gain,
    };
    study(
        &skin,
        &backbones,
        &[
            run("vit", 0, 0.05),
            run("vit", 1, 0.04),
            run("dino", 0, 0.03),
            run("dino", 1, 0.02),
        ],
    );
    // On the second data set only one backbone has runs.
    study(
        &xray,
        &backbones[..1],
        &[run("vit", 0, 0.01), run("vit", 1, 0.02)],
    );
    let text = "[study]\nname = \"two\"\nseeds = [0, 1]\n[[datasets.medical]]\nname \
        = \"skin\"\nkind = \"ham10000\"\nroot = \"h\"\n\
         [[datasets.medical]]\nname = \"xray\"\nkind = \"medmnist\"\nroot = \"x.npz\"\n\
         [datasets.natural]\nkind = \"image-folder\"\nroot \
         = \"n\"\n[evaluation]\nfit_levels = 4\nknn_k = [20]\n\
         [[backbones]]\nname = \"vit\"\ncheckpoint = \"x\"\nfamily \
         = \"vit\"\n[[backbones]]\nname = \"dino\"\ncheckpoint = \"y\"\nfamily = \"dinov2\"\n";
    let config = StudyConfig::from_toml_str(text, Path::new("two.toml")).unwrap();
    StudyDir::new(&d).write_resolved_config(&config).unwrap();
    // The tables these synthetic studies have (no pretrain.parquet: optional).
    macro_rules! both {
        ($($row:ty),*) => {$(
            let mut rows: Vec<$row> = Vec::new();
            for (part, dataset) in [(&skin, "skin"), (&xray, "xray")] {
                let mut part: Vec<$row> = read(part);
                part.iter_mut().for_each(|r| r.dataset = dataset.into());
                rows.extend(part);
            }
            write(&d, &rows);
        )*};
    }
    both!(
        EpochRow,
        LayerRow,
        BackboneRow,
        FitRow,
        SpaceRow,
        ComparisonRow,
        BinRow,
        PatchRow,
        ImageRow,
        WiseFtRow,
        VerdictRow,
        MethodComparisonRow
    );
    let rendered = render_study(&d, &Options::default()).unwrap();
    assert!(rendered.left_out.is_empty(), "{:?}", rendered.left_out);
    // A column-wide figure gets its facets side by side, a wider one stacked.
    let (w, h) = inches(SINGLE_COLUMN, 2.9);
    assert_eq!(
        png_size(&d.join("figures/fig2_similarity_space.png")),
        (2 * w, h + sim_plot::style::pt(12.0))
    );
    let (w, h) = inches(FULL_WIDTH, 2.5);
    assert_eq!(
        png_size(&d.join("figures/fig4a_trajectory.png")),
        (w, 2 * (h + sim_plot::style::pt(12.0)))
    );
    let space = svg(&d, "fig2_similarity_space");
    assert!(space.contains("medical data set: skin") && space.contains("medical data set: xray"));
    for b in ["skin_vit", "skin_dino", "xray_vit"] {
        assert!(
            d.join(format!("figures/fig3_attention_{b}.png")).exists(),
            "{b}"
        );
    }
    assert!(!d.join("figures/fig3_attention_xray_dino.png").exists());

    let table1 = std::fs::read_to_string(StudyDir::new(&d).tables_dir().join("table1.md")).unwrap();
    assert!(
        table1.starts_with("| data set | backbone | n |"),
        "{table1}"
    );
    assert!(
        table1.contains("| skin | vit | 2 |") && table1.contains("| xray | vit | 2 |"),
        "{table1}"
    );
    let csv = std::fs::read_to_string(StudyDir::new(&d).tables_dir().join("table2.csv")).unwrap();
    assert!(
        csv.starts_with("dataset,method,backbone,metric,") && csv.contains("\nxray,full,vit,ece,"),
        "{csv}"
    );

    let report = std::fs::read_to_string(d.join("report.md")).unwrap();
    assert!(
        report.contains("- `skin` / `vit`: 2 finished run(s)"),
        "{report}"
    );
    // Finding 3 needs both paradigms: told on skin (where both lose alike: undecided), not on xray.
    let third = report.split("3. **Supervised pre-training").nth(1).unwrap();
    assert!(
        third.contains(
            "The data sets disagree: it is undecided on `skin`; it cannot be told on `xray`"
        ),
        "{third}"
    );
    assert!(
        third.contains("   - `xray`: Cannot say: the study needs a supervised backbone"),
        "{third}"
    );
    let second = report
        .split("2. **Similarity and calibration")
        .nth(1)
        .unwrap()
        .split("3. **")
        .next()
        .unwrap();
    assert!(
        second.contains("The data sets agree: it does not hold on any."),
        "{second}"
    );
    assert!(
        report.contains("**skin**: k-NN top-1") && report.contains("**xray**: k-NN top-1"),
        "fig1a caption per data set"
    );
}

/// A NaN in a table (a metric undefined for a backbone) reads as missing:
/// no table, caption or sentence says `NaN`. And the report names no
/// absolute path: it stays true when the study folder moves.
#[test]
fn nan_in_the_tables_is_shown_as_missing_and_the_report_holds_no_absolute_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let runs = [
        Run {
            backbone: "vit",
            seed: 0,
            status: "finished",
            epochs: 2,
            gain: 0.05,
        },
        Run {
            backbone: "vit",
            seed: 1,
            status: "finished",
            epochs: 2,
            gain: 0.04,
        },
    ];
    study(d, &[("vit", "vit")], &runs);
    let mut backbones: Vec<BackboneRow> = read(d);
    for row in &mut backbones {
        for metric in [Table1Metric::Accuracy, Table1Metric::KnnAfter] {
            let i = Table1Metric::ALL.iter().position(|m| *m == metric).unwrap();
            (row.stats.0[i].mean, row.stats.0[i].std) = (Some(f64::NAN), Some(f64::NAN));
        }
    }
    write(d, &backbones);
    let rendered = render_study(d, &Options::default()).unwrap();
    let report = std::fs::read_to_string(d.join("report.md")).unwrap();
    let table1 = std::fs::read_to_string(StudyDir::new(d).tables_dir().join("table1.md")).unwrap();
    for (what, text) in [("report", &report), ("table 1", &table1)] {
        assert!(!text.contains("NaN"), "{what}:\n{text}");
    }
    assert!(!rendered.files.is_empty());
    let absolute = d.canonicalize().unwrap();
    assert!(
        !report.contains(&d.display().to_string())
            && !report.contains(&absolute.display().to_string()),
        "{report}"
    );
}

/// The figures are up to date when made from the tables and config as
/// they are now, by content: a table rewritten with the same rows keeps
/// them, a changed one does not; a hand-edited `study.toml` is refused.
#[test]
fn figures_are_fresh_by_what_they_were_made_from_and_a_hand_edited_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    study(
        d,
        &[("vit", "vit")],
        &[Run {
            backbone: "vit",
            seed: 0,
            status: "finished",
            epochs: 2,
            gain: 0.05,
        }],
    );
    assert!(!sim_plot::up_to_date(d), "nothing drawn yet");
    render_study(d, &Options::default()).unwrap();
    assert!(sim_plot::up_to_date(d));
    let mut epochs: Vec<EpochRow> = read(d);
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(d, &epochs);
    assert!(
        sim_plot::up_to_date(d),
        "same rows, newer file: still up to date"
    );
    epochs.iter_mut().for_each(|e| e.scores.ece = 0.5);
    write(d, &epochs);
    assert!(!sim_plot::up_to_date(d), "changed rows: stale");
    render_study(d, &Options::default()).unwrap();
    assert!(sim_plot::up_to_date(d));

    let study_toml = StudyDir::new(d).resolved_config();
    let text = std::fs::read_to_string(&study_toml).unwrap();
    std::fs::write(
        &study_toml,
        text.replace("similarity_threshold = 0.5", "similarity_threshold = 0.9"),
    )
    .unwrap();
    assert!(!sim_plot::up_to_date(d));
    let err = render_study(d, &Options::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("study.toml does not match") && err.contains("edited by hand"),
        "{err}"
    );
}

/// `--measure` draws the figures of similarity under a measure of
/// `similarity.parquet` (a distance here: Procrustes), beside CKA's and
/// under their own names, reading that measure's values; a measure the
/// table lacks is an error naming it.
#[test]
fn measure_draws_the_similarity_figures_under_another_measure() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let runs: Vec<Run> = (0..3)
        .map(|seed| Run {
            backbone: "vit",
            seed,
            status: "finished",
            epochs: 2,
            gain: 0.04 + 0.01 * seed as f64,
        })
        .collect();
    study(d, &[("vit", "vit")], &runs);
    // Procrustes grows as CKA falls: 0 at epoch 0, up to 0.8 away from CKA's 1.
    let distance = |cka: f64| (1.0 - cka) * 0.8;
    let similarity: Vec<SimilarityRow> = read::<LayerRow>(d)
        .into_iter()
        .filter(|l| l.token == "cls")
        .map(|l| SimilarityRow {
            dataset: l.dataset,
            method: l.method,
            backbone: l.backbone,
            seed: l.seed,
            epoch: l.epoch,
            layer: l.layer,
            is_final: l.is_final,
            measure: "procrustes".into(),
            value: distance(l.cka),
            null_mean: Some(1.2),
            null_q95: Some(1.1),
            above_chance: Some(true),
        })
        .collect();
    write(d, &similarity);
    let options = Options {
        formats: vec![sim_plot::style::Format::Svg],
        measure: Some(Measure::Procrustes),
        ..Options::default()
    };
    let rendered = render_study(d, &options).unwrap();
    let mut names: Vec<String> = rendered
        .files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "fig1b_similarity_density_procrustes.svg",
            "fig4a_trajectory_procrustes.svg",
            "fig4b_final_procrustes.svg",
            "fig5_cka_ece_procrustes.svg",
            "layers_cka_procrustes.svg",
            "layers_epochs_cka_procrustes.svg",
        ]
    );
    assert!(rendered.left_out.is_empty(), "{:?}", rendered.left_out);
    assert!(
        !d.join("report.md").exists(),
        "the report is CKA's: not written"
    );
    let trajectory = svg(d, "fig4a_trajectory_procrustes");
    assert!(
        trajectory.contains("distance (Procrustes to pre-trained)"),
        "the axis names the measure"
    );
    let density = svg(d, "fig1b_similarity_density_procrustes");
    assert!(density.contains("final distance (Procrustes to pre-trained)"));
    let layers = svg(d, "layers_epochs_cka_procrustes");
    assert!(
        layers.contains(">\nProcrustes distance\n<"),
        "the colour bar names it"
    );
    // What the figures read: the measure's values, not CKA's.
    let study = Study::read(d).unwrap();
    let drawn = study.for_measure(Measure::Procrustes).unwrap();
    assert_eq!(drawn.measure, Measure::Procrustes);
    assert_eq!(drawn.epochs.len(), study.epochs.len());
    for e in &drawn.epochs {
        let last_layer = similarity
            .iter()
            .find(|s| s.is_final && (s.seed, s.epoch) == (e.seed, e.epoch))
            .unwrap();
        assert_eq!(e.kept.similarity, last_layer.value);
        assert_ne!(e.kept.similarity, study.epochs[0].kept.similarity);
    }
    assert_eq!(drawn.layers.len(), similarity.len());
    for p in &drawn.space {
        let last_epoch = similarity
            .iter()
            .filter(|s| s.is_final && s.seed == p.seed)
            .max_by_key(|s| s.epoch)
            .unwrap();
        assert_eq!(p.similarity, last_epoch.value);
        assert_eq!(
            p.similarity_ci(),
            None,
            "CKA's interval is not the measure's"
        );
    }
    assert_eq!(drawn.space.len(), study.space.len());
    assert!(
        drawn
            .layers
            .iter()
            .zip(&similarity)
            .all(|(l, s)| l.cka == s.value)
    );

    let svcca = Options {
        measure: Some(Measure::Svcca),
        ..options
    };
    let msg = render_study(d, &svcca).err().unwrap().to_string();
    assert!(
        msg.contains("similarity.parquet") && msg.contains("`svcca`"),
        "{msg}"
    );
}

/// Three candidates with 4 seeds each: LogME in the order of their final
/// balanced accuracy, the linear probe with the two best swapped, the
/// similarity after epoch 1 in reverse.
fn selection_candidates() -> Vec<sim_metrics::selection::Candidate> {
    use sim_metrics::selection::{Candidate, Outcome, Predictor, RunRecord, Score};
    ["rand", "dino", "vit"]
        .iter()
        .enumerate()
        .map(|(i, name)| Candidate {
            backbone: name.to_string(),
            before: vec![
                (Predictor::Score(Score::Logme), i as f64),
                (Predictor::LinearProbe, [0.3, 0.5, 0.4][i]),
            ],
            runs: (0..4)
                .map(|seed| RunRecord {
                    seed,
                    first_epoch: vec![(Predictor::SimilarityEpoch1, 0.9 - 0.1 * i as f64)],
                    outcomes: vec![
                        (
                            Outcome::BalancedAccuracy,
                            0.5 + 0.1 * i as f64 + 0.01 * seed as f64,
                        ),
                        (Outcome::Ece, 0.1),
                    ],
                })
                .collect(),
        })
        .collect()
}

#[test]
fn model_selection_gets_its_figures_and_a_report_section_that_reads_the_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let runs = [("vit", 0), ("vit", 1), ("dino", 0), ("dino", 1)].map(|(backbone, seed)| Run {
        backbone,
        seed,
        status: "finished",
        epochs: 2,
        gain: 0.05,
    });
    study(d, &[("vit", "vit"), ("dino", "dinov2")], &runs);
    let resamples = sim_metrics::stats::draw_resamples(4, 200, 0);
    let (rows, summary) = sim_metrics::tables::selection_rows(
        &selection_candidates(),
        4,
        &resamples,
        DATASET,
        METHOD,
    );
    write(d, &rows);
    write(d, &summary);
    render_study(d, &Options::default()).unwrap();
    for name in ["selection_scores", "selection_tau"] {
        assert!(d.join(format!("figures/{name}.png")).exists(), "{name}");
    }
    // Three predictors with a value against accuracy: one row of three panels.
    assert_eq!(
        png_size(&d.join("figures/selection_scores.png")),
        inches(FULL_WIDTH, 1.55 + 0.3)
    );
    let scores = svg(d, "selection_scores");
    assert!(scores.contains("logme (τ = 1.00)") && scores.contains("sim@1 (τ = -1.00)"));
    let report = std::fs::read_to_string(d.join("report.md")).unwrap();
    let section = report
        .split("## Could we have picked the backbone before fine-tuning?")
        .nth(1)
        .expect("a model selection section");
    for words in [
        "3 candidates. Before fine-tuning, **logme** ranks them best against the final \
            balanced accuracy: τ = 1.00 [1.00, 1.00]; the pick of **logme**, `vit`, is the \
            best candidate",
        "it beats the linear probe",
        "ranks them in reverse (more similarity kept, lower accuracy): the paper's claim \
            of predictive model selection does not hold here",
        "| linear_probe | before fine-tuning | 0.18 [0.18, 0.18] |",
        "the difference 0.82 [0.82, 0.82]",
    ] {
        assert!(section.contains(words), "{words}\n{section}");
    }
}
