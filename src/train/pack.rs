//! Which samples train together. An epoch is the phase's samples in a seeded shuffled order,
//! cut into effective batches of `batch_size` samples (one optimizer step each; the last may be
//! smaller); each effective batch is bin-packed into minibatches of at most `max_tokens` tokens
//! (first-fit decreasing), and each minibatch is one padding-free [`Packed`] row. The loss of a
//! step is summed over all its minibatches and divided by the loss-token count of the whole
//! effective batch ([`Step::loss_tokens`]), not averaged per minibatch.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::data::Sample;
use crate::model::grad::Packed;

/// One optimizer step's samples, as packed minibatches of sample indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Minibatches: indices into the phase's samples.
    pub minibatches: Vec<Vec<usize>>,
    /// Trained targets over every minibatch.
    pub loss_tokens: usize,
    /// Samples in the step.
    pub samples: usize,
}

/// The steps of epoch `epoch` (from 0): the same seed, epoch and samples give the same steps.
pub fn epoch_steps(samples: &[Sample], batch_size: usize, max_tokens: usize, seed: u64, epoch: u64) -> Vec<Step> {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    order
        .chunks(batch_size.max(1))
        .map(|batch| {
            let lengths: Vec<usize> = batch.iter().map(|&i| samples[i].tokens.len()).collect();
            let minibatches = first_fit_decreasing(&lengths, max_tokens).into_iter().map(|bin| bin.into_iter().map(|j| batch[j]).collect()).collect();
            Step { minibatches, loss_tokens: batch.iter().map(|&i| samples[i].loss_tokens()).sum(), samples: batch.len() }
        })
        .collect()
}

/// Bins of item indices, each bin's lengths summing to at most `budget` (an item longer than
/// the budget gets a bin of its own). Longest first, each into the first bin it fits.
pub fn first_fit_decreasing(lengths: &[usize], budget: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(lengths[i]), i));
    let mut bins: Vec<(usize, Vec<usize>)> = Vec::new();
    for i in order {
        match bins.iter_mut().find(|(used, _)| used + lengths[i] <= budget) {
            Some((used, items)) => {
                *used += lengths[i];
                items.push(i);
            }
            None => bins.push((lengths[i], vec![i])),
        }
    }
    bins.into_iter().map(|(_, mut items)| {
        items.sort_unstable();
        items
    }).collect()
}

/// The packed row of one minibatch.
pub fn packed(samples: &[Sample], minibatch: &[usize]) -> Packed {
    let mut p = Packed::default();
    for &i in minibatch {
        p.push(&samples[i].tokens, &samples[i].train);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize, trained: usize) -> Sample {
        Sample { id: format!("s{len}"), tokens: (0..len as u32).collect(), train: (0..len).map(|i| i >= len - trained).collect() }
    }

    #[test]
    fn bins_respect_the_budget_and_hold_every_item_once() {
        let lengths = [700, 300, 200, 900, 100, 1500, 400];
        let bins = first_fit_decreasing(&lengths, 1024);
        let mut seen: Vec<usize> = bins.concat();
        seen.sort_unstable();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        for b in &bins {
            let used: usize = b.iter().map(|&i| lengths[i]).sum();
            assert!(used <= 1024 || b.len() == 1, "{b:?} uses {used}");
        }
        // 1500 alone; 900 + 100; 700 + 300; 400 + 200.
        assert_eq!(bins.len(), 4);
    }

    #[test]
    fn epochs_are_seeded_shuffles_cut_into_batches() {
        let samples: Vec<Sample> = (1..=10).map(|i| sample(10 * i, i)).collect();
        let steps = epoch_steps(&samples, 4, 120, 7, 0);
        assert_eq!(steps.iter().map(|s| s.samples).collect::<Vec<_>>(), vec![4, 4, 2]);
        let mut all: Vec<usize> = steps.iter().flat_map(|s| s.minibatches.concat()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        for s in &steps {
            let want: usize = s.minibatches.iter().flatten().map(|&i| samples[i].loss_tokens()).sum();
            assert_eq!(s.loss_tokens, want);
        }
        assert_eq!(steps, epoch_steps(&samples, 4, 120, 7, 0), "same seed and epoch, same steps");
        assert_ne!(steps, epoch_steps(&samples, 4, 120, 7, 1), "another epoch, another order");
    }
}
