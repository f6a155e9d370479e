//! Duplicate removal across a mix: exact (the text lowercased, whitespace collapsed) and
//! near-duplicate (Jaccard similarity of word-shingle sets at or above a threshold, candidates
//! found by MinHash signatures and LSH banding, then checked exactly).
//!
//! The first item in the given order is kept; a later one is dropped as the duplicate of the
//! earliest kept item it matches. Deterministic: the hash functions are fixed, and the result
//! depends only on the texts and their order.
//!
//! Built for a million items in little memory: items are added in batches (a leaf at a time)
//! and only compact hashes are kept — a 128-bit hash per item, its shingle hashes as `u32`, and
//! one `u32` per LSH band. Candidates come from sorting each band's keys, not from bucket maps.

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
    let mut index = Index::new(spec);
    index.add(texts);
    index.resolve()
}

/// At most this many earlier items of one LSH bucket become candidates of a later one (a
/// bucket of many true duplicates needs only its first few: the earliest kept one is among them).
const CANDIDATES_PER_BUCKET: usize = 8;

/// The hashes of every item added so far.
pub struct Index {
    exact: bool,
    near: Option<NearSpec>,
    /// Odd multipliers and offsets: x -> a*x + b is a permutation of u32.
    perms: Vec<(u32, u32)>,
    text_hash: Vec<u128>,
    /// Shingle hashes of item i: `shingles[offsets[i]..offsets[i + 1]]`, sorted, distinct.
    shingles: Vec<u32>,
    offsets: Vec<usize>,
    /// Band keys of item i: `bands[i * nbands..(i + 1) * nbands]` (empty text: no bands).
    bands: Vec<u32>,
    has_bands: Vec<bool>,
}

impl Index {
    /// An empty index for `spec`.
    pub fn new(spec: &DedupSpec) -> Index {
        let perms = spec
            .near
            .map(|n| (0..n.permutations as u64).map(|i| ((mix64(2 * i + 1) as u32) | 1, mix64(2 * i + 2) as u32)).collect())
            .unwrap_or_default();
        Index {
            exact: spec.exact,
            near: spec.near,
            perms,
            text_hash: Vec::new(),
            shingles: Vec::new(),
            offsets: vec![0],
            bands: Vec::new(),
            has_bands: Vec::new(),
        }
    }

    /// Items so far.
    pub fn len(&self) -> usize {
        self.text_hash.len()
    }

    /// True when no item was added.
    pub fn is_empty(&self) -> bool {
        self.text_hash.is_empty()
    }

    /// Add `texts` as the next items (hashed in parallel).
    pub fn add<S: AsRef<str> + Sync>(&mut self, texts: &[S]) {
        let near = self.near;
        let perms = &self.perms;
        let hashed: Vec<(u128, Vec<u32>, Vec<u32>)> = texts
            .par_iter()
            .map(|t| {
                let normal = normalize_text(t.as_ref());
                let h = u128::from_le_bytes(blake3::hash(normal.as_bytes()).as_bytes()[..16].try_into().expect("invariant: 16 bytes"));
                match near {
                    Some(n) => {
                        let sh = shingles(&normal, n.shingle);
                        let bands = band_keys(&sh, perms, n.bands);
                        (h, sh, bands)
                    }
                    None => (h, Vec::new(), Vec::new()),
                }
            })
            .collect();
        for (h, sh, bands) in hashed {
            self.text_hash.push(h);
            self.shingles.extend_from_slice(&sh);
            self.offsets.push(self.shingles.len());
            self.has_bands.push(!bands.is_empty());
            match self.near {
                Some(n) if bands.is_empty() => self.bands.extend(std::iter::repeat_n(0, n.bands)),
                _ => self.bands.extend_from_slice(&bands),
            }
        }
    }

    fn shingles_of(&self, i: usize) -> &[u32] {
        &self.shingles[self.offsets[i]..self.offsets[i + 1]]
    }

    /// Near-duplicate candidates: `(later, earlier)` pairs sharing an LSH band, sorted.
    fn candidates(&self, n: NearSpec) -> Vec<(u32, u32)> {
        let count = self.len();
        let per_band: Vec<Vec<(u32, u32)>> = (0..n.bands)
            .into_par_iter()
            .map(|b| {
                let mut keys: Vec<(u32, u32)> =
                    (0..count).filter(|&i| self.has_bands[i]).map(|i| (self.bands[i * n.bands + b], i as u32)).collect();
                keys.sort_unstable();
                let mut pairs = Vec::new();
                for run in keys.chunk_by(|x, y| x.0 == y.0).filter(|r| r.len() > 1) {
                    for (k, &(_, later)) in run.iter().enumerate().skip(1) {
                        pairs.extend(run[..k].iter().take(CANDIDATES_PER_BUCKET).map(|&(_, earlier)| (later, earlier)));
                    }
                }
                pairs
            })
            .collect();
        let mut all: Vec<(u32, u32)> = per_band.into_iter().flatten().collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Which items are duplicates of an earlier kept one.
    pub fn resolve(self) -> Vec<Dropped> {
        let count = self.len();
        let candidates = self.near.map(|n| self.candidates(n)).unwrap_or_default();
        let threshold = self.near.map(|n| n.threshold).unwrap_or(1.0);
        let mut kept = vec![false; count];
        let mut seen: HashMap<u128, usize> = HashMap::new();
        let mut dropped = Vec::new();
        let mut c = 0;
        for i in 0..count {
            let start = c;
            while c < candidates.len() && candidates[c].0 as usize == i {
                c += 1;
            }
            if self.exact {
                if let Some(&of) = seen.get(&self.text_hash[i]) {
                    dropped.push(Dropped { index: i, of, similarity: 1.0, exact: true });
                    continue;
                }
            }
            let near = candidates[start..c].iter().map(|&(_, j)| j as usize).filter(|&j| kept[j]).find_map(|j| {
                let s = jaccard(self.shingles_of(i), self.shingles_of(j));
                (s >= threshold).then_some((j, s))
            });
            if let Some((of, similarity)) = near {
                dropped.push(Dropped { index: i, of, similarity, exact: false });
                continue;
            }
            kept[i] = true;
            seen.entry(self.text_hash[i]).or_insert(i);
        }
        dropped
    }
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

/// The sorted, distinct hashes of a normalised text's `k`-word shingles (one shingle of every
/// word when it has fewer than `k`).
pub fn shingles(normal_text: &str, k: usize) -> Vec<u32> {
    let words: Vec<&str> = normal_text.split(' ').filter(|w| !w.is_empty()).collect();
    if words.is_empty() {
        return Vec::new();
    }
    let hash = |w: &[&str]| -> u32 {
        let mut h: u64 = 0;
        for word in w {
            h = mix64(h ^ hash64(word.as_bytes()));
        }
        h as u32
    };
    let mut out: Vec<u32> = if words.len() <= k { vec![hash(&words)] } else { words.windows(k).map(hash).collect() };
    out.sort_unstable();
    out.dedup();
    out
}

/// One key per band of the MinHash signature of `shingles` (none for an empty set).
fn band_keys(shingles: &[u32], perms: &[(u32, u32)], bands: usize) -> Vec<u32> {
    if shingles.is_empty() {
        return Vec::new();
    }
    let mut sig = vec![u32::MAX; perms.len()];
    for &x in shingles {
        for (s, &(a, b)) in sig.iter_mut().zip(perms) {
            *s = (*s).min(a.wrapping_mul(x).wrapping_add(b));
        }
    }
    let rows = perms.len() / bands;
    sig.chunks(rows).map(|band| band.iter().fold(0u64, |h, &v| mix64(h ^ v as u64)) as u32).collect()
}

/// Jaccard similarity of two sorted, distinct sets.
pub fn jaccard(a: &[u32], b: &[u32]) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn near() -> DedupSpec {
        DedupSpec { exact: true, near: Some(NearSpec { threshold: 0.8, shingle: 3, permutations: 64, bands: 16 }) }
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
    fn items_added_in_batches_resolve_as_one_list() {
        let texts = ["one two three four", "ONE two  three four", "five six seven eight", "one two three four"];
        let mut index = Index::new(&near());
        index.add(&texts[..1]);
        index.add(&texts[1..]);
        assert_eq!(index.len(), 4);
        let d = index.resolve();
        assert_eq!(d.iter().map(|d| (d.index, d.of)).collect::<Vec<_>>(), [(1, 0), (3, 0)]);
    }

    #[test]
    fn a_near_duplicate_of_a_dropped_item_is_matched_to_the_kept_one() {
        let a = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon";
        let b = a.replace("upsilon", "phi");
        let c = a.replace("upsilon", "chi");
        let d = dedup(&[a, &b, &c], &near());
        assert_eq!(d.iter().map(|d| (d.index, d.of)).collect::<Vec<_>>(), [(1, 0), (2, 0)]);
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
