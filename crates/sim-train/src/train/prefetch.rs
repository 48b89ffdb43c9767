//! An epoch's batches (or an evaluation pass's) drawn on a second thread
//! while the step before runs. Drawing (augmentation from the epoch's
//! random stream, then rendering) happens on that one thread in batch
//! order, so each step gets the batch it would get drawn in turn: the
//! overlap changes no number, it only fills the cores a step leaves idle
//! (its optimiser and other serial phases).

use std::sync::mpsc::{IntoIter, sync_channel};

/// `consume`'s result, given the batches `draw` makes of `order`'s chunks of
/// `batch_size` (the last one may be shorter), in order, each drawn on a
/// second thread up to two batches ahead of the one `consume` takes. When
/// `consume` returns early, the drawing stops.
pub fn prefetched<T: Send, R>(
    order: &[usize],
    batch_size: usize,
    mut draw: impl FnMut(&[usize]) -> T + Send,
    consume: impl FnOnce(IntoIter<T>) -> R,
) -> R {
    std::thread::scope(|scope| {
        let (next, batches) = sync_channel::<T>(1);
        scope.spawn(move || {
            for indices in order.chunks(batch_size) {
                if next.send(draw(indices)).is_err() {
                    return; // `consume` stopped early
                }
            }
        });
        consume(batches.into_iter())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_arrive_in_order_and_an_early_stop_ends_the_drawing() {
        let order: Vec<usize> = (0..10).collect();
        let all = prefetched(
            &order,
            4,
            |b| b.to_vec(),
            |batches| batches.collect::<Vec<_>>(),
        );
        assert_eq!(all, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);

        let mut drawn = 0;
        let first = prefetched(
            &order,
            1,
            |b| {
                drawn += 1;
                b[0]
            },
            |mut batches| batches.next(),
        );
        assert_eq!(first, Some(0));
        assert!(
            drawn < order.len(),
            "drew all {drawn} batches after the stop"
        );
    }
}
