//! The response cache: a [`Client`] that wraps another and answers repeated requests from a
//! persistent, content-addressed store (ARCHITECTURE.md invariant 3).
//!
//! Completions are cached per *choice*. The key of choice `i` is the blake3 hash of a canonical
//! JSON rendering of (the inner client's identity, the request exactly as given with `n` left
//! out, `i`), so a request for `n = 4` after one for `n = 2` asks the teacher for choices 2 and
//! 3 only. `score` calls are cached whole, keyed by (identity, prompt, continuations).
//! Persistence, crash safety and compaction live in `log`, the record format in `segment`.

mod log;
mod segment;

pub use log::{CacheConfig, CacheError, CacheStats, ResponseCache};

use super::{Client, Prompt, Request, Response, TeacherError, Usage};
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
/// How missing choices are fetched: with a seed, one inner call per missing choice `i`, with
/// `n = 1` and seed `seed + i` (wrapping). That makes each choice a function of its own index
/// only, so it can be cached and fetched independently, and choice 0 equals what the uncached
/// client returns for `n = 1`. (For `n > 1` the choices differ from what the inner client would
/// have sampled in one call; both are valid samples.) Without a seed, one inner call with
/// `n = missing count`: the answer is random anyway, and one call is cheaper.
///
/// `usage` in a response counts only what the inner client spent on this call; hits cost zero.
/// Two concurrent identical misses both reach the teacher; the first answer stored wins.
pub struct CachedClient<C: Client + ?Sized> {
    inner: Arc<C>,
    cache: Arc<ResponseCache>,
    identity: String,
}

impl<C: Client + ?Sized> CachedClient<C> {
    /// Wrap `inner` with `cache`. Several clients may share one cache: keys include identity.
    pub fn new(inner: Arc<C>, cache: Arc<ResponseCache>) -> Self {
        let identity = inner.identity();
        CachedClient { inner, cache, identity }
    }

    /// The cache, for `flush` and `stats`.
    pub fn cache(&self) -> &Arc<ResponseCache> {
        &self.cache
    }

    /// Ask the inner client for the choices at `missing` indexes, in that order.
    async fn fetch(&self, request: &Request, missing: &[u32]) -> Result<(Vec<super::Choice>, Usage), TeacherError> {
        let mut usage = Usage::default();
        let mut choices = Vec::with_capacity(missing.len());
        let responses = match request.sampling.seed {
            Some(seed) => {
                let requests: Vec<Request> = missing
                    .iter()
                    .map(|&i| {
                        let mut one = request.clone();
                        one.sampling.n = 1;
                        one.sampling.seed = Some(seed.wrapping_add(u64::from(i)));
                        one
                    })
                    .collect();
                // Concurrently: the engine wants the teacher busy (invariant 2).
                futures::future::try_join_all(requests.iter().map(|r| self.inner.complete(r))).await?
            }
            None => {
                let mut all = request.clone();
                all.sampling.n = u32::try_from(missing.len()).expect("invariant: at most n indexes are missing");
                vec![self.inner.complete(&all).await?]
            }
        };
        for response in responses {
            usage.prompt_tokens += response.usage.prompt_tokens;
            usage.completion_tokens += response.usage.completion_tokens;
            choices.extend(response.choices);
        }
        if choices.len() != missing.len() {
            return Err(TeacherError::Data {
                endpoint: self.identity.clone(),
                message: format!("asked for {} choices, got {}", missing.len(), choices.len()),
            });
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
        Box::pin(async move {
            let keys: Vec<Key> = (0..request.sampling.n).map(|i| complete_key(&self.identity, request, i)).collect();
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
            if !missing.is_empty() {
                let (fetched, spent) = self.fetch(request, &missing).await?;
                usage = spent;
                for (i, choice) in missing.into_iter().zip(fetched) {
                    self.cache.insert(keys[i as usize], &Entry::Choice(choice.clone()));
                    found[i as usize] = Some(choice);
                }
            }
            let choices = found.into_iter().map(|c| c.expect("invariant: every missing choice was fetched")).collect();
            Ok(Response { choices, usage })
        })
    }

    fn score<'a>(&'a self, prompt: &'a Prompt, continuations: &'a [String]) -> BoxFuture<'a, Result<Vec<f64>, TeacherError>> {
        Box::pin(async move {
            let key = score_key(&self.identity, prompt, continuations);
            if let Some(Entry::Score(bits)) = self.cache.get(&key) {
                return Ok(bits.into_iter().map(f64::from_bits).collect());
            }
            let scores = self.inner.score(prompt, continuations).await?;
            // A reply of the wrong length is the caller's problem to report, not ours to keep.
            if scores.len() == continuations.len() {
                self.cache.insert(key, &Entry::Score(scores.iter().map(|s| s.to_bits()).collect()));
            }
            Ok(scores)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teacher::{ChatMessage, Sampling};

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
