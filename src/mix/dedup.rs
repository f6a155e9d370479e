//! Duplicate removal across a mix: exact (the text lowercased, whitespace collapsed) and
//! near-duplicate (Jaccard similarity of word-shingle sets at or above a threshold, candidates
//! found by MinHash signatures and LSH banding, then checked exactly).
//!
//! The first item in the given order is kept; a later one is dropped as the duplicate of the
//! earliest kept item it matches. Deterministic: the hash functions are fixed, and the result
//! depends only on the texts and their order.

use crate::mix::recipe::{DedupSpec, NearSpec};
use crate::operators::batch::normalize_text;
use rayon::prelude::*;
use std::collections::HashMap;

/// An item dropped as a duplicate.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    /// Its index in the input.
    pub index: usize,
    /// The index of the kept item it repeats.
    pub of: usize,
    /// 1.0 for an exact duplicate, else the Jaccard similarity of their shingle sets.
    pub similarity: f64,
    /// Exact (normalised text equal) rather than near.
    pub exact: bool,
}

/// The dropped items of `texts`, in input order.
pub fn dedup(texts: &[&str], spec: &DedupSpec) -> Vec<Dropped> {
    let normal: Vec<String> = texts.par_iter().map(|t| normalize_text(t)).collect();
    let near = spec.near.map(|n| Near::new(&normal, n));
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut dropped = Vec::new();
    for (i, text) in normal.iter().enumerate() {
        if spec.exact {
            if let Some(&of) = seen.get(text.as_str()) {
                dropped.push(Dropped { index: i, of, similarity: 1.0, exact: true });
                continue;
            }
        }
        if let Some(near) = &near {
            if let Some((of, similarity)) = near.match_kept(i) {
                dropped.push(Dropped { index: i, of, similarity, exact: false });
                continue;
            }
        }
        seen.entry(text.as_str()).or_insert(i);
        if let Some(near) = &near {
            near.keep(i);
        }
    }
    dropped
}

/// 64-bit FNV-1a, then a SplitMix64 finaliser: fixed, fast, and good enough to spread shingles.
fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The sorted, distinct hashes of `text`'s `k`-word shingles (one shingle of every word when it
/// has fewer than `k`).
pub fn shingles(normal_text: &str, k: usize) -> Vec<u64> {
    let words: Vec<&str> = normal_text.split(' ').filter(|w| !w.is_empty()).collect();
    if words.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<u64> = if words.len() <= k {
        vec![hash64(words.join(" ").as_bytes())]
    } else {
        words.windows(k).map(|w| hash64(w.join(" ").as_bytes())).collect()
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// Jaccard similarity of two sorted, distinct sets.
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    both as f64 / (a.len() + b.len() - both) as f64
}

/// MinHash signatures of every item and the LSH buckets of the kept ones.
struct Near {
    spec: NearSpec,
    shingles: Vec<Vec<u64>>,
    /// Per item, one key per band.
    bands: Vec<Vec<u64>>,
    buckets: std::sync::Mutex<HashMap<(usize, u64), Vec<usize>>>,
}

impl Near {
    fn new(normal: &[String], spec: NearSpec) -> Near {
        // Odd multipliers and offsets from a fixed sequence: x -> a*x + b is a permutation of u64.
        let perms: Vec<(u64, u64)> =
            (0..spec.permutations as u64).map(|i| (mix64(2 * i + 1) | 1, mix64(2 * i + 2))).collect();
        let rows = spec.permutations / spec.bands;
        let shingles: Vec<Vec<u64>> = normal.par_iter().map(|t| shingles(t, spec.shingle)).collect();
        let bands = shingles
            .par_iter()
            .map(|set| {
                if set.is_empty() {
                    return Vec::new();
                }
                let sig: Vec<u64> =
                    perms.iter().map(|&(a, b)| set.iter().map(|&x| a.wrapping_mul(x).wrapping_add(b)).min().unwrap_or(u64::MAX)).collect();
                sig.chunks(rows).map(|band| band.iter().fold(0u64, |h, &v| mix64(h ^ v))).collect()
            })
            .collect();
        Near { spec, shingles, bands, buckets: Default::default() }
    }

    /// The earliest kept item that item `i` is a near-duplicate of, with the similarity.
    fn match_kept(&self, i: usize) -> Option<(usize, f64)> {
        let buckets = self.buckets.lock().expect("invariant: no panic while holding the lock");
        let mut best: Option<(usize, f64)> = None;
        for (b, key) in self.bands[i].iter().enumerate() {
            for &j in buckets.get(&(b, *key)).map(Vec::as_slice).unwrap_or(&[]) {
                if best.is_some_and(|(k, _)| k <= j) {
                    continue;
                }
                let s = jaccard(&self.shingles[i], &self.shingles[j]);
                if s >= self.spec.threshold {
                    best = Some((j, s));
                }
            }
        }
        best
    }

    fn keep(&self, i: usize) {
        let mut buckets = self.buckets.lock().expect("invariant: no panic while holding the lock");
        for (b, key) in self.bands[i].iter().enumerate() {
            buckets.entry((b, *key)).or_default().push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near() -> DedupSpec {
        DedupSpec { exact: true, near: Some(NearSpec { threshold: 0.8, shingle: 3, permutations: 128, bands: 32 }) }
    }

    #[test]
    fn exact_duplicates_ignore_case_and_spacing() {
        let d = dedup(&["What is  a Bird?", "what is a bird?", "What is a fish?"], &DedupSpec::default());
        assert_eq!(d, vec![Dropped { index: 1, of: 0, similarity: 1.0, exact: true }]);
    }

    #[test]
    fn near_duplicates_are_dropped_and_distinct_texts_kept() {
        let a = "the quick brown fox jumps over the lazy dog while the farmer watches from the old red barn at dawn";
        let b = "the quick brown fox jumps over the lazy dog while the farmer watches from the old red barn at dusk";
        let c = "a completely different sentence about the migration of arctic terns across the southern ocean each year";
        let d = dedup(&[a, c, b], &near());
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].index, d[0].of, d[0].exact), (2, 0, false));
        assert!(d[0].similarity >= 0.8 && d[0].similarity < 1.0);
        assert!(dedup(&[a, c], &near()).is_empty());
    }

    #[test]
    fn jaccard_of_sets() {
        assert_eq!(jaccard(&[1, 2, 3], &[2, 3, 4]), 0.5);
        assert_eq!(jaccard(&[], &[]), 1.0);
        assert_eq!(jaccard(&[1], &[]), 0.0);
        assert_eq!(shingles("a b", 3).len(), 1);
        assert_eq!(shingles("a b c d", 3).len(), 2);
    }
}
