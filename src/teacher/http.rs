//! The OpenAI-compatible HTTP teacher: [`HttpClient`] talks to vLLM, llama.cpp's servers, Ollama,
//! `labflow serve` or a hosted API.
//!
//! `Prompt::Chat` goes to `{base_url}/chat/completions`, `Prompt::Text` to `{base_url}/completions`;
//! [`Client::score`] uses `/completions` with `echo` (see [`wire::score_from_echo`] for which
//! servers get that right). A semaphore bounds the requests in flight; failed requests are retried
//! with backoff ([`retry`]) when a retry can help, and every final error names the endpoint, the
//! status, the server's message and what to try. The API key is read once from the environment
//! and appears in no log, `Debug` output or error.
//!
//! Configuration is two types, as elsewhere: [`HttpConfig`] mirrors the file, and
//! [`HttpClient::new`] validates it into a client.

mod retry;
mod wire;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::{join_all, BoxFuture};
use futures::FutureExt;
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;
use crate::teacher::constraint::Dialect;

use crate::teacher::{Client, Prompt, Request, Response, Sampling, TeacherError};

/// Configuration of an [`HttpClient`], as written in a pipeline or teacher file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// API root including the version, e.g. `http://127.0.0.1:8080/v1`; endpoints are appended
    /// to it. Required.
    pub base_url: String,
    /// Model name sent in every request (as the server lists it under `/v1/models`). Required.
    pub model: String,
    /// NAME of the environment variable holding the API key (not the key itself), sent as
    /// `Authorization: Bearer …`. Default: none, no key sent.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Most requests outstanding at once (the server's concurrency slots). Default 8.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Time limit of one HTTP request, in seconds, from sending to the last byte of the reply;
    /// a retry gets a fresh limit. Default 120.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retries after the first attempt, for connection errors, timeouts, 429 and 5xx. Default 5.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Ceiling of the first retry's random wait, in milliseconds; it doubles per retry.
    /// Default 500.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Longest wait between attempts, in milliseconds, also capping a server's `Retry-After`.
    /// Default 30000.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// How the server takes decoding constraints (`none`, `vllm`, `llama.cpp`, `openai`);
    /// `labflow serve` speaks `vllm`. Default `none`: constraints are not sent.
    #[serde(default)]
    pub constraints: Dialect,
    /// Whether the server seeds choice `i` of a request with seed `s` exactly as a request for
    /// `n = 1` with seed `s + i` ([`Client::seeds_choices_independently`]), so the response cache
    /// may ask it for several choices in one request. `labflow serve` over the embedded teacher
    /// does, and says so under `/v1/models`; vLLM, llama.cpp and hosted APIs promise nothing of
    /// the kind. Default false.
    #[serde(default)]
    pub seeds_choices_independently: bool,
}

fn default_max_in_flight() -> usize {
    8
}
fn default_timeout_secs() -> u64 {
    120
}
fn default_max_retries() -> u32 {
    5
}
fn default_backoff_initial_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    30_000
}

impl HttpConfig {
    /// A configuration with every optional field at its default.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        HttpConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            max_in_flight: default_max_in_flight(),
            timeout_secs: default_timeout_secs(),
            max_retries: default_max_retries(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            constraints: Dialect::None,
            seeds_choices_independently: false,
        }
    }
}

/// Counters of an [`HttpClient`] since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpStats {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Requests sent again after a retryable failure.
    pub retries: u64,
    /// Calls that ended in an error (after their retries, if any).
    pub failures: u64,
    /// Prompt tokens, as the server counted them.
    pub prompt_tokens: u64,
    /// Generated tokens, as the server counted them.
    pub completion_tokens: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    failures: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

/// The API key: kept out of `Debug` so no log line or panic message can carry it.
struct ApiKey {
    env: String,
    value: String,
    header: HeaderValue,
}

/// An OpenAI-compatible teacher over HTTP. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct HttpClient {
    config: HttpConfig,
    base: String,
    key: Option<ApiKey>,
    http: reqwest::Client,
    slots: Arc<Semaphore>,
    counters: Counters,
    /// Whether this server's echo logprobs are right, probed once on the first `score`.
    echo_aligned: tokio::sync::OnceCell<bool>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("config", &self.config)
            .field("api_key", &self.key.as_ref().map(|k| format!("<from ${}>", k.env)))
            .field("stats", &self.stats())
            .finish()
    }
}

/// A failed attempt, before it becomes a [`TeacherError`].
struct Failure {
    status: Option<u16>,
    message: String,
    hint: Option<String>,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl HttpClient {
    /// Validate `config`, read the API key from the environment variable it names, and build the
    /// client. Fails with [`TeacherError::Spec`] on a bad URL, a zero limit, or an unset key.
    pub fn new(config: HttpConfig) -> Result<Self, TeacherError> {
        let spec = |message: String| TeacherError::Spec { endpoint: config.base_url.clone(), message };
        let url = url::Url::parse(&config.base_url)
            .map_err(|e| spec(format!("base_url is not a URL ({e}); write e.g. http://127.0.0.1:8080/v1")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(spec(format!("base_url must be http:// or https://, not {}://", url.scheme())));
        }
        if config.model.trim().is_empty() {
            return Err(spec("model is empty; give the name the server lists under /v1/models".into()));
        }
        if config.max_in_flight == 0 || config.timeout_secs == 0 {
            return Err(spec("max_in_flight and timeout_secs must be at least 1".into()));
        }
        if config.backoff_initial_ms > config.backoff_max_ms {
            return Err(spec(format!(
                "backoff_initial_ms ({}) exceeds backoff_max_ms ({})",
                config.backoff_initial_ms, config.backoff_max_ms
            )));
        }
        let key = match &config.api_key_env {
            None => None,
            Some(env) => {
                let value = std::env::var(env).map_err(|_| spec(format!("the environment variable ${env} (api_key_env) is not set")))?;
                if value.trim().is_empty() {
                    return Err(spec(format!("the environment variable ${env} (api_key_env) is empty")));
                }
                let mut header = HeaderValue::from_str(&format!("Bearer {}", value.trim()))
                    .map_err(|_| spec(format!("the API key in ${env} holds characters not allowed in an HTTP header")))?;
                // Keeps the value out of reqwest's and hyper's own debug output.
                header.set_sensitive(true);
                Some(ApiKey { env: env.clone(), value: value.trim().to_string(), header })
            }
        };
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(config.max_in_flight)
            .build()
            .map_err(|e| spec(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpClient {
            base: config.base_url.trim_end_matches('/').to_string(),
            slots: Arc::new(Semaphore::new(config.max_in_flight)),
            key,
            http,
            counters: Counters::default(),
            echo_aligned: tokio::sync::OnceCell::new(),
            config,
        })
    }

    /// The configuration this client was built from.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// Counters since the client was built.
    pub fn stats(&self) -> HttpStats {
        let c = &self.counters;
        HttpStats {
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            prompt_tokens: c.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: c.completion_tokens.load(Ordering::Relaxed),
        }
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The model to send: requests may leave it empty, but may not name another model, because
    /// [`Client::identity`] (part of every cache key) names this one.
    fn model_for(&self, request: &Request, endpoint: &str) -> Result<String, TeacherError> {
        if request.model.is_empty() || request.model == self.config.model {
            Ok(self.config.model.clone())
        } else {
            Err(TeacherError::Spec {
                endpoint: endpoint.to_string(),
                message: format!("the request names model {:?} but this client serves {:?}", request.model, self.config.model),
            })
        }
    }

    /// POST `body` with retries; the JSON reply of the first successful attempt.
    async fn post(&self, endpoint: &str, body: &Value) -> Result<Value, TeacherError> {
        let mut attempt = 0u32;
        loop {
            let outcome = {
                // The slot is held only while a request is on the wire, not during backoff, so
                // waiting retries never idle the server.
                let _slot = self.slots.acquire().await.expect("invariant: the semaphore is never closed");
                self.counters.requests.fetch_add(1, Ordering::Relaxed);
                self.attempt(endpoint, body).await
            };
            match outcome {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(fatal)) => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(fatal);
                }
                Err(f) if f.retryable && attempt < self.config.max_retries => {
                    let max = Duration::from_millis(self.config.backoff_max_ms);
                    let wait = match f.retry_after {
                        Some(server_says) => server_says.min(max),
                        None => retry::backoff(attempt, Duration::from_millis(self.config.backoff_initial_ms), max, &mut rand::rng()),
                    };
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
                Err(f) => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    let message = if attempt > 0 { format!("{} (gave up after {} attempts)", f.message, attempt + 1) } else { f.message };
                    return Err(TeacherError::External {
                        endpoint: endpoint.to_string(),
                        status: f.status,
                        message,
                        hint: f.hint,
                        retryable: f.retryable,
                    });
                }
            }
        }
    }

    /// One HTTP exchange. `Err` is a failure the retry loop judges; `Ok(Err)` is a reply that
    /// arrived but cannot be understood, which a retry would not change.
    async fn attempt(&self, endpoint: &str, body: &Value) -> Result<Result<Value, TeacherError>, Failure> {
        let mut req = self.http.post(endpoint).timeout(Duration::from_secs(self.config.timeout_secs)).json(body);
        if let Some(key) = &self.key {
            req = req.header(AUTHORIZATION, key.header.clone());
        }
        let reply = req.send().await.map_err(|e| self.transport_failure(&e))?;
        let status = reply.status();
        let retry_after =
            reply.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
        let bytes = reply.bytes().await.map_err(|e| self.transport_failure(&e))?;
        if status.is_success() {
            return Ok(serde_json::from_slice(&bytes)
                .map_err(|e| TeacherError::Data { endpoint: endpoint.to_string(), message: format!("the reply is not JSON: {e}") }));
        }
        let code = status.as_u16();
        let retryable = code == 429 || status.is_server_error();
        Err(Failure {
            status: Some(code),
            message: retry::server_message(&bytes, self.key.as_ref().map(|k| k.value.as_str())),
            hint: Some(self.status_hint(code)),
            retryable,
            retry_after: if retryable { retry_after } else { None },
        })
    }

    fn status_hint(&self, code: u16) -> String {
        match code {
            401 | 403 => match &self.key {
                Some(k) => format!("check the API key in ${}", k.env),
                None => "the server wants an API key: set api_key_env to the NAME of an environment variable holding it".into(),
            },
            404 => format!("check base_url ({}) and model ({})", self.base, self.config.model),
            429 => "the server is rate-limiting: lower max_in_flight".into(),
            500..=599 => "the server failed; see its log".into(),
            _ => "the server rejected the request; its message says which parameter".into(),
        }
    }

    fn transport_failure(&self, e: &reqwest::Error) -> Failure {
        // reqwest's Display says only "error sending request"; the cause is in the source chain.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        let hint = if e.is_timeout() {
            Some(format!("no complete reply within {} s: raise timeout_secs, or lower max_in_flight", self.config.timeout_secs))
        } else if e.is_connect() {
            Some(format!("is the server running at {}?", self.base))
        } else {
            None
        };
        Failure { status: None, message, hint, retryable: !e.is_builder(), retry_after: None }
    }

    /// One request for `n` choices, parsed.
    async fn complete_n(&self, request: &Request, n: u32, seed: Option<u64>) -> Result<Response, TeacherError> {
        let s = &request.sampling;
        let (endpoint, body) = match &request.prompt {
            Prompt::Chat(messages) => {
                let endpoint = self.endpoint("/chat/completions");
                let body = wire::chat_body(&self.model_for(request, &endpoint)?, messages, s, n, seed);
                (endpoint, body)
            }
            Prompt::Text(text) => {
                let endpoint = self.endpoint("/completions");
                let body = wire::completion_body(&self.model_for(request, &endpoint)?, text, s, n, seed);
                (endpoint, body)
            }
        };
        let mut body = body;
        wire::constraint_fields(&mut body, s.constraint.as_ref(), self.config.constraints)
            .map_err(|e| TeacherError::Spec { endpoint: endpoint.clone(), message: e.to_string() })?;
        let reply = self.post(&endpoint, &body).await?;
        let parsed = match &request.prompt {
            Prompt::Chat(_) => wire::parse_chat(&endpoint, reply, s.logprobs),
            Prompt::Text(_) => wire::parse_completion(&endpoint, reply, s.logprobs),
        };
        if parsed.is_err() {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        let response = parsed?;
        self.counters.prompt_tokens.fetch_add(response.usage.prompt_tokens, Ordering::Relaxed);
        self.counters.completion_tokens.fetch_add(response.usage.completion_tokens, Ordering::Relaxed);
        Ok(response)
    }

    async fn complete_all(&self, request: &Request) -> Result<Response, TeacherError> {
        let want = request.sampling.n.max(1);
        let mut response = self.complete_n(request, want, request.sampling.seed).await?;
        // Some servers (llama-cpp-python) accept `n` and return one choice. Ask again for the
        // rest, offsetting the seed so a seeded request stays reproducible; each round adds at
        // least one choice, so this ends.
        while (response.choices.len() as u32) < want {
            let got = response.choices.len() as u32;
            let more = self.complete_n(request, want - got, request.sampling.seed.map(|s| s.wrapping_add(u64::from(got)))).await?;
            response.choices.extend(more.choices);
            response.usage.prompt_tokens += more.usage.prompt_tokens;
            response.usage.completion_tokens += more.usage.completion_tokens;
        }
        response.choices.truncate(want as usize);
        Ok(response)
    }

    /// Probe whether echo logprobs agree with generation logprobs: greedy-generate one token
    /// after a prompt every model continues the same way, then echo prompt + that token. Servers
    /// that get echo wrong (llama-cpp-python 0.3.x shifts it by one token; others ignore `echo`)
    /// fail here, and `score` refuses rather than return wrong numbers. Two requests per client.
    async fn check_echo(&self) -> Result<bool, TeacherError> {
        const PROBE: &str = "1, 2, 3, 4, 5, 6,";
        let endpoint = self.endpoint("/completions");
        let ask = Request {
            model: String::new(),
            prompt: Prompt::Text(PROBE.into()),
            sampling: Sampling { logprobs: Some(1), ..Sampling::greedy(1) },
        };
        let generated = self.complete_n(&ask, 1, None).await?;
        let Some(first) = generated.choices.first().and_then(|c| c.logprobs.as_ref()).and_then(|l| l.first()).cloned() else {
            return Ok(false);
        };
        let reply = self.post(&endpoint, &wire::score_body(&self.config.model, &format!("{PROBE}{}", first.token))).await?;
        Ok(wire::echoed_logprob(reply, PROBE.chars().count(), &first.token).is_some_and(|lp| (lp - first.logprob).abs() < 1e-3))
    }

    async fn score_one(&self, prompt: &str, continuation: &str) -> Result<f64, TeacherError> {
        if continuation.is_empty() {
            return Ok(0.0);
        }
        let endpoint = self.endpoint("/completions");
        let text = format!("{prompt}{continuation}");
        let reply = self.post(&endpoint, &wire::score_body(&self.config.model, &text)).await?;
        if let Some(u) = reply.get("usage") {
            let count = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            self.counters.prompt_tokens.fetch_add(count("prompt_tokens"), Ordering::Relaxed);
            self.counters.completion_tokens.fetch_add(count("completion_tokens"), Ordering::Relaxed);
        }
        wire::score_from_echo(reply, prompt, continuation).map_err(|f| {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
            match f {
                wire::ScoreFailure::Data(message) => TeacherError::Data { endpoint: endpoint.clone(), message },
                wire::ScoreFailure::Misaligned(why) => TeacherError::Unsupported(format!(
                    "score() over {endpoint}: {why}; score with the embedded teacher or a server whose echo logprobs are right (vLLM)"
                )),
            }
        })
    }
}

impl Client for HttpClient {
    fn identity(&self) -> String {
        format!("http:{}#{}", self.config.base_url, self.config.model)
    }

    fn complete<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, TeacherError>> {
        self.complete_all(request).boxed()
    }

    /// As configured ([`HttpConfig::seeds_choices_independently`]): only the server can know.
    fn seeds_choices_independently(&self) -> bool {
        self.config.seeds_choices_independently
    }

    fn score<'a>(&'a self, prompt: &'a Prompt, continuations: &'a [String]) -> BoxFuture<'a, Result<Vec<f64>, TeacherError>> {
        async move {
            let text = match prompt {
                Prompt::Text(t) => t,
                Prompt::Chat(_) => {
                    return Err(TeacherError::Unsupported(
                        "scoring a chat prompt over HTTP: the OpenAI chat API cannot return prompt log-probabilities; \
                         use the embedded teacher, or render the chat into a Prompt::Text for /completions"
                            .into(),
                    ))
                }
            };
            if !*self.echo_aligned.get_or_try_init(|| self.check_echo()).await? {
                return Err(TeacherError::Unsupported(format!(
                    "score() over {}: this server's echo log-probabilities disagree with its generation log-probabilities \
                     (llama-cpp-python 0.3.x shifts them by one token; llama.cpp's llama-server refuses echo); \
                     score with the embedded teacher or a server whose echo is right (vLLM)",
                    self.base
                )));
            }
            // The continuations are independent requests; the semaphore still bounds them.
            join_all(continuations.iter().map(|c| self.score_one(text, c))).await.into_iter().collect()
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: HttpConfig = serde_json::from_str(r#"{"base_url": "http://127.0.0.1:8080/v1", "model": "m"}"#).unwrap();
        assert_eq!(c, HttpConfig::new("http://127.0.0.1:8080/v1", "m"));
        assert_eq!((c.max_in_flight, c.timeout_secs, c.max_retries, c.backoff_initial_ms, c.backoff_max_ms), (8, 120, 5, 500, 30_000));
        assert!(!c.seeds_choices_independently && !HttpClient::new(c.clone()).unwrap().seeds_choices_independently());
        let yes: HttpConfig =
            serde_json::from_str(r#"{"base_url": "http://h/v1", "model": "m", "seeds_choices_independently": true}"#).unwrap();
        assert!(HttpClient::new(yes).unwrap().seeds_choices_independently());
        let e = serde_json::from_str::<HttpConfig>(r#"{"base_url": "x", "model": "m", "api_key": "sk"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `api_key`"), "{e}");
    }

    #[test]
    fn bad_configs_are_spec_errors() {
        let bad = [
            (HttpConfig { base_url: "127.0.0.1:8080".into(), ..HttpConfig::new("", "m") }, "http"),
            (HttpConfig::new("ftp://h/v1", "m"), "http:// or https://"),
            (HttpConfig::new("http://h/v1", " "), "model is empty"),
            (HttpConfig { max_in_flight: 0, ..HttpConfig::new("http://h/v1", "m") }, "at least 1"),
            (HttpConfig { backoff_initial_ms: 10, backoff_max_ms: 1, ..HttpConfig::new("http://h/v1", "m") }, "exceeds"),
            (
                HttpConfig { api_key_env: Some("LABFLOW_TEST_SURELY_UNSET_VAR".into()), ..HttpConfig::new("http://h/v1", "m") },
                "$LABFLOW_TEST_SURELY_UNSET_VAR",
            ),
        ];
        for (config, want) in bad {
            let e = HttpClient::new(config).unwrap_err();
            assert!(matches!(e, TeacherError::Spec { .. }) && e.to_string().contains(want), "{e}");
        }
    }

    #[test]
    fn identity_and_endpoints() {
        let c = HttpClient::new(HttpConfig::new("http://127.0.0.1:8080/v1/", "smol")).unwrap();
        assert_eq!(c.identity(), "http:http://127.0.0.1:8080/v1/#smol");
        assert_eq!(c.endpoint("/completions"), "http://127.0.0.1:8080/v1/completions");
        let other = Request { model: "big".into(), prompt: Prompt::Text("x".into()), sampling: Default::default() };
        assert!(matches!(c.model_for(&other, "E"), Err(TeacherError::Spec { .. })));
    }
}
