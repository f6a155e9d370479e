//! `labflow serve`: an OpenAI-compatible HTTP server over any teacher [`Client`].
//!
//! Endpoints: `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`, with `n`,
//! `seed`, `temperature`, `top_p`, `top_k` (an extension), `max_tokens`, `stop`, log-probabilities,
//! `stream: true` (server-sent events ending in `data: [DONE]`), and decoding constraints
//! (vLLM's `guided_regex` / `guided_choice` / `guided_json`, OpenAI's `response_format` with a
//! JSON schema), which travel to the teacher in its `Sampling`. Requests are parsed in
//! `parse`, answered by the teacher, and rendered in OpenAI's exact shapes in `render`; errors
//! use OpenAI's error object (`error`). The server is a thin layer: sampling, batching and
//! caching belong to the [`Client`] it is given (the embedded model, an upstream HTTP server,
//! either behind the response cache).
//!
//! Streaming is live: the text goes out as the teacher decodes it
//! ([`Client::complete_streaming`]; the embedded model sends pieces from its decode loop, other
//! clients whole choices as each is done), see `live`. With log-probabilities the answer is
//! completed first and then sent one token per chunk, each with its log-probabilities.
//!
//! It binds 127.0.0.1 unless told otherwise; see [`exposure_warning`]. With
//! [`ServeOptions::access_log`] it appends one JSON line per request ([`access_log`]).
//!
//! [`Client`]: crate::teacher::Client
//! [`Client::complete_streaming`]: crate::teacher::Client::complete_streaming

pub mod access_log;
mod error;
mod listen;
mod live;
mod parse;
mod render;
mod router;

pub use error::{ApiError, ServeError};
pub use listen::{bind, exposure_warning, is_loopback, serve, serve_on, ServeOptions};
pub use router::router;
