//! `sim-train`: the training side of the tool, one subcommand per job.

use clap::{Parser, Subcommand};
use sim_study::StudyConfig;
use sim_study::config::{Family, PosResize, Precision};
use sim_train::backend::{DeviceBackend, TrainBackend};
use sim_train::finetune::device_check::{self, CheckOptions};
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
    /// No progress bars (they are drawn only on a terminal anyway); the log
    /// lines stay, at the level RUST_LOG sets.
    #[arg(long, global = true)]
    quiet: bool,
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
    /// Measure how fine-tuning runs on this build's device, and whether it
    /// computes what the CPU computes; prints one Markdown table.
    ///
    /// Times the first training step and the first evaluation batch (the
    /// warm-up: kernel compilation and autotuning on a GPU), then training
    /// and evaluation images/s in steady state, on --backbone with the
    /// config's batch sizes and `training.precision`. With
    /// --agreement-backbone it also trains that backbone for --epochs on the
    /// CPU (f32) and on the device from the same weights and seed, and
    /// compares logits, features, accuracy, ECE and CKA to the pre-trained
    /// model on the test split. Uses the config's first medical data set;
    /// backbones the config pre-trains are made first (`objective = "none"`
    /// is instant). scripts/gpu_check.sh runs it on a GPU machine beside
    /// timm's figures.
    ///
    /// Example: sim-train device-check --config configs/device-check.toml
    ///          --backbone vit-b16 --agreement-backbone vit-check
    DeviceCheck {
        /// Study config (TOML), e.g. configs/device-check.toml.
        #[arg(long)]
        config: PathBuf,
        /// The backbone timed.
        #[arg(long)]
        backbone: String,
        /// Training steps timed after the first.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// The backbone trained on both backends and compared; none: no comparison.
        #[arg(long)]
        agreement_backbone: Option<String>,
        /// Epochs of the compared run.
        #[arg(long, default_value_t = 2)]
        epochs: u32,
        /// Overrides the config's `training.precision` (f32, bf16, f16).
        #[arg(long, value_enum)]
        precision: Option<Precision>,
    },
    /// Every layer's CLS and patch-mean features of a folder of images (sorted
    /// by file name), to check a checkpoint against your own PyTorch code.
    ///
    /// Writes f32 tensors `layer_<i>.cls`, `layer_<i>.patch_mean` (i = 0 is the
    /// embedding, 1..L the blocks), `final.cls`, `final.patch_mean`, `logits` or
    /// `embedding` where the model has them; the image names are in the file's
    /// metadata (`images`). Images at the input size pass untouched; others are
    /// resized (shorter side) and centre-cropped. The family's mean/std apply.
    /// A GPU build keeps its compiled kernels in ~/.cache/simlab/kernel-cache.
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
    sim_train::backend::keep_freed_memory();
    let cli = Cli::parse();
    sim_study::logging::init();
    if cli.quiet {
        sim_study::progress::set_quiet();
    }
    match cli.command {
        Command::Data { config } => data(&config),
        Command::Finetune {
            config: path,
            dataset,
            method,
            backbone,
            seed,
        } => {
            let config = StudyConfig::from_file(&path)?;
            let run = config
                .run_named(dataset, backbone, method, seed)
                .map_err(anyhow::Error::msg)?;
            let outcome =
                sim_train::finetune::run::<TrainBackend>(&config, &run, &Default::default())?;
            println!("{run}: {outcome:?}");
            Ok(())
        }
        Command::Pretrain { config, backbone } => {
            let config = StudyConfig::from_file(&config)?;
            match sim_train::pretrain::run::<TrainBackend>(&config, &backbone, &Default::default())?
            {
                sim_train::pretrain::Outcome::AlreadyFinished { model, note } => {
                    println!("{backbone}: pre-trained before, kept: {}", model.display());
                    if let Some(note) = note {
                        println!("  note: {note}");
                    }
                }
                sim_train::pretrain::Outcome::Finished { model, .. } => {
                    println!("{backbone}: pre-trained: {}", model.display())
                }
            }
            Ok(())
        }
        Command::DeviceCheck {
            config: path,
            backbone,
            steps,
            agreement_backbone,
            epochs,
            precision,
        } => {
            let mut config = StudyConfig::from_file(&path)?;
            if let Some(p) = precision {
                config.training.precision = p;
            }
            let opts = CheckOptions {
                speed_backbone: backbone,
                steps,
                agreement_backbone,
                epochs,
            };
            print!(
                "{}",
                device_check::markdown(&device_check::run(&config, &opts)?)
            );
            Ok(())
        }
        Command::Extract {
            checkpoint,
            family,
            prefix,
            images,
            size,
            heads,
            quick_gelu,
            pos_resize,
            out,
        } => {
            let opts = LoadOptions {
                family,
                prefix,
                input_size: size,
                heads,
                activation: if quick_gelu {
                    Activation::QuickGelu
                } else {
                    Activation::Gelu
                },
                resize: pos_resize,
            };
            // No study here: a GPU build keeps its kernels in the user's cache folder.
            if let Some(cache) = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            {
                sim_train::backend::use_kernel_cache(&cache.join("simlab/kernel-cache"));
            }
            let n = sim_train::extract::extract::<DeviceBackend>(
                &checkpoint,
                &opts,
                &images,
                &out,
                &Default::default(),
            )?;
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
