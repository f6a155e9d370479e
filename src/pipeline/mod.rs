//! Pipelines: the declarative spec, prompt templates, and compiling a spec into a validated plan.
//!
//! A pipeline file (`pipelines/<set>/<kind>.yaml`) names its steps; [`load`] reads it (with its
//! prompt files) into a [`plan::Plan`] whose every step is a built, schema-checked operator, or
//! refuses it with file:line and the key path. [`ilab`] reads InstructLab's own pipeline files
//! (`--pipeline ilab:DIR`) into the same plans; the default pipelines are compiled in
//! ([`builtin`]). Nothing here runs anything (ARCHITECTURE.md).

pub mod builtin;
pub mod ilab;
pub mod load;
pub mod plan;
pub mod prompt;
pub mod registry;
pub mod spec;

pub use builtin::Builtin;
pub use load::{load, DirSource, PipelineError, Source};
pub use plan::{Plan, PlanStep};

use crate::taxonomy::LeafKind;
use arrow::datatypes::SchemaRef;

/// The columns of a leaf's seed rows, by kind, as the reference names them (so its prompt
/// files render unchanged): [`crate::seeds::schema`].
pub fn seed_schema(kind: LeafKind) -> SchemaRef {
    crate::seeds::schema(kind)
}
