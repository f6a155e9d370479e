//! labflow: LAB-style alignment (taxonomy-guided synthetic data generation and multi-phase
//! tuning) as a dataflow engine.
//!
//! This crate grows by rooms (see `../shared/docs/ARCHITECTURE.md`): [`taxonomy`] reads and
//! validates the `qna.yaml` tree, [`documents`] resolves, reads and chunks knowledge documents,
//! [`seeds`] turns a leaf (and its chunks) into the Arrow rows a pipeline starts from, and
//! [`store`] turns URLs into object stores; [`teacher`] talks to teacher models and [`serve`]
//! puts any of them behind an OpenAI-compatible HTTP server. [`pipeline`] and [`engine`] generate data,
//! [`mix`] turns it into training mixes, [`train`] tunes a student on them, and [`project`] reads
//! the `lab.yaml` that ties the whole run together. The `labflow` binary (`src/main.rs`,
//! `src/cli/`) is a thin layer over them.
#![warn(missing_docs)]

pub mod backend;
pub mod documents;
pub mod engine;
pub mod mix;
pub mod model;
pub mod operators;
pub mod pipeline;
pub mod project;
pub mod seeds;
pub mod serve;
pub mod store;
pub mod taxonomy;
pub mod teacher;
pub mod train;
