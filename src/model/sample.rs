//! Choosing the next token from logits: greedy, temperature, top-k, top-p, seeded.
//!
//! The reference for every decoding path (embedded teacher, evaluation): a plain, exact
//! implementation over `[V]` logits. Log-probabilities are always of the model's own
//! distribution (temperature 1), as the OpenAI API reports them.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `log_softmax(logits)`, `[V]` → `[V]`, computed in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let log_z = max + sum.ln();
    logits.iter().map(|&l| l as f64 - log_z).collect()
}

/// The `k` most likely token ids with their log-probabilities, best first (ties: lower id).
pub fn top_k(logprobs: &[f64], k: usize) -> Vec<(u32, f64)> {
    let mut idx = best_first(logprobs, k);
    idx.truncate(k);
    idx.into_iter().map(|i| (i, logprobs[i as usize])).collect()
}

/// Every token id, the `k` most likely first and in order (best first, ties: lower id), the
/// rest after them in no order.
fn best_first(logprobs: &[f64], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..logprobs.len() as u32).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return idx;
    }
    // A total order (ids break ties), so an unstable sort gives the one answer.
    let by = |a: &u32, b: &u32| logprobs[*b as usize].total_cmp(&logprobs[*a as usize]).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, by);
    }
    idx[..k].sort_unstable_by(by);
    idx
}

/// How many candidates [`Sampler::sample`] sorts first; more only when top-p needs them or the
/// draw falls past them (rare: the head holds nearly all the mass of a model's distribution).
const SAMPLE_HEAD: usize = 128;

/// Longest loop period looked for, in tokens.
const LOOP_MAX_PERIOD: usize = 24;
/// Fewest tokens a loop must span before it is cut (and at least [`LOOP_MIN_REPEATS`] periods).
const LOOP_SPAN: usize = 48;
/// Fewest repeats of the period.
const LOOP_MIN_REPEATS: usize = 4;

/// A runaway repetition at the end of `ids`: when the last tokens are one period of 1 to 24
/// tokens repeated over at least max(48, 4 × period) tokens, the index just after the first
/// period of that run (cut there to keep one copy). `None` otherwise. Small models fall into
/// such loops and would fill `max_tokens` with them.
pub fn repeating_tail(ids: &[u32]) -> Option<usize> {
    let n = ids.len();
    (1..=LOOP_MAX_PERIOD).find_map(|p| {
        let span = LOOP_SPAN.max(LOOP_MIN_REPEATS * p);
        if n < span || !(n - span + p..n).all(|i| ids[i] == ids[i - p]) {
            return None;
        }
        let mut start = n - span;
        while start > 0 && ids[start - 1] == ids[start - 1 + p] {
            start -= 1;
        }
        Some(start + p)
    })
}

/// How many tokens at the end of `ids` a later [`repeating_tail`] cut could still remove, however
/// the sequence goes on: the longest run at the end that repeats the tokens one period (1 to 24)
/// before it. Tokens before that are final, so a stream may send them (`teacher::embedded`).
///
/// Why it holds: a cut keeps a repeating run's first period and drops the rest, and the run
/// that is cut either continues one of the runs counted here (cut at or after its start + period)
/// or starts later.
pub fn loop_holdback(ids: &[u32]) -> usize {
    let n = ids.len();
    (1..=LOOP_MAX_PERIOD.min(n)).map(|p| (p..n).rev().take_while(|&i| ids[i] == ids[i - p]).count()).max().unwrap_or(0)
}

/// How to pick tokens. `temperature == 0` is greedy (argmax, ties to the lowest id).
#[derive(Debug)]
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    top_k: Option<usize>,
    rng: StdRng,
}

impl Sampler {
    /// A sampler; `seed` makes it deterministic (`None`: seeded from the OS).
    pub fn new(temperature: f32, top_p: f32, top_k: Option<usize>, seed: Option<u64>) -> Sampler {
        let rng = match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Sampler { temperature, top_p, top_k, rng }
    }

    /// The next token for `logits` `[V]`.
    ///
    /// Candidates best first, cut by top-k, then by top-p on the tempered distribution; a
    /// uniform draw over the candidates' mass walks them in that order. Only the best
    /// [`SAMPLE_HEAD`] are sorted unless top-p or the draw needs more (sorting all 49,152 of
    /// SmolLM2's tokens for every sampled token was a sixth of a 16-sequence decode). The pick
    /// is the full sort's (the test `reference_sample` checks it), except that without a top-p
    /// cut the mass beyond the head is summed in another order, which can move the draw by a
    /// rounding error.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.temperature <= 0.0 {
            return crate::model::llama::argmax(logits);
        }
        let scaled: Vec<f32> = logits.iter().map(|l| l / self.temperature).collect();
        let lp = log_softmax(&scaled);
        let k = self.top_k.unwrap_or(lp.len()).clamp(1, lp.len());
        let mut head = SAMPLE_HEAD.min(k);
        loop {
            let order = best_first(&lp, head);
            let sorted = &order[..head];
            let mut keep = if head == k { Some(head) } else { None };
            if self.top_p < 1.0 {
                let mut mass = 0.0;
                let cut = sorted.iter().position(|&i| {
                    mass += lp[i as usize].exp();
                    mass >= self.top_p as f64
                });
                if let Some(i) = cut {
                    keep = Some(i + 1);
                }
            }
            // `rest`: the mass of the candidates past the head, when there are any.
            let (cands, rest) = match keep {
                Some(n) => (&sorted[..n], None),
                // No top-p cut inside the head: all k are candidates, the head first.
                None if self.top_p >= 1.0 => {
                    let rest = order[head..].iter().map(|&i| lp[i as usize]).collect::<Vec<_>>();
                    let rest = if k < lp.len() { top_k_mass(&rest, k - head) } else { rest.iter().map(|l| l.exp()).sum() };
                    (sorted, Some(rest))
                }
                // The top-p cut lies further down: sort more.
                None => {
                    head = (head * 8).min(k);
                    continue;
                }
            };
            let total: f64 = cands.iter().map(|&i| lp[i as usize].exp()).sum::<f64>() + rest.unwrap_or(0.0);
            let mut u = self.rng.random::<f64>() * total;
            for &id in cands {
                u -= lp[id as usize].exp();
                if u <= 0.0 {
                    return id;
                }
            }
            if rest.is_none() {
                return cands.last().copied().unwrap_or(0);
            }
            // The draw fell past the head: walk the rest in order.
            let all = best_first(&lp, k);
            for &id in &all[head..k] {
                u -= lp[id as usize].exp();
                if u <= 0.0 {
                    return id;
                }
            }
            return all[k - 1];
        }
    }
}

/// The probability mass of the `k` largest of `logprobs`.
fn top_k_mass(logprobs: &[f64], k: usize) -> f64 {
    top_k(logprobs, k).iter().map(|(_, l)| l.exp()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever follows, a loop cut never removes a token that `loop_holdback` called final.
        #[test]
        fn a_loop_cut_never_reaches_before_the_holdback(
            head in proptest::collection::vec(0u32..4, 0..40),
            period in proptest::collection::vec(0u32..4, 1..8),
            repeats in 0usize..20,
            tail in proptest::collection::vec(0u32..4, 0..30),
        ) {
            let mut ids = head;
            for _ in 0..repeats {
                ids.extend(&period);
            }
            ids.extend(tail);
            for k in 0..=ids.len() {
                let last_final = k - loop_holdback(&ids[..k]);
                for m in k..=ids.len() {
                    if let Some(cut) = repeating_tail(&ids[..m]) {
                        proptest::prop_assert!(cut >= last_final, "k {k} m {m} cut {cut} final {last_final}");
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn holdback_is_the_longest_repeating_run_at_the_end() {
        assert_eq!(loop_holdback(&[]), 0);
        assert_eq!(loop_holdback(&[1, 2, 3, 4]), 0);
        assert_eq!(loop_holdback(&[1, 2, 3, 1, 2]), 2);
        assert_eq!(loop_holdback(&[5, 5, 5, 5]), 3);
    }

    #[test]
    fn log_softmax_normalises() {
        let lp = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f64 = lp.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert!(lp[2] > lp[1] && lp[1] > lp[0]);
    }

    #[test]
    fn top_k_is_sorted_and_breaks_ties_low() {
        assert_eq!(top_k(&[0.1, 0.5, 0.5, -1.0], 3).iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2, 0]);
    }

    #[test]
    fn runaway_loops_are_found_and_cut_after_one_period() {
        let prose: Vec<u32> = (0..100).collect();
        assert_eq!(repeating_tail(&prose), None);
        // "a b c" eighteen times after some prose: cut after the first "a b c".
        let looped: Vec<u32> = prose.iter().copied().chain([7, 8, 9].repeat(18)).collect();
        assert_eq!(repeating_tail(&looped), Some(103));
        // One token 48 times; 47 is not yet a loop.
        let same: Vec<u32> = [1, 2].into_iter().chain(std::iter::repeat_n(5, 48)).collect();
        assert_eq!(repeating_tail(&same), Some(3));
        assert_eq!(repeating_tail(&same[..same.len() - 1]), None);
        // A long period needs four repeats, not just 48 tokens.
        let long: Vec<u32> = (0..20).collect::<Vec<_>>().repeat(3);
        assert_eq!(repeating_tail(&long), None);
        assert_eq!(repeating_tail(&(0..20).collect::<Vec<_>>().repeat(4)), Some(20));
    }

    /// The plain sampler: sort every candidate, cut by top-k and top-p, walk the mass.
    pub(super) fn reference_sample(s: &Sampler, logits: &[f32], draw: f64) -> u32 {
        let scaled: Vec<f32> = logits.iter().map(|l| l / s.temperature).collect();
        let lp = log_softmax(&scaled);
        let mut cands = top_k(&lp, s.top_k.unwrap_or(lp.len()).clamp(1, lp.len()));
        if s.top_p < 1.0 {
            let mut mass = 0.0;
            let keep = cands
                .iter()
                .position(|(_, l)| {
                    mass += l.exp();
                    mass >= s.top_p as f64
                })
                .map_or(cands.len(), |i| i + 1);
            cands.truncate(keep.max(1));
        }
        let total: f64 = cands.iter().map(|(_, l)| l.exp()).sum();
        let mut u = draw * total;
        for (id, l) in &cands {
            u -= l.exp();
            if u <= 0.0 {
                return *id;
            }
        }
        cands.last().map_or(0, |(id, _)| *id)
    }

    #[test]
    fn the_sorted_head_picks_what_sorting_every_candidate_picks() {
        // Peaked and flat distributions (the flat ones draw past the head), with and without
        // top-k and top-p: the same pick for the same draw, every time.
        let mut rng = StdRng::seed_from_u64(11);
        let mut past_head = 0;
        for case in 0..600 {
            let v = [50, 1000, 3000][case % 3];
            let spread = [0.3f32, 3.0, 12.0][(case / 3) % 3];
            let logits: Vec<f32> = (0..v).map(|_| rng.random::<f32>() * spread).collect();
            let top_k = [None, Some(5), Some(300)][(case / 9) % 3];
            let top_p = [1.0, 0.9, 0.3][(case / 27) % 3];
            let seed = case as u64;
            let mut fast = Sampler::new(0.8, top_p, top_k, Some(seed));
            let mut draws = StdRng::seed_from_u64(seed);
            for _ in 0..5 {
                let draw = draws.random::<f64>();
                let want = reference_sample(&fast, &logits, draw);
                let got = fast.sample(&logits);
                assert_eq!(got, want, "case {case}: v {v} spread {spread} top_k {top_k:?} top_p {top_p}");
                let mut order: Vec<u32> = (0..v as u32).collect();
                order.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b)));
                past_head += usize::from(order.iter().position(|&i| i == got).unwrap() >= SAMPLE_HEAD);
            }
        }
        assert!(past_head > 50, "the walk past the head was exercised only {past_head} times");
    }

    #[test]
    fn greedy_and_seeded_sampling() {
        let logits = [0.0, 5.0, 4.9, -3.0];
        assert_eq!(Sampler::new(0.0, 1.0, None, None).sample(&logits), 1);
        let draw = |seed| {
            (0..50).map(|_| 0).scan(Sampler::new(1.0, 1.0, None, Some(seed)), |s, _: i32| Some(s.sample(&logits))).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert!(draw(7).contains(&2) && draw(7).contains(&1), "both likely tokens appear");
        // top_k = 1 is greedy whatever the temperature; top_p tiny keeps only the best.
        assert!((0..20).all(|_| Sampler::new(2.0, 1.0, Some(1), Some(1)).sample(&logits) == 1));
        let mut s = Sampler::new(1.0, 0.01, None, Some(3));
        assert!((0..20).all(|_| s.sample(&logits) == 1));
    }
}
