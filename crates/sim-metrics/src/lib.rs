//! sim-metrics: the measures of a study, usable on their own on features from
//! any framework (see the `sim-metrics` binary).
//!
//! - [`cka`]: linear (feature and Gram form), debiased, RBF and minibatch CKA,
//!   and a reference side computed once for many comparisons;
//! - [`calibration`]: ECE, MCE, adaptive ECE, reliability-diagram bins;
//! - [`knn`]: DINO-style weighted k-NN accuracy;
//! - [`classification`]: accuracy, balanced accuracy, macro F1, and per
//!   class sensitivity, specificity and one-vs-rest AUROC;
//! - [`temperature`]: temperature scaling fitted on held-out logits, NLL
//!   and Brier score;
//! - [`fit`]: the discretised linear fit of Figure 5, Pearson, Spearman;
//! - [`space`]: the similarity space T_X(η, ε);
//! - [`selection`]: does a predictor rank the candidate backbones as their
//!   fine-tuning turned out (weighted Kendall τ, regret, with intervals);
//! - [`findings`]: the paper's three findings, each with the share of
//!   resamples of the runs in which it holds;
//! - [`stats`]: bootstrap intervals and permutation tests;
//! - [`stream`]: linear CKA and k-NN over `.npy` files read in blocks of rows;
//! - [`transferability`]: scores that predict a backbone's transfer before
//!   fine-tuning (LogME, H-score, N-LEEP, GBC, TransRate, SFDA);
//! - [`tables`]: a study's Parquet tables from its evaluation files.
//!
//! Inputs are row-major matrices ([`MatRef`]) of f16, f32 or f64; every
//! measure accumulates in f64. Bad input is a [`MetricError`] naming the array.

pub mod arrays;
pub mod blas;
pub mod calibration;
pub mod cka;
pub mod classification;
pub mod findings;
pub mod fit;
pub mod knn;
mod linalg;
pub mod probe;
pub mod selection;
pub mod similarity;
pub mod space;
pub mod stats;
pub mod stream;
pub mod tables;
pub mod temperature;
pub mod transferability;

pub use linalg::{MatRef, Scalar};

/// Input a measure cannot be computed from; `name` says which array.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct MetricError {
    pub name: String,
    pub message: String,
}

impl MetricError {
    pub fn input(name: &str, message: impl Into<String>) -> MetricError {
        MetricError {
            name: name.to_owned(),
            message: message.into(),
        }
    }
}
