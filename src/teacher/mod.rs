//! Teachers: the one [`Client`] trait every generation and critique step talks to.
//!
//! Backends implement it: an OpenAI-compatible HTTP client (`http`), the embedded in-process model
//! (`embedded`, over `model/`), and the content-addressed response cache (`cache`) that wraps
//! any of them. This module never knows about leaves or pipelines (ARCHITECTURE.md).

pub mod cache;
pub mod constraint;
pub mod counted;
pub mod embedded;
pub mod http;
pub mod prefill;
pub mod prefix_cache;
pub mod test_teacher;
pub mod types;

pub use embedded::{EmbeddedTeacher, TeacherOptions};
pub use prefill::PrefillStats;
pub use http::{HttpClient, HttpConfig, HttpStats};
pub use types::{ChatMessage, Choice, Delta, DeltaSender, FinishReason, Prompt, Request, Response, Sampling, TeacherError, TokenLogprob, Usage};

use futures::future::BoxFuture;

/// A teacher model: completes requests, and scores continuations by probability.
///
/// Implementations must be cheap to share (`Arc<dyn Client>`) and safe to call concurrently; the
/// engine keeps many requests in flight at once.
pub trait Client: Send + Sync {
    /// A stable identity of the model behind this client (backend, model name or file hash);
    /// part of every cache key, so two different models never share cached answers.
    fn identity(&self) -> String;

    /// Complete one request, returning `request.sampling.n` choices.
    fn complete<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, TeacherError>>;

    /// Complete like [`Client::complete`], and send each choice's text to `deltas` while it is
    /// generated: the pieces of choice `i`, in order, concatenate to exactly the returned choice
    /// `i`'s text (nothing is sent that a stop string, a loop cut or an unfinished UTF-8
    /// character could still take back). `labflow serve` streams with it.
    ///
    /// Default: complete, then send each choice whole. The embedded teacher sends pieces as it
    /// decodes.
    fn complete_streaming<'a>(&'a self, request: &'a Request, deltas: DeltaSender) -> BoxFuture<'a, Result<Response, TeacherError>> {
        Box::pin(async move {
            let response = self.complete(request).await?;
            types::send_whole(&response, &deltas);
            Ok(response)
        })
    }

    /// Natural-log probability of each continuation given the prompt (summed over its tokens):
    /// how judges score labels such as YES/NO or 1/2/3 without generating text.
    fn score<'a>(&'a self, prompt: &'a Prompt, continuations: &'a [String]) -> BoxFuture<'a, Result<Vec<f64>, TeacherError>>;

    /// Whether choice `i` of a seeded request (seed `s`, any `n`) is exactly what the same
    /// request with `n = 1` and seed `s + i` (wrapping) returns: each choice is then a function of
    /// its own seed only, not of `n` or of the choices beside it. The embedded teacher works this
    /// way; the response cache relies on it to fetch a run of missing choices in one request (one
    /// prefill of the prompt) instead of one request per choice.
    ///
    /// Default `false`: OpenAI-compatible servers (vLLM, llama.cpp, hosted APIs) promise nothing
    /// of the kind. Say `true` only when it holds for every seeded request.
    fn seeds_choices_independently(&self) -> bool {
        false
    }
}
