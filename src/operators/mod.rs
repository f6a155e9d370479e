//! Operators: the steps of a pipeline, one file each, as pure functions over Arrow batches.
//!
//! An operator never talks to a model or a store itself (ARCHITECTURE.md): the engine
//! (`engine/`) feeds it batches and, for the steps that need a teacher, sends the calls the
//! operator asks for and hands the answers back. Three shapes cover every step:
//!
//! - [`Transform`]: a batch in, a batch out, no teacher (`filter`, `columns`, `rules`). Runs as
//!   soon as a batch arrives.
//! - [`Aggregate`]: sees every row of one leaf at once (`dedup`, `sample`/`limit`); the engine runs
//!   it when the leaf is complete upstream, the only place a step waits (invariant 1).
//! - [`TeacherStep`]: one input row → some teacher calls → 0..k output rows (`generate`,
//!   `critique`). The engine sends the calls concurrently with everything else in flight.
//!
//! Every batch holds rows of one leaf. Every row carries the engine column [`ROW_ID`], a stable
//! lineage id (`0003.0001.0000`: seed 3, choice 1, item 0) that orders a leaf's rows the same way
//! on every run, whatever order the teacher answered in, and seeds each row's calls. A row an
//! operator drops is a [`Reject`] with a reason (invariant 5), never an `Err`: errors are for a
//! wrong pipeline or a broken invariant.

pub mod batch;
pub mod columns;
pub mod config;
pub mod critique;
pub mod dedup;
pub mod filter;
pub mod generate;
pub mod limit;
pub mod parse;
pub mod rules;
pub mod sample;

use crate::teacher::{Prompt, Request, Response, TeacherError};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

/// The engine column every row carries: its lineage id, zero-padded dot-separated counters.
pub const ROW_ID: &str = "_id";

/// A row an operator dropped, by its index in the operator's input batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Index of the row in the input batch.
    pub row: usize,
    /// Why it was dropped, for a person: `score 1 < 2 (column pair_score)`.
    pub reason: String,
}

/// What an operator made of one input batch (or, for a [`TeacherStep`], one input row).
#[derive(Debug, Clone)]
pub struct Output {
    /// Rows passed on, in the operator's output schema.
    pub rows: RecordBatch,
    /// Rows dropped, indexed into the input batch.
    pub rejects: Vec<Reject>,
}

/// A wrong pipeline, or a batch that does not fit the plan; ends the run (a bad *row* is a
/// [`Reject`] instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The operator's configuration is wrong: what to change.
    #[error("operator `{operator}`: {message}")]
    Spec {
        /// Operator name in the pipeline.
        operator: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The input lacks a column the operator needs, or has the wrong type.
    #[error("operator `{operator}`: {message}")]
    Schema {
        /// Operator name in the pipeline.
        operator: String,
        /// Which column, what was expected and found.
        message: String,
    },
    /// An Arrow kernel failed; a bug in labflow.
    #[error("operator `{operator}`: internal error: {message}")]
    Internal {
        /// Operator name in the pipeline.
        operator: String,
        /// The kernel's message.
        message: String,
    },
}

impl OpError {
    /// Wrap an Arrow error as internal, naming the operator.
    pub fn arrow(operator: &str, e: arrow::error::ArrowError) -> OpError {
        OpError::Internal { operator: operator.to_string(), message: e.to_string() }
    }
    /// A schema mismatch in `operator`.
    pub fn schema(operator: &str, message: impl Into<String>) -> OpError {
        OpError::Schema { operator: operator.to_string(), message: message.into() }
    }
    /// A configuration error in `operator`.
    pub fn spec(operator: &str, message: impl Into<String>) -> OpError {
        OpError::Spec { operator: operator.to_string(), message: message.into() }
    }
}

/// A batch-at-a-time step with no teacher.
pub trait Transform: Send + Sync {
    /// The output schema for `input`, or why `input` does not fit (checked when the plan is built).
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError>;
    /// Apply to one batch.
    fn apply(&self, batch: &RecordBatch) -> Result<Output, OpError>;
}

/// A step over all rows of one leaf.
pub trait Aggregate: Send + Sync {
    /// The output schema for `input`, or why `input` does not fit.
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError>;
    /// Apply to every row of one leaf, sorted by [`ROW_ID`].
    fn finish(&self, rows: &RecordBatch) -> Result<Output, OpError>;
}

/// One thing a [`TeacherStep`] asks of the teacher.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// Generate `request.sampling.n` completions.
    Complete(Request),
    /// Score each label as a continuation of the prompt (log-probability), for judges.
    Score {
        /// The judge prompt.
        prompt: Prompt,
        /// The label texts, e.g. `["YES", "NO"]`.
        labels: Vec<String>,
    },
}

/// The teacher's answer to one [`Call`], in the same position.
#[derive(Debug)]
pub enum Answer {
    /// Answer to [`Call::Complete`].
    Complete(Result<Response, TeacherError>),
    /// Answer to [`Call::Score`]: one log-probability per label.
    Score(Result<Vec<f64>, TeacherError>),
}

/// What a [`TeacherStep`] wants for one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Calls {
    /// Send these calls; their answers come back to `assemble` in this order.
    Send(Vec<Call>),
    /// Drop the row with this reason, calling nothing.
    Reject(String),
}

/// What a step's calls cost, per input row, for `explain` and `--dry-run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallCost {
    /// Teacher requests per input row.
    pub requests: u64,
    /// Completions (choices) per input row, summed over its requests.
    pub completions: u64,
}

/// A step that calls the teacher for each row.
pub trait TeacherStep: Send + Sync {
    /// The output schema for `input`, or why `input` does not fit.
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError>;
    /// The calls for row `row` of `batch`, or a reason to reject the row without a call (e.g. a
    /// prompt that cannot render because a value is missing).
    fn calls(&self, batch: &RecordBatch, row: usize) -> Result<Calls, OpError>;
    /// Build the output rows for row `row` from the answers to its calls, in call order. A failed
    /// call or an unparseable completion is a reject of that row, not an error.
    fn assemble(&self, batch: &RecordBatch, row: usize, answers: Vec<Answer>) -> Result<Output, OpError>;
    /// What the calls of one row cost.
    fn cost(&self) -> CallCost;
    /// How many completions in `answers` could not be parsed (counted in the run summary, so a
    /// teacher that ignores the format shows at once). Default: none.
    fn unparsed(&self, _answers: &[Answer]) -> u64 {
        0
    }
}

/// A built operator, ready for the engine.
#[derive(Clone)]
pub enum Operator {
    /// See [`Transform`].
    Transform(std::sync::Arc<dyn Transform>),
    /// See [`Aggregate`].
    Aggregate(std::sync::Arc<dyn Aggregate>),
    /// See [`TeacherStep`].
    Teacher(std::sync::Arc<dyn TeacherStep>),
}

impl Operator {
    /// The output schema for `input`.
    pub fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        match self {
            Operator::Transform(t) => t.schema_out(input),
            Operator::Aggregate(a) => a.schema_out(input),
            Operator::Teacher(t) => t.schema_out(input),
        }
    }
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operator::Transform(_) => "Transform",
            Operator::Aggregate(_) => "Aggregate",
            Operator::Teacher(_) => "Teacher",
        })
    }
}

/// What building an operator may need from the pipeline around it.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// `--scale`: samples per seed wherever a step says `n: scaled`.
    pub scale: u32,
    /// The pipeline's sampling defaults, which a step's own `sampling` keys override.
    pub sampling: crate::teacher::Sampling,
    /// Base seed of the run; each row's calls are seeded from it and the row's lineage id.
    pub seed: u64,
    /// A cap on every teacher step's `max_tokens` (`--max-tokens`, for smoke runs).
    pub max_tokens: Option<u32>,
}

impl BuildContext {
    /// `sampling` with the run's cap on `max_tokens` applied.
    pub fn capped(&self, mut sampling: crate::teacher::Sampling) -> crate::teacher::Sampling {
        if let Some(cap) = self.max_tokens {
            sampling.max_tokens = sampling.max_tokens.min(cap);
        }
        sampling
    }
}

impl Default for BuildContext {
    fn default() -> Self {
        BuildContext { scale: 1, sampling: crate::teacher::Sampling::default(), seed: 42, max_tokens: None }
    }
}

/// An operator's configuration (the step's keys besides `name`, `op` and `input`, deserialised
/// with `deny_unknown_fields`), which builds the operator, validated up front.
pub trait Step: serde::de::DeserializeOwned {
    /// The `op:` name in pipeline files.
    const KIND: &'static str;
    /// Build the operator named `name`; a wrong configuration is an [`OpError::Spec`].
    fn build(self, name: &str, ctx: &BuildContext) -> Result<Operator, OpError>;
}
