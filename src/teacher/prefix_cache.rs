//! A bounded cache of prompt prefixes, cut into fixed-size token chunks: the embedded teacher
//! keeps each prefilled chunk's keys and values here ([`crate::teacher::prefill`]) so that a
//! prompt sharing a prefix with an earlier one (the same instructions and document, a different
//! question at the end) prefills only what follows it.
//!
//! The cache is a trie of chunks: a node holds chunk `i` of a prefix (tokens `[iC, (i+1)C)`) and
//! its value, below the node of chunk `i - 1` of the same prefix, so prompts that share a
//! document share its nodes. Only whole chunks are held, at absolute positions: a value is reused
//! only where it was computed, which is what keeps a warm prefill's arithmetic identical to a
//! cold one. Memory is bounded by a byte budget; past it, the least recently used leaf goes
//! first (a node is used whenever a prefix through it is looked up or inserted, so a node is never
//! older than its children, and leaves are what can go without orphaning anything).

use std::collections::HashMap;
use std::sync::Arc;

/// The parent of the nodes of chunk 0.
const ROOT: usize = usize::MAX;

struct Node<V> {
    parent: usize,
    tokens: Box<[u32]>,
    value: Arc<V>,
    bytes: usize,
    last_used: u64,
    children: usize,
}

/// A byte-bounded LRU cache of per-chunk values of token prefixes. Not synchronised: the
/// caller holds it under a lock.
pub struct PrefixCache<V> {
    chunk: usize,
    budget: usize,
    used: usize,
    tick: u64,
    weigh: fn(&V) -> usize,
    /// Slab of nodes; `None` marks a free slot (listed in `free`).
    nodes: Vec<Option<Node<V>>>,
    free: Vec<usize>,
    /// `(parent, chunk tokens)` → node.
    index: HashMap<(usize, Box<[u32]>), usize>,
}

impl<V> PrefixCache<V> {
    /// An empty cache of `chunk`-token chunks (at least 1) holding at most `budget` bytes, a
    /// value weighing what `weigh` says.
    pub fn new(chunk: usize, budget: usize, weigh: fn(&V) -> usize) -> PrefixCache<V> {
        PrefixCache { chunk: chunk.max(1), budget, used: 0, tick: 0, weigh, nodes: Vec::new(), free: Vec::new(), index: HashMap::new() }
    }

    /// Tokens per chunk.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// Bytes held (the values' weights), never more than the budget after an insert.
    pub fn bytes(&self) -> usize {
        self.used
    }

    /// Chunks held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The values of the longest run of whole chunks cached for the start of `tokens` (value `i`
    /// for tokens `[iC, (i+1)C)`), marked used; empty when not even the first chunk is cached.
    pub fn longest(&mut self, tokens: &[u32]) -> Vec<Arc<V>> {
        self.tick += 1;
        let mut parent = ROOT;
        let mut out = Vec::new();
        for chunk in tokens.chunks_exact(self.chunk) {
            // The key owns its tokens; a chunk is small next to the work a hit saves.
            let Some(&id) = self.index.get(&(parent, Box::from(chunk))) else { break };
            let node = self.nodes[id].as_mut().expect("invariant: indexed nodes are live");
            node.last_used = self.tick;
            out.push(Arc::clone(&node.value));
            parent = id;
        }
        out
    }

    /// Holds `values[i]` as chunk `i` of the prefix `tokens` (which has at least
    /// `values.len()` whole chunks; chunks already held keep their value and are marked used),
    /// then evicts least recently used leaves until the budget holds, the new ones last.
    pub fn insert(&mut self, tokens: &[u32], values: &[Arc<V>]) {
        assert!(tokens.len() >= values.len() * self.chunk, "invariant: a value per whole chunk of the prefix");
        self.tick += 1;
        let mut parent = ROOT;
        for (chunk, value) in tokens.chunks_exact(self.chunk).zip(values) {
            let key = (parent, Box::from(chunk));
            let id = match self.index.get(&key) {
                Some(&id) => id,
                None => {
                    let bytes = (self.weigh)(value);
                    let node = Node { parent, tokens: key.1.clone(), value: Arc::clone(value), bytes, last_used: 0, children: 0 };
                    let id = match self.free.pop() {
                        Some(id) => {
                            self.nodes[id] = Some(node);
                            id
                        }
                        None => {
                            self.nodes.push(Some(node));
                            self.nodes.len() - 1
                        }
                    };
                    if parent != ROOT {
                        self.nodes[parent].as_mut().expect("invariant: parents are live").children += 1;
                    }
                    self.used += bytes;
                    self.index.insert(key, id);
                    id
                }
            };
            self.nodes[id].as_mut().expect("invariant: indexed nodes are live").last_used = self.tick;
            parent = id;
        }
        while self.used > self.budget {
            self.evict_one();
        }
    }

    /// Removes the least recently used leaf (ties: the lowest slot).
    fn evict_one(&mut self) {
        let victim = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(id, n)| n.as_ref().filter(|n| n.children == 0).map(|n| (n.last_used, id)))
            .min()
            .map(|(_, id)| id)
            .expect("invariant: a cache over budget holds a leaf");
        let node = self.nodes[victim].take().expect("invariant: the victim is live");
        self.index.remove(&(node.parent, node.tokens));
        if node.parent != ROOT {
            self.nodes[node.parent].as_mut().expect("invariant: parents are live").children -= 1;
        }
        self.used -= node.bytes;
        self.free.push(victim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values are the chunk's index tagged with its first token; each weighs 10 bytes.
    fn cache(chunk: usize, budget: usize) -> PrefixCache<u32> {
        PrefixCache::new(chunk, budget, |_| 10)
    }

    fn values(tokens: &[u32], chunk: usize) -> Vec<Arc<u32>> {
        tokens.chunks_exact(chunk).map(|c| Arc::new(c[0])).collect()
    }

    fn got(c: &mut PrefixCache<u32>, tokens: &[u32]) -> Vec<u32> {
        c.longest(tokens).iter().map(|v| **v).collect()
    }

    #[test]
    fn longest_prefix_stops_at_the_first_different_chunk_and_ignores_a_partial_tail() {
        let mut c = cache(2, 1000);
        assert!(got(&mut c, &[1, 2, 3, 4]).is_empty(), "empty cache");
        c.insert(&[1, 2, 3, 4, 5, 6, 7], &values(&[1, 2, 3, 4, 5, 6], 2));
        assert_eq!(c.len(), 3);
        assert_eq!(got(&mut c, &[1, 2, 3, 4, 5, 6, 7, 8]), vec![1, 3, 5]);
        assert_eq!(got(&mut c, &[1, 2, 3, 4, 5]), vec![1, 3], "the partial chunk [5] is not a hit");
        assert_eq!(got(&mut c, &[1, 2, 3, 9, 5, 6]), vec![1], "diverges inside chunk 1");
        assert!(got(&mut c, &[2, 1, 3, 4]).is_empty(), "diverges in chunk 0");
        // A chunk's value depends on what precedes it: [5, 6] after a different chunk 1 is no hit.
        assert_eq!(got(&mut c, &[1, 2, 9, 9, 5, 6]), vec![1]);
    }

    #[test]
    fn prefixes_share_their_common_chunks() {
        let mut c = cache(2, 1000);
        c.insert(&[1, 2, 3, 4, 5, 6], &values(&[1, 2, 3, 4, 5, 6], 2));
        c.insert(&[1, 2, 3, 4, 7, 8], &values(&[1, 2, 3, 4, 7, 8], 2));
        assert_eq!(c.len(), 4, "chunks [1,2] and [3,4] are held once");
        assert_eq!(c.bytes(), 40);
        assert_eq!(got(&mut c, &[1, 2, 3, 4, 7, 8]), vec![1, 3, 7]);
        assert_eq!(got(&mut c, &[1, 2, 3, 4, 5, 6]), vec![1, 3, 5]);
        // Inserting what is there keeps the first value.
        c.insert(&[1, 2], &[Arc::new(99)]);
        assert_eq!(got(&mut c, &[1, 2]), vec![1]);
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_leaf_goes_first() {
        let mut c = cache(1, 40);
        c.insert(&[1, 2], &values(&[1, 2], 1)); // 1 → 2
        c.insert(&[1, 3], &values(&[1, 3], 1)); // 1 → 3
        c.insert(&[4], &values(&[4], 1));
        assert_eq!((c.len(), c.bytes()), (4, 40));
        got(&mut c, &[1, 2]); // 1 → 2 is now the most recent; 1 → 3 the oldest leaf
        c.insert(&[5], &values(&[5], 1));
        assert!(c.bytes() <= 40);
        assert_eq!(got(&mut c, &[1, 3]), vec![1], "leaf 3 went");
        assert_eq!(got(&mut c, &[1, 2]), vec![1, 2]);
        assert_eq!(got(&mut c, &[4]), vec![4]);
        assert_eq!(got(&mut c, &[5]), vec![5]);
        // Two new chunks: the oldest leaf (2) goes, then its parent 1, a leaf now and the
        // oldest; a parent never goes before its children, so no held chunk is unreachable.
        c.insert(&[6, 7], &values(&[6, 7], 1));
        assert_eq!((c.len(), c.bytes()), (4, 40));
        assert!(got(&mut c, &[1, 2]).is_empty());
        assert_eq!(got(&mut c, &[4]), vec![4]);
        assert_eq!(got(&mut c, &[5]), vec![5]);
        assert_eq!(got(&mut c, &[6, 7]), vec![6, 7]);
        let reachable = c.nodes.iter().flatten().filter(|n| n.parent == ROOT || c.nodes[n.parent].is_some()).count();
        assert_eq!(reachable, c.len(), "every node's parent is held");
    }

    #[test]
    fn a_prefix_larger_than_the_budget_keeps_its_first_chunks() {
        let mut c = cache(1, 25);
        c.insert(&[1, 2, 3, 4], &values(&[1, 2, 3, 4], 1));
        assert_eq!((c.len(), c.bytes()), (2, 20));
        assert_eq!(got(&mut c, &[1, 2, 3, 4]), vec![1, 2]);
        let mut none = cache(1, 0);
        none.insert(&[1, 2], &values(&[1, 2], 1));
        assert!(none.is_empty() && none.bytes() == 0, "a zero budget holds nothing");
    }

    #[test]
    fn freed_slots_are_reused_and_bytes_stay_exact() {
        let mut c = cache(1, 30);
        for round in 0..50u32 {
            let t = [round % 7, round % 3, round];
            c.insert(&t, &values(&t, 1));
            assert!(c.bytes() <= 30 && c.bytes() == 10 * c.len(), "round {round}");
        }
        assert!(c.nodes.len() <= 6, "slab grew to {}", c.nodes.len());
    }
}
