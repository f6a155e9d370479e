//! The JSON files of a Hugging Face model folder, each as two types: the serde mirror of the file
//! ([`HfConfig`] for `config.json`, [`HfTokenizerConfig`] for `tokenizer_config.json`) and what
//! this crate resolves from it ([`Config`] via [`HfConfig::into_config`]; special tokens and the
//! chat template via [`HfTokenizerConfig`]'s accessors).
//!
//! The mirrors do not deny unknown keys: transformers writes dozens that do not change inference
//! (`torch_dtype`, `initializer_range`, `transformers_version`, …) and adds more with every
//! release. What would change the arithmetic (rope scaling, sliding windows, extra biases, another
//! activation) is read and refused by name instead. Both transformers 4 (`rope_theta`,
//! `rope_scaling`) and 5 (`rope_parameters`) spellings are read.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::llama::{Arch, Config, RopeStyle};
use super::ModelError;

/// `config.json`: the keys the Llama-family forward pass depends on.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HfConfig {
    /// `model_type`, e.g. `llama` or `qwen2`.
    pub model_type: Option<String>,
    /// `architectures`, e.g. `["LlamaForCausalLM"]`; used when `model_type` is absent.
    pub architectures: Option<Vec<String>>,
    /// Vocabulary size `V` (rows of the embedding).
    pub vocab_size: Option<usize>,
    /// Hidden size `C`.
    pub hidden_size: Option<usize>,
    /// Feed-forward size `F`.
    pub intermediate_size: Option<usize>,
    /// Number of blocks.
    pub num_hidden_layers: Option<usize>,
    /// Query heads `H`.
    pub num_attention_heads: Option<usize>,
    /// Key/value heads (default: `num_attention_heads`).
    pub num_key_value_heads: Option<usize>,
    /// Head size (default: `hidden_size / num_attention_heads`).
    pub head_dim: Option<usize>,
    /// Context length (default: transformers' per-architecture default).
    pub max_position_embeddings: Option<usize>,
    /// RMSNorm epsilon (default 1e-6, as transformers).
    pub rms_norm_eps: Option<f64>,
    /// Rope base, transformers 4 spelling.
    pub rope_theta: Option<f64>,
    /// Rope scaling, transformers 4 spelling; anything but `null` is refused.
    pub rope_scaling: Option<Value>,
    /// Rope parameters, transformers 5 spelling: `{"rope_theta": …, "rope_type": "default"}`.
    pub rope_parameters: Option<Value>,
    /// Whether the LM head is the token embedding (default false, as transformers).
    pub tie_word_embeddings: Option<bool>,
    /// Activation of the gated FFN; only `silu` is implemented.
    pub hidden_act: Option<String>,
    /// Llama: biases on all four attention projections (refused when true).
    pub attention_bias: Option<bool>,
    /// Llama: biases on the FFN projections (refused when true).
    pub mlp_bias: Option<bool>,
    /// Qwen2: sliding-window attention (refused when true).
    pub use_sliding_window: Option<bool>,
    /// Qwen2 (transformers 5): the attention kind per layer; only `full_attention` runs.
    pub layer_types: Option<Vec<String>>,
    /// Beginning-of-sequence id (an integer, a list, or null).
    pub bos_token_id: Option<Value>,
    /// End-of-sequence id(s) (an integer, a list, or null).
    pub eos_token_id: Option<Value>,
}

impl HfConfig {
    /// Reads and parses `config.json` at `path`.
    pub fn read(path: &Path) -> Result<HfConfig, ModelError> {
        read_json(path)
    }

    /// The first id of `bos_token_id`.
    pub fn bos_id(&self) -> Option<u32> {
        first_id(self.bos_token_id.as_ref())
    }

    /// The first id of `eos_token_id`.
    pub fn eos_id(&self) -> Option<u32> {
        first_id(self.eos_token_id.as_ref())
    }

    /// Resolves and checks the configuration; `path` (the `config.json`) is named in errors.
    ///
    /// Hugging Face checkpoints keep `q_proj`/`k_proj` in their own layout, whose rope rotates
    /// dimension `i` with `i + D/2` ([`RopeStyle::HalfSplit`]), for llama as for qwen2. (GGUF
    /// `llama` files differ only because the converter permutes those rows; see
    /// [`crate::backend::cpu::rope`].)
    pub fn into_config(self, path: &Path) -> Result<Config, ModelError> {
        let missing = |key: &str, what: &str| ModelError::Missing {
            path: path.to_path_buf(),
            message: format!("key {key:?} is missing; it must be {what} (transformers writes it with the model)"),
        };
        let bad = |message: String| ModelError::Missing { path: path.to_path_buf(), message };
        let unsupported = |message: String| ModelError::Unsupported { path: path.to_path_buf(), message };

        let (arch_name, key) = match (&self.model_type, self.architectures.as_deref()) {
            (Some(t), _) => (t.clone(), "model_type"),
            (None, Some([first, ..])) => match first.as_str() {
                "LlamaForCausalLM" => ("llama".to_string(), "architectures"),
                "Qwen2ForCausalLM" => ("qwen2".to_string(), "architectures"),
                other => (other.to_string(), "architectures"),
            },
            (None, _) => return Err(missing("model_type", "the architecture name (llama or qwen2)")),
        };
        let arch = match arch_name.as_str() {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => return Err(unsupported(format!("architecture {other:?} (key {key:?}); supported: llama, qwen2"))),
        };

        let hidden = self.hidden_size.ok_or_else(|| missing("hidden_size", "an unsigned integer"))?;
        let n_layers = self.num_hidden_layers.ok_or_else(|| missing("num_hidden_layers", "an unsigned integer"))?;
        let n_heads = self.num_attention_heads.ok_or_else(|| missing("num_attention_heads", "an unsigned integer"))?;
        let ffn = self.intermediate_size.ok_or_else(|| missing("intermediate_size", "an unsigned integer"))?;
        let vocab_size = self.vocab_size.ok_or_else(|| missing("vocab_size", "an unsigned integer"))?;
        let n_kv_heads = self.num_key_value_heads.unwrap_or(n_heads);
        if hidden == 0 || n_layers == 0 || ffn == 0 || vocab_size == 0 {
            return Err(bad(format!(
                "hidden_size {hidden}, num_hidden_layers {n_layers}, intermediate_size {ffn} and vocab_size {vocab_size} must all be positive"
            )));
        }
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(bad(format!(
                "inconsistent heads: num_attention_heads {n_heads}, num_key_value_heads {n_kv_heads} (must divide it)"
            )));
        }
        let head_dim = match self.head_dim {
            Some(d) => d,
            None if hidden % n_heads == 0 => hidden / n_heads,
            None => {
                return Err(bad(format!("hidden_size {hidden} is not a multiple of num_attention_heads {n_heads} and head_dim is absent")))
            }
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(bad(format!("head_dim {head_dim} must be even and positive (rope rotates pairs)")));
        }

        if let Some(act) = self.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(unsupported(format!("hidden_act {act:?}; supported: silu")));
        }
        if arch == Arch::Llama && self.attention_bias == Some(true) {
            return Err(unsupported("attention_bias: true (biases on the llama attention projections)".into()));
        }
        if self.mlp_bias == Some(true) {
            return Err(unsupported("mlp_bias: true (biases on the FFN projections)".into()));
        }
        if self.use_sliding_window == Some(true) {
            return Err(unsupported("use_sliding_window: true (sliding-window attention)".into()));
        }
        if let Some(kind) = self.layer_types.iter().flatten().find(|t| *t != "full_attention") {
            return Err(unsupported(format!("layer_types holds {kind:?}; only full_attention layers run")));
        }

        let rope_base = rope_base(&self, path)?;
        // transformers' defaults when the key is absent.
        let context_length = self.max_position_embeddings.unwrap_or(match arch {
            Arch::Llama => 2048,
            Arch::Qwen2 => 32768,
        });
        Ok(Config {
            arch,
            vocab_size,
            hidden,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn,
            rope_base,
            rope_dims: head_dim,
            rope_style: RopeStyle::HalfSplit,
            rms_eps: self.rms_norm_eps.unwrap_or(1e-6) as f32,
            context_length,
        })
    }
}

/// The rope base from either spelling; any scaling is refused (the forward pass has none).
fn rope_base(c: &HfConfig, path: &Path) -> Result<f32, ModelError> {
    let unsupported = |message: String| ModelError::Unsupported { path: path.to_path_buf(), message };
    let bad = |message: String| ModelError::Missing { path: path.to_path_buf(), message };
    if let Some(s) = c.rope_scaling.as_ref().filter(|v| !v.is_null()) {
        return Err(unsupported(format!("rope_scaling {s}; only unscaled rope runs")));
    }
    let mut base = c.rope_theta;
    if let Some(p) = c.rope_parameters.as_ref().filter(|v| !v.is_null()) {
        let obj = p.as_object().ok_or_else(|| bad(format!("key \"rope_parameters\" must be an object; found {p}")))?;
        if let Some(kind) = obj.get("rope_type").filter(|t| t.as_str() != Some("default")) {
            return Err(unsupported(format!("rope_parameters.rope_type {kind}; only \"default\" runs")));
        }
        if let Some(t) = obj.get("rope_theta") {
            base = Some(t.as_f64().ok_or_else(|| bad(format!("key \"rope_parameters.rope_theta\" must be a number; found {t}")))?);
        }
    }
    let base = base.unwrap_or(10_000.0);
    if !(base > 0.0 && base.is_finite()) {
        return Err(bad(format!("rope theta {base} must be a positive number")));
    }
    Ok(base as f32)
}

/// `tokenizer_config.json`: the special tokens and the chat template.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HfTokenizerConfig {
    /// The chat template: a Jinja string, or a list of `{name, template}` (the one named
    /// `default` is used).
    pub chat_template: Option<Value>,
    /// The BOS token: its text, or an added-token object with `content`.
    pub bos_token: Option<Value>,
    /// The EOS token: its text, or an added-token object with `content`.
    pub eos_token: Option<Value>,
}

impl HfTokenizerConfig {
    /// Reads and parses `tokenizer_config.json` at `path`.
    pub fn read(path: &Path) -> Result<HfTokenizerConfig, ModelError> {
        read_json(path)
    }

    /// The BOS token's text.
    pub fn bos_text(&self) -> Option<&str> {
        token_text(self.bos_token.as_ref())
    }

    /// The EOS token's text.
    pub fn eos_text(&self) -> Option<&str> {
        token_text(self.eos_token.as_ref())
    }

    /// The chat template's source, when there is one; `path` is named in errors.
    pub fn chat_template(&self, path: &Path) -> Result<Option<String>, ModelError> {
        let bad = |found: &Value| ModelError::Missing {
            path: path.to_path_buf(),
            message: format!(
                "key \"chat_template\" must be a string or a list of {{\"name\", \"template\"}} with one named \"default\"; found {}",
                short(found)
            ),
        };
        match &self.chat_template {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v @ Value::Array(items)) => items
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| bad(v)),
            Some(other) => Err(bad(other)),
        }
    }
}

fn token_text(v: Option<&Value>) -> Option<&str> {
    match v? {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("content").and_then(Value::as_str),
        _ => None,
    }
}

fn first_id(v: Option<&Value>) -> Option<u32> {
    let v = match v? {
        Value::Array(a) => a.first()?,
        other => other,
    };
    v.as_u64().and_then(|i| u32::try_from(i).ok())
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}…", &s[..s.char_indices().nth(80).map_or(s.len(), |(i, _)| i)])
    } else {
        s
    }
}

/// Reads a JSON file of a model folder; a missing file is [`ModelError::NotFound`] naming it,
/// a syntax or type error names the key and the line.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = read_file(path)?;
    let de = &mut serde_json::Deserializer::from_slice(&text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        let message = match e.inner().classify() {
            serde_json::error::Category::Data if at != "." => format!("key {at:?}: {}", e.inner()),
            serde_json::error::Category::Data => e.inner().to_string(),
            _ => format!("not valid JSON: {}", e.inner()),
        };
        ModelError::Json { path: path.to_path_buf(), message }
    })
}

/// Reads a whole file of a model folder; a missing one is [`ModelError::NotFound`] with a hint
/// listing what a folder holds.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ModelError::NotFound { path: path.to_path_buf(), hint: Some(FOLDER_HINT.to_string()) }
        } else {
            ModelError::Io { path: path.to_path_buf(), source }
        }
    })
}

/// What a Hugging Face model folder must hold, named in errors about a missing file.
pub const FOLDER_HINT: &str = "a Hugging Face model folder holds config.json, model.safetensors (or model.safetensors.index.json \
     and the shards it names), tokenizer.json and tokenizer_config.json";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, ModelError> {
        let c: HfConfig = serde_json::from_str(json).expect("mirror parses");
        c.into_config(Path::new("config.json"))
    }

    const SMOL: &str = r#"{"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
        "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16"}"#;

    #[test]
    fn resolves_llama_with_defaults() {
        let c = parse(SMOL).expect("resolves");
        assert_eq!((c.arch, c.n_layers, c.hidden, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn), (Arch::Llama, 30, 576, 9, 3, 64, 1536));
        assert_eq!((c.rope_base, c.rope_dims, c.rope_style, c.context_length), (100_000.0, 64, RopeStyle::HalfSplit, 8192));
        let v5 = SMOL.replace(r#""rope_theta": 100000.0"#, r#""rope_parameters": {"rope_theta": 5e5, "rope_type": "default"}"#);
        assert_eq!(parse(&v5).expect("v5").rope_base, 500_000.0);
    }

    #[test]
    fn missing_and_unsupported_keys_are_named() {
        let e = parse(&SMOL.replace(r#""hidden_size": 576,"#, "")).expect_err("missing").to_string();
        assert!(e.contains("config.json") && e.contains("\"hidden_size\" is missing"), "{e}");
        let e = parse(&SMOL.replace("\"llama\"", "\"gemma2\"")).expect_err("arch").to_string();
        assert!(e.contains("unsupported") && e.contains("gemma2") && e.contains("llama, qwen2"), "{e}");
        let e = parse(&SMOL.replace("\"rope_theta\": 100000.0", "\"rope_scaling\": {\"rope_type\": \"llama3\"}")).expect_err("scaling");
        assert!(e.to_string().contains("rope_scaling"), "{e}");
        let e = parse(&SMOL.replace("\"num_key_value_heads\": 3", "\"num_key_value_heads\": 4")).expect_err("heads").to_string();
        assert!(e.contains("num_key_value_heads 4"), "{e}");
    }

    #[test]
    fn chat_template_forms() {
        let p = Path::new("tokenizer_config.json");
        let t: HfTokenizerConfig =
            serde_json::from_str(r#"{"chat_template": "{{ x }}", "bos_token": {"content": "<s>"}}"#).expect("parses");
        assert_eq!(t.chat_template(p).expect("ok").as_deref(), Some("{{ x }}"));
        assert_eq!(t.bos_text(), Some("<s>"));
        let t: HfTokenizerConfig =
            serde_json::from_str(r#"{"chat_template": [{"name": "tool_use", "template": "a"}, {"name": "default", "template": "b"}]}"#)
                .expect("parses");
        assert_eq!(t.chat_template(p).expect("ok").as_deref(), Some("b"));
        let t: HfTokenizerConfig = serde_json::from_str(r#"{"chat_template": 3}"#).expect("parses");
        assert!(t.chat_template(p).expect_err("bad").to_string().contains("\"chat_template\""));
    }
}
