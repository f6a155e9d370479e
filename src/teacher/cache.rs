//! The response cache: a [`Client`] that wraps another and answers repeated requests from a
//! persistent, content-addressed store (ARCHITECTURE.md invariant 3).
//!
//! Completions are cached per *choice*. The key of choice `i` is the blake3 hash of a canonical
//! JSON rendering of (the inner client's identity, the request exactly as given with `n` left
//! out, `i`), so a request for `n = 4` after one for `n = 2` asks the teacher for choices 2 and
//! 3 only. `score` calls are cached whole, keyed by (identity, prompt, continuations).
//!
//! Missing choices of a seeded request are fetched so that choice `i` is always what the inner
//! client returns for `n = 1` and seed `seed + i` (wrapping), whatever was cached before. When
//! the inner client declares [`Client::seeds_choices_independently`] (the embedded teacher does),
//! each maximal run of consecutive missing indexes `[a, b)` is one inner request with `n = b - a`
//! and seed `seed + a`, so the teacher prefills the prompt once per run: a fresh `n = 4` is one
//! call, choices 2 and 3 after a cached `n = 2` are one call with seed `seed + 2`, and holes at
//! 1 and 3 are two calls. Otherwise each missing choice is its own `n = 1` request with seed
//! `seed + i`. Without a seed, all missing choices are one request with `n` = their count. The
//! requests of one call run concurrently.
//!
//! Persistence, crash safety and compaction live in `log`, the record format in `segment`.

mod log;
mod segment;

pub use log::{CacheConfig, CacheError, CacheStats, ResponseCache};

use super::{Client, DeltaSender, Prompt, Request, Response, TeacherError, Usage};
use futures::future::BoxFuture;
use log::Entry;
use segment::Key;
use std::sync::Arc;

/// Domain separation for the two kinds of key (and the key format's version): a completion
/// key can never equal a score key, and a format change invalidates old entries cleanly.
const COMPLETE_CONTEXT: &str = "labflow teacher cache v1 complete";
const SCORE_CONTEXT: &str = "labflow teacher cache v1 score";

/// The key of choice `index` of `request` asked of the model `identity`.
fn complete_key(identity: &str, request: &Request, index: u32) -> Key {
    // `n` is left out on purpose: choice i must not depend on how many choices were asked for.
    // Everything else in the request (model, prompt, every sampling field, present or future)
    // is in, because the whole struct is serialised.
    let mut canonical = request.clone();
    canonical.sampling.n = 0;
    let json = serde_json::to_vec(&(identity, &canonical, index)).expect("invariant: requests serialise to JSON");
    let mut hasher = blake3::Hasher::new_derive_key(COMPLETE_CONTEXT);
    hasher.update(&json);
    *hasher.finalize().as_bytes()
}

/// The key of a `score` call.
fn score_key(identity: &str, prompt: &Prompt, continuations: &[String]) -> Key {
    let json = serde_json::to_vec(&(identity, prompt, continuations)).expect("invariant: prompts serialise to JSON");
    let mut hasher = blake3::Hasher::new_derive_key(SCORE_CONTEXT);
    hasher.update(&json);
    *hasher.finalize().as_bytes()
}

/// A [`Client`] answering from a [`ResponseCache`] and asking `inner` only for what is missing.
///
/// How missing choices are fetched (module doc): with a seed, choice `i` is what the inner
/// client returns for `n = 1` and seed `seed + i` (wrapping), so each choice is a function of its
/// own index only and can be cached and fetched on its own. An inner client that
/// [seeds choices independently](Client::seeds_choices_independently) gets one request per run
/// of consecutive missing choices; any other gets one `n = 1` request per missing choice (its
/// choices for `n > 1` may then differ from what it would have sampled in one call; both are
/// valid samples). Without a seed, one inner call with `n = missing count`: the answer is random
/// anyway, and one call is cheaper.
///
/// `usage` in a response counts only what the inner client spent on this call; hits cost zero.
/// Concurrent calls for the same prompt and sampling go one at a time: the later ones wait for
/// the first and are answered from what it stored, so the teacher is asked once.
///
/// With [`CachedClient::durable`], a call returns only once its answers are written to the
/// store, so a process killed at any moment loses no answer it has handed out: a rerun repeats
/// only the calls that were in flight. Concurrent calls share writes (each flush writes
/// everything pending), so the cost is about one store write per batch of calls that finish
/// together, not one per call.
pub struct CachedClient<C: Client + ?Sized> {
    inner: Arc<C>,
    cache: Arc<ResponseCache>,
    identity: String,
    durable: bool,
    busy: KeyLocks,
}

/// One async lock per key in use: identical concurrent calls queue on it instead of all
/// reaching the teacher. An entry lives while someone holds or waits for it.
#[derive(Default)]
struct KeyLocks(std::sync::Mutex<std::collections::HashMap<Key, Arc<tokio::sync::Mutex<()>>>>);

/// Held while a call for one key looks up, fetches and stores.
struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: Key,
    mutex: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Key, Arc<tokio::sync::Mutex<()>>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn lock(&self, key: Key) -> KeyGuard<'_> {
        let mutex = Arc::clone(self.map().entry(key).or_default());
        let guard = Arc::clone(&mutex).lock_owned().await;
        KeyGuard { locks: self, key, mutex, guard: Some(guard) }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map();
        // The map's reference and ours: nobody else holds or waits for this key.
        if Arc::strong_count(&self.mutex) == 2 {
            map.remove(&self.key);
        }
    }
}

impl<C: Client + ?Sized> CachedClient<C> {
    /// Wrap `inner` with `cache`. Several clients may share one cache: keys include identity.
    pub fn new(inner: Arc<C>, cache: Arc<ResponseCache>) -> Self {
        let identity = inner.identity();
        CachedClient { inner, cache, identity, durable: false, busy: KeyLocks::default() }
    }

    /// Answer a miss only after it is stored (see the type's docs). A failed write is retried
    /// by the next flush and counted in [`CacheStats::flush_errors`]; the answer is still given.
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// Make the answers just inserted durable when asked to.
    async fn persist(&self) {
        if self.durable {
            // A failure is recorded in the cache's stats and retried by the next flush.
            let _ = self.cache.flush().await;
        }
    }

    /// The cache, for `flush` and `stats`.
    pub fn cache(&self) -> &Arc<ResponseCache> {
        &self.cache
    }

    /// The inner requests that fetch the choices at `missing` (ascending indexes of `request`),
    /// each with how many choices it must return; their choices, concatenated in this order,
    /// are those of `missing` in order.
    fn plan(&self, request: &Request, missing: &[u32]) -> Vec<(Request, usize)> {
        let with = |n: u32, seed: Option<u64>| {
            let mut r = request.clone();
            r.sampling.n = n;
            r.sampling.seed = seed;
            (r, n as usize)
        };
        let Some(seed) = request.sampling.seed else {
            let n = u32::try_from(missing.len()).expect("invariant: at most n indexes are missing");
            return vec![with(n, None)];
        };
        if !self.inner.seeds_choices_independently() {
            return missing.iter().map(|&i| with(1, Some(seed.wrapping_add(u64::from(i))))).collect();
        }
        // Maximal runs [a, b) of consecutive indexes: one request each, n = b - a, seed + a.
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for &i in missing {
            match runs.last_mut() {
                Some((_, b)) if *b == i => *b += 1,
                _ => runs.push((i, i + 1)),
            }
        }
        runs.into_iter().map(|(a, b)| with(b - a, Some(seed.wrapping_add(u64::from(a))))).collect()
    }

    /// Ask the inner client for the choices at `missing` indexes, in that order, by `plan`.
    /// With `deltas` (only for a plan of one request), the inner client streams its pieces there.
    async fn fetch(
        &self,
        plan: &[(Request, usize)],
        missing: &[u32],
        deltas: Option<&DeltaSender>,
    ) -> Result<(Vec<super::Choice>, Usage), TeacherError> {
        // Concurrently: the engine wants the teacher busy (invariant 2).
        let responses = match (deltas, plan) {
            (Some(deltas), [(one, _)]) => vec![self.inner.complete_streaming(one, deltas.clone()).await?],
            _ => futures::future::try_join_all(plan.iter().map(|(r, _)| self.inner.complete(r))).await?,
        };
        let mut usage = Usage::default();
        let mut choices = Vec::with_capacity(missing.len());
        for ((_, want), response) in plan.iter().zip(responses) {
            // Per request, so a short answer cannot shift later choices onto the wrong indexes.
            if response.choices.len() != *want {
                return Err(TeacherError::Data {
                    endpoint: self.identity.clone(),
                    message: format!("asked for {want} choices, got {}", response.choices.len()),
                });
            }
            usage.prompt_tokens += response.usage.prompt_tokens;
            usage.completion_tokens += response.usage.completion_tokens;
            choices.extend(response.choices);
        }
        Ok((choices, usage))
    }
}

impl<C: Client + ?Sized> Client for CachedClient<C> {
    fn identity(&self) -> String {
        // Transparent: a cache in front of a model is the same model.
        self.identity.clone()
    }

    fn complete<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, TeacherError>> {
        Box::pin(self.answer(request, None))
    }

    /// Streams through the inner client when every choice is a miss fetched by one inner
    /// request; otherwise the hits and the fetched choices are sent whole.
    fn complete_streaming<'a>(&'a self, request: &'a Request, deltas: DeltaSender) -> BoxFuture<'a, Result<Response, TeacherError>> {
        Box::pin(self.answer(request, Some(deltas)))
    }

    fn score<'a>(&'a self, prompt: &'a Prompt, continuations: &'a [String]) -> BoxFuture<'a, Result<Vec<f64>, TeacherError>> {
        Box::pin(async move {
            let key = score_key(&self.identity, prompt, continuations);
            let _busy = self.busy.lock(key).await;
            if let Some(Entry::Score(bits)) = self.cache.get(&key) {
                return Ok(bits.into_iter().map(f64::from_bits).collect());
            }
            let scores = self.inner.score(prompt, continuations).await?;
            // A reply of the wrong length is the caller's problem to report, not ours to keep.
            if scores.len() == continuations.len() {
                self.cache.insert(key, &Entry::Score(scores.iter().map(|s| s.to_bits()).collect()));
                self.persist().await;
            }
            Ok(scores)
        })
    }

    /// True whatever the inner client declares: choice `i` of seed `s` is always fetched as the
    /// inner client's answer for `n = 1` and seed `s + i` (directly, or within a run when the
    /// inner client seeds choices independently), which is how choice 0 of seed `s + i` is
    /// fetched too. Equal answers then need only a deterministic inner client, as any cache hit does.
    fn seeds_choices_independently(&self) -> bool {
        true
    }
}

impl<C: Client + ?Sized> CachedClient<C> {
    /// `complete`, and with `deltas` `complete_streaming`.
    async fn answer(&self, request: &Request, deltas: Option<DeltaSender>) -> Result<Response, TeacherError> {
        let keys: Vec<Key> = (0..request.sampling.n).map(|i| complete_key(&self.identity, request, i)).collect();
        let _busy = match keys.first() {
            Some(key) => Some(self.busy.lock(*key).await),
            None => None,
        };
        let mut found: Vec<Option<super::Choice>> = keys
            .iter()
            .map(|key| match self.cache.get(key) {
                Some(Entry::Choice(choice)) => Some(choice),
                // A score under a completion key cannot happen (domain-separated keys).
                _ => None,
            })
            .collect();
        let missing: Vec<u32> = (0..request.sampling.n).filter(|&i| found[i as usize].is_none()).collect();
        let mut usage = Usage::default();
        let mut streamed = false;
        if !missing.is_empty() {
            let plan = self.plan(request, &missing);
            // Every choice missing and one inner request for all of them: its choice i is
            // this request's choice i, so its pieces can go straight through.
            let through = deltas.as_ref().filter(|_| plan.len() == 1 && missing.len() == keys.len());
            streamed = through.is_some();
            let (fetched, spent) = self.fetch(&plan, &missing, through).await?;
            usage = spent;
            for (i, choice) in missing.into_iter().zip(fetched) {
                self.cache.insert(keys[i as usize], &Entry::Choice(choice.clone()));
                found[i as usize] = Some(choice);
            }
            self.persist().await;
        }
        let choices = found.into_iter().map(|c| c.expect("invariant: every missing choice was fetched")).collect();
        let response = Response { choices, usage };
        if let (Some(deltas), false) = (&deltas, streamed) {
            super::types::send_whole(&response, deltas);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Location;
    use crate::teacher::counted::Counted;
    use crate::teacher::{ChatMessage, Choice, FinishReason, Sampling};
    use std::sync::Mutex;
    use std::time::Duration;

    /// A fake inner client that records `(n, seed)` of every completion it is asked for. When
    /// `independent`, choice `j` is text derived from (prompt, `seed + j`) only, as it declares;
    /// otherwise from (prompt, seed, j, n), so its choices depend on `n`.
    struct FakeTeacher {
        independent: bool,
        calls: Mutex<Vec<(u32, Option<u64>)>>,
    }

    impl FakeTeacher {
        fn new(independent: bool) -> Arc<FakeTeacher> {
            Arc::new(FakeTeacher { independent, calls: Mutex::new(Vec::new()) })
        }

        /// The calls since the last look, sorted (the cache sends a call's requests concurrently).
        fn calls(&self) -> Vec<(u32, Option<u64>)> {
            let mut calls = std::mem::take(&mut *self.calls.lock().expect("lock"));
            calls.sort();
            calls
        }
    }

    impl Client for FakeTeacher {
        fn identity(&self) -> String {
            format!("fake(independent={})", self.independent)
        }

        fn complete<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, TeacherError>> {
            let s = &request.sampling;
            self.calls.lock().expect("lock").push((s.n, s.seed));
            let text = |j: u32| match (self.independent, s.seed) {
                (true, Some(seed)) => format!("{:?}|seed {}", request.prompt, seed.wrapping_add(u64::from(j))),
                _ => format!("{:?}|seed {:?}|choice {j} of {}", request.prompt, s.seed, s.n),
            };
            let choices = (0..s.n).map(|j| Choice { text: text(j), finish_reason: FinishReason::Stop, logprobs: None }).collect();
            let usage = Usage { prompt_tokens: 3, completion_tokens: u64::from(s.n) };
            Box::pin(async move { Ok(Response { choices, usage }) })
        }

        fn score<'a>(&'a self, _: &'a Prompt, continuations: &'a [String]) -> BoxFuture<'a, Result<Vec<f64>, TeacherError>> {
            let scores = vec![0.0; continuations.len()];
            Box::pin(async move { Ok(scores) })
        }

        fn seeds_choices_independently(&self) -> bool {
            self.independent
        }
    }

    async fn cached(inner: &Arc<FakeTeacher>) -> CachedClient<FakeTeacher> {
        let location = Location::memory(Arc::new(object_store::memory::InMemory::new()), "");
        let config = CacheConfig { flush_interval: Duration::from_secs(3600), compact_above: 64 };
        CachedClient::new(Arc::clone(inner), Arc::new(ResponseCache::open(location, config).await.expect("open cache")))
    }

    #[tokio::test]
    async fn identical_concurrent_calls_reach_the_teacher_once_and_durable_answers_are_stored_first() {
        use crate::teacher::test_teacher::TestTeacher;
        use std::sync::atomic::Ordering;
        let inner = TestTeacher::new(1, Duration::from_millis(50));
        let location = Location::memory(Arc::new(object_store::memory::InMemory::new()), "");
        // No background flush within the test: only `durable` can have written the answers.
        let config = CacheConfig { flush_interval: Duration::from_secs(3600), compact_above: 64 };
        let cache = Arc::new(ResponseCache::open(location, config).await.expect("open cache"));
        let client = CachedClient::new(Arc::clone(&inner), Arc::clone(&cache)).durable();
        let r = seeded(1, 7);
        let (a, b, c) = tokio::join!(client.complete(&r), client.complete(&r), client.complete(&r));
        let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("c"));
        assert_eq!((&a.choices, &b.choices), (&c.choices, &c.choices));
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1, "identical concurrent calls each reached the teacher");
        let continuations = ["1".to_string(), "2".to_string()];
        let prompt = request().prompt;
        let (x, y) = tokio::join!(client.score(&prompt, &continuations), client.score(&prompt, &continuations));
        assert_eq!(x.expect("x"), y.expect("y"));
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
        let stats = cache.stats();
        assert_eq!((stats.pending, stats.entries), (0, 2), "answers were handed out before they were stored: {stats:?}");
        assert!(client.busy.map().is_empty(), "key locks outlived their calls");
    }

    fn seeded(n: u32, seed: u64) -> Request {
        let mut r = request();
        r.sampling.n = n;
        r.sampling.seed = Some(seed);
        r
    }

    /// The reference: choice `i` is what a fresh inner client answers for n = 1, seed + i.
    async fn one_by_one(independent: bool, request: &Request) -> Vec<Choice> {
        let fresh = FakeTeacher::new(independent);
        let mut out = Vec::new();
        for i in 0..request.sampling.n {
            let seed = request.sampling.seed.map(|s| s.wrapping_add(u64::from(i)));
            let one = Request { sampling: Sampling { n: 1, seed, ..request.sampling.clone() }, ..request.clone() };
            out.extend(fresh.complete(&one).await.expect("complete").choices);
        }
        out
    }

    #[tokio::test]
    async fn independent_inner_gets_one_request_per_run_of_missing_choices() {
        let inner = FakeTeacher::new(true);
        let client = cached(&inner).await;

        // Fresh n = 4: one call.
        let four = client.complete(&seeded(4, 7)).await.expect("complete");
        assert_eq!(inner.calls(), vec![(4, Some(7))]);
        assert_eq!(four.choices, one_by_one(true, &seeded(4, 7)).await);
        assert_eq!(four.usage, Usage { prompt_tokens: 3, completion_tokens: 4 }, "one prefill");

        // Choices 0..2 cached, then n = 5: one call for [2, 5) with seed + 2.
        let two = client.complete(&seeded(2, 100)).await.expect("complete");
        assert_eq!(inner.calls(), vec![(2, Some(100))]);
        let five = client.complete(&seeded(5, 100)).await.expect("complete");
        assert_eq!(inner.calls(), vec![(3, Some(102))]);
        assert_eq!(five.choices[..2], two.choices[..]);
        assert_eq!(five.choices, one_by_one(true, &seeded(5, 100)).await);
    }

    #[tokio::test]
    async fn holes_are_fetched_run_by_run() {
        let inner = FakeTeacher::new(true);
        let client = cached(&inner).await;
        // Choices 0 and 2 cached (as a torn segment or a concurrent writer can leave them).
        let want = one_by_one(true, &seeded(6, 50)).await;
        for i in [0u32, 2] {
            client.cache.insert(complete_key(&client.identity, &seeded(6, 50), i), &Entry::Choice(want[i as usize].clone()));
        }
        let six = client.complete(&seeded(6, 50)).await.expect("complete");
        assert_eq!(inner.calls(), vec![(1, Some(51)), (3, Some(53))], "runs [1, 2) and [3, 6)");
        assert_eq!(six.choices, want);
    }

    #[tokio::test]
    async fn runs_wrap_the_seed_like_single_choices() {
        let inner = FakeTeacher::new(true);
        let client = cached(&inner).await;
        let three = client.complete(&seeded(3, u64::MAX)).await.expect("complete");
        assert_eq!(inner.calls(), vec![(3, Some(u64::MAX))]);
        assert_eq!(three.choices, one_by_one(true, &seeded(3, u64::MAX)).await);
        let again = client.complete(&seeded(1, 1)).await.expect("complete");
        assert_eq!(again.choices[..], three.choices[2..], "choice 2 of seed MAX is choice 0 of seed 1");
    }

    #[tokio::test]
    async fn other_inner_clients_still_get_one_request_per_seeded_choice() {
        let inner = FakeTeacher::new(false);
        let client = cached(&inner).await;
        let four = client.complete(&seeded(4, 7)).await.expect("complete");
        assert_eq!(inner.calls(), vec![(1, Some(7)), (1, Some(8)), (1, Some(9)), (1, Some(10))]);
        assert_eq!(four.choices, one_by_one(false, &seeded(4, 7)).await);

        // Unseeded: one call for all missing choices, either way.
        for independent in [false, true] {
            let inner = FakeTeacher::new(independent);
            let client = cached(&inner).await;
            let mut unseeded = request();
            unseeded.sampling = Sampling { n: 3, seed: None, ..Sampling::default() };
            assert_eq!(client.complete(&unseeded).await.expect("complete").choices.len(), 3);
            assert_eq!(inner.calls(), vec![(3, None)]);
        }
    }

    #[tokio::test]
    async fn wrappers_declare_the_seed_convention() {
        for independent in [false, true] {
            let inner = FakeTeacher::new(independent);
            assert_eq!(Counted::new(inner.clone()).seeds_choices_independently(), independent, "counted forwards");
            // The cache keeps the convention itself: choice i is always fetched as n = 1, seed + i.
            assert!(cached(&inner).await.seeds_choices_independently());
        }
    }

    fn request() -> Request {
        Request {
            model: "m".into(),
            prompt: Prompt::Chat(vec![ChatMessage::new("user", "hi")]),
            sampling: Sampling { seed: Some(7), ..Sampling::default() },
        }
    }

    #[test]
    fn n_is_not_in_the_key_but_everything_else_is() {
        let base = request();
        let k = complete_key("a", &base, 0);
        let mut more = base.clone();
        more.sampling.n = 4;
        assert_eq!(complete_key("a", &more, 0), k);
        assert_ne!(complete_key("a", &base, 1), k);
        assert_ne!(complete_key("b", &base, 0), k);
        let mut changed = base.clone();
        changed.sampling.seed = Some(8);
        assert_ne!(complete_key("a", &changed, 0), k);
        let mut changed = base.clone();
        changed.sampling.temperature = 0.5;
        assert_ne!(complete_key("a", &changed, 0), k);
        let mut changed = base.clone();
        changed.prompt = Prompt::Text("hi".into());
        assert_ne!(complete_key("a", &changed, 0), k);
        let mut changed = base;
        changed.model = "other".into();
        assert_ne!(complete_key("a", &changed, 0), k);
    }

    #[test]
    fn score_and_complete_keys_are_separate() {
        let prompt = Prompt::Text("x".into());
        let conts = vec!["YES".to_string(), "NO".to_string()];
        assert_ne!(score_key("a", &prompt, &conts), score_key("a", &prompt, &conts[..1]));
        assert_ne!(score_key("a", &prompt, &conts), score_key("b", &prompt, &conts));
    }
}
