//! The model a run starts from, with what every checkpoint needs beside the weights: its
//! tokenizer and chat template (for rendering samples), the tokenizer files a checkpoint folder
//! carries, and the configuration `config.json` is written from.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::data::Renderer;
use super::recipe::{Base, RandomBase};
use super::TrainError;
use crate::backend::Backend;
use crate::model::grad::Trainable;
use crate::model::{hf_layout, Arch, ChatTemplate, Config, GgufFile, Model, ModelError, RopeStyle, Tokenizer};

/// Files copied from a Hugging Face base folder into every checkpoint, where present.
const HF_TOKENIZER_FILES: [&str; 5] = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja"];

/// A loaded base.
pub struct Loaded<B: Backend> {
    /// The weights on the backend.
    pub model: Trainable<B>,
    /// Renders records for this model.
    pub renderer: Renderer,
    /// `(file name, bytes)` written into every checkpoint folder.
    pub tokenizer_files: Vec<(String, Vec<u8>)>,
    /// BOS and EOS ids for `config.json`.
    pub bos_eos: (Option<u32>, Option<u32>),
    /// What it was, for the report.
    pub description: String,
}

/// `path` resolved against the recipe's folder when relative.
pub fn resolve(path: &str, dir: Option<&Path>) -> PathBuf {
    let p = Path::new(path);
    match dir {
        Some(d) if p.is_relative() && !path.contains("://") => d.join(p),
        _ => p.to_path_buf(),
    }
}

fn missing_model(path: &Path) -> TrainError {
    TrainError::Plan(format!(
        "base model {} does not exist; `bash models/fetch.sh` fetches the default SmolLM2 GGUF, and tests/reference/safetensors_fixture.py makes Hugging Face folders from it",
        path.display()
    ))
}

/// Tokenizer, chat template and the checkpoint's tokenizer files of a model file or folder.
fn tokenizer_of(path: &Path) -> Result<(Tokenizer, ChatTemplate, Vec<(String, Vec<u8>)>), TrainError> {
    if !path.exists() {
        return Err(missing_model(path));
    }
    if path.is_dir() {
        let tok = Tokenizer::from_hf_folder(path)?;
        let template = ChatTemplate::from_hf_folder(path)?;
        let mut files = Vec::new();
        for name in HF_TOKENIZER_FILES {
            let p = path.join(name);
            if p.is_file() {
                let bytes = std::fs::read(&p).map_err(|e| ModelError::Io { path: p.clone(), source: e })?;
                files.push((name.to_string(), bytes));
            }
        }
        return Ok((tok, template, files));
    }
    let f = GgufFile::open(path)?;
    let tok = Tokenizer::from_gguf(&f)?;
    let template = ChatTemplate::from_gguf(&f)?;
    let text = |id: Option<u32>| id.and_then(|i| tok.token(i));
    let config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": template.source(),
        "bos_token": text(tok.bos_id()),
        "eos_token": text(tok.eos_id()),
        "model_max_length": f.get("llama.context_length").and_then(|v| v.as_u64()).unwrap_or(8192),
    });
    let files = vec![
        ("tokenizer.json".to_string(), tok.to_json()?.into_bytes()),
        ("tokenizer_config.json".to_string(), serde_json::to_vec_pretty(&config).expect("invariant: JSON values serialise")),
    ];
    Ok((tok, template, files))
}

/// Loads the recipe's base onto `backend`.
pub fn load<B: Backend>(backend: &B, base: &Base, dir: Option<&Path>, seed: u64) -> Result<Loaded<B>, TrainError> {
    match base {
        Base::Model(p) => {
            let path = resolve(p, dir);
            let (tok, template, tokenizer_files) = tokenizer_of(&path)?;
            let model = Model::load(&path)?;
            let bos_eos = (tok.bos_id(), tok.eos_id());
            let model = Trainable::from_model(backend, &model)?;
            Ok(Loaded { model, renderer: Renderer::new(template, tok), tokenizer_files, bos_eos, description: path.display().to_string() })
        }
        Base::Random(r) => {
            let path = resolve(&r.tokenizer, dir);
            let (tok, template, tokenizer_files) = tokenizer_of(&path)?;
            let config = random_config(r, tok.vocab_size());
            let tensors = random_weights(&config, seed);
            let bos_eos = (tok.bos_id(), tok.eos_id());
            let model = Trainable::from_tensors(backend, config, true, &tensors)?;
            let description = format!("random llama (hidden {}, {} layers, tokenizer of {})", r.hidden, r.layers, path.display());
            Ok(Loaded { model, renderer: Renderer::new(template, tok), tokenizer_files, bos_eos, description })
        }
    }
}

fn random_config(r: &RandomBase, vocab_size: usize) -> Config {
    Config {
        arch: Arch::Llama,
        vocab_size,
        hidden: r.hidden,
        n_layers: r.layers,
        n_heads: r.heads,
        n_kv_heads: r.kv_heads,
        head_dim: r.hidden / r.heads,
        ffn: r.ffn,
        rope_base: 10_000.0,
        rope_dims: r.hidden / r.heads,
        rope_style: RopeStyle::HalfSplit,
        rms_eps: 1e-5,
        context_length: 8192,
    }
}

/// Weights as transformers initialises a Llama: normal(0, 0.02) matrices, unit norms.
fn random_weights(c: &Config, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    hf_layout(c, true)
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            if name.ends_with("norm.weight") {
                return vec![1.0; n];
            }
            (0..n)
                .map(|_| {
                    // Box–Muller from two uniforms in (0, 1].
                    let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
                    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * 0.02) as f32
                })
                .collect()
        })
        .collect()
}
