//! `sim-train`: the training side of the tool, one subcommand per job.

use clap::{Parser, Subcommand};
use sim_study::StudyConfig;
use sim_study::config::{Family, PosResize};
use sim_train::backend::DeviceBackend;
use sim_train::backend::TrainBackend;
use sim_train::model::{Activation, LoadOptions};
use std::path::PathBuf;

/// Fine-tune pre-trained vision backbones and record what changes.
///
/// Relative data and checkpoint paths in a study config resolve against the
/// SIM_DATA_DIR environment variable (default: `data/`).
#[derive(Parser)]
#[command(name = "sim-train", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read and split a study's data sets, fill the image caches, and print
    /// per data set and split the class counts, the number of groups (lesions)
    /// and how long each step took.
    ///
    /// The splits are written to <study>/splits/<data set>.csv the first time and
    /// reused afterwards. Example: sim-train data --config configs/ci.toml
    Data {
        /// Study config (TOML), e.g. configs/paper.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Fine-tune one backbone with one method and one seed on one medical
    /// data set: the run `runs/<dataset>/<backbone>/<method>/seed-<NN>/` of
    /// the study. Evaluates the
    /// pre-trained backbone once (epoch 0, shared by its seeds) and after every
    /// epoch, checkpoints every epoch, and resumes from the last finished epoch
    /// when run again (a finished run is a no-op).
    ///
    /// Logs go to stderr and <run>/train.log at the level RUST_LOG asks (default info).
    /// Example: sim-train finetune --config configs/ci.toml --backbone vit-tiny --seed 0
    Finetune {
        /// Study config (TOML), e.g. configs/ci.toml.
        #[arg(long)]
        config: PathBuf,
        /// A medical data set `name` of the config; may be left out when the
        /// study has one.
        #[arg(long)]
        dataset: Option<String>,
        /// A method `name` of the config; may be left out when the study has
        /// one (without `[[methods]]`: `full`).
        #[arg(long)]
        method: Option<String>,
        /// A backbone `name` of the config.
        #[arg(long)]
        backbone: String,
        /// One of the study's seeds.
        #[arg(long)]
        seed: u64,
    },
    /// Pre-train a backbone the config describes with `pretrain = { … }`
    /// (objective `supervised`, `dino` or `none`) on the study's natural
    /// images, into `pretrained/<objective>-<hash>/model.safetensors` beside
    /// the study folder (timm ViT names; shared by every study with the
    /// same pre-training). Checkpoints every epoch and resumes when run
    /// again; a finished one is a no-op.
    ///
    /// Logs go to stderr and <folder>/pretrain.log.
    /// Example: sim-train pretrain --config configs/cpu.toml --backbone vit-dino
    Pretrain {
        /// Study config (TOML), e.g. configs/cpu.toml.
        #[arg(long)]
        config: PathBuf,
        /// A backbone `name` of the config with a `pretrain` entry.
        #[arg(long)]
        backbone: String,
    },
    /// Every layer's CLS and patch-mean features of a folder of images (sorted
    /// by file name), to check a checkpoint against your own PyTorch code.
    ///
    /// Writes f32 tensors `layer_<i>.cls`, `layer_<i>.patch_mean` (i = 0 is the
    /// embedding, 1..L the blocks), `final.cls`, `final.patch_mean`, `logits` or
    /// `embedding` where the model has them; the image names are in the file's
    /// metadata (`images`). Images at the input size pass untouched; others are
    /// resized (shorter side) and centre-cropped. The family's mean/std apply.
    ///
    /// Example: sim-train extract --checkpoint data/checkpoints/dinov2-base/model.safetensors
    ///          --images my_images/ --size 224 --out feats.safetensors
    Extract {
        /// safetensors checkpoint (timm, Meta/HF DINOv2, HF ViT, OpenCLIP names).
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long, value_enum, default_value = "auto")]
        family: Family,
        /// Key prefix of the image backbone (`visual.`, `backbone.`); detected when absent.
        #[arg(long)]
        prefix: Option<String>,
        /// Folder of images (.jpg, .jpeg, .png, .bmp).
        #[arg(long)]
        images: PathBuf,
        /// Input side in pixels.
        #[arg(long, default_value_t = 224)]
        size: usize,
        /// Attention heads (no tensor shape says them); default: the file's
        /// metadata `heads` (files this tool wrote), else width / 64.
        #[arg(long)]
        heads: Option<usize>,
        /// QuickGELU, for OpenAI-trained CLIP weights.
        #[arg(long)]
        quick_gelu: bool,
        /// Position-embedding resizing; default: the checkpoint naming's reference rule.
        #[arg(long, value_enum)]
        pos_resize: Option<PosResize>,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Data { config } => data(&config),
        Command::Finetune { config: path, dataset, method, backbone, seed } => {
            let config = StudyConfig::from_file(&path)?;
            let dir = path.parent().unwrap_or(std::path::Path::new("."));
            let run = config.run_named(dataset, backbone, method, seed).map_err(anyhow::Error::msg)?;
            let outcome = sim_train::finetune::run::<TrainBackend>(&config, dir, &run, &Default::default())?;
            println!("{run}: {outcome:?}");
            Ok(())
        }
        Command::Pretrain { config, backbone } => {
            let config = StudyConfig::from_file(&config)?;
            match sim_train::pretrain::run::<TrainBackend>(&config, &backbone, &Default::default())? {
                sim_train::pretrain::Outcome::AlreadyFinished { model } => println!("{backbone}: pre-trained before, kept: {}", model.display()),
                sim_train::pretrain::Outcome::Finished { model, .. } => println!("{backbone}: pre-trained: {}", model.display()),
            }
            Ok(())
        }
        Command::Extract { checkpoint, family, prefix, images, size, heads, quick_gelu, pos_resize, out } => {
            let opts = LoadOptions {
                family,
                prefix,
                input_size: size,
                heads,
                activation: if quick_gelu { Activation::QuickGelu } else { Activation::Gelu },
                resize: pos_resize,
            };
            let n = sim_train::extract::extract::<DeviceBackend>(&checkpoint, &opts, &images, &out, &Default::default())?;
            println!("{n} images: features written to {}", out.display());
            Ok(())
        }
    }
}

fn data(config_path: &std::path::Path) -> anyhow::Result<()> {
    let config = StudyConfig::from_file(config_path)?;
    for prepared in sim_train::data::prepare::data_stage(&config)? {
        print!("{prepared}");
    }
    Ok(())
}
