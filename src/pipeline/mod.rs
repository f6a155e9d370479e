//! Pipelines: the declarative spec, prompt templates, and compiling a spec into a validated plan.
//!
//! A pipeline file (`pipelines/<set>/<kind>.yaml`) names its steps; [`load`] reads it (with its
//! prompt files) into a [`plan::Plan`] whose every step is a built, schema-checked operator, or
//! refuses it with file:line and the key path. [`ilab`] reads InstructLab's own pipeline files
//! (`--pipeline ilab:DIR`) into the same plans. Nothing here runs anything (ARCHITECTURE.md).

pub mod ilab;
pub mod load;
pub mod plan;
pub mod prompt;
pub mod registry;
pub mod spec;

pub use load::{load, DirSource, PipelineError, Source};
pub use plan::{Plan, PlanStep};

use crate::operators::batch::text_field;
use crate::operators::ROW_ID;
use crate::taxonomy::LeafKind;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;

/// The columns of a leaf's seed rows, by kind, as the reference names them (so its prompt
/// files render unchanged).
pub fn seed_schema(kind: LeafKind) -> SchemaRef {
    let names: &[&str] = match kind {
        LeafKind::Knowledge => &[
            "domain",
            "document",
            "document_outline",
            "icl_document",
            "icl_query_1",
            "icl_response_1",
            "icl_query_2",
            "icl_response_2",
            "icl_query_3",
            "icl_response_3",
        ],
        LeafKind::GroundedSkill => &["task_description", "seed_context", "seed_question", "seed_response"],
        _ => &["task_description", "seed_question", "seed_response"],
    };
    let mut fields = vec![Field::new(ROW_ID, DataType::Utf8, false)];
    fields.extend(names.iter().map(|n| text_field(n)));
    Arc::new(Schema::new(fields))
}
