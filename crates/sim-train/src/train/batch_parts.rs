//! A batch on the CPU cut into parts, each part on a thread of its own:
//! data parallelism inside one process. A training step runs each part's
//! forward and backward pass and adds the parts' gradients
//! ([`BatchParts::gradients`]); an evaluation pass runs each part's forward
//! pass ([`BatchParts::run`]).
//!
//! Why: burn's CPU backend spreads each tensor op over the threads, and on a
//! CPU-scale ViT the ops are too small for that to pay: two threads trained
//! one no faster than one thread (BENCHMARKS.md, "Fine-tuning step"). A part
//! per thread keeps every thread busy with whole ops instead.
//!
//! The gradient is the unsplit step's whenever the loss is a sum over the
//! batch's rows (each part's loss is its rows' share of the batch's, with the
//! batch's normaliser); it differs only in the order of the floating-point
//! sums (the parts' gradients are added in part order, so a given number of
//! parts repeats bit for bit). A loss over the whole batch at once (rep-sim's
//! batch CKA) needs one part.
//!
//! Each part trains a copy of the model whose parameters are new autodiff
//! leaves with the same [`ParamId`]s: burn's autodiff keeps every graph that
//! shares a leaf under one lock for a whole backward pass, so parts sharing
//! the model's own leaves would run their backward passes one after another.
//!
//! Every part builds its graph (its forward pass and loss) before any part
//! starts its backward pass. burn 0.21's autodiff ends each backward pass by
//! sweeping every graph of the process, and can free a step of a graph that
//! another thread is still building (tracel-ai/burn#5573, fixed after 0.21):
//! the gradient through that step is then silently lost. DINO's steps lost
//! terms of the patch embedding's, class token's and position embedding's
//! gradients that way, in 10 of 400 tiny pre-trainings run beside a test
//! load (`tests/dino_parts.rs` holds the steps to it).

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use sim_study::config::TrainingConfig;
use std::ops::Range;

/// One part: the batch whole, on the calling thread.
static WHOLE: BatchParts = BatchParts { pools: Vec::new() };

/// How a step splits its batch: a single-thread pool per part (a part's
/// ops, burn's loops and GEMMs, then run on that thread alone).
pub struct BatchParts {
    pools: Vec<rayon::ThreadPool>,
}

impl BatchParts {
    /// `parts` parts (at least one); one part runs on the calling thread as
    /// an unsplit step, with the process's threads.
    pub fn new(parts: usize) -> BatchParts {
        let pools = if parts <= 1 {
            Vec::new()
        } else {
            (0..parts)
                .map(|i| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .thread_name(move |_| format!("batch-part-{i}"))
                        .build()
                        .expect("a thread for a batch part")
                })
                .collect()
        };
        BatchParts { pools }
    }

    /// A part per thread of this process (rayon's, as `RAYON_NUM_THREADS`
    /// sets it) on the CPU backends; one part on a GPU, which runs a whole
    /// batch best.
    pub fn per_thread() -> BatchParts {
        BatchParts::new(if cfg!(feature = "cuda") {
            1
        } else {
            rayon::current_num_threads()
        })
    }

    /// What a study's `training.batch_parts` asks for: that many parts on
    /// the CPU backends, else [`BatchParts::per_thread`].
    pub fn for_training(training: &TrainingConfig) -> BatchParts {
        match training.batch_parts {
            Some(parts) if !cfg!(feature = "cuda") => BatchParts::new(parts),
            _ => BatchParts::per_thread(),
        }
    }

    /// These parts, or one where the loss reads the batch's rows together
    /// (then it cannot be cut).
    pub fn unless_whole(&self, whole_batch_loss: bool) -> &BatchParts {
        if whole_batch_loss { &WHOLE } else { self }
    }

    pub fn count(&self) -> usize {
        self.pools.len().max(1)
    }

    /// The gradients of a step's loss over a batch of `rows` rows, and the
    /// loss (detached): the sum over the parts of `loss(model, part_rows)`,
    /// where `part_rows` is a contiguous range of the batch's rows (all of
    /// them when there is one part; never empty). `loss` must give each part
    /// its rows' share of the batch's loss, and add a term that does not
    /// depend on the rows (a penalty on the weights) only where its range
    /// starts at row 0.
    pub fn gradients<B, M, F>(
        &self,
        model: &M,
        rows: usize,
        loss: F,
    ) -> (GradientsParams, Tensor<B, 1>)
    where
        B: AutodiffBackend,
        M: AutodiffModule<B> + Sync,
        F: Fn(&M, Range<usize>) -> Tensor<B, 1> + Sync,
    {
        let backward = |model: &M, value: Tensor<B, 1>| {
            (
                GradientsParams::from_grads(value.clone().backward(), model),
                value.detach(),
            )
        };
        if self.count().min(rows) <= 1 {
            return backward(model, loss(model, 0..rows));
        }
        // All graphs built, then all backward passes (the module's doc).
        let forward = self.run(rows, |part_rows| {
            let copy = model.clone().map(&mut FreshLeaves);
            let value = loss(&copy, part_rows);
            (copy, value)
        });
        let results = self.each(forward, |(copy, value)| backward(&copy, value));
        let (mut grads, values): (Vec<_>, Vec<_>) = results.into_iter().unzip();
        let mut sum = SumParts {
            parts: &mut grads,
            sum: GradientsParams::new(),
        };
        model.visit(&mut sum);
        let value = values
            .into_iter()
            .reduce(|a, b| a + b)
            .expect("at least one part");
        (sum.sum, value)
    }

    /// `f` of each part's rows of a batch of `rows` rows (contiguous ranges,
    /// in order, never empty; all of them when there is one part), each on
    /// its part's thread, all at once; the results in part order.
    pub fn run<T: Send>(&self, rows: usize, f: impl Fn(Range<usize>) -> T + Sync) -> Vec<T> {
        let parts = self.count().min(rows);
        if parts <= 1 {
            return vec![f(0..rows)];
        }
        self.each((0..parts).map(|i| part_rows(rows, parts, i)).collect(), f)
    }

    /// `f` of each item, item `i` on part `i`'s thread, all at once; the
    /// results in item order. At most one item per part.
    fn each<I: Send, T: Send>(&self, items: Vec<I>, f: impl Fn(I) -> T + Sync) -> Vec<T> {
        assert!(items.len() <= self.pools.len(), "an item per part at most");
        let f = &f;
        std::thread::scope(|scope| {
            let handles: Vec<_> = items
                .into_iter()
                .zip(&self.pools)
                .map(|(item, pool)| scope.spawn(move || pool.install(|| f(item))))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    }
}

/// Rows of part `i` of `parts` over `rows` rows: contiguous, in order, sizes
/// differing by at most one.
fn part_rows(rows: usize, parts: usize, i: usize) -> Range<usize> {
    i * rows / parts..(i + 1) * rows / parts
}

/// Every float parameter as a new leaf (same value, same [`ParamId`], tracked
/// if it was): the model's copy for one part.
///
/// [`ParamId`]: burn::module::ParamId
struct FreshLeaves;

impl<B: AutodiffBackend> ModuleMapper<B> for FreshLeaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let tracked = tensor.is_require_grad();
        let leaf = tensor.detach();
        Param::from_mapped_value(id, if tracked { leaf.require_grad() } else { leaf }, mapper)
    }
}

/// The parts' gradients of every parameter, added in part order.
struct SumParts<'a> {
    parts: &'a mut [GradientsParams],
    sum: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SumParts<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let grads = self
            .parts
            .iter_mut()
            .filter_map(|g| g.remove::<B::InnerBackend, D>(param.id));
        if let Some(sum) = grads.reduce(|a, b| a + b) {
            self.sum.register::<B::InnerBackend, D>(param.id, sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_study_can_fix_the_number_of_parts() {
        let mut training = TrainingConfig::default();
        assert_eq!(
            BatchParts::for_training(&training).count(),
            rayon::current_num_threads()
        );
        training.batch_parts = Some(3);
        assert_eq!(BatchParts::for_training(&training).count(), 3);
    }

    #[test]
    fn parts_cover_the_rows_in_order_without_overlap() {
        for rows in 1..20 {
            for parts in 1..=rows.min(5) {
                let ranges: Vec<_> = (0..parts).map(|i| part_rows(rows, parts, i)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[parts - 1].end, rows);
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let sizes: Vec<_> = ranges.iter().map(|r| r.len()).collect();
                assert!(
                    sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1
                        && sizes.iter().all(|&s| s > 0),
                    "{rows} rows, {parts} parts: {sizes:?}"
                );
            }
        }
    }
}
