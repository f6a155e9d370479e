//! The Llama-family decoder (GGUF architectures `llama` and `qwen2`): configuration from GGUF
//! metadata, weights dequantised to f32 at load, and the forward pass with a KV cache.
//!
//! Block `l`: `x += Wo · attn(rope(Wq·n), rope(Wk·n), Wv·n)` with `n = rmsnorm(x)`, then
//! `x += Wdown · (silu(Wgate·n) ⊙ Wup·n)` with `n = rmsnorm(x)`; after the last block a final
//! RMSNorm and the LM head (tied to the token embedding when `output.weight` is absent). This is
//! the plainly-correct reference: every op is an f32 (f64-accumulating) function from
//! [`crate::backend::cpu`]; quantised matmuls and batching come later and are tested against it.

use std::path::Path;

use crate::backend::cpu::attention::{attention, AttnShape};
use crate::backend::cpu::matmul::matmul_wt;
use crate::backend::cpu::rmsnorm::rmsnorm;
use crate::backend::cpu::rope::rope;
pub use crate::backend::cpu::rope::RopeStyle;

use super::{GgufFile, ModelError};

/// Architectures this module runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// GGUF `llama` (Llama, SmolLM, Mistral without sliding windows, …).
    Llama,
    /// GGUF `qwen2`: Llama with biases on the Q/K/V projections and half-split rope.
    Qwen2,
}

/// Hyper-parameters of a model, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Architecture.
    pub arch: Arch,
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// Hidden size `C`.
    pub hidden: usize,
    /// Number of blocks.
    pub n_layers: usize,
    /// Query heads `H`.
    pub n_heads: usize,
    /// Key/value heads `Hkv`.
    pub n_kv_heads: usize,
    /// Head size `D = C / H`.
    pub head_dim: usize,
    /// Feed-forward size `F`.
    pub ffn: usize,
    /// Rope base frequency.
    pub rope_base: f32,
    /// Rotated dimensions per head.
    pub rope_dims: usize,
    /// Which dimensions rotate together (follows from the architecture for GGUF files).
    pub rope_style: RopeStyle,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Longest sequence the model was trained for (the KV cache's default capacity).
    pub context_length: usize,
}

impl Config {
    /// Reads the configuration from GGUF metadata (`{arch}.embedding_length` and friends).
    pub fn from_gguf(f: &GgufFile) -> Result<Config, ModelError> {
        let arch_name = f.req_str("general.architecture")?;
        let (arch, rope_style) = match arch_name {
            "llama" => (Arch::Llama, RopeStyle::Interleaved),
            "qwen2" => (Arch::Qwen2, RopeStyle::HalfSplit),
            other => {
                return Err(ModelError::Unsupported {
                    path: f.path().to_path_buf(),
                    message: format!("architecture {other:?}; supported: llama, qwen2"),
                })
            }
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let hidden = f.req_usize(&key("embedding_length"))?;
        let n_heads = f.req_usize(&key("attention.head_count"))?;
        let n_kv_heads = match f.get(&key("attention.head_count_kv")) {
            None => n_heads,
            Some(_) => f.req_usize(&key("attention.head_count_kv"))?,
        };
        let bad = |message: String| ModelError::Missing { path: f.path().to_path_buf(), message };
        if n_heads == 0 || n_kv_heads == 0 || hidden % n_heads != 0 || n_heads % n_kv_heads != 0 {
            return Err(bad(format!("inconsistent heads: hidden {hidden}, heads {n_heads}, kv heads {n_kv_heads}")));
        }
        let head_dim = hidden / n_heads;
        let rope_dims = match f.get(&key("rope.dimension_count")) {
            None => head_dim,
            Some(_) => f.req_usize(&key("rope.dimension_count"))?,
        };
        if rope_dims > head_dim || rope_dims % 2 != 0 {
            return Err(bad(format!("rope.dimension_count {rope_dims} does not fit head size {head_dim}")));
        }
        let vocab_size = match f.get(&key("vocab_size")) {
            Some(_) => f.req_usize(&key("vocab_size"))?,
            None => f
                .tensor("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied())
                .ok_or_else(|| bad("no vocab_size and no token_embd.weight".into()))?,
        };
        Ok(Config {
            arch,
            vocab_size,
            hidden,
            n_layers: f.req_usize(&key("block_count"))?,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn: f.req_usize(&key("feed_forward_length"))?,
            rope_base: f.opt_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0) as f32,
            rope_dims,
            rope_style,
            rms_eps: f.opt_f64(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5) as f32,
            context_length: f.req_usize(&key("context_length"))?,
        })
    }

    fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// One block's weights, f32, each matrix `[out, in]` row-major.
struct Block {
    attn_norm: Vec<f32>,
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    /// Q/K/V biases (qwen2).
    bias: Option<[Vec<f32>; 3]>,
    wo: Vec<f32>,
    ffn_norm: Vec<f32>,
    w_gate: Vec<f32>,
    w_up: Vec<f32>,
    w_down: Vec<f32>,
}

/// A loaded model.
pub struct Model {
    config: Config,
    /// `[V, C]`.
    tok_embd: Vec<f32>,
    blocks: Vec<Block>,
    out_norm: Vec<f32>,
    /// `[V, C]`; `None` when tied to `tok_embd`.
    lm_head: Option<Vec<f32>>,
}

/// Keys and values of every block for the positions seen so far.
#[derive(Clone)]
pub struct KvCache {
    /// Per block `[len, Hkv·D]`.
    k: Vec<Vec<f32>>,
    /// Per block `[len, Hkv·D]`.
    v: Vec<Vec<f32>>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `config`, holding at most `capacity` positions.
    pub fn new(config: &Config, capacity: usize) -> KvCache {
        KvCache { k: vec![Vec::new(); config.n_layers], v: vec![Vec::new(); config.n_layers], len: 0, capacity }
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position.
    pub fn clear(&mut self) {
        self.k.iter_mut().chain(self.v.iter_mut()).for_each(Vec::clear);
        self.len = 0;
    }
}

impl Model {
    /// Loads a GGUF model, dequantising every weight to f32.
    pub fn load(path: impl AsRef<Path>) -> Result<Model, ModelError> {
        Model::from_gguf(&GgufFile::open(path)?)
    }

    /// Builds the model from a parsed GGUF file.
    pub fn from_gguf(f: &GgufFile) -> Result<Model, ModelError> {
        let c = Config::from_gguf(f)?;
        let (h, kv, q_dim) = (c.hidden, c.kv_dim(), c.n_heads * c.head_dim);
        let tok_embd = f.tensor_f32("token_embd.weight", &[h, c.vocab_size])?;
        let mut blocks = Vec::with_capacity(c.n_layers);
        for l in 0..c.n_layers {
            let t = |name: &str, dims: &[usize]| f.tensor_f32(&format!("blk.{l}.{name}"), dims);
            let bias = match c.arch {
                Arch::Qwen2 => Some([t("attn_q.bias", &[q_dim])?, t("attn_k.bias", &[kv])?, t("attn_v.bias", &[kv])?]),
                Arch::Llama => None,
            };
            blocks.push(Block {
                attn_norm: t("attn_norm.weight", &[h])?,
                wq: t("attn_q.weight", &[h, q_dim])?,
                wk: t("attn_k.weight", &[h, kv])?,
                wv: t("attn_v.weight", &[h, kv])?,
                bias,
                wo: t("attn_output.weight", &[q_dim, h])?,
                ffn_norm: t("ffn_norm.weight", &[h])?,
                w_gate: t("ffn_gate.weight", &[h, c.ffn])?,
                w_up: t("ffn_up.weight", &[h, c.ffn])?,
                w_down: t("ffn_down.weight", &[c.ffn, h])?,
            });
        }
        let out_norm = f.tensor_f32("output_norm.weight", &[h])?;
        let lm_head = match f.tensor("output.weight") {
            Some(_) => Some(f.tensor_f32("output.weight", &[h, c.vocab_size])?),
            None => None,
        };
        Ok(Model { config: c, tok_embd, blocks, out_norm, lm_head })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// An empty KV cache holding the model's full context length.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.config, self.config.context_length)
    }

    /// Runs `tokens` (following what `cache` holds) and returns the logits `[V]` of the last one.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, ModelError> {
        let x = self.hidden_states(tokens, cache)?;
        let c = self.config.hidden;
        Ok(self.logits(&x[x.len() - c..]))
    }

    /// Runs `tokens` and returns the logits of every one, `[T, V]` row-major.
    pub fn forward_all(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, ModelError> {
        let x = self.hidden_states(tokens, cache)?;
        Ok(self.logits(&x))
    }

    /// Greedy decoding: feeds `prompt`, then appends the most likely token `n` times (ties go to
    /// the lowest id). End-of-sequence tokens are not special here: the caller stops on them.
    pub fn greedy(&self, prompt: &[u32], n: usize) -> Result<Vec<u32>, ModelError> {
        let mut cache = KvCache::new(&self.config, prompt.len() + n);
        let mut logits = self.forward(prompt, &mut cache)?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let next = argmax(&logits);
            out.push(next);
            if i + 1 < n {
                logits = self.forward(&[next], &mut cache)?;
            }
        }
        Ok(out)
    }

    /// Final hidden states after the output norm, `[T, C]`.
    fn hidden_states(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, ModelError> {
        let cfg = &self.config;
        let (c, kv, t_len, pos0) = (cfg.hidden, cfg.kv_dim(), tokens.len(), cache.len);
        if t_len == 0 {
            return Err(ModelError::Input("no tokens to run".into()));
        }
        if pos0 + t_len > cache.capacity {
            return Err(ModelError::Input(format!("{} positions exceed the KV cache's capacity {}", pos0 + t_len, cache.capacity)));
        }
        if cache.k.len() != cfg.n_layers {
            return Err(ModelError::Input(format!("KV cache has {} blocks, the model {}", cache.k.len(), cfg.n_layers)));
        }
        // x: [T, C]
        let mut x = Vec::with_capacity(t_len * c);
        for &tok in tokens {
            let row = self
                .tok_embd
                .get(tok as usize * c..(tok as usize + 1) * c)
                .ok_or_else(|| ModelError::Input(format!("token id {tok} outside the vocabulary of {}", cfg.vocab_size)))?;
            x.extend_from_slice(row);
        }
        let q_dim = cfg.n_heads * cfg.head_dim;
        let shape = AttnShape { n_heads: cfg.n_heads, n_kv_heads: cfg.n_kv_heads, head_dim: cfg.head_dim };
        let (mut q, mut k, mut v) = (vec![0f32; t_len * q_dim], vec![0f32; t_len * kv], vec![0f32; t_len * kv]);
        let mut att = vec![0f32; t_len * q_dim];
        let mut proj = vec![0f32; t_len * c];
        let (mut gate, mut up) = (vec![0f32; t_len * cfg.ffn], vec![0f32; t_len * cfg.ffn]);
        for (l, b) in self.blocks.iter().enumerate() {
            // n: [T, C]
            let mut n = x.clone();
            rmsnorm(&mut n, &b.attn_norm, cfg.rms_eps);
            matmul_wt(&n, &b.wq, &mut q, c); // q: [T, H·D]
            matmul_wt(&n, &b.wk, &mut k, c); // k: [T, Hkv·D]
            matmul_wt(&n, &b.wv, &mut v, c); // v: [T, Hkv·D]
            if let Some([bq, bk, bv]) = &b.bias {
                add_rows(&mut q, bq);
                add_rows(&mut k, bk);
                add_rows(&mut v, bv);
            }
            rope(&mut q, cfg.n_heads, cfg.head_dim, cfg.rope_dims, pos0, cfg.rope_base, cfg.rope_style);
            rope(&mut k, cfg.n_kv_heads, cfg.head_dim, cfg.rope_dims, pos0, cfg.rope_base, cfg.rope_style);
            cache.k[l].extend_from_slice(&k);
            cache.v[l].extend_from_slice(&v);
            attention(&q, &cache.k[l], &cache.v[l], pos0, shape, &mut att); // att: [T, H·D]
            matmul_wt(&att, &b.wo, &mut proj, q_dim); // proj: [T, C]
            x.iter_mut().zip(&proj).for_each(|(a, p)| *a += p);

            let mut n = x.clone();
            rmsnorm(&mut n, &b.ffn_norm, cfg.rms_eps);
            matmul_wt(&n, &b.w_gate, &mut gate, c); // gate: [T, F]
            matmul_wt(&n, &b.w_up, &mut up, c); // up: [T, F]
            crate::backend::cpu::swiglu::swiglu(&mut gate, &up);
            matmul_wt(&gate, &b.w_down, &mut proj, cfg.ffn); // proj: [T, C]
            x.iter_mut().zip(&proj).for_each(|(a, p)| *a += p);
        }
        cache.len += t_len;
        rmsnorm(&mut x, &self.out_norm, cfg.rms_eps);
        Ok(x)
    }

    /// `x: [T, C]` → logits `[T, V]`.
    fn logits(&self, x: &[f32]) -> Vec<f32> {
        let c = self.config.hidden;
        let head = self.lm_head.as_deref().unwrap_or(&self.tok_embd);
        let mut out = vec![0f32; x.len() / c * self.config.vocab_size];
        matmul_wt(x, head, &mut out, c);
        out
    }
}

/// Adds `b: [N]` to every row of `x: [T, N]`.
fn add_rows(x: &mut [f32], b: &[f32]) {
    for row in x.chunks_exact_mut(b.len()) {
        row.iter_mut().zip(b).for_each(|(a, &c)| *a += c);
    }
}

/// Index of the largest value (the first one on ties; NaN never wins).
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] || xs[best].is_nan() {
            best = i;
        }
    }
    best as u32
}
