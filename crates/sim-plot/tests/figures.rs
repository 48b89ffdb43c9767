//! Every figure, table and the report from small tables the test writes (in
//! the schema `sim-metrics study` writes), on a full study and on edge cases:
//! one run of one epoch, a failed run, a constant metric, no finished run.
//! Checked: the files, the PNG sizes, and in the SVG the axis labels and one
//! series per backbone.

use polars::prelude::*;
use sim_plot::figures::NAMES;

/// The learning curves of pre-training: a study whose backbones are all
/// checkpoint files (these) has none.
const PRETRAIN_CURVES: &str = "pretrain_knn";
use sim_plot::style::{FULL_WIDTH, SINGLE_COLUMN, inches};
use sim_plot::{Options, render_study};
use sim_study::tables::{col, file};
use sim_study::{StudyConfig, StudyDir};
use std::path::Path;

fn config(backbones: &[(&str, &str)], seeds: &[u64]) -> StudyConfig {
    let mut text = format!(
        "[study]\nname = \"synthetic\"\nseeds = {seeds:?}\n[datasets.medical]\nkind = \"ham10000\"\nroot = \"h\"\n\
         [datasets.natural]\nkind = \"image-folder\"\nroot = \"n\"\n[evaluation]\nfit_levels = 4\nknn_k = [20]\n\
         [[methods]]\nname = \"full\"\nkind = \"full\"\nwise_ft = [0.0, 0.5]\n"
    );
    for (name, family) in backbones {
        text.push_str(&format!("[[backbones]]\nname = \"{name}\"\ncheckpoint = \"x.safetensors\"\nfamily = \"{family}\"\ninput_size = 32\n"));
    }
    StudyConfig::from_toml_str(&text, Path::new("synthetic.toml")).unwrap()
}

fn c<T, P: ?Sized>(name: &str, values: T) -> Column
where
    Series: NamedFrom<T, P>,
{
    Column::from(Series::new(name.into(), values))
}

/// Writes a table of the study's one medical data set, `h`, and its one method, `full`.
fn write(dir: &Path, name: &str, columns: Vec<Column>) {
    let mut frame = DataFrame::new_infer_height(columns).unwrap();
    frame
        .insert_column(0, c(col::DATASET, vec!["h"; frame.height()]))
        .unwrap();
    frame
        .insert_column(1, c(col::METHOD, vec!["full"; frame.height()]))
        .unwrap();
    write_frame(dir, name, &mut frame);
}

fn write_frame(dir: &Path, name: &str, frame: &mut DataFrame) {
    let path = StudyDir::new(dir).tables_dir().join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    ParquetWriter::new(std::fs::File::create(path).unwrap())
        .finish(frame)
        .unwrap();
}

fn read_frame(dir: &Path, name: &str) -> DataFrame {
    ParquetReader::new(std::fs::File::open(StudyDir::new(dir).tables_dir().join(name)).unwrap())
        .finish()
        .unwrap()
}

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

/// `verdicts.parquet`: the finished runs through sim-metrics' findings, as
/// `sim-metrics study` computes them (every measure reads the same numbers
/// here). `last`: a run's final (similarity, accuracy, k-NN); `points`: its
/// fine-tuned (CKA, ECE) points; finding 2 only for the `fitted` backbones,
/// as the fits table has it.
fn write_verdicts(
    dir: &Path,
    config: &StudyConfig,
    finished: &[&Run],
    last: impl Fn(&Run) -> (f64, f64, f64),
    fitted: &[&str],
    points: impl Fn(&Run) -> Vec<(f64, f64)>,
) {
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
    // (finding, measure, token, backbone, versus, certainty)
    type VerdictRow<'a> = (u32, &'a str, &'a str, &'a str, Option<&'a str>, Certainty);
    let mut rows: Vec<VerdictRow> = Vec::new();
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
            .map(|r| RunPoint {
                backbone: b.into(),
                seed: r.seed,
                similarity: last(r).0,
                accuracy: last(r).1,
            })
            .collect();
        let one = runs_beside_best(
            &space,
            e.similarity_threshold,
            e.accuracy_tolerance,
            &resamples,
        )
        .unwrap();
        let two = fitted.contains(&b).then(|| {
            calibration_follows_similarity(
                &runs.iter().map(|r| points(r)).collect::<Vec<_>>(),
                e.fit_levels,
                &resamples,
            )
            .unwrap()
        });
        for (measure, token) in [
            (col::CKA, "cls"),
            (col::CKA_DEBIASED, "cls"),
            (col::CKA, "patch_mean"),
        ] {
            rows.push((1, measure, token, b, None, one));
            rows.extend(two.map(|two| (2, measure, token, b, None, two)));
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
            let drops = |b: &str| of(b).iter().map(|r| 0.8 - last(r).2).collect::<Vec<_>>();
            let (ds, dso) = (drops(s), drops(o));
            let resamples = [
                draw_resamples(ds.len(), e.bootstrap_resamples, e.bootstrap_seed),
                draw_resamples(dso.len(), e.bootstrap_resamples, e.bootstrap_seed + 1),
            ];
            rows.push((
                3,
                col::KNN_TOP1,
                "cls",
                s,
                Some(o),
                forgets_less(&ds, &dso, [&resamples[0], &resamples[1]]).unwrap(),
            ));
        }
    }
    write(
        dir,
        file::VERDICTS,
        vec![
            c(col::FINDING, rows.iter().map(|r| r.0).collect::<Vec<_>>()),
            c(col::MEASURE, rows.iter().map(|r| r.1).collect::<Vec<_>>()),
            c(col::TOKEN, rows.iter().map(|r| r.2).collect::<Vec<_>>()),
            c(col::BACKBONE, rows.iter().map(|r| r.3).collect::<Vec<_>>()),
            c(col::VERSUS, rows.iter().map(|r| r.4).collect::<Vec<_>>()),
            c(
                col::ESTIMATE,
                rows.iter().map(|r| r.5.estimate).collect::<Vec<_>>(),
            ),
            c(
                col::ESTIMATE_CI_LOW,
                rows.iter()
                    .map(|r| r.5.interval.map(|i| i.0))
                    .collect::<Vec<_>>(),
            ),
            c(
                col::ESTIMATE_CI_HIGH,
                rows.iter()
                    .map(|r| r.5.interval.map(|i| i.1))
                    .collect::<Vec<_>>(),
            ),
            c(
                col::SHARE,
                rows.iter().map(|r| r.5.share).collect::<Vec<_>>(),
            ),
            c(
                col::RESAMPLES,
                rows.iter()
                    .map(|r| r.5.resamples as u32)
                    .collect::<Vec<_>>(),
            ),
        ],
    );
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

    let (mut b, mut s, mut e, mut st) = (vec![], vec![], vec![], vec![]);
    let (mut acc, mut ece, mut sim, mut knn) = (vec![], vec![], vec![], vec![]);
    let (mut lb, mut ls, mut le, mut ll, mut lf, mut lt, mut lp, mut lc) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for r in runs {
        for epoch in 0..=r.epochs {
            let t = epoch as f64;
            let noise = noise(r, epoch as usize);
            b.push(r.backbone);
            s.push(r.seed);
            e.push(epoch);
            st.push(r.status);
            acc.push(0.5 + r.gain * t + if r.gain == 0.0 { 0.0 } else { noise });
            ece.push(0.05 + 0.04 * t + noise.abs());
            sim.push(1.0 - 0.15 * t - noise.abs());
            knn.push(0.8 - 0.05 * t + noise);
            for layer in 0..=3u32 {
                for cls in [true, false] {
                    if layer == 0 && cls {
                        continue; // the embedding's CLS token: constant, no CKA
                    }
                    lb.push(r.backbone);
                    ls.push(r.seed);
                    le.push(epoch);
                    ll.push(layer);
                    lf.push(layer == 3);
                    lt.push(if cls { "cls" } else { "patch_mean" });
                    lp.push("medical");
                    lc.push(lc_of(r, epoch as usize, layer as usize));
                }
            }
        }
    }
    write(
        dir,
        file::EPOCHS,
        vec![
            c(col::BACKBONE, b.clone()),
            c(col::SEED, s.clone()),
            c(col::EPOCH, e.clone()),
            c(col::STATUS, st.clone()),
            c(
                col::HEAD,
                e.iter()
                    .map(|&e| {
                        if e == 0 {
                            col::HEAD_PROBE
                        } else {
                            col::HEAD_FINE_TUNED
                        }
                    })
                    .collect::<Vec<_>>(),
            ),
            c(col::ACCURACY, acc.clone()),
            c(col::BALANCED_ACCURACY, acc.clone()),
            c(col::MACRO_F1, acc.clone()),
            c(col::ECE, ece.clone()),
            c(col::MCE, ece.clone()),
            c(col::ADAPTIVE_ECE, ece.clone()),
            c(col::SIMILARITY, sim.clone()),
            c(col::KNN_TOP1, knn.clone()),
            c(&col::knn_top1_at(20), knn.clone()),
        ],
    );
    write(
        dir,
        file::LAYERS,
        vec![
            c(col::BACKBONE, lb),
            c(col::SEED, ls),
            c(col::EPOCH, le),
            c(col::LAYER, ll),
            c(col::IS_FINAL, lf),
            c(col::TOKEN, lt),
            c(col::PROBE, lp),
            c(col::CKA, lc.clone()),
            c(col::CKA_DEBIASED, lc),
        ],
    );

    // Summaries: finished runs only, as sim-metrics writes them.
    let finished: Vec<&Run> = runs
        .iter()
        .filter(|r| r.status == col::STATUS_FINISHED)
        .collect();
    let last = |r: &Run, v: &[f64]| {
        v[runs
            .iter()
            .take_while(|x| !std::ptr::eq(*x, r))
            .map(|x| x.epochs as usize + 1)
            .sum::<usize>()
            + r.epochs as usize]
    };
    let names: Vec<&str> = backbones.iter().map(|b| b.0).collect();
    let mut summary = vec![
        c(col::BACKBONE, names.clone()),
        c(
            col::RUNS,
            names
                .iter()
                .map(|n| finished.iter().filter(|r| r.backbone == *n).count() as u32)
                .collect::<Vec<_>>(),
        ),
        c(
            col::RUNS_LEFT_OUT,
            names
                .iter()
                .map(|n| {
                    runs.iter()
                        .filter(|r| r.backbone == *n && r.status != col::STATUS_FINISHED)
                        .count() as u32
                })
                .collect::<Vec<_>>(),
        ),
        c(
            col::LEFT_OUT,
            names
                .iter()
                .map(|n| {
                    if runs
                        .iter()
                        .any(|r| r.backbone == *n && r.status == col::STATUS_FAILED)
                    {
                        "seed 9: failed after epoch 1: loss NaN"
                    } else {
                        ""
                    }
                })
                .collect::<Vec<_>>(),
        ),
    ];
    for metric in sim_plot::study::SUMMARY_METRICS {
        let values = |n: &str| -> Vec<f64> {
            finished
                .iter()
                .filter(|r| r.backbone == n)
                .map(|r| match metric {
                    m if m == col::KNN_BEFORE => 0.8,
                    m if m == col::KNN_AFTER => last(r, &knn),
                    m if m == col::ECE => last(r, &ece),
                    m if m == col::SIMILARITY => last(r, &sim),
                    _ => last(r, &acc),
                })
                .collect()
        };
        let stat = |n: &&str, sd: bool| {
            let v = values(n);
            if v.is_empty() {
                return None;
            }
            let m = v.iter().sum::<f64>() / v.len() as f64;
            Some(if sd {
                (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64)
                    .sqrt()
            } else {
                m
            })
        };
        summary.push(c(
            &col::mean(metric),
            names.iter().map(|n| stat(n, false)).collect::<Vec<_>>(),
        ));
        summary.push(c(
            &col::std(metric),
            names.iter().map(|n| stat(n, true)).collect::<Vec<_>>(),
        ));
        let [low, high] = col::ci(metric);
        summary.push(c(
            &low,
            names
                .iter()
                .map(|n| stat(n, false).map(|m| m - 0.01))
                .collect::<Vec<_>>(),
        ));
        summary.push(c(
            &high,
            names
                .iter()
                .map(|n| stat(n, false).map(|m| m + 0.01))
                .collect::<Vec<_>>(),
        ));
    }
    write(dir, file::BACKBONES, summary);

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
    let fit_names: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| finished.iter().any(|r| r.backbone == *n))
        .collect();
    let ok = |n: &&str| fitted.contains(n);
    write(
        dir,
        file::FITS,
        vec![
            c(col::BACKBONE, fit_names.clone()),
            c(col::METRIC, vec![col::ECE; fit_names.len()]),
            c(col::POINTS, vec![col::POINTS_FINE_TUNED; fit_names.len()]),
            c(
                col::SLOPE,
                fit_names
                    .iter()
                    .map(|n| ok(n).then_some(-0.3))
                    .collect::<Vec<_>>(),
            ),
            c(
                col::INTERCEPT,
                fit_names
                    .iter()
                    .map(|n| ok(n).then_some(0.35))
                    .collect::<Vec<_>>(),
            ),
            c(
                col::R,
                fit_names
                    .iter()
                    .map(|n| ok(n).then_some(-0.9))
                    .collect::<Vec<_>>(),
            ),
            c(
                col::R2,
                fit_names
                    .iter()
                    .map(|n| ok(n).then_some(0.81))
                    .collect::<Vec<_>>(),
            ),
            c(
                col::SLOPE_CI_LOW,
                fit_names
                    .iter()
                    .map(|n| ok(n).then_some(-0.4))
                    .collect::<Vec<_>>(),
            ),
            c(
                col::SLOPE_CI_HIGH,
                fit_names
                    .iter()
                    .map(|n| ok(n).then_some(-0.2))
                    .collect::<Vec<_>>(),
            ),
            c(
                col::PEARSON_RAW,
                fit_names
                    .iter()
                    .map(|n| ok(n).then_some(-0.8))
                    .collect::<Vec<_>>(),
            ),
            c(
                col::SPEARMAN_RAW,
                fit_names
                    .iter()
                    .map(|n| ok(n).then_some(-0.8))
                    .collect::<Vec<_>>(),
            ),
            c(
                col::N_POINTS,
                fit_names.iter().map(|_| 14u32).collect::<Vec<_>>(),
            ),
            c(
                col::N_LEVELS,
                fit_names
                    .iter()
                    .map(|n| if ok(n) { 4u32 } else { 0 })
                    .collect::<Vec<_>>(),
            ),
            c(
                col::FIT_STATUS,
                fit_names
                    .iter()
                    .map(|n| {
                        if ok(n) {
                            "ok"
                        } else {
                            "similarity: 2 non-empty levels; a slope interval needs at least 3"
                        }
                    })
                    .collect::<Vec<_>>(),
            ),
        ],
    );
    let best = |n: &str| {
        finished
            .iter()
            .filter(|r| r.backbone == n)
            .max_by(|a, b| last(a, &acc).total_cmp(&last(b, &acc)))
            .map(|r| r.seed)
    };
    write(
        dir,
        file::SPACE,
        vec![
            c(
                col::BACKBONE,
                finished.iter().map(|r| r.backbone).collect::<Vec<_>>(),
            ),
            c(
                col::SEED,
                finished.iter().map(|r| r.seed).collect::<Vec<_>>(),
            ),
            c(
                col::SIMILARITY,
                finished.iter().map(|r| last(r, &sim)).collect::<Vec<_>>(),
            ),
            c(
                col::SIMILARITY_CI_LOW,
                finished
                    .iter()
                    .map(|r| Some(last(r, &sim) - 0.02))
                    .collect::<Vec<_>>(),
            ),
            c(
                col::SIMILARITY_CI_HIGH,
                finished
                    .iter()
                    .map(|r| Some(last(r, &sim) + 0.03))
                    .collect::<Vec<_>>(),
            ),
            c(
                col::ACCURACY,
                finished.iter().map(|r| last(r, &acc)).collect::<Vec<_>>(),
            ),
            c(
                col::DIVERGENCE,
                finished.iter().map(|_| 0.0).collect::<Vec<_>>(),
            ),
            c(
                col::REFERENCE_SEED,
                finished
                    .iter()
                    .map(|r| best(r.backbone).unwrap())
                    .collect::<Vec<_>>(),
            ),
            c(
                col::IN_SPACE,
                finished
                    .iter()
                    .map(|r| last(r, &sim) > 0.6)
                    .collect::<Vec<_>>(),
            ),
        ],
    );

    // The first two backbones with finished runs, compared.
    let compared: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| finished.iter().any(|r| r.backbone == *n))
        .take(2)
        .collect();
    let pairs = usize::from(compared.len() == 2);
    write(
        dir,
        file::COMPARISONS,
        vec![
            c(
                col::BACKBONE_A,
                compared.iter().take(pairs).copied().collect::<Vec<_>>(),
            ),
            c(
                col::BACKBONE_B,
                compared
                    .iter()
                    .skip(1)
                    .take(pairs)
                    .copied()
                    .collect::<Vec<_>>(),
            ),
            c(col::RUNS_A, vec![3u32; pairs]),
            c(col::RUNS_B, vec![2u32; pairs]),
            c(col::SIMILARITY_A, vec![0.7; pairs]),
            c(col::SIMILARITY_B, vec![0.6; pairs]),
            c(col::DIFFERENCE, vec![0.1; pairs]),
            c(col::P_VALUE, vec![0.1; pairs]),
            c(col::EXACT, vec![true; pairs]),
            c(col::PERMUTATIONS, vec![10u64; pairs]),
        ],
    );

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
    let bins = 5u32;
    let per_model = |k: usize| models.iter().flat_map(move |m| std::iter::repeat_n(*m, k));
    write(
        dir,
        file::RELIABILITY,
        vec![
            c(
                col::BACKBONE,
                per_model(bins as usize).map(|m| m.0).collect::<Vec<_>>(),
            ),
            c(
                col::SEED,
                per_model(bins as usize).map(|m| m.1).collect::<Vec<_>>(),
            ),
            c(
                col::EPOCH,
                per_model(bins as usize)
                    .map(|m| if m.1.is_some() { 2u32 } else { 0 })
                    .collect::<Vec<_>>(),
            ),
            c(
                col::BIN,
                per_model(bins as usize)
                    .enumerate()
                    .map(|(i, _)| i as u32 % bins)
                    .collect::<Vec<_>>(),
            ),
            c(
                col::BIN_LOW,
                per_model(bins as usize)
                    .enumerate()
                    .map(|(i, _)| (i as u32 % bins) as f64 / bins as f64)
                    .collect::<Vec<_>>(),
            ),
            c(
                col::BIN_HIGH,
                per_model(bins as usize)
                    .enumerate()
                    .map(|(i, _)| (i as u32 % bins + 1) as f64 / bins as f64)
                    .collect::<Vec<_>>(),
            ),
            c(
                col::COUNT,
                per_model(bins as usize)
                    .enumerate()
                    .map(|(i, _)| {
                        if (i as u32).is_multiple_of(bins) {
                            0u32
                        } else {
                            10 + i as u32 % bins
                        }
                    })
                    .collect::<Vec<_>>(),
            ),
            c(
                col::ACCURACY,
                per_model(bins as usize)
                    .enumerate()
                    .map(|(i, _)| {
                        (!(i as u32).is_multiple_of(bins))
                            .then_some(0.1 + 0.2 * (i as u32 % bins) as f64)
                    })
                    .collect::<Vec<_>>(),
            ),
            c(
                col::CONFIDENCE,
                per_model(bins as usize)
                    .enumerate()
                    .map(|(i, _)| {
                        (!(i as u32).is_multiple_of(bins))
                            .then_some(0.1 + 0.2 * (i as u32 % bins) as f64)
                    })
                    .collect::<Vec<_>>(),
            ),
        ],
    );
    let (grid, images, size) = (4u32, 2u32, 16u32);
    let cells = (grid * grid * images) as usize;
    write(
        dir,
        file::ATTENTION,
        vec![
            c(
                col::BACKBONE,
                per_model(cells).map(|m| m.0).collect::<Vec<_>>(),
            ),
            c(col::SEED, per_model(cells).map(|m| m.1).collect::<Vec<_>>()),
            c(
                col::EPOCH,
                per_model(cells)
                    .map(|m| if m.1.is_some() { 2u32 } else { 0 })
                    .collect::<Vec<_>>(),
            ),
            c(
                col::IMAGE,
                per_model(cells)
                    .enumerate()
                    .map(|(i, _)| (i % cells) as u32 / (grid * grid))
                    .collect::<Vec<_>>(),
            ),
            c(
                col::IMAGE_ID,
                per_model(cells)
                    .map(|_| "train/n01/img.JPEG")
                    .collect::<Vec<_>>(),
            ),
            c(
                col::ROW,
                per_model(cells)
                    .enumerate()
                    .map(|(i, _)| (i as u32 % (grid * grid)) / grid)
                    .collect::<Vec<_>>(),
            ),
            c(
                col::COLUMN,
                per_model(cells)
                    .enumerate()
                    .map(|(i, _)| i as u32 % grid)
                    .collect::<Vec<_>>(),
            ),
            c(
                col::ATTENTION,
                per_model(cells)
                    .enumerate()
                    .map(|(i, m)| ((i % 16) as f64 + m.1.map_or(0.0, |s| s as f64)) / 20.0)
                    .collect::<Vec<_>>(),
            ),
            c(
                col::PATCH_NORM,
                per_model(cells)
                    .enumerate()
                    .map(|(i, _)| 1.0 + (i % 5) as f64)
                    .collect::<Vec<_>>(),
            ),
        ],
    );
    let image_rows: Vec<(&str, u32)> = names
        .iter()
        .filter(|n| finished.iter().any(|r| r.backbone == **n))
        .flat_map(|n| (0..images).map(move |i| (*n, i)))
        .collect();
    let pixels: Vec<Vec<u8>> = image_rows
        .iter()
        .map(|(_, i)| {
            (0..size * size * 3)
                .map(|p| (p * 7 + i * 50) as u8)
                .collect()
        })
        .collect();
    write(
        dir,
        file::ATTENTION_IMAGES,
        vec![
            c(
                col::BACKBONE,
                image_rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            ),
            c(
                col::IMAGE,
                image_rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            ),
            c(
                col::IMAGE_ID,
                image_rows
                    .iter()
                    .map(|_| "train/n01/img.JPEG")
                    .collect::<Vec<_>>(),
            ),
            c(
                col::SIZE,
                image_rows.iter().map(|_| size).collect::<Vec<_>>(),
            ),
            c(
                col::PIXELS,
                pixels.iter().map(|p| p.as_slice()).collect::<Vec<&[u8]>>(),
            ),
        ],
    );
    // WiSE-FT at α = 0, 0.5 and the last epoch (α = 1) of each finished run.
    let path: Vec<(&Run, f64)> = finished
        .iter()
        .flat_map(|r| [0.0, 0.5, 1.0].map(|a| (*r, a)))
        .collect();
    write(
        dir,
        file::WISE_FT,
        vec![
            c(
                col::BACKBONE,
                path.iter().map(|(r, _)| r.backbone).collect::<Vec<_>>(),
            ),
            c(
                col::SEED,
                path.iter().map(|(r, _)| r.seed).collect::<Vec<_>>(),
            ),
            c(col::ALPHA, path.iter().map(|(_, a)| *a).collect::<Vec<_>>()),
            c(
                col::ACCURACY,
                path.iter()
                    .map(|(r, a)| 0.4 + a * r.gain * r.epochs as f64)
                    .collect::<Vec<_>>(),
            ),
            c(
                col::BALANCED_ACCURACY,
                path.iter()
                    .map(|(r, a)| 0.4 + a * r.gain * r.epochs as f64)
                    .collect::<Vec<_>>(),
            ),
            c(col::MACRO_F1, path.iter().map(|_| 0.3).collect::<Vec<_>>()),
            c(
                col::ECE,
                path.iter().map(|(_, a)| 0.05 + 0.1 * a).collect::<Vec<_>>(),
            ),
            c(
                col::SIMILARITY,
                path.iter()
                    .map(|(r, a)| 1.0 - a * 0.15 * r.epochs as f64)
                    .collect::<Vec<_>>(),
            ),
            c(
                col::KNN_TOP1,
                path.iter().map(|(_, a)| 0.8 - 0.1 * a).collect::<Vec<_>>(),
            ),
        ],
    );
    write_verdicts(
        dir,
        &config,
        &finished,
        |r| (last(r, &sim), last(r, &acc), last(r, &knn)),
        &fitted,
        |r| {
            // This run's fine-tuned epochs' CLS points (layers 1 to 3), with the epoch's ECE.
            let first = runs
                .iter()
                .take_while(|x| !std::ptr::eq(*x, r))
                .map(|x| x.epochs as usize + 1)
                .sum::<usize>();
            (1..=r.epochs as usize)
                .flat_map(|e| (1..=3).map(move |layer| (e, layer)))
                .map(|(e, layer)| (lc_of(r, e, layer), ece[first + e]))
                .collect()
        },
    );
    // One method: no pair of methods to compare.
    let none = || Vec::<&str>::new();
    let mut method_tests = DataFrame::new_infer_height(vec![
        c(col::DATASET, none()),
        c(col::BACKBONE, none()),
        c(col::METHOD_A, none()),
        c(col::METHOD_B, none()),
        c(col::RUNS_A, Vec::<u32>::new()),
        c(col::RUNS_B, Vec::<u32>::new()),
        c(col::SIMILARITY_A, Vec::<f64>::new()),
        c(col::SIMILARITY_B, Vec::<f64>::new()),
        c(col::DIFFERENCE, Vec::<f64>::new()),
        c(col::P_VALUE, Vec::<f64>::new()),
        c(col::EXACT, Vec::<bool>::new()),
        c(col::PERMUTATIONS, Vec::<u64>::new()),
    ])
    .unwrap();
    write_frame(dir, file::METHOD_COMPARISONS, &mut method_tests);
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
    for name in NAMES
        .iter()
        .filter(|n| !["fig3_attention", PRETRAIN_CURVES].contains(*n))
    {
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
    assert!(wise_ft.contains("- `full` / `dino` (2 runs): most accurate at α = 1. α = 0: similarity 1.000, accuracy 0.400"), "{wise_ft}");
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
    for name in NAMES
        .iter()
        .filter(|n| !["fig3_attention", PRETRAIN_CURVES].contains(*n))
    {
        assert!(
            report.contains(&format!("![{name}.png](figures/{name}.png)")),
            "{name}"
        );
    }
    assert!(
        report.contains("1 left out (seed 9: failed after epoch 1: loss NaN)"),
        "{report}"
    );
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
    assert!(report.contains("- `vit` is not shown to keep more similarity than `dino`: mean final similarity 0.700 (3 runs) vs 0.600 (2 runs); one-sided permutation test p = 0.100 (exact, all 10 splits of the runs; the smallest p they allow is 0.100)."), "{report}");
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
    assert!(report.contains("3. **Supervised pre-training forgets less than self-supervised pre-training.** Cannot say"), "{report}");
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
        NAMES.len() - 1,
        "every figure but the learning curves (nothing pre-trained here): {:?}",
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
    let mut epochs = read_frame(d, file::EPOCHS);
    let _ = epochs.drop_in_place(col::DATASET).unwrap();
    write_frame(&old, file::EPOCHS, &mut epochs);
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
        let mut verdicts = read_frame(d, file::VERDICTS);
        verdicts
            .with_column(c(col::SHARE, vec![share; verdicts.height()]))
            .unwrap();
        write_frame(d, file::VERDICTS, &mut verdicts);
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
    assert!(report.contains("exist.** Undecided here: it holds for no backbone in enough resamples to say; undecided for 2"), "{report}");
    assert!(
        report.contains("(undecided: holds in 94.9 % of 1000 resamples of the runs)"),
        "{report}"
    );
    assert!(
        report.contains("pre-training.** Undecided here"),
        "{report}"
    );
    assert!(report.contains("| 3. supervised forgets less (k-NN top-1) | undecided (0 of 1) | undecided (0 of 1) | undecided (0 of 1) |"), "{report}");
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
    let text = "[study]\nname = \"two\"\nseeds = [0, 1]\n[[datasets.medical]]\nname = \"skin\"\nkind = \"ham10000\"\nroot = \"h\"\n\
         [[datasets.medical]]\nname = \"xray\"\nkind = \"medmnist\"\nroot = \"x.npz\"\n\
         [datasets.natural]\nkind = \"image-folder\"\nroot = \"n\"\n[evaluation]\nfit_levels = 4\nknn_k = [20]\n\
         [[backbones]]\nname = \"vit\"\ncheckpoint = \"x\"\nfamily = \"vit\"\n[[backbones]]\nname = \"dino\"\ncheckpoint = \"y\"\nfamily = \"dinov2\"\n";
    let config = StudyConfig::from_toml_str(text, Path::new("two.toml")).unwrap();
    StudyDir::new(&d).write_resolved_config(&config).unwrap();
    // The tables these synthetic studies have (no pretrain.parquet: optional).
    for name in file::ALL
        .into_iter()
        .filter(|n| StudyDir::new(&skin).tables_dir().join(n).exists())
    {
        let mut both: Option<DataFrame> = None;
        for (part, dataset) in [(&skin, "skin"), (&xray, "xray")] {
            let mut frame = read_frame(part, name);
            frame
                .with_column(c(col::DATASET, vec![dataset; frame.height()]))
                .unwrap();
            both = Some(match both {
                Some(b) => b.vstack(&frame).unwrap(),
                None => frame,
            });
        }
        write_frame(&d, name, &mut both.unwrap());
    }
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
    let mut backbones = read_frame(d, file::BACKBONES);
    let h = backbones.height();
    for name in [
        col::mean(col::ACCURACY),
        col::std(col::ACCURACY),
        col::mean(col::KNN_AFTER),
        col::std(col::KNN_AFTER),
    ] {
        backbones.with_column(c(&name, vec![f64::NAN; h])).unwrap();
    }
    write_frame(d, file::BACKBONES, &mut backbones);
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
    let mut epochs = read_frame(d, file::EPOCHS);
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_frame(d, file::EPOCHS, &mut epochs);
    assert!(
        sim_plot::up_to_date(d),
        "same rows, newer file: still up to date"
    );
    let h = epochs.height();
    epochs.with_column(c(col::ECE, vec![0.5; h])).unwrap();
    write_frame(d, file::EPOCHS, &mut epochs);
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
