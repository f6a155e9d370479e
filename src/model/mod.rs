//! The model room: Llama-family language models for inference, shared by the embedded teacher,
//! the trainer and the evaluator (ARCHITECTURE.md invariant 7: one model implementation).
//!
//! A model comes from a GGUF file or a Hugging Face folder. [`gguf`] reads a GGUF file (metadata
//! and tensors); [`safetensors`] reads a folder's weights (`model.safetensors`, or its shards) and
//! [`hf_config`] its `config.json` and `tokenizer_config.json`. [`tokenizer`] rebuilds the
//! byte-level BPE tokenizer from the GGUF metadata or loads the folder's `tokenizer.json`,
//! [`chat_template`] renders the model's own Jinja chat template, and [`llama`] is the forward
//! pass with a KV cache, built from the CPU ops in [`crate::backend::cpu`]. Every piece is checked
//! against llama.cpp in `tests/model_llama_cpp.rs`, and the folder path against the GGUF path and
//! transformers in `tests/model_safetensors.rs`.

pub mod chat_template;
mod error;
pub mod gguf;
pub mod grad;
pub mod hf_config;
mod hf_weights;
pub mod llama;
pub mod safetensors;
pub mod sample;
pub mod tokenizer;

pub use self::safetensors::SafetensorsFolder;
pub use chat_template::ChatTemplate;
pub use error::ModelError;
pub use gguf::GgufFile;
pub use hf_weights::hf_layout;
pub use hf_config::{HfConfig, HfTokenizerConfig};
pub use llama::{Arch, Config, KvCache, KvSpan, Model, Precision, RopeStyle};
pub use tokenizer::Tokenizer;
