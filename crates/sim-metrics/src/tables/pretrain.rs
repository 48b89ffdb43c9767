//! The tables about the backbones before fine-tuning: what each knows
//! (`pretrain`) and, for one the tool pre-trained, its learning curve
//! (`pretrain_epochs`).

use super::TableError;
use super::evaluations::{Epoch0s, read_pretrained};
use super::per_epoch::report_k;
use sim_study::StudyDir;
use sim_study::config::{BackboneConfig, StudyConfig};
use sim_study::layout::pretrain_dir;
use sim_study::pretrain_state::PretrainState;
use sim_study::tables::rows::{PretrainEpochRow, PretrainRow};
use sim_study::tables::{col, file as table_file};

/// A backbone's pretrain folder as the study folder `study` sees it (its
/// `pretrained/` sibling, wherever the study moved).
fn pretrain_state(
    study: &StudyDir,
    config: &StudyConfig,
    b: &BackboneConfig,
) -> Result<Option<PretrainState>, TableError> {
    let Some(p) = b.pretrain() else {
        return Ok(None);
    };
    let mut located = config.clone();
    located.study.output_dir = Some(study.root().to_owned());
    PretrainState::read(&pretrain_dir(&located, b, p)).map_err(TableError)
}

/// The learning curves: per pre-training the tool ran (named by the first
/// backbone made from it, [`StudyConfig::pretrainings`]), one row per
/// finished epoch of its `pretrain.toml` (loss, time, DINO's teacher
/// entropy and prototypes in use, and k-NN top-1 where measured).
pub(super) fn pretrain_epochs(
    study: &StudyDir,
    config: &StudyConfig,
) -> Result<Vec<PretrainEpochRow>, TableError> {
    let mut rows = Vec::new();
    for b in config.pretrainings() {
        let Some(state) = pretrain_state(study, config, b)? else {
            continue;
        };
        for h in &state.history {
            rows.push(PretrainEpochRow {
                backbone: b.name.clone(),
                objective: state.objective.name().into(),
                epoch: h.epoch,
                loss: h.loss,
                seconds: h.seconds,
                teacher_entropy: h.teacher_entropy,
                effective_prototypes: h.effective_prototypes,
                knn_top1: h.knn_top1,
            });
        }
    }
    Ok(rows)
}

/// What each backbone knows before fine-tuning: k-NN top-1 on the natural
/// images (k = `knn_report_k`) and a linear probe on the medical task (epoch
/// 0 scored by the probe's head: [`Head::epoch0`]), from its epoch-0
/// evaluation; how the tool pre-trained it, from its pretrain folder's
/// `pretrain.toml` (beside the study folder).
pub(super) fn pretrain(
    study: &StudyDir,
    config: &StudyConfig,
    epoch0s: &mut Epoch0s,
) -> Result<Vec<PretrainRow>, TableError> {
    let mut rows = Vec::new();
    for dataset in config.medical_names() {
        for b in &config.backbones {
            let path = study.pretrained_eval(dataset, &b.name);
            if !path.exists() {
                continue;
            }
            // An epoch 0 that cannot be measured (the NaN features of a
            // diverging backbone) leaves that row out, as the other tables do.
            let read = read_pretrained(&path, config, epoch0s);
            let metrics = match read.as_ref() {
                Ok(epoch0) => &epoch0.metrics,
                Err(e) => {
                    tracing::warn!(
                        "{dataset}/{}: left out of {}: {e}",
                        b.name,
                        table_file::PRETRAIN
                    );
                    continue;
                }
            };
            let Some(knn) = metrics.knn_at(report_k(config)) else {
                tracing::warn!(
                    "{dataset}/{}: left out of {}: its epoch 0 has no natural images",
                    b.name,
                    table_file::PRETRAIN
                );
                continue;
            };
            let probe = (metrics.head == col::HEAD_PROBE)
                .then_some((metrics.accuracy, metrics.balanced_accuracy));
            // A snapshot's pre-training: its epochs up to the snapshot's.
            let state = pretrain_state(study, config, b)?.map(|mut s| {
                if let Some(e) = b.pretrain_epoch() {
                    s.history.retain(|h| h.epoch <= e);
                }
                s
            });
            let last = state.as_ref().and_then(|s| s.history.last());
            let trained = state.as_ref().filter(|s| !s.history.is_empty());
            rows.push(PretrainRow {
                dataset: dataset.into(),
                backbone: b.name.clone(),
                objective: b
                    .pretrain()
                    .map_or(col::OBJECTIVE_CHECKPOINT, |p| p.objective.name())
                    .into(),
                epochs: b.pretrain_epoch().or(b.pretrain().map(|p| p.epochs)),
                minutes: trained.map(|s| s.minutes()),
                images_per_s: trained.map(|s| {
                    s.history.iter().map(|h| h.images_per_s).sum::<f64>() / s.history.len() as f64
                }),
                loss: last.map(|h| h.loss),
                knn_top1: knn,
                probe_balanced_accuracy: probe.map(|p| p.1),
                probe_accuracy: probe.map(|p| p.0),
                effective_prototypes: last.and_then(|h| h.effective_prototypes),
            });
        }
    }
    Ok(rows)
}
