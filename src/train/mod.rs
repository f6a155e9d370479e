//! The multi-phase trainer (LAB's second half): full fine-tuning of a Llama-family student on
//! the mixes, phase by phase, on a [`crate::backend::Backend`].
//!
//! - [`recipe`]: the declarative recipe (`pipelines/train/*.yaml`): base model, phases, schedules.
//! - [`data`]: records → samples: chat template, tokens, loss masks, length filter with counts.
//! - [`pack`]: seeded epochs, effective batches, first-fit-decreasing packed minibatches.
//! - [`checkpoint`]: Hugging Face folders and the full state for resume, written so that a
//!   crash never leaves a half-written one taken for whole.
//! - [`run`]: the loop — gradient accumulation with the loss divided by the effective batch's
//!   target count, global-norm clipping, AdamW, warm-up and schedule, held-out loss, checkpoint
//!   choice, metrics and the report.
//!
//! The model math is [`crate::model::grad`] (one model implementation with the teacher); the ops
//! are [`crate::backend::cpu`]'s.

mod base;
pub mod checkpoint;
pub mod data;
pub mod pack;
pub mod recipe;
mod report;
pub mod run;

pub use recipe::Recipe;
pub use report::{PhaseReport, TrainReport};
pub use run::{fingerprint, train, OnChange, Progress, TrainJob};

use crate::mix::MixError;
use crate::model::ModelError;
use crate::store::dataset::DatasetError;

/// A training run that cannot go on: what and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The base model or a checkpoint could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A data file could not be read.
    #[error(transparent)]
    Data(#[from] MixError),
    /// An output file could not be written or read.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A checkpoint or state is unusable.
    #[error("{0}")]
    Checkpoint(String),
    /// The recipe and what is on disk disagree, or a phase has nothing to train.
    #[error("{0}")]
    Plan(String),
}
