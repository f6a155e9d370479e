//! The model room: Llama-family language models for inference, shared by the embedded teacher,
//! the trainer and the evaluator (ARCHITECTURE.md invariant 7: one model implementation).
//!
//! [`gguf`] reads a GGUF file (metadata and tensors), [`tokenizer`] rebuilds the byte-level BPE
//! tokenizer from the GGUF metadata, [`chat_template`] renders the model's own Jinja chat template,
//! and [`llama`] is the forward pass with a KV cache, built from the CPU ops in
//! [`crate::backend::cpu`]. Every piece is checked against llama.cpp in `tests/model_llama_cpp.rs`.

pub mod chat_template;
mod error;
pub mod gguf;
pub mod llama;
pub mod sample;
pub mod tokenizer;

pub use chat_template::ChatTemplate;
pub use error::ModelError;
pub use gguf::GgufFile;
pub use llama::{Config, KvCache, Model, Precision, RopeStyle};
pub use tokenizer::Tokenizer;
