//! Request, response and error types shared by every teacher backend.
//!
//! They mirror the OpenAI-compatible API (chat and legacy completions) closely enough that the
//! HTTP client and `labflow serve` translate them field by field, and they serialise
//! deterministically, because the response cache hashes them.

use serde::{Deserialize, Serialize};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        ChatMessage { role: role.to_string(), content: content.into() }
    }
}

/// What the model is asked: a chat (rendered with the model's chat template) or raw text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// `/v1/chat/completions`.
    Chat(Vec<ChatMessage>),
    /// `/v1/completions`: the text is used as is.
    Text(String),
}

/// How to sample. Defaults follow the OpenAI API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sampling {
    /// Softmax temperature; 0 means greedy. Default 1.0.
    pub temperature: f32,
    /// Nucleus sampling mass in (0, 1]. Default 1.0 (off).
    pub top_p: f32,
    /// Keep only the k most likely tokens; `None` = off.
    pub top_k: Option<u32>,
    /// Most tokens to generate per choice. Default 256.
    pub max_tokens: u32,
    /// Stop strings: generation ends before the first one (it is not returned).
    pub stop: Vec<String>,
    /// Seed: the same seed and request give the same text. `None` = nondeterministic.
    pub seed: Option<u64>,
    /// Number of choices. Default 1.
    pub n: u32,
    /// Return the log-probability of each generated token and this many alternatives at each
    /// position (0 = only the chosen token); `None` = no log-probabilities.
    pub logprobs: Option<u32>,
    /// What the completion must look like (structured generation); `None` = free text. Left
    /// out of the serialised form when unset, so cache keys of unconstrained requests stay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<super::constraint::Constraint>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { temperature: 1.0, top_p: 1.0, top_k: None, max_tokens: 256, stop: Vec::new(), seed: None, n: 1, logprobs: None, constraint: None }
    }
}

impl Sampling {
    /// Greedy decoding of at most `max_tokens` tokens.
    pub fn greedy(max_tokens: u32) -> Self {
        Sampling { temperature: 0.0, max_tokens, ..Sampling::default() }
    }
}

/// A request to a teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Model name as the server knows it (HTTP) or empty for the embedded model.
    pub model: String,
    /// The prompt.
    pub prompt: Prompt,
    /// Sampling parameters.
    pub sampling: Sampling,
}

/// Why a choice stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End of sequence token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

/// Log-probability of one generated token, with the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// Its natural-log probability.
    pub logprob: f64,
    /// The most likely tokens at this position with their log-probabilities, best first.
    pub top: Vec<(String, f64)>,
}

/// One generated choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Generated text (stop string excluded).
    pub text: String,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Per-token log-probabilities when requested.
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// A piece of one choice's text, sent while the choice is generated
/// ([`super::Client::complete_streaming`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// Which choice of the request (0-based).
    pub choice: u32,
    /// The text that follows the pieces sent before it.
    pub text: String,
}

/// Where a streaming completion sends its [`Delta`]s. Unbounded: the decode loop never waits
/// for a slow reader. A closed receiver is not an error (the reader went away).
pub type DeltaSender = tokio::sync::mpsc::UnboundedSender<Delta>;

/// Send every choice of `response` as one piece, for clients that cannot stream.
pub fn send_whole(response: &Response, deltas: &DeltaSender) {
    for (i, choice) in response.choices.iter().enumerate() {
        if !choice.text.is_empty() {
            let _ = deltas.send(Delta { choice: i as u32, text: choice.text.clone() });
        }
    }
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens, all choices.
    pub completion_tokens: u64,
}

/// A teacher's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// `n` choices, in order.
    pub choices: Vec<Choice>,
    /// Token counts.
    pub usage: Usage,
}

/// Why a teacher call failed, grouped by who must act.
#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    /// The request or the configuration is wrong; retrying will not help.
    #[error("bad request to {endpoint}: {message}")]
    Spec {
        /// Endpoint or backend name.
        endpoint: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The server failed or could not be reached (after retries when `retryable`).
    #[error("{endpoint} failed{}: {message}{}", status.map(|s| format!(" with HTTP {s}")).unwrap_or_default(), hint.as_ref().map(|h| format!(" — {h}")).unwrap_or_default())]
    External {
        /// Endpoint URL.
        endpoint: String,
        /// HTTP status, when there was one.
        status: Option<u16>,
        /// What happened.
        message: String,
        /// What to try.
        hint: Option<String>,
        /// Whether a retry could succeed (connection errors, timeouts, 429, 5xx).
        retryable: bool,
    },
    /// The reply could not be understood.
    #[error("unexpected reply from {endpoint}: {message}")]
    Data {
        /// Endpoint or backend name.
        endpoint: String,
        /// What was wrong with it.
        message: String,
    },
    /// The embedded model failed (bad model file, out of context, …).
    #[error("model {model}: {message}")]
    Backend {
        /// Model path or name.
        model: String,
        /// What happened and what to do.
        message: String,
    },
    /// This path is not implemented.
    #[error("not implemented: {0}")]
    Unsupported(String),
}
