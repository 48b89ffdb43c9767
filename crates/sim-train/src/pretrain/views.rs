//! What a pre-training step trains on, drawn from the epoch's random stream
//! in a fixed order (so a seed fixes it): the supervised objective's
//! labelled crops, or DINO's views of each image.

use super::EpochData;
use crate::data::batch::HostBatch;
use crate::data::colour::ColourAugment;
use crate::data::transform::TrainAugment;
use rand_chacha::ChaCha8Rng;
use sim_study::config::{Objective, PretrainConfig};

/// How a pre-training's steps draw their images.
pub(super) enum Draw {
    /// Random-resized crops of the input size with horizontal flips.
    Crops(TrainAugment),
    Dino(DinoViews),
}

/// One step's images in host memory.
pub(super) enum StepViews {
    Crops(HostBatch),
    /// The global views stacked view by view, `[2n, 3, S, S]`; the local
    /// ones `[kn, 3, s, s]`, none without local crops.
    Dino {
        globals: HostBatch,
        locals: Option<HostBatch>,
    },
}

impl StepViews {
    /// The images the step sees (each in every view).
    pub(super) fn images(&self) -> usize {
        match self {
            StepViews::Crops(batch) => batch.rows,
            StepViews::Dino { globals, .. } => globals.rows / 2,
        }
    }
}

impl Draw {
    /// `p`'s draw; `global_side` and `local_side` are the views' sides.
    pub(super) fn new(p: &PretrainConfig, global_side: u32, local_side: u32) -> Draw {
        match p.objective {
            Objective::Dino => Draw::Dino(DinoViews::new(p, global_side, local_side)),
            Objective::Supervised | Objective::None => Draw::Crops(TrainAugment {
                scale: p.crop_scale,
                hflip: true,
                vflip: false,
                colour: ColourAugment::NONE,
            }),
        }
    }

    /// The views of `batch` (sample indices), drawn from `rng`: the crops;
    /// or DINO's first global view of every image, then its second, then
    /// each local view in turn.
    pub(super) fn views(
        &self,
        data: &EpochData<'_>,
        batch: &[usize],
        rng: &mut ChaCha8Rng,
    ) -> StepViews {
        match self {
            Draw::Crops(crop) => {
                StepViews::Crops(data.global.train_host(batch, batch.len(), crop, rng))
            }
            Draw::Dino(views) => {
                let globals = views
                    .global
                    .iter()
                    .map(|view| data.global.train_host(batch, batch.len(), view, rng))
                    .collect();
                let locals: Vec<HostBatch> = (0..views.local_crops)
                    .map(|_| data.local.train_host(batch, batch.len(), &views.local, rng))
                    .collect();
                StepViews::Dino {
                    globals: HostBatch::stack(globals),
                    locals: (!locals.is_empty()).then(|| HostBatch::stack(locals)),
                }
            }
        }
    }
}

/// DINO's views (Caron et al. 2021): two global crops, the first always
/// blurred, the second rarely and sometimes solarised, and the local crops
/// blurred half the time; all with colour jitter and greyscale. The blur's
/// σ is DINO's at 224 px, scaled to each view's side.
pub(super) struct DinoViews {
    global: [TrainAugment; 2],
    local: TrainAugment,
    local_crops: usize,
}

impl DinoViews {
    fn new(p: &PretrainConfig, global_side: u32, local_side: u32) -> DinoViews {
        let d = &p.dino;
        let view = |scale: [f64; 2], side: u32, blur: f64, solarize: f64| {
            let sigma = d.blur_sigma.map(|s| s * side as f64 / 224.0);
            let colour = ColourAugment {
                jitter: d.colour_jitter,
                greyscale: d.greyscale,
                blur,
                blur_sigma: sigma,
                solarize,
            };
            TrainAugment {
                scale,
                hflip: true,
                vflip: false,
                colour,
            }
        };
        DinoViews {
            global: [
                view(p.crop_scale, global_side, d.blur[0], 0.0),
                view(p.crop_scale, global_side, d.blur[1], d.solarize),
            ],
            local: view(d.local_scale, local_side, d.blur[2], 0.0),
            local_crops: d.local_crops,
        }
    }
}
