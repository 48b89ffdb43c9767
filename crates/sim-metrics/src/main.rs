//! `sim-metrics`: the study's measures on arrays from any framework, and the
//! study tables. Each measure prints one JSON object on stdout.

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use sim_metrics::arrays::{FloatArray, load_labels, load_matrix};
use sim_metrics::calibration::{Binning, calibration};
use sim_metrics::cka::{CkaOptions, Estimator, Kernel, MinibatchCka, cka};
use sim_metrics::knn::knn_accuracy;
use sim_metrics::similarity::{Measure, MeasureOptions, Prepared, chance_level};
use sim_metrics::stats::draw_permutations;
use sim_metrics::stream::{NpyRows, knn_accuracy_file, linear_cka_files};
use sim_metrics::transferability::{Classes, Score, transferability, transferability_file};
use std::path::PathBuf;

/// Representation similarity (CKA and seven other measures), calibration (ECE), k-NN accuracy
/// and transferability scores.
///
/// Arrays are `.npy` files (f16/f32/f64 features, integer labels) or tensors
/// in a safetensors file, written `FILE.safetensors:tensor_name`. Features are
/// samples × features, rows in the same sample order on both sides.
#[derive(Parser)]
#[command(name = "sim-metrics", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// CKA between two representations of the same samples.
    ///
    /// Example: sim-metrics cka --a pre.npy --b tuned.npy --estimator debiased
    Cka {
        #[arg(long)]
        a: String,
        #[arg(long)]
        b: String,
        #[arg(long, value_enum, default_value = "biased")]
        estimator: Estimator,
        #[arg(long, value_enum, default_value = "linear")]
        kernel: KernelArg,
        /// RBF bandwidth as a fraction of the median pairwise distance.
        #[arg(long, default_value_t = 1.0)]
        sigma_frac: f64,
        /// Minibatch CKA (Nguyen et al. 2021) over consecutive batches of N
        /// samples (linear kernel, unbiased HSIC).
        #[arg(long)]
        batch: Option<usize>,
        /// Rows read at a time when both inputs are `.npy` files and the
        /// measure is linear CKA with the biased estimator: the files are
        /// streamed, never held whole (memory: a block and d × d products).
        #[arg(long, default_value_t = DEFAULT_BLOCK_ROWS)]
        block_rows: usize,
    },
    /// Similarity measures between two representations of the same samples,
    /// each with its chance level (docs/SPEC.md, "Similarity measures").
    ///
    /// Prints {"n": …, "measures": {"svcca": {"value": …, "null_mean": …,
    /// "null_q95": …}, …}}; procrustes is a distance (0: the same shape), its
    /// null_q95 the 5th percentile of the permutations.
    ///
    /// Example: sim-metrics similarity --measure svcca,pwcca,procrustes --a pre.npy --b tuned.npy --null 20
    Similarity {
        #[arg(long)]
        a: String,
        #[arg(long)]
        b: String,
        /// One or several (comma-separated).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "cka")]
        measure: Vec<Measure>,
        /// SVCCA keeps the top directions explaining this share of each side's variance.
        #[arg(long, default_value_t = MeasureOptions::default().svcca_variance)]
        svcca_variance: f64,
        /// RSA compares RDMs of at most this many samples (evenly spaced).
        #[arg(long, default_value_t = MeasureOptions::default().rsa_max_samples)]
        rsa_max_samples: usize,
        /// Neighbours of mutual k-NN and CKNNA.
        #[arg(long, default_value_t = MeasureOptions::default().alignment_k)]
        k: usize,
        /// Row permutations of A compared with A for each measure's chance
        /// level (0: none).
        #[arg(long, default_value_t = 0)]
        null: usize,
        /// Seeds the permutations.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Expected and maximum calibration error of softmax(logits).
    ///
    /// Example: sim-metrics ece --logits logits.npy --labels labels.npy
    Ece {
        #[arg(long)]
        logits: String,
        #[arg(long)]
        labels: String,
        #[arg(long, default_value_t = 15)]
        bins: usize,
        /// uniform: equal-width bins; quantile: equal-mass bins (adaptive ECE).
        #[arg(long, value_enum, default_value = "uniform")]
        binning: Binning,
    },
    /// Weighted k-NN accuracy (DINO's eval_knn): cosine top-k, exp(sim/T) votes.
    ///
    /// Example: sim-metrics knn --bank-feats train.npy --bank-labels ytrain.npy
    ///          --query-feats val.npy --query-labels yval.npy --k 20
    Knn {
        #[arg(long)]
        bank_feats: String,
        #[arg(long)]
        bank_labels: String,
        #[arg(long)]
        query_feats: String,
        #[arg(long)]
        query_labels: String,
        /// Neighbours; several (--k 10,20,100,200) report each, the first as knn_top1.
        #[arg(long, value_delimiter = ',', default_value = "20")]
        k: Vec<usize>,
        #[arg(long, default_value_t = 0.07)]
        temperature: f64,
        /// Bank rows read at a time when the bank is a `.npy` file: it is
        /// streamed past the queries, never held whole.
        #[arg(long, default_value_t = DEFAULT_BLOCK_ROWS)]
        block_rows: usize,
    },
    /// Transferability scores of a backbone's frozen features of a target
    /// task's training samples, with their labels: higher predicts a better
    /// transfer (docs/SPEC.md, "Transferability scores").
    ///
    /// Prints {"n": …, "features": …, "classes": …, "scores": {"logme": …, …}}.
    /// LogME, H-score, GBC and TransRate read a `.npy` file in blocks of
    /// rows; N-LEEP and SFDA hold the features.
    ///
    /// Example: sim-metrics transferability --features train.npy --labels ytrain.npy --score logme,hscore
    Transferability {
        #[arg(long)]
        features: String,
        #[arg(long)]
        labels: String,
        /// One or several (comma-separated).
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "logme,hscore,nleep,gbc,transrate,sfda"
        )]
        score: Vec<Score>,
        /// Rows read at a time from a `.npy` file.
        #[arg(long, default_value_t = DEFAULT_BLOCK_ROWS)]
        block_rows: usize,
    },
    /// Reads a study's per-epoch dumps and writes its tables as Parquet into
    /// <study>/tables/ (column meanings: docs/SPEC.md, "Study tables").
    Study {
        #[arg(long)]
        study: PathBuf,
    },
}

/// Rows per block of a streamed `.npy` file.
const DEFAULT_BLOCK_ROWS: usize = 4096;

/// Whether `spec` names a whole `.npy` file (not a tensor in a safetensors file).
/// Two representations compared sample by sample must hold the same samples.
fn same_samples(a: &FloatArray, b: &FloatArray) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.rows == b.rows,
        "{}: {} samples, {} has {}",
        b.name,
        b.rows,
        a.name,
        a.rows
    );
    Ok(())
}

fn is_npy(spec: &str) -> bool {
    !spec
        .rsplit_once(':')
        .is_some_and(|(file, _)| file.ends_with(".safetensors"))
}

/// The kernel's name on the command line (the RBF one takes `--sigma-frac`).
#[derive(Clone, Copy, ValueEnum)]
enum KernelArg {
    Linear,
    Rbf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    sim_study::logging::init();
    sim_metrics::blas::load_from_env().map_err(anyhow::Error::msg)?;
    let output = match cli.command {
        Command::Cka {
            a,
            b,
            estimator,
            kernel,
            sigma_frac,
            batch,
            block_rows,
        } => {
            let kernel = match kernel {
                KernelArg::Linear => Kernel::Linear,
                KernelArg::Rbf => Kernel::Rbf { sigma_frac },
            };
            let streamed = is_npy(&a)
                && is_npy(&b)
                && batch.is_none()
                && matches!(kernel, Kernel::Linear)
                && estimator == Estimator::Biased;
            if streamed {
                anyhow::ensure!(block_rows >= 1, "--block-rows must be at least 1");
                let value = linear_cka_files(&a, &b, block_rows)?;
                let n = NpyRows::open(&a)?.rows;
                println!(
                    "{}",
                    json!({"cka": value, "estimator": estimator, "kernel": "linear", "n": n})
                );
                return Ok(());
            }
            let (a, b) = (load_matrix(&a)?, load_matrix(&b)?);
            match batch {
                Some(size) => {
                    anyhow::ensure!(
                        matches!(kernel, Kernel::Linear) && estimator == Estimator::Debiased,
                        "--batch computes minibatch CKA with the linear kernel and the \
                            unbiased HSIC: \
                         pass --estimator debiased (and no --kernel rbf)"
                    );
                    same_samples(&a, &b)?;
                    anyhow::ensure!(
                        size >= 4,
                        "--batch {size}: minibatch CKA needs batches of at least 4"
                    );
                    let mut acc = MinibatchCka::new();
                    for start in (0..a.rows).step_by(size) {
                        let end = (start + size).min(a.rows);
                        if end - start < 4 {
                            break; // a remainder too small for the unbiased HSIC is left out
                        }
                        acc.update(
                            a.view().rows_range(start, end),
                            b.view().rows_range(start, end),
                        )?;
                    }
                    json!({"cka": acc.value(&a.name)?, "estimator": "debiased", "kernel": "linear", "n": a.rows, "batch": size})
                }
                None => {
                    let value = cka(a.view(), b.view(), CkaOptions { estimator, kernel })?;
                    let mut out = json!({"cka": value, "estimator": estimator, "kernel": kernel.name(), "n": a.rows});
                    if let Kernel::Rbf { sigma_frac } = kernel {
                        out["sigma_frac"] = json!(sigma_frac);
                    }
                    out
                }
            }
        }
        Command::Similarity {
            a,
            b,
            measure,
            svcca_variance,
            rsa_max_samples,
            k,
            null,
            seed,
        } => {
            let (a, b) = (load_matrix(&a)?, load_matrix(&b)?);
            same_samples(&a, &b)?;
            let opts = MeasureOptions {
                svcca_variance,
                rsa_max_samples,
                alignment_k: k,
            };
            let orders = draw_permutations(a.rows, null, seed);
            let mut measures = serde_json::Map::new();
            for m in measure {
                let side = Prepared::new(m, a.view(), opts)?;
                let mut out = json!({"value": side.compare(&Prepared::new(m, b.view(), opts)?)?});
                if null > 0 {
                    let chance = chance_level(&side, &orders)?;
                    out["null_mean"] = json!(chance.mean);
                    out["null_q95"] = json!(chance.q95);
                }
                measures.insert(m.name().to_owned(), out);
            }
            json!({"n": a.rows, "null_resamples": null, "measures": measures})
        }
        Command::Ece {
            logits,
            labels,
            bins,
            binning,
        } => {
            let logits = load_matrix(&logits)?;
            let labels = load_labels(&labels)?;
            let c = calibration(logits.view(), &labels, bins, binning)?;
            json!({"ece": c.ece, "mce": c.mce, "bins": bins, "binning": binning, "n": labels.len(), "reliability": c.bins})
        }
        Command::Knn {
            bank_feats,
            bank_labels,
            query_feats,
            query_labels,
            k,
            temperature,
            block_rows,
        } => {
            let queries = load_matrix(&query_feats)?;
            let (bank_y, query_y) = (load_labels(&bank_labels)?, load_labels(&query_labels)?);
            let results = if is_npy(&bank_feats) {
                anyhow::ensure!(block_rows >= 1, "--block-rows must be at least 1");
                knn_accuracy_file(
                    &bank_feats,
                    &bank_y,
                    queries.view(),
                    &query_y,
                    &k,
                    temperature,
                    block_rows,
                )?
            } else {
                let bank = load_matrix(&bank_feats)?;
                knn_accuracy(
                    bank.view(),
                    &bank_y,
                    queries.view(),
                    &query_y,
                    &k,
                    temperature,
                )?
            };
            let per_k: serde_json::Map<String, serde_json::Value> = results
                .iter()
                .map(|r| (r.k.to_string(), json!(r.top1)))
                .collect();
            json!({"knn_top1": results[0].top1, "k": k[0], "temperature": temperature,
                   "bank": bank_y.len(), "queries": queries.rows, "top1_per_k": per_k})
        }
        Command::Transferability {
            features,
            labels,
            score,
            block_rows,
        } => {
            anyhow::ensure!(block_rows >= 1, "--block-rows must be at least 1");
            let y = load_labels(&labels)?;
            let (values, cols) = if is_npy(&features) {
                let cols = NpyRows::open(&features)?.cols;
                (
                    transferability_file(&features, &y, &labels, &score, block_rows)?,
                    cols,
                )
            } else {
                let x = load_matrix(&features)?;
                (transferability(x.view(), &y, &labels, &score)?, x.cols)
            };
            let classes = Classes::new(&y, &labels)?.len();
            let scores: serde_json::Map<String, serde_json::Value> = score
                .iter()
                .zip(values)
                .map(|(s, v)| (s.name().to_owned(), json!(v)))
                .collect();
            json!({"n": y.len(), "features": cols, "classes": classes, "scores": scores})
        }
        Command::Study { study } => {
            let written = sim_metrics::tables::write_study_tables(&study)?;
            json!({"tables": written})
        }
    };
    println!("{output}");
    Ok(())
}
