//! The tables of every committed epoch, one (medical data set, method) at a
//! time: `epochs`, `classes`, `wise_ft`, `layers`, and the compared models' `reliability`,
//! `attention` and `attention_images`.

use super::Facet;
use super::evaluations::{AttentionImage, EpochMetrics, Run};
use sim_study::config::StudyConfig;
use sim_study::eval_file::Layer;
use sim_study::tables::rows::{
    BinRow, ClassRow, EpochRow, ImageRow, Kept, KnnByK, LayerRow, PatchRow, SimilarityRow,
    TestScores, WiseFtRow,
};

/// The index of `evaluation.knn_report_k` in `evaluation.knn_k`.
pub(super) fn report_k(config: &StudyConfig) -> usize {
    let e = &config.evaluation;
    e.knn_k
        .iter()
        .position(|&k| k == e.knn_report_k)
        .expect("validated: knn_report_k is one of knn_k")
}

/// One model's scores on the medical test split.
fn test_scores(m: &EpochMetrics) -> TestScores {
    TestScores {
        accuracy: m.accuracy,
        balanced_accuracy: m.balanced_accuracy,
        macro_f1: m.macro_f1,
        auroc: m.auroc,
        ece: m.ece,
        mce: m.mce,
        adaptive_ece: m.adaptive_ece,
    }
}

/// What one model kept: its similarity and its k-NN top-1 at the report's
/// k (`report`: its index) and at each k of the study.
fn kept(m: &EpochMetrics, config: &StudyConfig, report: usize) -> Kept {
    let ks = &config.evaluation.knn_k;
    Kept {
        similarity: Run::similarity(m),
        knn_top1: m.knn_at(report),
        knn_top1_k: KnnByK(
            ks.iter()
                .enumerate()
                .map(|(i, &k)| (k, m.knn_at(i)))
                .collect(),
        ),
    }
}

/// Every run's every committed epoch.
pub(super) fn epochs(runs: &[Run<'_>], config: &StudyConfig, facet: Facet) -> Vec<EpochRow> {
    let report = report_k(config);
    let mut rows = Vec::new();
    for r in runs {
        for (epoch, m) in &r.epochs {
            rows.push(EpochRow {
                dataset: facet.dataset.into(),
                method: facet.method.into(),
                backbone: r.backbone.into(),
                seed: r.seed,
                epoch: *epoch,
                status: r.status.name().into(),
                head: m.head.into(),
                scores: test_scores(m),
                nll: m.nll,
                brier: m.brier,
                temperature: m.scaled.as_ref().map(|s| s.temperature),
                ece_scaled: m.scaled.as_ref().map(|s| s.ece),
                mce_scaled: m.scaled.as_ref().map(|s| s.mce),
                nll_scaled: m.scaled.as_ref().map(|s| s.nll),
                brier_scaled: m.scaled.as_ref().map(|s| s.brier),
                kept: kept(m, config, report),
            });
        }
    }
    rows
}

/// Every run's every committed epoch, per class of the data set
/// (`class_names[label]`, from its split file; a model with more classes
/// than the file names is an error).
pub(super) fn classes(
    runs: &[Run<'_>],
    class_names: &[String],
    facet: Facet,
) -> Result<Vec<ClassRow>, String> {
    let mut rows = Vec::new();
    for r in runs {
        for (epoch, m) in &r.epochs {
            if m.classes.len() > class_names.len() {
                return Err(format!(
                    "{} seed {} epoch {epoch}: {} classes, the split file names {}",
                    r.backbone,
                    r.seed,
                    m.classes.len(),
                    class_names.len()
                ));
            }
            for (class, s) in m.classes.iter().enumerate() {
                rows.push(ClassRow {
                    dataset: facet.dataset.into(),
                    method: facet.method.into(),
                    backbone: r.backbone.into(),
                    seed: r.seed,
                    epoch: *epoch,
                    head: m.head.into(),
                    class: class as u32,
                    class_name: class_names[class].clone(),
                    support: s.support as u32,
                    sensitivity: s.sensitivity,
                    specificity: s.specificity,
                    auroc: s.auroc,
                });
            }
        }
    }
    Ok(rows)
}

/// Per finished run of a method with `wise_ft`: its WiSE-FT backbones by
/// increasing α, then α = 1, the last epoch itself.
pub(super) fn wise_ft(runs: &[Run<'_>], config: &StudyConfig, facet: Facet) -> Vec<WiseFtRow> {
    let report = report_k(config);
    let mut rows = Vec::new();
    for r in runs.iter().filter(|r| !r.wise_ft.is_empty()) {
        let path = r.wise_ft.iter().map(|(a, m)| (*a, m));
        for (alpha, m) in path.chain(std::iter::once((1.0, r.last()))) {
            rows.push(WiseFtRow {
                dataset: facet.dataset.into(),
                method: facet.method.into(),
                backbone: r.backbone.into(),
                seed: r.seed,
                alpha,
                scores: test_scores(m),
                kept: kept(m, config, report),
            });
        }
    }
    rows
}

/// A layer's number in the tables: the final norm is numbered after the
/// last block of the run's epoch-0 evaluation.
fn layer_number(r: &Run<'_>) -> impl Fn(Layer) -> u32 {
    let blocks = r.epochs[0].1.cka.keys().filter_map(|(_, l, _)| match l {
        Layer::Index(i) => Some(*i as u32),
        Layer::Final => None,
    });
    let final_index = blocks.max().map_or(0, |m| m + 1);
    move |l| match l {
        Layer::Index(i) => i as u32,
        Layer::Final => final_index,
    }
}

/// Every run's every epoch's CKA per layer, token and probe set.
pub(super) fn layers(runs: &[Run<'_>], facet: Facet) -> Vec<LayerRow> {
    let mut rows = Vec::new();
    for r in runs {
        let number = layer_number(r);
        for (e, m) in &r.epochs {
            for (&(p, l, t), &(biased, debiased)) in &m.cka {
                rows.push(LayerRow {
                    dataset: facet.dataset.into(),
                    method: facet.method.into(),
                    backbone: r.backbone.into(),
                    seed: r.seed,
                    epoch: *e,
                    layer: number(l),
                    is_final: l == Layer::Final,
                    token: t.name().into(),
                    probe: p.name().into(),
                    cka: biased,
                    cka_debiased: debiased,
                });
            }
        }
    }
    rows
}

/// Every run's every epoch's measures per layer (medical probe, CLS), each
/// with its chance level.
pub(super) fn similarity(runs: &[Run<'_>], facet: Facet) -> Vec<SimilarityRow> {
    let mut rows = Vec::new();
    for r in runs {
        let number = layer_number(r);
        for (e, m) in &r.epochs {
            for (&(l, measure), &(value, chance)) in &m.measures {
                rows.push(SimilarityRow {
                    dataset: facet.dataset.into(),
                    method: facet.method.into(),
                    backbone: r.backbone.into(),
                    seed: r.seed,
                    epoch: *e,
                    layer: number(l),
                    is_final: l == Layer::Final,
                    measure: measure.name().into(),
                    value,
                    null_mean: chance.map(|c| c.mean),
                    null_q95: chance.map(|c| c.q95),
                    above_chance: chance.map(|c| c.exceeded_by(measure, value)),
                });
            }
        }
    }
    rows
}

/// The models the reliability diagram and the attention maps compare: each
/// backbone's pre-trained model (seed none, epoch 0), then each finished
/// run's last epoch.
fn compared_models<'r, 'a>(
    runs: &'r [Run<'a>],
) -> Vec<(&'a str, Option<u64>, u32, &'r EpochMetrics)> {
    let mut models = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in runs.iter().filter(|r| r.finished()) {
        if seen.insert(r.backbone) {
            models.push((r.backbone, None, 0, &*r.epochs[0].1));
        }
        let (epoch, last) = r.epochs.last().expect("epoch 0 is always there");
        models.push((r.backbone, Some(r.seed), *epoch, &**last));
    }
    models
}

/// The reliability diagram's bins (equal-width, `evaluation.ece_bins`),
/// before temperature scaling and, where fitted, after.
pub(super) fn reliability(runs: &[Run<'_>], facet: Facet) -> Vec<BinRow> {
    let mut rows = Vec::new();
    for (b, s, e, m) in compared_models(runs) {
        let scaled = m.scaled.iter().map(|t| (true, &t.reliability));
        for (temperature_scaled, bins) in std::iter::once((false, &m.reliability)).chain(scaled) {
            for (i, bin) in bins.iter().enumerate() {
                let filled = bin.count > 0;
                rows.push(BinRow {
                    dataset: facet.dataset.into(),
                    method: facet.method.into(),
                    backbone: b.into(),
                    seed: s,
                    epoch: e,
                    temperature_scaled,
                    bin: i as u32,
                    low: bin.lower,
                    high: bin.upper,
                    count: bin.count as u32,
                    accuracy: filled.then_some(bin.accuracy),
                    confidence: filled.then_some(bin.confidence),
                });
            }
        }
    }
    rows
}

/// Figure 3's maps: per model, image and patch (row, column of the grid).
pub(super) fn attention(
    runs: &[Run<'_>],
    images: &[AttentionImage],
    facet: Facet,
) -> Vec<PatchRow> {
    let mut rows = Vec::new();
    for (b, s, e, m) in compared_models(runs) {
        let Some(maps) = &m.attention else { continue };
        let grid = (maps.patches as f64).sqrt().round() as usize;
        let ids: Vec<&str> = images
            .iter()
            .filter(|i| i.backbone == b)
            .map(|i| i.id.as_str())
            .collect();
        if grid * grid != maps.patches {
            continue; // not a square grid: no map to draw
        }
        for i in 0..maps.images {
            for p in 0..maps.patches {
                rows.push(PatchRow {
                    dataset: facet.dataset.into(),
                    method: facet.method.into(),
                    backbone: b.into(),
                    seed: s,
                    epoch: e,
                    image: i as u32,
                    image_id: ids.get(i).copied().unwrap_or("").into(),
                    row: (p / grid) as u32,
                    column: (p % grid) as u32,
                    attention: maps.attention[i * maps.patches + p],
                    patch_norm: maps.patch_norm[i * maps.patches + p],
                });
            }
        }
    }
    rows
}

/// The attention images' pixels, numbered per backbone in their order.
pub(super) fn attention_images(images: &[AttentionImage], facet: Facet) -> Vec<ImageRow> {
    let mut index = std::collections::BTreeMap::<&str, u32>::new();
    images
        .iter()
        .map(|i| {
            let next = index.entry(&i.backbone).or_insert(0);
            let image = *next;
            *next += 1;
            ImageRow {
                dataset: facet.dataset.into(),
                method: facet.method.into(),
                backbone: i.backbone.clone(),
                image,
                image_id: i.id.clone(),
                size: i.size,
                pixels: i.pixels.clone(),
            }
        })
        .collect()
}
