//! The operator kinds a pipeline step may name (`op:`), and building one from its keys.

use crate::operators::columns::{combine, drop, duplicate, flatten, majority, rename, select, template};
use crate::operators::{critique, dedup, filter, generate, iterate, limit, rules, sample, BuildContext, OpError, Operator, Step};
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

type Builder = fn(&str, Value, &BuildContext) -> Result<Operator, StepError>;

fn entry<T: Step>() -> (&'static str, Builder) {
    (T::KIND, build_step::<T>)
}

/// Every operator kind with its builder, in the order `explain` and errors list them.
fn table() -> [(&'static str, Builder); 16] {
    [
        entry::<generate::Config>(),
        entry::<critique::Config>(),
        entry::<iterate::Config>(),
        entry::<filter::Config>(),
        entry::<rules::Config>(),
        entry::<dedup::Config>(),
        entry::<sample::Config>(),
        entry::<limit::Config>(),
        entry::<combine::Config>(),
        entry::<duplicate::Config>(),
        entry::<rename::Config>(),
        entry::<select::Config>(),
        entry::<drop::Config>(),
        entry::<flatten::Config>(),
        entry::<majority::Config>(),
        entry::<template::Config>(),
    ]
}

/// Every operator kind, as pipeline files name them.
pub fn kinds() -> Vec<&'static str> {
    let mut k: Vec<&'static str> = Vec::new();
    for (name, _) in table() {
        if !k.contains(&name) {
            k.push(name);
        }
    }
    k
}

/// Build the step `name` of kind `kind` from its keys.
pub fn build(kind: &str, name: &str, config: Value, ctx: &BuildContext) -> Result<Operator, StepError> {
    match table().into_iter().find(|(k, _)| *k == kind) {
        Some((_, build)) => build(name, config, ctx),
        None => Err(StepError::UnknownKind(kinds())),
    }
}
