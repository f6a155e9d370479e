//! Errors of the model room: each names the file (or the part of the model) and what is wrong.

use std::path::PathBuf;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model file is not there; the hint says how to get it.
    #[error("model file {path} not found{}", hint.as_ref().map(|h| format!(" — {h}")).unwrap_or_default())]
    NotFound {
        /// The path that was tried.
        path: PathBuf,
        /// How to fetch it, when known.
        hint: Option<String>,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a well-formed GGUF file (bad magic, truncated, inconsistent offsets).
    #[error("{path}: not a valid GGUF file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the byte offset where it applies.
        message: String,
    },
    /// The file is well formed but uses something this crate does not implement (an
    /// architecture, a tensor type, a tokenizer model).
    #[error("{path}: unsupported: {message}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is unsupported and what is supported.
        message: String,
    },
    /// A metadata key or tensor the model needs is missing or has the wrong type or shape.
    #[error("{path}: {message}")]
    Missing {
        /// The file.
        path: PathBuf,
        /// Which key or tensor, and what was expected.
        message: String,
    },
    /// A safetensors file is not well formed (truncated, bad header, inconsistent offsets).
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A JSON file of a model folder (config.json, tokenizer_config.json, the shard index) does
    /// not parse, or a key has the wrong type.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key and the line and column where it applies.
        message: String,
    },
    /// The tokenizer could not be built or failed on an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template could not be parsed or rendered.
    #[error("chat template: {0}")]
    Template(String),
    /// The model's compute threads could not be started.
    #[error("cannot start {threads} compute threads: {message}")]
    Threads {
        /// How many were asked for.
        threads: usize,
        /// The operating system's error.
        message: String,
    },
    /// A forward pass was asked for something impossible (a token id outside the vocabulary,
    /// more positions than the KV cache holds).
    #[error("forward pass: {0}")]
    Input(String),
}
