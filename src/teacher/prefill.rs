//! Prefill of the embedded teacher's prompts, in fixed chunks at absolute positions, reusing the
//! chunks a [`PrefixCache`] holds from earlier prompts.
//!
//! A prompt of `P` tokens always runs as the chunk forwards `[0, C)`, `[C, 2C)`, …, `[kC, P)`
//! ([`PREFILL_CHUNK`] = `C`), each on the keys and values of the chunks before it. A chunk's
//! keys and values are a function of its tokens and of the chunks before it only, so a chunk
//! taken from the cache is bit for bit the one this prompt would compute, and a warm prefill
//! gives the same logits as a cold one (an f32 product over `P` rows at once would not: gemm's
//! blocking may follow the row count). Whole chunks that end before the last token may come from
//! the cache; the last chunk always runs, for the next-token logits. Every whole chunk computed is
//! offered to the cache.
//!
//! Concurrent prompts with the same prefix (a judge's calls over one document arrive together)
//! do not compute it twice: the first claims each chunk it computes, and the others wait for the
//! claim to be released and then take the chunk from the cache.

use crate::model::{KvCache, KvSpan, Model, ModelError};
use crate::teacher::prefix_cache::PrefixCache;
use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Tokens per prefill chunk. Part of the model's arithmetic (logits can differ in the last bits
/// with another chunking), so a constant, not an option: results depend on the model alone.
pub const PREFILL_CHUNK: usize = 64;

/// Default [`crate::teacher::TeacherOptions::prefix_cache_bytes`]: 512 MiB, about 11,000
/// positions of SmolLM2-135M (46 KiB each), a few document-sized prompts.
pub const DEFAULT_PREFIX_CACHE_BYTES: usize = 512 << 20;

/// Prompt positions prefilled since the teacher started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefillStats {
    /// Positions whose keys and values came from the prefix cache.
    pub reused: u64,
    /// Positions run through the model.
    pub computed: u64,
}

struct State {
    cache: PrefixCache<KvSpan>,
    /// Prefixes (whole chunks) whose last chunk some prefill is computing now.
    claimed: HashSet<Vec<u32>>,
    stats: PrefillStats,
}

/// Chunked prefill through a shared prefix cache.
pub struct Prefiller {
    state: Mutex<State>,
    released: Condvar,
    /// Whether chunks are kept at all (a zero budget: no cache, no claims).
    caching: bool,
}

/// A claimed prefix, released (and waiters woken) when dropped, also on an error or a panic.
struct Claim<'a> {
    owner: &'a Prefiller,
    prefix: Vec<u32>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.owner.lock().claimed.remove(&self.prefix);
        self.owner.released.notify_all();
    }
}

impl Prefiller {
    /// A prefiller keeping at most `budget` bytes of keys and values (0: none).
    pub fn new(budget: usize) -> Prefiller {
        Prefiller {
            state: Mutex::new(State {
                cache: PrefixCache::new(PREFILL_CHUNK, budget, KvSpan::bytes),
                claimed: HashSet::new(),
                stats: PrefillStats::default(),
            }),
            released: Condvar::new(),
            caching: budget > 0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("invariant: the prefill lock is never poisoned")
    }

    /// Positions reused and computed so far.
    pub fn stats(&self) -> PrefillStats {
        self.lock().stats
    }

    /// Bytes the prefix cache holds.
    pub fn cached_bytes(&self) -> usize {
        self.lock().cache.bytes()
    }

    /// A KV cache holding `tokens` (at most `capacity` positions in all) and the logits `[V]`
    /// that follow the last one.
    pub fn run(&self, model: &Model, tokens: &[u32], capacity: usize) -> Result<(KvCache, Vec<f32>), ModelError> {
        let (c, p) = (PREFILL_CHUNK, tokens.len());
        if p == 0 {
            return Err(ModelError::Input("no tokens to run".into()));
        }
        // Whole chunks that end before the last token: those the cache may supply.
        let reusable = (p - 1) / c;
        let mut cache = KvCache::new(model.config(), capacity);
        let mut path: Vec<Arc<KvSpan>> = Vec::new();
        loop {
            let done = cache.len() / c;
            let end = ((done + 1) * c).min(p);
            let claim = match done < reusable && self.caching {
                true => match self.take_or_claim(&tokens[..reusable * c], &mut cache, &mut path)? {
                    Some(claim) => Some(claim),
                    None => continue, // the cache supplied chunks; look again from where they end
                },
                false => None,
            };
            let chunk = &tokens[done * c..end];
            let logits = match end == p {
                true => Some(model.forward(chunk, &mut cache)?),
                false => model.extend(chunk, &mut cache).map(|()| None)?,
            };
            let keep = self.caching && chunk.len() == c;
            if keep {
                path.push(Arc::new(cache.span(done * c, end)?));
            }
            {
                let mut state = self.lock();
                state.stats.computed += chunk.len() as u64;
                if keep {
                    state.cache.insert(&tokens[..end], &path);
                }
            }
            drop(claim);
            if let Some(logits) = logits {
                return Ok((cache, logits));
            }
        }
    }

    /// Appends the chunks the cache holds past what `cache` has (and returns `None`), or, when
    /// it holds none, claims the next chunk once no other prefill has claimed it.
    fn take_or_claim(&self, prefix: &[u32], cache: &mut KvCache, path: &mut Vec<Arc<KvSpan>>) -> Result<Option<Claim<'_>>, ModelError> {
        let done = path.len();
        let mut state = self.lock();
        loop {
            let run = state.cache.longest(prefix);
            if run.len() > done {
                state.stats.reused += ((run.len() - done) * PREFILL_CHUNK) as u64;
                drop(state);
                // Copy outside the lock; the Arcs keep the spans alive if they are evicted meanwhile.
                for span in &run[done..] {
                    cache.append(span)?;
                }
                *path = run;
                return Ok(None);
            }
            let next = prefix[..(done + 1) * PREFILL_CHUNK].to_vec();
            if !state.claimed.contains(&next) {
                state.claimed.insert(next.clone());
                return Ok(Some(Claim { owner: self, prefix: next }));
            }
            state = self.released.wait(state).expect("invariant: the prefill lock is never poisoned");
        }
    }
}
