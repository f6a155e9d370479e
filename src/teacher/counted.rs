//! A [`Client`] that counts the calls reaching the client it wraps. Placed under the response
//! cache, it counts the calls actually sent to the model (the run summary's `teacher_calls`).

use crate::teacher::{Client, DeltaSender, Prompt, Request, Response, TeacherError};
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counts `complete` and `score` calls passed to `inner`.
pub struct Counted {
    inner: Arc<dyn Client>,
    calls: AtomicU64,
}

impl Counted {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn Client>) -> Arc<Counted> {
        Arc::new(Counted { inner, calls: AtomicU64::new(0) })
    }
    /// Calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl Client for Counted {
    fn identity(&self) -> String {
        self.inner.identity()
    }
    fn complete<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, TeacherError>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.complete(request)
    }
    fn complete_streaming<'a>(&'a self, request: &'a Request, deltas: DeltaSender) -> BoxFuture<'a, Result<Response, TeacherError>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.complete_streaming(request, deltas)
    }
    fn score<'a>(&'a self, prompt: &'a Prompt, continuations: &'a [String]) -> BoxFuture<'a, Result<Vec<f64>, TeacherError>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.score(prompt, continuations)
    }
    fn seeds_choices_independently(&self) -> bool {
        self.inner.seeds_choices_independently()
    }
}
