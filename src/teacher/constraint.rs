//! Decoding constraints: the output format a step expects, given to the teacher so that it can
//! only write text the step's parser accepts (structured generation).
//!
//! A [`Constraint`] travels inside [`crate::teacher::Sampling`], so it is part of the request (and
//! of the response cache's key). Every kind reduces to one regular expression over the whole
//! completion ([`Constraint::regex`]):
//! - the embedded teacher compiles it into a token-level automaton ([`automaton`]) and masks
//!   every token that cannot continue a matching completion;
//! - HTTP teachers send it in the dialect the server understands ([`Dialect`]): vLLM's
//!   `guided_*` fields (also what `labflow serve` reads), llama.cpp's `grammar` (GBNF, from
//!   [`gbnf`]) or `json_schema`, OpenAI's `response_format` (JSON schemas only); with none it is
//!   not sent, and the step parses and rejects as before.
//!
//! Operators build constraints from their parse specs (`operators::parse`); this module knows
//! nothing of pipelines.

pub mod automaton;
pub mod gbnf;
pub mod json_schema;

pub use automaton::{Allowed, TokenAutomaton, Vocabulary};

use serde::{Deserialize, Serialize};

/// What the whole completion must look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    /// A regular expression (Rust `regex` syntax, `.` matches newlines) the whole completion
    /// matches, anchored at both ends. No look-around or word boundaries: a constraint must be a
    /// plain regular language.
    Regex(String),
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// A JSON value valid under this schema; the subset [`json_schema`] supports.
    JsonSchema(serde_json::Value),
}

/// Why a constraint cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConstraintError {
    /// The regex or schema is malformed, or uses a feature constraints cannot express.
    #[error("constraint: {0}")]
    Invalid(String),
    /// Its automaton would exceed the size limit.
    #[error("constraint too large to compile ({0}); simplify it: fewer counted repetitions, shorter alternations")]
    TooLarge(String),
}

impl Constraint {
    /// The regex every completion must match in full.
    pub fn regex(&self) -> Result<String, ConstraintError> {
        match self {
            Constraint::Regex(r) => Ok(r.clone()),
            Constraint::Choice(labels) if labels.is_empty() => Err(ConstraintError::Invalid("a choice among no labels".into())),
            Constraint::Choice(labels) => Ok(choice_regex(labels)),
            Constraint::JsonSchema(schema) => json_schema::to_regex(schema),
        }
    }

    /// Checks the constraint without compiling it, and returns its regex: the regex parses and
    /// uses only what a constraint can express, the schema stays in the supported subset. A
    /// server calls this to refuse a malformed constraint at once, naming the field it came in;
    /// only the size limit ([`ConstraintError::TooLarge`]) waits for [`TokenAutomaton::compile`].
    pub fn check(&self) -> Result<String, ConstraintError> {
        let regex = self.regex()?;
        automaton::check_syntax(&regex)?;
        Ok(regex)
    }

    /// A short description for reject reasons and logs.
    pub fn describe(&self) -> String {
        match self {
            Constraint::Regex(r) => format!("/{r}/"),
            Constraint::Choice(labels) => format!("one of {}", labels.join(", ")),
            Constraint::JsonSchema(_) => "JSON under a schema".into(),
        }
    }
}

/// `(?:a|b|…)` with every label escaped.
pub fn choice_regex(labels: &[String]) -> String {
    format!("(?:{})", labels.iter().map(|l| regex_syntax::escape(l)).collect::<Vec<_>>().join("|"))
}

/// How an HTTP server takes a constraint (`constraints=` in the teacher spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// Not sent: the server's output is parsed and rejected as it comes.
    #[default]
    None,
    /// vLLM's `guided_regex` / `guided_choice` / `guided_json` (also `labflow serve`).
    Vllm,
    /// llama.cpp's server (llama-server or llama-cpp-python's): `grammar` (GBNF) for every
    /// constraint, schemas as the grammar of their regex.
    LlamaCpp,
    /// OpenAI's `response_format: {type: json_schema}`: JSON schemas only.
    Openai,
}

impl std::str::FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Dialect, String> {
        match s {
            "none" => Ok(Dialect::None),
            "vllm" | "labflow" => Ok(Dialect::Vllm),
            "llama.cpp" | "llamacpp" | "llama-cpp" => Ok(Dialect::LlamaCpp),
            "openai" => Ok(Dialect::Openai),
            other => Err(format!("unknown constraint dialect {other:?}; use one of none, vllm (or labflow), llama.cpp, openai")),
        }
    }
}

#[cfg(test)]
mod tests;
