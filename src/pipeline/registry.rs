//! The operator kinds a pipeline step may name (`op:`), and building one from its keys.

use crate::operators::{critique, generate, BuildContext, OpError, Operator};
use crate::pipeline::load::build_step;
use serde_json::Value;

/// Why a step could not be built.
#[derive(Debug)]
pub enum StepError {
    /// `op:` names no operator; the known ones.
    UnknownKind(Vec<&'static str>),
    /// The step's keys do not fit the operator's config, at this JSON pointer inside the step.
    Config {
        /// Pointer relative to the step (`/parse/regex`).
        pointer: String,
        /// serde's message.
        message: String,
    },
    /// The config was read but is not valid.
    Build(OpError),
}

/// Every operator kind, as pipeline files name them.
pub const KINDS: &[&str] = &["generate", "critique"];

/// Build the step `name` of kind `kind` from its keys.
pub fn build(kind: &str, name: &str, config: Value, ctx: &BuildContext) -> Result<Operator, StepError> {
    match kind {
        "generate" => build_step::<generate::Config>(name, config, ctx),
        "critique" => build_step::<critique::Config>(name, config, ctx),
        _ => Err(StepError::UnknownKind(KINDS.to_vec())),
    }
}
