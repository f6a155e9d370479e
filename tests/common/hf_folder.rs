//! Writing Hugging Face safetensors folders (and tiny GGUF files) for `tests/model_safetensors.rs`:
//! from the SmolLM2 GGUF (every tensor dequantised to f32, q/k rows un-permuted back to Hugging
//! Face's layout), or from small synthetic models. Safetensors files are written with the
//! `safetensors` crate, `tokenizer.json` with the `tokenizers` serialisation.
#![allow(dead_code)]

use std::path::Path;

use labflow::model::{ChatTemplate, Config, GgufFile, Tokenizer};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::{json, Value};

/// One tensor in Hugging Face naming and layout (row-major, outermost first).
#[derive(Clone)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// `v` rounded to what `dtype` stores (F32 unchanged).
pub fn round_to(dtype: Dtype, v: f32) -> f32 {
    match dtype {
        Dtype::F16 => half::f16::from_f32(v).to_f32(),
        Dtype::BF16 => half::bf16::from_f32(v).to_f32(),
        _ => v,
    }
}

fn bytes_as(dtype: Dtype, data: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => data.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        Dtype::BF16 => data.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
        // Any other dtype: the f32 values' bytes reinterpreted, only for error tests.
        Dtype::I32 => data.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect(),
        Dtype::F64 => data.iter().flat_map(|&v| f64::from(v).to_le_bytes()).collect(),
        other => panic!("test helper: no writer for {other}"),
    }
}

/// Writes `tensors` into `dir` as `dtype`: `model.safetensors` when `shards == 1`, else
/// `model-0000i-of-0000n.safetensors` files and `model.safetensors.index.json`.
pub fn write_weights(dir: &Path, tensors: &[Tensor], dtype: Dtype, shards: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let per = tensors.len().div_ceil(shards.max(1));
    let mut weight_map = serde_json::Map::new();
    for (i, group) in tensors.chunks(per).enumerate() {
        let file = if shards == 1 { "model.safetensors".to_string() } else { format!("model-{:05}-of-{:05}.safetensors", i + 1, shards) };
        let bytes: Vec<Vec<u8>> = group.iter().map(|t| bytes_as(dtype, &t.data)).collect();
        let views: Vec<(String, TensorView<'_>)> =
            group.iter().zip(&bytes).map(|(t, b)| (t.name.clone(), TensorView::new(dtype, t.shape.clone(), b).expect("view"))).collect();
        safetensors::serialize_to_file(views, None, &dir.join(&file)).expect("write safetensors");
        for t in group {
            weight_map.insert(t.name.clone(), Value::String(file.clone()));
        }
    }
    if shards > 1 {
        write_json(dir, "model.safetensors.index.json", &json!({"metadata": {}, "weight_map": weight_map}));
    }
}

pub fn write_json(dir: &Path, name: &str, v: &Value) {
    std::fs::write(dir.join(name), serde_json::to_string_pretty(v).expect("json")).expect("write json");
}

/// llama.cpp's converter permutes the Q/K rows of each head so that Hugging Face's half-split
/// rope becomes GGML's interleaved one: GGUF row `h·D + 2i + j` is HF row `h·D + j·D/2 + i`.
/// `to_hf` undoes it; `!to_hf` applies it. `w: [n_head·D, cols]`.
pub fn permute_rows(w: &[f32], n_head: usize, cols: usize, to_hf: bool) -> Vec<f32> {
    let d = w.len() / cols / n_head;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_head {
        for i in 0..d / 2 {
            for j in 0..2 {
                let gguf = h * d + 2 * i + j;
                let hf = h * d + j * (d / 2) + i;
                let (src, dst) = if to_hf { (gguf, hf) } else { (hf, gguf) };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// GGUF tensor name → Hugging Face name.
fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (l, part) = rest.split_once('.')?;
    let hf = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{l}.{hf}"))
}

/// `config.json` for `c` (transformers 4 spelling: `rope_theta`).
pub fn config_json(c: &Config, tied: bool) -> Value {
    json!({
        "architectures": [match c.arch { labflow::model::Arch::Llama => "LlamaForCausalLM", labflow::model::Arch::Qwen2 => "Qwen2ForCausalLM" }],
        "model_type": match c.arch { labflow::model::Arch::Llama => "llama", labflow::model::Arch::Qwen2 => "qwen2" },
        "hidden_size": c.hidden, "intermediate_size": c.ffn, "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads, "vocab_size": c.vocab_size,
        "max_position_embeddings": c.context_length, "rms_norm_eps": c.rms_eps, "rope_theta": c.rope_base,
        "tie_word_embeddings": tied, "hidden_act": "silu", "torch_dtype": "float32",
    })
}

/// The SmolLM2 GGUF as a Hugging Face folder in `dir` (F32, one file): every tensor dequantised,
/// Q/K rows un-permuted, config.json from the GGUF metadata, tokenizer.json from the tokenizer
/// rebuilt from the GGUF, tokenizer_config.json with the GGUF's chat template and BOS/EOS texts.
pub fn folder_from_gguf(gguf: &GgufFile, dir: &Path) {
    let c = Config::from_gguf(gguf).expect("config");
    let mut tensors = Vec::new();
    for info in gguf.tensors() {
        let name = hf_name(&info.name).unwrap_or_else(|| panic!("no Hugging Face name for {}", info.name));
        let mut data = gguf.tensor_f32(&info.name, &info.dims).expect("dequantise");
        let shape: Vec<usize> = info.dims.iter().rev().copied().collect();
        if info.name.ends_with("attn_q.weight") {
            data = permute_rows(&data, c.n_heads, c.hidden, true);
        } else if info.name.ends_with("attn_k.weight") {
            data = permute_rows(&data, c.n_kv_heads, c.hidden, true);
        }
        tensors.push(Tensor { name, shape, data });
    }
    let tied = gguf.tensor("output.weight").is_none();
    let tmp = dir.with_extension("part");
    let _ = std::fs::remove_dir_all(&tmp);
    write_weights(&tmp, &tensors, Dtype::F32, 1);
    write_json(&tmp, "config.json", &config_json(&c, tied));
    let tokenizer = Tokenizer::from_gguf(gguf).expect("tokenizer");
    std::fs::write(tmp.join("tokenizer.json"), tokenizer.to_json().expect("serialise")).expect("write tokenizer.json");
    let template = ChatTemplate::from_gguf(gguf).expect("template");
    let text = |id: Option<u32>| id.and_then(|i| tokenizer.token(i)).unwrap_or_default();
    write_json(
        &tmp,
        "tokenizer_config.json",
        &json!({"bos_token": text(tokenizer.bos_id()), "eos_token": text(tokenizer.eos_id()), "chat_template": template.source()}),
    );
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir).expect("rename folder");
}

/// A deterministic pseudo-random stream in [-1, 1).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| offset + scale * self.next()).collect()
    }
}

/// A small synthetic model: its `config.json` and tensors in Hugging Face naming and layout.
pub struct Tiny {
    pub config: Value,
    pub tensors: Vec<Tensor>,
}

/// vocab 64, hidden 32, 4 heads of 8 (2 KV heads), FFN 48, 2 layers; qwen2 gets Q/K/V biases.
pub fn tiny(arch: &str, tied: bool, seed: u64) -> Tiny {
    let (v, c, h, kvh, d, f, layers) = (64, 32, 4, 2, 8, 48, 2);
    let mut r = Rng::new(seed);
    let mut t = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let n = shape.iter().product();
        Tensor { name, shape, data: r.vec(n, scale, offset) }
    };
    let mut tensors = vec![t("model.embed_tokens.weight".into(), vec![v, c], 1.0, 0.0)];
    for l in 0..layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        tensors.push(t(p("input_layernorm.weight"), vec![c], 0.2, 1.0));
        tensors.push(t(p("self_attn.q_proj.weight"), vec![h * d, c], 0.4, 0.0));
        tensors.push(t(p("self_attn.k_proj.weight"), vec![kvh * d, c], 0.4, 0.0));
        tensors.push(t(p("self_attn.v_proj.weight"), vec![kvh * d, c], 0.4, 0.0));
        if arch == "qwen2" {
            tensors.push(t(p("self_attn.q_proj.bias"), vec![h * d], 0.5, 0.0));
            tensors.push(t(p("self_attn.k_proj.bias"), vec![kvh * d], 0.5, 0.0));
            tensors.push(t(p("self_attn.v_proj.bias"), vec![kvh * d], 0.5, 0.0));
        }
        tensors.push(t(p("self_attn.o_proj.weight"), vec![c, h * d], 0.3, 0.0));
        tensors.push(t(p("post_attention_layernorm.weight"), vec![c], 0.2, 1.0));
        tensors.push(t(p("mlp.gate_proj.weight"), vec![f, c], 0.3, 0.0));
        tensors.push(t(p("mlp.up_proj.weight"), vec![f, c], 0.3, 0.0));
        tensors.push(t(p("mlp.down_proj.weight"), vec![c, f], 0.3, 0.0));
    }
    tensors.push(t("model.norm.weight".into(), vec![c], 0.2, 1.0));
    if !tied {
        tensors.push(t("lm_head.weight".into(), vec![v, c], 0.5, 0.0));
    }
    let config = json!({
        "architectures": [if arch == "qwen2" { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
        "model_type": arch, "hidden_size": c, "intermediate_size": f, "num_hidden_layers": layers,
        "num_attention_heads": h, "num_key_value_heads": kvh, "vocab_size": v, "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "tie_word_embeddings": tied, "hidden_act": "silu",
    });
    Tiny { config, tensors }
}

/// Writes `tiny` as a folder (no tokenizer files) with its weights stored as `dtype`.
pub fn write_tiny(tiny: &Tiny, dir: &Path, dtype: Dtype, shards: usize) {
    write_weights(dir, &tiny.tensors, dtype, shards);
    write_json(dir, "config.json", &tiny.config);
}

/// Writes `tiny` as a GGUF file (F32 tensors) the way llama.cpp's converter would: GGUF names,
/// `dims` innermost first, and for llama the Q/K rows permuted to the interleaved rope layout.
pub fn write_tiny_gguf(tiny: &Tiny, path: &Path) {
    let cfg = &tiny.config;
    let arch = cfg["model_type"].as_str().expect("arch");
    let u = |k: &str| cfg[k].as_u64().expect("int") as u32;
    let (heads, kv_heads, hidden) = (u("num_attention_heads") as usize, u("num_key_value_heads") as usize, u("hidden_size") as usize);
    let mut b: Vec<u8> = Vec::new();
    let s = |b: &mut Vec<u8>, s: &str| {
        b.extend_from_slice(&(s.len() as u64).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
    };
    let reverse: std::collections::HashMap<String, String> = (0..64)
        .flat_map(|l| {
            [
                "attn_norm.weight",
                "attn_q.weight",
                "attn_k.weight",
                "attn_v.weight",
                "attn_q.bias",
                "attn_k.bias",
                "attn_v.bias",
                "attn_output.weight",
                "ffn_norm.weight",
                "ffn_gate.weight",
                "ffn_up.weight",
                "ffn_down.weight",
            ]
            .map(|p| format!("blk.{l}.{p}"))
        })
        .chain(["token_embd.weight", "output_norm.weight", "output.weight"].map(String::from))
        .filter_map(|g| hf_name(&g).map(|h| (h, g)))
        .collect();
    let kv: Vec<(String, u32, Vec<u8>)> = vec![
        ("general.architecture".into(), 8, {
            let mut v = Vec::new();
            s(&mut v, arch);
            v
        }),
        (format!("{arch}.embedding_length"), 4, u("hidden_size").to_le_bytes().to_vec()),
        (format!("{arch}.feed_forward_length"), 4, u("intermediate_size").to_le_bytes().to_vec()),
        (format!("{arch}.block_count"), 4, u("num_hidden_layers").to_le_bytes().to_vec()),
        (format!("{arch}.attention.head_count"), 4, (heads as u32).to_le_bytes().to_vec()),
        (format!("{arch}.attention.head_count_kv"), 4, (kv_heads as u32).to_le_bytes().to_vec()),
        (format!("{arch}.context_length"), 4, u("max_position_embeddings").to_le_bytes().to_vec()),
        (format!("{arch}.rope.freq_base"), 6, 10000f32.to_le_bytes().to_vec()),
        (format!("{arch}.attention.layer_norm_rms_epsilon"), 6, 1e-5f32.to_le_bytes().to_vec()),
    ];
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&(tiny.tensors.len() as u64).to_le_bytes());
    b.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (k, ty, v) in &kv {
        s(&mut b, k);
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(v);
    }
    let mut data: Vec<u8> = Vec::new();
    for t in &tiny.tensors {
        let name = &reverse[&t.name];
        let mut values = t.data.clone();
        if arch == "llama" && name.ends_with("attn_q.weight") {
            values = permute_rows(&values, heads, hidden, false);
        } else if arch == "llama" && name.ends_with("attn_k.weight") {
            values = permute_rows(&values, kv_heads, hidden, false);
        }
        s(&mut b, name);
        b.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for d in t.shape.iter().rev() {
            b.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        b.extend_from_slice(&0u32.to_le_bytes()); // F32
        b.extend_from_slice(&(data.len() as u64).to_le_bytes());
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        while !data.len().is_multiple_of(32) {
            data.push(0);
        }
    }
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    b.extend_from_slice(&data);
    std::fs::write(path, b).expect("write gguf");
}
