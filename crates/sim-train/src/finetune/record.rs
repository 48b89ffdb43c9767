//! What a run writes besides its checkpoints: each epoch's evaluation file
//! with where it comes from (its metadata), the WiSE-FT evaluations after
//! the last epoch, and epoch 0, the backbone before fine-tuning, which the
//! runs of a backbone share.

use crate::model::Vit;
use crate::train::classifier::Classifier;
use anyhow::bail;
use burn::prelude::*;
use sim_study::config::{BackboneConfig, DatasetId, RunId};
use sim_study::eval_file::{EvalFile, EvalMetadata};
use sim_study::fingerprint::Fingerprint;
use sim_study::lock::DirLock;
use sim_study::tensors::write_safetensors;
use sim_study::{StudyDir, crash, remove_leftovers};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use super::eval::{
    EvalSets, evaluate, evaluate_medical, evaluate_medical_pretrained, evaluate_natural,
};
use super::open::{RunData, check_same_data};
use super::wise_ft;

/// Where a run's evaluations go and what they record.
pub(super) struct Evaluated<'a> {
    pub(super) study: &'a StudyDir,
    pub(super) run: &'a RunId,
    pub(super) sets: &'a EvalSets<'a>,
    pub(super) provenance: &'a Provenance,
    pub(super) backbone_sha256: &'a str,
}

impl Evaluated<'_> {
    /// The evaluation after `epoch`: the medical sets, and the natural ones
    /// where `natural` (`evaluation.natural_every_epoch`, or the last epoch).
    pub(super) fn write_epoch<B: Backend>(
        &self,
        model: &Classifier<B>,
        epoch: u32,
        natural: bool,
        device: &B::Device,
    ) -> anyhow::Result<()> {
        let tensors = if natural {
            evaluate(model, self.sets, device)
        } else {
            evaluate_medical(model, self.sets, device)
        };
        let metadata = self.metadata(epoch, None);
        write_safetensors(
            &self.study.epoch_eval(self.run, epoch),
            tensors,
            Some(metadata),
        )?;
        crash::point("evaluation-written");
        Ok(())
    }

    /// After the last epoch `last` (again, if a kill came before the run was
    /// marked finished: the files are rewritten whole, the same bytes): the
    /// WiSE-FT backbone (1 − α)θ₀ + αθ_ft at each α, with the fine-tuned head.
    pub(super) fn write_wise_ft<B: Backend>(
        &self,
        start: &Vit<B>,
        finetuned: &Classifier<B>,
        alphas: &[f64],
        last: u32,
        device: &B::Device,
    ) -> anyhow::Result<()> {
        for &alpha in alphas {
            let eval_start = Instant::now();
            let model = wise_ft::interpolate(start, finetuned, alpha);
            let tensors = evaluate(&model, self.sets, device);
            let metadata = self.metadata(last, Some(alpha));
            write_safetensors(
                &self.study.wise_ft_eval(self.run, alpha),
                tensors,
                Some(metadata),
            )?;
            crash::point("wise-ft-written");
            tracing::info!(
                "WiSE-FT α = {alpha}: evaluated in {:.1} s",
                eval_start.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    fn metadata(
        &self,
        epoch: u32,
        alpha: Option<f64>,
    ) -> std::collections::HashMap<String, String> {
        self.provenance.metadata(
            Some(&self.run.dataset),
            Some(self.run.seed),
            epoch,
            alpha,
            self.backbone_sha256,
        )
    }
}

/// Where every evaluation file of a run comes from (its metadata).
pub(super) struct Provenance {
    backbone: String,
    /// Ids of the natural images whose attention is kept.
    attention_ids: Vec<String>,
    /// SHA-256 of the medical and the natural split files, by data set.
    data_sha256: BTreeMap<String, String>,
}

impl Provenance {
    /// The provenance of `run`'s evaluations of `sets`, drawn from `data`.
    pub(super) fn new(run: &RunId, sets: &EvalSets<'_>, data: &RunData) -> Provenance {
        Provenance {
            backbone: run.backbone.clone(),
            attention_ids: sets.attention_ids(&data.natural),
            data_sha256: data.split_sha256.clone(),
        }
    }

    /// A file without a medical data set (a backbone's natural-image epoch
    /// 0) records the natural split only.
    fn metadata(
        &self,
        dataset: Option<&str>,
        seed: Option<u64>,
        epoch: u32,
        alpha: Option<f64>,
        backbone_sha256: &str,
    ) -> std::collections::HashMap<String, String> {
        let natural = DatasetId::Natural.file_stem();
        let data_sha256 = self
            .data_sha256
            .iter()
            .filter(|(k, _)| dataset.is_some() || **k == natural)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        EvalMetadata {
            dataset: dataset.map(str::to_owned),
            backbone: self.backbone.clone(),
            backbone_sha256: backbone_sha256.to_owned(),
            data_sha256,
            epoch,
            seed,
            alpha,
            attention_ids: self.attention_ids.clone(),
        }
        .to_map()
    }
}

/// Epoch 0, made by the first run that needs it while the others wait: the
/// backbone file's fingerprint and its natural-image evaluation once per
/// backbone, then the medical data set's evaluation (with the natural
/// tensors copied in) once per data set and backbone. Returns the backbone
/// file's SHA-256.
#[allow(clippy::too_many_arguments)]
pub(super) fn evaluate_pretrained<B: Backend>(
    study: &StudyDir,
    run: &RunId,
    bcfg: &BackboneConfig,
    backbone_path: &Path,
    model: &Classifier<B>,
    sets: &EvalSets<'_>,
    provenance: &Provenance,
    device: &B::Device,
) -> anyhow::Result<String> {
    let natural_eval = study.natural_eval(&run.backbone);
    let backbone_sha256 = {
        let _backbone_lock = DirLock::wait(&study.backbone_dir(&run.backbone))?;
        remove_leftovers(&study.backbone_dir(&run.backbone))?;
        let fingerprint = check_backbone_file(study, bcfg, backbone_path)?;
        if natural_eval.exists() {
            check_epoch0_data(&natural_eval, provenance)?;
        } else {
            let start = Instant::now();
            let tensors = evaluate_natural(model, sets, true, device);
            write_safetensors(
                &natural_eval,
                tensors,
                Some(provenance.metadata(None, None, 0, None, &fingerprint.sha256)),
            )?;
            tracing::info!(
                "epoch 0 on the natural images written to {} in {:.1} s",
                natural_eval.display(),
                start.elapsed().as_secs_f64()
            );
        }
        fingerprint.sha256
    };
    let pretrained = study.pretrained_eval(&run.dataset, &run.backbone);
    let model_dir = study.model_dir(&run.dataset, &run.backbone);
    let _lock = DirLock::wait(&model_dir)?;
    remove_leftovers(&model_dir)?;
    if pretrained.exists() {
        check_epoch0_data(&pretrained, provenance)?;
    } else {
        let start = Instant::now();
        let mut tensors = evaluate_medical_pretrained(model, sets, device);
        tensors.extend(
            EvalFile::open(&natural_eval)
                .map_err(anyhow::Error::msg)?
                .raw_tensors(),
        );
        write_safetensors(
            &pretrained,
            tensors,
            Some(provenance.metadata(Some(&run.dataset), None, 0, None, &backbone_sha256)),
        )?;
        tracing::info!(
            "epoch 0 evaluation written to {} in {:.1} s",
            pretrained.display(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(backbone_sha256)
}

/// An existing epoch 0 was made from the data this run reads.
fn check_epoch0_data(file: &Path, provenance: &Provenance) -> anyhow::Result<()> {
    let recorded = EvalFile::open(file)
        .map_err(anyhow::Error::msg)?
        .metadata()
        .map_err(anyhow::Error::msg)?
        .data_sha256;
    check_same_data(
        file,
        &recorded,
        &provenance.data_sha256,
        "or remove it to evaluate the backbone again (and every run made from it)",
    )
}

/// The backbone file's fingerprint, checked against the one the study
/// recorded when its first run of this backbone started (recorded now if
/// none was). Call it holding the backbone folder's lock.
fn check_backbone_file(
    study: &StudyDir,
    bcfg: &BackboneConfig,
    path: &Path,
) -> anyhow::Result<Fingerprint> {
    let record = study.backbone_record(&bcfg.name);
    let recorded = Fingerprint::read(&record).map_err(anyhow::Error::msg)?;
    let now = Fingerprint::of(path, recorded.as_ref())?;
    if let Some(r) = &recorded
        && r.sha256 != now.sha256
    {
        bail!(
            "backbone file {} changed since this study started using it: SHA-256 {} \
                recorded in {}, {} now; \
             runs of `{}` would mix two models. Restore the file, or remove {} to start \
             this backbone over",
            path.display(),
            r.sha256,
            record.display(),
            now.sha256,
            bcfg.name,
            study.backbone_dir(&bcfg.name).display()
        );
    }
    if recorded.as_ref() != Some(&now) {
        now.write(&record)?;
    }
    Ok(now)
}
